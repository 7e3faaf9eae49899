//! Verifiable Credentials with SpruceID's `ssi` (feature `ssi`): the issuer key, DID
//! resolution, signing as Data Integrity (`eddsa-rdfc-2022`) or VC-JWT, and verifying
//! credentials and presentations.
//!
//! Everything cryptographic or JSON-LD here is `ssi`'s: JSON-LD expansion, RDF
//! canonicalization, proof configuration, JWS. This module chooses suites and formats,
//! fills in what an issuer must (`id`, `validFrom`), and turns `ssi`'s results into the
//! VC-API `checks`/`errors` shape. Status lists and issuer trust are the server's business
//! (they need state and the network); this module reports what it found.
//!
//! JSON-LD contexts come only from files compiled into the binary: `ssi`'s own
//! (credentials v1/v2 and their examples, data integrity, multikey, DID v1) plus the
//! Bitstring Status List context shipped in `identity/contexts/`. Nothing is fetched.

use std::collections::HashMap;

use serde_json::Value;
use ssi::JWK;
use ssi::claims::data_integrity::{AnySuite, CryptographicSuite, DataIntegrity, ProofOptions};
use ssi::claims::jws::JwsPayload;
use ssi::claims::{SignatureEnvironment, VerificationParameters};
use ssi::dids::{AnyDidMethod, DIDResolver, VerificationMethodDIDResolver};
use ssi::json_ld::{ContextLoader, Expandable};
use ssi::verification_methods::{AnyMethod, ProofPurpose, ReferenceOrOwned, SingleSecretSigner};

use crate::did::Did;

/// The VCDM 2.0 base context.
pub const CREDENTIALS_V2: &str = "https://www.w3.org/ns/credentials/v2";
/// The VCDM 1.1 base context.
pub const CREDENTIALS_V1: &str = "https://www.w3.org/2018/credentials/v1";
/// The Data Integrity context, added to VCDM 1.1 credentials signed as `ldp_vc`.
pub const DATA_INTEGRITY_V2: &str = "https://w3id.org/security/data-integrity/v2";
/// The Bitstring Status List context, needed by VCDM 1.1 credentials that carry a
/// `BitstringStatusListEntry` (VCDM 2.0's base context already defines it).
pub const STATUS_LIST_CONTEXT: &str = "https://www.w3.org/ns/credentials/status/v1";
const STATUS_LIST_CONTEXT_DOCUMENT: &str =
    include_str!("../contexts/bitstring-status-list-v1.jsonld");

/// How a credential is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Data Integrity proof, `eddsa-rdfc-2022`.
    LdpVc,
    /// VC-JWT (EdDSA): VC-JOSE-COSE for VCDM 2.0, the `vc` claim for VCDM 1.1.
    JwtVcJson,
}

impl Format {
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "ldp_vc" => Some(Format::LdpVc),
            "jwt_vc_json" => Some(Format::JwtVcJson),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::LdpVc => "ldp_vc",
            Format::JwtVcJson => "jwt_vc_json",
        }
    }
}

/// Which data model a credential follows, from its first context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    /// The version named by the first `@context` entry, if it is a base context.
    pub fn of(credential: &Value) -> Option<Version> {
        match credential.get("@context")?.as_array()?.first()?.as_str()? {
            CREDENTIALS_V2 => Some(Version::V2),
            CREDENTIALS_V1 => Some(Version::V1),
            _ => None,
        }
    }
}

/// Why issuing failed.
#[derive(Debug, thiserror::Error)]
pub enum VcError {
    /// The credential breaks the data model, JSON-LD rules, or the issuer's rules.
    #[error("invalid credential: {0}")]
    Invalid(String),
    /// The key file or key material is unusable.
    #[error("issuer key: {0}")]
    Key(String),
    /// `ssi` failed to sign (an internal error: the input was already validated).
    #[error("signing failed: {0}")]
    Signing(String),
}

/// The issuer's Ed25519 key and the DID it signs as.
#[derive(Clone)]
pub struct IssuerKey {
    jwk: JWK,
    public: [u8; 32],
    did: Did,
    /// The verification method id (`did#fragment`) in proofs and JWT `kid`s.
    method: String,
}

impl std::fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("IssuerKey")
            .field("did", &self.did)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// How the issuer names itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerDid {
    /// `did:key` of the issuer key.
    Key,
    /// `did:web:` + this method-specific id (`host[%3Aport][:path…]`).
    Web(String),
}

impl IssuerKey {
    /// A new random Ed25519 key.
    pub fn generate(naming: &IssuerDid) -> Result<IssuerKey, VcError> {
        let jwk = JWK::generate_ed25519().map_err(|err| VcError::Key(err.to_string()))?;
        IssuerKey::from_jwk(jwk, naming)
    }

    /// Reads a private JWK (the key file format).
    pub fn from_jwk_json(text: &str, naming: &IssuerDid) -> Result<IssuerKey, VcError> {
        let jwk: JWK =
            serde_json::from_str(text).map_err(|err| VcError::Key(format!("not a JWK: {err}")))?;
        IssuerKey::from_jwk(jwk, naming)
    }

    /// An Ed25519 key from its 32-byte seed (the W3C test vectors' `privateKeyMultibase`).
    pub fn from_seed(seed: &[u8; 32], naming: &IssuerDid) -> Result<IssuerKey, VcError> {
        let keypair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| VcError::Key("bad Ed25519 seed".into()))?;
        use ring::signature::KeyPair;
        let jwk = JWK::from(ssi::jwk::Params::OKP(ssi::jwk::OctetParams {
            curve: "Ed25519".into(),
            public_key: ssi::jwk::Base64urlUInt(keypair.public_key().as_ref().to_vec()),
            private_key: Some(ssi::jwk::Base64urlUInt(seed.to_vec())),
        }));
        IssuerKey::from_jwk(jwk, naming)
    }

    fn from_jwk(mut jwk: JWK, naming: &IssuerDid) -> Result<IssuerKey, VcError> {
        let public = match &jwk.params {
            ssi::jwk::Params::OKP(okp) if okp.curve == "Ed25519" && okp.private_key.is_some() => {
                <[u8; 32]>::try_from(okp.public_key.0.as_slice())
                    .map_err(|_| VcError::Key("Ed25519 public key is not 32 bytes".into()))?
            }
            _ => {
                return Err(VcError::Key(
                    "not an Ed25519 private key (OKP, crv Ed25519, d)".into(),
                ));
            }
        };
        let (did, method) = match naming {
            IssuerDid::Key => {
                let did = Did::from_ed25519(&public);
                let method = did.key_id();
                (did, method)
            }
            IssuerDid::Web(id) => {
                let did = Did::parse(&format!("did:web:{id}"))
                    .map_err(|err| VcError::Key(err.to_string()))?;
                let method = format!("{did}#key-1");
                (did, method)
            }
        };
        jwk.key_id = Some(method.clone());
        jwk.algorithm = Some(ssi::jwk::Algorithm::EdDSA);
        Ok(IssuerKey {
            jwk,
            public,
            did,
            method,
        })
    }

    /// The private JWK, as written to the key file and by `key export`.
    pub fn to_jwk_json(&self) -> String {
        let mut jwk = self.jwk.clone();
        // The DID depends on configuration, not on the key: keep the file portable.
        jwk.key_id = None;
        jwk.algorithm = None;
        serde_json::to_string_pretty(&jwk).unwrap_or_default()
    }

    pub fn did(&self) -> &Did {
        &self.did
    }

    pub fn method(&self) -> &str {
        &self.method
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// The DID document: for did:web the one served at `/.well-known/did.json`, for
    /// did:key the expanded did:key document.
    pub fn did_document(&self) -> Value {
        let multibase = Did::from_ed25519(&self.public)
            .method_specific_id()
            .to_owned();
        serde_json::json!({
            "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
            "id": self.did.as_str(),
            "verificationMethod": [{
                "id": self.method,
                "type": "Multikey",
                "controller": self.did.as_str(),
                "publicKeyMultibase": multibase,
            }],
            "authentication": [self.method],
            "assertionMethod": [self.method],
            "capabilityInvocation": [self.method],
            "capabilityDelegation": [self.method],
        })
    }
}

/// DID resolution: `did:key` computed locally, `did:web` over HTTPS, and this issuer's
/// own DID answered from memory (so a did:web issuer verifies its own credentials without
/// the network). Other methods are not supported.
#[derive(Clone, Default)]
pub struct Resolver {
    own: Option<(String, Vec<u8>)>,
    any: AnyDidMethod,
}

impl Resolver {
    pub fn new(own: Option<&IssuerKey>) -> Resolver {
        Resolver {
            own: own.map(|key| {
                (
                    key.did().to_string(),
                    serde_json::to_vec(&key.did_document()).unwrap_or_default(),
                )
            }),
            any: AnyDidMethod::default(),
        }
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("own", &self.own.as_ref().map(|(did, _)| did))
            .finish_non_exhaustive()
    }
}

impl DIDResolver for Resolver {
    async fn resolve_representation<'a>(
        &'a self,
        did: &'a ssi::dids::DID,
        options: ssi::dids::resolution::Options,
    ) -> Result<ssi::dids::resolution::Output<Vec<u8>>, ssi::dids::resolution::Error> {
        if let Some((own, document)) = &self.own
            && did.as_str() == own
        {
            return Ok(ssi::dids::resolution::Output::from_content(
                document.clone(),
                Some("application/did+json".to_owned()),
            ));
        }
        match did.method_name() {
            "key" | "web" => self.any.resolve_representation(did, options).await,
            other => Err(ssi::dids::resolution::Error::MethodNotSupported(
                other.to_owned(),
            )),
        }
    }
}

/// The outcome of verifying a credential or presentation, in VC-API terms.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// What was checked and passed (`proof`, `validity`, `status`, `issuer`).
    pub checks: Vec<String>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
    /// The credential as data (the JWT payload for VC-JWT), for status and trust checks.
    pub credential: Option<Value>,
    /// The issuer's id, when one could be read.
    pub issuer: Option<String>,
    pub format: Option<Format>,
}

impl Report {
    pub fn verified(&self) -> bool {
        self.errors.is_empty() && !self.checks.is_empty()
    }

    fn fail(&mut self, error: impl Into<String>) {
        self.errors.push(error.into());
    }
}

/// Why an input is not a credential (or presentation) at all: the HTTP API answers 400.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotACredential(pub String);

/// Signs and verifies with one set of contexts and one resolver.
pub struct Engine {
    loader: ContextLoader,
    resolver: VerificationMethodDIDResolver<Resolver, AnyMethod>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// The context loader: `ssi`'s embedded contexts plus the files shipped in this crate.
pub fn context_loader() -> ContextLoader {
    let mut extra = HashMap::new();
    extra.insert(
        STATUS_LIST_CONTEXT.to_owned(),
        STATUS_LIST_CONTEXT_DOCUMENT.to_owned(),
    );
    ContextLoader::default()
        .with_context_map_from(extra)
        .expect("the shipped status list context is valid JSON-LD")
}

impl Engine {
    pub fn new(own: Option<&IssuerKey>) -> Engine {
        Engine {
            loader: context_loader(),
            resolver: VerificationMethodDIDResolver::new(Resolver::new(own)),
        }
    }

    fn params(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> VerificationParameters<&VerificationMethodDIDResolver<Resolver, AnyMethod>> {
        VerificationParameters::from_resolver(&self.resolver)
            .with_json_ld_loader(self.loader.clone())
            .with_date_time(now)
    }

    /// The resolver, for the DID resolution endpoints.
    pub fn did_resolver(&self) -> &Resolver {
        self.resolver.resolver()
    }

    /// Checks that a credential is valid JSON-LD under the shipped contexts: every term
    /// defined, no protected term redefined, every IRI valid. (`ssi`'s expansion policy.)
    pub async fn check_json_ld(&self, document: &Value) -> Result<(), VcError> {
        let value: ssi::json_ld::syntax::Value = serde_json::from_value(document.clone())
            .map_err(|err| VcError::Invalid(format!("JSON: {err}")))?;
        ssi::json_ld::CompactJsonLd(value)
            .expand(&self.loader)
            .await
            .map(|_| ())
            .map_err(|err| VcError::Invalid(format!("JSON-LD: {err}")))
    }

    /// Signs a complete, validated credential.
    pub async fn sign(
        &self,
        key: &IssuerKey,
        credential: Value,
        format: Format,
        created: Option<&str>,
    ) -> Result<Value, VcError> {
        let version = Version::of(&credential).ok_or_else(|| {
            VcError::Invalid("the first @context is not a VCDM base context".into())
        })?;
        match format {
            Format::LdpVc => self.sign_ldp(key, credential, version, created).await,
            Format::JwtVcJson => self
                .sign_jwt(key, credential, version)
                .await
                .map(Value::String),
        }
    }

    async fn sign_ldp(
        &self,
        key: &IssuerKey,
        credential: Value,
        version: Version,
        created: Option<&str>,
    ) -> Result<Value, VcError> {
        let method = ssi::json_ld::iref::IriBuf::new(key.method().to_owned())
            .map_err(|err| VcError::Key(format!("verification method: {err}")))?;
        let mut options = ProofOptions::from_method_and_options(
            ReferenceOrOwned::Reference(method),
            Default::default(),
        );
        options.proof_purpose = ProofPurpose::Assertion;
        if let Some(created) = created {
            options.created = Some(
                created
                    .parse()
                    .map_err(|_| VcError::Invalid(format!("bad proof date {created}")))?,
            );
        }
        let env = SignatureEnvironment {
            json_ld_loader: self.loader.clone(),
            eip712_loader: (),
        };
        let signer = SingleSecretSigner::new(key.jwk.clone()).into_local();
        let signing = |err: ssi::claims::SignatureError| VcError::Signing(err.to_string());
        let mut credential = credential;
        add_data_integrity_context(&mut credential);
        // The typed models, not ssi's untagged `AnyJsonCredential`: that one accepts
        // what VCDM 2.0 forbids (an empty credentialSubject), which conformance catches.
        let signed = match version {
            Version::V2 => {
                let vc: ssi::claims::vc::v2::JsonCredential = parse_model(credential)?;
                let signed = AnySuite::EdDsaRdfc2022
                    .sign_with(env, vc, &self.resolver, signer, options, Default::default())
                    .await
                    .map_err(signing)?;
                serde_json::to_value(signed)
            }
            Version::V1 => {
                let vc: ssi::claims::vc::v1::JsonCredential = parse_model(credential)?;
                let signed = AnySuite::EdDsaRdfc2022
                    .sign_with(env, vc, &self.resolver, signer, options, Default::default())
                    .await
                    .map_err(signing)?;
                serde_json::to_value(signed)
            }
        };
        signed.map_err(|err| VcError::Signing(err.to_string()))
    }

    async fn sign_jwt(
        &self,
        key: &IssuerKey,
        credential: Value,
        version: Version,
    ) -> Result<String, VcError> {
        let signing = |err: ssi::claims::SignatureError| VcError::Signing(err.to_string());
        match version {
            Version::V2 => {
                // Validate against the data model before signing the JSON as it is.
                let _: ssi::claims::vc::v2::JsonCredential = parse_model(credential.clone())?;
                let jws = VcJwtPayload(credential)
                    .sign(&key.jwk)
                    .await
                    .map_err(signing)?;
                Ok(jws.into_string())
            }
            Version::V1 => {
                use ssi::claims::vc::v1::ToJwtClaims;
                let vc: ssi::claims::vc::v1::JsonCredential = parse_model(credential)?;
                let claims = vc
                    .to_jwt_claims()
                    .map_err(|err| VcError::Invalid(err.to_string()))?;
                let jws = claims.sign(&key.jwk).await.map_err(signing)?;
                Ok(jws.into_string())
            }
        }
    }

    /// Signs a VCDM 2.0 presentation as its holder: Data Integrity `eddsa-rdfc-2022` with
    /// proof purpose `authentication`, bound to a verifier's `challenge` and `domain`.
    pub async fn sign_presentation(
        &self,
        holder: &IssuerKey,
        presentation: Value,
        challenge: Option<&str>,
        domain: Option<&str>,
    ) -> Result<Value, VcError> {
        let method = ssi::json_ld::iref::IriBuf::new(holder.method().to_owned())
            .map_err(|err| VcError::Key(format!("verification method: {err}")))?;
        let mut options = ProofOptions::from_method_and_options(
            ReferenceOrOwned::Reference(method),
            Default::default(),
        );
        options.proof_purpose = ProofPurpose::Authentication;
        options.challenge = challenge.map(str::to_owned);
        options.domains = domain.map(|d| vec![d.to_owned()]).unwrap_or_default();
        // VCDM 1.1 or 2.0, whichever base context comes first.
        let mut presentation = presentation;
        add_data_integrity_context(&mut presentation);
        let vp: ssi::claims::vc::syntax::AnyJsonPresentation<Value, Value> =
            parse_model(presentation)?;
        let env = SignatureEnvironment {
            json_ld_loader: self.loader.clone(),
            eip712_loader: (),
        };
        let signer = SingleSecretSigner::new(holder.jwk.clone()).into_local();
        let signed = AnySuite::EdDsaRdfc2022
            .sign_with(env, vp, &self.resolver, signer, options, Default::default())
            .await
            .map_err(|err| VcError::Signing(err.to_string()))?;
        serde_json::to_value(signed).map_err(|err| VcError::Signing(err.to_string()))
    }

    /// Verifies a credential: a Data Integrity JSON object or a compact VC-JWT string.
    /// `now` is the time validity periods are checked against.
    pub async fn verify_credential(
        &self,
        input: &Value,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Report, NotACredential> {
        match input {
            Value::String(jwt) => Ok(self.verify_jwt(jwt, now).await),
            Value::Object(object) => {
                if !has_type(input, "VerifiableCredential") {
                    return Err(NotACredential(
                        "not a credential: type does not include VerifiableCredential".into(),
                    ));
                }
                if object.get("type").and_then(Value::as_str)
                    == Some("EnvelopedVerifiableCredential")
                    || has_type(input, "EnvelopedVerifiableCredential")
                {
                    let jwt = enveloped_jwt(input).ok_or_else(|| {
                        NotACredential("enveloped credential without a data: URL".into())
                    })?;
                    return Ok(self.verify_jwt(&jwt, now).await);
                }
                Ok(self.verify_ldp(input, now).await)
            }
            _ => Err(NotACredential(
                "a credential is a JSON object (Data Integrity) or a string (VC-JWT)".into(),
            )),
        }
    }

    async fn verify_ldp(&self, input: &Value, now: chrono::DateTime<chrono::Utc>) -> Report {
        let params = self.params(now);
        let mut report = Report {
            format: Some(Format::LdpVc),
            credential: Some(input.clone()),
            issuer: issuer_id(input),
            ..Report::default()
        };
        let bytes = serde_json::to_vec(input).unwrap_or_default();
        let vc: DataIntegrity<ssi::claims::vc::syntax::AnyJsonCredential, AnySuite> =
            match ssi::claims::data_integrity::from_json_slice(&bytes) {
                Ok(vc) => vc,
                Err(err) => {
                    report.fail(format!("malformed credential: {err}"));
                    return report;
                }
            };
        if vc.proofs.is_empty() {
            report.fail("no proof");
            return report;
        }
        match vc.verify(&params).await {
            Ok(Ok(())) => report.checks.extend(["proof".into(), "validity".into()]),
            Ok(Err(invalid)) => report.fail(invalid.to_string()),
            Err(err) => report.fail(err.to_string()),
        }
        report
    }

    async fn verify_jwt(&self, jwt: &str, now: chrono::DateTime<chrono::Utc>) -> Report {
        let params = self.params(now);
        let mut report = Report {
            format: Some(Format::JwtVcJson),
            ..Report::default()
        };
        let Some(payload) = jwt_payload(jwt) else {
            report.fail("malformed VC-JWT");
            return report;
        };
        let jws = match ssi::claims::JwsSlice::new(jwt.as_bytes()) {
            Ok(jws) => jws,
            Err(_) => {
                report.fail("malformed VC-JWT");
                return report;
            }
        };
        let decoded = match jws.decode() {
            Ok(decoded) => decoded,
            Err(err) => {
                report.fail(format!("malformed VC-JWT: {err}"));
                return report;
            }
        };
        // VCDM 1.1 puts the credential in the `vc` claim; VC-JOSE-COSE makes it the payload.
        let (credential, issuer) = match payload.get("vc") {
            Some(vc) => (
                vc.clone(),
                payload
                    .get("iss")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            ),
            None => (payload.clone(), issuer_id(&payload)),
        };
        report.credential = Some(credential.clone());
        report.issuer = issuer;
        // The signature, through ssi's JWS verification with the `kid` resolved as a DID URL.
        match decoded.verify(&params).await {
            Ok(Ok(())) => report.checks.push("proof".into()),
            Ok(Err(invalid)) => {
                report.fail(invalid.to_string());
                return report;
            }
            Err(err) => {
                report.fail(err.to_string());
                return report;
            }
        }
        // The key must belong to the issuer the credential names.
        let kid_did = decoded
            .signing_bytes
            .header
            .key_id
            .as_deref()
            .map(|kid| kid.split('#').next().unwrap_or_default().to_owned());
        if kid_did.is_some() && kid_did != report.issuer {
            report.fail("the signing key does not belong to the issuer");
        }
        match validity_errors(&credential, &payload, now) {
            errors if errors.is_empty() => report.checks.push("validity".into()),
            errors => report.errors.extend(errors),
        }
        report
    }

    /// Verifies a Data Integrity presentation: proof with purpose `authentication`,
    /// challenge and domain, holder binding, and every embedded credential.
    pub async fn verify_presentation(
        &self,
        input: &Value,
        challenge: Option<&str>,
        domain: Option<&str>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(Report, Vec<Report>), NotACredential> {
        if !input.is_object() || !has_type(input, "VerifiablePresentation") {
            return Err(NotACredential(
                "not a presentation: type does not include VerifiablePresentation".into(),
            ));
        }
        let version = Version::of(input).ok_or_else(|| {
            NotACredential("the first @context is not a VCDM base context".into())
        })?;
        // The data model first: a presentation that violates it is not a presentation.
        let model = match version {
            Version::V2 => serde_json::from_value::<
                ssi::claims::vc::v2::syntax::JsonPresentation<Value>,
            >(strip_proof(input))
            .map(|_| ()),
            Version::V1 => serde_json::from_value::<
                ssi::claims::vc::v1::syntax::JsonPresentation<Value>,
            >(strip_proof(input))
            .map(|_| ()),
        };
        model.map_err(|err| NotACredential(format!("not a presentation: {err}")))?;
        if let Some(holder) = input.get("holder")
            && holder_id(holder).is_none()
        {
            return Err(NotACredential(
                "holder must be a URL or an object with an id".into(),
            ));
        }
        let embedded: Vec<Value> = match input.get("verifiableCredential") {
            None => Vec::new(),
            Some(Value::Array(items)) => items.clone(),
            Some(item) => vec![item.clone()],
        };
        for item in &embedded {
            if !item.is_object() {
                return Err(NotACredential(
                    "verifiableCredential entries must be objects".into(),
                ));
            }
            if !matches!(
                item.get("type"),
                Some(Value::String(_)) | Some(Value::Array(_))
            ) {
                return Err(NotACredential(
                    "every verifiableCredential entry needs a type".into(),
                ));
            }
        }

        let mut report = Report {
            format: Some(Format::LdpVc),
            ..Report::default()
        };
        let params = self.params(now);
        let proof = input.get("proof");
        match proof {
            None => report.fail("no proof"),
            Some(proof) => {
                let bytes = serde_json::to_vec(input).unwrap_or_default();
                // The version was checked above; ssi's `AnyJsonPresentation` picks the
                // same one (its v1 syntax requires the v1 base context first).
                let outcome = match ssi::claims::data_integrity::from_json_slice::<
                    ssi::claims::vc::syntax::AnyJsonPresentation<Value, Value>,
                    AnySuite,
                >(&bytes)
                {
                    Ok(vp) => vp
                        .verify(&params)
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string())),
                    Err(err) => Err(format!("malformed presentation: {err}")),
                };
                match outcome {
                    Ok(()) => report.checks.push("proof".into()),
                    Err(err) => report.fail(err),
                }
                let proofs: Vec<&Value> = match proof {
                    Value::Array(items) => items.iter().collect(),
                    one => vec![one],
                };
                for proof in proofs {
                    check_presentation_proof(&mut report, proof, input, challenge, domain);
                }
            }
        }
        let mut credentials = Vec::new();
        for item in &embedded {
            match self.verify_credential(item, now).await {
                Ok(inner) => {
                    if !inner.verified() {
                        report.fail("an embedded credential does not verify");
                    }
                    credentials.push(inner);
                }
                Err(err) => {
                    report.fail(format!("embedded credential: {err}"));
                }
            }
        }
        Ok((report, credentials))
    }
}

fn check_presentation_proof(
    report: &mut Report,
    proof: &Value,
    presentation: &Value,
    challenge: Option<&str>,
    domain: Option<&str>,
) {
    let field = |name: &str| proof.get(name).and_then(Value::as_str);
    if field("proofPurpose") != Some("authentication") {
        report.fail("presentation proof purpose is not authentication");
    }
    if let Some(expected) = challenge {
        if field("challenge") != Some(expected) {
            report.fail("challenge does not match");
        } else {
            report.checks.push("challenge".into());
        }
    }
    if let Some(expected) = domain {
        let domains: Vec<&str> = match proof.get("domain") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if domains.contains(&expected) {
            report.checks.push("domain".into());
        } else {
            report.fail("domain does not match");
        }
    }
    // Holder binding: whoever signed the presentation is its holder.
    if let Some(holder) = presentation.get("holder").and_then(holder_id) {
        let signer = field("verificationMethod").map(|vm| vm.split('#').next().unwrap_or_default());
        if signer == Some(holder.as_str()) {
            report.checks.push("holder".into());
        } else {
            report.fail("the presentation is not signed by its holder");
        }
    }
}

/// VCDM 1.1's context does not define `DataIntegrityProof`; the Data Integrity spec has
/// 1.1 documents add its context. VCDM 2.0's base context already includes it.
fn add_data_integrity_context(document: &mut Value) {
    if Version::of(document) != Some(Version::V1) {
        return;
    }
    if let Some(Value::Array(contexts)) = document.get_mut("@context")
        && !contexts
            .iter()
            .any(|c| c.as_str() == Some(DATA_INTEGRITY_V2))
    {
        contexts.push(Value::String(DATA_INTEGRITY_V2.to_owned()));
    }
}

fn holder_id(holder: &Value) -> Option<String> {
    match holder {
        Value::String(id) if id.contains(':') => Some(id.clone()),
        Value::Object(obj) => obj
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| id.contains(':'))
            .map(str::to_owned),
        _ => None,
    }
}

fn strip_proof(input: &Value) -> Value {
    let mut copy = input.clone();
    if let Some(obj) = copy.as_object_mut() {
        obj.remove("proof");
    }
    copy
}

/// Parses a credential into `ssi`'s data-model types, so that the structural rules of
/// the VCDM (required properties, typed objects, URLs, dates) are `ssi`'s.
fn parse_model<T: serde::de::DeserializeOwned>(credential: Value) -> Result<T, VcError> {
    serde_json::from_value(credential).map_err(|err| VcError::Invalid(err.to_string()))
}

/// The issuer's id: a string, or an object's `id`.
pub fn issuer_id(credential: &Value) -> Option<String> {
    match credential.get("issuer")? {
        Value::String(id) => Some(id.clone()),
        Value::Object(obj) => obj.get("id")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// Whether `type` is or includes `name`.
pub fn has_type(value: &Value, name: &str) -> bool {
    match value.get("type") {
        Some(Value::String(one)) => one == name,
        Some(Value::Array(items)) => items.iter().any(|t| t.as_str() == Some(name)),
        _ => false,
    }
}

/// The JWT inside an `EnvelopedVerifiableCredential` (`data:application/vc+jwt,…`).
fn enveloped_jwt(envelope: &Value) -> Option<String> {
    let id = envelope.get("id")?.as_str()?;
    let (_, jwt) = id.strip_prefix("data:")?.split_once(',')?;
    Some(jwt.to_owned())
}

/// The decoded payload of a compact JWS, without verifying it (reading, not crypto).
fn jwt_payload(jwt: &str) -> Option<Value> {
    use base64::Engine;
    let mut parts = jwt.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Validity period of a VC-JWT: VCDM 2.0 `validFrom`/`validUntil` and the JWT `nbf`/`exp`.
fn validity_errors(
    credential: &Value,
    payload: &Value,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    let mut errors = Vec::new();
    let date = |name: &str| {
        credential
            .get(name)
            .and_then(Value::as_str)
            .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
    };
    if let Some(from) = date("validFrom")
        && now < from
    {
        errors.push(format!("not valid before {from}"));
    }
    if let Some(until) = date("validUntil")
        && now >= until
    {
        errors.push(format!("expired at {until}"));
    }
    let seconds = |name: &str| payload.get(name).and_then(Value::as_i64);
    if let Some(nbf) = seconds("nbf")
        && now.timestamp() < nbf
    {
        errors.push("JWT nbf is in the future".into());
    }
    if let Some(exp) = seconds("exp")
        && now.timestamp() >= exp
    {
        errors.push("JWT has expired".into());
    }
    errors
}

/// A VC-JOSE-COSE payload: the credential itself, typed `vc+jwt`.
struct VcJwtPayload(Value);

impl JwsPayload for VcJwtPayload {
    fn typ(&self) -> Option<&str> {
        Some(crate::membership::VC_JWT_TYP)
    }

    fn payload_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Owned(serde_json::to_vec(&self.0).unwrap_or_default())
    }
}

/// Signs `message` with an Ed25519 public key check through `ssi` (the primitive
/// credentials use), for the Wycheproof vectors: `true` when the signature verifies.
pub fn ed25519_verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let jwk = JWK::from(ssi::jwk::Params::OKP(ssi::jwk::OctetParams {
        curve: "Ed25519".into(),
        public_key: ssi::jwk::Base64urlUInt(public_key.to_vec()),
        private_key: None,
    }));
    ssi::claims::jws::verify_bytes(ssi::jwk::Algorithm::EdDSA, message, &jwk, signature).is_ok()
}
