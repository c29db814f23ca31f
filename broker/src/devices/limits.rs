//! Per-device limits and what is counted against devices: a token bucket of messages per second
//! for each device (`mqtt.device_rate`), and the publishes refused to each device (for
//! `/metrics`). Pure bookkeeping, with the time passed in, kept apart from the hooks.
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
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(device) {
            let per_sec = self.per_sec;
            buckets.retain(|_, b| refill(*b, now, per_sec) < per_sec);
            if buckets.len() >= MAX_TRACKED {
                // All busy at once: start over (each device gets a fresh second's worth).
                buckets.clear();
            }
        }
        let per_sec = self.per_sec;
        let bucket = buckets.entry(device.to_owned()).or_insert(Bucket { tokens: per_sec, at: now });
        let tokens = refill(*bucket, now, per_sec);
        if tokens >= 1.0 {
            *bucket = Bucket { tokens: tokens - 1.0, at: now };
            true
        } else {
            *bucket = Bucket { tokens, at: now };
            false
        }
    }
}

fn refill(b: Bucket, now: Instant, per_sec: f64) -> f64 {
    (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec).min(per_sec)
}

/// Publishes refused, by device.
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
