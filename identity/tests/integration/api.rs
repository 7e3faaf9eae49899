//! The HTTP API's contract: status codes, JSON shapes, problem types, auth, limits.

use serde_json::{Value, json};

use crate::common::{Running, minimal_credential};

const PROBLEMS: &str = "https://example.invalid/swarmguard/problems/";

#[tokio::test]
async fn issues_ldp_vc_by_default_with_id_validfrom_and_status_entries() {
    let service = Running::start().await;
    assert!(service.did.starts_with("did:key:z6Mk"), "{}", service.did);
    let (status, body) = service
        .post(
            "/credentials/issue",
            &json!({ "credential": minimal_credential(&service.did) }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let vc = &body["verifiableCredential"];
    assert!(vc["id"].as_str().unwrap().starts_with("urn:uuid:"), "{vc}");
    assert!(vc["validFrom"].is_string());
    assert!(vc["validUntil"].is_string());
    assert_eq!(vc["proof"]["type"], "DataIntegrityProof");
    assert_eq!(vc["proof"]["cryptosuite"], "eddsa-rdfc-2022");
    let statuses = vc["credentialStatus"].as_array().unwrap();
    let purposes: Vec<&str> = statuses
        .iter()
        .map(|s| s["statusPurpose"].as_str().unwrap())
        .collect();
    assert_eq!(purposes, ["revocation", "suspension"]);
    for entry in statuses {
        assert_eq!(entry["type"], "BitstringStatusListEntry");
        assert!(
            entry["statusListCredential"]
                .as_str()
                .unwrap()
                .starts_with(&service.base)
        );
    }
    let (status, result) = service.verify(vc).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["verified"], true);
    assert_eq!(result["errors"], json!([]));
    for check in ["proof", "validity", "status"] {
        assert!(
            result["checks"].as_array().unwrap().contains(&json!(check)),
            "{result}"
        );
    }
}

#[tokio::test]
async fn issues_vc_jwt_for_vcdm_2_and_1_1() {
    let service = Running::start().await;
    let jwt = service.issue("jwt_vc_json").await;
    let jwt = jwt.as_str().expect("a compact JWT string");
    let header: Value = decode_part(jwt, 0);
    assert_eq!(header["typ"], "vc+jwt");
    assert_eq!(header["alg"], "EdDSA");
    let payload = decode_part(jwt, 1);
    assert_eq!(payload["issuer"], service.did.as_str());
    let (status, result) = service.verify(&json!(jwt)).await;
    assert_eq!(status, 200, "{result}");

    let v1 = json!({
        "@context": ["https://www.w3.org/2018/credentials/v1", "https://www.w3.org/2018/credentials/examples/v1"],
        "type": ["VerifiableCredential"],
        "issuer": service.did,
        "issuanceDate": "2024-01-01T00:00:00Z",
        "credentialSubject": { "id": "did:example:ebfeb1f712ebc6f1c276e12ec21" },
    });
    for format in ["jwt_vc_json", "ldp_vc"] {
        let (status, body) = service
            .post(
                "/credentials/issue",
                &json!({ "credential": v1, "options": { "format": format } }),
            )
            .await;
        assert_eq!(status, 201, "{format}: {body}");
        let vc = &body["verifiableCredential"];
        if format == "jwt_vc_json" {
            let payload = decode_part(vc.as_str().unwrap(), 1);
            assert!(payload["vc"].is_object(), "{payload}");
            assert_eq!(payload["iss"], service.did.as_str());
        } else {
            assert_eq!(vc["issuanceDate"], "2024-01-01T00:00:00Z");
        }
        let (status, result) = service.verify(vc).await;
        assert_eq!(status, 200, "{format}: {result}");
    }
}

fn decode_part(jwt: &str, index: usize) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(index).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn revocation_is_final_and_suspension_reversible() {
    let service = Running::start().await;
    for format in ["ldp_vc", "jwt_vc_json"] {
        let vc = service.issue(format).await;
        let id = match &vc {
            Value::String(jwt) => decode_part(jwt, 1)["id"].as_str().unwrap().to_owned(),
            other => other["id"].as_str().unwrap().to_owned(),
        };
        let change = |status: &str| json!({ "credentialId": id, "credentialStatus": [{ "type": "BitstringStatusListCredential", "status": status }] });
        let (status, body) = service
            .post("/credentials/status", &change("suspended"))
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, result) = service.verify(&vc).await;
        assert_eq!(status, 422, "{result}");
        assert_eq!(result["verified"], false);
        assert!(
            result["errors"]
                .as_array()
                .unwrap()
                .contains(&json!("suspended")),
            "{result}"
        );

        service.post("/credentials/status", &change("active")).await;
        assert_eq!(service.verify(&vc).await.0, 200);

        let (status, _) = service
            .post("/credentials/status", &change("revoked"))
            .await;
        assert_eq!(status, 200);
        let (status, result) = service.verify(&vc).await;
        assert_eq!(status, 422);
        assert!(
            result["errors"]
                .as_array()
                .unwrap()
                .contains(&json!("revoked")),
            "{result}"
        );
        let (status, problem) = service.post("/credentials/status", &change("active")).await;
        assert_eq!(status, 409, "{problem}");
        assert_eq!(problem["type"], format!("{PROBLEMS}conflict"));
    }
}

#[tokio::test]
async fn status_list_is_a_signed_bitstring_status_list_credential() {
    let service = Running::start().await;
    let vc = service.issue("ldp_vc").await;
    let url = vc["credentialStatus"][0]["statusListCredential"]
        .as_str()
        .unwrap()
        .to_owned();
    let index: usize = vc["credentialStatus"][0]["statusListIndex"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let id = vc["id"].as_str().unwrap();
    service.set_status(id, "revoked").await;
    let list: Value = service
        .client
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        list["type"]
            .as_array()
            .unwrap()
            .contains(&json!("BitstringStatusListCredential")),
        "{list}"
    );
    assert_eq!(list["credentialSubject"]["statusPurpose"], "revocation");
    let encoded = list["credentialSubject"]["encodedList"].as_str().unwrap();
    assert!(encoded.starts_with('u'), "multibase base64url");
    let bits = swarmguard_identity::membership::decode_encoded_list(encoded).unwrap();
    assert_eq!(bits.len() * 8, 131_072);
    assert_eq!(
        swarmguard_identity::membership::bit_at(&bits, index),
        Some(true)
    );
    // The list itself verifies.
    let (status, result) = service.verify(&list).await;
    assert_eq!(status, 200, "{result}");
    // And as a VC-JWT for the light verifier.
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
    assert_eq!(jwt.split('.').count(), 3, "{jwt}");
    assert_eq!(service.get("/status/revocation-99").await.0, 404);
    assert_eq!(service.get("/status/nonsense").await.0, 404);
}

#[tokio::test]
async fn issuing_needs_a_token_and_the_issuers_own_did() {
    let service = Running::start().await;
    let body = json!({ "credential": minimal_credential(&service.did) });
    let response = service
        .client
        .post(service.url("/credentials/issue"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], format!("{PROBLEMS}unauthorized"));
    let response = service
        .client
        .post(service.url("/credentials/issue"))
        .bearer_auth("wrong-token-wrong-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    for issuer in [
        json!("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"),
        json!({ "id": "did:example:other" }),
        json!(null),
        json!(7),
    ] {
        let mut credential = minimal_credential(&service.did);
        credential["issuer"] = issuer.clone();
        let (status, problem) = service
            .post("/credentials/issue", &json!({ "credential": credential }))
            .await;
        assert_eq!(status, 400, "{issuer}: {problem}");
        assert_eq!(problem["type"], format!("{PROBLEMS}invalid-credential"));
    }
    let mut credential = minimal_credential(&service.did);
    credential["issuer"] = json!({ "id": service.did, "name": "Agency" });
    assert_eq!(
        service
            .post("/credentials/issue", &json!({ "credential": credential }))
            .await
            .0,
        201
    );
    // The same id twice is a conflict.
    let mut credential = minimal_credential(&service.did);
    credential["id"] = json!("urn:uuid:0d7a5e0e-0000-4000-8000-000000000001");
    assert_eq!(
        service
            .post("/credentials/issue", &json!({ "credential": credential }))
            .await
            .0,
        201
    );
    assert_eq!(
        service
            .post("/credentials/issue", &json!({ "credential": credential }))
            .await
            .0,
        409
    );
}

#[tokio::test]
async fn malformed_input_is_400_never_500_and_big_bodies_413() {
    let service = Running::start().await;
    let cases: Vec<(&str, String)> = vec![
        ("/credentials/issue", "not json".into()),
        ("/credentials/issue", "[]".into()),
        ("/credentials/issue", r#"{"credential": 5}"#.into()),
        ("/credentials/issue", format!(r#"{{"credential": {}, "options": {{"format": "pdf"}}}}"#, minimal_credential(&service.did))),
        ("/credentials/issue", format!(r#"{{"credential": {}, "options": {{"format": 1}}}}"#, minimal_credential(&service.did))),
        ("/credentials/verify", "{".into()),
        ("/credentials/verify", "{}".into()),
        ("/credentials/verify", r#"{"verifiableCredential": 12}"#.into()),
        ("/credentials/verify", r#"{"verifiableCredential": {"type": "Nope"}}"#.into()),
        ("/presentations/verify", r#"{"verifiablePresentation": []}"#.into()),
        ("/presentations/verify", r#"{"verifiablePresentation": {"type": "VerifiablePresentation"}, "options": {"challenge": 3}}"#.into()),
        ("/credentials/status", r#"{"credentialId": 1}"#.into()),
        ("/credentials/status", r#"{"credentialId": "x", "credentialStatus": [{"status": "gone"}]}"#.into()),
    ];
    for (path, body) in cases {
        let response = service
            .client
            .post(service.url(path))
            .bearer_auth(&service.token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{path} {body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path} {body}"
        );
        let problem: Value = response.json().await.unwrap();
        assert!(
            problem["type"].as_str().unwrap().starts_with(PROBLEMS),
            "{problem}"
        );
    }
    // Garbage that looks like a JWT is a credential that does not verify: 422.
    let (status, result) = service.verify(&json!("a.b.c")).await;
    assert_eq!(status, 422, "{result}");
    let big = format!(
        r#"{{"verifiableCredential": "{}"}}"#,
        "x".repeat(300 * 1024)
    );
    let response = service
        .client
        .post(service.url("/credentials/verify"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], format!("{PROBLEMS}payload-too-large"));
    let (status, problem) = service.post("/credentials/status", &json!({ "credentialId": "urn:uuid:none", "credentialStatus": [{ "status": "revoked" }] })).await;
    assert_eq!(status, 404, "{problem}");
}

#[tokio::test]
async fn tampered_and_expired_credentials_are_422() {
    let service = Running::start().await;
    let mut vc = service.issue("ldp_vc").await;
    vc["credentialSubject"]["alumniOf"] = json!("Another School");
    let (status, result) = service.verify(&vc).await;
    assert_eq!(status, 422, "{result}");
    assert_eq!(result["verified"], false);

    let mut credential = minimal_credential(&service.did);
    credential["validFrom"] = json!("2020-01-01T00:00:00Z");
    credential["validUntil"] = json!("2021-01-01T00:00:00Z");
    for format in ["ldp_vc", "jwt_vc_json"] {
        let (status, body) = service
            .post(
                "/credentials/issue",
                &json!({ "credential": credential, "options": { "format": format } }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, result) = service.verify(&body["verifiableCredential"]).await;
        assert_eq!(status, 422, "{format}: {result}");
    }
    let mut jwt = service
        .issue("jwt_vc_json")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    // Change one signature character (to a different one: the last character of an
    // Ed25519 signature in base64url is one of A, Q, g, w).
    let last = jwt.pop().unwrap();
    jwt.push(if last == 'A' { 'Q' } else { 'A' });
    assert_eq!(service.verify(&json!(jwt)).await.0, 422);
}

#[tokio::test]
async fn trusted_issuers_are_enforced_when_configured() {
    let service = Running::start_with(|config| {
        config.trusted_issuers =
            vec!["did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK".into()];
    })
    .await;
    // Its own credentials are trusted; an untrusted issuer's are not.
    let vc = service.issue("ldp_vc").await;
    let (status, result) = service.verify(&vc).await;
    assert_eq!(status, 200, "{result}");
    assert!(
        result["checks"]
            .as_array()
            .unwrap()
            .contains(&json!("issuer"))
    );
    let other = Running::start().await;
    let foreign = other.issue("jwt_vc_json").await;
    let (status, result) = service.verify(&foreign).await;
    assert_eq!(status, 422, "{result}");
    assert!(
        result["errors"].to_string().contains("not trusted"),
        "{result}"
    );
}

#[tokio::test]
async fn another_issuers_status_list_is_fetched_over_http() {
    let issuer = Running::start().await;
    let verifier = Running::start().await;
    let vc = issuer.issue("ldp_vc").await;
    let (status, result) = verifier.verify(&vc).await;
    assert_eq!(status, 200, "{result}");
    assert!(
        result["checks"]
            .as_array()
            .unwrap()
            .contains(&json!("status"))
    );
    let (_, metrics) = verifier.get("/metrics").await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("swarmguard_identity_status_cache_lists 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn resolves_dids_with_the_error_codes_of_the_issue() {
    let service = Running::start().await;
    for prefix in ["/identifiers/", "/1.0/identifiers/"] {
        let (status, body) = service.get(&format!("{prefix}{}", service.did)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["didDocument"]["id"], service.did.as_str());
        assert!(body["didDocumentMetadata"].is_object());
        assert!(body["didResolutionMetadata"].is_object());
        let (status, body) = service.get(&format!("{prefix}not-a-did")).await;
        assert_eq!(
            (status, body["didResolutionMetadata"]["error"].as_str()),
            (400, Some("invalidDid"))
        );
        let (status, body) = service.get(&format!("{prefix}did:example:123")).await;
        assert_eq!(
            (status, body["didResolutionMetadata"]["error"].as_str()),
            (501, Some("methodNotSupported"))
        );
        let (status, body) = service.get(&format!("{prefix}did:key:z6MkBADBADBAD")).await;
        assert_eq!(status, 400, "{body}");
    }
    let (status, doc) = service.get("/.well-known/did.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["id"], service.did.as_str());
}

#[tokio::test]
async fn did_web_issuer_serves_its_document_and_verifies_offline() {
    let service = Running::start_with(|config| {
        config.did_method =
            swarmguard_identity::config::DidMethod::Web("id.example.gov:agency".into());
    })
    .await;
    assert_eq!(service.did, "did:web:id.example.gov:agency");
    let (status, doc) = service.get("/agency/did.json").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(
        doc["verificationMethod"][0]["id"],
        "did:web:id.example.gov:agency#key-1"
    );
    for format in ["ldp_vc", "jwt_vc_json"] {
        let vc = service.issue(format).await;
        let (status, result) = service.verify(&vc).await;
        assert_eq!(status, 200, "{format}: {result}");
    }
    let (status, body) = service
        .get("/identifiers/did:web:id.example.gov:agency")
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn openapi_metrics_and_health_are_served() {
    let service = Running::start().await;
    let (status, doc) = service.get("/openapi.json").await;
    assert_eq!(status, 200);
    for path in [
        "/credentials/issue",
        "/credentials/verify",
        "/presentations/verify",
        "/credentials/status",
        "/status/{list}",
        "/identifiers/{did}",
        "/1.0/identifiers/{did}",
        "/.well-known/did.json",
        "/metrics",
        "/healthz",
        "/members/issue",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from openapi.json"
        );
    }
    let vc = service.issue("ldp_vc").await;
    service.verify(&vc).await;
    let (_, metrics) = service.get("/metrics").await;
    let metrics = metrics.as_str().unwrap();
    for needle in [
        "swarmguard_identity_issued_total{format=\"ldp_vc\"} 1",
        "swarmguard_identity_verified_total{result=\"verified\"} 1",
        "swarmguard_identity_request_duration_seconds_bucket{code=\"201\",route=\"/credentials/issue\"",
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }
    assert_eq!(
        service.get("/healthz").await,
        (200, Value::String("ok\n".into()))
    );
}

#[tokio::test]
async fn presentations_check_proof_challenge_domain_holder_and_credentials() {
    use swarmguard_identity::vc::{Engine, IssuerDid, IssuerKey};
    let service = Running::start().await;
    let holder = IssuerKey::from_seed(&[11; 32], &IssuerDid::Key).unwrap();
    let engine = Engine::new(None);
    let mut credential = minimal_credential(&service.did);
    credential["credentialSubject"]["id"] = json!(holder.did().as_str());
    let (status, body) = service
        .post("/credentials/issue", &json!({ "credential": credential }))
        .await;
    assert_eq!(status, 201, "{body}");
    let vc = body["verifiableCredential"].clone();
    let presentation = json!({
        "@context": ["https://www.w3.org/ns/credentials/v2"],
        "type": ["VerifiablePresentation"],
        "holder": holder.did().as_str(),
        "verifiableCredential": [vc],
    });
    let signed = engine
        .sign_presentation(
            &holder,
            presentation.clone(),
            Some("c-123"),
            Some("verifier.example"),
        )
        .await
        .unwrap();
    let svc = &service;
    let verify = |vp: Value, challenge: &str, domain: &str| {
        let body = json!({ "verifiablePresentation": vp, "options": { "challenge": challenge, "domain": domain } });
        async move { svc.post("/presentations/verify", &body).await }
    };
    let (status, result) = verify(signed.clone(), "c-123", "verifier.example").await;
    assert_eq!(status, 200, "{result}");
    for check in ["proof", "challenge", "domain", "holder"] {
        assert!(
            result["checks"].as_array().unwrap().contains(&json!(check)),
            "{result}"
        );
    }
    assert_eq!(
        verify(signed.clone(), "other", "verifier.example").await.0,
        422
    );
    assert_eq!(
        verify(signed.clone(), "c-123", "elsewhere.example").await.0,
        422
    );

    // Signed by someone who is not the holder.
    let stranger = IssuerKey::from_seed(&[12; 32], &IssuerDid::Key).unwrap();
    let forged = engine
        .sign_presentation(
            &stranger,
            presentation,
            Some("c-123"),
            Some("verifier.example"),
        )
        .await
        .unwrap();
    let (status, result) = verify(forged, "c-123", "verifier.example").await;
    assert_eq!(status, 422, "{result}");
    assert!(result["errors"].to_string().contains("holder"), "{result}");

    // A revoked credential inside makes the presentation fail.
    let id = vc["id"].as_str().unwrap();
    service.set_status(id, "revoked").await;
    let (status, result) = verify(signed, "c-123", "verifier.example").await;
    assert_eq!(status, 422, "{result}");
    assert!(result["errors"].to_string().contains("revoked"), "{result}");
}

/// VCDM 1.1 presentations take the same path as 2.0 ones: signed, verified, and refused
/// once a signed field changes.
#[tokio::test]
async fn vcdm_1_1_presentations_sign_and_verify() {
    use swarmguard_identity::vc::{Engine, IssuerDid, IssuerKey};
    let service = Running::start().await;
    let holder = IssuerKey::from_seed(&[13; 32], &IssuerDid::Key).unwrap();
    let engine = Engine::new(None);
    let presentation = json!({
        "@context": ["https://www.w3.org/2018/credentials/v1"],
        "type": ["VerifiablePresentation"],
        "holder": holder.did().as_str(),
    });
    let signed = engine
        .sign_presentation(&holder, presentation, Some("c-1"), None)
        .await
        .unwrap();
    let verify = |vp: Value| {
        let body = json!({ "verifiablePresentation": vp, "options": { "challenge": "c-1" } });
        let svc = &service;
        async move { svc.post("/presentations/verify", &body).await }
    };
    let (status, result) = verify(signed.clone()).await;
    assert_eq!(status, 200, "{result}");
    assert!(
        result["checks"]
            .as_array()
            .unwrap()
            .contains(&json!("proof")),
        "{result}"
    );

    let mut tampered = signed;
    tampered["holder"] = json!("did:example:someone-else");
    let (status, result) = verify(tampered).await;
    assert_eq!(status, 422, "{result}");
}
