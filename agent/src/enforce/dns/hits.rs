//! What a sinkhole hit turns into, bounded: [`HitLimiter`] lets one alert through per
//! (client, domain) per interval and counts the rest into the next one, so that a client
//! that asks a thousand times a second for its command-and-control server raises one alert
//! a minute, not a thousand; [`DomainLabels`] keeps the per-domain hit metric's label set
//! finite. Both are sans-IO (`now` is passed in).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// What to do with one hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Raise an alert; `repeats` hits of the same client and domain were held back since
    /// the previous one.
    Alert { repeats: u64 },
    /// Held back (counted into the next alert of this pair).
    Suppressed,
    /// Held back because the table of pairs is full of live entries; not counted anywhere
    /// but the metric.
    TableFull,
}

/// One alert per (client, domain) per `interval`, for at most `capacity` pairs at a time.
#[derive(Debug)]
pub struct HitLimiter {
    interval: Duration,
    capacity: usize,
    /// (client, domain) → (when its last alert went out, hits held back since).
    pairs: HashMap<(IpAddr, String), (SystemTime, u64)>,
}

impl HitLimiter {
    pub fn new(interval: Duration, capacity: usize) -> HitLimiter {
        HitLimiter {
            interval,
            capacity: capacity.max(1),
            pairs: HashMap::new(),
        }
    }

    pub fn hit(&mut self, now: SystemTime, client: IpAddr, domain: &str) -> Verdict {
        let interval = self.interval;
        let due = |last: SystemTime| now.duration_since(last).is_ok_and(|age| age >= interval);
        if let Some((last, held)) = self.pairs.get_mut(&(client, domain.to_owned())) {
            if due(*last) {
                let repeats = std::mem::take(held);
                *last = now;
                return Verdict::Alert { repeats };
            }
            *held += 1;
            return Verdict::Suppressed;
        }
        if self.pairs.len() >= self.capacity {
            // Entries past their interval have nothing more to say than a fresh one would,
            // except their held-back count, which a full table cannot afford.
            self.pairs.retain(|_, (last, _)| !due(*last));
            if self.pairs.len() >= self.capacity {
                return Verdict::TableFull;
            }
        }
        self.pairs.insert((client, domain.to_owned()), (now, 0));
        Verdict::Alert { repeats: 0 }
    }

    /// Pairs remembered now.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// The label a domain gets in `swarmguard_dns_sinkhole_hits_total`: itself for the first
/// `capacity` distinct domains, then [`OTHER`].
#[derive(Debug)]
pub struct DomainLabels {
    capacity: usize,
    labels: HashSet<String>,
}

/// The label of every domain past the label limit.
pub const OTHER: &str = "other";

impl DomainLabels {
    pub fn new(capacity: usize) -> DomainLabels {
        DomainLabels {
            capacity,
            labels: HashSet::new(),
        }
    }

    pub fn label<'a>(&mut self, domain: &'a str) -> &'a str {
        if self.labels.contains(domain) {
            return domain;
        }
        if self.labels.len() < self.capacity {
            self.labels.insert(domain.to_owned());
            return domain;
        }
        OTHER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_alert_per_pair_per_interval_with_the_held_back_count() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let at = |s| t0 + Duration::from_secs(s);
        let client: IpAddr = "192.0.2.10".parse().unwrap();
        let other: IpAddr = "192.0.2.11".parse().unwrap();
        let mut limiter = HitLimiter::new(Duration::from_secs(60), 10);
        assert_eq!(
            limiter.hit(t0, client, "evil.example"),
            Verdict::Alert { repeats: 0 }
        );
        for s in 1..=5 {
            assert_eq!(
                limiter.hit(at(s), client, "evil.example"),
                Verdict::Suppressed
            );
        }
        assert_eq!(
            limiter.hit(at(1), other, "evil.example"),
            Verdict::Alert { repeats: 0 }
        );
        assert_eq!(
            limiter.hit(at(1), client, "bad.example"),
            Verdict::Alert { repeats: 0 }
        );
        assert_eq!(
            limiter.hit(at(60), client, "evil.example"),
            Verdict::Alert { repeats: 5 }
        );
        assert_eq!(
            limiter.hit(at(61), client, "evil.example"),
            Verdict::Suppressed
        );
    }

    #[test]
    fn a_full_table_makes_room_from_stale_pairs_only() {
        let t0 = SystemTime::UNIX_EPOCH;
        let at = |s| t0 + Duration::from_secs(s);
        let mut limiter = HitLimiter::new(Duration::from_secs(60), 2);
        let ip = |n: u8| IpAddr::from([192, 0, 2, n]);
        assert!(matches!(
            limiter.hit(t0, ip(1), "a.example"),
            Verdict::Alert { .. }
        ));
        assert!(matches!(
            limiter.hit(at(30), ip(2), "a.example"),
            Verdict::Alert { .. }
        ));
        assert_eq!(limiter.hit(at(40), ip(3), "a.example"), Verdict::TableFull);
        // At 70 s the first pair is stale and gives way; the second is still live.
        assert_eq!(
            limiter.hit(at(70), ip(3), "a.example"),
            Verdict::Alert { repeats: 0 }
        );
        assert_eq!(limiter.len(), 2);
    }

    #[test]
    fn domain_labels_are_bounded() {
        let mut labels = DomainLabels::new(2);
        assert_eq!(labels.label("a.example"), "a.example");
        assert_eq!(labels.label("b.example"), "b.example");
        assert_eq!(labels.label("c.example"), OTHER);
        assert_eq!(labels.label("a.example"), "a.example");
    }
}
