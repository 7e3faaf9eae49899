//! Peer admission: who may talk to this agent. Right after the TLS handshake each side
//! presents its membership credential (a VC-JWT from identityd); a peer is admitted only
//! if [`MembershipVerifier`] accepts the credential at `now` **and** the credential's
//! subject `did:key` is the key the peer proved in the handshake. Otherwise the
//! connection is closed with a [`Rejection`] code and reason, counted under
//! `swarmguard_swarm_admission_rejected_total{reason}`.
//!
//! Status lists are fetched over HTTP(S) from the credentials' status entries and cached.
//! When a list cannot be fetched the cached copy keeps serving up to `status_max_age`
//! (logged, and exported as `swarmguard_swarm_status_list_age_seconds`); past it no new
//! member is admitted, but members already admitted stay (the swarm must not dissolve
//! because identityd is down). A refresh that shows a member revoked expels it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use prometheus::{IntCounter, IntCounterVec, IntGauge};
use swarmguard_identity::did::Did;
use swarmguard_identity::membership::{
    Member, MembershipError, MembershipVerifier, StatusListCache,
};

use super::peer::PeerId;
use crate::api::Metrics;

/// How many status lists are cached (an issuer makes one per 131,072 credentials).
pub const MAX_STATUS_LISTS: usize = 64;
/// The largest status list response read (a 16 KiB bitstring, gzipped and signed, is a
/// few hundred bytes; lists of a million entries stay far below this).
pub const MAX_STATUS_LIST_RESPONSE: usize = 1024 * 1024;

/// Why a peer was turned away; each has a QUIC application close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The peer presented no credential in time, or not as text.
    NoCredential,
    /// Not a well-formed VC-JWT membership credential.
    Malformed,
    /// Signed by an issuer this agent does not trust.
    UntrustedIssuer,
    /// The credential's signature does not verify.
    BadSignature,
    /// Outside its validity period.
    Expired,
    /// Revoked (or suspended) in the issuer's status list.
    Revoked,
    /// The status list is not cached, cannot be fetched, or is older than
    /// `status_max_age`: no new member until it can be checked again.
    StatusUnavailable,
    /// The credential's subject is not the key the peer proved in the TLS handshake.
    KeyMismatch,
    /// The peer at an address is not the member expected there.
    WrongPeer,
    /// The TLS certificate carries no usable Ed25519 key.
    BadCertificate,
    /// Too many connections already.
    Busy,
}

impl Rejection {
    pub const ALL: [Rejection; 11] = [
        Rejection::NoCredential,
        Rejection::Malformed,
        Rejection::UntrustedIssuer,
        Rejection::BadSignature,
        Rejection::Expired,
        Rejection::Revoked,
        Rejection::StatusUnavailable,
        Rejection::KeyMismatch,
        Rejection::WrongPeer,
        Rejection::BadCertificate,
        Rejection::Busy,
    ];

    /// The metric label, also the close reason's text.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::NoCredential => "no_credential",
            Rejection::Malformed => "malformed",
            Rejection::UntrustedIssuer => "untrusted_issuer",
            Rejection::BadSignature => "bad_signature",
            Rejection::Expired => "expired",
            Rejection::Revoked => "revoked",
            Rejection::StatusUnavailable => "status_unavailable",
            Rejection::KeyMismatch => "key_mismatch",
            Rejection::WrongPeer => "wrong_peer",
            Rejection::BadCertificate => "bad_certificate",
            Rejection::Busy => "busy",
        }
    }

    /// The QUIC application error code the connection is closed with
    /// (`docs/protocol.md`, "Close codes").
    pub fn code(self) -> u32 {
        match self {
            Rejection::NoCredential => 0x10,
            Rejection::Malformed => 0x11,
            Rejection::UntrustedIssuer => 0x12,
            Rejection::BadSignature => 0x13,
            Rejection::Expired => 0x14,
            Rejection::Revoked => 0x15,
            Rejection::StatusUnavailable => 0x16,
            Rejection::KeyMismatch => 0x17,
            Rejection::WrongPeer => 0x18,
            Rejection::BadCertificate => 0x19,
            Rejection::Busy => 0x1a,
        }
    }

    /// How a verifier's refusal is counted.
    pub fn from_error(err: &MembershipError) -> Rejection {
        match err {
            MembershipError::UntrustedIssuer(_) => Rejection::UntrustedIssuer,
            MembershipError::Signature => Rejection::BadSignature,
            MembershipError::NotYetValid(_) | MembershipError::Expired(_) => Rejection::Expired,
            MembershipError::Revoked | MembershipError::Suspended => Rejection::Revoked,
            MembershipError::StatusUnavailable(_) | MembershipError::StatusList { .. } => {
                Rejection::StatusUnavailable
            }
            MembershipError::Malformed(_)
            | MembershipError::Header(_)
            | MembershipError::NotMembership(_)
            | MembershipError::Did(_) => Rejection::Malformed,
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The close code of an orderly shutdown.
pub const CLOSE_SHUTDOWN: u32 = 0;
/// The close code for a member expelled after its credential was revoked or expired.
pub const CLOSE_EXPELLED: u32 = 0x20;

/// Admission's metrics.
#[derive(Debug, Clone)]
struct AdmissionMetrics {
    rejected: IntCounterVec,
    admitted: IntCounter,
    expelled: IntCounter,
    list_age: IntGauge,
    fetch_failures: IntCounter,
}

impl AdmissionMetrics {
    fn new(metrics: &Metrics) -> AdmissionMetrics {
        let rejected = metrics.counter_vec(
            "swarmguard_swarm_admission_rejected_total",
            "Peers turned away at admission, by reason.",
            &["reason"],
        );
        for reason in Rejection::ALL {
            rejected.with_label_values(&[reason.as_str()]);
        }
        let counter = |name: &str, help: &str| metrics.counter(name, help);
        AdmissionMetrics {
            rejected,
            admitted: counter(
                "swarmguard_swarm_admitted_total",
                "Peers admitted after their membership credential verified.",
            ),
            expelled: counter(
                "swarmguard_swarm_expelled_total",
                "Members expelled because a refresh found their credential revoked or expired.",
            ),
            list_age: metrics.gauge(
                "swarmguard_swarm_status_list_age_seconds",
                "Age of the oldest cached status list (how stale revocation data is).",
            ),
            fetch_failures: counter(
                "swarmguard_swarm_status_list_fetch_failures_total",
                "Status list fetches that failed (the cached list is used up to status_max_age).",
            ),
        }
    }
}

/// What admission knows: trusted issuers, cached status lists, and how to fetch them.
#[derive(Debug)]
pub struct Admission {
    verifier: RwLock<MembershipVerifier>,
    /// When each known list was last fetched; the URLs to refresh.
    fetched: Mutex<HashMap<String, SystemTime>>,
    http: reqwest::Client,
    max_age: Duration,
    metrics: AdmissionMetrics,
}

impl Admission {
    /// Trusts the given did:key issuers; status lists older than `max_age` count as
    /// unavailable.
    pub fn new(
        trusted: &[Did],
        max_age: Duration,
        http: reqwest::Client,
        metrics: &Metrics,
    ) -> Result<Arc<Admission>, swarmguard_identity::did::DidError> {
        let mut verifier = MembershipVerifier::new(StatusListCache::new(max_age, MAX_STATUS_LISTS));
        for issuer in trusted {
            verifier.trust_did_key(issuer)?;
        }
        Ok(Arc::new(Admission {
            verifier: RwLock::new(verifier),
            fetched: Mutex::new(HashMap::new()),
            http,
            max_age,
            metrics: AdmissionMetrics::new(metrics),
        }))
    }

    fn verify(&self, jwt: &str, now: SystemTime) -> Result<Member, MembershipError> {
        match self.verifier.read() {
            Ok(verifier) => verifier.verify(jwt, now),
            Err(poisoned) => poisoned.into_inner().verify(jwt, now),
        }
    }

    /// Checks a presented credential against the key `tls_key` the peer proved, fetching
    /// its status lists when they are not cached. Counts the outcome.
    pub async fn admit(
        &self,
        jwt: &str,
        tls_key: PeerId,
        now: SystemTime,
    ) -> Result<Member, Rejection> {
        let result = self.check(jwt, tls_key, now).await;
        match &result {
            Ok(_) => self.metrics.admitted.inc(),
            Err(reason) => self.reject(*reason),
        }
        result
    }

    /// Counts a rejection decided elsewhere (no credential, a bad certificate, busy).
    pub fn reject(&self, reason: Rejection) {
        self.metrics
            .rejected
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    async fn check(
        &self,
        jwt: &str,
        tls_key: PeerId,
        now: SystemTime,
    ) -> Result<Member, Rejection> {
        let mut result = self.verify(jwt, now);
        if let Err(MembershipError::StatusUnavailable(_)) = &result {
            // Fetch what the credential names (bounded by the cache), then decide.
            let urls = self.wanted(now);
            for url in urls {
                self.fetch(&url, now).await;
            }
            result = self.verify(jwt, now);
        }
        let member = result.map_err(|err| {
            tracing::info!(peer = %tls_key, %err, "membership credential refused");
            Rejection::from_error(&err)
        })?;
        if member.did.ed25519_key().ok() != Some(*tls_key.public_key()) {
            tracing::info!(peer = %tls_key, subject = %member.did, "credential names another key");
            return Err(Rejection::KeyMismatch);
        }
        self.remember(&member, jwt, now);
        Ok(member)
    }

    /// Re-checks an admitted member's credential with the lists as now cached. A list
    /// that is unavailable keeps the member (see the module documentation).
    pub fn recheck(&self, jwt: &str, now: SystemTime) -> Result<(), Rejection> {
        match self.verify(jwt, now) {
            Ok(_) | Err(MembershipError::StatusUnavailable(_)) => Ok(()),
            Err(err) => Err(Rejection::from_error(&err)),
        }
    }

    /// Counts an expulsion.
    pub fn expelled(&self) {
        self.metrics.expelled.inc();
    }

    /// Lists a verification asked for, which are due now.
    fn wanted(&self, now: SystemTime) -> Vec<String> {
        match self.verifier.read() {
            Ok(verifier) => verifier.cache.due(now),
            Err(poisoned) => poisoned.into_inner().cache.due(now),
        }
    }

    /// Notes the status lists of an admitted credential, so that refreshes cover them.
    fn remember(&self, _member: &Member, jwt: &str, now: SystemTime) {
        let Some(payload) = jwt
            .split('.')
            .nth(1)
            .and_then(|part| {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .ok()
            })
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        else {
            return;
        };
        let entries = swarmguard_identity::membership::status_entries(&payload).unwrap_or_default();
        if let Ok(mut fetched) = self.fetched.lock() {
            for entry in entries {
                if fetched.len() < MAX_STATUS_LISTS {
                    fetched.entry(entry.list_url).or_insert(now);
                }
            }
        }
    }

    /// Fetches every known status list again. Returns whether all of them answered.
    pub async fn refresh(&self, now: SystemTime) -> bool {
        let urls: Vec<String> = match self.fetched.lock() {
            Ok(fetched) => fetched.keys().cloned().collect(),
            Err(_) => Vec::new(),
        };
        let mut all = true;
        for url in urls {
            all &= self.fetch(&url, now).await;
        }
        self.update_age(now);
        all
    }

    fn update_age(&self, now: SystemTime) {
        let oldest = self.fetched.lock().ok().and_then(|fetched| {
            fetched
                .values()
                .map(|at| now.duration_since(*at).unwrap_or_default())
                .max()
        });
        self.metrics
            .list_age
            .set(oldest.map_or(0, |age| age.as_secs() as i64));
    }

    /// Fetches one status list (as a VC-JWT), verifies and caches it.
    async fn fetch(&self, url: &str, now: SystemTime) -> bool {
        let outcome = self.download(url).await.and_then(|jwt| {
            let mut verifier = match self.verifier.write() {
                Ok(verifier) => verifier,
                Err(poisoned) => poisoned.into_inner(),
            };
            let trusted = verifier.trusted_keys().clone();
            verifier
                .cache
                .insert_jwt(url, &jwt, &trusted, now)
                .map_err(|err| err.to_string())
        });
        match outcome {
            Ok(()) => {
                if let Ok(mut fetched) = self.fetched.lock()
                    && (fetched.contains_key(url) || fetched.len() < MAX_STATUS_LISTS)
                {
                    fetched.insert(url.to_owned(), now);
                }
                true
            }
            Err(err) => {
                self.metrics.fetch_failures.inc();
                let age = self
                    .fetched
                    .lock()
                    .ok()
                    .and_then(|fetched| fetched.get(url).copied())
                    .map(|at| now.duration_since(at).unwrap_or_default());
                match age {
                    Some(age) if age < self.max_age => tracing::warn!(
                        %url, %err, age = %humantime::format_duration(Duration::from_secs(age.as_secs())),
                        "status list unreachable: using the cached list until it is older than gossip.status_max_age"
                    ),
                    _ => tracing::warn!(
                        %url, %err,
                        "status list unreachable and no usable cached copy: admitting no new member until it answers"
                    ),
                }
                false
            }
        }
    }

    async fn download(&self, url: &str) -> Result<String, String> {
        let mut response = self
            .http
            .get(url)
            .header("accept", "application/vc+jwt")
            .send()
            .await
            .map_err(|err| err.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|err| err.to_string())? {
            if body.len() + chunk.len() > MAX_STATUS_LIST_RESPONSE {
                return Err(format!("larger than {MAX_STATUS_LIST_RESPONSE} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body)
            .map(|text| text.trim().to_owned())
            .map_err(|_| "not text".to_owned())
    }
}

/// An HTTP client for status lists and renewal: rustls with ring, short timeouts.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_has_its_own_code_and_label() {
        let mut codes: Vec<u32> = Rejection::ALL.iter().map(|r| r.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Rejection::ALL.len());
        assert!(!codes.contains(&CLOSE_SHUTDOWN) && !codes.contains(&CLOSE_EXPELLED));
    }
}
