//! Who a swarm member is: [`PeerId`], an agent's Ed25519 public key, written as a `did:key`;
//! [`Peer`], a member as the transport sees it (key and socket address); and [`MemberId`],
//! the identity SWIM gossips about (key, address and a restart counter).
//!
//! The `did:key` codec is deliberately tiny and local: a swarm member is always an Ed25519
//! `did:key` (`did:key:z` + base58btc of the multicodec prefix `0xed 0x01` and the 32-byte
//! key), so nothing more general is needed here. The identity crate resolves DIDs in
//! general; the two should agree on this one form, which a test pins with a W3C vector.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The multicodec prefix of an Ed25519 public key (`ed25519-pub`, varint 0xed).
const ED25519_MULTICODEC: [u8; 2] = [0xed, 0x01];
const DID_KEY_PREFIX: &str = "did:key:z";

/// A member's Ed25519 public key: its identity in the swarm, shown as a `did:key`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerId([u8; 32]);

/// Why text is not an Ed25519 `did:key`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not an Ed25519 did:key")]
pub struct InvalidDidKey(pub String);

impl PeerId {
    /// Stands for "a member whose key we do not know yet": the seeds we announce to before
    /// they answer. Never admitted, never accepted from the network.
    pub(crate) const UNKNOWN: PeerId = PeerId([0; 32]);

    pub fn from_public_key(key: [u8; 32]) -> PeerId {
        PeerId(key)
    }

    pub fn public_key(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn is_unknown(&self) -> bool {
        *self == PeerId::UNKNOWN
    }

    /// The `did:key` form, e.g. `did:key:z6Mk…`.
    pub fn to_did(&self) -> String {
        let mut bytes = Vec::with_capacity(34);
        bytes.extend_from_slice(&ED25519_MULTICODEC);
        bytes.extend_from_slice(&self.0);
        format!("{DID_KEY_PREFIX}{}", bs58::encode(bytes).into_string())
    }
}

impl FromStr for PeerId {
    type Err = InvalidDidKey;

    fn from_str(text: &str) -> Result<PeerId, InvalidDidKey> {
        let invalid = || InvalidDidKey(text.to_owned());
        // A DID URL fragment (`did:key:z…#z…`) names a key of the same DID.
        let did = text.split('#').next().unwrap_or(text);
        let encoded = did.strip_prefix(DID_KEY_PREFIX).ok_or_else(invalid)?;
        let bytes = bs58::decode(encoded).into_vec().map_err(|_| invalid())?;
        let key = bytes
            .strip_prefix(&ED25519_MULTICODEC[..])
            .ok_or_else(invalid)?;
        let key: [u8; 32] = key.try_into().map_err(|_| invalid())?;
        Ok(PeerId(key))
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_did())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The DID is long; its tail is enough to tell members apart in logs.
        let did = self.to_did();
        write!(f, "PeerId(…{})", &did[did.len() - 8..])
    }
}

/// A member as the transport knows it after the handshake: the key it proved it holds and
/// the socket address it speaks from (with one UDP socket per agent, also where it listens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub id: PeerId,
    pub addr: SocketAddr,
}

/// The identity SWIM (foca) gossips: who, where, and which start of that agent.
///
/// foca keys its member table by [`foca::Identity::addr`], the socket address, so that a
/// restarted agent replaces its previous incarnation instead of piling up. `bump` tells
/// the two apart: it starts from the wall-clock second the agent started, and foca asks
/// for `bump + 1` when the swarm has declared us down and we rejoin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberId {
    pub peer: PeerId,
    pub addr: SocketAddr,
    pub bump: u32,
}

impl foca::Identity for MemberId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<MemberId> {
        Some(MemberId {
            bump: self.bump.wrapping_add(1),
            ..*self
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &MemberId) -> bool {
        // Serial-number arithmetic (RFC 1982), so that the counter may wrap: the later
        // start wins.
        let ahead = self.bump.wrapping_sub(adversary.bump);
        ahead != 0 && ahead < u32::MAX / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    #[test]
    fn did_key_round_trips_with_and_without_fragment() {
        // The full W3C vectors are checked in `signal::tests` (they need the signing key).
        let did = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp";
        let peer: PeerId = did.parse().unwrap();
        assert_eq!(peer.to_did(), did);
        let with_fragment: PeerId =
            format!("{did}#z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp")
                .parse()
                .unwrap();
        assert_eq!(with_fragment, peer);
    }

    #[test]
    fn other_dids_and_keys_are_refused() {
        for text in [
            "did:web:example.com",
            "did:key:z6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc", // X25519
            "did:key:zzzz",
            "did:key:6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
            "",
        ] {
            assert!(text.parse::<PeerId>().is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn the_later_start_wins_the_address() {
        let peer = PeerId::from_public_key([7; 32]);
        let addr = "127.0.0.1:7300".parse().unwrap();
        let old = MemberId {
            peer,
            addr,
            bump: u32::MAX,
        };
        let new = old.renew().unwrap();
        assert_eq!(new.bump, 0);
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
        assert!(!old.win_addr_conflict(&old));
    }
}
