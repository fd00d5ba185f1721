//! The proxy: upstream URIs from route templates, a keep-alive
//! connection pool per upstream ([`pool`]), and the response-head timeout.
//! Bodies stream both ways untouched.

pub mod pool;

use std::time::{Duration, Instant};

use http::uri::{PathAndQuery, Uri};
use http::{HeaderValue, Request, Response};
use http_body_util::LengthLimitError;
use hyper_util::client::legacy::connect::HttpConnector;

use std::sync::Arc;

use crate::body::client::BodyTimeout;
use crate::config::{upstream_url, StartupEnv, StartupError, UpstreamUrl};
use crate::error::{ErrorKind, GatewayError};
use crate::outbound::{Clock, Signer};
use crate::policy::breaker::{Admission, CircuitBreaker};
use crate::routing::PathMatch;
use crate::spec::{Part, ServiceSpec};

/// A resolved upstream service.
#[derive(Debug)]
pub struct Upstream {
    /// Its name in the spec.
    pub name: &'static str,
    /// Where it lives.
    pub url: UpstreamUrl,
    /// `Host` sent to it: its own authority.
    pub host: HeaderValue,
    /// Adds the gateway's proof of identity to each request.
    pub signer: Signer,
    /// Keep-alive connections to this upstream.
    pool: pool::Pool,
    /// The upstream's circuit, if it has a breaker.
    pub breaker: Option<CircuitBreaker>,
}

impl Upstream {
    /// Adds the gateway's proof of identity to one attempt's head (each
    /// attempt is signed anew: a retry gets a fresh timestamp and nonce).
    ///
    /// # Errors
    /// 502 when the proof cannot be made.
    pub fn sign(
        &self,
        head: &mut http::request::Parts,
        ctx: &crate::chain::RequestCtx,
    ) -> Result<(), GatewayError> {
        let outgoing = crate::outbound::Outgoing {
            method: head.method.as_str(),
            path_and_query: head.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            tenant: ctx.tenant.as_deref(),
            body_sha256: ctx.body_sha256.as_deref(),
        };
        self.signer
            .sign(&mut head.headers, &outgoing)
            .map_err(|why| GatewayError::upstream(ErrorKind::BadGateway, why))
    }
}

/// A request body on its way upstream: the client's stream (limited and
/// watched for stalls), or a body the gateway read first (to verify a
/// signature over it).
pub type ProxyBody =
    http_body_util::Either<crate::body::client::ClientBody, http_body_util::Full<bytes::Bytes>>;

/// What connects to upstreams: plain TCP for `http://`, rustls for
/// `https://` (certificates always verified).
pub type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// How long an upstream connection may sit idle in the pool before it is
/// closed: hyper-util's client default. Upstreams that close sooner are
/// fine: a connection they closed is never handed out.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Every resolved service, each with its own connection pool.
#[derive(Debug)]
pub struct Proxy {
    upstreams: Vec<Upstream>,
}

/// A service's base URL, refused when it is plain HTTP and
/// `GATEWAY_ENV=production`, unless the service allows it
/// (`allow_plaintext: true`). The gateway's proxy and
/// [`crate::service::ServiceClient`] both start here.
///
/// # Errors
/// An unusable URL, or plain HTTP in production, naming the variable.
pub fn checked_url(s: &ServiceSpec, env: &StartupEnv) -> Result<UpstreamUrl, StartupError> {
    let url = upstream_url(s, env)?;
    let production = env.get("GATEWAY_ENV") == Some("production");
    if production && url.scheme == http::uri::Scheme::HTTP && !s.allow_plaintext {
        let var = match env.get(s.url_env) {
            Some(_) => s.url_env.to_owned(),
            None => format!("default URL of service `{}`", s.name),
        };
        return Err(StartupError::UpstreamUrl {
            var,
            value: format!("{}://{}", url.scheme, url.authority),
            why: "plain HTTP is refused when GATEWAY_ENV=production (set `allow_plaintext: true` on the service to accept it)",
        });
    }
    Ok(url)
}

/// The connector for one service: `https://` upstreams are verified
/// against the CA bundle its `tls.ca_file_env` names, else the system
/// roots (the bundled Mozilla roots where the system has none), with SNI
/// from the URL's host. No setting disables verification.
///
/// # Errors
/// The CA bundle cannot be read or holds no certificate, naming its
/// variable.
pub fn connector(
    s: &ServiceSpec,
    env: &StartupEnv,
    connect_timeout: Duration,
) -> Result<Connector, StartupError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(var) = s.tls_ca_env {
        let bad = |why: String| StartupError::BadKey {
            var: var.to_owned(),
            why,
        };
        let path = env.get(var).ok_or_else(|| StartupError::MissingSecret {
            var: var.to_owned(),
            what: format!("the path of the CA bundle for service `{}`", s.name),
        })?;
        let certs = crate::tls::read_certs(var, path)?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(bad(format!("`{path}` holds no usable CA certificate")));
        }
    } else {
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if roots.is_empty() {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartupError::Config {
            var: format!("services.{}.tls", s.name),
            why: e.to_string(),
        })?
        .with_root_certificates(roots);
    let config = match s.tls_client_cert {
        Some(c) => {
            let what = format!("the client certificate for service `{}`", s.name);
            crate::tls::CertAndKey::from_env(c.cert_env, c.key_env, env, &what)?
                .install(|chain, key| config.with_client_auth_cert(chain, key))?
        }
        None => config.with_no_client_auth(),
    };
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    // The TLS layer wraps this connector, so it must accept https URIs too.
    http.enforce_http(false);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// The gateway's one clock dates outbound signatures too.
impl Clock for crate::time::Clock {
    fn now_unix(&self) -> u64 {
        crate::time::Clock::now_unix(self)
    }
}

impl Proxy {
    /// Resolves every service's URL and builds the pooled client.
    ///
    /// # Errors
    /// A service URL that cannot be used, naming its variable.
    pub fn new(
        gateway_name: &'static str,
        services: &'static [ServiceSpec],
        env: &StartupEnv,
        connect_timeout: Duration,
        clock: &crate::time::Clock,
    ) -> Result<Self, StartupError> {
        // One clock dates the signatures and times the breakers.
        let signing_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let mut upstreams = Vec::with_capacity(services.len());
        for s in services {
            let url = checked_url(s, env)?;
            let signer = Signer::new(gateway_name, s.name, s.identity, env, signing_clock.clone())?;
            let host = HeaderValue::from_str(url.authority.as_str()).map_err(|_| {
                StartupError::UpstreamUrl {
                    var: s.url_env.to_owned(),
                    value: url.authority.to_string(),
                    why: "the host is not a valid header value",
                }
            })?;
            let base = Uri::builder()
                .scheme(url.scheme.clone())
                .authority(url.authority.clone())
                .path_and_query("/")
                .build()
                .map_err(|_| StartupError::UpstreamUrl {
                    var: s.url_env.to_owned(),
                    value: url.authority.to_string(),
                    why: "not a usable URL",
                })?;
            let connector = connector(s, env, s.connect_timeout.unwrap_or(connect_timeout))?;
            let pool = pool::Pool::new(connector, base, POOL_IDLE_TIMEOUT);
            upstreams.push(Upstream {
                name: s.name,
                url,
                host,
                signer,
                pool,
                breaker: s
                    .breaker
                    .map(|b| CircuitBreaker::with_clock(s.name, b, clock.clone())),
            });
        }
        Ok(Proxy { upstreams })
    }

    /// Re-reads file-based credentials (SIGHUP).
    ///
    /// # Errors
    /// The first credential that cannot be re-read; the others are still
    /// reloaded and old secrets stay in use where reloading failed.
    pub fn reload(&self) -> Result<(), StartupError> {
        let mut first = Ok(());
        for u in &self.upstreams {
            if let Err(e) = u.signer.reload() {
                if first.is_ok() {
                    first = Err(e.into());
                }
            }
        }
        first
    }

    /// The resolved upstream at `index`.
    pub fn upstream(&self, index: usize) -> Option<&Upstream> {
        self.upstreams.get(index)
    }

    /// Sends the request and waits for the response head, at most
    /// `timeout`. On timeout the request future is dropped, which closes
    /// the upstream connection rather than leaking it.
    ///
    /// # Errors
    /// 502 when the upstream cannot be reached or answers badly, 504 on
    /// timeout.
    pub async fn send(
        &self,
        upstream: &Upstream,
        req: Request<ProxyBody>,
        timeout: Duration,
    ) -> Result<(Response<pool::UpstreamBody>, Duration), GatewayError> {
        let started = Instant::now();
        match tokio::time::timeout(timeout, upstream.pool.send(req)).await {
            Ok(Ok(resp)) => Ok((resp, started.elapsed())),
            Ok(Err(pool::SendError::Request(e))) if caused_by::<LengthLimitError>(&e) => {
                Err(GatewayError::client(ErrorKind::PayloadTooLarge))
            }
            // The client stalled its body: its fault, answered 408.
            Ok(Err(pool::SendError::Request(e))) if caused_by::<BodyTimeout>(&e) => {
                Err(GatewayError::client(ErrorKind::RequestTimeout))
            }
            // The client's own body stream broke (bad chunked framing,
            // early close): the client's fault, not the upstream's.
            Ok(Err(pool::SendError::Request(e))) if e.is_user() => Err(GatewayError::client(
                ErrorKind::BadRequest("Malformed request body"),
            )),
            Ok(Err(pool::SendError::Request(e))) => Err(GatewayError::upstream(
                ErrorKind::BadGateway,
                format!("upstream response error: {}", chain(&e)),
            )),
            Ok(Err(pool::SendError::Connect(e))) => {
                let mut err = GatewayError::upstream(
                    ErrorKind::BadGateway,
                    format!("upstream connect error: {}", chain(&*e)),
                );
                // Only a failed connection certainly never reached the
                // upstream, so only it is safe to retry.
                err.retryable = true;
                Err(err)
            }
            Err(_) => Err(GatewayError::upstream(
                ErrorKind::GatewayTimeout,
                format!("no response head within {} ms", timeout.as_millis()),
            )),
        }
    }
}

/// One request through an upstream's circuit breaker: admitted or refused
/// up front, its outcome recorded after, and a probe slot given back if the
/// request is abandoned (the client left) before an outcome is known.
#[derive(Debug)]
pub struct BreakerCall<'u> {
    breaker: Option<&'u CircuitBreaker>,
    admission: Admission,
    done: bool,
}

impl<'u> BreakerCall<'u> {
    /// Asks the upstream's breaker.
    ///
    /// # Errors
    /// `503` when the circuit is open: the upstream is not contacted.
    pub fn admit(upstream: &'u Upstream) -> Result<Self, GatewayError> {
        let admission = upstream
            .breaker
            .as_ref()
            .map_or(Admission::Allowed, |b| b.admit());
        if admission == Admission::Rejected {
            return Err(GatewayError::upstream(
                ErrorKind::ServiceUnavailable,
                "circuit open",
            ));
        }
        Ok(BreakerCall {
            breaker: upstream.breaker.as_ref(),
            admission,
            done: false,
        })
    }

    /// Records the outcome: 5xx, timeouts and connection failures count
    /// against the upstream; 4xx and client-side errors do not.
    pub fn record<T>(mut self, result: &Result<(Response<T>, Duration), GatewayError>) {
        self.done = true;
        let Some(b) = self.breaker else {
            return;
        };
        match result {
            Ok((resp, _)) => b.record(self.admission, !resp.status().is_server_error()),
            Err(e) if e.side == crate::error::Side::Client => b.release(self.admission),
            Err(_) => b.record(self.admission, false),
        }
    }
}

impl Drop for BreakerCall<'_> {
    fn drop(&mut self) {
        if let (false, Some(b)) = (self.done, self.breaker) {
            b.release(self.admission);
        }
    }
}

/// Whether the request failed because of the client's body: `T` is
/// [`LengthLimitError`] (it grew past the route's limit) or
/// [`BodyTimeout`] (it stalled).
fn caused_by<T: std::error::Error + 'static>(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<T>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// An error and its causes, `: `-separated ("tcp connect error:
/// Connection refused (os error 111)"), for the access log.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // Some errors repeat their cause in their own message.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Writes the upstream path for a matched route: the template (the
/// route's, or its selected version's) with parameters substituted as
/// received (never decoded), then the query. `rest_segment` is where a
/// catch-all's or prefix route's rest starts in `path`, counted in
/// segments ([`crate::spec::RouteSpec::rest_segment`]).
pub fn upstream_path<V>(
    template: &[Part],
    rest_segment: Option<usize>,
    m: &PathMatch<'_, '_, V>,
    path: &str,
    query: Option<&str>,
    base_path: &str,
) -> String {
    let mut out = String::with_capacity(base_path.len() + path.len() + 16);
    out.push_str(base_path);
    let start = out.len();
    // Where segment `rest_segment` starts: at the `/` before it.
    let rest_at = rest_segment.and_then(|k| path.match_indices('/').nth(k).map(|(i, _)| i));
    for part in template {
        match *part {
            Part::Lit(l) => out.push_str(l),
            Part::Param(i) => out.push_str(m.param(i).unwrap_or("")),
            Part::Rest => out.push_str(rest_at.and_then(|i| path.get(i + 1..)).unwrap_or("")),
            Part::Suffix => out.push_str(rest_at.and_then(|i| path.get(i..)).unwrap_or("")),
        }
    }
    if out.len() == start {
        out.push('/');
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The absolute URI of an upstream request.
///
/// # Errors
/// 502 if the result is not a valid URI (cannot happen for sane paths).
pub fn upstream_uri(u: &Upstream, path_and_query: String) -> Result<Uri, GatewayError> {
    let pq = PathAndQuery::try_from(path_and_query).map_err(|e| {
        GatewayError::upstream(ErrorKind::BadGateway, format!("upstream path: {e}"))
    })?;
    Uri::builder()
        .scheme(u.url.scheme.clone())
        .authority(u.url.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|e| GatewayError::upstream(ErrorKind::BadGateway, format!("upstream uri: {e}")))
}
