//! A real `roost serve` as a child process: started on free ports (port 0) in a data directory
//! the caller owns, found through the `runtime.json` it writes there, talked to over its admin
//! API and CLI, and stopped with SIGTERM (killed if it is dropped still running).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::unique;

/// How to start `roost serve`; [`Launch::start`] starts it.
#[derive(Clone, Copy, Debug)]
pub struct Launch<'a> {
    bin: &'a Path,
    config: Option<&'a str>,
    mqtt_listen: &'a str,
    log_to_stderr: bool,
}

impl<'a> Launch<'a> {
    /// `roost serve` from `bin`, the caller's `env!("CARGO_BIN_EXE_roost")`: no config file, MQTT
    /// and the admin API on free ports of 127.0.0.1, its log (level info) in a file of the data
    /// directory ([`Roost::log_text`]).
    pub fn new(bin: &'a (impl AsRef<Path> + ?Sized)) -> Launch<'a> {
        Launch { bin: bin.as_ref(), config: None, mqtt_listen: "127.0.0.1:0", log_to_stderr: false }
    }

    /// With `text` as its config file (written to `test-config.toml` in the data directory).
    pub fn config(self, text: Option<&'a str>) -> Launch<'a> {
        Launch { config: text, ..self }
    }

    /// With the MQTT listener on `addr` (`0.0.0.0:0`, or a port a restarted server must keep).
    pub fn mqtt_listen(self, addr: &'a str) -> Launch<'a> {
        Launch { mqtt_listen: addr, ..self }
    }

    /// With its warnings and errors on this process's stderr instead of a log file, as a
    /// benchmark shows them next to its figures.
    pub fn log_to_stderr(self) -> Launch<'a> {
        Launch { log_to_stderr: true, ..self }
    }

    /// Starts it with `dir` as its data directory (created if missing) and waits until it
    /// listens, 60 s at most.
    ///
    /// # Panics
    ///
    /// When it exits while starting or does not start in time, with its log.
    pub fn start(&self, dir: &Path) -> Roost {
        self.try_start(dir).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Launch::start`], with the failure (and the log) as the error instead of a panic.
    pub fn try_start(&self, dir: &Path) -> Result<Roost, String> {
        std::fs::create_dir_all(dir).unwrap();
        let mut cmd = Command::new(self.bin);
        if let Some(text) = self.config {
            let file = dir.join("test-config.toml");
            std::fs::write(&file, text).unwrap();
            cmd.arg("--config").arg(file);
        }
        let log = (!self.log_to_stderr).then(|| dir.join(format!("{}.log", unique("roost"))));
        let stderr = match &log {
            Some(file) => Stdio::from(std::fs::File::create(file).unwrap()),
            None => Stdio::inherit(),
        };
        // A runtime.json left by an earlier server in `dir` must not be taken for this one's.
        let _ = std::fs::remove_file(dir.join("runtime.json"));
        let child = cmd
            .args(["serve", "--mqtt-listen", self.mqtt_listen, "--api-listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env("ROOST_LOG", if self.log_to_stderr { "warn" } else { "info" })
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.bin.display()));
        let unset = "0.0.0.0:0".parse().unwrap();
        // Owned by `Roost` from here on, so it is killed however this ends.
        let mut roost = Roost {
            child,
            bin: self.bin.to_owned(),
            dir: dir.to_owned(),
            mqtt: unset,
            mqtts: None,
            api: unset,
            token: String::new(),
            log,
        };
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = roost.child.try_wait().unwrap() {
                return Err(format!("roost exited with {status} while starting:\n{}", roost.log_text()));
            }
            if let Ok(bytes) = std::fs::read(dir.join("runtime.json")) {
                let rt: Value = serde_json::from_slice(&bytes).unwrap();
                if rt["pid"].as_u64() == Some(roost.child.id() as u64) {
                    roost.mqtt = rt["mqtt"].as_str().unwrap().parse().unwrap();
                    roost.api = rt["api"].as_str().unwrap().parse().unwrap();
                    roost.mqtts = rt["mqtts"].as_str().map(|a| a.parse().unwrap());
                    roost.token = std::fs::read_to_string(dir.join("admin.token")).unwrap().trim().to_owned();
                    return Ok(roost);
                }
            }
            if Instant::now() > until {
                return Err(format!("roost did not start in time:\n{}", roost.log_text()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A running `roost serve`, started by [`Launch`]; killed when dropped.
pub struct Roost {
    /// The `roost serve` process.
    pub child: Child,
    /// The binary it runs, for [`Roost::cli`].
    pub bin: PathBuf,
    /// Its data directory.
    pub dir: PathBuf,
    /// Where its MQTT listener listens.
    pub mqtt: std::net::SocketAddr,
    /// Where its MQTT-over-TLS listener listens, when it has one (`[mqtt.tls]`).
    pub mqtts: Option<std::net::SocketAddr>,
    /// Where its admin API listens.
    pub api: std::net::SocketAddr,
    /// The admin API token it wrote to `admin.token`.
    pub token: String,
    /// Its log file; `None` when the log goes to stderr ([`Launch::log_to_stderr`]).
    log: Option<PathBuf>,
}

impl Roost {
    /// Everything it has logged so far ("" when its log goes to stderr).
    pub fn log_text(&self) -> String {
        self.log.as_ref().and_then(|file| std::fs::read_to_string(file).ok()).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit (60 s at most).
    pub fn stop(mut self) -> ExitStatus {
        signal(self.child.id(), nix::sys::signal::Signal::SIGTERM);
        self.wait(Duration::from_secs(60))
    }

    /// [`Roost::stop`], and the whole log, what it wrote while stopping included.
    pub fn stop_with_log(self) -> (ExitStatus, String) {
        let log = self.log.clone();
        let status = self.stop();
        (status, log.and_then(|file| std::fs::read_to_string(file).ok()).unwrap_or_default())
    }

    /// Waits for it to exit by itself.
    ///
    /// # Panics
    ///
    /// When it is still running after `timeout` (it is killed first), with its log.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let until = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!("roost did not exit within {timeout:?}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The admin API's URL for `path` (`/api/v1/status`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// `GET /api/v1/status` with the token; panics unless it answers 200.
    pub async fn status(&self) -> Value {
        let resp = reqwest::Client::new()
            .get(self.url("/api/v1/status"))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// Polls the status document until `cond` holds on it and returns it; panics after 60 s
    /// naming `what` it waited for.
    pub async fn wait_status(&self, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.status().await;
            if cond(&s) {
                return s;
            }
            assert!(Instant::now() < until, "timed out waiting for {what}; status: {s:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `roost ARGS --data-dir DIR` against it to completion: (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(&self.bin).args(args).arg("--data-dir").arg(&self.dir).output().unwrap();
        (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    }
}

impl Drop for Roost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `sig` to process `pid` (a `roost`, an agent); panics if it cannot.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}
