//! `threshold` and `detection_filter` state: per rule and tracked key (source, destination,
//! both, flow or the rule itself), a counter over a time window on packet time. Bounded:
//! a full table first drops expired entries, then refuses new ones (counted), so a flood of
//! sources cannot grow memory.

use std::net::IpAddr;

use rustc_hash::FxHashMap;

use super::flow::Micros;
use super::rules::{Threshold, ThresholdKind, Track, UniqueOn};

/// What a threshold counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Rule,
    Addr(IpAddr),
    Pair(IpAddr, IpAddr),
    Flow(u64),
}

#[derive(Debug, Clone)]
struct Entry {
    window_start: Micros,
    count: u32,
    /// Distinct ports seen for `unique_on`, at most `count + 1` of them.
    unique: Vec<u16>,
}

/// The facts about a matching packet that thresholds track by.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hit {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub flow_id: Option<u64>,
}

/// All rules' threshold state.
#[derive(Debug)]
pub(super) struct ThresholdTable {
    /// Keyed by the rule's `(gid, sid)`, so counts survive a reload.
    entries: FxHashMap<((u32, u32), Key), Entry>,
    max_entries: usize,
    /// Matches that could not be tracked because the table was full (they alert).
    pub overflows: u64,
}

impl ThresholdTable {
    pub(super) fn new(max_entries: usize) -> ThresholdTable {
        ThresholdTable {
            entries: FxHashMap::default(),
            max_entries,
            overflows: 0,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Records a match of rule `(gid, sid)` and says whether it should alert.
    pub(super) fn check(
        &mut self,
        rule: (u32, u32),
        threshold: &Threshold,
        hit: &Hit,
        now: Micros,
    ) -> bool {
        let key = match threshold.track {
            Track::ByRule => Key::Rule,
            Track::BySrc => Key::Addr(hit.src),
            Track::ByDst => Key::Addr(hit.dst),
            Track::ByBoth => Key::Pair(hit.src, hit.dst),
            Track::ByFlow => match hit.flow_id {
                Some(id) => Key::Flow(id),
                None => Key::Rule,
            },
        };
        let window = u64::from(threshold.seconds) * 1_000_000;
        if !self.entries.contains_key(&(rule, key)) && self.entries.len() >= self.max_entries {
            self.entries
                .retain(|_, entry| now.saturating_sub(entry.window_start) < window.max(1_000_000));
            if self.entries.len() >= self.max_entries {
                self.overflows += 1;
                return true;
            }
        }
        let entry = self.entries.entry((rule, key)).or_insert_with(|| Entry {
            window_start: now,
            count: 0,
            unique: Vec::new(),
        });
        // As Suricata: a match after the window starts a new one, whatever the count.
        if now.saturating_sub(entry.window_start) >= window {
            entry.window_start = now;
            entry.count = 0;
            entry.unique.clear();
        }
        match threshold.unique_on {
            Some(on) => {
                let port = match on {
                    UniqueOn::SrcPort => hit.src_port,
                    UniqueOn::DstPort => hit.dst_port,
                };
                if !entry.unique.contains(&port) && entry.unique.len() <= threshold.count as usize {
                    entry.unique.push(port);
                }
                entry.count = entry.unique.len() as u32;
            }
            None => entry.count = entry.count.saturating_add(1),
        }
        match threshold.kind {
            ThresholdKind::Limit => entry.count <= threshold.count,
            ThresholdKind::Threshold => {
                if entry.count >= threshold.count {
                    entry.count = 0;
                    true
                } else {
                    false
                }
            }
            ThresholdKind::Both => entry.count == threshold.count,
            ThresholdKind::DetectionFilter => entry.count > threshold.count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(src: &str, dst_port: u16) -> Hit {
        Hit {
            src: src.parse().unwrap(),
            dst: "10.0.0.1".parse().unwrap(),
            src_port: 1000,
            dst_port,
            flow_id: None,
        }
    }

    fn run(threshold: Threshold, hits: &[(Hit, u64)]) -> Vec<bool> {
        let mut table = ThresholdTable::new(100);
        hits.iter()
            .map(|(hit, secs)| table.check((1, 1), &threshold, hit, secs * 1_000_000))
            .collect()
    }

    fn threshold(kind: ThresholdKind, count: u32) -> Threshold {
        Threshold {
            kind,
            track: Track::BySrc,
            count,
            seconds: 60,
            unique_on: None,
        }
    }

    #[test]
    fn limit_threshold_both_and_detection_filter() {
        let hits: Vec<(Hit, u64)> = (0..5).map(|i| (hit("1.1.1.1", 22), i)).collect();
        assert_eq!(
            run(threshold(ThresholdKind::Limit, 2), &hits),
            [true, true, false, false, false]
        );
        assert_eq!(
            run(threshold(ThresholdKind::Threshold, 2), &hits),
            [false, true, false, true, false]
        );
        assert_eq!(
            run(threshold(ThresholdKind::Both, 2), &hits),
            [false, true, false, false, false]
        );
        assert_eq!(
            run(threshold(ThresholdKind::DetectionFilter, 2), &hits),
            [false, false, true, true, true]
        );
    }

    #[test]
    fn windows_restart_and_sources_are_separate() {
        let hits = [
            (hit("1.1.1.1", 22), 0),
            (hit("2.2.2.2", 22), 1),
            (hit("1.1.1.1", 22), 100),
        ];
        assert_eq!(
            run(threshold(ThresholdKind::Limit, 1), &hits),
            [true, true, true]
        );
    }

    #[test]
    fn threshold_type_starts_a_new_window_after_an_alert_emptied_the_count() {
        // Regression: after an alert reset the count to 0, a late match must open a new
        // window (as Suricata does), not be measured against the stale one forever.
        let t = threshold(ThresholdKind::Threshold, 2);
        let hits: Vec<(Hit, u64)> = [0, 1, 100, 101, 102, 103]
            .into_iter()
            .map(|secs| (hit("1.1.1.1", 22), secs))
            .collect();
        assert_eq!(run(t, &hits), [false, true, false, true, false, true]);
    }

    #[test]
    fn unique_on_counts_distinct_ports() {
        let mut df = threshold(ThresholdKind::DetectionFilter, 2);
        df.unique_on = Some(UniqueOn::DstPort);
        let hits = [
            (hit("1.1.1.1", 22), 0),
            (hit("1.1.1.1", 22), 1),
            (hit("1.1.1.1", 23), 2),
            (hit("1.1.1.1", 24), 3),
        ];
        assert_eq!(run(df, &hits), [false, false, false, true]);
    }

    #[test]
    fn a_full_table_lets_matches_through_and_counts_them() {
        let mut table = ThresholdTable::new(1);
        let t = threshold(ThresholdKind::Limit, 1);
        assert!(table.check((1, 1), &t, &hit("1.1.1.1", 1), 0));
        assert!(table.check((1, 1), &t, &hit("2.2.2.2", 1), 0));
        assert_eq!(table.overflows, 1);
        assert_eq!(table.len(), 1);
    }
}
