//! The examples in the user docs, run as written against the real binary.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Roost, ROOST};

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

#[test]
fn deploy_example_config_is_valid_and_matches_the_defaults() {
    let example = repo_file("deploy/roost.example.toml");
    let check = |args: &[&str]| {
        let out = Command::new(ROOST).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let with_example = check(&["config", "check", "--config", example.to_str().unwrap()]);
    let defaults = check(&["config", "check"]);
    assert_eq!(with_example, defaults, "deploy/roost.example.toml should spell out the defaults");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_tour_commands_produce_the_rows_it_describes() {
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let publishes: Vec<&str> = readme.lines().filter(|l| l.starts_with("mosquitto_pub ")).collect();
    assert_eq!(publishes.len(), 3, "the tour publishes three messages");
    let lines: Vec<&str> = readme.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("sqlite3 ")).expect("the tour queries with sqlite3");
    let query = format!("{} {}", lines[at].trim_end_matches('\\'), lines[at + 1].trim());

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("roost-data");
    let roost = Roost::start(&data, None);
    for p in publishes {
        let cmd = format!("{p} -h 127.0.0.1 -p {} -q 1", roost.mqtt.port());
        let out = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
        assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(roost.stop().success());

    let out = Command::new("sh").arg("-c").arg(&query).current_dir(dir.path()).output().unwrap();
    assert!(out.status.success(), "{query}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().skip(2).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 3, "{text}");
    // at (date + time), device, temp, humidity, door_open
    assert_eq!(&rows[0][2..], ["kitchen", "21.5", "40"], "{text}");
    assert_eq!(&rows[1][2..], ["garage", "12.0", "71", "1"], "{text}");
    assert_eq!(rows[2][..3], ["2026-01-01", "00:00:00", "garage"], "{text}");
    assert_eq!(rows[2][3], "12.4", "{text}");
}
