//! The `cmd` message: a [`Request`] from the server to a board, its [`Op`]s (execute, upload a
//! chunk, a file system action, rename, reset), and the checks a board runs before acting on one.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::channel::Channel;
use super::error::ProtocolError;
use super::json::{from_json, take_field, to_json};
use super::names::{validate_board_name, validate_request_id};
use super::upload::{base64_decoded_len, check_sha256, is_root_path, validate_path};

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
    /// List a directory: the result's `value` is an array of [`FsEntry`](super::FsEntry).
    Ls,
    /// Stream a file's contents as `stdout` output.
    Cat,
    /// Remove a file or an empty directory.
    Rm,
    /// Create a directory and any missing parents; fine if it already exists.
    Mkdir,
    /// Describe one path: the result's `value` is an [`FsEntry`](super::FsEntry).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::reply::{Reply, ReplyBody};
    use crate::board::test_support::{pinned, SHA_A, SHA_ABC};

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
}
