//! The data directory is private: made 0700 with every file in it 0600, and a directory other
//! users can write is refused at start with what to do about it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{publish_all, Roost, ROOST};
use serde_json::json;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file and directory under `dir`, with its mode.
fn modes(dir: &Path, out: &mut Vec<(String, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push((path.display().to_string(), mode(&path)));
        if path.is_dir() {
            modes(&path, out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_data_directory_and_everything_in_it_is_private() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    let roost = Roost::start(&dir, None);
    let messages = vec![("devices/d/env".to_string(), json!({"t": 1}).to_string().into_bytes())];
    publish_all(roost.mqtt, "d", messages).await;
    roost.wait_status("written", |s| s["sinks"][0]["records_written"] == 1).await;
    assert!(roost.stop().success());

    assert_eq!(mode(&dir), 0o700);
    let mut all = Vec::new();
    modes(&dir, &mut all);
    // The databases, the token, the spool (its segments and cursor), the dead-letter store.
    for name in ["roost.db", "admin.token", "deadletter.db", "cursor", ".seg"] {
        assert!(all.iter().any(|(p, _)| p.ends_with(name)), "no {name} in {all:?}");
    }
    // The test kit writes Roost's log and config there too; those are the test's, not Roost's.
    let roosts = all.iter().filter(|(p, _)| !p.ends_with(".log") && !p.ends_with("test-config.toml"));
    let open: Vec<_> = roosts.filter(|(_, m)| m & 0o077 != 0).collect();
    assert!(open.is_empty(), "readable by others: {open:?}");
}

#[test]
fn a_data_directory_others_can_write_is_refused_and_one_they_can_read_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new(ROOST)
        .args(["serve", "--mqtt-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is writable by other users (mode 777)"), "{err}");
    assert!(err.contains(&format!("chmod 700 {}", dir.path().display())), "{err}");
    assert!(!dir.path().join("admin.token").exists(), "nothing was written");

    // Readable but not writable by others (an older Roost's default): closed, and it starts.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let roost = Roost::start(dir.path(), None);
    assert_eq!(mode(dir.path()), 0o700);
    assert!(roost.stop().success());
}
