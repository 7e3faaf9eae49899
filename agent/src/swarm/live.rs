//! The live signals a member holds, bounded in total and per origin, indexed for what the
//! protocol asks of them: "do I have (origin, seq)?", "which have expired?", "what is my
//! digest?", "which hashes fall in these buckets?".

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use super::peer::PeerId;
use super::signal::{Signal, SignalId};
use super::wire::{BUCKETS, Digest};

#[derive(Debug)]
pub(crate) struct LiveSignals {
    /// Every live signal. The bound is `max_live`.
    by_id: HashMap<SignalId, Held>,
    /// Anti-entropy names signals by hash; this finds them.
    by_hash: HashMap<u64, SignalId>,
    /// The seqs held per origin, to enforce `max_per_origin` by evicting the oldest.
    per_origin: HashMap<PeerId, BTreeSet<u64>>,
    /// Per origin, the highest seq evicted for room: anything at or below it is a replay,
    /// since we would otherwise take it (and report it) a second time.
    floors: HashMap<PeerId, u64>,
    /// Expiry order, so that sweeping costs what expires, not what is held.
    by_expiry: BTreeSet<(SystemTime, SignalId)>,
    digest: Digest,
    max_live: usize,
    max_per_origin: usize,
}

#[derive(Debug)]
struct Held {
    signal: Signal,
    hash: u64,
}

/// What [`LiveSignals::insert`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Insert {
    Added {
        /// The origin's oldest signal, pushed out to stay within `max_per_origin`.
        evicted: Option<SignalId>,
    },
    /// Already held.
    Duplicate,
    /// At or below the origin's eviction floor.
    Replayed,
    /// `max_live` signals are held already.
    Full,
}

impl LiveSignals {
    pub(crate) fn new(max_live: usize, max_per_origin: usize) -> LiveSignals {
        LiveSignals {
            by_id: HashMap::new(),
            by_hash: HashMap::new(),
            per_origin: HashMap::new(),
            floors: HashMap::new(),
            by_expiry: BTreeSet::new(),
            digest: Digest::default(),
            max_live,
            max_per_origin: max_per_origin.max(1),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether `id` would be refused as a duplicate or a replay.
    pub(crate) fn check(&self, id: &SignalId) -> Option<Insert> {
        if self.by_id.contains_key(id) {
            Some(Insert::Duplicate)
        } else if self
            .floors
            .get(&id.origin)
            .is_some_and(|floor| id.seq <= *floor)
        {
            Some(Insert::Replayed)
        } else {
            None
        }
    }

    pub(crate) fn insert(&mut self, signal: Signal) -> Insert {
        let id = signal.id();
        if let Some(refused) = self.check(&id) {
            return refused;
        }
        let held_by_origin = self.per_origin.get(&id.origin).map_or(0, BTreeSet::len);
        let mut evicted = None;
        if held_by_origin >= self.max_per_origin {
            let oldest = self
                .per_origin
                .get(&id.origin)
                .and_then(|seqs| seqs.first().copied());
            if let Some(oldest) = oldest {
                if oldest > id.seq {
                    // The newcomer is older than everything kept: it is the one to go.
                    self.raise_floor(id);
                    return Insert::Replayed;
                }
                let oldest = SignalId {
                    origin: id.origin,
                    seq: oldest,
                };
                self.remove(&oldest);
                self.raise_floor(oldest);
                evicted = Some(oldest);
            }
        } else if self.by_id.len() >= self.max_live {
            return Insert::Full;
        }
        let hash = id.hash64();
        self.toggle_digest(hash, true);
        self.by_hash.insert(hash, id);
        self.per_origin.entry(id.origin).or_default().insert(id.seq);
        self.by_expiry.insert((signal.expires_at(), id));
        self.by_id.insert(id, Held { signal, hash });
        Insert::Added { evicted }
    }

    fn raise_floor(&mut self, id: SignalId) {
        let floor = self.floors.entry(id.origin).or_insert(id.seq);
        *floor = (*floor).max(id.seq);
    }

    fn toggle_digest(&mut self, hash: u64, added: bool) {
        // BUCKETS is 32, so the remainder fits any integer type.
        let bucket = &mut self.digest.buckets[(hash % BUCKETS as u64) as usize];
        bucket.xor ^= hash;
        bucket.count = if added {
            bucket.count.saturating_add(1)
        } else {
            bucket.count.saturating_sub(1)
        };
    }

    pub(crate) fn remove(&mut self, id: &SignalId) -> Option<Signal> {
        let held = self.by_id.remove(id)?;
        self.by_hash.remove(&held.hash);
        self.toggle_digest(held.hash, false);
        self.by_expiry.remove(&(held.signal.expires_at(), *id));
        if let Some(seqs) = self.per_origin.get_mut(&id.origin) {
            seqs.remove(&id.seq);
            if seqs.is_empty() {
                self.per_origin.remove(&id.origin);
            }
        }
        Some(held.signal)
    }

    /// Forgets every signal that has expired at `now`; returns how many.
    pub(crate) fn expire(&mut self, now: SystemTime) -> usize {
        let mut expired = 0;
        while let Some((expires_at, id)) = self.by_expiry.first().copied() {
            if expires_at > now {
                break;
            }
            self.remove(&id);
            expired += 1;
        }
        expired
    }

    /// Forgets everything `origin` said (it was expelled), and its floor.
    pub(crate) fn remove_origin(&mut self, origin: &PeerId) -> usize {
        let seqs = self.per_origin.remove(origin).unwrap_or_default();
        for seq in &seqs {
            let id = SignalId {
                origin: *origin,
                seq: *seq,
            };
            // `remove` would look per_origin up again; it is already gone.
            if let Some(held) = self.by_id.remove(&id) {
                self.by_hash.remove(&held.hash);
                self.toggle_digest(held.hash, false);
                self.by_expiry.remove(&(held.signal.expires_at(), id));
            }
        }
        self.floors.remove(origin);
        seqs.len()
    }

    pub(crate) fn get(&self, id: &SignalId) -> Option<&Signal> {
        self.by_id.get(id).map(|held| &held.signal)
    }

    pub(crate) fn get_by_hash(&self, hash: u64) -> Option<&Signal> {
        self.by_hash.get(&hash).and_then(|id| self.get(id))
    }

    pub(crate) fn contains_hash(&self, hash: u64) -> bool {
        self.by_hash.contains_key(&hash)
    }

    pub(crate) fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Up to `limit` hashes of held signals in the buckets of `mask`, starting at a point
    /// the caller picks at random (so that, when there are more than `limit`, successive
    /// exchanges cover different ones), and whether that is all of them.
    pub(crate) fn hashes_in(&self, mask: u32, limit: usize, start: usize) -> (Vec<u64>, bool) {
        let in_mask = |hash: &u64| mask & (1 << (hash % BUCKETS as u64)) != 0;
        let total = self.by_hash.keys().filter(|hash| in_mask(hash)).count();
        if total <= limit {
            return (self.by_hash.keys().copied().filter(in_mask).collect(), true);
        }
        let skip = start % total;
        let picked = self
            .by_hash
            .keys()
            .copied()
            .filter(in_mask)
            .cycle()
            .skip(skip)
            .take(limit)
            .collect();
        (picked, false)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Signal> {
        self.by_id.values().map(|held| &held.signal)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::detect::Severity;
    use crate::swarm::signal::{Reason, SignalBody, SigningKey};

    fn signal(key: &SigningKey, seq: u64, ttl_s: u64) -> Signal {
        let at = UNIX_EPOCH + Duration::from_secs(1_000);
        Signal::sign(
            key,
            seq,
            SignalBody {
                subject: "192.0.2.1".parse().unwrap(),
                reason: Reason {
                    rule: "r".to_owned(),
                    class: String::new(),
                },
                severity: Severity::Low,
                observed_at: at,
                expires_at: at + Duration::from_secs(ttl_s),
            },
        )
        .unwrap()
    }

    #[test]
    fn duplicates_replays_and_bounds() {
        let key = SigningKey::from_seed(&[3; 32]).unwrap();
        let other = SigningKey::from_seed(&[4; 32]).unwrap();
        let mut live = LiveSignals::new(3, 2);
        assert_eq!(
            live.insert(signal(&key, 1, 60)),
            Insert::Added { evicted: None }
        );
        assert_eq!(live.insert(signal(&key, 1, 60)), Insert::Duplicate);
        assert_eq!(
            live.insert(signal(&key, 2, 60)),
            Insert::Added { evicted: None }
        );
        // The third from one origin pushes out its oldest, which then counts as a replay.
        let evicted = SignalId {
            origin: key.peer_id(),
            seq: 1,
        };
        assert_eq!(
            live.insert(signal(&key, 3, 60)),
            Insert::Added {
                evicted: Some(evicted)
            }
        );
        assert_eq!(live.insert(signal(&key, 1, 60)), Insert::Replayed);
        assert_eq!(
            live.insert(signal(&other, 1, 60)),
            Insert::Added { evicted: None }
        );
        assert_eq!(live.insert(signal(&other, 2, 60)), Insert::Full);
        assert_eq!(live.len(), 3);
    }

    #[test]
    fn the_digest_follows_the_set() {
        let key = SigningKey::from_seed(&[3; 32]).unwrap();
        let mut a = LiveSignals::new(100, 100);
        let mut b = LiveSignals::new(100, 100);
        for seq in 0..20 {
            a.insert(signal(&key, seq, 60 + seq));
        }
        for seq in (0..20).rev() {
            b.insert(signal(&key, seq, 60 + seq));
        }
        assert_eq!(a.digest(), b.digest());
        b.remove(&SignalId {
            origin: key.peer_id(),
            seq: 4,
        });
        let mask = a.digest().differing(b.digest());
        assert_eq!(mask.count_ones(), 1);
        let (hashes, complete) = a.hashes_in(mask, 100, 0);
        assert!(complete);
        let missing: Vec<_> = hashes.iter().filter(|h| !b.contains_hash(**h)).collect();
        assert_eq!(missing.len(), 1);
        assert_eq!(a.get_by_hash(*missing[0]).unwrap().seq(), 4);
        let (some, complete) = a.hashes_in(u32::MAX, 5, 7);
        assert_eq!((some.len(), complete), (5, false));
    }

    #[test]
    fn expiry_and_withdrawal_keep_the_digest_right() {
        let key = SigningKey::from_seed(&[3; 32]).unwrap();
        let mut live = LiveSignals::new(100, 100);
        for seq in 0..10 {
            live.insert(signal(&key, seq, 10 * (seq + 1)));
        }
        let now = UNIX_EPOCH + Duration::from_secs(1_000 + 35);
        assert_eq!(live.expire(now), 3);
        assert_eq!(live.len(), 7);
        assert_eq!(live.remove_origin(&key.peer_id()), 7);
        assert_eq!(live.digest(), &Digest::default());
    }
}
