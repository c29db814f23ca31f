//! Per module version: calls, errors, call durations (mean and p99), and whether it is failing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Failures in a row after which a module version counts as failing (shown in the API and on
/// `/metrics`); one success clears it.
pub const FAILING_AFTER: u64 = 20;

/// Bucket `i` holds calls that took under `2^(i/4)` microseconds (the last one, the rest).
const BUCKETS: usize = 100;

/// Counters of one module version, updated by every worker.
#[derive(Debug)]
pub struct CallStats {
    calls: AtomicU64,
    errors: AtomicU64,
    total_ns: AtomicU64,
    failures_in_a_row: AtomicU64,
    failing: AtomicBool,
    buckets: [AtomicU64; BUCKETS],
}

impl Default for CallStats {
    fn default() -> Self {
        CallStats {
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
            failures_in_a_row: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// A snapshot of [`CallStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct CallSummary {
    pub calls: u64,
    pub errors: u64,
    pub mean_us: f64,
    pub p99_us: f64,
    pub failing: bool,
}

fn bucket_bound_us(i: usize) -> f64 {
    2f64.powf(i as f64 / 4.0)
}

impl CallStats {
    /// One call to `process`.
    pub fn observe(&self, took: Duration, ok: bool) {
        self.calls.fetch_add(1, Relaxed);
        self.total_ns.fetch_add(took.as_nanos() as u64, Relaxed);
        let us = took.as_secs_f64() * 1e6;
        let bucket = (0..BUCKETS - 1).find(|&i| us < bucket_bound_us(i)).unwrap_or(BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Relaxed);
        if ok {
            self.succeeded();
        } else {
            self.failed();
        }
    }

    /// A failure outside `process` (an instance that would not start).
    pub fn failed(&self) {
        self.errors.fetch_add(1, Relaxed);
        if self.failures_in_a_row.fetch_add(1, Relaxed) + 1 >= FAILING_AFTER {
            self.failing.store(true, Relaxed);
        }
    }

    fn succeeded(&self) {
        // Loads first: every worker calls this per message, and a store would make the
        // counters' cache line bounce between them.
        if self.failures_in_a_row.load(Relaxed) != 0 {
            self.failures_in_a_row.store(0, Relaxed);
        }
        if self.failing.load(Relaxed) {
            self.failing.store(false, Relaxed);
        }
    }

    pub fn summary(&self) -> CallSummary {
        let calls = self.calls.load(Relaxed);
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let timed: u64 = counts.iter().sum();
        let rank = (timed as f64 * 0.99).ceil() as u64;
        let mut seen = 0;
        let p99_us = counts
            .iter()
            .enumerate()
            .find_map(|(i, &n)| {
                seen += n;
                (timed > 0 && seen >= rank).then(|| bucket_bound_us(i))
            })
            .unwrap_or(0.0);
        CallSummary {
            calls,
            errors: self.errors.load(Relaxed),
            mean_us: if calls == 0 { 0.0 } else { self.total_ns.load(Relaxed) as f64 / calls as f64 / 1e3 },
            p99_us,
            failing: self.failing.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_p99_and_failing() {
        let s = CallStats::default();
        for _ in 0..99 {
            s.observe(Duration::from_micros(3), true);
        }
        s.observe(Duration::from_millis(5), true);
        let sum = s.summary();
        assert_eq!((sum.calls, sum.errors), (100, 0));
        assert!((sum.mean_us - (99.0 * 3.0 + 5000.0) / 100.0).abs() < 0.01, "{sum:?}");
        // p99 is the bucket bound above 3 µs (buckets are 2^(1/4) apart), not the 5 ms outlier.
        assert!(sum.p99_us >= 3.0 && sum.p99_us < 3.6, "{sum:?}");
        for _ in 0..FAILING_AFTER {
            s.observe(Duration::from_micros(1), false);
        }
        assert!(s.summary().failing);
        s.observe(Duration::from_micros(1), true);
        assert!(!s.summary().failing);
    }
}
