//! Who may publish and subscribe under `roost/boards/`: pure rules, applied by the broker's ACL
//! hooks (`mqtt/mod.rs`) to every client PUBLISH, SUBSCRIBE and last will.
//!
//! A client's board identity is its MQTT client id, or its username when it has one (so a board
//! given credentials named after it may use any client id). The rules:
//!
//! - Nobody but Roost publishes on any `cmd` topic. Roost publishes commands in-process, so no
//!   network client ever needs to: a `cmd` publish from a client is refused (and the client is
//!   disconnected), whatever its identity.
//! - A board publishes only its own `status` and `reply`: `roost/boards/{identity}/status|reply`.
//!   Anything else under `roost/boards/` is refused.
//! - A board's last will obeys the same rule (a will on another board's topic is neutralised).
//! - Commands and their output are private to Roost and the board: a subscription whose filter
//!   could match another board's `cmd` or `reply` topic (`#`, `roost/#`, `+/boards/+/cmd`, ...) is
//!   refused. `status` topics may be watched by anyone (`roost/boards/+/status`).

use roost_core::board::{self, Channel};
use roost_core::topic;

/// Who is asking, as the broker knows the client.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
}

impl Identity<'_> {
    /// Whether this client may act as board `name`.
    pub fn is_board(&self, name: &str) -> bool {
        self.client_id == name || self.username == Some(name)
    }
}

/// What the publish rule says about one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishVerdict<'t> {
    /// Not a board topic: the telemetry pipelines decide.
    NotBoardTopic,
    /// The board's own `status` or `reply`: the board service consumes it.
    Allowed { board: &'t str, channel: Channel },
    /// Refused, with the reason for the log.
    Denied(&'static str),
}

/// Applies the publish rule to a PUBLISH (or a last will) on `topic` from `who`.
pub fn check_publish<'t>(who: Identity<'_>, topic: &'t str) -> PublishVerdict<'t> {
    if !is_board_namespace(topic) {
        return PublishVerdict::NotBoardTopic;
    }
    match board::parse_topic(topic) {
        Some((_, Channel::Cmd)) => PublishVerdict::Denied("only roost publishes on board cmd topics"),
        Some((name, channel)) if who.is_board(name) => PublishVerdict::Allowed { board: name, channel },
        Some(_) => PublishVerdict::Denied("a board may publish only under its own name"),
        None => PublishVerdict::Denied("not a board topic roost knows"),
    }
}

/// Whether `topic` lies under `roost/boards` (where only the rules above apply).
pub fn is_board_namespace(topic: &str) -> bool {
    topic == board::TOPIC_PREFIX
        || topic.strip_prefix(board::TOPIC_PREFIX).is_some_and(|rest| rest.starts_with('/'))
}

/// Applies the subscribe rule: `Err` with the reason if `filter` could match the `cmd` or
/// `reply` topic of a board other than `who`, at any depth (`roost/boards/+/+/#` matches
/// `roost/boards/b-2/cmd`, since `#` also matches its parent level).
pub fn check_subscribe(who: Identity<'_>, filter: &str) -> Result<(), &'static str> {
    let private = [Channel::Cmd, Channel::Reply].map(board::topic_filter);
    if !private.iter().any(|p| topic::overlaps(filter, p)) {
        return Ok(());
    }
    // Every topic it matches is under one board's name: its own is the one board it may
    // subscribe to here.
    match filter.split('/').nth(2) {
        Some(name) if name != "+" && name != "#" && who.is_board(name) => Ok(()),
        _ => Err("the filter would match other boards' commands or replies"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B1: Identity<'static> = Identity { client_id: "b-1", username: None };

    #[test]
    fn a_board_publishes_only_its_own_status_and_reply() {
        assert_eq!(
            check_publish(B1, "roost/boards/b-1/status"),
            PublishVerdict::Allowed { board: "b-1", channel: Channel::Status }
        );
        assert_eq!(
            check_publish(B1, "roost/boards/b-1/reply"),
            PublishVerdict::Allowed { board: "b-1", channel: Channel::Reply }
        );
        assert!(matches!(check_publish(B1, "roost/boards/b-2/reply"), PublishVerdict::Denied(_)));
        assert!(matches!(check_publish(B1, "roost/boards/b-2/status"), PublishVerdict::Denied(_)));
        assert!(matches!(check_publish(B1, "roost/boards/b-1/other"), PublishVerdict::Denied(_)));
        assert!(matches!(check_publish(B1, "roost/boards"), PublishVerdict::Denied(_)));
        assert_eq!(check_publish(B1, "devices/b-1/env"), PublishVerdict::NotBoardTopic);
        assert_eq!(check_publish(B1, "roost/boardsX/b-1/status"), PublishVerdict::NotBoardTopic);
    }

    #[test]
    fn nobody_publishes_on_a_cmd_topic_not_even_the_board_itself() {
        assert!(matches!(check_publish(B1, "roost/boards/b-1/cmd"), PublishVerdict::Denied(_)));
        let admin = Identity { client_id: "roost", username: Some("admin") };
        assert!(matches!(check_publish(admin, "roost/boards/b-2/cmd"), PublishVerdict::Denied(_)));
    }

    #[test]
    fn a_username_names_the_board_too() {
        let who = Identity { client_id: "random-id", username: Some("b-7") };
        assert!(matches!(check_publish(who, "roost/boards/b-7/reply"), PublishVerdict::Allowed { .. }));
        assert!(check_subscribe(who, "roost/boards/b-7/cmd").is_ok());
    }

    #[test]
    fn subscriptions_to_other_boards_commands_and_replies_are_refused() {
        assert!(check_subscribe(B1, "roost/boards/b-1/cmd").is_ok());
        assert!(check_subscribe(B1, "roost/boards/+/status").is_ok());
        assert!(check_subscribe(B1, "roost/boards/b-2/status").is_ok());
        assert!(check_subscribe(B1, "devices/#").is_ok());
        assert!(check_subscribe(B1, "devices/+/env").is_ok());
        assert!(check_subscribe(B1, "roost/other/#").is_ok());
        assert!(check_subscribe(B1, "+/x/#").is_ok());
        for bad in [
            "#",
            "roost/#",
            "roost/boards/#",
            "roost/boards/b-2/cmd",
            "roost/boards/+/cmd",
            "roost/boards/+/reply",
            "+/boards/+/cmd",
            "+/+/+/+",
            "roost/+/b-2/reply",
            "roost/boards/b-2/+",
            "roost/boards/b-2/#",
            "roost/boards/+/+/#",
            "roost/boards/+/cmd/#",
            "roost/+/+/cmd",
            "+/boards/#",
            "roost/boards/+/#",
            "+/+/+/+/#",
        ] {
            assert!(check_subscribe(B1, bad).is_err(), "{bad}");
        }
        // Deeper than a board topic, its own subtree, or not reaching cmd/reply: allowed.
        for ok in
            ["roost/boards/b-1/#", "roost/boards/+/status/#", "roost/boards/+/cmd/x", "roost/boards/b-1/+"]
        {
            assert!(check_subscribe(B1, ok).is_ok(), "{ok}");
        }
    }

    use proptest::prelude::*;

    fn filter() -> impl Strategy<Value = String> {
        let level =
            prop::sample::select(vec!["roost", "boards", "b-1", "b-2", "cmd", "reply", "status", "x", "+"]);
        (prop::collection::vec(level, 1..7), any::<bool>()).prop_map(|(levels, hash)| {
            let mut f = levels.join("/");
            if hash {
                f.push_str("/#");
            }
            f
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(50_000))]

        /// A filter is granted only if no topic it matches is another board's cmd or reply
        /// (every such topic whose name is in the filters' alphabet is tried).
        #[test]
        fn a_granted_filter_matches_no_protected_topic(f in filter(), under_boards in any::<bool>()) {
            let f = if under_boards { format!("roost/boards/{f}") } else { f };
            if check_subscribe(B1, &f).is_ok() {
                for name in ["b-2", "x", "roost", "boards", "cmd", "reply", "status"] {
                    for channel in ["cmd", "reply"] {
                        let t = format!("roost/boards/{name}/{channel}");
                        prop_assert!(!topic::matches(&f, &t), "{f} was granted but matches {t}");
                    }
                }
            }
        }
    }
}
