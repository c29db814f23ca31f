//! The MicroPython board client (`board-client/micropython/roost_board.py`) end to end: one real
//! `roost`, the client running as a real process on the MicroPython unix port, and the CLI run
//! as an operator would. The unix port comes from `scripts/services.sh` (`make test`), which
//! exports its path as `ROOST_TEST_MICROPYTHON`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::boards::{api_get, cli, header, text};
use common::Roost;

/// The MicroPython unix port binary; a test without it fails (never skips).
fn micropython() -> PathBuf {
    match std::env::var_os("ROOST_TEST_MICROPYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "ROOST_TEST_MICROPYTHON is not set: run `make test` (or `bash scripts/services.sh` and load \
             ${{ROOST_SVC_DIR:-/tmp/roost-svc}}/env), which installs the MicroPython unix port"
        ),
    }
}

/// `board-client/micropython`.
fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../board-client/micropython")
}

/// The MicroPython client as a process; killed when dropped.
struct MpyBoard {
    child: Child,
    log: PathBuf,
}

impl MpyBoard {
    fn start(roost: &Roost, name: &str, root: &Path) -> MpyBoard {
        MpyBoard::start_with(name, root, &[("ROOST_BOARD_SERVER", &roost.mqtt.to_string())])
    }

    /// A client whose server (and any other setting) is in the variables `env`.
    fn start_with(name: &str, root: &Path, env: &[(&str, &str)]) -> MpyBoard {
        let log = root.with_extension("log");
        let child = Command::new(micropython())
            .arg(client_dir().join("roost_board.py"))
            .env("ROOST_BOARD_NAME", name)
            .envs(env.iter().copied())
            .env("ROOST_BOARD_ROOT", root)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).unwrap()))
            .spawn()
            .unwrap();
        MpyBoard { child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (at most 60 s) for the process to exit.
    fn wait_exit(&mut self) -> ExitStatus {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < until, "the client did not exit:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for MpyBoard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until board `name` is listed with `state`.
async fn wait_board(roost: &Roost, board: &MpyBoard, name: &str, state: &str) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let list = api_get(roost, "/boards").await;
        if list["boards"].as_array().unwrap().iter().any(|b| b["name"] == name && b["state"] == state) {
            return;
        }
        assert!(
            Instant::now() < until,
            "board {name} not {state}: {list:#}\nclient log:\n{}",
            board.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The body printed under board `name`'s header by `roost board exec` (one board).
fn body(stdout: &str, name: &str) -> String {
    let rest = stdout
        .strip_prefix(&format!("{}\n", header(name)))
        .unwrap_or_else(|| panic!("no header for {name}: {stdout:?}"));
    assert!(!rest.contains("## Executing on"), "{stdout}");
    rest.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn micropython_client_is_listed_and_executes_python() {
    let data = tempfile::tempdir().unwrap();
    let boards = tempfile::tempdir().unwrap();
    let roost = Roost::start(data.path(), None);
    let mut board = MpyBoard::start(&roost, "mpy-1", &boards.path().join("mpy-1"));
    wait_board(&roost, &board, "mpy-1", "idle").await;

    let out = cli(&roost, &["list"], "").await;
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    let row = stdout.lines().find(|l| l.starts_with("mpy-1 ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(row.contains("micropython-linux") && row.contains("idle") && row.contains("0.1.0"), "{row}");
    let entry = api_get(&roost, "/boards/mpy-1").await;
    assert_eq!(entry["platform"], "micropython-linux", "{entry:#}");

    // Code from stdin; print output under the board's header.
    let out = cli(&roost, &["exec", "mpy-1"], "print(6*7)\n").await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", board.log_text());
    assert_eq!(body(&stdout, "mpy-1"), "42\n");

    // Functions, sep/end, stderr, and the root as the working directory.
    let code = "import os, sys\ndef f(n):\n    print('n', n, sep='=', end=';\\n')\nf(7)\nprint('to stderr', file=sys.stderr)\nprint(os.getcwd().split('/')[-1])\n";
    let out = cli(&roost, &["exec", "mpy-1"], code).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(body(&stdout, "mpy-1"), "n=7;\nto stderr\nmpy-1\n");

    // Output larger than one reply is cut into pieces and comes back whole.
    let out =
        cli(&roost, &["exec", "mpy-1", "-c", "print('ab' * 3000)\nfor i in range(300):\n    print(i)"], "")
            .await;
    let want: String =
        format!("{}\n", "ab".repeat(3000)) + &(0..300).map(|i| format!("{i}\n")).collect::<String>();
    assert!(body(&text(&out).0, "mpy-1") == want, "{:?}", text(&out));

    // An exception: a failed result naming it, the traceback as output, a non-zero exit status.
    let out = cli(&roost, &["exec", "mpy-1", "-c", "print('before')\n1/0"], "").await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    let b = body(&stdout, "mpy-1");
    assert!(b.starts_with("before\nTraceback (most recent call last):\n"), "{b}");
    assert!(
        b.ends_with("ZeroDivisionError: divide by zero\n-- failed: ZeroDivisionError: divide by zero\n"),
        "{b}"
    );
    assert!(!b.contains("roost_board"), "the client's own frame shows: {b}");
    assert!(stderr.contains("1 board(s) failed"), "{stderr}");

    // sys.exit gives an exit status; a syntax error fails too.
    let out = cli(&roost, &["exec", "mpy-1", "-c", "import sys\nprint('x')\nsys.exit(3)"], "").await;
    assert!(!out.status.success());
    assert_eq!(body(&text(&out).0, "mpy-1"), "x\n-- failed: exit status 3\n");
    let out = cli(&roost, &["exec", "mpy-1", "-c", "def ("], "").await;
    assert!(!out.status.success());
    assert!(body(&text(&out).0, "mpy-1").contains("-- failed: SyntaxError"), "{:?}", text(&out));

    // Past the deadline, code that prints is stopped and reported.
    let code = "import time\nfor i in range(600):\n    print(i)\n    time.sleep_ms(100)\n";
    let out = cli(&roost, &["exec", "mpy-1", "--timeout", "1", "-c", code], "").await;
    assert!(!out.status.success());
    assert!(
        body(&text(&out).0, "mpy-1").ends_with("-- failed: timed out after 1000 ms\n"),
        "{:?}",
        text(&out)
    );

    // Still serving after all that; then a reset, which on the unix port exits with status 75.
    let out = cli(&roost, &["exec", "mpy-1", "-c", "print('still here')"], "").await;
    assert_eq!(body(&text(&out).0, "mpy-1"), "still here\n");
    let out = cli(&roost, &["reset", "mpy-1"], "").await;
    assert_eq!(text(&out).0, "mpy-1: reset ok\n", "{:?}", text(&out));
    assert_eq!(board.wait_exit().code(), Some(75), "{}", board.log_text());
    wait_board(&roost, &board, "mpy-1", "offline").await;
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn micropython_client_connects_over_tls_with_its_certificate() {
    let data = tempfile::tempdir().unwrap();
    let boards = tempfile::tempdir().unwrap();
    let pki = boards.path().join("pki");
    for args in [&["tls", "init", "--san", "127.0.0.1"][..], &["tls", "device", "mpy-tls"]] {
        let out = Command::new(common::ROOST).args(args).arg("--dir").arg(&pki).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let file = |p: &str| pki.join(p).to_str().unwrap().to_owned();
    let config = format!(
        "[mqtt.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
        file("server.pem"),
        file("server.key"),
        file("ca.pem")
    );
    let roost = Roost::start(data.path(), Some(&config));
    let (ok, _, err) = roost.cli(&["device", "add", "mpy-tls"]);
    assert!(ok, "{err}");
    let server = roost.mqtts.expect("the TLS listener").to_string();
    let env = [
        ("ROOST_BOARD_SERVER", server.as_str()),
        ("ROOST_BOARD_CA_FILE", &file("ca.der")),
        ("ROOST_BOARD_CERT_FILE", &file("devices/mpy-tls.der")),
        ("ROOST_BOARD_KEY_FILE", &file("devices/mpy-tls.key.der")),
    ];
    let board = MpyBoard::start_with("mpy-tls", &boards.path().join("mpy-tls"), &env);
    wait_board(&roost, &board, "mpy-tls", "idle").await;
    let out = cli(&roost, &["exec", "mpy-tls"], "print('over', 'tls')\n").await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", board.log_text());
    assert_eq!(body(&stdout, "mpy-tls"), "over tls\n");

    // Without the CA the client refuses the server it cannot verify, and never comes online.
    let strange = boards.path().join("other");
    let out = Command::new(common::ROOST).args(["tls", "init", "--dir"]).arg(&strange).output().unwrap();
    assert!(out.status.success());
    let other_ca = strange.join("ca.der").to_str().unwrap().to_owned();
    let env = [env[0], ("ROOST_BOARD_CA_FILE", other_ca.as_str()), env[2], env[3]];
    let stranger = MpyBoard::start_with("mpy-tls2", &boards.path().join("mpy-tls2"), &env);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let list = api_get(&roost, "/boards").await;
    assert!(!list.to_string().contains("mpy-tls2"), "{list:#}\n{}", stranger.log_text());
    let log = stranger.log_text();
    assert!(log.contains("TLS: The certificate is not correctly signed"), "it says why, and retries: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn micropython_client_receives_uploads_byte_for_byte_and_lists_files() {
    let data = tempfile::tempdir().unwrap();
    let boards = tempfile::tempdir().unwrap();
    let root = boards.path().join("mpy-2");
    let roost = Roost::start(data.path(), None);
    let board = MpyBoard::start(&roost, "mpy-2", &root);
    wait_board(&roost, &board, "mpy-2", "idle").await;

    // ~100 KiB in chunks sized for the client's max_payload (4096 by default: 45 chunks).
    let file = boards.path().join("payload.bin");
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&file, &bytes).unwrap();
    let out = cli(&roost, &["upload", "mpy-2", file.to_str().unwrap(), "lib/payload.bin"], "").await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", board.log_text());
    assert!(stdout.contains("Copying file to mpy-2:lib/payload.bin\n"), "{stdout}");
    assert!(stdout.contains("mpy-2: done (100000 bytes)"), "{stdout}");
    assert!(stdout.lines().filter(|l| l.contains('%')).count() > 10, "not chunked: {stdout}");
    let landed = std::fs::read(root.join("lib/payload.bin")).unwrap();
    assert!(landed == bytes, "the file differs");
    let names: Vec<_> =
        std::fs::read_dir(root.join("lib")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["payload.bin"], "temporary files left");

    // The same again replaces it; ls lists it; stat describes it.
    let out = cli(&roost, &["upload", "mpy-2", file.to_str().unwrap(), "lib/payload.bin"], "").await;
    assert!(out.status.success(), "{:?}", text(&out));
    let out = cli(&roost, &["ls", "mpy-2", "lib"], "").await;
    assert_eq!(text(&out).0, "file      100000  payload.bin\n", "{:?}", text(&out));
    let out = cli(&roost, &["ls", "mpy-2"], "").await;
    assert_eq!(text(&out).0, "dir               lib\n", "{:?}", text(&out));

    // A small text file: cat reads it back (UTF-8 kept whole), rm removes it.
    std::fs::write(boards.path().join("hello.txt"), "héllo, board\n").unwrap();
    let out = cli(&roost, &["upload", "mpy-2", boards.path().join("hello.txt").to_str().unwrap()], "").await;
    assert!(out.status.success(), "{:?}", text(&out));
    let out = cli(&roost, &["cat", "mpy-2", "hello.txt"], "").await;
    assert_eq!(text(&out).0, "héllo, board\n");
    let out = cli(&roost, &["mkdir", "mpy-2", "a/b"], "").await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(root.join("a/b").is_dir());
    let out = cli(&roost, &["rm", "mpy-2", "hello.txt"], "").await;
    assert!(out.status.success(), "{:?}", text(&out));
    let out = cli(&roost, &["cat", "mpy-2", "hello.txt"], "").await;
    assert!(!out.status.success());
    assert!(text(&out).0.contains("no such file or directory: hello.txt"), "{:?}", text(&out));
    let out = cli(&roost, &["ls", "mpy-2", "lib/payload.bin"], "").await;
    assert!(!out.status.success());
    assert!(text(&out).0.contains("lib/payload.bin: not a directory"), "{:?}", text(&out));

    // Path traversal: refused, nothing written outside the root.
    let small = boards.path().join("small.txt");
    std::fs::write(&small, "x").unwrap();
    for dest in ["../evil", "/tmp/evil", "a/../../evil"] {
        let out = cli(&roost, &["upload", "mpy-2", small.to_str().unwrap(), dest], "").await;
        assert!(!out.status.success(), "{dest}");
        assert!(text(&out).1.contains("path"), "{dest}: {:?}", text(&out));
    }
    assert!(!boards.path().join("evil").exists());
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn micropython_client_reconnects_after_a_server_restart_and_follows_a_rename() {
    let data = tempfile::tempdir().unwrap();
    let boards = tempfile::tempdir().unwrap();
    let roost = Roost::start(data.path(), None);
    let mqtt = roost.mqtt;
    let board = MpyBoard::start(&roost, "mpy-3", &boards.path().join("mpy-3"));
    wait_board(&roost, &board, "mpy-3", "idle").await;
    assert!(roost.stop().success());
    // The same port again, so the client finds it (it retries with backoff meanwhile).
    let roost = Roost::start_with(data.path(), None, &mqtt.to_string());
    wait_board(&roost, &board, "mpy-3", "idle").await;
    let out = cli(&roost, &["exec", "mpy-3", "-c", "print('back')"], "").await;
    assert_eq!(body(&text(&out).0, "mpy-3"), "back\n", "{:?}", text(&out));

    let out = cli(&roost, &["rename", "mpy-3", "mpy-3b"], "").await;
    assert_eq!(text(&out).0, "renamed 'mpy-3' to 'mpy-3b'\n", "{:?}", text(&out));
    wait_board(&roost, &board, "mpy-3b", "idle").await;
    let out = cli(&roost, &["exec", "mpy-3b", "-c", "print('renamed')"], "").await;
    assert_eq!(body(&text(&out).0, "mpy-3b"), "renamed\n", "{:?}", text(&out));
    assert!(roost.stop().success());
}

/// The client's own checks, which Roost's make unreachable over the wire: run on the unix port.
#[test]
fn micropython_client_refuses_bad_paths_and_invalid_requests_itself() {
    let script = r#"
import roost_board as r
for p in ["../x", "/etc/passwd", "a/../../x", "a//b", "./a", "a\\b", "a\nb", "", "x" * 256]:
    assert r.check_path(p), p
for p in ["lib/hello.py", "a.b/c-d_e", "é"]:
    assert r.check_path(p) is None, p
sha = "0" * 64
up = {"id": "u1", "op": "upload", "path": "a", "offset": 0, "data": "", "chunk_sha256": sha, "total_size": 0, "file_sha256": sha, "last": True}
assert r.check_request(up) is None
for bad in [dict(up, sudo=1), dict(up, path="../a"), dict(up, offset=-1), dict(up, last=1), dict(up, file_sha256="X" * 64),
            {"id": "r", "op": "execute", "code": "x"}, {"id": "r", "op": "execute", "code": "x", "timeout_ms": 0},
            {"id": "r", "op": "fs", "action": "rm", "path": ""}, {"id": "r", "op": "nope"},
            {"id": "r", "op": "rename", "new_name": ".."}]:
    assert r.check_request(bad), bad
print("ok")
"#;
    let out = Command::new(micropython()).arg("-c").arg(script).current_dir(client_dir()).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success() && stdout == "ok\n", "{stdout}\n{stderr}");
}

/// The upload rules (resume from what is held, duplicates, corrupt chunks and files) on the
/// client's own code, with the network replaced by a list of replies.
#[test]
fn micropython_client_upload_rules_resume_duplicates_and_corruption() {
    let root = tempfile::tempdir().unwrap();
    let script = r#"
import sys, os, hashlib, binascii, json
import roost_board as r
root = sys.argv[-1]
class B(r.Board):
    def reply(self, rid, kind, fields):
        f = dict(fields); f["type"] = kind; got.append(f)
b = B({"root": root, "platform": "t"}, "t")
def hx(d): return binascii.hexlify(hashlib.sha256(d).digest()).decode()
whole = bytes(range(256)) * 40
def chunk(off, n, last=False, path="lib/x.bin", data=None, sha=None):
    d = whole[off:off + n]
    return {"id": "u", "op": "upload", "path": path, "offset": off,
            "data": binascii.b2a_base64(data if data is not None else d).decode().strip(),
            "chunk_sha256": sha or hx(d), "total_size": len(whole), "file_sha256": hx(whole), "last": last}
def send(c):
    global got
    got = []
    assert r.check_request(c) is None
    b.upload_chunk("u", c)
    return got[0]
assert send(chunk(0, 3000)) == {"type": "progress", "offset": 3000}
# A chunk past what is held: nothing written, the held offset back.
assert send(chunk(6000, 4240, True)) == {"type": "progress", "offset": 3000}
# A duplicate of the first chunk: the file is cut there first.
assert send(chunk(0, 3000)) == {"type": "progress", "offset": 3000}
assert send(chunk(3000, 3000)) == {"type": "progress", "offset": 6000}
# A corrupt chunk: refused, the temporary file cut to its offset.
res = send(chunk(6000, 4240, True, sha=hx(b"nope")))
assert res == {"type": "result", "ok": False, "error": "chunk sha256 mismatch at offset 6000"}, res
# A new client (no running hash) resumes from the temporary file and checks the whole file.
b = B({"root": root, "platform": "t"}, "t")
assert send(chunk(0, 3000, path="lib/x.bin")) == {"type": "progress", "offset": 3000}
b = B({"root": root, "platform": "t"}, "t")
assert send(chunk(6000, 4240, True)) == {"type": "progress", "offset": 3000}
assert send(chunk(3000, 3000)) == {"type": "progress", "offset": 6000}
assert send(chunk(6000, 4240, True)) == {"type": "result", "ok": True}
assert open(root + "/lib/x.bin", "rb").read() == whole
assert os.listdir(root + "/lib") == ["x.bin"], os.listdir(root + "/lib")
# Chunks that hash right but make another file: the whole-file check refuses it, nothing lands.
bad = chunk(0, len(whole), True, path="lib/y.bin", data=b"x" * len(whole))
bad["chunk_sha256"] = hx(b"x" * len(whole))
assert send(bad) == {"type": "result", "ok": False, "error": "file sha256 mismatch"}
assert os.listdir(root + "/lib") == ["x.bin"], os.listdir(root + "/lib")
# An empty file; an upload over a directory.
def empty(path):
    return {"id": "u", "op": "upload", "path": path, "offset": 0, "data": "", "chunk_sha256": hx(b""),
            "total_size": 0, "file_sha256": hx(b""), "last": True}
assert send(empty("empty")) == {"type": "result", "ok": True}
assert os.stat(root + "/empty")[6] == 0
assert send(empty("lib")) == {"type": "result", "ok": False, "error": "lib: is a directory"}
print("ok")
"#;
    let out = Command::new(micropython())
        .arg("-c")
        .arg(script)
        .arg(root.path())
        .current_dir(client_dir())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success() && stdout == "ok\n", "{stdout}\n{stderr}");
}
