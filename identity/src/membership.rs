//! Swarm membership credentials, and the light verifier that `swarmd` links.
//!
//! A `SwarmMemberCredential` (docs/credentials.md) says that an agent, named by its
//! `did:key`, belongs to the swarm with a [`Role`]. identityd issues it as a VC-JWT
//! (`jwt_vc_json`, VC-JOSE-COSE: header `typ: vc+jwt`, `alg: EdDSA`, the credential is the
//! payload). This module checks one without `ssi` (no JSON-LD, no RDF): signature with
//! `jsonwebtoken` over ring, issuer trust, validity period at a given `now`, and the
//! revocation and suspension bits of the issuer's Bitstring Status Lists.
//!
//! It is sans-IO, like the rest of the agent's protocol logic: the caller fetches status
//! lists (`GET {url}` with `Accept: application/vc+jwt`), hands them to
//! [`StatusListCache::insert_jwt`], and asks [`StatusListCache::due`] which ones to refresh.
//! [`MembershipVerifier::verify`] never waits for the network; when it lacks a fresh list it
//! says which one ([`MembershipError::StatusUnavailable`]).
//!
//! The identityd service checks the same credentials with `ssi`; the conformance tests run
//! both against the same vectors.

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, SystemTime};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::did::{Did, DidError};

/// The credential type of a swarm membership.
pub const MEMBER_CREDENTIAL_TYPE: &str = "SwarmMemberCredential";
/// The JOSE `typ` of a VC-JOSE-COSE credential.
pub const VC_JWT_TYP: &str = "vc+jwt";
/// Entries per status list, as the Bitstring Status List spec's minimum (16 KiB).
pub const STATUS_LIST_ENTRIES: usize = 131_072;
/// A status list decompresses to at most this much; a larger one is refused (a gzip
/// bomb from a hostile list URL must not exhaust memory).
const MAX_STATUS_LIST_BYTES: u64 = 16 * 1024 * 1024;

/// The role an agent plays in the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Detects and reports; its signals count towards quorum.
    Sensor,
    /// A sensor that also enforces blocks.
    Sentinel,
    /// A person or tool allowed to issue signed decisions.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Sensor => "sensor",
            Role::Sentinel => "sentinel",
            Role::Operator => "operator",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> Result<Role, String> {
        match text {
            "sensor" => Ok(Role::Sensor),
            "sentinel" => Ok(Role::Sentinel),
            "operator" => Ok(Role::Operator),
            other => Err(format!(
                "unknown role \"{other}\" (expected sensor, sentinel or operator)"
            )),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON-LD context of the membership type, inline so that no URL needs to resolve.
pub fn member_context() -> Value {
    serde_json::json!({
        "@protected": true,
        "SwarmMemberCredential": "https://example.invalid/swarmguard/ns#SwarmMemberCredential",
        "role": "https://example.invalid/swarmguard/ns#role"
    })
}

/// The unsigned membership credential identityd signs (it adds `id`, `validFrom` and
/// `credentialStatus` as it does for every credential).
pub fn member_credential(issuer: &Did, agent: &Did, role: Role, valid_until: &str) -> Value {
    serde_json::json!({
        "@context": ["https://www.w3.org/ns/credentials/v2", member_context()],
        "type": ["VerifiableCredential", MEMBER_CREDENTIAL_TYPE],
        "issuer": issuer.as_str(),
        "validUntil": valid_until,
        "credentialSubject": { "id": agent.as_str(), "role": role.as_str() },
    })
}

/// What an agent signs with its key to renew its membership credential
/// (`POST /members/renew`): a context line, the RFC 3339 time of the request, and the
/// current credential. The context keeps the signature from meaning anything else.
pub fn renewal_message(created: &str, jwt: &str) -> String {
    format!("swarmguard-renew-v1\n{created}\n{jwt}")
}

/// A verified member of the swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The agent's `did:key`; its key signs the agent's signals.
    pub did: Did,
    pub role: Role,
    /// Who admitted it.
    pub issuer: Did,
    /// The credential's `id`, which revocation names.
    pub credential_id: Option<String>,
    /// When the credential stops being valid; the caller re-checks before then.
    pub valid_until: Option<SystemTime>,
}

/// Why a presented membership credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// Not a compact JWS, a bad header, or a payload that is not a credential.
    #[error("malformed membership credential: {0}")]
    Malformed(String),
    /// The header's `typ` is not `vc+jwt` or `alg` is not `EdDSA`.
    #[error("unsupported VC-JWT header: {0}")]
    Header(String),
    /// The issuer is not among the trusted issuers.
    #[error("issuer {0} is not trusted")]
    UntrustedIssuer(String),
    /// The signature does not verify with the issuer's key.
    #[error("bad signature")]
    Signature,
    /// The credential is not a `SwarmMemberCredential` of a did:key subject with a role.
    #[error("not a membership credential: {0}")]
    NotMembership(String),
    /// `validFrom` is in the future.
    #[error("not valid before {0}")]
    NotYetValid(String),
    /// `validUntil` has passed.
    #[error("expired at {0}")]
    Expired(String),
    /// The issuer revoked the credential.
    #[error("revoked")]
    Revoked,
    /// The issuer suspended the credential (it may be reinstated).
    #[error("suspended")]
    Suspended,
    /// The status list is not cached or is stale: fetch it and try again.
    #[error("status list {0} is not available")]
    StatusUnavailable(String),
    /// The status list credential itself is bad.
    #[error("status list {url}: {reason}")]
    StatusList { url: String, reason: String },
    /// A DID in the credential is unusable.
    #[error(transparent)]
    Did(#[from] DidError),
}

/// Checks membership credentials: which issuers to trust, and their status lists.
#[derive(Debug)]
pub struct MembershipVerifier {
    /// Issuer DID → its Ed25519 public key. A did:key issuer's key is its DID; a did:web
    /// issuer's key is configured next to it (the light verifier does not fetch DID
    /// documents).
    trusted: HashMap<Did, [u8; 32]>,
    /// Status lists, driven by the caller.
    pub cache: StatusListCache,
}

impl MembershipVerifier {
    pub fn new(cache: StatusListCache) -> MembershipVerifier {
        MembershipVerifier {
            trusted: HashMap::new(),
            cache,
        }
    }

    /// Trusts a did:key issuer (its key is in the DID).
    pub fn trust_did_key(&mut self, issuer: &Did) -> Result<(), DidError> {
        let key = issuer.ed25519_key()?;
        self.trusted.insert(issuer.clone(), key);
        Ok(())
    }

    /// Trusts an issuer whose key is known out of band (a did:web issuer).
    pub fn trust_issuer_key(&mut self, issuer: Did, public_key: [u8; 32]) {
        self.trusted.insert(issuer, public_key);
    }

    /// Verifies a compact VC-JWT membership credential at `now`.
    pub fn verify(&self, jwt: &str, now: SystemTime) -> Result<Member, MembershipError> {
        let (issuer, credential) = verify_vc_jwt(jwt, &self.trusted)?;
        let member = member_from_credential(&issuer, &credential)?;
        check_validity(&credential, now)?;
        // Look at every list before answering, so that one round of fetching what
        // `cache.due` then lists is enough.
        let mut unavailable = None;
        let mut suspended = false;
        for entry in status_entries(&credential)? {
            match self.cache.bit(&entry.list_url, entry.index, now) {
                Ok(false) => {}
                Ok(true) if entry.purpose == "revocation" => return Err(MembershipError::Revoked),
                Ok(true) if entry.purpose == "suspension" => suspended = true,
                // A purpose this verifier does not know (e.g. "message") does not refuse.
                Ok(true) => {}
                Err(err @ MembershipError::StatusUnavailable(_)) => {
                    unavailable.get_or_insert(err);
                }
                Err(err) => return Err(err),
            }
        }
        if let Some(err) = unavailable {
            return Err(err);
        }
        if suspended {
            return Err(MembershipError::Suspended);
        }
        Ok(member)
    }

    /// Issuer keys, for [`StatusListCache::insert_jwt`].
    pub fn trusted_keys(&self) -> &HashMap<Did, [u8; 32]> {
        &self.trusted
    }
}

/// One `BitstringStatusListEntry` of a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    pub purpose: String,
    /// The status list credential's URL (`statusListCredential`).
    pub list_url: String,
    pub index: usize,
}

/// Reads the `BitstringStatusListEntry` items of a credential's `credentialStatus`.
pub fn status_entries(credential: &Value) -> Result<Vec<StatusEntry>, MembershipError> {
    let entries = match credential.get("credentialStatus") {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(item) => vec![item],
    };
    let mut out = Vec::new();
    for entry in entries {
        if entry.get("type").and_then(Value::as_str) != Some("BitstringStatusListEntry") {
            continue;
        }
        let field = |name: &str| {
            entry.get(name).ok_or_else(|| {
                MembershipError::Malformed(format!("credentialStatus without {name}"))
            })
        };
        let purpose = field("statusPurpose")?
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let list_url = field("statusListCredential")?
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // The spec makes statusListIndex a string of digits; accept a number too.
        let index = match field("statusListIndex")? {
            Value::String(text) => text.parse::<usize>().ok(),
            Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
            _ => None,
        }
        .ok_or_else(|| MembershipError::Malformed("bad statusListIndex".into()))?;
        out.push(StatusEntry {
            purpose,
            list_url,
            index,
        });
    }
    Ok(out)
}

/// Verifies a compact VC-JWT (VC-JOSE-COSE) signed with EdDSA by one of `trusted`, and
/// returns the issuer and the credential (the payload).
pub fn verify_vc_jwt(
    jwt: &str,
    trusted: &HashMap<Did, [u8; 32]>,
) -> Result<(Did, Value), MembershipError> {
    let header = jsonwebtoken::decode_header(jwt)
        .map_err(|err| MembershipError::Malformed(format!("header: {err}")))?;
    if header.alg != jsonwebtoken::Algorithm::EdDSA {
        return Err(MembershipError::Header(format!("alg {:?}", header.alg)));
    }
    if header.typ.as_deref() != Some(VC_JWT_TYP) {
        return Err(MembershipError::Header(format!("typ {:?}", header.typ)));
    }
    // The issuer is named twice: by the key id and in the payload. Take the key from the
    // trusted set by the payload's issuer and require the kid to be that DID's, so a
    // trusted key cannot vouch for another issuer's name.
    let payload = unverified_payload(jwt)?;
    let issuer_text = match payload.get("issuer") {
        Some(Value::String(id)) => id.clone(),
        Some(Value::Object(obj)) => obj
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        _ => return Err(MembershipError::Malformed("no issuer".into())),
    };
    let issuer = Did::parse(&issuer_text)?;
    if let Some(kid) = &header.kid
        && kid.split('#').next() != Some(issuer.as_str())
    {
        return Err(MembershipError::Header(format!(
            "kid {kid} is not a key of {issuer}"
        )));
    }
    let key = trusted
        .get(&issuer)
        .ok_or_else(|| MembershipError::UntrustedIssuer(issuer.to_string()))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    // Validity is VCDM's validFrom/validUntil, checked against the caller's `now`.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let decoded = jsonwebtoken::decode::<Value>(
        jwt,
        &jsonwebtoken::DecodingKey::from_ed_der(key),
        &validation,
    )
    .map_err(|err| match err.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => MembershipError::Signature,
        _ => MembershipError::Malformed(err.to_string()),
    })?;
    Ok((issuer, decoded.claims))
}

fn unverified_payload(jwt: &str) -> Result<Value, MembershipError> {
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| MembershipError::Malformed("not a compact JWS".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| MembershipError::Malformed("payload is not base64url".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|err| MembershipError::Malformed(format!("payload: {err}")))
}

fn member_from_credential(issuer: &Did, credential: &Value) -> Result<Member, MembershipError> {
    let not = |why: &str| MembershipError::NotMembership(why.to_owned());
    let types = match credential.get("type") {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(one)) => vec![one.as_str()],
        _ => Vec::new(),
    };
    if !types.contains(&MEMBER_CREDENTIAL_TYPE) {
        return Err(not("type is not SwarmMemberCredential"));
    }
    let subject = credential
        .get("credentialSubject")
        .ok_or_else(|| not("no credentialSubject"))?;
    let did = subject
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| not("subject has no id"))?;
    let did = Did::parse(did)?;
    did.ed25519_key()?;
    let role = subject
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| not("subject has no role"))?
        .parse::<Role>()
        .map_err(MembershipError::NotMembership)?;
    let valid_until = match credential.get("validUntil").and_then(Value::as_str) {
        Some(text) => Some(parse_time(text)?),
        None => None,
    };
    Ok(Member {
        did,
        role,
        issuer: issuer.clone(),
        credential_id: credential
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        valid_until,
    })
}

fn check_validity(credential: &Value, now: SystemTime) -> Result<(), MembershipError> {
    if let Some(text) = credential.get("validFrom").and_then(Value::as_str)
        && now < parse_time(text)?
    {
        return Err(MembershipError::NotYetValid(text.to_owned()));
    }
    if let Some(text) = credential.get("validUntil").and_then(Value::as_str)
        && now >= parse_time(text)?
    {
        return Err(MembershipError::Expired(text.to_owned()));
    }
    Ok(())
}

/// Parses an XSD dateTimeStamp in the RFC 3339 form identityd writes.
fn parse_time(text: &str) -> Result<SystemTime, MembershipError> {
    humantime::parse_rfc3339(text)
        .map_err(|err| MembershipError::Malformed(format!("date \"{text}\": {err}")))
}

/// Status lists known to a verifier: decoded bits with the time they were fetched.
///
/// Bounded by `max_lists` (an issuer allocates a new list per 131,072 credentials, so a
/// swarm needs few); the least recently fetched list is dropped to make room.
#[derive(Debug)]
pub struct StatusListCache {
    lists: HashMap<String, CachedList>,
    ttl: Duration,
    max_lists: usize,
    /// Lists a verification asked for that are not cached, so the caller fetches them.
    wanted: std::sync::Mutex<Vec<String>>,
}

#[derive(Debug)]
struct CachedList {
    bits: Vec<u8>,
    fetched_at: SystemTime,
}

impl StatusListCache {
    pub fn new(ttl: Duration, max_lists: usize) -> StatusListCache {
        StatusListCache {
            lists: HashMap::new(),
            ttl,
            max_lists: max_lists.max(1),
            wanted: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// How many lists are cached (for a gauge).
    pub fn len(&self) -> usize {
        self.lists.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// Verifies a status list credential fetched as a VC-JWT from `url`, signed by one of
    /// `trusted`, and caches its bits as of `now`.
    pub fn insert_jwt(
        &mut self,
        url: &str,
        jwt: &str,
        trusted: &HashMap<Did, [u8; 32]>,
        now: SystemTime,
    ) -> Result<(), MembershipError> {
        let (_, credential) = verify_vc_jwt(jwt, trusted)?;
        let bad = |reason: &str| MembershipError::StatusList {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        check_validity(&credential, now).map_err(|err| bad(&err.to_string()))?;
        let encoded = credential
            .pointer("/credentialSubject/encodedList")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no credentialSubject.encodedList"))?;
        let bits = decode_encoded_list(encoded).map_err(|reason| bad(&reason))?;
        self.insert_bits(url, bits, now);
        Ok(())
    }

    /// Caches already-verified bits (identityd's own lists, or tests).
    pub fn insert_bits(&mut self, url: &str, bits: Vec<u8>, now: SystemTime) {
        if !self.lists.contains_key(url)
            && self.lists.len() >= self.max_lists
            && let Some(oldest) = self
                .lists
                .iter()
                .min_by_key(|(_, list)| list.fetched_at)
                .map(|(url, _)| url.clone())
        {
            self.lists.remove(&oldest);
        }
        self.lists.insert(
            url.to_owned(),
            CachedList {
                bits,
                fetched_at: now,
            },
        );
        if let Ok(mut wanted) = self.wanted.lock() {
            wanted.retain(|w| w != url);
        }
    }

    /// The lists to fetch now: cached ones older than the TTL, and ones a verification
    /// asked for.
    pub fn due(&self, now: SystemTime) -> Vec<String> {
        let mut due: Vec<String> = self
            .lists
            .iter()
            .filter(|(_, list)| self.is_stale(list, now))
            .map(|(url, _)| url.clone())
            .collect();
        if let Ok(wanted) = self.wanted.lock() {
            for url in wanted.iter() {
                if !due.contains(url) {
                    due.push(url.clone());
                }
            }
        }
        due
    }

    fn is_stale(&self, list: &CachedList, now: SystemTime) -> bool {
        now.duration_since(list.fetched_at).unwrap_or_default() >= self.ttl
    }

    /// The status bit at `index` of the list at `url`.
    fn bit(&self, url: &str, index: usize, now: SystemTime) -> Result<bool, MembershipError> {
        let list = match self.lists.get(url) {
            Some(list) if !self.is_stale(list, now) => list,
            _ => {
                if let Ok(mut wanted) = self.wanted.lock() {
                    // Bounded like the lists themselves.
                    if !wanted.iter().any(|w| w == url) && wanted.len() < self.max_lists {
                        wanted.push(url.to_owned());
                    }
                }
                return Err(MembershipError::StatusUnavailable(url.to_owned()));
            }
        };
        bit_at(&list.bits, index).ok_or_else(|| MembershipError::StatusList {
            url: url.to_owned(),
            reason: format!("index {index} is beyond the list"),
        })
    }
}

/// Bit `index` of a bitstring, index 0 being the most significant bit of the first byte
/// (Bitstring Status List §3.1, "the left-most bit").
pub fn bit_at(bits: &[u8], index: usize) -> Option<bool> {
    let byte = bits.get(index / 8)?;
    Some(byte & (0x80 >> (index % 8)) != 0)
}

/// Decodes `encodedList`: multibase base64url (no padding) of a GZIP-compressed bitstring.
pub fn decode_encoded_list(encoded: &str) -> Result<Vec<u8>, String> {
    let (base, compressed) =
        multibase::decode(encoded).map_err(|err| format!("encodedList: {err}"))?;
    if base != multibase::Base::Base64Url {
        return Err("encodedList is not multibase base64url".into());
    }
    let mut bits = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .take(MAX_STATUS_LIST_BYTES)
        .read_to_end(&mut bits)
        .map_err(|err| format!("encodedList is not gzip: {err}"))?;
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_count_from_the_left() {
        let bits = [0b1000_0001, 0b0100_0000];
        assert_eq!(bit_at(&bits, 0), Some(true));
        assert_eq!(bit_at(&bits, 1), Some(false));
        assert_eq!(bit_at(&bits, 7), Some(true));
        assert_eq!(bit_at(&bits, 9), Some(true));
        assert_eq!(bit_at(&bits, 16), None);
    }

    #[test]
    fn the_spec_example_list_decodes() {
        // From the Bitstring Status List spec's example: 16 KiB of zeros.
        let bits = decode_encoded_list(
            "uH4sIAAAAAAAAA-3BMQEAAADCoPVPbQwfoAAAAAAAAAAAAAAAAAAAAIC3AYbSVKsAQAAA",
        )
        .unwrap();
        assert_eq!(bits.len(), 16 * 1024);
        assert!(bits.iter().all(|b| *b == 0));
    }

    #[test]
    fn cache_is_bounded_and_reports_stale_lists() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut cache = StatusListCache::new(Duration::from_secs(60), 2);
        cache.insert_bits("a", vec![0; 4], t0);
        cache.insert_bits("b", vec![0; 4], t0 + Duration::from_secs(1));
        cache.insert_bits("c", vec![0; 4], t0 + Duration::from_secs(2));
        assert_eq!(cache.len(), 2);
        assert!(matches!(
            cache.bit("a", 0, t0),
            Err(MembershipError::StatusUnavailable(_))
        ));
        assert_eq!(cache.due(t0 + Duration::from_secs(2)), vec!["a".to_owned()]);
        let later = t0 + Duration::from_secs(61);
        let mut due = cache.due(later);
        due.sort();
        assert_eq!(due, vec!["a", "b"]);
    }

    #[test]
    fn roles_parse_and_print() {
        for role in [Role::Sensor, Role::Sentinel, Role::Operator] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("admin".parse::<Role>().is_err());
    }
}
