//! [`RequestState`]: where a request is as the server tracks it, from queued to a final state.

use std::fmt;

use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
