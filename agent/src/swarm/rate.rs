//! A token bucket, one per origin: how the swarm caps what any single member can say, so
//! that a compromised agent spends its votes slowly. Time comes in as `now`.

use std::time::SystemTime;

#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    tokens: f64,
    last: SystemTime,
}

/// How fast buckets refill and how much they hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens (signals) added per second.
    pub per_second: f64,
    /// The most a bucket holds: how many signals an origin may send in one burst.
    pub burst: u32,
}

impl TokenBucket {
    /// A full bucket: a member that was quiet may report a burst at once.
    pub(crate) fn new(limit: RateLimit, now: SystemTime) -> TokenBucket {
        TokenBucket {
            tokens: f64::from(limit.burst),
            last: now,
        }
    }

    /// Whether a token is there, without taking it: lets the caller skip costly checks
    /// (a signature) for what would be refused anyway.
    pub(crate) fn has_token(&mut self, limit: RateLimit, now: SystemTime) -> bool {
        self.refill(limit, now);
        self.tokens >= 1.0
    }

    fn refill(&mut self, limit: RateLimit, now: SystemTime) {
        // A clock that stepped back refills nothing (and does not drain either).
        if let Ok(elapsed) = now.duration_since(self.last) {
            self.tokens = (self.tokens + elapsed.as_secs_f64() * limit.per_second)
                .min(f64::from(limit.burst));
            self.last = now;
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self, limit: RateLimit, now: SystemTime) -> bool {
        self.refill(limit, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let limit = RateLimit {
            per_second: 2.0,
            burst: 3,
        };
        let start = UNIX_EPOCH + Duration::from_secs(100);
        let mut bucket = TokenBucket::new(limit, start);
        assert!((0..3).all(|_| bucket.try_take(limit, start)));
        assert!(!bucket.try_take(limit, start));
        assert!(bucket.has_token(limit, start + Duration::from_millis(500)));
        assert!(bucket.try_take(limit, start + Duration::from_millis(500)));
        assert!(!bucket.try_take(limit, start + Duration::from_millis(600)));
        // Never more than the burst, however long the quiet.
        let later = start + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| bucket.try_take(limit, later)).count(), 3);
        // A clock stepping back does not mint tokens.
        assert!(!bucket.try_take(limit, start));
    }
}
