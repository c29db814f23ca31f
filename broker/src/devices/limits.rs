//! Per-device limits and what is counted against devices: a token bucket of messages per second
//! for each device (`mqtt.device_rate`), the client ids a device is connected under
//! (`mqtt.max_connections_per_device`), and what was refused to each device (for `/metrics`).
//! Pure bookkeeping, with the time passed in, kept apart from the hooks.
//!
//! A device is its registered name, or for an anonymous client its client id. Both maps are
//! bounded by [`MAX_TRACKED`] entries, so clients inventing client ids cannot grow them: past it,
//! buckets that are full (nothing to remember) are forgotten, or all of them if none is, and
//! refusals of further devices are counted under one `other` entry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// The most devices remembered in each map.
pub const MAX_TRACKED: usize = 100_000;

/// The label refusals beyond [`MAX_TRACKED`] devices are counted under.
pub const OTHER: &str = "other";

/// Messages per second per device, in bursts of up to one second's worth.
#[derive(Debug)]
pub struct DeviceRate {
    per_sec: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl DeviceRate {
    /// `per_sec` messages a second for each device (at least 1).
    pub fn new(per_sec: u32) -> DeviceRate {
        DeviceRate { per_sec: f64::from(per_sec.max(1)), buckets: Mutex::new(HashMap::new()) }
    }

    /// Whether `device` may publish one more message at `now`.
    pub fn allow(&self, device: &str, now: Instant) -> bool {
        let per_sec = self.per_sec;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(device) {
            if buckets.len() >= MAX_TRACKED {
                buckets.retain(|_, b| refill(*b, now, per_sec) < per_sec);
                if buckets.len() >= MAX_TRACKED {
                    // All busy at once: start over (each device gets a fresh second's worth).
                    buckets.clear();
                }
            }
            buckets.insert(device.to_owned(), Bucket { tokens: per_sec, at: now });
        }
        let bucket = buckets.get_mut(device).expect("inserted above");
        let tokens = refill(*bucket, now, per_sec);
        let allowed = tokens >= 1.0;
        *bucket = Bucket { tokens: if allowed { tokens - 1.0 } else { tokens }, at: now };
        allowed
    }
}

fn refill(b: Bucket, now: Instant, per_sec: f64) -> f64 {
    (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec).min(per_sec)
}

/// The client ids each registered device is connected under, for
/// `mqtt.max_connections_per_device`. A connection with a client id the device already uses
/// takes that session over (MQTT), so it is always let in: a device reconnecting before its old
/// connection timed out is never refused.
#[derive(Debug)]
pub struct DeviceConnections {
    max: usize,
    /// device -> client id -> open connections under it (two for a moment during a takeover).
    open: Mutex<HashMap<String, HashMap<String, u32>>>,
}

impl DeviceConnections {
    pub fn new(max: usize) -> DeviceConnections {
        DeviceConnections { max: max.max(1), open: Mutex::new(HashMap::new()) }
    }

    /// Whether `device` may connect (once more) under `client_id`.
    pub fn admits(&self, device: &str, client_id: &str) -> bool {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(device).is_none_or(|ids| ids.contains_key(client_id) || ids.len() < self.max)
    }

    pub fn connected(&self, device: &str, client_id: &str) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        *open.entry(device.to_owned()).or_default().entry(client_id.to_owned()).or_default() += 1;
    }

    pub fn disconnected(&self, device: &str, client_id: &str) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ids) = open.get_mut(device) else { return };
        if let Some(n) = ids.get_mut(client_id) {
            *n -= 1;
            if *n == 0 {
                ids.remove(client_id);
            }
        }
        if ids.is_empty() {
            open.remove(device);
        }
    }
}

/// What was refused, by device: publishes, subscriptions, connections over the limit.
#[derive(Debug, Default)]
pub struct Refusals(Mutex<HashMap<String, u64>>);

impl Refusals {
    pub fn count(&self, device: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = if m.len() < MAX_TRACKED || m.contains_key(device) { device } else { OTHER };
        *m.entry(key.to_owned()).or_default() += 1;
    }

    /// Every device with refusals, and how many, sorted by device.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = m.iter().map(|(k, n)| (k.clone(), *n)).collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_device_gets_its_rate_in_bursts_of_one_second() {
        let rate = DeviceRate::new(10);
        let t0 = Instant::now();
        assert_eq!((0..15).filter(|_| rate.allow("a", t0)).count(), 10, "a burst of one second's worth");
        assert!(rate.allow("b", t0), "another device has its own bucket");
        assert!(!rate.allow("a", t0 + Duration::from_millis(50)));
        assert!(rate.allow("a", t0 + Duration::from_millis(100)), "one message per 100 ms comes back");
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            (0..15).filter(|_| rate.allow("a", later)).count(),
            10,
            "never more than one second saved"
        );
    }

    #[test]
    fn a_device_connects_under_at_most_its_limit_of_client_ids_and_always_takes_over_its_own() {
        let conns = DeviceConnections::new(2);
        assert!(conns.admits("d", "d:a"));
        conns.connected("d", "d:a");
        conns.connected("d", "d:b");
        assert!(!conns.admits("d", "d:c"), "a third client id");
        assert!(conns.admits("d", "d:a"), "a reconnect takes its session over");
        assert!(conns.admits("e", "e"), "another device");
        conns.connected("d", "d:a"); // the takeover, before the old one is gone
        conns.disconnected("d", "d:a");
        assert!(!conns.admits("d", "d:c"), "d:a is still connected");
        conns.disconnected("d", "d:a");
        assert!(conns.admits("d", "d:c"));
        conns.disconnected("d", "d:b");
        assert!(conns.open.lock().unwrap().is_empty());
    }

    #[test]
    fn invented_devices_cannot_grow_the_maps_without_bound() {
        let rate = DeviceRate::new(1);
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED + 10 {
            rate.allow(&format!("d{i}"), t0 + Duration::from_secs(2));
        }
        assert!(rate.buckets.lock().unwrap().len() <= MAX_TRACKED + 1);

        let refusals = Refusals::default();
        for i in 0..MAX_TRACKED + 10 {
            refusals.count(&format!("d{i}"));
        }
        refusals.count("d0");
        let snap = refusals.snapshot();
        assert_eq!(snap.len(), MAX_TRACKED + 1);
        assert!(snap.contains(&("d0".to_owned(), 2)));
        assert!(snap.contains(&(OTHER.to_owned(), 10)));
    }
}
