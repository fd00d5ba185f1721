//! The server: accepts connections, runs every request through the fixed
//! phase order (contract §2), and shuts down gracefully.
//!
//! Phases, each in one place:
//! 1. strip client-owned headers, mint ids ([`crate::headers`], [`crate::ids`]);
//! 2. path sanity and route match (400, 404) and method (405) ([`crate::routing`]);
//! 3. the route's policy chain ([`crate::chain`], generated per route);
//! 4. proxy ([`crate::proxy`]) and response filtering ([`crate::headers`]);
//! 5. one access-log line ([`crate::log`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::auth::{AuthFailure, SigningHeaders};
use crate::body::budget::{BodyBudget, Permit};
use crate::body::client::ClientBody;
use crate::body::{full, ResponseBody};
use crate::chain::{Flow, RequestCtx};
use crate::config::{StartupEnv, StartupError, TrustedProxies};
use crate::error::{ErrorKind, GatewayError};
use crate::headers::{self, ClientForwarded};
use crate::ids::Ids;
use crate::log::{self, Access, AccessSink, SecurityEvent};
use crate::policy::cors::CorsSpec;
use crate::policy::version::VersionSet;
use crate::proxy::ProxyBody;
use crate::proxy::{self, Proxy};
use crate::routing::{self, Miss, Router};
use crate::spec::RouteSpec;
use crate::spec::{LimitsSpec, Spec};
use crate::tls::ClientIdentity;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Body as _;

/// What the gateway knows about one client connection.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The calling service its client certificate names, if any.
    pub client: ClientIdentity,
}

/// Concurrent streams per HTTP/2 connection, as Envoy's edge-proxy
/// guidance and RFC 9113 §6.5.2's floor (hyper's default is 200); a client
/// opening more has them refused (RST_STREAM REFUSED_STREAM).
const H2_MAX_STREAMS: u32 = 100;

/// HTTP/2 streams a client may reset before the gateway accepts them.
const H2_MAX_PENDING_RESETS: usize = 20;

/// A gateway for one compiled spec: router, chains and proxy, built once.
pub struct Gateway<S: Spec> {
    router: Router<&'static [S::Route]>,
    chains: S::Chains,
    proxy: Proxy,
    trusted: TrustedProxies,
    via: HeaderValue,
    tls: Option<crate::tls::Terminator>,
    access_log: AccessSink,
    /// Each route's retry budget, by route index.
    budgets: Vec<crate::policy::retry::RetryBudget>,
    /// The client-claimed headers some service allows
    /// (`allow_client_headers`), as a mask over
    /// [`headers::CLIENT_CLAIMED`]: phase 1 leaves these for
    /// `upstream_head` to judge.
    claimed_allowed: u16,
    /// Memory for buffered request bodies (`gateway.limits`).
    bodies: BodyBudget,
}

impl<S: Spec> std::fmt::Debug for Gateway<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("name", &S::GATEWAY.name)
            .finish()
    }
}

/// The access-log line of a request in flight: written by [`finish`]
/// (PendingLog::finish), or on drop with status 499 when the client closed
/// the connection first (nginx's convention), so every request is logged.
struct PendingLog<'g> {
    sink: &'g AccessSink,
    request_id: HeaderValue,
    correlation_id: HeaderValue,
    method: Method,
    uri: http::Uri,
    client_ip: std::net::IpAddr,
    started: Instant,
    out: Outcome,
    done: bool,
}

impl PendingLog<'_> {
    fn write(
        &self,
        status: u16,
        caller: Option<&str>,
        tenant: Option<&str>,
        error: Option<String>,
    ) {
        self.sink.write(&Access {
            timestamp: log::now_rfc3339(),
            level: "INFO",
            target: "access",
            request_id: self.request_id.to_str().unwrap_or(""),
            correlation_id: self.correlation_id.to_str().unwrap_or(""),
            method: self.method.as_str(),
            path: self.uri.path(),
            route: self.out.route,
            upstream: self.out.upstream,
            status,
            duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            upstream_ms: self.out.upstream_ms,
            caller,
            tenant,
            client_ip: self.client_ip.to_string(),
            error,
        });
    }

    fn finish(&mut self, status: u16, caller: Option<&str>, tenant: Option<&str>) {
        self.done = true;
        self.write(status, caller, tenant, self.out.error.clone());
    }
}

impl Drop for PendingLog<'_> {
    fn drop(&mut self) {
        if !self.done {
            let error = Some("client closed the connection before the response".to_owned());
            self.write(499, None, None, error);
        }
    }
}

/// What happened to a request, for the access log.
#[derive(Default)]
struct Outcome {
    route: Option<&'static str>,
    upstream: Option<&'static str>,
    upstream_ms: Option<f64>,
    error: Option<String>,
    /// The matched route's CORS policy, for every response.
    cors: Option<&'static CorsSpec>,
    /// The response is the gateway's own preflight answer, complete as is.
    preflight: bool,
    /// The route's API versions and the one selected, for every response.
    versions: Option<(&'static VersionSet, Option<usize>)>,
}

impl<S: Spec> Gateway<S> {
    /// Builds the gateway from the environment.
    ///
    /// # Errors
    /// Anything in the environment that stops start-up, naming the variable.
    pub fn new(env: &StartupEnv) -> Result<Self, StartupError> {
        let g = S::GATEWAY;
        let router = Router::new(S::PATHS.iter().copied())
            .map_err(|e| StartupError::Router(e.to_string()))?;
        let via = HeaderValue::from_str(&format!("1.1 {}", g.name))
            .map_err(|_| StartupError::Router(format!("gateway name `{}`", g.name)))?;
        Ok(Gateway {
            router,
            chains: S::build_chains(env)?,
            proxy: Proxy::new(
                g.name,
                S::SERVICES,
                env,
                g.connect_timeout,
                Arc::new(crate::outbound::SystemClock),
            )?,
            trusted: TrustedProxies::parse(g.trusted_proxies)?,
            via,
            tls: g
                .tls
                .map(|t| crate::tls::Terminator::new(t, env))
                .transpose()?,
            access_log: AccessSink::from_env(env.get("GATEWAY_ACCESS_LOG")),
            budgets: {
                let n = S::PATHS
                    .iter()
                    .flat_map(|(_, routes)| routes.iter())
                    .map(|r| S::route(*r).index + 1)
                    .max()
                    .unwrap_or(0);
                (0..n).map(|_| Default::default()).collect()
            },
            claimed_allowed: S::SERVICES
                .iter()
                .fold(0, |m, s| m | headers::claimed_mask(s.allow_client_headers)),
            bodies: BodyBudget::new(g.limits.body_buffer, g.limits.body_buffer_per_client),
        })
    }

    /// Sends access-log lines to `sink` instead.
    pub fn with_access_log(mut self, sink: AccessSink) -> Self {
        self.access_log = sink;
        self
    }

    /// Re-reads what may change without a restart (SIGHUP): revocation
    /// lists, file-based upstream credentials, the listener's certificate,
    /// key and client CAs. On error the previous state stays in force.
    ///
    /// # Errors
    /// The first thing that could not be re-read (the others still are).
    pub fn reload(&self) -> Result<(), StartupError> {
        let chains = S::reload(&self.chains);
        let proxy = self.proxy.reload();
        let tls = self
            .tls
            .as_ref()
            .map_or(Ok(()), crate::tls::Terminator::reload);
        chains.and(proxy).and(tls)
    }

    /// Logs a failed TLS handshake as a security event, when rustls
    /// refused it (a bad, expired, missing or untrusted client
    /// certificate, no shared protocol), within the log budget
    /// ([`crate::tls::Terminator::refused`]); a client that merely went
    /// away is only a debug line.
    fn handshake_failed(&self, peer: SocketAddr, e: &std::io::Error) {
        let rustls_error = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        let (Some(tls), Some(rustls_error)) = (&self.tls, rustls_error) else {
            tracing::debug!(%peer, error = %e, "TLS connection closed during the handshake");
            return;
        };
        tls.refused(&self.access_log, peer, rustls_error);
    }

    /// Whether the listener terminates TLS (`gateway.tls`).
    pub fn tls(&self) -> Option<&crate::tls::Terminator> {
        self.tls.as_ref()
    }

    /// The resolved upstreams, for the start-up log.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Bytes of request bodies the gateway holds right now, buffered
    /// before proxying (bounded by `gateway.limits.body_buffer`).
    pub fn buffered_body_bytes(&self) -> usize {
        self.bodies.in_use()
    }

    /// Handles one request on a plain-HTTP connection from `peer`.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
        let conn = Connection {
            peer,
            tls: false,
            client: ClientIdentity::Anonymous,
        };
        self.handle_on(req, &conn).await
    }

    /// Handles one request end to end, on `conn`. A body it buffers counts
    /// against the client address's share only; [`serve`] also counts
    /// every request of a connection against one share.
    pub async fn handle_on(
        &self,
        req: Request<Incoming>,
        conn: &Connection,
    ) -> Response<ResponseBody> {
        let alone = AtomicUsize::new(0);
        self.handle_in(req, conn, &alone).await
    }

    /// Handles one request end to end, on `conn`, whose buffered request
    /// bodies together hold `buffered` bytes.
    async fn handle_in(
        &self,
        req: Request<Incoming>,
        conn: &Connection,
        buffered: &AtomicUsize,
    ) -> Response<ResponseBody> {
        let started = Instant::now();
        let (mut parts, body) = req.into_parts();
        let origin = parts.headers.get(http::header::ORIGIN).cloned();
        let http1 = parts.version < http::Version::HTTP_2;
        let (mut ctx, fwd) = self.begin(&mut parts, conn, started);
        // Logs the request even if the client goes away before the answer
        // and this future is dropped.
        let mut pending = PendingLog {
            sink: &self.access_log,
            request_id: ctx.ids.request_id.clone(),
            correlation_id: ctx.ids.correlation_id.clone(),
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            client_ip: ctx.client_ip,
            started,
            out: Outcome::default(),
            done: false,
        };
        let routed = match Self::admit(&mut ctx, &fwd, conn, &parts.uri) {
            Ok(()) => {
                let body = (body, buffered);
                self.route(&mut ctx, parts, body, &fwd, &mut pending.out)
                    .await
            }
            Err(e) => Err(e),
        };
        let mut resp = match routed {
            Ok(resp) => resp,
            Err(e) => {
                pending.out.error = Some(e.to_string());
                let close = http1 && e.closes_connection();
                let mut resp = e.into_response(ctx.ids.request_id());
                if close {
                    // hyper closes an HTTP/1 connection after a response
                    // that says so. HTTP/2 has no such header: there the
                    // stream alone ends (RST_STREAM after the answer).
                    resp.headers_mut()
                        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                }
                resp
            }
        };
        headers::set_ids(resp.headers_mut(), &ctx);
        if let (Some(cors), false) = (pending.out.cors, pending.out.preflight) {
            cors.response_headers(origin.as_ref(), resp.headers_mut());
        }
        if let Some((vs, selected)) = pending.out.versions {
            vs.response_headers(selected, resp.headers_mut());
        }
        if let Some(rl) = &ctx.rate_limit {
            let h = resp.headers_mut();
            h.insert(headers::name::RATELIMIT_POLICY, rl.policy.clone());
            h.insert(headers::name::RATELIMIT, rl.limit.clone());
            if let Some(secs) = rl.retry_after {
                h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
            }
        }
        if let Some(f) = &ctx.auth_failure {
            self.access_log.write(&SecurityEvent {
                timestamp: log::now_rfc3339(),
                level: "WARN",
                target: "security",
                event: "auth_failure",
                reason: f.reason,
                mode: f.mode,
                caller: f.caller.as_deref(),
                request_id: ctx.ids.request_id(),
                correlation_id: ctx.ids.correlation_id(),
                method: pending.method.as_str(),
                path: pending.uri.path(),
                route: pending.out.route,
                client_ip: ctx.client_ip.to_string(),
            });
        }
        let caller = ctx
            .caller
            .as_deref()
            .or(ctx.user.as_ref().map(|u| u.id.as_str()));
        pending.finish(resp.status().as_u16(), caller, ctx.tenant.as_deref());
        resp
    }

    /// Phase 2 and the head-only part of phase 3: `/health`, path sanity,
    /// match, CORS preflight, method, version, and the chain's steps that
    /// need no body, so that a request which cannot pass is refused before
    /// its body is read (contract §2 order).
    fn head(
        &self,
        ctx: &mut RequestCtx,
        parts: &http::request::Parts,
        out: &mut Outcome,
    ) -> Result<Head<S::Route>, GatewayError> {
        let path = parts.uri.path();
        if path == "/health" {
            // The gateway's own path: never routed, whatever the method.
            if parts.method == Method::GET || parts.method == Method::HEAD {
                return Ok(Head::Answered(health()));
            }
            let allow =
                crate::spec::Methods(crate::spec::Methods::GET | crate::spec::Methods::HEAD);
            return Err(GatewayError::client(ErrorKind::MethodNotAllowed(allow)));
        }
        let m = self.router.lookup(path).map_err(|miss| match miss {
            Miss::BadPath(p) => GatewayError::client(ErrorKind::BadPath(p)),
            Miss::NotFound => GatewayError::client(ErrorKind::NotFound),
        })?;
        // CORS preflight: after the route match, before the method check,
        // rate limits and authentication (contract §2).
        let requested = parts
            .headers
            .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|v| Method::from_bytes(v.as_bytes()).ok());
        let for_cors = requested
            .as_ref()
            .and_then(|rm| routing::select_method(m.routes, rm, |r| S::route(r).methods).ok())
            .or_else(|| m.routes.first().copied());
        out.cors = for_cors.and_then(|r| S::route(r).cors);
        if let (Some(cors), true) = (
            out.cors,
            CorsSpec::is_preflight(&parts.method, &parts.headers),
        ) {
            out.route = for_cors.map(|r| S::route(r).id);
            let origin = parts
                .headers
                .get(http::header::ORIGIN)
                .and_then(|o| cors.allow_origin(o));
            let Some(origin) = origin else {
                return Err(GatewayError::client(ErrorKind::CorsOriginNotAllowed));
            };
            let mut resp = Response::new(full(bytes::Bytes::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            cors.preflight_headers(origin, resp.headers_mut());
            out.preflight = true;
            return Ok(Head::Answered(resp));
        }
        let route = routing::select_method(m.routes, &parts.method, |r| S::route(r).methods)
            .map_err(|allow| GatewayError::client(ErrorKind::MethodNotAllowed(allow)))?;
        let spec = S::route(route);
        out.route = Some(spec.id);
        out.cors = spec.cors;
        // The version is read from the head now (its template shapes the
        // upstream path) but refused only after authorization (§2 order).
        let chosen = spec.versions.map(|vs| (vs, vs.select(&parts.headers)));
        let version = match chosen {
            Some((vs, Ok(i))) => vs.live.get(i),
            _ => None,
        };
        out.versions = chosen.map(|(vs, c)| (vs, c.ok()));
        let template = version.map_or(spec.upstream, |v| v.upstream);
        let rel =
            proxy::upstream_path(template, spec.rest_segment, &m, path, parts.uri.query(), "");
        drop(m);
        // Authentication and authorization need only the head: refuse what
        // cannot pass before any body is read (contract §2 order).
        if let Flow::Respond(e) = S::before_body(&self.chains, route, ctx, parts) {
            return Err(e);
        }
        if let Some((vs, Err(_))) = chosen {
            return Err(GatewayError::client(ErrorKind::UnsupportedVersion(
                vs.names,
            )));
        }
        if let Some(d) = version.and_then(|v| v.deprecated.as_ref()) {
            if d.gone(crate::auth::hmac::now_unix()) {
                return Err(GatewayError::client(ErrorKind::VersionGone));
            }
        }
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > spec.body_limit) {
            return Err(GatewayError::client(ErrorKind::PayloadTooLarge));
        }
        Ok(Head::Forward(Plan {
            route,
            spec,
            version,
            rel,
        }))
    }

    /// The rest of phase 3 and the upstream request's head: the chain's
    /// request steps, the canary, the upstream URI, the forwarded headers.
    fn upstream_head(
        &self,
        ctx: &mut RequestCtx,
        parts: &mut http::request::Parts,
        plan: Plan<S::Route>,
        fwd: &ClientForwarded,
        out: &mut Outcome,
    ) -> Result<&proxy::Upstream, GatewayError> {
        let Plan {
            route,
            spec,
            version,
            rel,
        } = plan;
        if let Flow::Respond(e) = S::on_request(&self.chains, route, ctx, parts) {
            return Err(e);
        }
        // The canary (if any) is chosen once the consumer is known.
        let service = match spec.canary {
            Some(c) if c.pick(ctx, &parts.headers) => c.service,
            _ => version.map_or(spec.service, |v| v.service),
        };
        let upstream = self.proxy.upstream(service).ok_or_else(|| {
            GatewayError::upstream(ErrorKind::BadGateway, "unknown service index")
        })?;
        out.upstream = Some(upstream.name);
        let pq = if upstream.url.base_path.is_empty() {
            rel
        } else {
            format!("{}{rel}", upstream.url.base_path)
        };
        parts.uri = proxy::upstream_uri(upstream, pq)?;
        parts.version = http::Version::HTTP_11;
        if fwd.claimed {
            // Only now is the service known (issue 13 §4).
            let allowed = S::SERVICES
                .get(service)
                .map_or(&[][..], |s| s.allow_client_headers);
            headers::strip_claimed(&mut parts.headers, allowed);
        }
        let trusted_peer = self.trusted.contains(ctx.peer.ip());
        headers::set_upstream(&mut parts.headers, ctx, fwd, trusted_peer, &self.via);
        parts
            .headers
            .insert(http::header::HOST, upstream.host.clone());
        Ok(upstream)
    }

    /// Runs a request head through everything the gateway does before it
    /// contacts an upstream (ids, header hygiene, routing, the route's
    /// policy chain, the upstream URI and headers, the outbound signature)
    /// and returns the head it would send: `Ok(None)` when the gateway
    /// answers itself (`/health`, a CORS preflight), `Err` with the answer
    /// it would give when the request is refused. Nothing is sent and the
    /// body is taken as empty. For benchmarks without the network
    /// (`benches/chain.rs`) and for checking what a route forwards.
    ///
    /// # Errors
    /// The refusal the client would get (contract §2 order).
    pub fn rehearse(
        &self,
        req: Request<()>,
        conn: &Connection,
    ) -> Result<Option<http::request::Parts>, GatewayError> {
        let (mut parts, ()) = req.into_parts();
        let (mut ctx, fwd) = self.begin(&mut parts, conn, Instant::now());
        Self::admit(&mut ctx, &fwd, conn, &parts.uri)?;
        let mut out = Outcome::default();
        let plan = match self.head(&mut ctx, &parts, &mut out)? {
            Head::Answered(_) => return Ok(None),
            Head::Forward(plan) => plan,
        };
        if plan.spec.buffer_body.is_some() {
            ctx.body_sha256 = Some(crate::auth::hmac::body_sha256(&[]));
        }
        let upstream = self.upstream_head(&mut ctx, &mut parts, plan, &fwd, &mut out)?;
        upstream.sign(&mut parts, &ctx)?;
        Ok(Some(parts))
    }

    /// Phase 1: ids minted or continued, client-owned headers stripped,
    /// the client address and the connection's verified caller.
    fn begin(
        &self,
        parts: &mut http::request::Parts,
        conn: &Connection,
        started: Instant,
    ) -> (RequestCtx, ClientForwarded) {
        let (ids, trace_continued) = Ids::from_headers_keeping_trace(&parts.headers);
        if !trace_continued {
            // W3C Trace Context: a new trace starts without vendor state.
            parts.headers.remove(headers::name::TRACESTATE);
        }
        let signing = SigningHeaders::read(&parts.headers);
        // Counted before stripping: the client sent them all.
        let too_many = headers::h2_over_field_limit(parts, S::GATEWAY.limits.max_headers);
        let mut fwd = headers::strip_client(
            &mut parts.headers,
            parts.uri.authority(),
            parts.version,
            self.claimed_allowed,
        );
        if too_many {
            fwd.rejection = Some(ErrorKind::HeadersTooLarge);
        }
        let client_ip = headers::client_ip(conn.peer.ip(), &fwd, &self.trusted);
        let mut ctx = RequestCtx {
            ids,
            peer: conn.peer,
            client_ip,
            started,
            caller: None,
            tenant: None,
            user: None,
            signing,
            body_sha256: None,
            auth_failure: None,
            rate_limit: None,
            caller_pending: false,
            https: conn.tls,
            client_cert: None,
        };
        if let ClientIdentity::Known(name) = conn.client {
            // A verified calling service (contract §3), on every route.
            ctx.client_cert = Some(name);
            ctx.caller = Some(name.to_owned());
        }
        (ctx, fwd)
    }

    /// Refusals before routing: a forwarding chain that cannot be read, a
    /// client certificate that names no declared service. `/health` is
    /// the gateway's own and always answers (contract §1), so it passes.
    fn admit(
        ctx: &mut RequestCtx,
        fwd: &ClientForwarded,
        conn: &Connection,
        uri: &http::Uri,
    ) -> Result<(), GatewayError> {
        if uri.path() == "/health" {
            return Ok(());
        }
        if let Some(kind) = fwd.rejection.clone() {
            return Err(GatewayError::client(kind));
        }
        if let ClientIdentity::Unknown(id) = &conn.client {
            // A certificate from a trusted CA that names no declared
            // service: refused on every route, and logged.
            ctx.auth_failure = Some(AuthFailure::enforced(
                "unknown_client_certificate",
                Some(id.clone()),
            ));
            return Err(GatewayError::client(ErrorKind::Forbidden(
                "Service authentication failed",
            )));
        }
        Ok(())
    }

    /// Phases 2 to 4 for a request whose `body` comes on a connection
    /// that holds the second element's count of buffered body bytes.
    async fn route(
        &self,
        ctx: &mut RequestCtx,
        mut parts: http::request::Parts,
        (body, buffered): (Incoming, &AtomicUsize),
        fwd: &ClientForwarded,
        out: &mut Outcome,
    ) -> Result<Response<ResponseBody>, GatewayError> {
        let client_version = parts.version;
        // Every head-only check, the rate limit included, has passed when
        // `head` returns a plan: a refused client never gets its body read.
        let plan = match self.head(ctx, &parts, out)? {
            Head::Answered(resp) => return Ok(resp),
            Head::Forward(plan) => plan,
        };
        let spec = plan.spec;
        // Held while the gateway holds a buffered body's bytes.
        let mut permit = None;
        let body = match spec.buffer_body {
            Some(limit) => {
                let permit = permit.insert(self.bodies.permit(ctx.client_ip, buffered));
                let bytes = read_body(&parts, body, limit, spec.body_timeout, permit).await?;
                ctx.body_sha256 = Some(crate::auth::hmac::body_sha256(&bytes));
                Either::Right(Full::new(bytes))
            }
            // A streamed body that grows past the limit or stalls aborts
            // the upstream request, which so never receives a complete
            // request.
            None => Either::Left(ClientBody::new(
                body,
                spec.body_limit as usize,
                spec.body_timeout,
                S::GATEWAY.limits.min_body_rate,
            )),
        };
        let upstream = self.upstream_head(ctx, &mut parts, plan, fwd, out)?;
        let (resp, took) = self.attempts(spec, upstream, ctx, parts, body).await?;
        drop(permit);
        out.upstream_ms = Some(took.as_secs_f64() * 1000.0);
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            // The gateway never forwards Upgrade, so a 101 is bogus.
            return Err(GatewayError::upstream(
                ErrorKind::BadGateway,
                "unsolicited 101 Switching Protocols",
            ));
        }
        let (mut rparts, rbody) = resp.into_parts();
        // The client spoke its own HTTP version; the upstream's is not its business.
        rparts.version = client_version;
        headers::filter_response(&mut rparts.headers, ctx, &self.via);
        Ok(Response::from_parts(
            rparts,
            http_body_util::Either::Left(rbody),
        ))
    }
}

impl<S: Spec> Gateway<S> {
    /// Sends the request, retrying as the route's policy allows. Each
    /// attempt is built from the same unsigned head, signed anew, and
    /// passes the breaker; `spec.timeout` bounds all attempts together.
    async fn attempts(
        &self,
        spec: &RouteSpec,
        upstream: &proxy::Upstream,
        ctx: &RequestCtx,
        parts: http::request::Parts,
        body: ProxyBody,
    ) -> Result<(Response<proxy::pool::UpstreamBody>, std::time::Duration), GatewayError> {
        let deadline = Instant::now() + spec.timeout;
        // How far the client's streamed body has come, to tell a stalled
        // client from a hung upstream.
        let progress = match &body {
            Either::Left(b) => b.progress(),
            Either::Right(_) => None,
        };
        // A body can be sent again only if it is empty or was read in full.
        let replay: Option<bytes::Bytes> = match &body {
            Either::Right(full) if spec.retries.is_some() => Some(
                full.clone()
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default(),
            ),
            Either::Left(b) if b.is_end_stream() => Some(bytes::Bytes::new()),
            _ => None,
        };
        let policy = spec
            .retries
            .filter(|r| r.method_ok(&parts.method) && replay.is_some());
        if let Some(r) = &policy {
            self.budgets[spec.index].deposit(r);
        }
        let mut body = Some(body);
        let mut parts = parts;
        let mut attempt = 1;
        loop {
            // The last possible attempt takes the head; earlier ones copy
            // it, so a retry starts from the original (a copy of a header
            // map costs allocations on every request otherwise).
            let last = policy.is_none_or(|r| attempt >= r.attempts);
            let (mut head, ()) = Request::builder()
                .method(parts.method.clone())
                .uri(if last {
                    std::mem::take(&mut parts.uri)
                } else {
                    parts.uri.clone()
                })
                .version(parts.version)
                .body(())
                .map_err(|e| GatewayError::upstream(ErrorKind::BadGateway, e.to_string()))?
                .into_parts();
            head.headers = if last {
                std::mem::take(&mut parts.headers)
            } else {
                parts.headers.clone()
            };
            upstream.sign(&mut head, ctx)?;
            let this_body = match (&replay, body.take()) {
                (Some(bytes), _) if attempt > 1 => Either::Right(Full::new(bytes.clone())),
                (_, Some(b)) => b,
                (Some(bytes), None) => Either::Right(Full::new(bytes.clone())),
                (None, None) => {
                    return Err(GatewayError::upstream(
                        ErrorKind::BadGateway,
                        "body already sent",
                    ))
                }
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(GatewayError::upstream(
                    ErrorKind::GatewayTimeout,
                    "no attempt time left",
                ));
            }
            let per_try = policy
                .and_then(|r| r.per_try_timeout)
                .map_or(remaining, |t| t.min(remaining));
            let call = proxy::BreakerCall::admit(upstream)?;
            let mut result = self
                .proxy
                .send(upstream, Request::from_parts(head, this_body), per_try)
                .await;
            if let (Err(e), Some(p)) = (&result, &progress) {
                // The attempt ran out of time while the gateway was still
                // waiting for the client's body: the upstream could not
                // have answered a request it never got whole. The client's
                // doing (408): not the breaker's, never retried.
                if e.kind == ErrorKind::GatewayTimeout && p.client_behind() {
                    result = Err(GatewayError::client(ErrorKind::RequestTimeout));
                }
            }
            call.record(&result);
            let Some(r) = policy.filter(|r| attempt < r.attempts) else {
                return result;
            };
            let retry = match &result {
                Ok((resp, _)) => r.on.contains(&resp.status().as_u16()),
                Err(e) if e.kind == ErrorKind::GatewayTimeout => {
                    r.per_try_timeout.is_some() && per_try < remaining
                }
                Err(e) => e.side == crate::error::Side::Upstream && e.retryable,
            };
            if !retry || !self.budgets[spec.index].withdraw(&r) {
                return result;
            }
            let pause = r.backoff_before(attempt);
            if Instant::now() + pause >= deadline {
                return result;
            }
            tracing::debug!(route = spec.id, attempt, "retrying");
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }
}

/// What the request head decided before any body is read.
enum Head<R> {
    /// The gateway answers itself (`/health`, a CORS preflight).
    Answered(Response<ResponseBody>),
    /// The request goes on to a route's upstream.
    Forward(Plan<R>),
}

/// A matched route and what the request head selected on it.
struct Plan<R> {
    route: R,
    spec: &'static RouteSpec,
    /// The API version selected, if the route has versions.
    version: Option<&'static crate::policy::version::VersionSpec>,
    /// The upstream path and query, before the service's base path.
    rel: String,
}

/// Reads a whole body of at most `limit` bytes within `timeout`: a
/// declared length over the limit is refused before reading, a longer
/// stream as soon as it passes it (413); a body not complete in time is
/// 408. Its bytes are taken from `permit` before they are held: a declared
/// length at once, a chunked body as it grows; 503 `overloaded` when the
/// budget has no room.
async fn read_body(
    parts: &http::request::Parts,
    mut body: Incoming,
    limit: usize,
    timeout: std::time::Duration,
    permit: &mut Permit<'_>,
) -> Result<bytes::Bytes, GatewayError> {
    if body.is_end_stream() {
        return Ok(bytes::Bytes::new());
    }
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::client(ErrorKind::PayloadTooLarge));
    }
    let overloaded = |_| GatewayError::client(ErrorKind::Overloaded);
    let declared = declared.map_or(0, |n| n as usize);
    permit.grow(declared).map_err(overloaded)?;
    let read = async {
        let mut first: Option<bytes::Bytes> = None;
        let mut rest = bytes::BytesMut::new();
        let mut len = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| {
                GatewayError::client(ErrorKind::BadRequest("Malformed request body"))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            len += data.len();
            if len > limit {
                return Err(GatewayError::client(ErrorKind::PayloadTooLarge));
            }
            if len > permit.held() {
                permit.grow(len - permit.held()).map_err(overloaded)?;
            }
            // One chunk is kept as it came; several are joined once.
            match first.take() {
                None if rest.is_empty() => first = Some(data),
                taken => {
                    if rest.is_empty() {
                        rest.reserve(declared.max(len));
                    }
                    rest.extend_from_slice(&taken.unwrap_or_default());
                    rest.extend_from_slice(&data);
                }
            }
        }
        Ok(first.unwrap_or_else(|| rest.freeze()))
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(read) => read,
        Err(_) => Err(GatewayError::client(ErrorKind::RequestTimeout)),
    }
}

fn health() -> Response<ResponseBody> {
    let mut r = Response::new(full(r#"{"status":"ok"}"#));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Serves one accepted connection (plain or after the TLS handshake),
/// watched for graceful shutdown.
async fn serve_connection<S: Spec, I>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    io: I,
    gw: Arc<Gateway<S>>,
    conn: Connection,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // The connection and the body bytes its requests buffer together
    // (all the streams of an HTTP/2 connection share one share).
    let conn = Arc::new((conn, AtomicUsize::new(0)));
    let started = Arc::new(AtomicBool::new(false));
    let first = started.clone();
    let svc = service_fn(move |req| {
        first.store(true, Ordering::Relaxed);
        let (gw, conn) = (gw.clone(), conn.clone());
        async move { Ok::<_, Infallible>(gw.handle_in(req, &conn.0, &conn.1).await) }
    });
    let served = builder.serve_connection(TokioIo::new(io), svc).into_owned();
    let served = watcher.watch(served);
    tokio::pin!(served);
    // `auto` first reads enough bytes to tell HTTP/2's preface from HTTP/1,
    // with no deadline; hyper's header-read timeout starts only after that.
    // A client sending nothing, or half a preface, would keep its
    // connection forever (hyperium/hyper#3756, #3962). So a connection that
    // has not started a request within the header-read timeout is closed,
    // whatever its protocol.
    let ended = tokio::select! {
        r = &mut served => Some(r),
        () = tokio::time::sleep(S::GATEWAY.header_read_timeout) => None,
    };
    let result = match ended {
        Some(r) => r,
        None if started.load(Ordering::Relaxed) => served.await,
        None => {
            tracing::debug!("no request within the header-read timeout; closing");
            return;
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then stops
/// accepting at once and lets in-flight requests finish until the spec's
/// drain deadline. Returns when every connection is closed or the deadline
/// passed.
pub async fn serve<S: Spec>(
    gateway: Arc<Gateway<S>>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Limits on one client, proved by tests/hostile.rs. A head over them is
    // answered by hyper's parser before any request exists: a bare `431`
    // (`400` for bytes that are not HTTP) and a closed connection. hyper
    // has no hook to give that answer a body; contract §2 allows it.
    let limits = S::GATEWAY.limits;
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(S::GATEWAY.header_read_timeout)
        // Bounds the request line and headers together (`gateway.limits.
        // max_head`, 64 KiB by default; hyper's is ~400 KiB).
        .max_buf_size(limits.max_head);
    if limits.max_headers != LimitsSpec::HYPER_MAX_HEADERS {
        // Only when the spec asks for another count than hyper's own 100:
        // hyper parses into 100 inline slots, and a larger count is two
        // heap allocations per request (hyper 1.12 `proto/h1/role.rs`).
        builder.http1().max_headers(limits.max_headers);
    }
    builder
        .http2()
        .max_header_list_size(u32::try_from(limits.max_head).unwrap_or(u32::MAX))
        .max_concurrent_streams(H2_MAX_STREAMS)
        // Rapid reset (CVE-2023-44487): streams a client resets before
        // they are accepted; past this, GOAWAY ENHANCE_YOUR_CALM. h2's
        // default, stated here so an upgrade cannot loosen it unseen.
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and similar: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let gw = gateway.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        // The TLS handshake runs in the connection's own task, bounded by
        // the header-read timeout, so a slow client never stalls accepting.
        tokio::spawn(async move {
            let Some(tls) = gw.tls() else {
                let conn = Connection {
                    peer,
                    tls: false,
                    client: ClientIdentity::Anonymous,
                };
                return serve_connection(&builder, watcher, stream, gw, conn).await;
            };
            let handshake = tls.acceptor().accept(stream);
            match tokio::time::timeout(S::GATEWAY.header_read_timeout, handshake).await {
                Ok(Ok(stream)) => {
                    let client = match tls.identify(stream.get_ref().1) {
                        Ok(client) => client,
                        // A resumed session whose certificate has expired
                        // since: refused like a handshake presenting it,
                        // the connection closed unserved.
                        Err(e) => return tls.refused(&gw.access_log, peer, &e),
                    };
                    let conn = Connection {
                        peer,
                        tls: true,
                        client,
                    };
                    serve_connection(&builder, watcher, stream, gw.clone(), conn).await;
                }
                Ok(Err(e)) => gw.handshake_failed(peer, &e),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!(open_connections = open, "shutting down: no new connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("drained"),
        () = tokio::time::sleep(S::GATEWAY.drain_timeout) => {
            tracing::warn!("drain deadline passed; closing remaining connections");
        }
    }
}
