//! [`Channel`]: the three topics of a board (`status`, `cmd`, `reply`), by who publishes on them.

use std::fmt;

/// The three topics of a board, by who publishes on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// `roost/boards/{name}/status`: board to server, retained, with a last will.
    Status,
    /// `roost/boards/{name}/cmd`: server to board, one [`Request`](super::Request) per message.
    Cmd,
    /// `roost/boards/{name}/reply`: board to server, one [`Reply`](super::Reply) per message.
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
