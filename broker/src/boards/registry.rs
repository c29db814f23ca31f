//! The board registry: what Roost knows about each board (name, platform, client and protocol
//! version, state, last seen, free memory, the names it had, its recent requests), and its file
//! in the data directory, `boards.json`, replaced atomically and durably
//! ([`crate::datadir::write_atomic`]).
//!
//! Boards that connected while `boards.require_approval = true` and were not approved yet are
//! kept apart (`pending`): they are listed by `roost board scan` and are sent nothing.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use roost_core::board::{BoardState, RequestState, Status, PROTOCOL_VERSION};
use serde::{Deserialize, Serialize};

use crate::datadir::write_atomic;

/// The registry file in the data directory.
pub const REGISTRY_FILE: &str = "boards.json";

/// A board's state as `roost board list` shows it: what the board said, or why Roost will not
/// talk to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListedState {
    Idle,
    Busy,
    Offline,
    /// Connected, but speaks a protocol version this server does not: sent no commands.
    Unsupported,
    /// Connected, but its last status could not be read: sent no commands.
    BadStatus,
}

impl ListedState {
    pub fn as_str(self) -> &'static str {
        match self {
            ListedState::Idle => "idle",
            ListedState::Busy => "busy",
            ListedState::Offline => "offline",
            ListedState::Unsupported => "unsupported",
            ListedState::BadStatus => "bad_status",
        }
    }
}

/// One finished request, kept in its board's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryItem {
    pub request_id: String,
    /// `execute`, `upload`, `fs ls`, `rename`, `reset`, ...
    pub op: String,
    pub state: RequestState,
    /// Milliseconds since the Unix epoch.
    pub started_ms: u64,
    pub finished_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The board's name when the request ran (it may have been renamed since).
    pub board: String,
}

/// Everything Roost knows about one board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoardEntry {
    pub name: String,
    pub state: ListedState,
    /// Why the state is `unsupported` or `bad_status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_detail: Option<String>,
    #[serde(default)]
    pub platform: String,
    #[serde(default)]
    pub client_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_memory: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_dir: Option<String>,
    /// The largest `cmd` payload the board accepts, if it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_payload: Option<u64>,
    /// Milliseconds since the Unix epoch.
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    /// Earlier names, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renamed_from: Vec<String>,
    /// The most recent finished requests, oldest first.
    #[serde(default)]
    pub history: VecDeque<HistoryItem>,
}

impl BoardEntry {
    /// A board seen for the first time, now.
    pub fn new(name: &str, now_ms: u64) -> BoardEntry {
        BoardEntry {
            name: name.to_owned(),
            state: ListedState::Offline,
            state_detail: None,
            platform: String::new(),
            client_version: String::new(),
            protocol_version: None,
            free_memory: None,
            root_dir: None,
            max_payload: None,
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            renamed_from: Vec::new(),
            history: VecDeque::new(),
        }
    }

    /// Takes in a status the board published. Returns whether anything worth saving changed
    /// (more than the state and the time).
    pub fn apply_status(&mut self, status: &Status, now_ms: u64) -> bool {
        let before = (
            self.platform.clone(),
            self.client_version.clone(),
            self.protocol_version,
            self.root_dir.clone(),
            self.max_payload,
        );
        self.platform.clone_from(&status.platform);
        self.client_version.clone_from(&status.client_version);
        self.protocol_version = Some(status.protocol_version);
        self.root_dir.clone_from(&status.root_dir);
        self.max_payload = status.max_payload;
        if status.free_memory.is_some() {
            self.free_memory = status.free_memory;
        }
        self.last_seen_ms = now_ms;
        (self.state, self.state_detail) = match status.state {
            BoardState::Offline => (ListedState::Offline, None),
            _ if !status.protocol_supported() => (
                ListedState::Unsupported,
                Some(format!(
                    "speaks protocol version {}; this server speaks {PROTOCOL_VERSION}",
                    status.protocol_version
                )),
            ),
            BoardState::Idle => (ListedState::Idle, None),
            BoardState::Busy => (ListedState::Busy, None),
        };
        before
            != (
                self.platform.clone(),
                self.client_version.clone(),
                self.protocol_version,
                self.root_dir.clone(),
                self.max_payload,
            )
    }

    /// Whether Roost may send this board a request now; if not, why.
    pub fn ready(&self) -> Result<(), String> {
        match self.state {
            ListedState::Idle | ListedState::Busy => Ok(()),
            ListedState::Offline => Err(format!("board '{}' is offline", self.name)),
            ListedState::Unsupported | ListedState::BadStatus => Err(format!(
                "board '{}' is not sent commands: {}",
                self.name,
                self.state_detail.as_deref().unwrap_or(self.state.as_str())
            )),
        }
    }

    /// Adds a finished request to the history, keeping at most `keep` items.
    pub fn remember(&mut self, item: HistoryItem, keep: usize) {
        self.history.push_back(item);
        while self.history.len() > keep {
            self.history.pop_front();
        }
    }
}

/// What `boards.json` holds.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryFile {
    /// Approved boards by name.
    #[serde(default)]
    pub boards: BTreeMap<String, BoardEntry>,
    /// Boards seen but not approved yet (only with `boards.require_approval = true`).
    #[serde(default)]
    pub pending: BTreeMap<String, BoardEntry>,
}

impl RegistryFile {
    /// Reads the registry; a missing file is an empty registry. Every board starts offline: it
    /// says otherwise when it connects.
    pub fn load(path: &Path) -> anyhow::Result<RegistryFile> {
        use anyhow::Context;
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryFile::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut file: RegistryFile = serde_json::from_slice(&bytes)
            .with_context(|| format!("reading {} (the board registry)", path.display()))?;
        for entry in file.boards.values_mut().chain(file.pending.values_mut()) {
            entry.state = ListedState::Offline;
            entry.state_detail = None;
        }
        Ok(file)
    }

    /// Writes the registry atomically and durably.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        write_atomic(path, &serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: BoardState, version: u32) -> Status {
        Status {
            state,
            platform: "linux-x86_64".into(),
            client_version: "0.1.0".into(),
            protocol_version: version,
            free_memory: Some(1000),
            root_dir: None,
            max_payload: None,
        }
    }

    #[test]
    fn status_sets_the_listed_state_and_refuses_other_protocol_versions() {
        let mut e = BoardEntry::new("b-1", 1);
        assert!(e.ready().unwrap_err().contains("offline"));
        assert!(e.apply_status(&status(BoardState::Idle, PROTOCOL_VERSION), 2));
        assert_eq!(e.state, ListedState::Idle);
        e.ready().unwrap();
        assert!(!e.apply_status(&status(BoardState::Busy, PROTOCOL_VERSION), 3));
        assert_eq!(e.state, ListedState::Busy);
        assert_eq!(e.last_seen_ms, 3);
        e.apply_status(&status(BoardState::Idle, PROTOCOL_VERSION + 1), 4);
        assert_eq!(e.state, ListedState::Unsupported);
        let err = e.ready().unwrap_err();
        assert!(err.contains("speaks protocol version 2; this server speaks 1"), "{err}");
    }

    #[test]
    fn registry_round_trips_and_loads_every_board_offline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(REGISTRY_FILE);
        assert_eq!(RegistryFile::load(&path).unwrap(), RegistryFile::default());
        let mut file = RegistryFile::default();
        let mut e = BoardEntry::new("b-1", 1);
        e.apply_status(&status(BoardState::Idle, PROTOCOL_VERSION), 2);
        file.boards.insert("b-1".into(), e);
        file.save(&path).unwrap();
        let back = RegistryFile::load(&path).unwrap();
        assert_eq!(back.boards["b-1"].state, ListedState::Offline);
        assert_eq!(back.boards["b-1"].platform, "linux-x86_64");
    }

    #[test]
    fn history_keeps_the_most_recent_items() {
        let mut e = BoardEntry::new("b-1", 1);
        for i in 0..5 {
            e.remember(
                HistoryItem {
                    request_id: format!("r{i}"),
                    op: "execute".into(),
                    state: RequestState::Succeeded,
                    started_ms: i,
                    finished_ms: i,
                    error: None,
                    board: "b-1".into(),
                },
                3,
            );
        }
        let ids: Vec<_> = e.history.iter().map(|h| h.request_id.as_str()).collect();
        assert_eq!(ids, ["r2", "r3", "r4"]);
    }
}
