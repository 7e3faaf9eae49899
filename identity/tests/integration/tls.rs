//! HTTPS when a certificate and key are configured, with published URLs in https.

use swarmguard_identity::config::TlsFiles;

use crate::common::Running;

#[tokio::test]
async fn serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let service = Running::start_with(|config| {
        config.tls = Some(TlsFiles {
            cert: cert_path.clone(),
            key: key_path.clone(),
        });
    })
    .await;
    // Plain HTTP on the TLS port gets no answer.
    assert!(
        service.did.is_empty(),
        "plain HTTP must not be served on the TLS port"
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", service.addr)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/healthz", service.addr.port());
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap(), "ok\n");
    assert!(service.base.starts_with("https://"), "{}", service.base);
}
