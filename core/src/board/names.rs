//! Board names, request ids and the MQTT topics under `roost/boards/{name}/`: building them,
//! checking them, and reading a board name and channel back out of a topic.

use super::channel::Channel;
use super::error::{shorten, ProtocolError};
use super::limits::{MAX_BOARD_NAME_LEN, MAX_REQUEST_ID_LEN};

/// The topic level every board topic starts with.
pub const TOPIC_PREFIX: &str = "roost/boards";

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
