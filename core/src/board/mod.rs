//! The board command channel's wire protocol: the MQTT topics under `roost/boards/{name}/`, the
//! rule for board names, and the JSON messages on each topic: [`Status`] (retained, board to
//! server), [`Request`] (`cmd`, server to board) and [`Reply`] (`reply`, board to server). Also the
//! pure checks and arithmetic both ends share: request validation, upload chunk sizing, and the
//! lifecycle states the server tracks a request through.
//!
//! `docs/board-protocol.md` describes the same protocol for someone writing a client in another
//! language; the tests here pin the JSON it shows. Hashing and base64 coding happen at the ends
//! (the broker and the agents), not here.
//!
//! One file per part, each beside the tests that pin it: `status`, `request` (the `cmd`
//! message), `reply`, `upload` (paths, digests, base64 and chunk sizes) and `lifecycle` (request
//! states), over `names` (board names and topics), `channel`, `error`, `limits` and `json` (the
//! coding the messages share). The files import each other directly; this one only re-exports,
//! so `roost_core::board::X` is the path for everything.

mod channel;
mod error;
mod json;
mod lifecycle;
mod limits;
mod names;
mod reply;
mod request;
mod status;
#[cfg(test)]
mod test_support;
mod upload;

pub use channel::Channel;
pub use error::ProtocolError;
pub use lifecycle::RequestState;
pub use limits::{MAX_BOARD_NAME_LEN, MAX_PATH_LEN, MAX_REQUEST_ID_LEN, MAX_UPLOAD_CHUNK, UPLOAD_OVERHEAD};
pub use names::{
    cmd_topic, parse_topic, reply_topic, status_topic, topic, topic_filter, validate_board_name,
    validate_request_id, TOPIC_PREFIX,
};
pub use reply::{FsEntry, FsKind, Outcome, Reply, ReplyBody, Stream};
pub use request::{FsAction, Op, Request, UploadChunk};
pub use status::{BoardState, Status, PROTOCOL_VERSION};
pub use upload::{base64_decoded_len, base64_encoded_len, is_root_path, upload_chunk_size, validate_path};

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn every_message_in_the_protocol_doc_parses_validates_and_round_trips() {
        let doc = include_str!("../../../docs/board-protocol.md");
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
}
