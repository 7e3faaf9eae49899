//! Credential throughput, one core: VC-JWT and Data Integrity verification beside raw
//! ring Ed25519 verification measured in the same run (ratios printed), issue rates, and
//! HTTP verify requests per second on loopback. Not a test; run with
//! `cargo bench -p swarmguard-identity --bench credentials`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use swarmguard_identity::config::Config;
use swarmguard_identity::did::Did;
use swarmguard_identity::membership::{
    MembershipVerifier, Role, StatusListCache, member_credential,
};
use swarmguard_identity::vc::{Engine, Format, IssuerDid, IssuerKey};

/// How long each measurement runs.
const WINDOW: Duration = Duration::from_secs(3);

/// Runs `op` repeatedly for the window; returns operations per second.
fn rate(mut op: impl FnMut()) -> f64 {
    for _ in 0..10 {
        op();
    }
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < WINDOW {
        op();
        n += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn rate_async<F: std::future::Future<Output = ()>>(mut op: impl FnMut() -> F) -> f64 {
    for _ in 0..5 {
        op().await;
    }
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < WINDOW {
        op().await;
        n += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn line(name: &str, ours: f64, ring: f64, anchor: Option<f64>) {
    let anchor = anchor
        .map(|a| format!("  anchor {a:>8.0}/s  ours/anchor {:.2}", ours / a))
        .unwrap_or_default();
    println!(
        "{name:<44} {ours:>10.0}/s  {:>8.1} µs  ring/this {:>6.1}{anchor}",
        1e6 / ours,
        ring / ours
    );
}

fn main() {
    swarmguard_identity::server::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    // Raw ring Ed25519 verify of a 200-byte message: the yardstick.
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    use ring::signature::KeyPair;
    let message = [0x5au8; 200];
    let signature = pair.sign(&message);
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ED25519,
        pair.public_key().as_ref().to_vec(),
    );
    let ring_verify = rate(|| public.verify(&message, signature.as_ref()).unwrap());
    let ring_sign = rate(|| {
        std::hint::black_box(pair.sign(&message));
    });
    println!("one thread, release build; window {WINDOW:?} per figure\n");
    line(
        "ring Ed25519 verify (200 B)",
        ring_verify,
        ring_verify,
        Some(29_000.0),
    );
    line(
        "ring Ed25519 sign (200 B)",
        ring_sign,
        ring_verify,
        Some(54_700.0),
    );

    let key = IssuerKey::from_seed(&[3; 32], &IssuerDid::Key).unwrap();
    let engine = Engine::new(Some(&key));
    let credential = json!({
        "@context": ["https://www.w3.org/ns/credentials/v2", "https://www.w3.org/ns/credentials/examples/v2"],
        "id": "urn:uuid:58172aac-d8ba-11ed-83dd-0b3aef56cc33",
        "type": ["VerifiableCredential", "ExampleAlumniCredential"],
        "issuer": key.did().as_str(),
        "validFrom": "2023-01-01T00:00:00Z",
        "credentialSubject": { "id": "did:example:abcdefgh", "alumniOf": "The School of Examples" },
    });
    let jwt = engine
        .sign(&key, credential.clone(), Format::JwtVcJson, None)
        .await
        .unwrap();
    let ldp = engine
        .sign(&key, credential.clone(), Format::LdpVc, None)
        .await
        .unwrap();
    let now = chrono::Utc::now();

    let jwt_verify = rate_async(|| async {
        assert!(
            engine
                .verify_credential(&jwt, now)
                .await
                .unwrap()
                .verified()
        );
    })
    .await;
    line(
        "ssi VC-JWT verify (jwt_vc_json, did:key)",
        jwt_verify,
        ring_verify,
        Some(22_600.0),
    );
    let ldp_verify = rate_async(|| async {
        assert!(
            engine
                .verify_credential(&ldp, now)
                .await
                .unwrap()
                .verified()
        );
    })
    .await;
    line(
        "ssi Data Integrity verify (eddsa-rdfc-2022)",
        ldp_verify,
        ring_verify,
        Some(1_310.0),
    );

    // The light membership verifier (jsonwebtoken + ring), as swarmd runs it.
    let agent = Did::from_ed25519(&[4; 32]);
    let member = member_credential(key.did(), &agent, Role::Sensor, "2100-01-01T00:00:00Z");
    let member_jwt = engine
        .sign(&key, member, Format::JwtVcJson, None)
        .await
        .unwrap();
    let member_jwt = member_jwt.as_str().unwrap().to_owned();
    let mut verifier = MembershipVerifier::new(StatusListCache::new(Duration::from_secs(3600), 4));
    verifier.trust_did_key(key.did()).unwrap();
    let system_now = std::time::SystemTime::now();
    let light = rate(|| {
        verifier.verify(&member_jwt, system_now).unwrap();
    });
    line(
        "light membership verify (jsonwebtoken+ring)",
        light,
        ring_verify,
        None,
    );

    let jwt_issue = rate_async(|| async {
        std::hint::black_box(
            engine
                .sign(&key, credential.clone(), Format::JwtVcJson, None)
                .await
                .unwrap(),
        );
    })
    .await;
    line("ssi VC-JWT issue", jwt_issue, ring_verify, Some(31_000.0));
    let ldp_issue = rate_async(|| async {
        std::hint::black_box(
            engine
                .sign(&key, credential.clone(), Format::LdpVc, None)
                .await
                .unwrap(),
        );
    })
    .await;
    line(
        "ssi Data Integrity issue (eddsa-rdfc-2022)",
        ldp_issue,
        ring_verify,
        Some(1_330.0),
    );

    http(&jwt, &ldp).await;
}

/// identityd on loopback: issue through HTTP (with sled), and verify requests per second
/// from a few concurrent clients (the server runs on this same single-threaded runtime,
/// so this is one core serving).
async fn http(jwt: &Value, ldp: &Value) {
    let state = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        state_dir: state.path().to_owned(),
        listen: addr,
        ..Config::default()
    };
    tokio::spawn(swarmguard_identity::server::run(
        config,
        listener,
        std::future::pending(),
    ));
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let mut did = String::new();
    while did.is_empty() {
        if let Ok(r) = client
            .get(format!("{base}/.well-known/did.json"))
            .send()
            .await
        {
            did = r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
        }
    }
    let token = std::fs::read_to_string(state.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let body = |format: &str| {
        json!({
            "credential": {
                "@context": ["https://www.w3.org/ns/credentials/v2"],
                "type": ["VerifiableCredential"],
                "issuer": did,
                "credentialSubject": { "id": "did:example:abcdefgh" },
            },
            "options": { "format": format },
        })
    };
    println!();
    for format in ["jwt_vc_json", "ldp_vc"] {
        let body = body(format);
        let issued = rate_async(|| async {
            let r = client
                .post(format!("{base}/credentials/issue"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
        })
        .await;
        println!("HTTP issue {format:<12} (sled, flushed)      {issued:>10.0}/s");
    }
    // The foreign credentials have no status entries; verification is proof + validity.
    for (name, vc) in [("jwt_vc_json", jwt), ("ldp_vc", ldp)] {
        let request = json!({ "verifiableCredential": vc });
        let clients = 4;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (client, url, request) = (
                client.clone(),
                format!("{base}/credentials/verify"),
                request.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while started.elapsed() < WINDOW {
                    let r = client.post(&url).json(&request).send().await.unwrap();
                    assert_eq!(r.status().as_u16(), 200);
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap();
        }
        println!(
            "HTTP verify {name:<12} ({clients} clients, 1 core)  {:>10.0}/s",
            total as f64 / started.elapsed().as_secs_f64()
        );
    }
}
