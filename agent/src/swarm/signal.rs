//! [`Signal`]: what an agent tells the swarm about an attacker, signed with its Ed25519 key
//! (ring), and its exact binary form.
//!
//! The encoding is hand-specified rather than left to a serde format, because the bytes that
//! are signed must stay the same whatever library version or language produces them;
//! `docs/protocol.md` ("Signal") is the specification and a test checks an example byte for
//! byte. The encoding is canonical: one signal has one encoding, and the decoder refuses
//! anything else (a non-normalised network, an upper-case domain, trailing bytes), so that
//! "the same signal" means "the same bytes".

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use ring::signature::{self, Ed25519KeyPair, KeyPair};

use super::peer::PeerId;
use crate::detect::Severity;
use crate::subject::Subject;

/// The format version this code writes and reads.
pub const SIGNAL_VERSION: u8 = 1;
/// Prefixed to the encoded body before signing, so that a signature made for a signal can
/// never be taken for one made for something else with the same key (the TLS certificate,
/// a credential presentation).
pub const SIGNING_CONTEXT: &[u8] = b"swarmguard-signal-v1";
/// The longest encoding a signal can have (a 253-byte domain and two 64-byte reason
/// fields come to 516 bytes); receivers refuse larger ones before parsing.
pub const MAX_SIGNAL_LEN: usize = 1024;
/// The longest `reason.rule` and `reason.class`, in bytes.
pub const MAX_REASON_LEN: usize = 64;
const SIGNATURE_LEN: usize = 64;

/// An agent's Ed25519 signing key, and the [`PeerId`] it makes.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    id: PeerId,
}

/// Why key material was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Ed25519 key: {0}")]
pub struct KeyError(String);

impl SigningKey {
    /// The key whose RFC 8032 private seed is `seed`. Simulations derive seeds from their
    /// RNG so that runs repeat exactly.
    pub fn from_seed(seed: &[u8; 32]) -> Result<SigningKey, KeyError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|error| KeyError(error.to_string()))?;
        Ok(SigningKey::from_pair(pair))
    }

    /// A key stored as PKCS#8 v2 (what [`SigningKey::generate`] returns to be saved).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, KeyError> {
        let pair =
            Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|error| KeyError(error.to_string()))?;
        Ok(SigningKey::from_pair(pair))
    }

    /// A fresh random key, with its PKCS#8 document for the caller to store (mode 0600).
    pub fn generate() -> Result<(SigningKey, Vec<u8>), KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| KeyError("the system random number generator failed".to_owned()))?;
        let key = SigningKey::from_pkcs8(pkcs8.as_ref())?;
        Ok((key, pkcs8.as_ref().to_vec()))
    }

    fn from_pair(pair: Ed25519KeyPair) -> SigningKey {
        let mut public = [0; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        SigningKey {
            pair,
            id: PeerId::from_public_key(public),
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.id
    }

    fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut out = [0; SIGNATURE_LEN];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private half.
        f.debug_tuple("SigningKey").field(&self.id).finish()
    }
}

/// Why the signal fired: the rule id (`1:2002383`, a scenario name) and its class
/// (`attempted-recon`, or empty when the rule has none).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reason {
    pub rule: String,
    pub class: String,
}

/// What the origin says; everything of a signal but who says it and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalBody {
    pub subject: Subject,
    pub reason: Reason,
    pub severity: Severity,
    /// When the origin saw the attack. Carried with millisecond precision.
    pub observed_at: SystemTime,
    /// When receivers must forget the signal.
    pub expires_at: SystemTime,
}

/// A signed signal, unique by `(origin, seq)`. It keeps its exact encoding, so that relaying
/// and persisting it never re-encode (and so never change) what the origin signed.
#[derive(Clone, PartialEq, Eq)]
pub struct Signal {
    origin: PeerId,
    seq: u64,
    body: SignalBody,
    signature: [u8; SIGNATURE_LEN],
    bytes: Arc<[u8]>,
}

/// Why bytes are not a signal, or a body cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// Larger than [`MAX_SIGNAL_LEN`].
    #[error("signal of {0} bytes is larger than {MAX_SIGNAL_LEN}")]
    TooLarge(usize),
    /// The bytes end before the signal does.
    #[error("signal is truncated")]
    Truncated,
    /// Bytes follow the signature.
    #[error("signal has trailing bytes")]
    Trailing,
    /// A format version this code does not read.
    #[error("unsupported signal version {0}")]
    Version(u8),
    /// A severity code outside 0..=4.
    #[error("unknown severity code {0}")]
    Severity(u8),
    /// An unknown subject type, an invalid or non-normalised subject.
    #[error("invalid or non-canonical subject")]
    Subject,
    /// An empty or over-long rule id, an over-long class, or text that is not UTF-8.
    #[error("invalid reason")]
    Reason,
    /// A time before 1970 or past what milliseconds in a u64 can say.
    #[error("time out of range")]
    Time,
}

impl Signal {
    /// Signs `body` as signal number `seq` of `key`'s owner. Times are truncated to
    /// milliseconds first, since that is what the wire carries.
    pub fn sign(key: &SigningKey, seq: u64, body: SignalBody) -> Result<Signal, SignalError> {
        let origin = key.peer_id();
        let mut bytes = encode_body(origin, seq, &body)?;
        let mut message = SIGNING_CONTEXT.to_vec();
        message.extend_from_slice(&bytes);
        let signature = key.sign(&message);
        bytes.extend_from_slice(&signature);
        // Re-read what was written so the value matches its encoding exactly (times).
        Signal::decode(&bytes)
    }

    /// Parses a signal without checking its signature (see [`Signal::verify`]): the swarm
    /// runs cheaper checks (membership, expiry, duplicates) first.
    pub fn decode(bytes: &[u8]) -> Result<Signal, SignalError> {
        if bytes.len() > MAX_SIGNAL_LEN {
            return Err(SignalError::TooLarge(bytes.len()));
        }
        let mut reader = Reader::new(bytes);
        let version = reader.u8()?;
        if version != SIGNAL_VERSION {
            return Err(SignalError::Version(version));
        }
        let origin = PeerId::from_public_key(reader.array()?);
        let seq = reader.u64()?;
        let observed_at = from_millis(reader.u64()?)?;
        let expires_at = from_millis(reader.u64()?)?;
        let severity = severity_from_code(reader.u8()?)?;
        let subject = decode_subject(&mut reader)?;
        let rule = reader.text()?;
        let class = reader.text()?;
        if rule.is_empty() || rule.len() > MAX_REASON_LEN || class.len() > MAX_REASON_LEN {
            return Err(SignalError::Reason);
        }
        let signature = reader.array()?;
        if !reader.rest().is_empty() {
            return Err(SignalError::Trailing);
        }
        Ok(Signal {
            origin,
            seq,
            body: SignalBody {
                subject,
                reason: Reason { rule, class },
                severity,
                observed_at,
                expires_at,
            },
            signature,
            bytes: bytes.into(),
        })
    }

    /// Whether the signature is the origin's over [`Signal::signed_bytes`].
    pub fn verify(&self) -> bool {
        let key = signature::UnparsedPublicKey::new(&signature::ED25519, self.origin.public_key());
        key.verify(&self.signed_bytes(), &self.signature).is_ok()
    }

    /// Exactly what the origin signed: [`SIGNING_CONTEXT`] followed by the encoding
    /// without its final 64-byte signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let body = &self.bytes[..self.bytes.len() - SIGNATURE_LEN];
        let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + body.len());
        message.extend_from_slice(SIGNING_CONTEXT);
        message.extend_from_slice(body);
        message
    }

    /// The encoding, signature included: what goes on the wire and into the store.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn origin(&self) -> PeerId {
        self.origin
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn id(&self) -> SignalId {
        SignalId {
            origin: self.origin,
            seq: self.seq,
        }
    }

    pub fn body(&self) -> &SignalBody {
        &self.body
    }

    pub fn subject(&self) -> &Subject {
        &self.body.subject
    }

    pub fn reason(&self) -> &Reason {
        &self.body.reason
    }

    pub fn severity(&self) -> Severity {
        self.body.severity
    }

    pub fn observed_at(&self) -> SystemTime {
        self.body.observed_at
    }

    pub fn expires_at(&self) -> SystemTime {
        self.body.expires_at
    }

    /// Whether the signal still counts at `now`.
    pub fn is_live(&self, now: SystemTime) -> bool {
        self.body.expires_at > now
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal")
            .field("origin", &self.origin)
            .field("seq", &self.seq)
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

/// What makes a signal unique: its origin and the origin's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SignalId {
    pub origin: PeerId,
    pub seq: u64,
}

impl SignalId {
    /// A 64-bit digest of the id: the first 8 bytes of SHA-256(origin key ‖ seq as u64 BE),
    /// big-endian. Anti-entropy names signals by it (8 bytes instead of 40).
    pub fn hash64(&self) -> u64 {
        let mut input = [0; 40];
        input[..32].copy_from_slice(self.origin.public_key());
        input[32..].copy_from_slice(&self.seq.to_be_bytes());
        let digest = ring::digest::digest(&ring::digest::SHA256, &input);
        let mut first = [0; 8];
        first.copy_from_slice(&digest.as_ref()[..8]);
        u64::from_be_bytes(first)
    }
}

fn encode_body(origin: PeerId, seq: u64, body: &SignalBody) -> Result<Vec<u8>, SignalError> {
    let reason = &body.reason;
    if reason.rule.is_empty()
        || reason.rule.len() > MAX_REASON_LEN
        || reason.class.len() > MAX_REASON_LEN
    {
        return Err(SignalError::Reason);
    }
    let mut out = Vec::with_capacity(128);
    out.push(SIGNAL_VERSION);
    out.extend_from_slice(origin.public_key());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&to_millis(body.observed_at)?.to_be_bytes());
    out.extend_from_slice(&to_millis(body.expires_at)?.to_be_bytes());
    out.push(body.severity as u8);
    encode_subject(&body.subject, &mut out);
    for text in [&reason.rule, &reason.class] {
        // Both lengths are at most MAX_REASON_LEN (64), checked above.
        out.push(text.len() as u8);
        out.extend_from_slice(text.as_bytes());
    }
    Ok(out)
}

const SUBJECT_IPV4: u8 = 1;
const SUBJECT_IPV6: u8 = 2;
const SUBJECT_NET4: u8 = 3;
const SUBJECT_NET6: u8 = 4;
const SUBJECT_DOMAIN: u8 = 5;

fn encode_subject(subject: &Subject, out: &mut Vec<u8>) {
    match subject {
        Subject::Ip(IpAddr::V4(ip)) => {
            out.push(SUBJECT_IPV4);
            out.extend_from_slice(&ip.octets());
        }
        Subject::Ip(IpAddr::V6(ip)) => {
            out.push(SUBJECT_IPV6);
            out.extend_from_slice(&ip.octets());
        }
        Subject::Net(IpNet::V4(net)) => {
            out.push(SUBJECT_NET4);
            out.extend_from_slice(&net.addr().octets());
            out.push(net.prefix_len());
        }
        Subject::Net(IpNet::V6(net)) => {
            out.push(SUBJECT_NET6);
            out.extend_from_slice(&net.addr().octets());
            out.push(net.prefix_len());
        }
        Subject::Domain(domain) => {
            out.push(SUBJECT_DOMAIN);
            // `Subject` only holds domains of at most 253 bytes.
            out.push(domain.as_str().len() as u8);
            out.extend_from_slice(domain.as_str().as_bytes());
        }
    }
}

fn decode_subject(reader: &mut Reader<'_>) -> Result<Subject, SignalError> {
    let kind = reader.u8()?;
    let subject = match kind {
        SUBJECT_IPV4 => Subject::Ip(IpAddr::V4(Ipv4Addr::from(reader.array::<4>()?))),
        SUBJECT_IPV6 => Subject::Ip(IpAddr::V6(Ipv6Addr::from(reader.array::<16>()?))),
        SUBJECT_NET4 | SUBJECT_NET6 => {
            let addr = if kind == SUBJECT_NET4 {
                IpAddr::V4(Ipv4Addr::from(reader.array::<4>()?))
            } else {
                IpAddr::V6(Ipv6Addr::from(reader.array::<16>()?))
            };
            let prefix = reader.u8()?;
            let net = IpNet::new(addr, prefix).map_err(|_| SignalError::Subject)?;
            // Canonical only: host bits clear, and a full-length prefix is an address.
            if net.trunc() != net || prefix == net.max_prefix_len() {
                return Err(SignalError::Subject);
            }
            Subject::Net(net)
        }
        SUBJECT_DOMAIN => {
            let text = reader.text()?;
            let subject: Subject = text.parse().map_err(|_| SignalError::Subject)?;
            if !matches!(&subject, Subject::Domain(d) if d.as_str() == text) {
                return Err(SignalError::Subject);
            }
            subject
        }
        _ => return Err(SignalError::Subject),
    };
    Ok(subject)
}

fn severity_from_code(code: u8) -> Result<Severity, SignalError> {
    Ok(match code {
        0 => Severity::Info,
        1 => Severity::Low,
        2 => Severity::Medium,
        3 => Severity::High,
        4 => Severity::Critical,
        _ => return Err(SignalError::Severity(code)),
    })
}

/// Milliseconds since the Unix epoch, the wire's time unit.
pub(crate) fn to_millis(time: SystemTime) -> Result<u64, SignalError> {
    let since = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| SignalError::Time)?;
    u64::try_from(since.as_millis()).map_err(|_| SignalError::Time)
}

pub(crate) fn from_millis(millis: u64) -> Result<SystemTime, SignalError> {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(millis))
        .ok_or(SignalError::Time)
}

/// A cursor over untrusted bytes: every read is bounds-checked and fails with
/// [`SignalError::Truncated`] instead of panicking.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], SignalError> {
        if self.bytes.len() < len {
            return Err(SignalError::Truncated);
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], SignalError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, SignalError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, SignalError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, SignalError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, SignalError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A u8 length followed by that many bytes of UTF-8.
    fn text(&mut self) -> Result<String, SignalError> {
        let len = usize::from(self.u8()?);
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| SignalError::Reason)
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_seed(&[byte; 32]).unwrap()
    }

    fn body(subject: &str) -> SignalBody {
        SignalBody {
            subject: subject.parse().unwrap(),
            reason: Reason {
                rule: "1:2002383".to_owned(),
                class: "attempted-recon".to_owned(),
            },
            severity: Severity::High,
            observed_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            expires_at: UNIX_EPOCH + Duration::from_millis(1_700_000_600_123),
        }
    }

    fn conformance_dir() -> std::path::PathBuf {
        let beside = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/conformance");
        let beside = std::path::PathBuf::from(beside);
        if beside.exists() {
            beside
        } else {
            "/work/shared/conformance".into()
        }
    }

    #[test]
    fn signals_round_trip_and_verify_for_every_subject_kind() {
        let key = key(1);
        for subject in [
            "192.0.2.7",
            "2001:db8::1",
            "198.51.100.0/24",
            "2001:db8::/32",
            "evil.example",
        ] {
            let signal = Signal::sign(&key, 42, body(subject)).unwrap();
            assert!(signal.verify(), "{subject}");
            assert_eq!(Signal::decode(signal.as_bytes()).unwrap(), signal);
            assert_eq!(signal.body(), &body(subject));
            assert_eq!(signal.origin(), key.peer_id());
        }
    }

    #[test]
    fn the_encoding_is_the_documented_one() {
        // docs/protocol.md, "Signal", gives this example byte for byte.
        let signal = Signal::sign(&key(1), 7, body("192.0.2.7")).unwrap();
        let bytes = signal.as_bytes();
        let mut expected = vec![1];
        expected.extend_from_slice(key(1).peer_id().public_key());
        expected.extend_from_slice(&7u64.to_be_bytes());
        expected.extend_from_slice(&1_700_000_000_123u64.to_be_bytes());
        expected.extend_from_slice(&1_700_000_600_123u64.to_be_bytes());
        expected.extend_from_slice(&[3, 1, 192, 0, 2, 7, 9]);
        expected.extend_from_slice(b"1:2002383");
        expected.push(15);
        expected.extend_from_slice(b"attempted-recon");
        assert_eq!(&bytes[..bytes.len() - 64], &expected[..]);
        assert_eq!(bytes.len(), expected.len() + 64);
        let mut signed = b"swarmguard-signal-v1".to_vec();
        signed.extend_from_slice(&expected);
        assert_eq!(signal.signed_bytes(), signed);
    }

    #[test]
    fn any_changed_byte_breaks_the_signature_or_the_parse() {
        let signal = Signal::sign(&key(1), 7, body("evil.example")).unwrap();
        for index in 0..signal.as_bytes().len() {
            let mut bytes = signal.as_bytes().to_vec();
            bytes[index] ^= 0x01;
            if let Ok(changed) = Signal::decode(&bytes) {
                assert!(!changed.verify(), "flipping byte {index} still verifies");
            }
        }
    }

    #[test]
    fn non_canonical_and_truncated_encodings_are_refused() {
        let signal = Signal::sign(&key(1), 7, body("198.51.100.0/24")).unwrap();
        let bytes = signal.as_bytes();
        for len in 0..bytes.len() {
            assert!(Signal::decode(&bytes[..len]).is_err(), "prefix of {len}");
        }
        let mut trailing = bytes.to_vec();
        trailing.push(0);
        assert_eq!(Signal::decode(&trailing), Err(SignalError::Trailing));
        // Host bits set in the network (offset 59 is the subject's first address byte).
        let mut host_bits = bytes.to_vec();
        host_bits[59 + 3] = 1;
        assert_eq!(Signal::decode(&host_bits), Err(SignalError::Subject));
        let mut version = bytes.to_vec();
        version[0] = 2;
        assert_eq!(Signal::decode(&version), Err(SignalError::Version(2)));
        let big = vec![1; MAX_SIGNAL_LEN + 1];
        assert_eq!(
            Signal::decode(&big),
            Err(SignalError::TooLarge(MAX_SIGNAL_LEN + 1))
        );
        let mut upper = Signal::sign(&key(1), 8, body("evil.example"))
            .unwrap()
            .as_bytes()
            .to_vec();
        upper[60] = b'E';
        assert_eq!(Signal::decode(&upper), Err(SignalError::Subject));
    }

    #[test]
    fn over_long_reasons_cannot_be_signed() {
        let mut long = body("192.0.2.7");
        long.reason.rule = "x".repeat(MAX_REASON_LEN + 1);
        assert_eq!(
            Signal::sign(&key(1), 1, long).err(),
            Some(SignalError::Reason)
        );
    }

    #[test]
    fn did_key_vectors_from_the_w3c_suite() {
        let path = conformance_dir().join("did/did-method-key/ed25519-x25519.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let vectors: serde_json::Value = serde_json::from_str(&text).unwrap();
        let vectors = vectors.as_object().unwrap();
        assert!(!vectors.is_empty());
        for (did, vector) in vectors {
            let seed = vector["seed"].as_str().unwrap();
            let seed: Vec<u8> = (0..seed.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&seed[i..i + 2], 16).unwrap())
                .collect();
            let key = SigningKey::from_seed(&seed.try_into().unwrap()).unwrap();
            assert_eq!(&key.peer_id().to_did(), did);
            // One vector gives the key as a JWK instead; its DID is checked all the same.
            if let Some(public) = vector["verificationKeyPair"]["publicKeyBase58"].as_str() {
                assert_eq!(
                    key.peer_id().public_key().to_vec(),
                    bs58::decode(public).into_vec().unwrap()
                );
            }
            assert_eq!(did.parse::<PeerId>().unwrap(), key.peer_id());
        }
    }

    #[test]
    fn ed25519_verification_agrees_with_wycheproof() {
        let path = conformance_dir().join("did/wycheproof/ed25519_test.json");
        let vectors: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let hex = |text: &str| -> Vec<u8> {
            (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
                .collect()
        };
        let mut checked = 0;
        for group in vectors["testGroups"].as_array().unwrap() {
            let public = hex(group["publicKey"]["pk"].as_str().unwrap());
            for case in group["tests"].as_array().unwrap() {
                let key = signature::UnparsedPublicKey::new(&signature::ED25519, &public);
                let ok = key
                    .verify(
                        &hex(case["msg"].as_str().unwrap()),
                        &hex(case["sig"].as_str().unwrap()),
                    )
                    .is_ok();
                assert_eq!(
                    ok,
                    case["result"] == "valid",
                    "tcId {}",
                    case["tcId"].as_u64().unwrap()
                );
                checked += 1;
            }
        }
        assert!(checked > 100, "{checked}");
    }
}
