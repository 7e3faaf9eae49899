//! What identityd does, apart from HTTP: issue, verify (with status and trust), change
//! status, publish status lists, enrol agents. The HTTP handlers and the local CLI both
//! call this.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::Config;
use crate::did::Did;
use crate::keys::{self, KeyError};
use crate::membership::{self, Role, StatusEntry};
use crate::metrics::Metrics;
use crate::store::{Issued, ListId, Purpose, Status, Store, StoreError};
use crate::vc::{self, Engine, Format, IssuerKey, NotACredential, Report, VcError, Version};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("state database {path}: {source}")]
    Store { path: String, source: StoreError },
}

/// Why a credential was not issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The request is wrong (400).
    #[error("{0}")]
    Invalid(String),
    /// The id was already used (409).
    #[error("{0}")]
    Conflict(String),
    /// Our fault (500).
    #[error("{0}")]
    Internal(String),
}

impl From<VcError> for IssueError {
    fn from(err: VcError) -> IssueError {
        match err {
            VcError::Invalid(why) => IssueError::Invalid(why),
            other => IssueError::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for IssueError {
    fn from(err: StoreError) -> IssueError {
        match err {
            StoreError::Duplicate(_) => IssueError::Conflict(err.to_string()),
            other => IssueError::Internal(other.to_string()),
        }
    }
}

/// The issuer and verifier, with its key, state and caches.
#[derive(Debug)]
pub struct Service {
    pub config: Config,
    pub key: IssuerKey,
    pub engine: Engine,
    pub store: Store,
    pub metrics: Metrics,
    /// Other issuers' status lists: URL → (bits, fetched at). Bounded by
    /// `verify.status_cache_max`.
    remote: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
    http: reqwest::Client,
}

impl Service {
    /// Loads (or creates) the key and opens the database under the state directory.
    pub fn open(config: Config) -> Result<Service, OpenError> {
        let key = keys::load_or_create_key(&config)?;
        let path = config.state_dir.join(keys::DB_DIR);
        let store = Store::open(&path).map_err(|source| OpenError::Store {
            path: path.display().to_string(),
            source,
        })?;
        tracing::info!(did = %key.did(), "issuer DID");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Ok(Service {
            engine: Engine::new(Some(&key)),
            metrics: Metrics::new(),
            remote: Mutex::new(HashMap::new()),
            config,
            key,
            store,
            http,
        })
    }

    /// The URL of a status list.
    pub fn list_url(&self, list: ListId) -> String {
        format!("{}status/{list}", self.config.base_url())
    }

    /// Issues a credential: checks the issuer, fills in `id`, `validFrom`/`issuanceDate`,
    /// `validUntil` and the status entries, validates against the data model and JSON-LD,
    /// records it and signs it.
    pub async fn issue(&self, credential: Value, format: Format) -> Result<Value, IssueError> {
        let now = chrono::Utc::now();
        let mut credential = credential;
        let version = Version::of(&credential).ok_or_else(|| {
            IssueError::Invalid(format!(
                "the first @context must be {} (VCDM 2.0) or {} (VCDM 1.1)",
                vc::CREDENTIALS_V2,
                vc::CREDENTIALS_V1
            ))
        })?;
        let object = credential
            .as_object_mut()
            .ok_or_else(|| IssueError::Invalid("credential must be an object".into()))?;
        check_issuer(object, self.key.did())?;
        check_existing_proofs(object)?;
        let id = match object.get("id") {
            None => {
                let id = uuid::Uuid::new_v4().urn().to_string();
                object.insert("id".into(), Value::String(id.clone()));
                id
            }
            Some(Value::String(id)) => id.clone(),
            Some(_) => return Err(IssueError::Invalid("id must be a single URL".into())),
        };
        if self.store.contains(&id)? {
            return Err(IssueError::Conflict(format!(
                "a credential {id} was already issued"
            )));
        }
        let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let (from_key, until_key) = match version {
            Version::V2 => ("validFrom", "validUntil"),
            Version::V1 => ("issuanceDate", "expirationDate"),
        };
        // Valid for the configured time from when it becomes valid (which a request may
        // put in the future).
        let start = object
            .get(from_key)
            .and_then(Value::as_str)
            .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
            .filter(|t| *t > now)
            .unwrap_or(now);
        let until = (start
            + chrono::Duration::from_std(self.config.credential_validity)
                .unwrap_or(chrono::Duration::days(30)))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        object
            .entry(from_key)
            .or_insert_with(|| Value::String(stamp.clone()));
        object
            .entry(until_key)
            .or_insert_with(|| Value::String(until));
        check_dates(object, from_key, until_key)?;

        let (list, index) = self.store.allocate()?;
        let entries: Vec<Value> = Purpose::ALL
            .iter()
            .map(|purpose| {
                let url = self.list_url(ListId {
                    purpose: *purpose,
                    number: list,
                });
                serde_json::json!({
                    "id": format!("{url}#{index}"),
                    "type": "BitstringStatusListEntry",
                    "statusPurpose": purpose.as_str(),
                    "statusListIndex": index.to_string(),
                    "statusListCredential": url,
                })
            })
            .collect();
        let status = match object.remove("credentialStatus") {
            None => entries,
            Some(Value::Array(mut existing)) => {
                existing.extend(entries);
                existing
            }
            Some(one) => std::iter::once(one).chain(entries).collect(),
        };
        object.insert("credentialStatus".into(), Value::Array(status));
        if version == Version::V1 {
            add_context(object, vc::STATUS_LIST_CONTEXT);
        }
        let types = match object.get("type") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        let valid_until = object
            .get(until_key)
            .and_then(Value::as_str)
            .map(str::to_owned);

        self.engine.check_json_ld(&credential).await?;
        let signed = self
            .engine
            .sign(&self.key, credential, format, None)
            .await?;
        self.store.record(&Issued {
            id,
            types,
            format: format.as_str().into(),
            list,
            index,
            issued_at: stamp,
            valid_until,
            status: Status::Active,
        })?;
        self.metrics
            .issued
            .with_label_values(&[format.as_str()])
            .inc();
        Ok(signed)
    }

    /// Issues a `SwarmMemberCredential` for an agent, as a VC-JWT.
    pub async fn issue_member(&self, agent: &Did, role: Role) -> Result<String, IssueError> {
        agent.ed25519_key().map_err(|err| {
            IssueError::Invalid(format!("the agent must be an Ed25519 did:key: {err}"))
        })?;
        let until = (chrono::Utc::now()
            + chrono::Duration::from_std(self.config.credential_validity)
                .unwrap_or(chrono::Duration::days(30)))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let credential = membership::member_credential(self.key.did(), agent, role, &until);
        match self.issue(credential, Format::JwtVcJson).await? {
            Value::String(jwt) => Ok(jwt),
            _ => Err(IssueError::Internal("VC-JWT signing returned JSON".into())),
        }
    }

    /// Renews a membership credential this service issued, for its holder: the current
    /// credential must verify (proof, validity, status) with this service as issuer, and
    /// `proof` must be the subject key's Ed25519 signature (base64url) over
    /// [`membership::renewal_message`]`(created, jwt)`, `created` within five minutes of
    /// now. Issues a new credential for the same DID and role.
    pub async fn renew_member(
        &self,
        jwt: &str,
        created: &str,
        proof: &str,
    ) -> Result<String, IssueError> {
        use base64::Engine;
        let refused = |why: &str| IssueError::Invalid(format!("renewal refused: {why}"));
        let stamp = chrono::DateTime::parse_from_rfc3339(created)
            .map_err(|_| refused("created is not an RFC 3339 time"))?;
        let skew = (chrono::Utc::now() - stamp.with_timezone(&chrono::Utc))
            .num_seconds()
            .abs();
        if skew > 300 {
            return Err(refused("created is more than five minutes from now"));
        }
        let report = self
            .verify_credential(&Value::String(jwt.to_owned()))
            .await
            .map_err(|err| refused(&err.to_string()))?;
        if !report.verified() {
            return Err(refused(&report.errors.join("; ")));
        }
        if report.issuer.as_deref() != Some(self.key.did().as_str()) {
            return Err(refused("the credential was issued by another issuer"));
        }
        let payload = jwt
            .split('.')
            .nth(1)
            .and_then(|part| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .ok()
            })
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .ok_or_else(|| refused("not a VC-JWT"))?;
        let is_member = payload
            .get("type")
            .and_then(Value::as_array)
            .is_some_and(|types| {
                types
                    .iter()
                    .any(|t| t.as_str() == Some(membership::MEMBER_CREDENTIAL_TYPE))
            });
        if !is_member {
            return Err(refused("not a SwarmMemberCredential"));
        }
        let subject = payload
            .pointer("/credentialSubject/id")
            .and_then(Value::as_str)
            .ok_or_else(|| refused("no subject"))?;
        let agent = Did::parse(subject).map_err(|err| refused(&err.to_string()))?;
        let role: Role = payload
            .pointer("/credentialSubject/role")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .parse()
            .map_err(|err: String| refused(&err))?;
        let key = agent
            .ed25519_key()
            .map_err(|err| refused(&err.to_string()))?;
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(proof)
            .map_err(|_| refused("proof is not base64url"))?;
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
            .verify(
                membership::renewal_message(created, jwt).as_bytes(),
                &signature,
            )
            .map_err(|_| refused("the proof is not the subject's signature"))?;
        self.issue_member(&agent, role).await
    }

    /// Verifies a credential: proof and validity (ssi), then issuer trust and status.
    pub async fn verify_credential(&self, input: &Value) -> Result<Report, NotACredential> {
        let mut report = self
            .engine
            .verify_credential(input, chrono::Utc::now())
            .await?;
        self.check_trust_and_status(&mut report).await;
        self.count(&report);
        Ok(report)
    }

    /// Verifies a presentation and the credentials in it.
    pub async fn verify_presentation(
        &self,
        input: &Value,
        challenge: Option<&str>,
        domain: Option<&str>,
    ) -> Result<Report, NotACredential> {
        let (mut report, credentials) = self
            .engine
            .verify_presentation(input, challenge, domain, chrono::Utc::now())
            .await?;
        for mut credential in credentials {
            self.check_trust_and_status(&mut credential).await;
            if !credential.errors.is_empty() {
                for err in credential.errors {
                    report.errors.push(format!("embedded credential: {err}"));
                }
            }
            report.warnings.extend(credential.warnings);
        }
        report.errors.dedup();
        self.count(&report);
        Ok(report)
    }

    fn count(&self, report: &Report) {
        let result = if report.verified() {
            "verified"
        } else {
            "failed"
        };
        self.metrics.verified.with_label_values(&[result]).inc();
    }

    async fn check_trust_and_status(&self, report: &mut Report) {
        if !report.errors.is_empty() {
            return;
        }
        let Some(credential) = report.credential.clone() else {
            return;
        };
        let trusted = &self.config.trusted_issuers;
        match &report.issuer {
            _ if trusted.is_empty() => report
                .warnings
                .push("issuer trust not checked (no trusted issuers configured)".into()),
            Some(issuer) if trusted.contains(issuer) || issuer == self.key.did().as_str() => {
                report.checks.push("issuer".into());
            }
            Some(issuer) => report
                .errors
                .push(format!("issuer {issuer} is not trusted")),
            None => report.errors.push("no issuer".into()),
        }
        let entries = match membership::status_entries(&credential) {
            Ok(entries) => entries,
            Err(err) => {
                report.errors.push(err.to_string());
                return;
            }
        };
        if entries.is_empty() {
            report.warnings.push("no status to check".into());
            return;
        }
        for entry in entries {
            match self.status_bit(&entry).await {
                Ok(false) => {}
                Ok(true) => match entry.purpose.as_str() {
                    "revocation" => report.errors.push("revoked".into()),
                    "suspension" => report.errors.push("suspended".into()),
                    other => report.warnings.push(format!("status {other} is set")),
                },
                Err(err) => report.errors.push(format!("status not checked: {err}")),
            }
        }
        if report.errors.is_empty() {
            report.checks.push("status".into());
        }
    }

    /// One status bit: from our own lists locally, from others' over HTTP with a cache.
    async fn status_bit(&self, entry: &StatusEntry) -> Result<bool, String> {
        let own_prefix = format!("{}status/", self.config.base_url());
        if let Some(name) = entry.list_url.strip_prefix(&own_prefix) {
            let list = ListId::parse(name).ok_or_else(|| format!("no status list {name}"))?;
            let bits = self.store.bits(list).map_err(|err| err.to_string())?;
            return membership::bit_at(&bits, entry.index)
                .ok_or_else(|| "index beyond the list".to_owned());
        }
        let bits = self.remote_list(&entry.list_url).await?;
        membership::bit_at(&bits, entry.index).ok_or_else(|| "index beyond the list".to_owned())
    }

    async fn remote_list(&self, url: &str) -> Result<Vec<u8>, String> {
        if let Ok(cache) = self.remote.lock()
            && let Some((bits, at)) = cache.get(url)
            && at.elapsed() < self.config.status_cache_ttl
        {
            return Ok(bits.clone());
        }
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!("status list {url} is not an http(s) URL"));
        }
        let response = self
            .http
            .get(url)
            .header("accept", "application/vc+ld+json, application/json")
            .send()
            .await
            .map_err(|err| format!("fetching {url}: {err}"))?;
        if !response.status().is_success() {
            return Err(format!("fetching {url}: HTTP {}", response.status()));
        }
        let body = response
            .bytes()
            .await
            .map_err(|err| format!("fetching {url}: {err}"))?;
        if body.len() > 4 * 1024 * 1024 {
            return Err(format!("status list {url} is larger than 4 MiB"));
        }
        let document: Value =
            serde_json::from_slice(&body).map_err(|err| format!("status list {url}: {err}"))?;
        // The list is a credential too: it must verify before its bits count.
        let report = self
            .engine
            .verify_credential(&document, chrono::Utc::now())
            .await
            .map_err(|err| format!("status list {url}: {err}"))?;
        if !report.verified() {
            return Err(format!(
                "status list {url} does not verify: {}",
                report.errors.join("; ")
            ));
        }
        let issuer_ok = report.issuer.is_some()
            && (self.config.trusted_issuers.is_empty()
                || report
                    .issuer
                    .as_ref()
                    .is_some_and(|i| self.config.trusted_issuers.contains(i)));
        if !issuer_ok {
            return Err(format!("status list {url} is from an untrusted issuer"));
        }
        let encoded = document
            .pointer("/credentialSubject/encodedList")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("status list {url} has no encodedList"))?;
        let bits = membership::decode_encoded_list(encoded)?;
        if let Ok(mut cache) = self.remote.lock() {
            if cache.len() >= self.config.status_cache_max
                && !cache.contains_key(url)
                && let Some(oldest) = cache
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(u, _)| u.clone())
            {
                cache.remove(&oldest);
            }
            cache.insert(url.to_owned(), (bits.clone(), Instant::now()));
            self.metrics.status_cache_lists.set(cache.len() as i64);
        }
        Ok(bits)
    }

    /// Changes a credential's status (revocation is final).
    pub fn set_status(&self, id: &str, status: Status) -> Result<Issued, StoreError> {
        let record = self.store.set_status(id, status)?;
        self.metrics
            .status_changes
            .with_label_values(&[status.as_str()])
            .inc();
        tracing::info!(
            credential = id,
            status = status.as_str(),
            "credential status changed"
        );
        Ok(record)
    }

    /// The signed `BitstringStatusListCredential` of a list, as Data Integrity JSON or,
    /// for the light verifier, as a VC-JWT.
    pub async fn status_list_credential(
        &self,
        list: ListId,
        format: Format,
    ) -> Result<Value, IssueError> {
        if !self.store.list_numbers()?.contains(&list.number) {
            return Err(IssueError::Invalid(format!("no status list {list}")));
        }
        let bits = self.store.bits(list)?;
        let encoded = ssi::status::bitstring_status_list::EncodedList::encode(&bits);
        let url = self.list_url(list);
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let credential = serde_json::json!({
            "@context": [vc::CREDENTIALS_V2],
            "id": url,
            "type": ["VerifiableCredential", "BitstringStatusListCredential"],
            "issuer": self.key.did().as_str(),
            "validFrom": now,
            "credentialSubject": {
                "id": format!("{url}#list"),
                "type": "BitstringStatusList",
                "statusPurpose": list.purpose.as_str(),
                "encodedList": encoded,
            },
        });
        Ok(self
            .engine
            .sign(&self.key, credential, format, None)
            .await?)
    }
}

/// The issuer rule: `issuer` must be this service's DID, as a string or as an object's
/// `id`. An issuer object without `id` is completed with it (VCDM test suite:
/// `credential-issuer-object-ok`); anything else is refused.
fn check_issuer(object: &mut serde_json::Map<String, Value>, did: &Did) -> Result<(), IssueError> {
    match object.get_mut("issuer") {
        None => Err(IssueError::Invalid("issuer is required".into())),
        Some(Value::String(id)) if id == did.as_str() => Ok(()),
        Some(Value::Object(issuer)) => match issuer.get("id") {
            None => {
                issuer.insert("id".into(), Value::String(did.to_string()));
                Ok(())
            }
            Some(Value::String(id)) if id == did.as_str() => Ok(()),
            Some(_) => Err(IssueError::Invalid(format!(
                "issuer.id must be this service's DID {did}"
            ))),
        },
        Some(_) => Err(IssueError::Invalid(format!(
            "issuer must be this service's DID {did}"
        ))),
    }
}

/// A credential may arrive with proofs (a proof set); each must at least be typed. They
/// are not carried over: this service signs the credential afresh.
fn check_existing_proofs(object: &mut serde_json::Map<String, Value>) -> Result<(), IssueError> {
    let Some(proof) = object.remove("proof") else {
        return Ok(());
    };
    let proofs: Vec<&Value> = match &proof {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    for proof in proofs {
        if proof.get("type").and_then(Value::as_str).is_none() {
            return Err(IssueError::Invalid("every proof must have a type".into()));
        }
    }
    Ok(())
}

fn check_dates(
    object: &serde_json::Map<String, Value>,
    from_key: &str,
    until_key: &str,
) -> Result<(), IssueError> {
    let date = |key: &str| -> Result<Option<chrono::DateTime<chrono::FixedOffset>>, IssueError> {
        match object.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => chrono::DateTime::parse_from_rfc3339(text)
                .map(Some)
                .map_err(|_| {
                    IssueError::Invalid(format!("{key} is not an XSD dateTimeStamp: {text}"))
                }),
            Some(_) => Err(IssueError::Invalid(format!("{key} must be a string"))),
        }
    };
    if let (Some(from), Some(until)) = (date(from_key)?, date(until_key)?)
        && until < from
    {
        return Err(IssueError::Invalid(format!(
            "{until_key} is before {from_key}"
        )));
    }
    Ok(())
}

fn add_context(object: &mut serde_json::Map<String, Value>, context: &str) {
    if let Some(Value::Array(contexts)) = object.get_mut("@context")
        && !contexts.iter().any(|c| c.as_str() == Some(context))
    {
        contexts.push(Value::String(context.to_owned()));
    }
}
