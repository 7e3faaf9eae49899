//! The records the store keeps besides decisions, and their stored form: a version byte,
//! then postcard (see [`crate::decide::Decision::encode`] for why).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The version byte in front of every record of this module.
const VERSION_1: u8 = 1;

/// A subject's ban history: what escalation (longer bans for repeat offenders) reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offense {
    /// How many times the subject was banned within the retention period.
    pub bans: u32,
    /// When the last ban started.
    pub last_ban: SystemTime,
}

/// A signal as the swarm received it, under its unique `(origin, seq)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSignal {
    /// The DID of the member that signed it.
    pub origin: String,
    /// The origin's sequence number; `(origin, seq)` is unique.
    pub seq: u64,
    /// When the signal stops counting; the sweep removes it then.
    pub expires_at: SystemTime,
    /// The signed signal, byte for byte, so that it can be re-verified and re-gossiped.
    pub body: Vec<u8>,
}

/// A swarm member as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPeer {
    /// The member's DID, its key in the store.
    pub did: String,
    /// When it was last heard from; the sweep forgets it after the peer retention.
    pub last_seen: SystemTime,
    /// What the swarm keeps about it (address, credential), in the swarm's own encoding.
    pub body: Vec<u8>,
}

impl Offense {
    /// The history after one more ban at `now`.
    pub(super) fn after(previous: Option<Offense>, now: SystemTime) -> Offense {
        Offense {
            bans: previous.map_or(0, |o| o.bans).saturating_add(1),
            last_ban: now,
        }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        encode(&(self.bans, to_wire(self.last_ban)))
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Offense, String> {
        let (bans, last_ban): (u32, WireTime) = decode(bytes)?;
        Ok(Offense {
            bans,
            last_ban: from_wire(last_ban)?,
        })
    }
}

impl StoredSignal {
    /// `origin, 0, seq (big-endian)`: unique per signal, and sorted by origin then sequence,
    /// so that one origin's signals are one range.
    pub(super) fn key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.origin.len() + 9);
        key.extend_from_slice(self.origin.as_bytes());
        key.push(0);
        key.extend_from_slice(&self.seq.to_be_bytes());
        key
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        encode(&(&self.origin, self.seq, to_wire(self.expires_at), &self.body))
    }

    pub(super) fn decode(_key: &[u8], bytes: &[u8]) -> Result<StoredSignal, String> {
        let (origin, seq, expires_at, body): (String, u64, WireTime, Vec<u8>) = decode(bytes)?;
        Ok(StoredSignal {
            origin,
            seq,
            expires_at: from_wire(expires_at)?,
            body,
        })
    }
}

impl StoredPeer {
    pub(super) fn encode(&self) -> Vec<u8> {
        encode(&(&self.did, to_wire(self.last_seen), &self.body))
    }

    pub(super) fn decode(_key: &[u8], bytes: &[u8]) -> Result<StoredPeer, String> {
        let (did, last_seen, body): (String, WireTime, Vec<u8>) = decode(bytes)?;
        Ok(StoredPeer {
            did,
            last_seen: from_wire(last_seen)?,
            body,
        })
    }
}

/// Seconds and nanoseconds since 1970.
type WireTime = (u64, u32);

fn to_wire(time: SystemTime) -> WireTime {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    (since.as_secs(), since.subsec_nanos())
}

fn from_wire((secs, nanos): WireTime) -> Result<SystemTime, String> {
    if nanos >= 1_000_000_000 {
        return Err("nanoseconds out of range".to_owned());
    }
    UNIX_EPOCH
        .checked_add(Duration::new(secs, nanos))
        .ok_or_else(|| "time out of range".to_owned())
}

fn encode(value: &impl Serialize) -> Vec<u8> {
    postcard::to_extend(value, vec![VERSION_1])
        .expect("records of known size always serialise into a Vec")
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        None => Err("empty record".to_owned()),
        Some((&VERSION_1, body)) => postcard::from_bytes(body).map_err(|err| err.to_string()),
        Some((version, _)) => Err(format!("unknown record version {version}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn records_round_trip() {
        let offense = Offense::after(Offense::after(None, at(10)).into(), at(20));
        assert_eq!(
            offense,
            Offense {
                bans: 2,
                last_ban: at(20)
            }
        );
        assert_eq!(Offense::decode(&offense.encode()), Ok(offense));

        let signal = StoredSignal {
            origin: "did:key:z6Mk".to_owned(),
            seq: 7,
            expires_at: at(1_800_000_000) + Duration::from_nanos(5),
            body: vec![0, 1, 2, 255],
        };
        assert_eq!(
            StoredSignal::decode(&signal.key(), &signal.encode()),
            Ok(signal)
        );

        let peer = StoredPeer {
            did: "did:key:z6Mq".to_owned(),
            last_seen: at(1_700_000_000),
            body: b"10.0.0.2:7300".to_vec(),
        };
        assert_eq!(StoredPeer::decode(&[], &peer.encode()), Ok(peer));
    }

    #[test]
    fn signal_keys_sort_by_origin_then_sequence() {
        let key = |origin: &str, seq| {
            StoredSignal {
                origin: origin.to_owned(),
                seq,
                expires_at: at(0),
                body: vec![],
            }
            .key()
        };
        assert!(key("a", 2) < key("a", 256));
        assert!(key("a", u64::MAX) < key("b", 0));
        // A DID that extends another does not interleave with it.
        assert!(key("a", u64::MAX) < key("ab", 0));
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert!(Offense::decode(&[]).is_err());
        assert!(Offense::decode(&[2, 1, 1, 1]).is_err());
        assert!(Offense::decode(&[VERSION_1, 1]).is_err());
        assert!(StoredPeer::decode(&[], &[VERSION_1, 200]).is_err());
    }
}
