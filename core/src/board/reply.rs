//! The `reply` message: a [`Reply`] from a board to the server, numbered by `seq`, carrying output,
//! upload progress, or the final [`Outcome`] (with [`FsEntry`] values for `fs ls` and `fs stat`).

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::channel::Channel;
use super::error::ProtocolError;
use super::json::{from_json, take_field, to_json};

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
    /// Flattened for serialization only, like [`Request::op`](super::Request::op).
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::board::test_support::pinned;

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
}
