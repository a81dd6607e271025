//! Time as the logic sees it: the wall clock in the service, a hand-driven clock in
//! tests, so that rules which depend on elapsed time (a camera's tracks lost after a
//! silence, backoff, recovery) are tested by setting the time, not by sleeping.

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

/// A source of wall-clock time (UTC).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The machine's clock ([`Utc::now`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to (tests). Clones share the time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock standing at `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(Mutex::new(at)))
    }

    /// Moves the clock forward by `d` (or back, for a negative `d`).
    pub fn advance(&self, d: chrono::Duration) {
        *self.0.lock().unwrap() += d;
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap() = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// The clock the service runs on, shared.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let c = ManualClock::new(t0);
        let shared: Arc<dyn Clock> = Arc::new(c.clone());
        assert_eq!(shared.now(), t0);
        c.advance(chrono::Duration::seconds(5));
        assert_eq!(shared.now(), t0 + chrono::Duration::seconds(5));
        c.set(t0);
        assert_eq!(shared.now(), t0);
    }
}
