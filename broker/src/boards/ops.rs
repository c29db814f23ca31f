//! The board operations, each for one board, each ending in one [`BoardResult`]: execute, upload
//! (chunked to fit the broker's and the board's payload limits, per-chunk and whole-file
//! SHA-256, resumable), fs, rename and reset. The API runs one per named board, in parallel.
//!
//! Every operation waits its turn in the board's queue (queued), is published (sent), hears from
//! the board (running) and ends succeeded, failed or timed out; it lands in the board's history.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use roost_core::board::{self, FsAction, Op, Outcome, ReplyBody, RequestState, Stream, UploadChunk};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tracing::{info, warn};

use super::call::{Call, Stop};
use super::registry::HistoryItem;
use super::service::{now_ms, BoardService};

/// A piece of output, as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct OutputPiece {
    pub stream: Stream,
    pub data: String,
}

/// How one operation ended on one board.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct BoardResult {
    pub board: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub state: RequestState,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<OutputPiece>,
    /// Upload: bytes in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Upload: the offset this upload started at (non-zero when it resumed an earlier one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<u64>,
}

impl BoardResult {
    /// A request that failed before it reached the board.
    pub fn refused(board: &str, error: impl Into<String>) -> BoardResult {
        BoardResult {
            board: board.to_owned(),
            request_id: None,
            state: RequestState::Failed,
            ok: false,
            exit_code: None,
            error: Some(error.into()),
            value: None,
            output: Vec::new(),
            bytes: None,
            resumed_from: None,
        }
    }

    fn new(call: &Call) -> BoardResult {
        BoardResult { request_id: Some(call.id.clone()), ..BoardResult::refused(&call.board, "") }
    }

    fn finish(&mut self, outcome: Outcome) {
        self.ok = outcome.ok;
        self.state = if outcome.ok { RequestState::Succeeded } else { RequestState::Failed };
        self.exit_code = outcome.exit_code;
        self.error = outcome.error;
        self.value = outcome.value;
    }

    fn stopped(&mut self, stop: Stop, what: &str) {
        self.ok = false;
        match stop {
            Stop::Offline(reason) => {
                self.state = RequestState::Failed;
                self.error = Some(reason);
            }
            Stop::Deadline => {
                self.state = RequestState::TimedOut;
                self.error = Some(format!("board '{}' did not answer in time ({what})", self.board));
            }
        }
    }
}

/// Collects output, keeping at most `limit` bytes and merging neighbours from one stream.
struct OutputBuf {
    pieces: Vec<OutputPiece>,
    kept: usize,
    limit: usize,
    cut: bool,
}

impl OutputBuf {
    fn new(limit: usize) -> OutputBuf {
        OutputBuf { pieces: Vec::new(), kept: 0, limit, cut: false }
    }

    fn push(&mut self, stream: Stream, mut data: String) {
        if self.cut {
            return;
        }
        if self.kept + data.len() > self.limit {
            let mut keep = self.limit - self.kept;
            while !data.is_char_boundary(keep) {
                keep -= 1;
            }
            data.truncate(keep);
            data.push_str("\n[roost: output cut here]\n");
            self.cut = true;
        }
        self.kept += data.len();
        match self.pieces.last_mut() {
            Some(last) if last.stream == stream => last.data.push_str(&data),
            _ => self.pieces.push(OutputPiece { stream, data }),
        }
    }
}

impl BoardService {
    /// Runs a one-message request (execute, fs, rename, reset) on `board` and collects its
    /// replies until the final one, `timeout` after it was sent.
    async fn run_simple(self: &Arc<Self>, board: &str, what: &str, op: Op, timeout: Duration) -> BoardResult {
        let started_ms = now_ms();
        let mut call = match self.begin(board, what) {
            Ok(c) => c,
            Err(e) => return BoardResult::refused(board, e),
        };
        let mut result = BoardResult::new(&call);
        let queue_deadline = Instant::now() + timeout;
        let permit = tokio::time::timeout_at(queue_deadline, self.permit(board)).await;
        let Ok(_permit) = permit else {
            result.stopped(Stop::Deadline, "still queued behind earlier requests");
            return self.done(call, result, what, started_ms);
        };
        if call.gone.token.is_cancelled() {
            result.stopped(Stop::Offline(call.gone.reason()), what);
            return self.done(call, result, what, started_ms);
        }
        if let Err(e) = call.send(op).await {
            result.error = Some(e.to_string());
            return self.done(call, result, what, started_ms);
        }
        let deadline = Instant::now() + timeout;
        let mut output = OutputBuf::new(self.settings.max_output_bytes);
        loop {
            match call.next(deadline).await {
                Ok(ReplyBody::Output { stream, data }) => output.push(stream, data),
                Ok(ReplyBody::Progress { .. }) => {}
                Ok(ReplyBody::Result(outcome)) => {
                    result.finish(outcome);
                    break;
                }
                Err(stop) => {
                    result.stopped(stop, what);
                    break;
                }
            }
        }
        result.output = output.pieces;
        self.done(call, result, what, started_ms)
    }

    fn done(&self, call: Call, result: BoardResult, what: &str, started_ms: u64) -> BoardResult {
        self.remember(HistoryItem {
            request_id: call.id.clone(),
            op: what.to_owned(),
            state: result.state,
            started_ms,
            finished_ms: now_ms(),
            error: result.error.clone(),
            board: call.board.clone(),
        });
        info!(board = %call.board, request_id = %call.id, op = what, state = %result.state, "board request finished");
        drop(call);
        result
    }

    /// Runs `code` on `board` (its interpreter: `sh -c` on Linux, Python on MicroPython).
    pub async fn execute(self: &Arc<Self>, board: &str, code: String, timeout_ms: u64) -> BoardResult {
        let timeout_ms = timeout_ms.max(1);
        let timeout = Duration::from_millis(timeout_ms) + Duration::from_secs(self.settings.exec_grace_secs);
        self.run_simple(board, "execute", Op::Execute { code, timeout_ms }, timeout).await
    }

    /// A file system operation on `board`.
    pub async fn fs(self: &Arc<Self>, board: &str, action: FsAction, path: String) -> BoardResult {
        let what = format!(
            "fs {}",
            serde_json::to_value(action).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
        );
        let request = Op::Fs { action, path };
        if let Err(e) = (roost_core::board::Request { id: "check".into(), op: request.clone() }).validate() {
            return BoardResult::refused(board, e.to_string());
        }
        self.run_simple(board, &what, request, Duration::from_secs(self.settings.request_timeout_secs)).await
    }

    /// Restarts `board`.
    pub async fn reset(self: &Arc<Self>, board: &str) -> BoardResult {
        self.run_simple(board, "reset", Op::Reset {}, Duration::from_secs(self.settings.request_timeout_secs))
            .await
    }

    /// Renames `old` to `new`: the board agrees, then its registry entry (history included)
    /// moves to the new name; the board reconnects under it.
    pub async fn rename(self: &Arc<Self>, old: &str, new: &str) -> BoardResult {
        if let Err(e) = board::validate_board_name(new) {
            return BoardResult::refused(old, e.to_string());
        }
        if self.name_taken(new) {
            return BoardResult::refused(old, format!("a board named '{new}' already exists"));
        }
        let timeout = Duration::from_secs(self.settings.request_timeout_secs);
        let result = self.run_simple(old, "rename", Op::Rename { new_name: new.to_owned() }, timeout).await;
        if result.ok {
            self.move_entry(old, new);
        }
        result
    }

    /// Uploads `data` to `path` on `board`, calling `progress(offset, total)` as the board
    /// acknowledges chunks.
    pub async fn upload(
        self: &Arc<Self>,
        board: &str,
        path: &str,
        data: Bytes,
        file_sha256: &str,
        progress: impl Fn(u64, u64),
    ) -> BoardResult {
        let started_ms = now_ms();
        let what = "upload";
        if let Err(e) = board::validate_path(path) {
            return BoardResult::refused(board, e.to_string());
        }
        let board_max = self.get(board).and_then(|e| e.max_payload).unwrap_or(u64::MAX);
        let max_payload = (self.max_payload as u64).min(board_max) as usize;
        let chunk_size = match board::upload_chunk_size(max_payload) {
            Ok(n) => n,
            Err(e) => return BoardResult::refused(board, e.to_string()),
        };
        let mut call = match self.begin(board, what) {
            Ok(c) => c,
            Err(e) => return BoardResult::refused(board, e),
        };
        let mut result = BoardResult::new(&call);
        let total = data.len() as u64;
        result.bytes = Some(total);
        let chunk_timeout = Duration::from_secs(self.settings.upload_chunk_timeout_secs);
        let Ok(_permit) = tokio::time::timeout(chunk_timeout, self.permit(board)).await else {
            result.stopped(Stop::Deadline, "still queued behind earlier requests");
            return self.done(call, result, what, started_ms);
        };
        let key = (board.to_owned(), path.to_owned(), file_sha256.to_owned());
        let mut offset = self.resume_offset(&key).filter(|o| *o <= total).unwrap_or(0);
        result.resumed_from = Some(offset);
        if offset > 0 {
            info!(board, path, offset, "resuming upload");
        }
        'chunks: loop {
            let end = (offset + chunk_size as u64).min(total);
            let bytes = &data[offset as usize..end as usize];
            let chunk = UploadChunk {
                path: path.to_owned(),
                offset,
                data: base64::engine::general_purpose::STANDARD.encode(bytes),
                chunk_sha256: hex::encode(Sha256::digest(bytes)),
                total_size: total,
                file_sha256: file_sha256.to_owned(),
                last: end == total,
            };
            if call.gone.token.is_cancelled() {
                result.stopped(Stop::Offline(call.gone.reason()), what);
                break;
            }
            if let Err(e) = call.send(Op::Upload(chunk)).await {
                result.error = Some(e.to_string());
                break;
            }
            // One acknowledgement per chunk: progress (go on from there) or the result.
            loop {
                match call.next(Instant::now() + chunk_timeout).await {
                    Ok(ReplyBody::Output { .. }) => {}
                    Ok(ReplyBody::Progress { offset: held }) if held <= total => {
                        offset = held;
                        self.set_resume(key.clone(), Some(held));
                        progress(held, total);
                        continue 'chunks;
                    }
                    Ok(ReplyBody::Progress { offset: held }) => {
                        warn!(board, held, total, "board acknowledged past the end of the file");
                        result.error = Some(format!(
                            "board '{board}' acknowledged offset {held} of a {total}-byte file"
                        ));
                        break 'chunks;
                    }
                    Ok(ReplyBody::Result(outcome)) => {
                        // Only an upload cut short (offline, timed out) is worth resuming.
                        self.set_resume(key.clone(), None);
                        if outcome.ok {
                            progress(total, total);
                        }
                        result.finish(outcome);
                        break 'chunks;
                    }
                    Err(stop) => {
                        result.stopped(stop, "upload chunk not acknowledged");
                        break 'chunks;
                    }
                }
            }
        }
        self.done(call, result, what, started_ms)
    }
}

impl BoardService {
    /// Installs `package` on `board`: every file, one after the other, uploaded to `lib/<path>`
    /// like any upload (chunked, verified, renamed into place). Stops at the first file that
    /// fails. `progress(offset, total)` counts bytes across the whole package.
    pub async fn install(
        self: &Arc<Self>,
        board: &str,
        package: Arc<super::install::Package>,
        progress: impl Fn(u64, u64),
    ) -> BoardResult {
        let total = package.total_bytes();
        let mut done = 0u64;
        let mut last = BoardResult::refused(board, "the package holds no files");
        let mut installed = Vec::new();
        for (path, data) in &package.files {
            let dest = format!("lib/{path}");
            let sha = sha256_hex(data);
            let base = done;
            let mut r = self
                .upload(board, &dest, data.clone(), &sha, |offset, _| progress(base + offset, total))
                .await;
            if !r.ok {
                // A request refused before it reached the board (unknown, offline) names no file.
                if r.request_id.is_some() {
                    r.error = Some(format!("{dest}: {}", r.error.as_deref().unwrap_or("upload failed")));
                }
                r.bytes = Some(done);
                r.resumed_from = None;
                r.value = Some(serde_json::json!({ "package": package.label, "installed": installed }));
                return r;
            }
            done += data.len() as u64;
            installed.push(dest);
            last = r;
        }
        info!(board, package = %package.label, files = installed.len(), bytes = total, "package installed");
        last.bytes = Some(total);
        last.resumed_from = None;
        last.value = Some(serde_json::json!({ "package": package.label, "installed": installed }));
        last
    }
}

/// The SHA-256 of `data`, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_merged_per_stream_and_cut_at_the_limit() {
        let mut out = OutputBuf::new(10);
        out.push(Stream::Stdout, "abc".into());
        out.push(Stream::Stdout, "def".into());
        out.push(Stream::Stderr, "x".into());
        out.push(Stream::Stdout, "ééé".into());
        out.push(Stream::Stdout, "never".into());
        assert_eq!(out.pieces.len(), 3);
        assert_eq!(out.pieces[0].data, "abcdef");
        assert_eq!(out.pieces[1].data, "x");
        assert!(out.pieces[2].data.starts_with('é'));
        assert!(out.pieces[2].data.ends_with("[roost: output cut here]\n"));
        assert!(out.cut);
    }
}
