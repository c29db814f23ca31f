//! Boards end to end: one real `roost`, real `roost-board` agent processes, the CLI run as an
//! operator would, and hand-made MQTT clients playing hostile or broken boards. The helpers
//! (agents, CLI, API) are in `common/boards.rs`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::boards::{agents, api_get, cli, counters, sections, text, wait_boards, Agent};
use common::{Roost, ROOST};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_on_every_board_and_prints_each_under_its_header() {
    let data = tempfile::tempdir().unwrap();
    let boards = tempfile::tempdir().unwrap();
    let roost = Roost::start(data.path(), None);
    let _agents = agents(&roost, boards.path(), &["b-1", "b-2", "b-3"], &[]);
    wait_boards(&roost, &["b-1", "b-2", "b-3"], "idle").await;

    let out = cli(&roost, &["list"], "").await;
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(stdout.starts_with("Name  Platform"), "{stdout}");
    for b in ["b-1", "b-2", "b-3"] {
        let row = stdout.lines().find(|l| l.starts_with(b)).unwrap_or_else(|| panic!("{stdout}"));
        assert!(row.contains("linux-") && row.contains("idle") && row.contains("ago"), "{row}");
    }

    let out =
        cli(&roost, &["exec", "b-[1-3]"], "echo hi\necho \"in $(basename $(pwd))\"\necho oops >&2\n").await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let mut got = sections(&stdout);
    got.sort();
    assert_eq!(got.len(), 3, "{stdout}");
    for ((name, body), want) in got.iter().zip(["b-1", "b-2", "b-3"]) {
        assert_eq!(name, want);
        let mut lines: Vec<&str> = body.lines().collect();
        lines.sort();
        assert_eq!(lines, ["hi", format!("in {want}").as_str(), "oops"], "{stdout}");
    }

    // A failing board, a missing board: every board still reported, the exit status says so.
    let out = cli(&roost, &["exec", "b-[1-2],nope", "-c", "echo x; exit 3"], "").await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    let got = sections(&stdout);
    assert_eq!(got.len(), 3, "{stdout}");
    let nope = &got.iter().find(|(n, _)| n == "nope").unwrap().1;
    assert_eq!(nope, "-- failed: no board named 'nope'\n");
    let b1 = &got.iter().find(|(n, _)| n == "b-1").unwrap().1;
    assert_eq!(b1, "x\n-- failed: exit status 3\n");
    assert!(
        stderr.contains("3 board(s) failed: b-[1-2],nope") || stderr.contains("3 board(s) failed"),
        "{stderr}"
    );

    // A deadline: the board stops the code and says so.
    let out = cli(&roost, &["exec", "b-1", "--timeout", "1", "-c", "echo started; sleep 30"], "").await;
    let (stdout, _) = text(&out);
    assert!(!out.status.success());
    assert!(stdout.contains("started\n-- failed: timed out after 1000 ms"), "{stdout}");

    // Bad hostlists are refused before anything runs.
    let out = cli(&roost, &["exec", "b-[3-1", "-c", "true"], "").await;
    assert!(!out.status.success());
    assert!(text(&out).1.contains("error: "), "{:?}", text(&out));
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_of_one_mib_reaches_three_boards_byte_for_byte() {
    let data = tempfile::tempdir().unwrap();
    let boards = tempfile::tempdir().unwrap();
    let roost = Roost::start(data.path(), None);
    let _agents = agents(&roost, boards.path(), &["b-1", "b-2", "b-3"], &[]);
    wait_boards(&roost, &["b-1", "b-2", "b-3"], "idle").await;

    let file = boards.path().join("payload.bin");
    let bytes: Vec<u8> = (0..(1u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&file, &bytes).unwrap();
    let out = cli(&roost, &["upload", "b-[1-3]", file.to_str().unwrap(), "lib/payload.bin"], "").await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for b in ["b-1", "b-2", "b-3"] {
        assert!(stdout.contains(&format!("Copying file to {b}:lib/payload.bin\n")), "{stdout}");
        assert!(stdout.contains(&format!("{b}: done (1048576 bytes)")), "{stdout}");
        assert!(stdout.lines().any(|l| l.starts_with(&format!("{b}: ")) && l.contains('%')), "{stdout}");
        let landed = std::fs::read(boards.path().join(b).join("lib/payload.bin")).unwrap();
        assert!(landed == bytes, "{b}: the file differs");
        let leftovers: Vec<_> = std::fs::read_dir(boards.path().join(b).join("lib")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "{b}: temporary files left");
    }

    // ls and cat read it back; DEST defaults to the file's name.
    let out = cli(&roost, &["ls", "b-2", "lib"], "").await;
    assert_eq!(text(&out).0, "file     1048576  payload.bin\n");
    std::fs::write(boards.path().join("hello.txt"), "hello, board\n").unwrap();
    let out = cli(&roost, &["upload", "b-1", boards.path().join("hello.txt").to_str().unwrap()], "").await;
    assert!(out.status.success(), "{:?}", text(&out));
    let out = cli(&roost, &["cat", "b-1", "hello.txt"], "").await;
    assert_eq!(text(&out).0, "hello, board\n");
    let out = cli(&roost, &["rm", "b-1", "hello.txt"], "").await;
    assert!(out.status.success());
    let out = cli(&roost, &["cat", "b-1", "hello.txt"], "").await;
    assert!(!out.status.success());
    assert!(text(&out).0.contains("no such file or directory: hello.txt"), "{:?}", text(&out));
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_upload_fails_only_that_board_and_a_retry_resumes() {
    let data = tempfile::tempdir().unwrap();
    let boards = tempfile::tempdir().unwrap();
    let roost = Roost::start(data.path(), None);
    // Small messages make many chunks, so the upload is still going when the agent dies.
    let small = ["--max-payload", "8192"];
    let mut agents = agents(&roost, boards.path(), &["b-1", "b-2", "b-3"], &small);
    wait_boards(&roost, &["b-1", "b-2", "b-3"], "idle").await;
    let file = boards.path().join("payload.bin");
    let bytes: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &bytes).unwrap();

    let mut upload = Command::new(ROOST)
        .args(["board", "upload", "b-[1-3]", file.to_str().unwrap(), "data.bin", "--data-dir"])
        .arg(&roost.dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(upload.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    // The first progress of b-2, then kill it.
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("b-2: ") && line.contains('%') {
            break;
        }
    }
    agents[1].kill();
    for line in lines {
        seen.push_str(&line.unwrap());
        seen.push('\n');
    }
    let status = upload.wait().unwrap();
    assert!(!status.success(), "{seen}");
    assert!(seen.contains("b-1: done (1048576 bytes)"), "{seen}");
    assert!(seen.contains("b-3: done (1048576 bytes)"), "{seen}");
    let b2 = seen.lines().find(|l| l.starts_with("b-2: failed: ")).unwrap_or_else(|| panic!("{seen}"));
    assert!(b2.contains("board 'b-2'"), "{b2}");
    assert!(!boards.path().join("b-2/data.bin").exists());

    // Back up, the same upload resumes where b-2 stopped.
    agents[1] = Agent::start(&roost, "b-2", &boards.path().join("b-2"), &small);
    wait_boards(&roost, &["b-2"], "idle").await;
    let out = cli(&roost, &["upload", "b-2", file.to_str().unwrap(), "data.bin"], "").await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let done = stdout.lines().find(|l| l.starts_with("b-2: done")).unwrap();
    let resumed: u64 = done
        .split("resumed at ")
        .nth(1)
        .unwrap_or_else(|| panic!("{done}"))
        .trim_end_matches(')')
        .parse()
        .unwrap();
    assert!(resumed > 0 && resumed < bytes.len() as u64, "{done}");
    assert!(std::fs::read(boards.path().join("b-2/data.bin")).unwrap() == bytes);
    assert_eq!(agents[1].name, "b-2");
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_board_keeps_its_history_and_answers_under_its_new_name() {
    let data = tempfile::tempdir().unwrap();
    let boards = tempfile::tempdir().unwrap();
    let roost = Roost::start(data.path(), None);
    let state = boards.path().join("b-1.state");
    let _agents = agents(&roost, boards.path(), &["b-1"], &["--state-file", state.to_str().unwrap()]);
    wait_boards(&roost, &["b-1"], "idle").await;
    let out = cli(&roost, &["exec", "b-1", "-c", "echo before"], "").await;
    assert!(out.status.success());

    let out = cli(&roost, &["rename", "b-1", "lab.pi4"], "").await;
    assert_eq!(text(&out).0, "renamed 'b-1' to 'lab.pi4'\n", "{:?}", text(&out));
    wait_boards(&roost, &["lab.pi4"], "idle").await;
    let out = cli(&roost, &["exec", "lab.pi4", "-c", "echo after"], "").await;
    assert!(sections(&text(&out).0) == [("lab.pi4".to_owned(), "after\n".to_owned())], "{:?}", text(&out));

    let entry = api_get(&roost, "/boards/lab.pi4").await;
    assert_eq!(entry["renamed_from"], json!(["b-1"]));
    let ops: Vec<(&str, &str)> = entry["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["op"].as_str().unwrap(), h["board"].as_str().unwrap()))
        .collect();
    assert_eq!(ops, [("execute", "b-1"), ("rename", "b-1"), ("execute", "lab.pi4")]);
    let list = api_get(&roost, "/boards").await;
    assert!(list["boards"].as_array().unwrap().iter().all(|b| b["name"] != "b-1"), "{list:#}");
    let out = cli(&roost, &["exec", "b-1", "-c", "true"], "").await;
    assert!(text(&out).0.contains("no board named 'b-1'"));
    // The agent remembers its new name.
    assert_eq!(std::fs::read_to_string(&state).unwrap(), r#"{"from":"b-1","to":"lab.pi4"}"#);
    // The registry survives a restart.
    assert!(roost.stop().success());
    let roost = Roost::start(data.path(), None);
    let entry = api_get(&roost, "/boards/lab.pi4").await;
    assert_eq!(entry["history"].as_array().unwrap().len(), 3);
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_reconnect_after_a_server_restart_and_reset_restarts_them() {
    let data = tempfile::tempdir().unwrap();
    let boards = tempfile::tempdir().unwrap();
    let roost = Roost::start(data.path(), None);
    let mqtt = roost.mqtt;
    let _agents = agents(&roost, boards.path(), &["b-1"], &[]);
    wait_boards(&roost, &["b-1"], "idle").await;
    assert!(roost.stop().success());
    // The same port again, so the agent finds it.
    let roost = Roost::start_with(data.path(), None, &mqtt.to_string());
    wait_boards(&roost, &["b-1"], "idle").await;
    let out = cli(&roost, &["exec", "b-1", "-c", "echo back"], "").await;
    assert!(out.status.success(), "{:?}", text(&out));

    let out = cli(&roost, &["reset", "b-1"], "").await;
    assert_eq!(text(&out).0, "b-1: reset ok\n");
    wait_boards(&roost, &["b-1"], "idle").await;
    let out = cli(&roost, &["exec", "b-1", "-c", "echo again"], "").await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_uploads_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let boards = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let cfg = "[boards]\nmax_upload_bytes = 209715200\n";
    let roost = Roost::start(data.path(), Some(cfg));
    let _agents = agents(&roost, boards.path(), &["b-1"], &["--max-upload-bytes", "1000000"]);
    wait_boards(&roost, &["b-1"], "idle").await;
    let small = boards.path().join("small.txt");
    std::fs::write(&small, "x").unwrap();

    for dest in ["../evil", "/etc/evil", "a/../../evil"] {
        let out = cli(&roost, &["upload", "b-1", small.to_str().unwrap(), dest], "").await;
        assert!(!out.status.success(), "{dest}");
        assert!(text(&out).1.contains("path"), "{dest}: {:?}", text(&out));
    }
    // A link that leads out of the root: only the board can see it, and refuses.
    std::os::unix::fs::symlink(outside.path(), boards.path().join("b-1/out")).unwrap();
    let out = cli(&roost, &["upload", "b-1", small.to_str().unwrap(), "out/evil"], "").await;
    assert!(!out.status.success());
    assert!(text(&out).0.contains("leaves the board's root directory"), "{:?}", text(&out));
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());

    // 100 MB to a board that takes 1 MB: refused on the first chunk, nothing written.
    let big = boards.path().join("big.bin");
    std::fs::File::create(&big).unwrap().set_len(100_000_000).unwrap();
    let out = cli(&roost, &["upload", "b-1", big.to_str().unwrap(), "big.bin"], "").await;
    let (stdout, _) = text(&out);
    assert!(!out.status.success());
    assert!(
        stdout.contains("b-1: failed: upload of 100000000 bytes is over this board's limit of 1000000 bytes"),
        "{stdout}"
    );
    let names: Vec<_> =
        std::fs::read_dir(boards.path().join("b-1")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["out"], "nothing but the link in the board's root");
    assert!(roost.stop().success());
}

/// A hand-made board: an MQTT client that answers however the test likes.
struct FakeBoard {
    client: AsyncClient,
    events: EventLoop,
    name: String,
}

impl FakeBoard {
    async fn connect(addr: SocketAddr, name: &str, protocol_version: u32) -> FakeBoard {
        let opts = MqttOptions::new(name, addr.ip().to_string(), addr.port());
        let (client, mut events) = AsyncClient::new(opts, 64);
        loop {
            if let Event::Incoming(Packet::ConnAck(_)) = events.poll().await.unwrap() {
                break;
            }
        }
        client.subscribe(format!("roost/boards/{name}/cmd"), QoS::AtLeastOnce).await.unwrap();
        let status = json!({"state":"idle","platform":"fake","client_version":"0","protocol_version":protocol_version});
        client
            .publish(format!("roost/boards/{name}/status"), QoS::AtLeastOnce, true, status.to_string())
            .await
            .unwrap();
        // Until the status is acknowledged: Roost has seen it then.
        loop {
            if let Event::Incoming(Packet::PubAck(_)) = events.poll().await.unwrap() {
                break;
            }
        }
        FakeBoard { client, events, name: name.to_owned() }
    }

    /// The next request on the board's cmd topic.
    async fn next_request(&mut self) -> Value {
        loop {
            match tokio::time::timeout(Duration::from_secs(60), self.events.poll()).await.unwrap().unwrap() {
                Event::Incoming(Packet::Publish(p)) => return serde_json::from_slice(&p.payload).unwrap(),
                _ => continue,
            }
        }
    }

    async fn reply(&mut self, topic_board: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(format!("roost/boards/{topic_board}/reply"), QoS::AtLeastOnce, false, payload.into())
            .await
            .unwrap();
    }

    /// Polls until the broker closes the connection; panics if it does not.
    async fn expect_disconnect(&mut self) {
        loop {
            match tokio::time::timeout(Duration::from_secs(60), self.events.poll()).await {
                Ok(Err(_)) => return,
                Ok(Ok(_)) => {}
                Err(_) => panic!("{}: the broker did not disconnect the client", self.name),
            }
        }
    }

    /// Keeps the connection serviced in the background.
    fn spawn_poll(mut self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move { while self.events.poll().await.is_ok() {} })
    }
}

async fn exec_api(roost: &Roost, boards: &str, code: &str, timeout_ms: u64) -> Vec<Value> {
    let resp = reqwest::Client::new()
        .post(roost.url("/api/v1/boards/exec"))
        .bearer_auth(&roost.token)
        .json(&json!({"boards": boards, "code": code, "timeout_ms": timeout_ms}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_forged_replies_are_ignored_and_counted() {
    let data = tempfile::tempdir().unwrap();
    let roost = Roost::start(data.path(), None);
    let mut f1 = FakeBoard::connect(roost.mqtt, "f-1", 1).await;
    let mut f2 = FakeBoard::connect(roost.mqtt, "f-2", 1).await;
    wait_boards(&roost, &["f-1", "f-2"], "idle").await;

    let roost_ref = &roost;
    let exec = async move { exec_api(roost_ref, "f-1", "echo hi", 60_000).await };
    let board = async {
        let req = f1.next_request().await;
        assert_eq!(req["op"], "execute");
        assert_eq!(req["code"], "echo hi");
        let id = req["id"].as_str().unwrap().to_owned();
        // Garbage on its own reply topic.
        f1.reply("f-1", "this is not json").await;
        f1.reply("f-1", r#"{"id":"x","seq":0,"type":"shout"}"#).await;
        // Another board forges the final result, on its own topic...
        f2.reply(
            "f-2",
            json!({"id": id, "seq": 0, "type": "result", "ok": false, "error": "forged"}).to_string(),
        )
        .await;
        // A client that may use f-1's topics (its username), on another connection: it is not
        // the connection f-1 registered on, so its answer does not count.
        let mut opts = MqttOptions::new("imp", roost_ref.mqtt.ip().to_string(), roost_ref.mqtt.port());
        opts.set_credentials("f-1", "x");
        let (imp, mut imp_events) = AsyncClient::new(opts, 8);
        let forged = json!({"id": id, "seq": 0, "type": "result", "ok": false, "error": "impostor"});
        imp.publish("roost/boards/f-1/reply", QoS::AtLeastOnce, false, forged.to_string()).await.unwrap();
        loop {
            if let Event::Incoming(Packet::PubAck(_)) = imp_events.poll().await.unwrap() {
                break;
            }
        }
        // ...and on f-1's topic, which the broker refuses (and disconnects it).
        f2.reply(
            "f-1",
            json!({"id": id, "seq": 0, "type": "result", "ok": false, "error": "forged"}).to_string(),
        )
        .await;
        f2.expect_disconnect().await;
        // A reply to a request nobody made.
        f1.reply("f-1", json!({"id": "nope-1", "seq": 0, "type": "result", "ok": true}).to_string()).await;
        // The real answer, with a duplicate and out of order.
        let out =
            json!({"id": id, "seq": 0, "type": "output", "stream": "stdout", "data": "hi\n"}).to_string();
        let fin = json!({"id": id, "seq": 1, "type": "result", "ok": true, "exit_code": 0}).to_string();
        f1.reply("f-1", fin.clone()).await;
        f1.reply("f-1", out.clone()).await;
        f1.reply("f-1", out).await;
        // Wrapped: the poller keeps f-1's replies flowing while the exec waits for them.
        Some(f1.spawn_poll())
    };
    let (events, poller) = tokio::join!(exec, board);
    let poller = poller.unwrap();
    let result = &events[0];
    assert_eq!(result["event"], "result", "{events:?}");
    assert_eq!(result["board"], "f-1");
    assert_eq!(result["state"], "succeeded", "{result}");
    assert_eq!(result["output"], json!([{"stream": "stdout", "data": "hi\n"}]));
    assert_eq!(events[1], json!({"event": "done", "boards": 1, "succeeded": 1, "failed": 0}));
    let c = counters(&roost).await;
    assert_eq!(c["replies_malformed"], 2, "{c}");
    assert_eq!(c["replies_forged"], 2, "{c}");
    assert_eq!(c["replies_unknown"], 1, "{c}");
    assert_eq!(c["publishes_denied"], 1, "{c}");
    poller.abort();
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_roost_publishes_commands_and_only_boards_read_their_own() {
    let data = tempfile::tempdir().unwrap();
    let boards = tempfile::tempdir().unwrap();
    let roost = Roost::start(data.path(), None);
    let _agents = agents(&roost, boards.path(), &["b-1"], &[]);
    wait_boards(&roost, &["b-1"], "idle").await;

    // An intruder publishes a command on b-1's cmd topic: refused, disconnected.
    let mut intruder = FakeBoard::connect(roost.mqtt, "intruder", 1).await;
    let cmd = json!({"id": "evil-1", "op": "execute", "code": "touch pwned", "timeout_ms": 1000});
    intruder.client.publish("roost/boards/b-1/cmd", QoS::AtLeastOnce, false, cmd.to_string()).await.unwrap();
    intruder.expect_disconnect().await;
    // Even as b-1's own username-less twin: a board may not publish on its cmd topic either.
    let mut twin = FakeBoard::connect(roost.mqtt, "b-1-twin", 1).await;
    twin.client.publish("roost/boards/b-1-twin/cmd", QoS::AtLeastOnce, false, cmd.to_string()).await.unwrap();
    twin.expect_disconnect().await;

    // A snooper may not subscribe to other boards' commands or replies, at any depth (in MQTT
    // `a/b/c/d/#` also matches `a/b/c/d`).
    let (snoop, mut events) = AsyncClient::new(MqttOptions::new("snoop", "127.0.0.1", roost.mqtt.port()), 10);
    let refused = [
        "roost/boards/+/cmd",
        "#",
        "roost/boards/+/+/#",
        "roost/boards/+/cmd/#",
        "roost/+/+/cmd",
        "+/boards/#",
    ];
    for filter in refused.iter().chain(&["roost/boards/+/status"]) {
        snoop.subscribe(*filter, QoS::AtLeastOnce).await.unwrap();
    }
    let mut acks = Vec::new();
    while acks.len() < refused.len() + 1 {
        if let Event::Incoming(Packet::SubAck(ack)) = events.poll().await.unwrap() {
            acks.push(format!("{:?}", ack.return_codes));
        }
    }
    let mut expected = vec!["[Failure]"; refused.len()];
    expected.push("[Success(AtLeastOnce)]");
    assert_eq!(acks, expected);
    // What the snooper receives while a command runs: statuses only.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let seen = tokio::spawn(async move {
        let mut topics = Vec::new();
        loop {
            tokio::select! {
                event = events.poll() => match event {
                    Ok(Event::Incoming(Packet::Publish(p))) => topics.push(p.topic),
                    Ok(_) => {}
                    Err(e) => panic!("the snooper was disconnected: {e}"),
                },
                _ = &mut stopped => return topics,
            }
        }
    });

    // A round trip through the agent: the intruder's command never ran.
    let out = cli(&roost, &["exec", "b-1", "-c", "ls"], "").await;
    assert!(out.status.success());
    assert!(!text(&out).0.contains("pwned"));
    assert!(!boards.path().join("b-1/pwned").exists());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(()).unwrap();
    let seen = seen.await.unwrap();
    assert!(seen.iter().all(|t| t.ends_with("/status")), "the snooper saw {seen:?}");
    let c = counters(&roost).await;
    assert_eq!(c["publishes_denied"], 2, "{c}");
    let metrics = reqwest::get(format!("http://{}/metrics", roost.api)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("roost_board_events_total{event=\"publishes_denied\"} 2\n"), "{metrics}");
    assert_eq!(c["subscribes_denied"], refused.len() as u64, "{c}");
    // Board topics never reach the telemetry pipelines.
    let status = roost.status().await;
    assert_eq!(status["messages_in"], 0, "{status}");
    assert!(roost.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_offline_and_unapproved_boards_fail_fast_with_clear_errors() {
    let data = tempfile::tempdir().unwrap();
    let boards = tempfile::tempdir().unwrap();
    let roost = Roost::start(data.path(), None);
    let _old = FakeBoard::connect(roost.mqtt, "old-1", 99).await;
    let list = api_get(&roost, "/boards").await;
    let entry = list["boards"].as_array().unwrap().iter().find(|b| b["name"] == "old-1").unwrap().clone();
    assert_eq!(entry["state"], "unsupported");
    assert_eq!(entry["state_detail"], "speaks protocol version 99; this server speaks 1");
    let out = cli(&roost, &["list"], "").await;
    assert!(text(&out).0.contains("unsupported (speaks protocol version 99"), "{:?}", text(&out));
    let events = exec_api(&roost, "old-1", "true", 1000).await;
    assert_eq!(events[0]["state"], "failed");
    assert!(events[0]["error"].as_str().unwrap().contains("is not sent commands"), "{events:?}");
    // Nothing was sent to it.
    assert_eq!(counters(&roost).await["requests_sent"], 0);

    // A board that stopped: fails at once, naming the board.
    let mut a = agents(&roost, boards.path(), &["b-1"], &[]);
    wait_boards(&roost, &["b-1"], "idle").await;
    roost_testkit::signal(a[0].child.id(), nix::sys::signal::Signal::SIGTERM);
    let _ = a[0].child.wait();
    wait_boards(&roost, &["b-1"], "offline").await;
    let out = cli(&roost, &["exec", "b-1", "-c", "true"], "").await;
    assert!(!out.status.success());
    assert!(text(&out).0.contains("-- failed: board 'b-1' is offline"), "{:?}", text(&out));
    assert!(roost.stop().success());

    // With approval required, a new board waits in `scan` and is sent nothing.
    let data = tempfile::tempdir().unwrap();
    let roost = Roost::start(data.path(), Some("[boards]\nrequire_approval = true\n"));
    let _a = agents(&roost, boards.path(), &["new-1"], &[]);
    let until = Instant::now() + Duration::from_secs(60);
    while !text(&cli(&roost, &["scan"], "").await).0.contains("new-1") {
        assert!(Instant::now() < until, "new-1 never showed up in scan");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = cli(&roost, &["exec", "new-1", "-c", "true"], "").await;
    assert!(text(&out).0.contains("not approved yet"), "{:?}", text(&out));
    let out = cli(&roost, &["approve", "new-1"], "").await;
    assert_eq!(text(&out).0, "new-1: approved\n");
    let out = cli(&roost, &["exec", "new-1", "-c", "echo ok"], "").await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(roost.stop().success());
}
