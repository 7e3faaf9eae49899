//! From possibly nested blocked networks to the disjoint pieces an nftables interval set
//! can hold.
//!
//! An interval set refuses overlapping elements ("interval overlaps with an existing one"),
//! yet decisions can nest: an operator blocks `198.51.100.0/24` for a day while an address
//! inside it is already blocked for a week. Every address must stay blocked until the latest
//! `until` of the decisions that cover it, so the covering network is cut around the longer
//! lived inner one into disjoint prefixes, each with its own timeout. The kernel then
//! expires every piece by itself, exactly when the last decision covering it lapses; an
//! inner decision that ends no later than its cover adds nothing and is left out.

use std::collections::BTreeMap;
use std::time::SystemTime;

use ipnet::IpNet;

/// The disjoint prefixes, and until when each is blocked, that block exactly what `blocked`
/// blocks: every address until the latest `until` among the networks containing it.
pub(super) fn disjoint(blocked: &BTreeMap<IpNet, SystemTime>) -> BTreeMap<IpNet, SystemTime> {
    let items: Vec<(IpNet, SystemTime)> =
        blocked.iter().map(|(net, until)| (*net, *until)).collect();
    let mut pieces = BTreeMap::new();
    let mut i = 0;
    // IpNet orders by address then prefix length, so a network comes right before the
    // networks nested in it: each top-level network and its nested ones form a run.
    while i < items.len() {
        let (outer, until) = items[i];
        let end = i
            + 1
            + items[i + 1..]
                .iter()
                .take_while(|(net, _)| outer.contains(net))
                .count();
        split(outer, Some(until), &items[i + 1..end], &mut pieces);
        i = end;
    }
    pieces
}

/// Emits the pieces of `net`, blocked until `cover` by the networks around it, given the
/// networks strictly `inside` it (sorted).
fn split(
    net: IpNet,
    cover: Option<SystemTime>,
    inside: &[(IpNet, SystemTime)],
    pieces: &mut BTreeMap<IpNet, SystemTime>,
) {
    let outlived = |cover: SystemTime| inside.iter().all(|(_, until)| *until <= cover);
    match cover {
        Some(cover) if outlived(cover) => {
            pieces.insert(net, cover);
            return;
        }
        None if inside.is_empty() => return,
        _ => {}
    }
    // Something inside outlives the cover: look at each half separately.
    let Ok(halves) = net.subnets(net.prefix_len() + 1) else {
        // A host route has nothing strictly inside it, so this is unreachable; keep the
        // cover rather than lose the block.
        if let Some(cover) = cover {
            pieces.insert(net, cover);
        }
        return;
    };
    for half in halves {
        let within: Vec<(IpNet, SystemTime)> = inside
            .iter()
            .filter(|(inner, _)| half.contains(inner))
            .copied()
            .collect();
        let (cover, rest) = match within.first() {
            Some((first, until)) if *first == half => (cover.max(Some(*until)), &within[1..]),
            _ => (cover, &within[..]),
        };
        split(half, cover, rest, pieces);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn map(items: &[(&str, u64)]) -> BTreeMap<IpNet, SystemTime> {
        items
            .iter()
            .map(|(net, until)| (net.parse().unwrap(), at(*until)))
            .collect()
    }

    fn check(blocked: &[(&str, u64)], expected: &[(&str, u64)]) {
        let pieces = disjoint(&map(blocked));
        assert_eq!(pieces, map(expected), "{blocked:?}");
        // Disjoint, and every address is blocked until the latest cover.
        let nets: Vec<&IpNet> = pieces.keys().collect();
        for pair in nets.windows(2) {
            assert!(!pair[0].contains(pair[1]) && !pair[1].contains(pair[0]));
        }
    }

    #[test]
    fn disjoint_networks_are_kept_as_they_are() {
        check(
            &[
                ("192.0.2.7/32", 10),
                ("198.51.100.0/24", 20),
                ("2001:db8::/32", 30),
            ],
            &[
                ("192.0.2.7/32", 10),
                ("198.51.100.0/24", 20),
                ("2001:db8::/32", 30),
            ],
        );
    }

    #[test]
    fn an_inner_block_that_ends_first_adds_nothing() {
        check(
            &[
                ("10.0.0.0/16", 100),
                ("10.0.5.0/24", 50),
                ("10.0.5.9/32", 100),
            ],
            &[("10.0.0.0/16", 100)],
        );
    }

    #[test]
    fn a_longer_inner_block_cuts_the_cover_around_it() {
        check(
            &[("10.0.0.0/22", 100), ("10.0.1.0/24", 500)],
            &[
                ("10.0.0.0/24", 100),
                ("10.0.1.0/24", 500),
                ("10.0.2.0/23", 100),
            ],
        );
        check(
            &[("10.0.0.0/30", 100), ("10.0.0.3/32", 500)],
            &[
                ("10.0.0.0/31", 100),
                ("10.0.0.2/32", 100),
                ("10.0.0.3/32", 500),
            ],
        );
    }

    #[test]
    fn nesting_three_deep_keeps_the_latest_cover_everywhere() {
        check(
            &[
                ("10.0.0.0/29", 100),
                ("10.0.0.0/30", 300),
                ("10.0.0.1/32", 200),
            ],
            &[("10.0.0.0/30", 300), ("10.0.0.4/30", 100)],
        );
        check(
            &[
                ("10.0.0.0/29", 100),
                ("10.0.0.0/30", 200),
                ("10.0.0.1/32", 300),
            ],
            &[
                ("10.0.0.0/32", 200),
                ("10.0.0.1/32", 300),
                ("10.0.0.2/31", 200),
                ("10.0.0.4/30", 100),
            ],
        );
    }
}
