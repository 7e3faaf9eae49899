//! TLS for the swarm's QUIC connections: a self-signed certificate made from the agent's
//! Ed25519 key, and verifiers on both sides (mutual TLS) that accept any self-signed
//! Ed25519 certificate and remember its key.
//!
//! There is no certificate authority in the swarm: trust comes from the membership
//! credential the peer presents right after the handshake (see [`super::admission`]). What
//! TLS gives is proof that the peer holds the private key of the certificate it sent (the
//! TLS 1.3 `CertificateVerify` signature); admission then requires the credential's
//! subject `did:key` to be that same key. So the verifiers only check that the certificate
//! carries an Ed25519 key and that the handshake signature is by it.
//!
//! Only rustls' ring provider is used, passed explicitly, never the process default.

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::SignatureScheme;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};

use super::peer::PeerId;

/// The ALPN protocol of the swarm; a peer speaking anything else fails the handshake.
pub const ALPN: &[u8] = b"swarmguard/1";
/// The name clients put in SNI. Certificates are not checked against it: peers are
/// identified by key, not by name.
pub const SERVER_NAME: &str = "swarmguard";

/// The DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410): SEQUENCE, the algorithm
/// identifier 1.3.101.112, and a 33-byte BIT STRING holding the 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make the certificate: {0}")]
    Certificate(String),
    #[error("cannot configure TLS: {0}")]
    Config(#[from] rustls::Error),
    #[error("cannot configure QUIC crypto: {0}")]
    Quic(String),
}

/// The ring provider, shared by every configuration made here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate for the key in `pkcs8` (an Ed25519 PKCS#8 document), self-signed.
pub fn self_signed(
    pkcs8: &[u8],
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let der = PrivatePkcs8KeyDer::from(pkcs8.to_vec());
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)
        .map_err(|err| TlsError::Certificate(err.to_string()))?;
    let params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()])
        .map_err(|err| TlsError::Certificate(err.to_string()))?;
    let cert = params
        .self_signed(&key_pair)
        .map_err(|err| TlsError::Certificate(err.to_string()))?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(der)))
}

/// The Ed25519 key a certificate carries, if it is a well-formed certificate of one.
pub fn certificate_key(cert: &CertificateDer<'_>) -> Option<PeerId> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    let spki = parsed.subject_public_key_info();
    let bytes: &[u8] = spki.as_ref();
    let key = bytes.strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    let key: [u8; 32] = key.try_into().ok()?;
    Some(PeerId::from_public_key(key))
}

/// The peer's key from a finished QUIC handshake.
pub fn peer_key(connection: &quinn::Connection) -> Option<PeerId> {
    let identity = connection.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certs.first().and_then(certificate_key)
}

/// The QUIC server side: any member may connect, and must show a certificate.
pub fn server_config(pkcs8: &[u8]) -> Result<quinn::ServerConfig, TlsError> {
    let (cert, key) = self_signed(pkcs8)?;
    let provider = provider();
    let mut tls = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(PeerVerifier { provider }))
        .with_single_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|err| TlsError::Quic(err.to_string()))?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
}

/// The QUIC client side: shows our certificate, accepts any Ed25519 one.
pub fn client_config(pkcs8: &[u8]) -> Result<quinn::ClientConfig, TlsError> {
    let (cert, key) = self_signed(pkcs8)?;
    let provider = provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerVerifier { provider }))
        .with_client_auth_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|err| TlsError::Quic(err.to_string()))?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

/// Accepts a certificate that carries an Ed25519 key, and handshake signatures by that
/// key. Used on both sides; who the key belongs to is admission's question.
#[derive(Debug)]
struct PeerVerifier {
    provider: Arc<CryptoProvider>,
}

impl PeerVerifier {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        certificate_key(cert)
            .map(drop)
            .ok_or(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            ))
    }

    fn verify13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::NoSignatureSchemesInCommon,
            ));
        }
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
}

/// The only handshake signature a member makes: its Ed25519 key is its identity.
const ED25519_ONLY: [SignatureScheme; 1] = [SignatureScheme::ED25519];

/// QUIC is TLS 1.3 only; a TLS 1.2 signature never reaches a verifier legitimately.
fn tls12_refused() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls13RequiredForQuic,
    ))
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ED25519_ONLY.to_vec()
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ED25519_ONLY.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::SigningKey;

    #[test]
    fn the_certificate_carries_the_agents_key() {
        let (key, pkcs8) = SigningKey::generate().unwrap();
        let (cert, _) = self_signed(&pkcs8).unwrap();
        assert_eq!(certificate_key(&cert), Some(key.peer_id()));
        assert_eq!(certificate_key(&CertificateDer::from(vec![1, 2, 3])), None);
    }
}
