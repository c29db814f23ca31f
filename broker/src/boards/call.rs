//! One request to one board: registered ([`BoardService::begin`]), published, and its replies
//! read in order until the final one, a deadline, or the board going offline.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use roost_core::board::{Op, Reply, ReplyBody, Request, RequestState};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::publisher::PublishError;
use super::service::{now_ms, BoardService, Gone, Inflight, InflightView};

/// Why a request stopped waiting for its next reply.
#[derive(Debug)]
pub(crate) enum Stop {
    Offline(String),
    Deadline,
}

/// One request to one board, from being published to its final reply. Dropping it forgets the
/// request: later replies to it are counted as unknown.
pub(crate) struct Call {
    svc: Arc<BoardService>,
    pub id: String,
    pub board: String,
    topic: String,
    replies: mpsc::Receiver<Reply>,
    pub gone: Arc<Gone>,
    next_seq: u64,
    early: BTreeMap<u64, Reply>,
}

impl BoardService {
    /// Registers a request to `board` if the board may be sent one now.
    pub(crate) fn begin(self: &Arc<Self>, board: &str, op: &str) -> Result<Call, String> {
        let mut inner = self.lock();
        let entry = inner.reg.boards.get(board).ok_or_else(|| {
            if inner.reg.pending.contains_key(board) {
                format!("board '{board}' is not approved yet (roost board scan; roost board approve)")
            } else {
                format!("no board named '{board}'")
            }
        })?;
        entry.ready()?;
        if !inner.board_conn.contains_key(board) {
            return Err(format!("board '{board}' is offline"));
        }
        let id = format!("{}-{}", self.id_prefix, self.next_id.fetch_add(1, Relaxed));
        let (tx, rx) = mpsc::channel(256);
        let gone = inner.gone.entry(board.to_owned()).or_default().clone();
        inner.inflight.insert(
            id.clone(),
            Inflight {
                view: InflightView {
                    request_id: id.clone(),
                    board: board.to_owned(),
                    op: op.to_owned(),
                    state: RequestState::Queued,
                    started_ms: now_ms(),
                },
                replies: tx,
                gone: gone.clone(),
            },
        );
        let topic = roost_core::board::cmd_topic(board).map_err(|e| e.to_string())?;
        Ok(Call {
            svc: self.clone(),
            id,
            board: board.to_owned(),
            topic,
            replies: rx,
            gone,
            next_seq: 0,
            early: BTreeMap::new(),
        })
    }
}

impl Call {
    /// Publishes one message of this request.
    pub(crate) async fn send(&self, op: Op) -> Result<(), PublishError> {
        let publisher = self.svc.publisher.get().ok_or(PublishError::NotRunning)?;
        let payload = Request { id: self.id.clone(), op }.to_json();
        publisher.publish(self.topic.clone(), payload).await?;
        self.svc.counters.requests_sent.fetch_add(1, Relaxed);
        if self.state() == RequestState::Queued {
            self.svc.set_state(&self.id, RequestState::Sent);
        }
        Ok(())
    }

    fn state(&self) -> RequestState {
        self.svc.lock().inflight.get(&self.id).map_or(RequestState::Queued, |f| f.view.state)
    }

    /// The next reply in `seq` order (duplicates dropped), until `deadline` or the board goes.
    /// Replies that arrived before the board went are still delivered.
    pub(crate) async fn next(&mut self, deadline: Instant) -> Result<ReplyBody, Stop> {
        loop {
            if let Some(reply) = self.early.remove(&self.next_seq) {
                return Ok(self.take(reply));
            }
            let reply = match self.replies.try_recv() {
                Ok(reply) => reply,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Err(Stop::Offline("request dropped".into()))
                }
                Err(mpsc::error::TryRecvError::Empty) => {
                    if self.gone.token.is_cancelled() {
                        return Err(Stop::Offline(self.gone.reason()));
                    }
                    tokio::select! {
                        biased;
                        reply = self.replies.recv() => match reply {
                            Some(reply) => reply,
                            None => return Err(Stop::Offline("request dropped".into())),
                        },
                        _ = self.gone.token.cancelled() => continue,
                        _ = tokio::time::sleep_until(deadline) => return Err(Stop::Deadline),
                    }
                }
            };
            if reply.seq == self.next_seq {
                return Ok(self.take(reply));
            }
            if reply.seq > self.next_seq && self.early.len() < 1024 {
                self.early.insert(reply.seq, reply);
            }
            // Otherwise a QoS 1 duplicate.
        }
    }

    fn take(&mut self, reply: Reply) -> ReplyBody {
        self.next_seq = reply.seq + 1;
        if !reply.is_final() && self.state() != RequestState::Running {
            self.svc.set_state(&self.id, RequestState::Running);
        }
        reply.body
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.svc.lock().inflight.remove(&self.id);
    }
}
