//! [`ProtocolError`]: what is wrong with a board name, a topic or a message, and how a value
//! the error quotes is cut to a readable length.

use thiserror::Error;

use super::channel::Channel;
use super::limits::{MAX_BOARD_NAME_LEN, MAX_REQUEST_ID_LEN, UPLOAD_OVERHEAD};

/// What is wrong with a board name, a topic, or a message.
#[derive(Debug, Error)]
pub enum ProtocolError {
    #[error("board name is empty")]
    EmptyBoardName,
    #[error("board name {0:?} is longer than {MAX_BOARD_NAME_LEN} characters")]
    BoardNameTooLong(String),
    #[error("board name {0:?} may hold only ASCII letters, digits, '-', '_' and '.'")]
    BadBoardName(String),
    #[error("board name {0:?} is reserved")]
    ReservedBoardName(String),
    #[error("request id {0:?} must be 1 to {MAX_REQUEST_ID_LEN} ASCII letters, digits, '-', '_' or '.'")]
    BadRequestId(String),
    #[error("path {path:?} {problem}")]
    BadPath { path: String, problem: &'static str },
    #[error("{field} must be a SHA-256 digest as 64 lowercase hex digits, got {value:?}")]
    BadSha256 { field: &'static str, value: String },
    #[error("upload data is not base64 (standard alphabet, padded with '=')")]
    BadBase64,
    #[error("upload chunk of {len} bytes at offset {offset} goes past total_size {total_size}")]
    ChunkPastEnd { offset: u64, len: u64, total_size: u64 },
    #[error("the last upload chunk ends at {end} but total_size is {total_size}")]
    LastChunkShort { end: u64, total_size: u64 },
    #[error("timeout_ms must be at least 1")]
    ZeroTimeout,
    #[error("malformed {channel} message: {source}")]
    Malformed {
        channel: Channel,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "a max payload of {max_payload} bytes leaves no room for upload data \
         (each upload message needs {UPLOAD_OVERHEAD} bytes besides the data)"
    )]
    PayloadTooSmall { max_payload: usize },
}

/// A value cut to a length fit for an error message.
pub(super) fn shorten(value: &str) -> String {
    const KEEP: usize = 80;
    if value.chars().count() <= KEEP {
        value.to_owned()
    } else {
        let mut s: String = value.chars().take(KEEP).collect();
        s.push('…');
        s
    }
}
