//! The [`Decision`]: one subject this host acts on, until when, and why. It is persisted
//! (the kernel state is reconciled from the store at start), shown by `swarmctl decisions
//! list`, and applied by the enforcement backends.
//!
//! # Encoding
//!
//! Stored records are `[version byte][postcard body]` ([`Decision::encode`]). postcard is
//! serde-based, compact (varints; a decision is a few dozen bytes, about a third of its JSON)
//! and its wire format is documented and stable since 1.0, so a record written today reads
//! back after a dependency update. It is not self-describing, which is what the version
//! byte is for: a future layout gets a new version and [`Decision::decode`] keeps reading
//! the old one. JSON stays the format for people and scripts (`swarmctl --json`): the same
//! serde derive gives readable JSON, with RFC 3339 times, because times and subjects
//! serialise differently for human-readable formats.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::subject::Subject;

/// One subject this host acts on, until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Who is blocked (or sinkholed): an address, a network or a domain.
    #[serde(with = "subject_text")]
    pub subject: Subject,
    pub action: Action,
    /// When the decision lapses by itself; the enforcement backends hand the remaining
    /// time to the kernel so that a stopped agent does not leave blocks behind forever.
    #[serde(with = "wire_time")]
    pub until: SystemTime,
    /// What caused it: the accountability trail an operator reads first.
    pub origin: Origin,
    /// Free text for people: the rule's message, the operator's note.
    pub reason: String,
    /// When this host made the decision.
    #[serde(with = "wire_time")]
    pub created: SystemTime,
}

/// What a decision makes the host do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Drop the subject's packets (nftables).
    Block,
    /// Answer DNS queries for the subject with a sinkhole address.
    Sinkhole,
    /// Record and report, enforce nothing (a policy in observation mode).
    AlertOnly,
}

/// Why a decision was made.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// This host's own detection: the rule id (`1:2002383`) or scenario name that fired.
    Local { rule: String },
    /// Enough distinct swarm members signalled the subject; `origins` counts them.
    Quorum { origins: u32 },
    /// An operator's decision, by the operator's DID (or `local` for `swarmctl` on this
    /// host without a credential).
    Operator { did: String },
}

/// The version byte in front of every stored decision.
const VERSION_1: u8 = 1;

/// Why stored bytes are not a decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No bytes at all, not even the version.
    #[error("empty decision record")]
    Empty,
    /// Written by a newer (or corrupted) agent.
    #[error("unknown decision record version {0}")]
    UnknownVersion(u8),
    /// The body does not parse.
    #[error("malformed decision record: {0}")]
    Malformed(String),
}

impl Decision {
    /// Whether the decision still holds at `now`.
    pub fn is_active(&self, now: SystemTime) -> bool {
        self.until > now
    }

    /// How long the decision still holds at `now` (zero once it has lapsed).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.until.duration_since(now).unwrap_or(Duration::ZERO)
    }

    /// The stored form: a version byte, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_extend(self, vec![VERSION_1])
            .expect("a decision always serialises: no unsized sequences, times clamped to 1970")
    }

    /// Reads what [`Decision::encode`] wrote, of any version this agent knows.
    pub fn decode(bytes: &[u8]) -> Result<Decision, DecodeError> {
        let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        match version {
            VERSION_1 => {
                postcard::from_bytes(body).map_err(|err| DecodeError::Malformed(err.to_string()))
            }
            other => Err(DecodeError::UnknownVersion(other)),
        }
    }
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Sinkhole => "sinkhole",
            Action::AlertOnly => "alert-only",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why text is not an [`Action`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action \"{0}\", expected block, sinkhole or alert-only")]
pub struct UnknownAction(pub String);

impl FromStr for Action {
    type Err = UnknownAction;

    fn from_str(text: &str) -> Result<Action, UnknownAction> {
        match text {
            "block" => Ok(Action::Block),
            "sinkhole" => Ok(Action::Sinkhole),
            "alert-only" => Ok(Action::AlertOnly),
            other => Err(UnknownAction(other.to_owned())),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Local { rule } => write!(f, "local alert {rule}"),
            Origin::Quorum { origins } => write!(f, "quorum of {origins} members"),
            Origin::Operator { did } => write!(f, "operator {did}"),
        }
    }
}

/// A subject as its text (`192.0.2.7`, `198.51.100.0/24`, `evil.example`) in every format:
/// that text is already compact, and parsing it back re-validates it.
mod subject_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::subject::Subject;

    pub(super) fn serialize<S: Serializer>(subject: &Subject, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(subject)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Subject, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A time as RFC 3339 text for people (JSON), as `(seconds, nanoseconds)` since the Unix
/// epoch in the binary format: exact both ways, and a handful of bytes with varints.
mod wire_time {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        // No clock hands out times before 1970; should one appear, it is stored as the
        // epoch (long lapsed) rather than failing the write.
        let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let time = &(UNIX_EPOCH + since);
        if s.is_human_readable() {
            let text = if since.subsec_nanos() == 0 {
                humantime::format_rfc3339(*time).to_string()
            } else {
                humantime::format_rfc3339_nanos(*time).to_string()
            };
            s.serialize_str(&text)
        } else {
            (since.as_secs(), since.subsec_nanos()).serialize(s)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        if d.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            humantime::parse_rfc3339_weak(&text).map_err(serde::de::Error::custom)
        } else {
            let (secs, nanos) = <(u64, u32)>::deserialize(d)?;
            if nanos >= 1_000_000_000 {
                return Err(serde::de::Error::custom("nanoseconds out of range"));
            }
            UNIX_EPOCH
                .checked_add(Duration::new(secs, nanos))
                .ok_or_else(|| serde::de::Error::custom("time out of range"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn sample() -> Decision {
        Decision {
            subject: "198.51.100.0/24".parse().unwrap(),
            action: Action::Block,
            until: at(1_800_000_000) + Duration::from_nanos(123_456_789),
            origin: Origin::Quorum { origins: 3 },
            reason: "ET SCAN Potential SSH Scan".to_owned(),
            created: at(1_799_996_400),
        }
    }

    #[test]
    fn binary_encoding_round_trips_exactly_and_is_compact() {
        let origins = [
            Origin::Local {
                rule: "1:2002383".to_owned(),
            },
            Origin::Quorum { origins: 3 },
            Origin::Operator {
                did: "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK".to_owned(),
            },
        ];
        for (origin, action) in
            origins
                .into_iter()
                .zip([Action::Block, Action::Sinkhole, Action::AlertOnly])
        {
            let decision = Decision {
                origin,
                action,
                ..sample()
            };
            let bytes = decision.encode();
            assert_eq!(bytes[0], VERSION_1);
            assert_eq!(Decision::decode(&bytes).unwrap(), decision);
            let json = serde_json::to_vec(&decision).unwrap();
            assert!(
                bytes.len() < json.len() / 2,
                "{} vs {}",
                bytes.len(),
                json.len()
            );
        }
        let domain = Decision {
            subject: "evil.example".parse().unwrap(),
            ..sample()
        };
        assert_eq!(Decision::decode(&domain.encode()).unwrap(), domain);
    }

    #[test]
    fn json_is_readable_and_round_trips() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "subject": "198.51.100.0/24",
                "action": "block",
                "until": "2027-01-15T08:00:00.123456789Z",
                "origin": {"quorum": {"origins": 3}},
                "reason": "ET SCAN Potential SSH Scan",
                "created": "2027-01-15T07:00:00Z",
            })
        );
        assert_eq!(serde_json::from_value::<Decision>(json).unwrap(), sample());
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        assert_eq!(Decision::decode(&[]), Err(DecodeError::Empty));
        assert_eq!(
            Decision::decode(&[9, 1, 2]),
            Err(DecodeError::UnknownVersion(9))
        );
        let bytes = sample().encode();
        for len in 1..bytes.len() {
            assert!(matches!(
                Decision::decode(&bytes[..len]),
                Err(DecodeError::Malformed(_))
            ));
        }
        // A subject that does not parse is refused, not stored as garbage.
        let mut bad = vec![VERSION_1];
        bad.extend(postcard::to_allocvec(&("300.1.1.1",)).unwrap());
        assert!(matches!(
            Decision::decode(&bad),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn activity_and_remaining_time_follow_until() {
        let decision = sample();
        assert!(decision.is_active(at(1_799_999_999)));
        assert!(!decision.is_active(decision.until));
        assert_eq!(
            decision.remaining(at(1_799_999_000)),
            Duration::from_secs(1000) + Duration::from_nanos(123_456_789)
        );
        assert_eq!(decision.remaining(at(1_900_000_000)), Duration::ZERO);
    }

    #[test]
    fn actions_parse_as_they_print() {
        for action in [Action::Block, Action::Sinkhole, Action::AlertOnly] {
            assert_eq!(action.as_str().parse::<Action>(), Ok(action));
        }
        assert!("ban".parse::<Action>().is_err());
    }
}
