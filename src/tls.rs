//! TLS termination and client certificates (contract §8).
//!
//! The listener's certificate chain and key, and the client CA bundle for
//! mutual TLS, are PEM files whose paths come from the variables
//! `gateway.tls` names. They are read at start-up (a missing file, or a key
//! that does not match the certificate, stops start-up naming the
//! variable) and again on SIGHUP: [`Terminator::reload`] swaps in a new
//! rustls configuration for new connections, while open connections keep
//! the one they were accepted with. TLS 1.2 and 1.3 only, ALPN `h2` and
//! `http/1.1`, rustls with the `ring` provider (no OpenSSL).
//!
//! A client certificate is verified by rustls against the client CAs
//! (chain, validity dates, key usage) during the handshake; a failed
//! handshake is a `tls_handshake_failed` security event. After it, the
//! certificate's identity (each SAN URI, e.g. a SPIFFE id, and DNS name, in
//! the order the certificate lists them) is looked up in
//! `gateway.tls.client_auth.identities`: a match names the calling service
//! for every request on the connection ([`ClientIdentity::Known`]); a valid
//! certificate that names no declared service is refused per request with
//! `403` ([`ClientIdentity::Unknown`]).

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use crate::config::{StartupEnv, StartupError};
use crate::spec::{ClientAuthSpec, TlsSpec};

/// Who a connection's client certificate says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIdentity {
    /// Plain HTTP, or TLS without a client certificate.
    Anonymous,
    /// A verified certificate naming a declared calling service.
    Known(&'static str),
    /// A verified certificate whose identities name no declared service:
    /// its first SAN (or `(no SAN)`), for the security event.
    Unknown(String),
}

/// The listener's TLS configuration, reloadable.
pub struct Terminator {
    spec: &'static TlsSpec,
    paths: Paths,
    config: ArcSwap<ServerConfig>,
}

impl std::fmt::Debug for Terminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminator")
            .field("cert", &self.paths.cert)
            .field("client_auth", &self.spec.client_auth.is_some())
            .finish()
    }
}

#[derive(Debug, Clone)]
struct Paths {
    cert: String,
    key: String,
    client_ca: Option<String>,
}

/// The path a variable names, or a start-up error saying what it is for.
fn path_of(var: &str, env: &StartupEnv, what: &str) -> Result<String, StartupError> {
    env.get(var)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| StartupError::MissingSecret {
            var: var.to_owned(),
            what: what.to_owned(),
        })
}

/// Reads a PEM certificate file (a chain or a CA bundle): at least one
/// certificate, errors naming the variable.
pub fn read_certs(var: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, StartupError> {
    let bad = |why: String| StartupError::BadKey {
        var: var.to_owned(),
        why,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(format!("cannot read `{path}`: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("`{path}` is not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(bad(format!("`{path}` holds no PEM certificate")));
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1), errors naming the
/// variable.
pub fn read_key(var: &str, path: &str) -> Result<PrivateKeyDer<'static>, StartupError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| StartupError::BadKey {
        var: var.to_owned(),
        why: format!("`{path}` holds no usable PEM private key: {e}"),
    })
}

/// A certificate chain and its private key, read from the files two
/// variables name, kept with their names until rustls has accepted them.
#[derive(Debug)]
pub struct CertAndKey {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: String,
    key_var: String,
    key_path: String,
}

impl CertAndKey {
    /// Reads the files whose paths `cert_var` and `key_var` hold; `what`
    /// says whose they are, for a missing variable.
    ///
    /// # Errors
    /// A missing variable, an unreadable file, no certificate or no key.
    pub fn from_env(
        cert_var: &str,
        key_var: &str,
        env: &StartupEnv,
        what: &str,
    ) -> Result<Self, StartupError> {
        let cert_path = path_of(
            cert_var,
            env,
            &format!("the path of the PEM certificate chain of {what}"),
        )?;
        let key_path = path_of(
            key_var,
            env,
            &format!("the path of the PEM private key of {what}"),
        )?;
        Self::read(cert_var, &cert_path, key_var, &key_path)
    }

    fn read(
        cert_var: &str,
        cert_path: &str,
        key_var: &str,
        key_path: &str,
    ) -> Result<Self, StartupError> {
        Ok(CertAndKey {
            chain: read_certs(cert_var, cert_path)?,
            key: read_key(key_var, key_path)?,
            cert_path: cert_path.to_owned(),
            key_var: key_var.to_owned(),
            key_path: key_path.to_owned(),
        })
    }

    /// Hands the pair to a rustls builder (`with_single_cert`,
    /// `with_client_auth_cert`), which checks that the key matches the
    /// certificate; its refusal becomes an error naming the key's variable.
    ///
    /// # Errors
    /// The key does not match the certificate or is unusable.
    pub fn install<T>(
        self,
        f: impl FnOnce(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) -> Result<T, rustls::Error>,
    ) -> Result<T, StartupError> {
        let CertAndKey {
            chain,
            key,
            cert_path,
            key_var,
            key_path,
        } = self;
        f(chain, key).map_err(|e| StartupError::BadKey {
            var: key_var,
            why: match e {
                rustls::Error::InconsistentKeys(_) => format!(
                    "the key in `{key_path}` does not match the certificate in `{cert_path}`"
                ),
                e => format!("`{key_path}` is not a usable private key: {e}"),
            },
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Terminator {
    /// Reads the certificate, key and client CAs `spec` names.
    ///
    /// # Errors
    /// A missing variable or file, a malformed or mismatched key, an empty
    /// CA bundle, naming the variable.
    pub fn new(spec: &'static TlsSpec, env: &StartupEnv) -> Result<Self, StartupError> {
        let paths = Paths {
            cert: path_of(
                spec.cert_env,
                env,
                "the path of the listener's PEM certificate chain",
            )?,
            key: path_of(
                spec.key_env,
                env,
                "the path of the listener's PEM private key",
            )?,
            client_ca: spec
                .client_auth
                .map(|c| path_of(c.ca_env, env, "the path of the PEM bundle of client CAs"))
                .transpose()?,
        };
        let config = build(spec, &paths)?;
        Ok(Terminator {
            spec,
            paths,
            config: ArcSwap::from_pointee(config),
        })
    }

    /// Re-reads the files (SIGHUP). New connections use the new
    /// configuration; open ones keep theirs. On error nothing changes.
    ///
    /// # Errors
    /// As [`Terminator::new`].
    pub fn reload(&self) -> Result<(), StartupError> {
        self.config.store(Arc::new(build(self.spec, &self.paths)?));
        Ok(())
    }

    /// The acceptor for the next connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }

    /// The identity of a connection's (already verified) client
    /// certificate.
    pub fn identify(&self, conn: &rustls::ServerConnection) -> ClientIdentity {
        let (Some(auth), Some(leaf)) = (
            self.spec.client_auth.as_ref(),
            conn.peer_certificates().and_then(|c| c.first()),
        ) else {
            return ClientIdentity::Anonymous;
        };
        identify(auth, leaf)
    }
}

/// The `reason` of a `tls_handshake_failed` security event.
pub fn failure_reason(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::NoCertificatesPresented => "client_certificate_missing",
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "client_certificate_expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "client_certificate_not_yet_valid",
            C::UnknownIssuer => "client_certificate_unknown_issuer",
            C::Revoked => "client_certificate_revoked",
            C::BadSignature => "client_certificate_bad_signature",
            _ => "client_certificate_invalid",
        },
        rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => {
            "incompatible_client"
        }
        _ => "handshake_failed",
    }
}

fn build(spec: &TlsSpec, paths: &Paths) -> Result<ServerConfig, StartupError> {
    let pair = CertAndKey::read(spec.cert_env, &paths.cert, spec.key_env, &paths.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| StartupError::Config {
            var: "gateway.tls".into(),
            why: e.to_string(),
        })?;
    let builder = match (spec.client_auth, &paths.client_ca) {
        (Some(auth), Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(read_certs(auth.ca_env, ca)?);
            if added == 0 {
                return Err(StartupError::BadKey {
                    var: auth.ca_env.to_owned(),
                    why: format!("`{ca}` holds no usable CA certificate"),
                });
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if auth.required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|e| StartupError::BadKey {
                var: auth.ca_env.to_owned(),
                why: format!("`{ca}`: {e}"),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = pair.install(|chain, key| builder.with_single_cert(chain, key))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The declared service a certificate names: its SAN URIs and DNS names,
/// in the certificate's order, looked up in the identity map (DNS names
/// without regard to case).
fn identify(auth: &ClientAuthSpec, leaf: &CertificateDer<'_>) -> ClientIdentity {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
        // rustls accepted it, so this does not happen; refuse rather than
        // guess.
        return ClientIdentity::Unknown("(unparsable certificate)".into());
    };
    let names: Vec<(bool, &str)> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some((false, *u)),
                GeneralName::DNSName(d) => Some((true, *d)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    for (dns, name) in &names {
        let found = auth.identities.iter().find(|(id, _)| {
            if *dns {
                id.eq_ignore_ascii_case(name)
            } else {
                id == name
            }
        });
        if let Some((_, service)) = found {
            return ClientIdentity::Known(service);
        }
    }
    ClientIdentity::Unknown(
        names
            .first()
            .map_or_else(|| "(no SAN)".to_owned(), |(_, n)| (*n).to_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    static AUTH: ClientAuthSpec = ClientAuthSpec {
        ca_env: "CA",
        required: true,
        identities: &[
            ("spiffe://corp.example/ns/prod/sa/billing", "billing"),
            ("reporting.internal.example", "reporting"),
        ],
    };

    fn cert(sans: &[rcgen::SanType]) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = sans.to_vec();
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn identities_come_from_san_uris_and_dns_names() {
        use rcgen::SanType;
        let uri = |s: &str| SanType::URI(s.try_into().unwrap());
        let dns = |s: &str| SanType::DnsName(s.try_into().unwrap());
        let billing = cert(&[
            dns("ignored.example"),
            uri("spiffe://corp.example/ns/prod/sa/billing"),
        ]);
        assert_eq!(identify(&AUTH, &billing), ClientIdentity::Known("billing"));
        let reporting = cert(&[dns("Reporting.Internal.Example")]);
        assert_eq!(
            identify(&AUTH, &reporting),
            ClientIdentity::Known("reporting")
        );
        // URIs compare exactly: another trust domain is someone else.
        let other = cert(&[uri("spiffe://evil.example/ns/prod/sa/billing")]);
        assert_eq!(
            identify(&AUTH, &other),
            ClientIdentity::Unknown("spiffe://evil.example/ns/prod/sa/billing".into())
        );
        assert_eq!(
            identify(&AUTH, &cert(&[])),
            ClientIdentity::Unknown("(no SAN)".into())
        );
    }
}
