//! Shared subscriptions (`$share/<group>/<filter>`): each message matching a group's filter goes
//! to one member of the group, taken in turn among those connected (a group with none connected
//! queues it for the next member in turn, if its session is kept).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use async_trait::async_trait;
use rmqtt::context::ServerContext;
use rmqtt::subscribe::SharedSubscription;
use rmqtt::types::{
    ClientId, Id, IsOnline, NodeId, SharedGroup, SubscriptionIdentifier, SubscriptionOptions, TopicName,
};

/// Round robin over the members of a group.
#[derive(Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

type Member = (NodeId, ClientId, SubscriptionOptions, Option<Vec<SubscriptionIdentifier>>, Option<IsOnline>);

#[async_trait]
impl SharedSubscription for RoundRobin {
    fn is_supported(&self) -> bool {
        true
    }

    async fn choice(
        &self,
        _scx: &ServerContext,
        _group: &SharedGroup,
        _publisher: &Id,
        _topic: &TopicName,
        members: &[Member],
    ) -> Option<(usize, IsOnline)> {
        pick(self.next.fetch_add(1, Relaxed), members.iter().map(|m| m.4.unwrap_or(true)))
    }
}

/// The member to give the `turn`th message: starting from `turn` (modulo the group's size), the
/// first one online; none online, the one at `turn`.
fn pick(turn: usize, online: impl ExactSizeIterator<Item = bool> + Clone) -> Option<(usize, IsOnline)> {
    let n = online.len();
    if n == 0 {
        return None;
    }
    let flags: Vec<bool> = online.collect();
    let start = turn % n;
    (0..n).map(|k| (start + k) % n).find(|&i| flags[i]).map(|i| (i, true)).or(Some((start, false)))
}

#[cfg(test)]
mod tests {
    use super::pick;

    #[test]
    fn takes_members_in_turn() {
        let online = [true, true, true];
        let picks: Vec<usize> = (0..6).map(|t| pick(t, online.iter().copied()).unwrap().0).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn skips_members_offline() {
        let online = [true, false, true];
        let picks: Vec<usize> = (0..4).map(|t| pick(t, online.iter().copied()).unwrap().0).collect();
        assert_eq!(picks, [0, 2, 2, 0]);
    }

    #[test]
    fn none_online_queues_for_the_one_in_turn() {
        assert_eq!(pick(4, [false, false].iter().copied()), Some((0, false)));
        assert_eq!(pick(0, std::iter::empty::<bool>()), None);
    }
}
