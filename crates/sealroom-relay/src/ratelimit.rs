//! Token buckets with time as an input, for per-member and per-app rate limits, and a
//! bounded table of them keyed by user or source address.

use std::collections::HashMap;
use std::hash::Hash;
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

    /// Whether the bucket is full at `now` (it then says nothing a fresh bucket would not).
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= f64::from(self.burst)
    }
}

/// What [`KeyedLimiter::try_take`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyed {
    /// Within the key's rate.
    Allowed,
    /// Over the key's rate.
    Limited,
    /// The table is full of keys that are all still limited; nothing was taken.
    Full,
}

/// One token bucket per key (a user, a source address), at most `capacity` of them. A
/// bucket that has refilled completely is forgotten when room is needed, since a fresh
/// one would decide the same.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    rate: u32,
    burst: u32,
    capacity: usize,
    buckets: HashMap<K, TokenBucket>,
}

impl<K: Hash + Eq> KeyedLimiter<K> {
    /// A table of buckets of `rate` per second up to `burst`, holding at most `capacity`.
    pub fn new(rate: u32, burst: u32, capacity: usize) -> Self {
        Self {
            rate,
            burst,
            capacity,
            buckets: HashMap::new(),
        }
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Whether `key` has a token at `now`, without taking it (a key not remembered has).
    pub fn check(&mut self, key: &K, now: Instant) -> bool {
        self.buckets
            .get_mut(key)
            .is_none_or(|bucket| bucket.check(1, now))
    }

    /// Take one token from `key`'s bucket at `now`.
    pub fn try_take(&mut self, key: K, now: Instant) -> Keyed {
        if self.rate == u32::MAX {
            return Keyed::Allowed;
        }
        if let Some(bucket) = self.buckets.get_mut(&key) {
            return if bucket.try_take(1, now) {
                Keyed::Allowed
            } else {
                Keyed::Limited
            };
        }
        if self.buckets.len() >= self.capacity {
            self.buckets.retain(|_, bucket| !bucket.is_full(now));
            if self.buckets.len() >= self.capacity {
                return Keyed::Full;
            }
        }
        let mut bucket = TokenBucket::new(self.rate, self.burst, now);
        let taken = bucket.try_take(1, now);
        self.buckets.insert(key, bucket);
        if taken {
            Keyed::Allowed
        } else {
            Keyed::Limited
        }
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
    fn keyed_limiter_is_per_key_and_bounded() {
        let t0 = Instant::now();
        let mut table = KeyedLimiter::new(1, 2, 2);
        assert_eq!(table.try_take("a", t0), Keyed::Allowed);
        assert_eq!(table.try_take("a", t0), Keyed::Allowed);
        assert_eq!(table.try_take("a", t0), Keyed::Limited);
        // Another key is not affected by the first one's exhaustion.
        assert_eq!(table.try_take("b", t0), Keyed::Allowed);
        // Both remembered keys are still limited: a third cannot be added.
        assert_eq!(table.try_take("c", t0), Keyed::Full);
        assert_eq!(table.len(), 2);
        // Once they have refilled they are forgotten to make room.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(table.try_take("c", t1), Keyed::Allowed);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn unlimited_never_limits() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(u32::MAX, u32::MAX, t0);
        assert!((0..10_000).all(|_| bucket.try_take(u32::MAX, t0)));
    }
}
