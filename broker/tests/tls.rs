//! TLS with the real `roost`: certificates from `roost tls init` / `roost tls device`, MQTT over
//! TLS with device credentials and with device certificates (mosquitto_pub as the client), the
//! admin API over HTTPS with the `roost` CLI, and a `roost-board` agent over TLS with its own
//! certificate. Each refusal a stranger would meet is tried: no TLS, an untrusted server, no
//! client certificate, one from another CA, one for an unregistered or revoked device.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::boards::{cli, text, wait_boards, Agent};
use common::{add_device, rows_after_stop, Roost, ROOST};

/// `roost tls init` in `dir` for 127.0.0.1 and localhost, and a certificate for each device.
fn pki(dir: &Path, devices: &[&str]) -> PathBuf {
    let run = |args: &[&str]| {
        let out = Command::new(ROOST).args(args).arg("--dir").arg(dir).output().unwrap();
        assert!(out.status.success(), "roost {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["tls", "init", "--san", "127.0.0.1", "--san", "localhost"]);
    for d in devices {
        run(&["tls", "device", d]);
    }
    dir.to_owned()
}

/// Publishes one QoS 1 message with mosquitto_pub and `args`; whether it was acknowledged, and
/// what mosquitto_pub said.
fn publish(addr: SocketAddr, args: &[&str], topic: &str, payload: &str) -> (bool, String) {
    let out = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string(), "-q", "1", "-t", topic, "-m", payload])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("mosquitto_pub not found: run `make services`");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn mqtt_over_tls_takes_device_credentials_and_refuses_plain_and_untrusted_connections() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir.path().join("pki"), &[]);
    let ca = pki.join("ca.pem");
    let config = format!(
        "[mqtt]\nallow_anonymous = false\n[mqtt.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
        path(&pki.join("server.pem")),
        path(&pki.join("server.key"))
    );
    let roost = Roost::start(&dir.path().join("data"), Some(&config));
    let tls = roost.mqtts.expect("the TLS listener");
    let secret = add_device(&roost, "pw-1");

    let creds = ["-i", "pw-1", "-u", "pw-1", "-P", &secret];
    let with_ca = [&creds[..], &["--cafile", path(&ca)]].concat();
    let (ok, err) = publish(tls, &with_ca, "devices/pw-1/env", r#"{"t":1}"#);
    assert!(ok, "a device with its secret over TLS: {err}");
    // The server's name is checked: "localhost" is in the certificate too.
    let by_name = [&with_ca[..], &["-h", "localhost"]].concat();
    assert!(publish(tls, &by_name, "devices/pw-1/env", r#"{"t":2}"#).0);

    // Refused: a wrong secret, a client that does not trust the server's CA, plain MQTT on
    // the TLS port, and TLS on the plain port.
    let wrong = ["-i", "pw-1", "-u", "pw-1", "-P", "not-the-secret", "--cafile", path(&ca)];
    assert!(!publish(tls, &wrong, "devices/pw-1/env", r#"{"t":3}"#).0);
    let other = pki_other(dir.path());
    let other_ca = other.join("ca.pem");
    let untrusted = [&creds[..], &["--cafile", path(&other_ca)]].concat();
    let (ok, err) = publish(tls, &untrusted, "devices/pw-1/env", r#"{"t":4}"#);
    assert!(!ok, "a server certificate from another CA must not be trusted");
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("TLS") || err.contains("tls"),
        "{err}"
    );
    assert!(!publish(tls, &creds, "devices/pw-1/env", r#"{"t":5}"#).0, "plain MQTT on the TLS port");
    assert!(!publish(roost.mqtt, &with_ca, "devices/pw-1/env", r#"{"t":6}"#).0, "TLS on the plain port");

    assert_eq!(rows_after_stop(roost, &["pw-1"]), [2], "exactly the two accepted messages are stored");
}

/// A second CA, of someone else, with a certificate for a device named like ours.
fn pki_other(dir: &Path) -> PathBuf {
    pki(&dir.join("other"), &["sensor-1"])
}

#[test]
fn device_certificates_name_the_device_and_strangers_certificates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir.path().join("pki"), &["sensor-1", "ghost"]);
    let other = pki_other(dir.path());
    let config = format!(
        "[mqtt.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
        path(&pki.join("server.pem")),
        path(&pki.join("server.key")),
        path(&pki.join("ca.pem"))
    );
    let roost = Roost::start(&dir.path().join("data"), Some(&config));
    let tls = roost.mqtts.expect("the TLS listener");
    add_device(&roost, "sensor-1");
    let ca = pki.join("ca.pem");
    let cert = |pki: &Path, name: &str| {
        let dev = pki.join("devices");
        vec![
            "--cafile".to_owned(),
            path(&ca).to_owned(),
            "--cert".to_owned(),
            path(&dev.join(format!("{name}.pem"))).to_owned(),
            "--key".to_owned(),
            path(&dev.join(format!("{name}.key"))).to_owned(),
        ]
    };
    let args = |client_id: &str, cert: &[String]| {
        let mut a = vec!["-i".to_owned(), client_id.to_owned()];
        a.extend_from_slice(cert);
        a
    };
    let publish_as = |client_id: &str, cert: &[String], topic: &str| {
        let a = args(client_id, cert);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        publish(tls, &a, topic, r#"{"t":1}"#)
    };

    let own = cert(&pki, "sensor-1");
    let (ok, err) = publish_as("sensor-1", &own, "devices/sensor-1/env");
    assert!(ok, "the device with its certificate: {err}");
    // The certificate is who the client is: not another device's topics, not another client id.
    // (MQTT 3.1.1 cannot refuse a publish in its PUBACK: the message is dropped, checked below.)
    publish_as("sensor-1", &own, "devices/sensor-2/env");
    assert!(!publish_as("sensor-2", &own, "devices/sensor-1/env").0, "another client id");
    // No certificate; a certificate for a device never added; one from another CA.
    let (ok, _) = publish(tls, &["-i", "sensor-1", "--cafile", path(&ca)], "devices/sensor-1/env", "{}");
    assert!(!ok, "no client certificate");
    assert!(!publish_as("ghost", &cert(&pki, "ghost"), "devices/ghost/env").0, "unregistered device");
    let foreign = [&cert(&pki, "sensor-1")[..2], &cert(&other, "sensor-1")[2..]].concat();
    assert!(!publish_as("sensor-1", &foreign, "devices/sensor-1/env").0, "a certificate of another CA");
    // Revoked: its certificate no longer lets it in.
    let (ok, _, err) = roost.cli(&["device", "revoke", "sensor-1"]);
    assert!(ok, "{err}");
    assert!(!publish_as("sensor-1", &own, "devices/sensor-1/env").0, "a revoked device");

    assert!(roost.log_text().contains("the client certificate's common name is no registered device"));
    assert_eq!(
        rows_after_stop(roost, &["sensor-1", "sensor-2"]),
        [1, 0],
        "only the one accepted message is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_over_https_serves_the_cli_and_refuses_plain_or_untrusting_clients() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir.path().join("pki"), &[]);
    let ca = pki.join("ca.pem");
    let config = format!(
        "[api.tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n",
        path(&pki.join("server.pem")),
        path(&pki.join("server.key")),
        path(&ca),
    );
    let roost = Roost::start(&dir.path().join("data"), Some(&config));
    let pem = std::fs::read(&ca).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let health = https.get(format!("https://{}/health", roost.api)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let status = https
        .get(format!("https://{}/api/v1/status", roost.api))
        .bearer_auth(&roost.token)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    // curl, as an operator would.
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--cacert", path(&ca), "-H"])
        .arg(format!("Authorization: Bearer {}", roost.token))
        .arg(format!("https://localhost:{}/api/v1/status", roost.api.port()))
        .output()
        .unwrap();
    assert!(out.status.success(), "curl --cacert: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"sinks\""));
    let out = Command::new("curl")
        .args(["-sS", "--fail"])
        .arg(format!("https://localhost:{}/health", roost.api.port()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "curl without the CA must refuse the server");
    let plain = reqwest::get(format!("http://{}/health", roost.api)).await;
    assert!(plain.map_or(true, |r| !r.status().is_success()), "plain HTTP on the HTTPS port");
    let untrusting = reqwest::Client::new().get(format!("https://{}/health", roost.api)).send().await;
    assert!(untrusting.is_err(), "a client without the CA must not trust the API");
    // The CLI finds the API, speaks HTTPS and trusts api.tls.ca; without it, it says why not.
    let config_file = roost.dir.join("test-config.toml");
    let (ok, out, err) = roost.cli(&["--config", path(&config_file), "device", "add", "d-1"]);
    assert!(ok && out.contains("d-1"), "roost device add over HTTPS: {out}{err}");
    let no_ca = dir.path().join("no-ca.toml");
    std::fs::write(&no_ca, config.replace(&format!("ca = \"{}\"\n", path(&ca)), "")).unwrap();
    let (ok, _, err) = roost.cli(&["--config", path(&no_ca), "device", "list"]);
    assert!(!ok && err.contains("cannot reach roost"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_agent_connects_over_tls_with_its_certificate_and_runs_commands() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir.path().join("pki"), &["b-1"]);
    let ca = pki.join("ca.pem");
    let config = format!(
        "[mqtt.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
        path(&pki.join("server.pem")),
        path(&pki.join("server.key")),
        path(&ca),
    );
    let roost = Roost::start(&dir.path().join("data"), Some(&config));
    add_device(&roost, "b-1");
    let (cert, key) = (pki.join("devices/b-1.pem"), pki.join("devices/b-1.key"));
    let server = roost.mqtts.expect("the TLS listener").to_string();
    let args =
        ["--server", &server, "--ca-file", path(&ca), "--cert-file", path(&cert), "--key-file", path(&key)];
    let _agent = Agent::start_at(&dir.path().join("b-1"), "b-1", &args);
    wait_boards(&roost, &["b-1"], "idle").await;
    let out = cli(&roost, &["exec", "b-1", "-c", "echo over-tls"], "").await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("over-tls"), "{stdout}");
    // An upload of 300 KiB (several chunks) lands byte for byte.
    let data: Vec<u8> = (0..300 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let file = dir.path().join("blob.bin");
    std::fs::write(&file, &data).unwrap();
    let out = cli(&roost, &["upload", "b-1", path(&file), "lib/blob.bin"], "").await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(std::fs::read(dir.path().join("b-1/lib/blob.bin")).unwrap(), data);

    // An agent that does not trust the server's CA never comes online.
    let other = pki_other(dir.path());
    let other_ca = other.join("ca.pem");
    let bad = [&args[..2], &["--ca-file", path(&other_ca)]].concat();
    let mut stranger = Agent::start_at(&dir.path().join("b-2"), "b-2", &bad);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let boards = common::boards::api_get(&roost, "/boards").await;
    assert!(!boards.to_string().contains("\"b-2\""), "{boards}");
    stranger.kill();
    let log = std::fs::read_to_string(dir.path().join("b-2.log")).unwrap();
    assert!(log.to_lowercase().contains("certificate"), "the agent says why: {log}");
}

/// Publishes one QoS 1 message over a secure WebSocket with paho-mqtt (the conformance suite's
/// Python, from `make services`): whether it was acknowledged, and what the client said.
fn publish_over_wss(addr: SocketAddr, ca: &Path, device: &str, secret: &str) -> (bool, String) {
    const CLIENT: &str = r#"
import sys, paho.mqtt.client as mqtt
port, ca, device, secret = sys.argv[1:]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device, transport="websockets")
c.ws_set_options(path="/mqtt")
c.tls_set(ca_certs=ca)
c.username_pw_set(device, secret)
c.connect("localhost", int(port))
c.loop_start()
info = c.publish(f"devices/{device}/env", '{"t": 7}', qos=1)
info.wait_for_publish(10)
assert info.is_published(), "no PUBACK"
c.disconnect()
c.loop_stop()
"#;
    let python = std::env::var("ROOST_TEST_CONFORMANCE_PYTHON")
        .expect("ROOST_TEST_CONFORMANCE_PYTHON is not set: run `make services`");
    let out = Command::new(python)
        .args(["-c", CLIENT, &addr.port().to_string(), path(ca), device, secret])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_client_publishes_over_a_secure_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir.path().join("pki"), &[]);
    let wss: SocketAddr = format!("127.0.0.1:{}", roost_testkit::free_port()).parse().unwrap();
    let config = format!(
        "[mqtt.tls]\nlisten = \"127.0.0.1:0\"\nws_listen = \"{wss}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        path(&pki.join("server.pem")),
        path(&pki.join("server.key"))
    );
    let roost = Roost::start(&dir.path().join("data"), Some(&config));
    let secret = add_device(&roost, "ws-1");
    let (ok, err) = publish_over_wss(wss, &pki.join("ca.pem"), "ws-1", &secret);
    assert!(ok, "a device over wss: {err}");
    // A client that does not trust the server's CA gets nothing through.
    let other = pki_other(dir.path());
    let (ok, err) = publish_over_wss(wss, &other.join("ca.pem"), "ws-1", &secret);
    assert!(!ok && err.to_lowercase().contains("certificate"), "{err}");
    assert_eq!(rows_after_stop(roost, &["ws-1"]), [1]);
}
