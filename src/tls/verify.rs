//! The client-certificate verifier: rustls's WebPKI verifier (chain to a
//! client CA, validity dates, the clientAuth extended key usage), with
//! two checks it does not make.
//!
//! - A chain longer than [`MAX_CLIENT_INTERMEDIATES`] is refused before
//!   any of it is verified: every certificate a client sends is a
//!   candidate issuer the path builder may try (a signature check each),
//!   so a 100-certificate chain cost ~17 times a normal handshake.
//! - The leaf's key usage, when the extension is present, must include
//!   `digitalSignature`: a TLS client proves its key with a signature
//!   (CertificateVerify), and `openssl verify -purpose sslclient` refuses
//!   a certificate whose key usage forbids that (RFC 5280 §4.2.1.3).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, SignatureScheme,
};

use super::MAX_CLIENT_INTERMEDIATES;

/// Why [`ClientCertCheck`] refused a certificate that the WebPKI checks
/// alone would have accepted (or not yet looked at).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// More intermediates than [`MAX_CLIENT_INTERMEDIATES`].
    #[error("the client sent {0} intermediate certificates; at most {MAX_CLIENT_INTERMEDIATES} are accepted")]
    ChainTooLong(usize),
    /// The key usage extension lacks `digitalSignature`.
    #[error("the client certificate's key usage does not include digitalSignature")]
    NoDigitalSignature,
}

impl Refusal {
    /// The `reason` of the `tls_handshake_failed` security event.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::ChainTooLong(_) => "client_certificate_chain_too_long",
            Refusal::NoDigitalSignature => "client_certificate_bad_key_usage",
        }
    }

    fn into_error(self) -> Error {
        Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }
}

/// Wraps the WebPKI verifier; see the module documentation.
#[derive(Debug)]
pub(super) struct ClientCertCheck {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertCheck {
    pub(super) fn new(inner: Arc<dyn ClientCertVerifier>) -> Self {
        ClientCertCheck { inner }
    }
}

/// The leaf's key usage permits signing, or the extension is absent (no
/// restriction).
fn check_key_usage(leaf: &CertificateDer<'_>) -> Result<(), Error> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
        return Err(Error::InvalidCertificate(CertificateError::BadEncoding));
    };
    match cert.key_usage() {
        Ok(None) => Ok(()),
        Ok(Some(ku)) if ku.value.digital_signature() => Ok(()),
        Ok(Some(_)) => Err(Refusal::NoDigitalSignature.into_error()),
        Err(_) => Err(Error::InvalidCertificate(CertificateError::BadEncoding)),
    }
}

// === impl ClientCertCheck ===

impl ClientCertVerifier for ClientCertCheck {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if intermediates.len() > MAX_CLIENT_INTERMEDIATES {
            return Err(Refusal::ChainTooLong(intermediates.len()).into_error());
        }
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check_key_usage(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}
