//! [`DomainSet`]: the domains the sinkhole answers for, and the match of a query name
//! against them. Sans-IO: the caller passes `now`, so that an expired decision stops
//! matching at its `until` even if nobody has updated the set since.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use crate::subject::Domain;

/// The decided domains (each with its expiry) and the blocklisted ones (no expiry). A name
/// matches when it, or any parent of it, is in either.
#[derive(Debug, Clone, Default)]
pub struct DomainSet {
    /// From decisions: domain → until. Replaced as a whole on every update.
    decided: HashMap<String, SystemTime>,
    /// From blocklist files, loaded once at start; shared between generations of the set.
    listed: Arc<HashSet<String>>,
}

/// Why a name matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchSource {
    Decision,
    Blocklist,
}

impl MatchSource {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchSource::Decision => "decision",
            MatchSource::Blocklist => "blocklist",
        }
    }
}

impl DomainSet {
    /// A set holding only the blocklisted domains.
    pub fn with_blocklist(listed: impl IntoIterator<Item = Domain>) -> DomainSet {
        DomainSet {
            decided: HashMap::new(),
            listed: Arc::new(listed.into_iter().map(|d| d.as_str().to_owned()).collect()),
        }
    }

    /// The same blocklist with `decided` as the decisions, keeping at most `limit` of them
    /// (the latest-expiring, when there are more: they are the ones still wanted longest).
    /// Returns the new set and how many were left out. Entries already expired at `now`
    /// are dropped here rather than carried.
    pub fn with_decisions(
        &self,
        decided: impl IntoIterator<Item = (Domain, SystemTime)>,
        limit: usize,
        now: SystemTime,
    ) -> (DomainSet, usize) {
        let mut map: HashMap<String, SystemTime> = HashMap::new();
        for (domain, until) in decided {
            if until <= now {
                continue;
            }
            let entry = map.entry(domain.as_str().to_owned()).or_insert(until);
            *entry = (*entry).max(until);
        }
        let mut left_out = 0;
        if map.len() > limit {
            let mut entries: Vec<(String, SystemTime)> = map.into_iter().collect();
            entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            left_out = entries.len() - limit;
            entries.truncate(limit);
            map = entries.into_iter().collect();
        }
        (
            DomainSet {
                decided: map,
                listed: self.listed.clone(),
            },
            left_out,
        )
    }

    /// How many decided (live or not yet swept) and blocklisted domains the set holds.
    pub fn len(&self) -> (usize, usize) {
        (self.decided.len(), self.listed.len())
    }

    pub fn is_empty(&self) -> bool {
        self.decided.is_empty() && self.listed.is_empty()
    }

    /// The entry that covers `name` (any case, with or without the trailing dot), if one
    /// does at `now`: the name itself first, then each parent. A decision whose `until` has
    /// passed does not match.
    pub fn lookup<'a>(&'a self, name: &'a str, now: SystemTime) -> Option<(&'a str, MatchSource)> {
        let name = name.trim_end_matches('.');
        if name.is_empty() {
            return None;
        }
        // Names arrive lowercased from hickory (`LowerName`); lowercase anything else once.
        let lowered;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            lowered.as_str()
        } else {
            name
        };
        let mut suffix = name;
        loop {
            if self.decided.get(suffix).is_some_and(|until| *until > now) {
                return Some((self.key(suffix, true), MatchSource::Decision));
            }
            if self.listed.contains(suffix) {
                return Some((self.key(suffix, false), MatchSource::Blocklist));
            }
            match suffix.find('.') {
                Some(dot) => suffix = &suffix[dot + 1..],
                None => return None,
            }
        }
    }

    /// The stored key equal to `suffix`, so that the answer borrows from the set and not
    /// from a possibly temporary lowercased copy of the query name.
    fn key(&self, suffix: &str, decided: bool) -> &str {
        if decided {
            self.decided
                .get_key_value(suffix)
                .map(|(k, _)| k.as_str())
                .unwrap_or_default()
        } else {
            self.listed
                .get(suffix)
                .map(String::as_str)
                .unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::subject::Subject;

    fn domain(text: &str) -> Domain {
        match text.parse::<Subject>().unwrap() {
            Subject::Domain(domain) => domain,
            other => panic!("{other} is not a domain"),
        }
    }

    #[test]
    fn a_decision_covers_the_domain_and_its_subdomains_until_it_expires() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let until = now + Duration::from_secs(60);
        let (set, left_out) =
            DomainSet::default().with_decisions([(domain("evil.example"), until)], 10, now);
        assert_eq!(left_out, 0);
        for name in ["evil.example.", "a.b.Evil.Example", "evil.example"] {
            assert_eq!(
                set.lookup(name, now),
                Some(("evil.example", MatchSource::Decision)),
                "{name}"
            );
        }
        for name in ["notevil.example.", "example.", ".", "", "evil.example.org."] {
            assert_eq!(set.lookup(name, now), None, "{name}");
        }
        assert_eq!(set.lookup("evil.example.", until), None, "expired at until");
    }

    #[test]
    fn blocklisted_domains_match_without_expiry_and_survive_updates() {
        let now = SystemTime::UNIX_EPOCH;
        let set = DomainSet::with_blocklist([domain("ads.example")]);
        let (set, _) = set.with_decisions(
            [(domain("c2.example"), now + Duration::from_secs(1))],
            10,
            now,
        );
        assert_eq!(
            set.lookup("x.ads.example.", now + Duration::from_secs(86400)),
            Some(("ads.example", MatchSource::Blocklist))
        );
        let (set, _) = set.with_decisions([], 10, now);
        assert_eq!(set.lookup("c2.example.", now), None);
        assert_eq!(set.len(), (0, 1));
    }

    #[test]
    fn the_limit_keeps_the_latest_expiring_decisions() {
        let now = SystemTime::UNIX_EPOCH;
        let at = |s| now + Duration::from_secs(s);
        let (set, left_out) = DomainSet::default().with_decisions(
            [
                (domain("a.example"), at(10)),
                (domain("b.example"), at(30)),
                (domain("c.example"), at(20)),
                (domain("gone.example"), now),
            ],
            2,
            now,
        );
        assert_eq!(left_out, 1);
        assert!(set.lookup("b.example", now).is_some());
        assert!(set.lookup("c.example", now).is_some());
        assert!(set.lookup("a.example", now).is_none());
        assert!(set.lookup("gone.example", now).is_none());
    }
}
