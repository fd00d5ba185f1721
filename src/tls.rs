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
//! (chain, validity dates, extended key usage) during the handshake, with
//! two more checks ([`verify`]): at most [`MAX_CLIENT_INTERMEDIATES`]
//! intermediates, and a key usage that allows signing. A failed handshake
//! is a `tls_handshake_failed` security event, at most
//! [`REFUSED_HANDSHAKES_LOGGED_PER_SECOND`] lines a second and then one
//! `tls_handshake_failed_suppressed` line with the count
//! ([`Terminator::refused`]). After it, the certificate's validity dates
//! are checked again against the clock, because a resumed session
//! ([`sessions`]: TLS 1.2 ids, TLS 1.3 tickets, at most
//! [`SESSION_LIFETIME`] old) carries the certificate of the full handshake
//! that made it and rustls does not look at it again: an expired one is
//! refused like a full handshake with it. Then the certificate's identity
//! (each SAN URI, e.g. a SPIFFE id, and DNS name, in the order the
//! certificate lists them) is looked up in
//! `gateway.tls.client_auth.identities`: a match names the calling service
//! for every request on the connection ([`ClientIdentity::Known`]); a valid
//! certificate that names no declared service is refused per request with
//! `403` ([`ClientIdentity::Unknown`]), except `GET /health`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use crate::config::{StartupEnv, StartupError};
use crate::log::throttle::{Throttle, Verdict};
use crate::log::{self, AccessSink};
use crate::spec::{ClientAuthSpec, TlsSpec};

pub mod sessions;
pub mod verify;

pub use sessions::SESSION_LIFETIME;

/// The most intermediate certificates a client may present with its own.
/// Real client chains have one or two; webpki builds paths through at
/// most six.
pub const MAX_CLIENT_INTERMEDIATES: usize = 8;

/// Refused handshakes logged per second, each on its own line; the rest
/// are counted into one summary line a second later.
pub const REFUSED_HANDSHAKES_LOGGED_PER_SECOND: u64 = 10;

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
    /// The log budget of refused handshakes, shared with the task that
    /// writes the summary line.
    refusals: Arc<Throttle>,
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
            refusals: Arc::new(Throttle::new(REFUSED_HANDSHAKES_LOGGED_PER_SECOND)),
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

    /// The identity of a connection's client certificate, verified by
    /// the handshake that made its session: on a resumed connection, a
    /// handshake that may be long past, so the certificate's dates are
    /// checked against the clock here, on every connection.
    ///
    /// # Errors
    /// The certificate has expired (or is not valid yet): the connection
    /// is refused like a handshake presenting it ([`Terminator::refused`]).
    pub fn identify(
        &self,
        conn: &rustls::ServerConnection,
    ) -> Result<ClientIdentity, rustls::Error> {
        let (Some(auth), Some(leaf)) = (
            self.spec.client_auth.as_ref(),
            conn.peer_certificates().and_then(|c| c.first()),
        ) else {
            return Ok(ClientIdentity::Anonymous);
        };
        identify(auth, leaf, UnixTime::now())
    }

    /// Logs a refused handshake (or resumed connection) from `peer` as a
    /// `tls_handshake_failed` security event, within the log budget: past
    /// [`REFUSED_HANDSHAKES_LOGGED_PER_SECOND`], refusals are counted and
    /// one `tls_handshake_failed_suppressed` line reports the count a
    /// second after the first of them.
    pub fn refused(&self, sink: &AccessSink, peer: SocketAddr, e: &rustls::Error) {
        match self.refusals.admit(crate::time::now_unix()) {
            Verdict::Write => sink.write(&log::TlsEvent {
                timestamp: log::now_rfc3339(),
                level: "WARN",
                target: "security",
                event: "tls_handshake_failed",
                reason: failure_reason(e),
                detail: failure_detail(e),
                client_ip: peer.ip().to_canonical().to_string(),
            }),
            Verdict::Suppress { first: false } => {}
            Verdict::Suppress { first: true } => {
                let (refusals, sink) = (self.refusals.clone(), sink.clone());
                let summary = move || {
                    let suppressed = refusals.take_suppressed();
                    if suppressed > 0 {
                        sink.write(&log::TlsSuppressed {
                            timestamp: log::now_rfc3339(),
                            level: "WARN",
                            target: "security",
                            event: "tls_handshake_failed_suppressed",
                            suppressed,
                        });
                    }
                };
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        rt.spawn(async move {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            summary();
                        });
                    }
                    Err(_) => summary(),
                }
            }
        }
    }
}

/// The `reason` of a `tls_handshake_failed` security event.
pub fn failure_reason(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::NoCertificatesPresented => "client_certificate_missing",
        rustls::Error::InvalidCertificate(c) => match c {
            C::Other(other) => other
                .0
                .downcast_ref::<verify::Refusal>()
                .map_or("client_certificate_invalid", |r| r.reason()),
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

/// The `detail` of a `tls_handshake_failed` security event: rustls's
/// description, or ours for a refusal of [`verify`] (which rustls would
/// show in its debug form).
fn failure_detail(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            match other.0.downcast_ref::<verify::Refusal>() {
                Some(r) => format!("invalid peer certificate: {r}"),
                None => e.to_string(),
            }
        }
        e => e.to_string(),
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
            builder.with_client_cert_verifier(Arc::new(verify::ClientCertCheck::new(verifier)))
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = pair.install(|chain, key| builder.with_single_cert(chain, key))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Sessions (TLS 1.2 ids and TLS 1.3 tickets) live at most
    // SESSION_LIFETIME, in a store new with each configuration.
    config.session_storage = sessions::Sessions::new();
    Ok(config)
}

/// Refuses a certificate outside its validity dates at `now`, as the
/// handshake's verifier would (`notAfter` is the last valid second).
fn check_validity(
    cert: &x509_parser::certificate::X509Certificate<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    use rustls::CertificateError as C;
    let at = |t: i64| UnixTime::since_unix_epoch(Duration::from_secs(t.max(0).unsigned_abs()));
    let validity = cert.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    let t = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if t > not_after {
        return Err(rustls::Error::InvalidCertificate(C::ExpiredContext {
            time: now,
            not_after: at(not_after),
        }));
    }
    if t < not_before {
        return Err(rustls::Error::InvalidCertificate(C::NotValidYetContext {
            time: now,
            not_before: at(not_before),
        }));
    }
    Ok(())
}

/// The declared service a certificate valid at `now` names: its SAN URIs
/// and DNS names, in the certificate's order, looked up in the identity
/// map (DNS names without regard to case).
fn identify(
    auth: &ClientAuthSpec,
    leaf: &CertificateDer<'_>,
    now: UnixTime,
) -> Result<ClientIdentity, rustls::Error> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
        // rustls accepted it, so this does not happen; refuse rather than
        // guess.
        return Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ));
    };
    check_validity(&cert, now)?;
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
            return Ok(ClientIdentity::Known(service));
        }
    }
    Ok(ClientIdentity::Unknown(names.first().map_or_else(
        || "(no SAN)".to_owned(),
        |(_, n)| (*n).to_owned(),
    )))
}

#[cfg(test)]
mod tests;
