//! What the broker hands the board service: a board's status, reply or last will, and
//! disconnects. Statuses keep the registry; replies go to the request they answer, if the
//! protocol allows it (see `boards`).

use std::sync::atomic::Ordering::Relaxed;

use roost_core::board::{BoardState, Channel, Reply, Status};
use tracing::{debug, info, warn};

use super::registry::{BoardEntry, ListedState};
use super::service::{fire_gone, mark_offline, now_ms, BoardService};

impl BoardService {
    /// A board published on its own `status` (or `reply`) topic: `conn` identifies the
    /// connection (a new one on every connect).
    pub async fn on_publish(&self, conn: &str, board: &str, channel: Channel, payload: &[u8]) {
        match channel {
            Channel::Status => self.on_status(conn, board, payload, false),
            Channel::Reply => self.on_reply(conn, board, payload).await,
            Channel::Cmd => {}
        }
    }

    /// A board's last will, published by the broker when the board vanished.
    pub fn on_will(&self, conn: &str, board: &str, payload: &[u8]) {
        self.on_status(conn, board, payload, true);
    }

    /// A client disconnected.
    pub fn on_disconnect(&self, conn: &str) {
        let mut inner = self.lock();
        let Some(board) = inner.conns.remove(conn) else { return };
        if inner.board_conn.get(&board).map(String::as_str) == Some(conn) {
            inner.board_conn.remove(&board);
            mark_offline(&mut inner, &board, &format!("board '{board}' disconnected"));
        }
    }

    fn on_status(&self, conn: &str, board: &str, payload: &[u8], will: bool) {
        let now = now_ms();
        let mut inner = self.lock();
        if will && inner.board_conn.get(board).is_some_and(|c| c != conn) {
            // The will of a connection the board has already replaced.
            return;
        }
        if payload.is_empty() {
            // A board clearing its retained status (after a rename): nothing to learn.
            return;
        }
        let status = Status::from_json(payload);
        let approved = inner.reg.boards.contains_key(board);
        let known = approved || inner.reg.pending.contains_key(board);
        if !known && matches!(&status, Ok(s) if s.state == BoardState::Offline) {
            // Only a last will says offline first: that of a connection under a name the board
            // no longer has (a rename). It must not bring the old name back.
            debug!(board, "offline status of an unknown board ignored");
            return;
        }
        if !approved && self.settings.require_approval {
            let entry = inner.reg.pending.entry(board.to_owned()).or_insert_with(|| {
                info!(board, "board awaits approval (roost board scan)");
                BoardEntry::new(board, now)
            });
            match &status {
                Ok(s) => {
                    entry.apply_status(s, now);
                }
                Err(e) => bad_status(entry, e, now),
            }
            if entry.state == ListedState::Offline {
                inner.conns.retain(|_, b| b != board);
                inner.board_conn.remove(board);
            } else {
                inner.conns.insert(conn.to_owned(), board.to_owned());
                inner.board_conn.insert(board.to_owned(), conn.to_owned());
            }
            drop(inner);
            self.save_soon();
            return;
        }
        let mut changed = !approved;
        let entry = inner.reg.boards.entry(board.to_owned()).or_insert_with(|| {
            info!(board, "board registered");
            BoardEntry::new(board, now)
        });
        match &status {
            Ok(s) => changed |= entry.apply_status(s, now),
            Err(e) => {
                self.counters.statuses_malformed.fetch_add(1, Relaxed);
                warn!(board, error = %e, "unreadable board status");
                bad_status(entry, e, now);
            }
        }
        let state = entry.state;
        debug!(board, state = state.as_str(), will, "board status");
        match state {
            ListedState::Offline => {
                if inner.board_conn.get(board).is_none_or(|c| c == conn) {
                    inner.board_conn.remove(board);
                }
                mark_offline(&mut inner, board, &format!("board '{board}' went offline"));
            }
            ListedState::Unsupported | ListedState::BadStatus => {
                inner.conns.insert(conn.to_owned(), board.to_owned());
                inner.board_conn.insert(board.to_owned(), conn.to_owned());
                let detail = inner.reg.boards[board].ready().err().unwrap_or_default();
                fire_gone(&mut inner, board, &detail);
            }
            ListedState::Idle | ListedState::Busy => {
                if let Some(old) = inner.board_conn.insert(board.to_owned(), conn.to_owned()) {
                    if old != conn {
                        // A new connection: whatever was in flight on the old one is lost.
                        fire_gone(&mut inner, board, &format!("board '{board}' reconnected"));
                    }
                }
                inner.conns.insert(conn.to_owned(), board.to_owned());
            }
        }
        drop(inner);
        if changed {
            self.save_soon();
        }
    }

    async fn on_reply(&self, conn: &str, board: &str, payload: &[u8]) {
        let reply = match Reply::from_json(payload) {
            Ok(r) => r,
            Err(e) => {
                self.counters.replies_malformed.fetch_add(1, Relaxed);
                warn!(board, error = %e, "malformed board reply dropped");
                return;
            }
        };
        let tx = {
            let inner = self.lock();
            match inner.inflight.get(&reply.id) {
                None => {
                    self.counters.replies_unknown.fetch_add(1, Relaxed);
                    debug!(board, request_id = %reply.id, "reply to an unknown request dropped");
                    return;
                }
                Some(f) if f.view.board != board => {
                    self.counters.replies_forged.fetch_add(1, Relaxed);
                    warn!(board, request_id = %reply.id, owner = %f.view.board, "reply to another board's request dropped");
                    return;
                }
                // Only the connection the board is registered on (its last status) answers for
                // it: not another client that may also use its topics (the same username).
                Some(_) if inner.board_conn.get(board).map(String::as_str) != Some(conn) => {
                    self.counters.replies_forged.fetch_add(1, Relaxed);
                    warn!(board, request_id = %reply.id, "reply from a connection the board is not registered on dropped");
                    return;
                }
                Some(f) => f.replies.clone(),
            }
        };
        // Bounded: a board streaming output faster than Roost reads it waits here.
        let _ = tx.send(reply).await;
    }
}

fn bad_status(entry: &mut BoardEntry, e: &roost_core::board::ProtocolError, now: u64) {
    entry.state = ListedState::BadStatus;
    entry.state_detail = Some(e.to_string());
    entry.last_seen_ms = now;
}
