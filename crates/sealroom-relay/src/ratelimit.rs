//! Token buckets with time as an input, for per-member and per-app rate limits.

use std::time::Instant;

/// A token bucket: `rate` tokens per second up to `burst`, refilled lazily from the time the
/// caller passes in. A rate of `u32::MAX` never limits.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    rate: u32,
    burst: u32,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`. A burst below the rate is raised to the rate, so one second's
    /// worth always fits.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = burst.max(rate);
        Self {
            rate,
            burst,
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Whether the bucket never limits.
    pub const fn is_unlimited(&self) -> bool {
        self.rate == u32::MAX
    }

    fn refill(&mut self, now: Instant) {
        // A clock that goes backwards (it should not) just refills nothing.
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * f64::from(self.rate)).min(f64::from(self.burst));
    }

    /// Take `cost` tokens at `now` if there are enough; otherwise take nothing.
    #[must_use]
    pub fn try_take(&mut self, cost: u32, now: Instant) -> bool {
        if self.is_unlimited() {
            return true;
        }
        self.refill(now);
        let cost = f64::from(cost);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// Whether `cost` tokens are available at `now`, without taking them.
    pub fn check(&mut self, cost: u32, now: Instant) -> bool {
        if self.is_unlimited() {
            return true;
        }
        self.refill(now);
        self.tokens >= f64::from(cost)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, 20, t0);
        let taken = (0..100).filter(|_| bucket.try_take(1, t0)).count();
        assert_eq!(taken, 20);
        // Half a second later, five more.
        let t1 = t0 + Duration::from_millis(500);
        let taken = (0..100).filter(|_| bucket.try_take(1, t1)).count();
        assert_eq!(taken, 5);
        // A long pause refills only up to the burst.
        let t2 = t1 + Duration::from_secs(3600);
        let taken = (0..100).filter(|_| bucket.try_take(1, t2)).count();
        assert_eq!(taken, 20);
    }

    #[test]
    fn a_cost_above_the_level_takes_nothing() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(100, 100, t0);
        assert!(bucket.try_take(60, t0));
        assert!(!bucket.try_take(60, t0));
        assert!(bucket.try_take(40, t0));
    }

    #[test]
    fn unlimited_never_limits() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(u32::MAX, u32::MAX, t0);
        assert!((0..10_000).all(|_| bucket.try_take(u32::MAX, t0)));
    }
}
