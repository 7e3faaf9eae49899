//! DIDs as a type, and the `did:key` Ed25519 encoding that agents and the issuer use.
//!
//! This module is part of the light library (no `ssi`): `swarmd` decodes peers' `did:key`
//! identifiers with it. Multibase and the multicodec varint come from the `multibase` and
//! `unsigned-varint` crates; the only thing written here is the choice of codec
//! (`ed25519-pub`, 0xed) and the length check, which the did:key specification fixes.

use std::fmt;
use std::str::FromStr;

/// The multicodec code of an Ed25519 public key (`ed25519-pub`).
const ED25519_PUB_CODEC: u64 = 0xed;
/// The multicodec code of an Ed25519 private key (`ed25519-priv`), used by the key
/// format of the W3C test vectors (`privateKeyMultibase`).
const ED25519_PRIV_CODEC: u64 = 0x1300;

/// A syntactically valid DID (`did:METHOD:ID`), without fragment or query.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Did(String);

/// Why a string is not a DID, or not a did:key this code can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DidError {
    /// Not of the form `did:method:method-specific-id`.
    #[error("not a DID: {0:?}")]
    Syntax(String),
    /// A DID, but not a `did:key`.
    #[error("not a did:key: {0}")]
    NotDidKey(String),
    /// The method-specific id is not base58btc multibase.
    #[error("did:key {0}: not base58btc multibase")]
    Multibase(String),
    /// The multicodec prefix names another key type.
    #[error("did:key {did}: multicodec 0x{codec:x} is not an Ed25519 public key")]
    NotEd25519 { did: String, codec: u64 },
    /// An Ed25519 key must be 32 bytes.
    #[error("did:key {did}: {len} key bytes, expected 32")]
    KeyLength { did: String, len: usize },
}

impl Did {
    /// Checks the DID syntax of DID Core §3.1: `did:` + method (lowercase letters and
    /// digits) + `:` + a non-empty method-specific id made of idchars and `:`.
    pub fn parse(text: &str) -> Result<Did, DidError> {
        let syntax = || DidError::Syntax(text.to_owned());
        let rest = text.strip_prefix("did:").ok_or_else(syntax)?;
        let (method, id) = rest.split_once(':').ok_or_else(syntax)?;
        let method_ok = !method.is_empty()
            && method
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let id_ok = !id.is_empty()
            && !id.ends_with(':')
            && id.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'%')
            });
        if method_ok && id_ok {
            Ok(Did(text.to_owned()))
        } else {
            Err(syntax())
        }
    }

    /// The did:key of an Ed25519 public key.
    pub fn from_ed25519(public_key: &[u8; 32]) -> Did {
        let mut bytes = Vec::with_capacity(34);
        let mut buf = unsigned_varint::encode::u64_buffer();
        bytes.extend_from_slice(unsigned_varint::encode::u64(ED25519_PUB_CODEC, &mut buf));
        bytes.extend_from_slice(public_key);
        Did(format!(
            "did:key:{}",
            multibase::encode(multibase::Base::Base58Btc, bytes)
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The method name (`key`, `web`, ...).
    pub fn method(&self) -> &str {
        self.0[4..].split(':').next().unwrap_or_default()
    }

    /// The part after `did:METHOD:`.
    pub fn method_specific_id(&self) -> &str {
        self.0[4..]
            .split_once(':')
            .map(|(_, id)| id)
            .unwrap_or_default()
    }

    /// The Ed25519 public key a `did:key` encodes.
    pub fn ed25519_key(&self) -> Result<[u8; 32], DidError> {
        if self.method() != "key" {
            return Err(DidError::NotDidKey(self.0.clone()));
        }
        decode_multikey(self.method_specific_id(), ED25519_PUB_CODEC)
            .map_err(|err| err.with_did(&self.0))
    }

    /// Checks that a `did:key` decodes: base58btc multibase, a multicodec prefix naming a
    /// public key type, and the length that key type has.
    pub fn check_did_key(&self) -> Result<(), DidError> {
        if self.method() != "key" {
            return Err(DidError::NotDidKey(self.0.clone()));
        }
        let bad = || DidError::Multibase(self.0.clone());
        let (base, bytes) = multibase::decode(self.method_specific_id()).map_err(|_| bad())?;
        if base != multibase::Base::Base58Btc {
            return Err(bad());
        }
        let (codec, key) = unsigned_varint::decode::u64(&bytes).map_err(|_| bad())?;
        // (codec, key length) of the did:key key types; RSA keys vary in length.
        let expected = match codec {
            ED25519_PUB_CODEC | 0xec => Some(32), // ed25519-pub, x25519-pub
            0xe7 | 0x1200 => Some(33),            // secp256k1-pub, p256-pub (compressed)
            0x1201 => Some(49),                   // p384-pub (compressed)
            0xeb => Some(96),                     // bls12_381-g2-pub
            0x1205 => None,                       // rsa-pub
            _ => {
                return Err(DidError::NotEd25519 {
                    did: self.0.clone(),
                    codec,
                });
            }
        };
        match expected {
            Some(len) if key.len() != len => Err(DidError::KeyLength {
                did: self.0.clone(),
                len: key.len(),
            }),
            _ => Ok(()),
        }
    }

    /// The verification method id of a did:key: `did:key:z…#z…`.
    pub fn key_id(&self) -> String {
        format!("{}#{}", self.0, self.method_specific_id())
    }
}

/// Decodes a `privateKeyMultibase` (`z` + base58btc of `ed25519-priv` + 32 bytes), the
/// format of the W3C vc-di-eddsa test vectors' key pair.
pub fn decode_ed25519_private_multibase(text: &str) -> Result<[u8; 32], DidError> {
    decode_multikey(text, ED25519_PRIV_CODEC).map_err(|err| err.with_did(text))
}

fn decode_multikey(text: &str, expected_codec: u64) -> Result<[u8; 32], DidError> {
    let (base, bytes) = multibase::decode(text).map_err(|_| DidError::Multibase(String::new()))?;
    if base != multibase::Base::Base58Btc {
        return Err(DidError::Multibase(String::new()));
    }
    let (codec, key) =
        unsigned_varint::decode::u64(&bytes).map_err(|_| DidError::Multibase(String::new()))?;
    if codec != expected_codec {
        return Err(DidError::NotEd25519 {
            did: String::new(),
            codec,
        });
    }
    key.try_into().map_err(|_| DidError::KeyLength {
        did: String::new(),
        len: key.len(),
    })
}

impl DidError {
    fn with_did(self, did: &str) -> DidError {
        let did = did.to_owned();
        match self {
            DidError::Multibase(_) => DidError::Multibase(did),
            DidError::NotEd25519 { codec, .. } => DidError::NotEd25519 { did, codec },
            DidError::KeyLength { len, .. } => DidError::KeyLength { did, len },
            other => other,
        }
    }
}

impl fmt::Display for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Did {
    type Err = DidError;
    fn from_str(text: &str) -> Result<Did, DidError> {
        Did::parse(text)
    }
}

impl AsRef<str> for Did {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_key_round_trips_ed25519_bytes() {
        let key = [7u8; 32];
        let did = Did::from_ed25519(&key);
        assert!(did.as_str().starts_with("did:key:z6Mk"), "{did}");
        assert_eq!(did.ed25519_key().unwrap(), key);
        assert_eq!(did.key_id(), format!("{did}#{}", did.method_specific_id()));
    }

    #[test]
    fn syntax_is_checked() {
        for bad in [
            "",
            "did:",
            "did:key",
            "did::x",
            "did:KEY:x",
            "did:key:",
            "x:key:y",
            "did:web:a b",
        ] {
            assert!(Did::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let did = Did::parse("did:web:id.example.gov:agency").unwrap();
        assert_eq!(did.method(), "web");
        assert_eq!(did.method_specific_id(), "id.example.gov:agency");
    }

    #[test]
    fn other_key_types_are_refused() {
        // A P-256 did:key (multicodec 0x1200) from the did:key test vectors.
        let did = Did::parse("did:key:zDnaerDaTF5BXEavCrfRZEk316dpbLsfPDZ3WJ5hRTPFU2169").unwrap();
        assert!(matches!(
            did.ed25519_key(),
            Err(DidError::NotEd25519 { codec: 0x1200, .. })
        ));
        let web = Did::parse("did:web:example.com").unwrap();
        assert!(matches!(web.ed25519_key(), Err(DidError::NotDidKey(_))));
    }
}
