//! The light membership verifier (no ssi) against credentials and status lists that the
//! real service issued: signature, trust, expiry, revocation and suspension, and the
//! status-list cache that the caller drives.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use swarmguard_identity::did::Did;
use swarmguard_identity::membership::{MembershipError, MembershipVerifier, Role, StatusListCache};

use crate::common::Running;

async fn enrol(service: &Running, agent: &Did, role: &str) -> String {
    let (status, body) = service
        .post(
            "/members/issue",
            &json!({ "did": agent.as_str(), "role": role }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["verifiableCredential"].as_str().unwrap().to_owned()
}

async fn fetch_lists(service: &Running, verifier: &mut MembershipVerifier, now: SystemTime) {
    for url in verifier.cache.due(now) {
        let jwt = service
            .client
            .get(&url)
            .header("accept", "application/vc+jwt")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let trusted = verifier.trusted_keys().clone();
        verifier
            .cache
            .insert_jwt(&url, &jwt, &trusted, now)
            .unwrap();
    }
}

#[tokio::test]
async fn a_member_is_admitted_until_suspended_or_revoked() {
    let service = Running::start().await;
    let agent = Did::from_ed25519(&[42; 32]);
    let jwt = enrol(&service, &agent, "sentinel").await;

    let mut verifier = MembershipVerifier::new(StatusListCache::new(Duration::from_secs(300), 8));
    verifier
        .trust_did_key(&Did::parse(&service.did).unwrap())
        .unwrap();
    let now = SystemTime::now();
    // No status list yet: the verifier says which one to fetch rather than guess.
    assert!(matches!(
        verifier.verify(&jwt, now),
        Err(MembershipError::StatusUnavailable(_))
    ));
    fetch_lists(&service, &mut verifier, now).await;
    let member = verifier.verify(&jwt, now).unwrap();
    assert_eq!(member.did, agent);
    assert_eq!(member.role, Role::Sentinel);
    assert_eq!(member.issuer.as_str(), service.did);
    let until = member.valid_until.unwrap();
    assert!(
        until > now + Duration::from_secs(29 * 86400)
            && until < now + Duration::from_secs(31 * 86400)
    );
    // Expired after its validity.
    assert!(matches!(
        verifier.verify(&jwt, until + Duration::from_secs(1)),
        Err(MembershipError::Expired(_)) | Err(MembershipError::StatusUnavailable(_))
    ));

    // The same credential also verifies through the full (ssi) path.
    let (status, result) = service.verify(&json!(jwt)).await;
    assert_eq!(status, 200, "{result}");

    let id = member.credential_id.unwrap();
    let change = |status: &str| json!({ "credentialId": id, "credentialStatus": [{ "type": "BitstringStatusListCredential", "status": status }] });
    service
        .post("/credentials/status", &change("suspended"))
        .await;
    // Cached lists stay in force until their TTL; then the caller refreshes them.
    assert!(verifier.verify(&jwt, now).is_ok());
    let later = now + Duration::from_secs(301);
    fetch_lists(&service, &mut verifier, later).await;
    assert_eq!(
        verifier.verify(&jwt, later),
        Err(MembershipError::Suspended)
    );
    service
        .post("/credentials/status", &change("revoked"))
        .await;
    let later = later + Duration::from_secs(301);
    fetch_lists(&service, &mut verifier, later).await;
    assert_eq!(verifier.verify(&jwt, later), Err(MembershipError::Revoked));
}

#[tokio::test]
async fn untrusted_issuers_forged_and_non_membership_credentials_are_refused() {
    let service = Running::start().await;
    let agent = Did::from_ed25519(&[7; 32]);
    let jwt = enrol(&service, &agent, "sensor").await;
    let verifier = MembershipVerifier::new(StatusListCache::new(Duration::from_secs(60), 4));
    assert!(matches!(
        verifier.verify(&jwt, SystemTime::now()),
        Err(MembershipError::UntrustedIssuer(_))
    ));

    let mut verifier = MembershipVerifier::new(StatusListCache::new(Duration::from_secs(60), 4));
    verifier
        .trust_did_key(&Did::parse(&service.did).unwrap())
        .unwrap();
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    // A payload changed after signing.
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut payload: Value = serde_json::from_slice(&engine.decode(&parts[1]).unwrap()).unwrap();
    payload["credentialSubject"]["role"] = json!("operator");
    parts[1] = engine.encode(serde_json::to_vec(&payload).unwrap());
    assert_eq!(
        verifier.verify(&parts.join("."), SystemTime::now()),
        Err(MembershipError::Signature)
    );
    assert!(matches!(
        verifier.verify("not a jwt", SystemTime::now()),
        Err(MembershipError::Malformed(_))
    ));

    // A credential that is not a membership credential, even from the trusted issuer.
    let other = service.issue("jwt_vc_json").await;
    assert!(matches!(
        verifier.verify(other.as_str().unwrap(), SystemTime::now()),
        Err(MembershipError::NotMembership(_))
    ));
    // Only did:key agents can be enrolled.
    let (status, _) = service
        .post(
            "/members/issue",
            &json!({ "did": "did:web:example.com", "role": "sensor" }),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = service
        .post(
            "/members/issue",
            &json!({ "did": agent.as_str(), "role": "king" }),
        )
        .await;
    assert_eq!(status, 400);
}
