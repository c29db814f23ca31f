//! `roost board install` end to end: one real `roost`, real `roost-board` agents, the CLI run as
//! an operator would, and a "simple" package index built in a temp dir (a wheel made with `zip`,
//! sdists made with `tar` + `flate2`; PEP 503 HTML pages with `#sha256=` fragments, PEP 691 JSON
//! pages with `hashes`) served over HTTP on a free loopback port by a tiny server in this file,
//! which answers the JSON page only to a client that asks for it.
//!
//! The agents and the CLI come from `common/boards.rs`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::boards::{self, agents, wait_boards};
use common::Roost;
use sha2::{Digest, Sha256};

/// Runs `roost board ARGS` against `roost`; returns the output and (stdout, stderr).
async fn cli(roost: &Roost, args: &[&str]) -> (Output, String, String) {
    let out = boards::cli(roost, args, "").await;
    let (o, e) = boards::text(&out);
    (out, o, e)
}

/// Every file under `dir`, relative path -> bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn files(list: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
    list.iter().map(|(p, d)| (p.to_string(), d.to_vec())).collect()
}

fn wheel(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in members {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A `.tar.gz`; member names are written raw so that a hostile one (`../x`) can be made.
fn tar_gz(members: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Writes `files/<name>` and lists them on `simple/<project>/index.html`, each with its
/// SHA-256 (or the one given in `lie`).
fn publish(root: &Path, project: &str, dists: &[(&str, &[u8])], lie: Option<&str>) {
    std::fs::create_dir_all(root.join("files")).unwrap();
    std::fs::create_dir_all(root.join("simple").join(project)).unwrap();
    let mut html = String::from("<!DOCTYPE html>\n<html><body>\n");
    for (name, data) in dists {
        std::fs::write(root.join("files").join(name), data).unwrap();
        let hash = lie.map(str::to_owned).unwrap_or_else(|| sha256(data));
        html.push_str(&format!("<a href=\"../../files/{name}#sha256={hash}\">{name}</a><br/>\n"));
    }
    html.push_str("</body></html>\n");
    std::fs::write(root.join("simple").join(project).join("index.html"), html).unwrap();
}

/// Writes `files/<name>` and lists them on a PEP 691 JSON page, `simple/<project>/index.json`
/// (and no HTML page), each with its SHA-256; the files in `yanked` are marked yanked.
fn publish_json(root: &Path, project: &str, dists: &[(&str, &[u8])], yanked: &[&str]) {
    std::fs::create_dir_all(root.join("files")).unwrap();
    std::fs::create_dir_all(root.join("simple").join(project)).unwrap();
    let files: Vec<serde_json::Value> = dists
        .iter()
        .map(|(name, data)| {
            std::fs::write(root.join("files").join(name), data).unwrap();
            serde_json::json!({
                "filename": name,
                "url": format!("../../files/{name}"),
                "hashes": {"sha256": sha256(data)},
                "yanked": yanked.contains(name),
            })
        })
        .collect();
    let page = serde_json::json!({"meta": {"api-version": "1.1"}, "name": project, "files": files});
    std::fs::write(root.join("simple").join(project).join("index.json"), page.to_string()).unwrap();
}

/// The media type of a PEP 691 JSON project page.
const JSON_PAGE: &str = "application/vnd.pypi.simple.v1+json";

/// A static file server for `root` on a free loopback port: `GET /a/b/` serves `a/b/index.json`
/// as a PEP 691 page when the request's `Accept` names that type and the file exists, else
/// `a/b/index.html`.
fn serve(root: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let root = root.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap();
                let mut wants_json = false;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    let line = line.to_ascii_lowercase();
                    wants_json |= line.starts_with("accept:") && line.contains(JSON_PAGE);
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let mut file = root.join(path.trim_start_matches('/'));
                let mut content_type = "text/html";
                if path.ends_with('/') {
                    // PEP 691: the JSON page to a client that asks for it, else the HTML one.
                    if wants_json && file.join("index.json").exists() {
                        file = file.join("index.json");
                        content_type = JSON_PAGE;
                    } else {
                        file = file.join("index.html");
                    }
                }
                let mut body = Vec::new();
                let status = match std::fs::File::open(&file).and_then(|mut f| f.read_to_end(&mut body)) {
                    Ok(_) if !path.contains("..") => "200 OK",
                    _ => {
                        body.clear();
                        "404 Not Found"
                    }
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\ncontent-type: {content_type}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body);
            });
        }
    });
    format!("http://{addr}/simple")
}

const INIT_11: &[u8] = b"VERSION = '1.1'\nfrom .util import double\n";
const UTIL: &[u8] = b"def double(x):\n    return 2 * x\n";
const DEEP: &[u8] = b"# deep\n\x00\x01\xff binary-ish bytes survive\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_from_a_local_index_land_under_lib() {
    let index = tempfile::tempdir().unwrap();
    let whl_11 = wheel(&[
        ("mypkg/__init__.py", INIT_11),
        ("mypkg/util.py", UTIL),
        ("mypkg/sub/deep.py", DEEP),
        ("mypkg/__pycache__/util.cpython-312.pyc", b"junk"),
        ("mypkg-1.1.dist-info/METADATA", b"Name: mypkg\n"),
        ("mypkg-1.1.dist-info/RECORD", b""),
    ]);
    let whl_10 = wheel(&[("mypkg/__init__.py", b"VERSION = '1.0'\n")]);
    let sdist_11 = tar_gz(&[("mypkg-1.1/setup.py", b"setup()"), ("mypkg-1.1/mypkg/__init__.py", b"sdist!")]);
    let sdist_09 = tar_gz(&[
        ("mypkg-0.9/setup.py", b"from setuptools import setup\nsetup()\n"),
        ("mypkg-0.9/pyproject.toml", b"[project]\n"),
        ("mypkg-0.9/PKG-INFO", b"Name: mypkg\n"),
        ("mypkg-0.9/mypkg.egg-info/PKG-INFO", b"Name: mypkg\n"),
        ("mypkg-0.9/mypkg/__init__.py", b"VERSION = '0.9'\n"),
        ("mypkg-0.9/mypkg/tests/test_it.py", b"def test(): pass\n"),
        ("mypkg-0.9/tests/test_top.py", b"def test(): pass\n"),
        ("mypkg-0.9/mymod.py", b"MOD = 1\n"),
    ]);
    publish(
        index.path(),
        "mypkg",
        &[
            ("mypkg-0.9.tar.gz", &sdist_09),
            ("mypkg-1.0-py3-none-any.whl", &whl_10),
            ("mypkg-1.1.tar.gz", &sdist_11),
            ("mypkg-1.1-py3-none-any.whl", &whl_11),
        ],
        None,
    );
    let bad = wheel(&[("badpkg/__init__.py", b"x = 1\n")]);
    publish(index.path(), "badpkg", &[("badpkg-1.0-py3-none-any.whl", &bad)], Some(&"0".repeat(64)));
    let evil =
        tar_gz(&[("evilpkg-1.0/evilpkg/__init__.py", b""), ("evilpkg-1.0/../../../escaped.py", b"pwned")]);
    publish(index.path(), "evilpkg", &[("evilpkg-1.0.tar.gz", &evil)], None);
    // A project with only a PEP 691 JSON page: post10 is newer than post9, the yanked 2.0 is not
    // offered.
    let json_post9 = wheel(&[("jsonpkg/__init__.py", b"V = 'post9'\n")]);
    let json_post10 = wheel(&[("jsonpkg/__init__.py", b"V = 'post10'\n")]);
    let json_yanked = wheel(&[("jsonpkg/__init__.py", b"V = 'yanked'\n")]);
    publish_json(
        index.path(),
        "jsonpkg",
        &[
            ("jsonpkg-1.0.post10-py3-none-any.whl", &json_post10),
            ("jsonpkg-1.0.post9-py3-none-any.whl", &json_post9),
            ("jsonpkg-2.0-py3-none-any.whl", &json_yanked),
        ],
        &["jsonpkg-2.0-py3-none-any.whl"],
    );
    let url = serve(index.path().to_owned());

    let data = tempfile::tempdir().unwrap();
    let boards = tempfile::tempdir().unwrap();
    let roost = Roost::start(data.path(), Some(&format!("[boards]\npackage_index = \"{url}/\"\n")));
    let _agents = agents(&roost, boards.path(), &["b-1", "b-2"], &[]);
    wait_boards(&roost, &["b-1", "b-2"], "idle").await;

    // The newest version, as its wheel (not the sdist of the same version), metadata dropped.
    let (out, stdout, stderr) = cli(&roost, &["install", "b-[1-2]", "MyPkg"]).await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Installing mypkg 1.1 (mypkg-1.1-py3-none-any.whl): 3 file(s)"), "{stdout}");
    let want = files(&[
        ("lib/mypkg/__init__.py", INIT_11),
        ("lib/mypkg/util.py", UTIL),
        ("lib/mypkg/sub/deep.py", DEEP),
    ]);
    for b in ["b-1", "b-2"] {
        assert_eq!(tree(&boards.path().join(b)), want, "{b}");
        assert!(stdout.contains(&format!("{b}: done (3 file(s), ")), "{stdout}");
    }

    // A pinned version only published as an sdist: the code, not setup.py, metadata or tests.
    let (out, stdout, stderr) = cli(&roost, &["install", "b-1", "mypkg==0.9"]).await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lib = tree(&boards.path().join("b-1"));
    assert_eq!(lib["lib/mypkg/__init__.py"], b"VERSION = '0.9'\n");
    assert_eq!(lib["lib/mymod.py"], b"MOD = 1\n");
    assert!(
        !lib.keys().any(|k| k.contains("setup.py")
            || k.contains("tests")
            || k.contains("egg-info")
            || k.contains("PKG-INFO")
            || k.contains("pyproject")),
        "{:?}",
        lib.keys()
    );

    // From the JSON page: the newest by PEP 440, not by comparing "post10" and "post9" as text.
    let (out, stdout, stderr) = cli(&roost, &["install", "b-2", "jsonpkg"]).await;
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Installing jsonpkg 1.0.post10 (jsonpkg-1.0.post10-py3-none-any.whl)"),
        "{stdout}"
    );
    assert_eq!(tree(&boards.path().join("b-2"))["lib/jsonpkg/__init__.py"], b"V = 'post10'\n");

    // A wrong SHA-256 in the index: refused before any board is sent anything.
    let (out, stdout, stderr) = cli(&roost, &["install", "b-[1-2]", "badpkg"]).await;
    assert!(!out.status.success(), "{stdout}");
    assert!(stderr.contains("SHA-256 mismatch"), "{stderr}");
    for b in ["b-1", "b-2"] {
        assert!(!boards.path().join(b).join("lib/badpkg").exists(), "{b} got badpkg");
    }

    // An sdist with a `../` member: refused, nothing written anywhere.
    let (out, stdout, stderr) = cli(&roost, &["install", "b-[1-2]", "evilpkg"]).await;
    assert!(!out.status.success(), "{stdout}");
    assert!(stderr.contains("unsafe archive member") && stderr.contains("'..'"), "{stderr}");
    for b in ["b-1", "b-2"] {
        assert!(!boards.path().join(b).join("lib/evilpkg").exists());
    }
    assert!(!boards.path().join("escaped.py").exists());

    // Unknown package and pinned version: a clear error.
    let (out, _, stderr) = cli(&roost, &["install", "b-1", "nosuchpkg"]).await;
    assert!(!out.status.success());
    assert!(stderr.contains("nosuchpkg"), "{stderr}");
    let (out, _, stderr) = cli(&roost, &["install", "b-1", "mypkg==7.0"]).await;
    assert!(!out.status.success());
    assert!(stderr.contains("version 7.0"), "{stderr}");

    // One board missing: the others still install; the exit status says one failed.
    let (out, stdout, stderr) = cli(&roost, &["install", "b-[1-3]", "mypkg"]).await;
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("b-3: failed: no board named 'b-3'"), "{stdout}");
    assert!(stdout.contains("b-1: done") && stdout.contains("b-2: done"), "{stdout}");
    assert!(stderr.contains("1 board(s) failed: b-3"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_modules_directories_and_archives_land_under_lib() {
    let data = tempfile::tempdir().unwrap();
    let boards = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    // No package index configured: local packages still install; names get a clear error.
    let roost = Roost::start(data.path(), None);
    let _agents = agents(&roost, boards.path(), &["b-1", "b-2"], &[]);
    wait_boards(&roost, &["b-1", "b-2"], "idle").await;

    let module = src.path().join("blink.py");
    std::fs::write(&module, b"import machine\n").unwrap();
    let (out, stdout, stderr) = cli(&roost, &["install", "b-[1-2]", module.to_str().unwrap()]).await;
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let dir = src.path().join("drivers");
    std::fs::create_dir_all(dir.join("sensors/__pycache__")).unwrap();
    std::fs::write(dir.join("__init__.py"), b"").unwrap();
    std::fs::write(dir.join("sensors/bme280.py"), b"class BME280: pass\n").unwrap();
    std::fs::write(dir.join("sensors/table.bin"), [0u8, 1, 2, 255]).unwrap();
    std::fs::write(dir.join("sensors/__pycache__/bme280.cpython-312.pyc"), b"junk").unwrap();
    let (out, stdout, stderr) = cli(&roost, &["install", "b-[1-2]", dir.to_str().unwrap()]).await;
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let whl = src.path().join("tiny-2.0-py3-none-any.whl");
    std::fs::write(&whl, wheel(&[("tiny.py", b"T = 2\n"), ("tiny-2.0.dist-info/METADATA", b"")])).unwrap();
    let (out, stdout, stderr) = cli(&roost, &["install", "b-[1-2]", whl.to_str().unwrap()]).await;
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let want = files(&[
        ("lib/blink.py", b"import machine\n"),
        ("lib/drivers/__init__.py", b""),
        ("lib/drivers/sensors/bme280.py", b"class BME280: pass\n"),
        ("lib/drivers/sensors/table.bin", &[0, 1, 2, 255]),
        ("lib/tiny.py", b"T = 2\n"),
    ]);
    for b in ["b-1", "b-2"] {
        assert_eq!(tree(&boards.path().join(b)), want, "{b}");
    }

    // A local sdist with a `../` member is refused too.
    let evil = src.path().join("evil-1.0.tar.gz");
    std::fs::write(&evil, tar_gz(&[("evil-1.0/evil.py", b""), ("evil-1.0/../../x.py", b"")])).unwrap();
    let (out, _, stderr) = cli(&roost, &["install", "b-1", evil.to_str().unwrap()]).await;
    assert!(!out.status.success());
    assert!(stderr.contains("unsafe archive member"), "{stderr}");
    assert!(!boards.path().join("b-1/lib/evil.py").exists());

    let (out, _, stderr) = cli(&roost, &["install", "b-1", "somepkg"]).await;
    assert!(!out.status.success());
    assert!(stderr.contains("no package index configured") && stderr.contains("package_index"), "{stderr}");
}

/// The newest file of each project as `install` resolves it, on a JSON page and on an HTML one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_html_index_pages_resolve_versions_by_pep_440() {
    use roost::boards::install::{self, InstallError, Limits};

    let index = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str], &str)] = &[
        ("posts", &["1.0", "1.0.post9", "1.0.post10"], "1.0.post10"),
        ("alphas", &["2.0a9", "2.0a10"], "2.0a10"),
        ("devs", &["3.0.dev1", "3.0a1"], "3.0a1"),
        ("finals", &["1.9", "1.10", "2.0rc1", "2.0.dev3"], "1.10"),
    ];
    // Each project twice: `{project}-json` with only a JSON page, `{project}-html` with only HTML.
    let sdist = |name: &str, v: &str| tar_gz(&[(&format!("{name}-{v}/m.py"), v.as_bytes())]);
    for (project, versions, _) in cases {
        for page in ["json", "html"] {
            let name = format!("{project}-{page}");
            let dists: Vec<(String, Vec<u8>)> =
                versions.iter().map(|v| (format!("{name}-{v}.tar.gz"), sdist(&name, v))).collect();
            let dists: Vec<(&str, &[u8])> = dists.iter().map(|(f, d)| (f.as_str(), d.as_slice())).collect();
            if page == "json" {
                publish_json(index.path(), &name, &dists, &[]);
            } else {
                publish(index.path(), &name, &dists, None);
            }
        }
    }
    let url = serve(index.path().to_owned());
    let limits = Limits { max_download_bytes: 1 << 20, max_unpacked_bytes: 1 << 20, max_files: 100 };

    for (project, _, newest) in cases {
        for page in ["json", "html"] {
            let name = format!("{project}-{page}");
            let (label, filename, data) = install::fetch(&url, &name, limits).await.unwrap();
            assert_eq!(label, format!("{name} {newest}"));
            assert_eq!(filename, format!("{name}-{newest}.tar.gz"));
            assert_eq!(data, sdist(&name, newest), "{name}: the bytes of the file named");
        }
    }
    // The server answers a JSON page only to a request that asks for one and `posts-json` has no
    // HTML page: finding it shows the request asked for JSON.
    assert!(!index.path().join("simple/posts-json/index.html").exists());
    let (label, ..) = install::fetch(&url, "posts-json==1.0.post9", limits).await.unwrap();
    assert_eq!(label, "posts-json 1.0.post9");
    let err = install::fetch(&url, "posts-html==1.0.post1", limits).await.unwrap_err();
    assert!(matches!(err, InstallError::NotFound { .. }), "{err}");
}
