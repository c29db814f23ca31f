//! The board command channel's wire protocol: the MQTT topics under `roost/boards/{name}/`, the
//! rule for board names, and the JSON messages on each topic: [`Status`] (retained, board to
//! server), [`Request`] (`cmd`, server to board) and [`Reply`] (`reply`, board to server). Also the
//! pure checks and arithmetic both ends share: request validation, upload chunk sizing, and the
//! lifecycle states the server tracks a request through.
//!
//! `docs/board-protocol.md` describes the same protocol for someone writing a client in another
//! language; the tests here pin the JSON it shows. Hashing and base64 coding happen at the ends
//! (the broker and the agents), not here.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

/// The protocol version this build speaks. A board reports its own in [`Status::protocol_version`];
/// the server sends commands only to boards that speak this one.
pub const PROTOCOL_VERSION: u32 = 1;

/// The topic level every board topic starts with.
pub const TOPIC_PREFIX: &str = "roost/boards";

/// The longest board name, in characters.
pub const MAX_BOARD_NAME_LEN: usize = 64;

/// The longest request id, in characters.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// The longest path on a board, in bytes (UTF-8).
pub const MAX_PATH_LEN: usize = 255;

/// Bytes of an upload `cmd` message that are not chunk data: the JSON keys and punctuation, two
/// SHA-256 digests, two offsets, a request id of up to [`MAX_REQUEST_ID_LEN`] characters and a
/// path of up to [`MAX_PATH_LEN`] bytes even if every byte needs a JSON escape of two bytes.
pub const UPLOAD_OVERHEAD: usize = 1024;

/// The largest upload chunk, in bytes before base64 (256 KiB once encoded), whatever the
/// broker allows: it bounds the memory a board needs for one message and keeps progress steady.
pub const MAX_UPLOAD_CHUNK: usize = 192 * 1024;

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

// ---------------------------------------------------------------------------------------------
// Names and topics

/// Checks a board name: 1 to [`MAX_BOARD_NAME_LEN`] ASCII letters, digits, `-`, `_` and `.`,
/// and not `.` or `..`. Such a name is safe as an MQTT topic level and as a file name.
pub fn validate_board_name(name: &str) -> Result<(), ProtocolError> {
    if name.is_empty() {
        return Err(ProtocolError::EmptyBoardName);
    }
    if !name.bytes().all(is_name_byte) {
        return Err(ProtocolError::BadBoardName(shorten(name)));
    }
    if name.len() > MAX_BOARD_NAME_LEN {
        return Err(ProtocolError::BoardNameTooLong(shorten(name)));
    }
    if name == "." || name == ".." {
        return Err(ProtocolError::ReservedBoardName(name.to_owned()));
    }
    Ok(())
}

/// Checks a request id: 1 to [`MAX_REQUEST_ID_LEN`] ASCII letters, digits, `-`, `_` and `.`.
pub fn validate_request_id(id: &str) -> Result<(), ProtocolError> {
    if id.is_empty() || id.len() > MAX_REQUEST_ID_LEN || !id.bytes().all(is_name_byte) {
        return Err(ProtocolError::BadRequestId(shorten(id)));
    }
    Ok(())
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// The three topics of a board, by who publishes on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// `roost/boards/{name}/status`: board to server, retained, with a last will.
    Status,
    /// `roost/boards/{name}/cmd`: server to board, one [`Request`] per message.
    Cmd,
    /// `roost/boards/{name}/reply`: board to server, one [`Reply`] per message.
    Reply,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Status, Channel::Cmd, Channel::Reply];

    /// The last topic level: `status`, `cmd` or `reply`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Status => "status",
            Channel::Cmd => "cmd",
            Channel::Reply => "reply",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The topic of `board`'s `channel`: `roost/boards/{board}/{channel}`.
pub fn topic(board: &str, channel: Channel) -> Result<String, ProtocolError> {
    validate_board_name(board)?;
    Ok(format!("{TOPIC_PREFIX}/{board}/{channel}"))
}

/// `roost/boards/{board}/status`.
pub fn status_topic(board: &str) -> Result<String, ProtocolError> {
    topic(board, Channel::Status)
}

/// `roost/boards/{board}/cmd`.
pub fn cmd_topic(board: &str) -> Result<String, ProtocolError> {
    topic(board, Channel::Cmd)
}

/// `roost/boards/{board}/reply`.
pub fn reply_topic(board: &str) -> Result<String, ProtocolError> {
    topic(board, Channel::Reply)
}

/// The MQTT topic filter that matches `channel` of every board: `roost/boards/+/{channel}`.
pub fn topic_filter(channel: Channel) -> String {
    format!("{TOPIC_PREFIX}/+/{channel}")
}

/// The board name and channel of a board topic; `None` for any other topic, including one
/// whose board name is not valid.
pub fn parse_topic(topic: &str) -> Option<(&str, Channel)> {
    let rest = topic.strip_prefix(TOPIC_PREFIX)?.strip_prefix('/')?;
    let (board, channel) = rest.split_once('/')?;
    let channel = Channel::ALL.into_iter().find(|c| c.as_str() == channel)?;
    validate_board_name(board).ok()?;
    Some((board, channel))
}

// ---------------------------------------------------------------------------------------------
// status

/// What a board is doing, as it reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoardState {
    /// Connected and ready for a request.
    Idle,
    /// Connected and running a request.
    Busy,
    /// Not connected (the last will, or a clean goodbye).
    Offline,
}

/// The retained message on `roost/boards/{name}/status`. Unknown fields are ignored, so a newer
/// board may add some without a new protocol version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub state: BoardState,
    /// What the board runs on, e.g. `linux-x86_64`, `esp8266`, `micropython-unix`.
    pub platform: String,
    /// The board client's own version, e.g. `0.1.0`.
    pub client_version: String,
    /// The protocol version the board speaks; compare with [`PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// Free memory in bytes, where the board knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_memory: Option<u64>,
    /// The directory every board path is relative to, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_dir: Option<String>,
    /// The largest `cmd` message in bytes the board accepts, if it is smaller than the broker's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_payload: Option<u64>,
}

impl Status {
    /// The same status with the state `offline`: what a board registers as its last will.
    pub fn offline(&self) -> Status {
        Status { state: BoardState::Offline, ..self.clone() }
    }

    /// Whether the board speaks the protocol version of this build, so it may be sent commands.
    pub fn protocol_supported(&self) -> bool {
        self.protocol_version == PROTOCOL_VERSION
    }

    /// Parses a `status` payload.
    pub fn from_json(payload: &[u8]) -> Result<Status, ProtocolError> {
        from_json(payload, Channel::Status)
    }

    /// The `status` payload.
    pub fn to_json(&self) -> Vec<u8> {
        to_json(self)
    }
}

// ---------------------------------------------------------------------------------------------
// cmd

/// A message on `roost/boards/{name}/cmd`: `{"id": ..., "op": ..., <the op's fields>}`.
///
/// Requests are strict: an unknown `op` or an unknown field is an error, so a board never
/// half-understands a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    /// Chosen by the server, unique among its requests; every reply carries it back. All chunks
    /// of one upload carry the same id.
    pub id: String,
    /// The operation. Flattened for serialization only: the fields sit beside `id` on the wire.
    /// Deserialization is written by hand below so that unknown fields stay errors.
    #[serde(flatten)]
    pub op: Op,
}

/// What a [`Request`] asks the board to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Run `code` (a shell command on Linux, Python on MicroPython), streaming its output, and
    /// stop it after `timeout_ms`.
    Execute { code: String, timeout_ms: u64 },
    /// Write one chunk of a file.
    Upload(UploadChunk),
    /// A file system operation on `path`.
    Fs { action: FsAction, path: String },
    /// Take a new board name.
    Rename { new_name: String },
    /// Reply, then restart the board. (A struct variant with no fields, not a unit variant, so
    /// that unknown fields are refused here too.)
    Reset {},
}

/// One chunk of an upload: `data` holds the bytes `offset..offset + len` of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadChunk {
    /// Destination, relative to the board's root (see [`validate_path`]).
    pub path: String,
    /// Where in the file this chunk starts.
    pub offset: u64,
    /// The chunk's bytes, base64 (RFC 4648 standard alphabet, with `=` padding).
    pub data: String,
    /// SHA-256 of the chunk's bytes (after base64 decoding), lowercase hex.
    pub chunk_sha256: String,
    /// The whole file's size in bytes.
    pub total_size: u64,
    /// SHA-256 of the whole file, lowercase hex.
    pub file_sha256: String,
    /// Whether this chunk ends the file: the board then checks the whole file and renames it
    /// into place.
    pub last: bool,
}

/// The file system operations of [`Op::Fs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsAction {
    /// List a directory: the result's `value` is an array of [`FsEntry`].
    Ls,
    /// Stream a file's contents as `stdout` output.
    Cat,
    /// Remove a file or an empty directory.
    Rm,
    /// Create a directory and any missing parents; fine if it already exists.
    Mkdir,
    /// Describe one path: the result's `value` is an [`FsEntry`].
    Stat,
}

impl FsAction {
    /// Whether the action may name the board's root directory (`""` or `.`).
    pub fn allows_root(self) -> bool {
        matches!(self, FsAction::Ls | FsAction::Stat)
    }
}

impl Request {
    /// Parses a `cmd` payload.
    pub fn from_json(payload: &[u8]) -> Result<Request, ProtocolError> {
        from_json(payload, Channel::Cmd)
    }

    /// The `cmd` payload.
    pub fn to_json(&self) -> Vec<u8> {
        to_json(self)
    }

    /// Checks what the JSON shape cannot: the id, paths, new names, digests, base64 and that
    /// chunks stay inside the file. A board runs this before acting, and answers a request that
    /// fails it with a failed result carrying the error.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        validate_request_id(&self.id)?;
        match &self.op {
            Op::Execute { timeout_ms, .. } => {
                if *timeout_ms == 0 {
                    return Err(ProtocolError::ZeroTimeout);
                }
            }
            Op::Upload(chunk) => chunk.validate()?,
            Op::Fs { action, path } => {
                if !(action.allows_root() && is_root_path(path)) {
                    validate_path(path)?;
                }
            }
            Op::Rename { new_name } => validate_board_name(new_name)?,
            Op::Reset {} => {}
        }
        Ok(())
    }
}

impl UploadChunk {
    /// The number of file bytes in `data`, if `data` is valid base64.
    pub fn len(&self) -> Option<u64> {
        base64_decoded_len(&self.data).map(|n| n as u64)
    }

    /// Whether the chunk carries no bytes (only an empty file's single chunk does).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Where the chunk ends in the file: `offset + len`.
    pub fn end(&self) -> Option<u64> {
        self.offset.checked_add(self.len()?)
    }

    fn validate(&self) -> Result<(), ProtocolError> {
        validate_path(&self.path)?;
        check_sha256("chunk_sha256", &self.chunk_sha256)?;
        check_sha256("file_sha256", &self.file_sha256)?;
        let len = self.len().ok_or(ProtocolError::BadBase64)?;
        let past_end =
            || ProtocolError::ChunkPastEnd { offset: self.offset, len, total_size: self.total_size };
        let end = self.offset.checked_add(len).ok_or_else(past_end)?;
        if end > self.total_size {
            return Err(past_end());
        }
        if self.last && end != self.total_size {
            return Err(ProtocolError::LastChunkShort { end, total_size: self.total_size });
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Map::<String, Value>::deserialize(deserializer)?;
        let id = take_field(&mut fields, "id")?;
        let op = Op::deserialize(Value::Object(fields)).map_err(de::Error::custom)?;
        Ok(Request { id, op })
    }
}

// ---------------------------------------------------------------------------------------------
// reply

/// A message on `roost/boards/{name}/reply`: `{"id": ..., "seq": ..., "type": ..., <fields>}`.
///
/// The replies to one request are numbered by `seq` from 0 without gaps, so the server can put
/// them in order and drop duplicates. Unknown fields are ignored (a newer board may add some);
/// an unknown `type` is an error.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reply {
    /// The id of the request this answers.
    pub id: String,
    /// 0 for the first reply to a request, then 1, 2, ...
    pub seq: u64,
    /// Flattened for serialization only, like [`Request::op`].
    #[serde(flatten)]
    pub body: ReplyBody,
}

/// What a [`Reply`] says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReplyBody {
    /// A piece of output, in order (text; invalid UTF-8 is replaced with U+FFFD).
    Output { stream: Stream, data: String },
    /// Upload: the board holds the file's bytes `0..offset` in its temporary file.
    Progress { offset: u64 },
    /// The final reply to a request; nothing follows it.
    Result(Outcome),
}

/// Which output stream a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Whether the request succeeded: for `execute`, the code ran and exited with status 0.
    pub ok: bool,
    /// The exit status of `execute`, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why the request failed, in words for the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A structured answer: the entries of `fs ls`, the entry of `fs stat`, the value of a
    /// MicroPython expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl Outcome {
    /// A success with an optional exit code and nothing else.
    pub fn succeeded(exit_code: Option<i32>) -> Outcome {
        Outcome { ok: true, exit_code, error: None, value: None }
    }

    /// A failure with a reason.
    pub fn failed(error: impl Into<String>) -> Outcome {
        Outcome { ok: false, exit_code: None, error: Some(error.into()), value: None }
    }
}

/// One entry of an `fs ls` result, or the answer of `fs stat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsEntry {
    /// The entry's name (the last path component).
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FsKind,
    /// Size in bytes, for files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// What kind of thing an [`FsEntry`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsKind {
    File,
    Dir,
    Other,
}

impl Reply {
    /// Parses a `reply` payload.
    pub fn from_json(payload: &[u8]) -> Result<Reply, ProtocolError> {
        from_json(payload, Channel::Reply)
    }

    /// The `reply` payload.
    pub fn to_json(&self) -> Vec<u8> {
        to_json(self)
    }

    /// Whether this is the final reply to its request.
    pub fn is_final(&self) -> bool {
        matches!(self.body, ReplyBody::Result(_))
    }
}

impl<'de> Deserialize<'de> for Reply {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Map::<String, Value>::deserialize(deserializer)?;
        let id = take_field(&mut fields, "id")?;
        let seq = take_field(&mut fields, "seq")?;
        let body = ReplyBody::deserialize(Value::Object(fields)).map_err(de::Error::custom)?;
        Ok(Reply { id, seq, body })
    }
}

// ---------------------------------------------------------------------------------------------
// request lifecycle (server side)

/// Where a request is, as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Accepted, waiting for the board (its concurrency limit, or an earlier request).
    Queued,
    /// Published on the board's `cmd` topic; no reply yet.
    Sent,
    /// The board has replied at least once (output or progress), not finally.
    Running,
    /// The final reply said `ok: true`.
    Succeeded,
    /// The final reply said `ok: false`, or the board was or went offline, or the request was
    /// refused before it was sent.
    Failed,
    /// No final reply before the deadline.
    TimedOut,
}

impl RequestState {
    /// Whether nothing more will happen to the request.
    pub fn is_final(self) -> bool {
        matches!(self, RequestState::Succeeded | RequestState::Failed | RequestState::TimedOut)
    }

    /// The state's name on the wire and in the CLI: `queued`, ..., `timed_out`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Queued => "queued",
            RequestState::Sent => "sent",
            RequestState::Running => "running",
            RequestState::Succeeded => "succeeded",
            RequestState::Failed => "failed",
            RequestState::TimedOut => "timed_out",
        }
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// paths, digests, base64 and chunk sizes

/// Whether `path` names the board's root directory: `""` or `.`.
pub fn is_root_path(path: &str) -> bool {
    path.is_empty() || path == "."
}

/// Checks a path on a board: relative to the board's root, `/`-separated, at most
/// [`MAX_PATH_LEN`] bytes, with no empty, `.` or `..` component, no `\` and no control
/// character. (Symbolic links that leave the root are the board's to refuse: only it can see
/// them.)
pub fn validate_path(path: &str) -> Result<(), ProtocolError> {
    let bad = |problem| Err(ProtocolError::BadPath { path: shorten(path), problem });
    if path.is_empty() {
        return bad("is empty");
    }
    if path.len() > MAX_PATH_LEN {
        return bad("is longer than 255 bytes");
    }
    if path.starts_with('/') {
        return bad("is absolute; paths are relative to the board's root");
    }
    if path.contains('\\') {
        return bad("holds '\\'; separate directories with '/'");
    }
    if path.chars().any(char::is_control) {
        return bad("holds a control character");
    }
    for component in path.split('/') {
        match component {
            "" => return bad("has an empty component"),
            "." | ".." => return bad("has a '.' or '..' component"),
            _ => {}
        }
    }
    Ok(())
}

fn check_sha256(field: &'static str, value: &str) -> Result<(), ProtocolError> {
    let ok = value.len() == 64 && value.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::BadSha256 { field, value: shorten(value) })
    }
}

/// The length of base64 text (standard alphabet, padded) for `n` bytes.
pub fn base64_encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// The number of bytes base64 text (standard alphabet, `=` padding) decodes to, or `None` if it
/// is not such text.
pub fn base64_decoded_len(data: &str) -> Option<usize> {
    let bytes = data.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let pad = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    if pad > 2 {
        return None;
    }
    let body = &bytes[..bytes.len() - pad];
    if !body.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/') {
        return None;
    }
    Some(bytes.len() / 4 * 3 - pad)
}

/// The number of file bytes to put in each upload chunk so that every upload `cmd` message fits
/// in `max_payload` bytes (the smaller of the broker's limit and the board's
/// [`Status::max_payload`]): `max_payload` minus [`UPLOAD_OVERHEAD`], times 3/4 for base64,
/// rounded down to a multiple of 3 and capped at [`MAX_UPLOAD_CHUNK`].
pub fn upload_chunk_size(max_payload: usize) -> Result<usize, ProtocolError> {
    let room = max_payload.saturating_sub(UPLOAD_OVERHEAD);
    let chunk = (room / 4 * 3).min(MAX_UPLOAD_CHUNK);
    if chunk == 0 {
        return Err(ProtocolError::PayloadTooSmall { max_payload });
    }
    Ok(chunk)
}

// ---------------------------------------------------------------------------------------------
// helpers

fn from_json<T: DeserializeOwned>(payload: &[u8], channel: Channel) -> Result<T, ProtocolError> {
    serde_json::from_slice(payload).map_err(|source| ProtocolError::Malformed { channel, source })
}

fn to_json<T: Serialize>(message: &T) -> Vec<u8> {
    // The message types hold only strings, numbers, booleans and JSON values, which always
    // serialize.
    serde_json::to_vec(message).expect("board protocol messages serialize to JSON")
}

/// Removes `key` from a message's fields and deserializes it.
fn take_field<T: DeserializeOwned, E: de::Error>(
    fields: &mut Map<String, Value>,
    key: &'static str,
) -> Result<T, E> {
    let value = fields.remove(key).ok_or_else(|| E::missing_field(key))?;
    T::deserialize(value).map_err(|e| E::custom(format_args!("field `{key}`: {e}")))
}

/// A value cut to a length fit for an error message.
fn shorten(value: &str) -> String {
    const KEEP: usize = 80;
    if value.chars().count() <= KEEP {
        value.to_owned()
    } else {
        let mut s: String = value.chars().take(KEEP).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SHA_A: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";
    const SHA_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    /// Serializes to exactly `json`, and `json` parses back to `message`.
    fn pinned<T>(message: &T, json: &str)
    where
        T: Serialize + DeserializeOwned + PartialEq + fmt::Debug,
    {
        assert_eq!(serde_json::to_string(message).unwrap(), json);
        assert_eq!(&serde_json::from_str::<T>(json).unwrap(), message);
    }

    fn request(op: Op) -> Request {
        Request { id: "r1".into(), op }
    }

    fn chunk() -> UploadChunk {
        UploadChunk {
            path: "lib/x.py".into(),
            offset: 0,
            data: "YWJj".into(),
            chunk_sha256: SHA_ABC.into(),
            total_size: 4,
            file_sha256: SHA_A.into(),
            last: false,
        }
    }

    #[test]
    fn topics_are_built_and_parsed() {
        assert_eq!(status_topic("esp8266-008").unwrap(), "roost/boards/esp8266-008/status");
        assert_eq!(cmd_topic("b.1").unwrap(), "roost/boards/b.1/cmd");
        assert_eq!(reply_topic("b_1").unwrap(), "roost/boards/b_1/reply");
        assert_eq!(topic_filter(Channel::Reply), "roost/boards/+/reply");
        for channel in Channel::ALL {
            let t = topic("wipy2-3", channel).unwrap();
            assert_eq!(parse_topic(&t), Some(("wipy2-3", channel)));
        }
        assert_eq!(parse_topic("roost/boards/b1/other"), None);
        assert_eq!(parse_topic("roost/boards/b1/status/x"), None);
        assert_eq!(parse_topic("roost/boards//status"), None);
        assert_eq!(parse_topic("roost/boards/b 1/status"), None);
        assert_eq!(parse_topic("roost/boardsX/b1/status"), None);
        assert_eq!(parse_topic("devices/b1/status"), None);
    }

    #[test]
    fn board_names_are_checked() {
        for ok in ["a", "esp8266-008", "Board_1.local", &"x".repeat(64)] {
            assert!(validate_board_name(ok).is_ok(), "{ok}");
        }
        assert!(matches!(validate_board_name(""), Err(ProtocolError::EmptyBoardName)));
        assert!(matches!(validate_board_name(&"x".repeat(65)), Err(ProtocolError::BoardNameTooLong(_))));
        for bad in ["a/b", "a+", "#", "a b", "é", "a\0"] {
            assert!(matches!(validate_board_name(bad), Err(ProtocolError::BadBoardName(_))), "{bad:?}");
        }
        assert!(matches!(validate_board_name(".."), Err(ProtocolError::ReservedBoardName(_))));
        assert!(topic("a/b", Channel::Cmd).is_err());
        assert_eq!(
            validate_board_name("a b").unwrap_err().to_string(),
            "board name \"a b\" may hold only ASCII letters, digits, '-', '_' and '.'"
        );
    }

    #[test]
    fn status_wire_format_is_pinned() {
        let status = Status {
            state: BoardState::Idle,
            platform: "esp8266".into(),
            client_version: "0.1.0".into(),
            protocol_version: 1,
            free_memory: Some(21440),
            root_dir: Some("/".into()),
            max_payload: Some(4096),
        };
        pinned(
            &status,
            r#"{"state":"idle","platform":"esp8266","client_version":"0.1.0","protocol_version":1,"free_memory":21440,"root_dir":"/","max_payload":4096}"#,
        );
        let will = Status { free_memory: None, root_dir: None, max_payload: None, ..status.offline() };
        pinned(
            &will,
            r#"{"state":"offline","platform":"esp8266","client_version":"0.1.0","protocol_version":1}"#,
        );
    }

    #[test]
    fn status_ignores_unknown_fields_and_reports_its_version() {
        let status = Status::from_json(
            br#"{"state":"busy","platform":"linux","client_version":"9","protocol_version":2,"uptime":5}"#,
        )
        .unwrap();
        assert_eq!(status.state, BoardState::Busy);
        assert!(!status.protocol_supported());
        assert!(Status { protocol_version: PROTOCOL_VERSION, ..status }.protocol_supported());
    }

    #[test]
    fn request_wire_format_is_pinned() {
        pinned(
            &request(Op::Execute { code: "echo hi".into(), timeout_ms: 5000 }),
            r#"{"id":"r1","op":"execute","code":"echo hi","timeout_ms":5000}"#,
        );
        pinned(
            &request(Op::Upload(chunk())),
            &format!(
                r#"{{"id":"r1","op":"upload","path":"lib/x.py","offset":0,"data":"YWJj","chunk_sha256":"{SHA_ABC}","total_size":4,"file_sha256":"{SHA_A}","last":false}}"#
            ),
        );
        pinned(
            &request(Op::Fs { action: FsAction::Ls, path: "lib".into() }),
            r#"{"id":"r1","op":"fs","action":"ls","path":"lib"}"#,
        );
        pinned(
            &request(Op::Fs { action: FsAction::Mkdir, path: "lib/a".into() }),
            r#"{"id":"r1","op":"fs","action":"mkdir","path":"lib/a"}"#,
        );
        pinned(
            &request(Op::Rename { new_name: "b-2".into() }),
            r#"{"id":"r1","op":"rename","new_name":"b-2"}"#,
        );
        pinned(&request(Op::Reset {}), r#"{"id":"r1","op":"reset"}"#);
    }

    #[test]
    fn request_fields_may_come_in_any_order() {
        let r = Request::from_json(br#"{"timeout_ms":1,"op":"execute","code":"x","id":"r9"}"#).unwrap();
        assert_eq!(r, Request { id: "r9".into(), op: Op::Execute { code: "x".into(), timeout_ms: 1 } });
    }

    #[test]
    fn unknown_op_is_a_clear_error() {
        let err = Request::from_json(br#"{"id":"r1","op":"format_flash"}"#).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("malformed cmd message: unknown variant `format_flash`"), "{msg}");
        assert!(msg.contains("`execute`, `upload`, `fs`, `rename`, `reset`"), "{msg}");
    }

    #[test]
    fn requests_refuse_unknown_and_missing_fields() {
        let err = |json: &str| Request::from_json(json.as_bytes()).unwrap_err().to_string();
        assert!(err(r#"{"id":"r1","op":"execute","code":"x","timeout_ms":1,"sudo":true}"#)
            .contains("unknown field `sudo`"));
        assert!(err(r#"{"id":"r1","op":"reset","now":true}"#).contains("unknown field `now`"));
        assert!(err(r#"{"id":"r1","op":"fs","action":"ls","path":"a","x":1}"#).contains("unknown field `x`"));
        let upload = format!(
            r#"{{"id":"r1","op":"upload","path":"a","offset":0,"data":"","chunk_sha256":"{SHA_A}","total_size":0,"file_sha256":"{SHA_A}","last":true,"mode":493}}"#
        );
        assert!(err(&upload).contains("unknown field `mode`"));
        assert!(err(r#"{"op":"reset"}"#).contains("missing field `id`"));
        assert!(err(r#"{"id":"r1"}"#).contains("missing field `op`"));
        assert!(err(r#"{"id":"r1","op":"execute","code":"x"}"#).contains("missing field `timeout_ms`"));
        assert!(err(r#"{"id":7,"op":"reset"}"#).contains("field `id`"));
        assert!(
            err(r#"{"id":"r1","op":"fs","action":"chmod","path":"a"}"#).contains("unknown variant `chmod`")
        );
        assert!(err("[1,2]").starts_with("malformed cmd message"));
        assert!(err("not json").starts_with("malformed cmd message"));
    }

    #[test]
    fn reply_wire_format_is_pinned() {
        let reply = |seq, body| Reply { id: "r1".into(), seq, body };
        pinned(
            &reply(0, ReplyBody::Output { stream: Stream::Stdout, data: "hi\n".into() }),
            r#"{"id":"r1","seq":0,"type":"output","stream":"stdout","data":"hi\n"}"#,
        );
        pinned(
            &reply(1, ReplyBody::Output { stream: Stream::Stderr, data: "oops".into() }),
            r#"{"id":"r1","seq":1,"type":"output","stream":"stderr","data":"oops"}"#,
        );
        pinned(
            &reply(2, ReplyBody::Progress { offset: 4096 }),
            r#"{"id":"r1","seq":2,"type":"progress","offset":4096}"#,
        );
        pinned(
            &reply(3, ReplyBody::Result(Outcome::succeeded(Some(0)))),
            r#"{"id":"r1","seq":3,"type":"result","ok":true,"exit_code":0}"#,
        );
        pinned(
            &reply(4, ReplyBody::Result(Outcome::failed("timed out after 5000 ms"))),
            r#"{"id":"r1","seq":4,"type":"result","ok":false,"error":"timed out after 5000 ms"}"#,
        );
        let entries = vec![
            FsEntry { name: "lib".into(), kind: FsKind::Dir, size: None },
            FsEntry { name: "main.py".into(), kind: FsKind::File, size: Some(120) },
        ];
        let listing =
            Outcome { value: Some(serde_json::to_value(&entries).unwrap()), ..Outcome::succeeded(None) };
        // A `value` is free-form JSON, whose object keys serde_json may sort: compare as JSON.
        let listing = reply(5, ReplyBody::Result(listing));
        let wire = r#"{"id":"r1","seq":5,"type":"result","ok":true,"value":[{"name":"lib","type":"dir"},{"name":"main.py","type":"file","size":120}]}"#;
        assert_eq!(serde_json::to_value(&listing).unwrap(), serde_json::from_str::<Value>(wire).unwrap());
        assert_eq!(Reply::from_json(wire.as_bytes()).unwrap(), listing);
        let full = Outcome {
            ok: false,
            exit_code: Some(2),
            error: Some("exit status 2".into()),
            value: Some(json!(42)),
        };
        pinned(
            &reply(6, ReplyBody::Result(full)),
            r#"{"id":"r1","seq":6,"type":"result","ok":false,"exit_code":2,"error":"exit status 2","value":42}"#,
        );
    }

    #[test]
    fn replies_ignore_unknown_fields_but_not_unknown_types() {
        let r = Reply::from_json(br#"{"id":"r1","seq":0,"type":"progress","offset":3,"rate":9}"#).unwrap();
        assert_eq!(r.body, ReplyBody::Progress { offset: 3 });
        assert!(!r.is_final());
        let err = Reply::from_json(br#"{"id":"r1","seq":0,"type":"shout"}"#).unwrap_err().to_string();
        assert!(err.starts_with("malformed reply message: unknown variant `shout`"), "{err}");
        assert!(Reply::from_json(br#"{"id":"r1","type":"progress","offset":3}"#)
            .unwrap_err()
            .to_string()
            .contains("missing field `seq`"));
        assert!(Reply::from_json(br#"{"id":"r1","seq":-1,"type":"progress","offset":3}"#).is_err());
        let fin = Reply::from_json(br#"{"id":"r1","seq":0,"type":"result","ok":true,"value":null}"#).unwrap();
        assert!(fin.is_final());
        assert_eq!(fin.body, ReplyBody::Result(Outcome::succeeded(None)));
    }

    #[test]
    fn to_json_round_trips_through_from_json() {
        let req = request(Op::Upload(chunk()));
        assert_eq!(Request::from_json(&req.to_json()).unwrap(), req);
        let reply = Reply { id: "r1".into(), seq: 7, body: ReplyBody::Progress { offset: 3 } };
        assert_eq!(Reply::from_json(&reply.to_json()).unwrap(), reply);
    }

    #[test]
    fn valid_requests_pass_validation() {
        request(Op::Execute { code: String::new(), timeout_ms: 1 }).validate().unwrap();
        request(Op::Upload(chunk())).validate().unwrap();
        let last = UploadChunk { offset: 3, data: "YQ==".into(), last: true, ..chunk() };
        request(Op::Upload(last)).validate().unwrap();
        let empty_file = UploadChunk { total_size: 0, data: String::new(), last: true, ..chunk() };
        request(Op::Upload(empty_file)).validate().unwrap();
        request(Op::Fs { action: FsAction::Ls, path: String::new() }).validate().unwrap();
        request(Op::Fs { action: FsAction::Stat, path: ".".into() }).validate().unwrap();
        request(Op::Fs { action: FsAction::Cat, path: "lib/a b.py".into() }).validate().unwrap();
        request(Op::Rename { new_name: "b-2".into() }).validate().unwrap();
        request(Op::Reset {}).validate().unwrap();
    }

    #[test]
    fn hostile_requests_fail_validation() {
        let invalid = |op: Op| request(op).validate().unwrap_err().to_string();
        assert_eq!(
            invalid(Op::Upload(UploadChunk { path: "../etc/passwd".into(), ..chunk() })),
            "path \"../etc/passwd\" has a '.' or '..' component"
        );
        for path in ["/etc/passwd", "a/../../b", "a\\b", "a//b", "a/", "", "a\0b", "a\nb", &"p".repeat(256)] {
            let err = request(Op::Upload(UploadChunk { path: path.into(), ..chunk() })).validate();
            assert!(matches!(err, Err(ProtocolError::BadPath { .. })), "{path:?}");
        }
        assert!(matches!(
            request(Op::Fs { action: FsAction::Rm, path: ".".into() }).validate(),
            Err(ProtocolError::BadPath { .. })
        ));
        assert!(matches!(
            request(Op::Fs { action: FsAction::Rm, path: String::new() }).validate(),
            Err(ProtocolError::BadPath { .. })
        ));
        assert_eq!(invalid(Op::Execute { code: "x".into(), timeout_ms: 0 }), "timeout_ms must be at least 1");
        assert!(invalid(Op::Rename { new_name: "../x".into() }).starts_with("board name"));
        assert!(invalid(Op::Upload(UploadChunk { chunk_sha256: SHA_A.to_uppercase(), ..chunk() }))
            .starts_with("chunk_sha256 must be a SHA-256 digest"));
        assert!(invalid(Op::Upload(UploadChunk { file_sha256: "abc".into(), ..chunk() }))
            .starts_with("file_sha256 must be"));
        assert_eq!(
            invalid(Op::Upload(UploadChunk { data: "YWJ".into(), ..chunk() })),
            "upload data is not base64 (standard alphabet, padded with '=')"
        );
        assert_eq!(
            invalid(Op::Upload(UploadChunk { offset: 2, ..chunk() })),
            "upload chunk of 3 bytes at offset 2 goes past total_size 4"
        );
        assert!(matches!(
            request(Op::Upload(UploadChunk { offset: u64::MAX, ..chunk() })).validate(),
            Err(ProtocolError::ChunkPastEnd { .. })
        ));
        assert_eq!(
            invalid(Op::Upload(UploadChunk { last: true, ..chunk() })),
            "the last upload chunk ends at 3 but total_size is 4"
        );
        let bad_id = Request { id: "r 1/#".into(), op: Op::Reset {} }.validate().unwrap_err();
        assert!(matches!(bad_id, ProtocolError::BadRequestId(_)));
        assert!(Request { id: "x".repeat(65), op: Op::Reset {} }.validate().is_err());
    }

    #[test]
    fn base64_lengths_follow_rfc_4648() {
        assert_eq!(base64_decoded_len(""), Some(0));
        assert_eq!(base64_decoded_len("YQ=="), Some(1));
        assert_eq!(base64_decoded_len("YWI="), Some(2));
        assert_eq!(base64_decoded_len("YWJj"), Some(3));
        assert_eq!(base64_decoded_len("YWJjZA=="), Some(4));
        assert_eq!(base64_decoded_len("+/+/"), Some(3));
        assert_eq!(base64_decoded_len("YWJ"), None);
        assert_eq!(base64_decoded_len("Y==="), None);
        assert_eq!(base64_decoded_len("YW-_"), None);
        assert_eq!(base64_decoded_len("Y=Jj"), None);
        for n in 0..10 {
            assert_eq!(base64_encoded_len(n), [0, 4, 4, 4, 8, 8, 8, 12, 12, 12][n]);
        }
    }

    #[test]
    fn chunk_size_leaves_room_for_the_envelope_and_base64() {
        assert_eq!(upload_chunk_size(UPLOAD_OVERHEAD + 4).unwrap(), 3);
        assert_eq!(upload_chunk_size(UPLOAD_OVERHEAD + 7).unwrap(), 3);
        assert_eq!(upload_chunk_size(UPLOAD_OVERHEAD + 8).unwrap(), 6);
        assert_eq!(upload_chunk_size(4096).unwrap(), 2304);
        assert_eq!(upload_chunk_size(usize::MAX).unwrap(), MAX_UPLOAD_CHUNK);
        assert_eq!(base64_encoded_len(MAX_UPLOAD_CHUNK), 256 * 1024);
        for tiny in [0, 100, UPLOAD_OVERHEAD, UPLOAD_OVERHEAD + 3] {
            assert!(matches!(upload_chunk_size(tiny), Err(ProtocolError::PayloadTooSmall { .. })), "{tiny}");
        }
        assert_eq!(
            upload_chunk_size(1000).unwrap_err().to_string(),
            "a max payload of 1000 bytes leaves no room for upload data \
             (each upload message needs 1024 bytes besides the data)"
        );
    }

    #[test]
    fn worst_case_upload_message_fits_the_payload_it_was_sized_for() {
        for max_payload in [UPLOAD_OVERHEAD + 4, 1500, 4096, 65_536, 268_435_455] {
            let size = upload_chunk_size(max_payload).unwrap();
            let worst = Request {
                id: "i".repeat(MAX_REQUEST_ID_LEN),
                op: Op::Upload(UploadChunk {
                    // Every byte of the longest path needs a two-byte JSON escape.
                    path: "\"".repeat(MAX_PATH_LEN),
                    offset: u64::MAX,
                    data: "A".repeat(base64_encoded_len(size)),
                    chunk_sha256: SHA_A.into(),
                    total_size: u64::MAX,
                    file_sha256: SHA_A.into(),
                    last: false,
                }),
            };
            worst.validate().unwrap_or_else(|e| {
                // Only the offset is out of range; everything that affects the size is legal.
                assert!(matches!(e, ProtocolError::ChunkPastEnd { .. }), "{e}");
            });
            let len = worst.to_json().len();
            assert!(len <= max_payload, "{len} > {max_payload}");
        }
    }

    #[test]
    fn every_message_in_the_protocol_doc_parses_validates_and_round_trips() {
        let doc = include_str!("../../docs/board-protocol.md");
        let mut checked = 0;
        let mut in_block = false;
        for line in doc.lines() {
            if line.starts_with("```") {
                in_block = line == "```json" || line == "```text";
                continue;
            }
            let json = line.trim().trim_start_matches("server -> ").trim_start_matches("board  -> ");
            if !in_block || !json.starts_with('{') {
                continue;
            }
            let wire: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
            let back = if wire.get("op").is_some() {
                let request = Request::from_json(json.as_bytes()).unwrap();
                request.validate().unwrap_or_else(|e| panic!("{json}: {e}"));
                request.to_json()
            } else if wire.get("seq").is_some() {
                Reply::from_json(json.as_bytes()).unwrap().to_json()
            } else {
                Status::from_json(json.as_bytes()).unwrap().to_json()
            };
            assert_eq!(serde_json::from_slice::<Value>(&back).unwrap(), wire, "{json}");
            checked += 1;
        }
        assert!(checked >= 15, "only {checked} messages found in the doc");
    }

    #[test]
    fn request_states_know_when_they_are_final() {
        let all = [
            RequestState::Queued,
            RequestState::Sent,
            RequestState::Running,
            RequestState::Succeeded,
            RequestState::Failed,
            RequestState::TimedOut,
        ];
        let finals: Vec<_> = all.iter().filter(|s| s.is_final()).map(|s| s.as_str()).collect();
        assert_eq!(finals, ["succeeded", "failed", "timed_out"]);
        for s in all {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
            assert_eq!(s.to_string(), s.as_str());
        }
    }
}
