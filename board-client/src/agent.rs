//! The agent: one MQTT connection to Roost (rumqttc, MQTT 3.1.1, clean session), a retained
//! `status` with a retained last will `offline`, and the `cmd` topic, whose requests it runs one
//! at a time in arrival order. It reconnects with backoff (and so survives a server restart),
//! and on a rename reconnects under the new name.
//!
//! Requests are handled by a worker task ([`Worker`]) so that the connection keeps being polled
//! (keepalive, acknowledgements) while code runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use roost_core::board::{
    self, BoardState, FsAction, Op, Outcome, Reply, ReplyBody, Request, Status, Stream, PROTOCOL_VERSION,
};
use rumqttc::{
    AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::files::{ChunkOutcome, FileError, Root};
use crate::tls::{tls_config, AgentTls, TlsError};

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The board name (also the MQTT client id).
    pub name: String,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Every protocol path is relative to this directory.
    pub root: PathBuf,
    /// The program and leading arguments `execute` code is appended to (`sh -c`).
    pub interpreter: Vec<String>,
    /// The largest upload accepted, in bytes.
    pub max_upload_bytes: Option<u64>,
    /// The largest `cmd` payload accepted, announced in `status`.
    pub max_payload: Option<u64>,
    pub keep_alive: Duration,
    /// Where a rename is remembered across restarts (`None`: not remembered).
    pub state_file: Option<PathBuf>,
    /// What `status` says the board runs on.
    pub platform: String,
    /// Connect over TLS.
    pub tls: Option<AgentTls>,
}

impl AgentConfig {
    /// Settings for board `name` of a server at `host:port`, everything else by default.
    pub fn new(name: &str, host: &str, port: u16, root: PathBuf) -> AgentConfig {
        AgentConfig {
            name: name.to_owned(),
            host: host.to_owned(),
            port,
            username: None,
            password: None,
            root,
            interpreter: vec!["sh".into(), "-c".into()],
            max_upload_bytes: None,
            max_payload: None,
            keep_alive: Duration::from_secs(10),
            state_file: None,
            platform: format!("linux-{}", std::env::consts::ARCH),
            tls: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum AgentError {
    #[error("board root {path}: {source}")]
    Root { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Name(#[from] board::ProtocolError),
    #[error("interpreter is empty")]
    NoInterpreter,
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Why [`run`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The server asked for a reset: restart the agent.
    Reset,
    /// `shutdown` resolved: the agent said goodbye.
    Stopped,
}

/// A rename, remembered across restarts: a board started as `from` runs as `to`.
#[derive(Debug, Serialize, Deserialize)]
struct Renamed {
    from: String,
    to: String,
}

/// The name to run under: the configured one, or what a rename made of it.
pub fn effective_name(cfg: &AgentConfig) -> String {
    let renamed = cfg
        .state_file
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice::<Renamed>(&b).ok());
    match renamed {
        Some(r) if r.from == cfg.name && board::validate_board_name(&r.to).is_ok() => r.to,
        _ => cfg.name.clone(),
    }
}

enum Control {
    Rename(String),
    Reset,
}

/// Runs the agent until `shutdown` resolves or the server asks for a reset.
pub async fn run(
    cfg: AgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Exit, AgentError> {
    let root = Root::open(&cfg.root).map_err(|source| AgentError::Root { path: cfg.root.clone(), source })?;
    if cfg.interpreter.is_empty() {
        return Err(AgentError::NoInterpreter);
    }
    let mut name = effective_name(&cfg);
    board::validate_board_name(&name)?;
    let tls = cfg.tls.as_ref().map(tls_config).transpose()?;
    let cfg = Arc::new(cfg);
    tokio::pin!(shutdown);
    loop {
        match connection(&cfg, tls.as_ref(), &root, &name, shutdown.as_mut()).await {
            Ended::Renamed(new) => {
                info!(old = %name, new = %new, "renamed; reconnecting under the new name");
                name = new;
            }
            Ended::Reset => return Ok(Exit::Reset),
            Ended::Stopped => return Ok(Exit::Stopped),
        }
    }
}

enum Ended {
    Renamed(String),
    Reset,
    Stopped,
}

fn status(cfg: &AgentConfig, root: &Root, state: BoardState) -> Status {
    Status {
        state,
        platform: cfg.platform.clone(),
        client_version: env!("CARGO_PKG_VERSION").into(),
        protocol_version: PROTOCOL_VERSION,
        free_memory: free_memory(),
        root_dir: Some(root.dir().display().to_string()),
        max_payload: cfg.max_payload,
    }
}

/// One MQTT identity (one name) until it is renamed, reset or stopped; reconnects inside.
async fn connection(
    cfg: &Arc<AgentConfig>,
    tls: Option<&Arc<rustls::ClientConfig>>,
    root: &Root,
    name: &str,
    mut shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Ended {
    let status_topic = board::status_topic(name).expect("validated name");
    let cmd_topic = board::cmd_topic(name).expect("validated name");
    let offline = status(cfg, root, BoardState::Offline);
    let mut opts = MqttOptions::new(name, cfg.host.clone(), cfg.port);
    opts.set_keep_alive(cfg.keep_alive);
    opts.set_clean_session(true);
    let incoming = cfg.max_payload.map_or(16 << 20, |m| m as usize) + 1024;
    opts.set_max_packet_size(incoming, 1 << 20);
    opts.set_last_will(LastWill::new(&status_topic, offline.to_json(), QoS::AtLeastOnce, true));
    if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
        opts.set_credentials(u, p);
    }
    if let Some(tls) = tls {
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls.clone())));
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    // Small replies go out at once (no Nagle delay): each upload chunk waits for one.
    let mut net = eventloop.network_options();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    let (req_tx, req_rx) = mpsc::channel::<Vec<u8>>(64);
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Control>(4);
    let worker = Worker {
        cfg: cfg.clone(),
        root: root.clone(),
        client: client.clone(),
        reply_topic: board::reply_topic(name).expect("validated name"),
        status_topic: status_topic.clone(),
        seqs: HashMap::new(),
        control: ctl_tx,
    };
    let worker = tokio::spawn(worker.run(req_rx));
    let mut backoff = Duration::from_millis(100);
    let ended = loop {
        tokio::select! {
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(100);
                    info!(board = name, server = %format!("{}:{}", cfg.host, cfg.port), "connected");
                    let _ = client.try_subscribe(&cmd_topic, QoS::AtLeastOnce);
                    let idle = status(cfg, root, BoardState::Idle).to_json();
                    let _ = client.try_publish(&status_topic, QoS::AtLeastOnce, true, idle);
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == cmd_topic => {
                    if req_tx.try_send(p.payload.to_vec()).is_err() {
                        warn!(board = name, "request queue full; request dropped");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(board = name, error = %e, retry_ms = backoff.as_millis() as u64, "connection lost; reconnecting");
                    let jitter = Duration::from_millis(rand::random::<u64>() % 100);
                    tokio::time::sleep(backoff + jitter).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            },
            ctl = ctl_rx.recv() => match ctl {
                Some(Control::Rename(new)) => {
                    // Clear the retained status of the old name; no will on a clean disconnect.
                    let _ = client.try_publish(&status_topic, QoS::AtLeastOnce, true, Vec::new());
                    break Ended::Renamed(new);
                }
                Some(Control::Reset) => {
                    let _ = client.try_publish(&status_topic, QoS::AtLeastOnce, true, offline.to_json());
                    break Ended::Reset;
                }
                None => {}
            },
            () = &mut shutdown => {
                let _ = client.try_publish(&status_topic, QoS::AtLeastOnce, true, offline.to_json());
                break Ended::Stopped;
            }
        }
    };
    worker.abort();
    // Send what is queued (the last replies, the status), then disconnect cleanly.
    let _ = client.try_disconnect();
    let drain = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    ended
}

/// Runs requests one at a time and publishes their replies.
struct Worker {
    cfg: Arc<AgentConfig>,
    root: Root,
    client: AsyncClient,
    reply_topic: String,
    status_topic: String,
    /// The next `seq` of each request id still in progress (uploads span several messages).
    seqs: HashMap<String, u64>,
    control: mpsc::Sender<Control>,
}

impl Worker {
    async fn run(mut self, mut requests: mpsc::Receiver<Vec<u8>>) {
        while let Some(payload) = requests.recv().await {
            let request = match Request::from_json(&payload) {
                Ok(r) => r,
                Err(e) => {
                    // Answer if the id can be read; drop the message otherwise.
                    let id = serde_json::from_slice::<serde_json::Value>(&payload)
                        .ok()
                        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(String::from))
                        .filter(|id| board::validate_request_id(id).is_ok());
                    warn!(error = %e, "invalid request");
                    if let Some(id) = id {
                        self.finish(&id, Outcome::failed(e.to_string())).await;
                    }
                    continue;
                }
            };
            if let Err(e) = request.validate() {
                if board::validate_request_id(&request.id).is_ok() {
                    self.finish(&request.id, Outcome::failed(e.to_string())).await;
                }
                continue;
            }
            debug!(request_id = %request.id, "request");
            self.handle(request).await;
        }
    }

    async fn send(&mut self, id: &str, body: ReplyBody) {
        let seq = self.seqs.entry(id.to_owned()).or_insert(0);
        let reply = Reply { id: id.to_owned(), seq: *seq, body };
        *seq += 1;
        if self.seqs.len() > 1000 {
            self.seqs.retain(|k, _| k == id);
        }
        let _ = self.client.publish(&self.reply_topic, QoS::AtLeastOnce, false, reply.to_json()).await;
    }

    async fn finish(&mut self, id: &str, outcome: Outcome) {
        self.send(id, ReplyBody::Result(outcome)).await;
        self.seqs.remove(id);
    }

    async fn set_state(&self, state: BoardState) {
        let s = status(&self.cfg, &self.root, state).to_json();
        let _ = self.client.publish(&self.status_topic, QoS::AtLeastOnce, true, s).await;
    }

    async fn handle(&mut self, request: Request) {
        let id = request.id;
        match request.op {
            Op::Execute { code, timeout_ms } => {
                self.set_state(BoardState::Busy).await;
                let outcome = self.execute(&id, &code, timeout_ms).await;
                self.finish(&id, outcome).await;
                self.set_state(BoardState::Idle).await;
            }
            Op::Upload(chunk) => {
                let root = self.root.clone();
                let limit = self.cfg.max_upload_bytes;
                let done = tokio::task::spawn_blocking(move || root.upload_chunk(&chunk, limit)).await;
                match done {
                    Ok(Ok(ChunkOutcome::Progress(offset))) => {
                        self.send(&id, ReplyBody::Progress { offset }).await
                    }
                    Ok(Ok(ChunkOutcome::Done)) => self.finish(&id, Outcome::succeeded(None)).await,
                    Ok(Err(e)) => self.finish(&id, Outcome::failed(e.to_string())).await,
                    Err(e) => self.finish(&id, Outcome::failed(format!("upload failed: {e}"))).await,
                }
            }
            Op::Fs { action, path } => {
                let outcome = self.fs(&id, action, &path).await;
                self.finish(&id, outcome).await;
            }
            Op::Rename { new_name } => {
                if let Some(file) = &self.cfg.state_file {
                    let record = Renamed { from: self.cfg.name.clone(), to: new_name.clone() };
                    let written = serde_json::to_vec(&record)
                        .map_err(std::io::Error::other)
                        .and_then(|b| write_atomic(file, &b));
                    if let Err(e) = written {
                        self.finish(&id, Outcome::failed(format!("cannot remember the new name: {e}"))).await;
                        return;
                    }
                }
                self.finish(&id, Outcome::succeeded(None)).await;
                let _ = self.control.send(Control::Rename(new_name)).await;
            }
            Op::Reset {} => {
                self.finish(&id, Outcome::succeeded(None)).await;
                let _ = self.control.send(Control::Reset).await;
            }
        }
    }

    async fn fs(&mut self, id: &str, action: FsAction, path: &str) -> Outcome {
        let root = self.root.clone();
        let p = path.to_owned();
        let result: Result<Option<serde_json::Value>, FileError> = match action {
            FsAction::Ls => root.ls(&p).map(|v| serde_json::to_value(v).ok()),
            FsAction::Stat => root.stat(&p).map(|v| serde_json::to_value(v).ok()),
            FsAction::Rm => root.rm(&p).map(|()| None),
            FsAction::Mkdir => root.mkdir(&p).map(|()| None),
            FsAction::Cat => match root.open_file(&p) {
                Ok(file) => return self.cat(id, file).await,
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(value) => Outcome { value, ..Outcome::succeeded(None) },
            Err(e) => Outcome::failed(e.to_string()),
        }
    }

    async fn cat(&mut self, id: &str, file: std::fs::File) -> Outcome {
        let mut file = tokio::fs::File::from_std(file);
        let mut text = Utf8Stream::default();
        let mut buf = vec![0u8; 48 * 1024];
        loop {
            match file.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    let data = text.push(&buf[..n]);
                    if !data.is_empty() {
                        self.send(id, ReplyBody::Output { stream: Stream::Stdout, data }).await;
                    }
                }
                Err(e) => return Outcome::failed(e.to_string()),
            }
        }
        let rest = text.finish();
        if !rest.is_empty() {
            self.send(id, ReplyBody::Output { stream: Stream::Stdout, data: rest }).await;
        }
        Outcome::succeeded(None)
    }

    async fn execute(&mut self, id: &str, code: &str, timeout_ms: u64) -> Outcome {
        let mut cmd = tokio::process::Command::new(&self.cfg.interpreter[0]);
        cmd.args(&self.cfg.interpreter[1..])
            .arg(code)
            .current_dir(self.root.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return Outcome::failed(format!("cannot start {}: {e}", self.cfg.interpreter[0])),
        };
        let (out_tx, mut out_rx) = mpsc::channel::<(Stream, Vec<u8>)>(16);
        for (stream, pipe) in [
            (
                Stream::Stdout,
                child.stdout.take().map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            ),
            (
                Stream::Stderr,
                child.stderr.take().map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            ),
        ] {
            let Some(mut pipe) = pipe else { continue };
            let tx = out_tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 || tx.send((stream, buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            });
        }
        drop(out_tx);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        let mut texts = [Utf8Stream::default(), Utf8Stream::default()];
        let mut timed_out = false;
        // Output until both pipes close (or the deadline).
        loop {
            tokio::select! {
                piece = out_rx.recv() => match piece {
                    Some((stream, bytes)) => {
                        let data = texts[stream as usize].push(&bytes);
                        if !data.is_empty() {
                            self.send(id, ReplyBody::Output { stream, data }).await;
                        }
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline), if !timed_out => {
                    timed_out = true;
                    kill_group(&child);
                }
            }
        }
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = texts[stream as usize].finish();
            if !rest.is_empty() {
                self.send(id, ReplyBody::Output { stream, data: rest }).await;
            }
        }
        let status = tokio::select! {
            s = child.wait() => s,
            _ = tokio::time::sleep_until(deadline), if !timed_out => {
                timed_out = true;
                kill_group(&child);
                child.wait().await
            }
        };
        if timed_out {
            return Outcome::failed(format!("timed out after {timeout_ms} ms"));
        }
        match status {
            Ok(s) => match s.code() {
                Some(0) => Outcome::succeeded(Some(0)),
                Some(code) => {
                    Outcome { exit_code: Some(code), ..Outcome::failed(format!("exit status {code}")) }
                }
                None => {
                    use std::os::unix::process::ExitStatusExt;
                    Outcome::failed(format!("killed by signal {}", s.signal().unwrap_or(0)))
                }
            },
            Err(e) => Outcome::failed(e.to_string()),
        }
    }
}

/// Kills the process group of `child` (the interpreter and whatever it started).
fn kill_group(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Bytes to text in pieces, keeping a multi-byte character cut between pieces whole.
#[derive(Default)]
struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        let text = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
        self.pending.drain(..valid);
        text
    }

    fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

/// Replaces `path` with `bytes`, creating its directory: a temporary file in the same directory,
/// synced, renamed over `path`, and the directory synced (`atomic-write-file`).
fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = atomic_write_file::AtomicWriteFile::open(path)?;
    file.write_all(bytes)?;
    file.commit()
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn free_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_characters_cut_between_pieces_stay_whole() {
        let mut s = Utf8Stream::default();
        let bytes = "aé€".as_bytes();
        assert_eq!(s.push(&bytes[..2]), "a");
        assert_eq!(s.push(&bytes[2..4]), "é");
        assert_eq!(s.push(&bytes[4..]), "€");
        assert_eq!(s.push(b"\xff"), "\u{fffd}");
        assert_eq!(s.push(&bytes[..2]), "a");
        assert_eq!(s.finish(), "\u{fffd}");
    }

    #[test]
    fn a_rename_is_remembered_for_the_name_it_was_made_from() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = AgentConfig::new("b-1", "127.0.0.1", 1883, dir.path().into());
        assert_eq!(effective_name(&cfg), "b-1");
        cfg.state_file = Some(dir.path().join("state/renamed.json"));
        write_atomic(cfg.state_file.as_ref().unwrap(), br#"{"from":"b-1","to":"b-9"}"#).unwrap();
        assert_eq!(effective_name(&cfg), "b-9");
        cfg.name = "other".into();
        assert_eq!(effective_name(&cfg), "other");
    }
}
