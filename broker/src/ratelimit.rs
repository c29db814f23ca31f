//! A limit on how often something may be logged: the actors log a refused record or a failing
//! message at most a few times per window and then say how many they held back, so a flood of
//! bad input cannot flood the log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets through at most `burst` events per `window`, and says how many it held back.
#[derive(Debug)]
pub struct RateLimit {
    window: Duration,
    burst: u32,
    state: Mutex<Window>,
}

/// The current window: when it began, the events let through in it, and those held back since
/// the last one let through.
#[derive(Debug)]
struct Window {
    started: Instant,
    let_through: u32,
    held_back: u64,
}

impl RateLimit {
    pub fn new(burst: u32, window: Duration) -> Self {
        let state = Window { started: Instant::now(), let_through: 0, held_back: 0 };
        RateLimit { window, burst, state: Mutex::new(state) }
    }

    /// `Some(suppressed_since_last)` if this event may be logged, `None` if it is held back.
    pub fn check(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if now.duration_since(s.started) >= self.window {
            s.started = now;
            s.let_through = 0;
        }
        if s.let_through < self.burst {
            s.let_through += 1;
            Some(std::mem::take(&mut s.held_back))
        } else {
            s.held_back += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_holds_back_and_reports() {
        let rl = RateLimit::new(2, Duration::from_secs(3600));
        assert_eq!(rl.check(), Some(0));
        assert_eq!(rl.check(), Some(0));
        assert_eq!(rl.check(), None);
        assert_eq!(rl.check(), None);
        let rl = RateLimit::new(1, Duration::ZERO);
        assert_eq!(rl.check(), Some(0));
    }
}
