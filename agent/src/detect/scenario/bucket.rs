//! Leaky buckets, one per (scenario, address), as CrowdSec's: each event pours one unit in,
//! one unit leaks out every `leak`, and the event that makes the level exceed `capacity`
//! overflows the bucket. The overflow reports how many events were poured since the bucket
//! was created; the bucket is then emptied and, for `blackhole`, the address's further
//! events are ignored.
//!
//! Levels are kept in integer nanoseconds (one event = `leak` nanoseconds), so that a level
//! exactly at capacity is exactly at capacity: floating point would make the outcome of a
//! steady attack depend on rounding.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use super::spec::BucketSpec;

#[derive(Debug)]
struct Bucket {
    /// In nanoseconds of leak: `leak_ns` per event still in the bucket.
    level: u128,
    last: SystemTime,
    poured: u32,
    /// Values of the distinct field of the events still in the bucket, oldest first.
    distinct: VecDeque<String>,
}

/// What pouring one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poured {
    /// The event is in the bucket.
    Added,
    /// The bucket overflowed with this event; `count` events were poured in all.
    Overflow { count: u32 },
    /// The address is blackholed after an earlier overflow.
    Blackholed,
    /// The distinct value is already in the bucket.
    Duplicate,
    /// The table of buckets is full; the event is dropped and counted.
    Full,
}

/// The buckets of one scenario.
#[derive(Debug)]
pub struct Buckets {
    spec: BucketSpec,
    leak_ns: u128,
    buckets: HashMap<IpAddr, Bucket>,
    blackholes: HashMap<IpAddr, SystemTime>,
    max: usize,
    /// Events dropped because the table was full.
    pub dropped_full: u64,
}

impl Buckets {
    pub fn new(spec: BucketSpec, max: usize) -> Buckets {
        Buckets {
            leak_ns: spec.leak.as_nanos().max(1),
            spec,
            buckets: HashMap::new(),
            blackholes: HashMap::new(),
            max,
            dropped_full: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Pours one event of `ip` at `time`.
    pub fn pour(&mut self, ip: IpAddr, time: SystemTime, distinct: Option<&str>) -> Poured {
        if let Some(until) = self.blackholes.get(&ip) {
            if time < *until {
                return Poured::Blackholed;
            }
            self.blackholes.remove(&ip);
        }
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= self.max {
            self.sweep(time);
            if self.buckets.len() >= self.max {
                self.dropped_full += 1;
                return Poured::Full;
            }
        }
        let leak_ns = self.leak_ns;
        let bucket = self.buckets.entry(ip).or_insert_with(|| Bucket {
            level: 0,
            last: time,
            poured: 0,
            distinct: VecDeque::new(),
        });
        // Lines may arrive slightly out of order (several files): they do not leak
        // backwards.
        let elapsed = time.duration_since(bucket.last).unwrap_or(Duration::ZERO);
        bucket.level = bucket.level.saturating_sub(elapsed.as_nanos());
        if time > bucket.last {
            bucket.last = time;
        }
        if let Some(value) = distinct {
            let inside = bucket.level.div_ceil(leak_ns) as usize;
            while bucket.distinct.len() > inside {
                bucket.distinct.pop_front();
            }
            if bucket.distinct.iter().any(|v| v == value) {
                return Poured::Duplicate;
            }
            bucket.distinct.push_back(value.to_owned());
        }
        bucket.level += leak_ns;
        bucket.poured += 1;
        if bucket.level > u128::from(self.spec.capacity) * leak_ns {
            let count = bucket.poured;
            self.buckets.remove(&ip);
            if !self.spec.blackhole.is_zero() {
                if self.blackholes.len() >= self.max {
                    let now = time;
                    self.blackholes.retain(|_, until| *until > now);
                }
                if self.blackholes.len() < self.max {
                    self.blackholes.insert(ip, time + self.spec.blackhole);
                }
            }
            return Poured::Overflow { count };
        }
        Poured::Added
    }

    /// Forgets buckets that have leaked empty and blackholes that have ended.
    pub fn sweep(&mut self, now: SystemTime) {
        self.buckets.retain(|_, bucket| {
            now.duration_since(bucket.last)
                .map(|idle| idle.as_nanos() < bucket.level)
                .unwrap_or(true)
        });
        self.blackholes.retain(|_, until| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(capacity: u32, leak: u64, blackhole: u64, distinct: bool) -> BucketSpec {
        BucketSpec {
            capacity,
            leak: Duration::from_secs(leak),
            distinct: distinct.then(|| "user".to_owned()),
            blackhole: Duration::from_secs(blackhole),
        }
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + seconds)
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn overflows_on_the_event_past_capacity() {
        let mut buckets = Buckets::new(spec(5, 10, 60, false), 100);
        for i in 0..5 {
            assert_eq!(buckets.pour(IP, at(i / 2), None), Poured::Added);
        }
        assert_eq!(buckets.pour(IP, at(3), None), Poured::Overflow { count: 6 });
        assert_eq!(buckets.pour(IP, at(4), None), Poured::Blackholed);
        assert_eq!(buckets.pour(IP, at(64), None), Poured::Added);
    }

    #[test]
    fn a_slow_rate_leaks_away() {
        let mut buckets = Buckets::new(spec(2, 10, 0, false), 100);
        for i in 0..100 {
            assert_eq!(buckets.pour(IP, at(i * 10), None), Poured::Added);
        }
    }

    #[test]
    fn exactly_at_capacity_does_not_overflow() {
        // capacity 10, leak 60 s, one event every 30 s: level after n events is
        // n - elapsed/60; the 19th event brings it to exactly 10.
        let mut buckets = Buckets::new(spec(10, 60, 60, false), 100);
        let mut outcome = Vec::new();
        for i in 0..20 {
            outcome.push(buckets.pour(IP, at(i * 30), None));
        }
        assert!(
            outcome[..19].iter().all(|p| *p == Poured::Added),
            "{outcome:?}"
        );
        assert_eq!(outcome[19], Poured::Overflow { count: 20 });
    }

    #[test]
    fn distinct_values_only() {
        let mut buckets = Buckets::new(spec(2, 10, 0, true), 100);
        assert_eq!(buckets.pour(IP, at(0), Some("a")), Poured::Added);
        assert_eq!(buckets.pour(IP, at(0), Some("a")), Poured::Duplicate);
        assert_eq!(buckets.pour(IP, at(0), Some("b")), Poured::Added);
        assert_eq!(
            buckets.pour(IP, at(0), Some("c")),
            Poured::Overflow { count: 3 }
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let mut buckets = Buckets::new(spec(5, 10, 0, false), 2);
        let ip = |n| IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, n));
        assert_eq!(buckets.pour(ip(1), at(0), None), Poured::Added);
        assert_eq!(buckets.pour(ip(2), at(0), None), Poured::Added);
        assert_eq!(buckets.pour(ip(3), at(1), None), Poured::Full);
        // Once the first two have leaked empty, there is room again.
        assert_eq!(buckets.pour(ip(3), at(20), None), Poured::Added);
        assert_eq!(buckets.dropped_full, 1);
    }
}
