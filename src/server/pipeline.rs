//! The request pipeline: phases 1 to 7 of contract §2 over one
//! [`RequestCtx`], each one function below that says what it may refuse
//! and why. A refusal is an `Err(GatewayError)`, answered by the response
//! phase (`respond.rs`) like every other answer.

use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Either;
use hyper::body::Incoming;

use super::respond::{respond, ResponseSide};
use super::{Connection, Gateway};
use crate::auth::{AuthFailure, SigningHeaders};
use crate::body::{full, ResponseBody};
use crate::chain::{Flow, RequestCtx};
use crate::error::{ErrorKind, GatewayError};
use crate::headers::{self, ClientForwarded};
use crate::ids::Ids;
use crate::log::access::{Outcome, PendingLog};
use crate::policy::cors::CorsSpec;
use crate::policy::version::{Unsupported, VersionSet, VersionSpec};
use crate::proxy::{self, Upstream};
use crate::routing::{self, Miss};
use crate::spec::{Methods, RouteSpec, Spec};
use crate::time::Clock;
use crate::tls::ClientIdentity;

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
    version: Option<&'static VersionSpec>,
    /// The upstream path and query, before the service's base path.
    rel: String,
}

/// A route's versions and what the request asked of them.
type Chosen = Option<(&'static VersionSet, Result<usize, Unsupported>)>;

impl<S: Spec> Gateway<S> {
    /// Handles one request end to end, on `conn`. A body it buffers counts
    /// against the client address's share only; [`serve`](super::serve)
    /// also counts every request of a connection against one share.
    pub async fn handle_on(
        &self,
        req: Request<Incoming>,
        conn: &Connection,
    ) -> Response<ResponseBody> {
        let alone = AtomicUsize::new(0);
        self.handle_in(req, conn, &alone).await
    }

    /// Handles one request end to end, on `conn`, whose buffered request
    /// bodies together hold `buffered` bytes: every phase in order, then
    /// the response phase on whatever answer came out.
    pub(super) async fn handle_in(
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
        let ids = (&ctx.ids.request_id, &ctx.ids.correlation_id);
        let mut pending = PendingLog::new(
            &self.access_log,
            ids,
            &parts.method,
            &parts.uri,
            ctx.client_ip,
            started,
        );
        let mut side = ResponseSide::default();
        let routed = match Self::admit(&mut ctx, &fwd, conn, &parts.uri) {
            Ok(()) => {
                let body = (body, buffered);
                let notes = (&mut pending.out, &mut side);
                self.route(&mut ctx, parts, body, &fwd, notes).await
            }
            Err(e) => Err(e),
        };
        let origin = origin.as_ref();
        respond(routed, &ctx, &mut pending, &side, origin, http1)
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
    ) -> Result<Option<Parts>, GatewayError> {
        let (mut parts, ()) = req.into_parts();
        let (mut ctx, fwd) = self.begin(&mut parts, conn, Instant::now());
        Self::admit(&mut ctx, &fwd, conn, &parts.uri)?;
        let mut out = Outcome::default();
        let mut side = ResponseSide::default();
        let plan = match self.head(&mut ctx, &parts, &mut out, &mut side)? {
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
    /// the client address and the connection's verified caller. Refuses
    /// nothing: what it finds wrong (too many header fields, a forwarding
    /// chain it cannot read) is refused by [`admit`](Self::admit).
    fn begin(
        &self,
        parts: &mut Parts,
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

    /// Phase 2, refusals before routing: a forwarding chain that cannot be
    /// read (400) or too many header fields (431), found by phase 1; a
    /// client certificate from a trusted CA that names no declared service
    /// (403, logged as a security event). `/health` is the gateway's own
    /// and always answers (contract §1), so it passes.
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

    /// Phases 3 to 7 for a request whose `body` comes on a connection that
    /// holds the second element's count of buffered body bytes; `notes`
    /// collect what the access log and the response phase need.
    async fn route(
        &self,
        ctx: &mut RequestCtx,
        mut parts: Parts,
        (body, buffered): (Incoming, &AtomicUsize),
        fwd: &ClientForwarded,
        (out, side): (&mut Outcome, &mut ResponseSide),
    ) -> Result<Response<ResponseBody>, GatewayError> {
        let client_version = parts.version;
        // Every head-only check, the rate limit included, has passed when
        // `head` returns a plan: a refused client never gets its body read.
        let plan = match self.head(ctx, &parts, out, side)? {
            Head::Answered(resp) => return Ok(resp),
            Head::Forward(plan) => plan,
        };
        let spec = plan.spec;
        // Held while the gateway holds a buffered body's bytes.
        let mut permit = None;
        let body = self
            .request_body(ctx, &parts, (body, buffered), spec, &mut permit)
            .await?;
        let upstream = self.upstream_head(ctx, &mut parts, plan, fwd, out)?;
        let (resp, took) = self.attempts(spec, upstream, ctx, parts, body).await?;
        drop(permit);
        out.upstream_ms = Some(took.as_secs_f64() * 1000.0);
        upstream_response(resp, ctx, client_version, &self.via)
    }

    /// Phase 3, the request head: `/health`, path sanity and match,
    /// CORS preflight, method, version, and the chain's steps that need no
    /// body, so that a request which cannot pass is refused before its
    /// body is read (contract §2 order). May refuse with 400 (a path that
    /// breaks a sanity rule, an unsupported version), 404 (no route), 403
    /// (a preflight from a foreign origin), 405 (the method), whatever the
    /// chain's head-only steps refuse (429, 401, 403), 410 (a retired
    /// version) and 413 (a declared body length over the route's limit).
    fn head(
        &self,
        ctx: &mut RequestCtx,
        parts: &Parts,
        out: &mut Outcome,
        side: &mut ResponseSide,
    ) -> Result<Head<S::Route>, GatewayError> {
        let path = parts.uri.path();
        if path == "/health" {
            // The gateway's own path: never routed, whatever the method.
            return health(&parts.method).map(Head::Answered);
        }
        let m = self.router.lookup(path).map_err(|miss| match miss {
            Miss::BadPath(p) => GatewayError::client(ErrorKind::BadPath(p)),
            Miss::NotFound => GatewayError::client(ErrorKind::NotFound),
        })?;
        if let Some(resp) = Self::preflight(m.routes, parts, out, side)? {
            return Ok(Head::Answered(resp));
        }
        let route = routing::select_method(m.routes, &parts.method, |r| S::route(r).methods)
            .map_err(|allow| GatewayError::client(ErrorKind::MethodNotAllowed(allow)))?;
        let spec = S::route(route);
        out.route = Some(spec.id);
        side.cors = spec.cors;
        // The version is read from the head now (its template shapes the
        // upstream path) but refused only after authorization (§2 order).
        let chosen: Chosen = spec.versions.map(|vs| (vs, vs.select(&parts.headers)));
        let version = match chosen {
            Some((vs, Ok(i))) => vs.live.get(i),
            _ => None,
        };
        side.versions = chosen.map(|(vs, c)| (vs, c.ok()));
        let template = version.map_or(spec.upstream, |v| v.upstream);
        let rel =
            proxy::upstream_path(template, spec.rest_segment, &m, path, parts.uri.query(), "");
        drop(m);
        // Authentication and authorization need only the head: refuse what
        // cannot pass before any body is read (contract §2 order).
        if let Flow::Respond(e) = S::before_body(&self.chains, route, ctx, parts) {
            return Err(e);
        }
        check_version(chosen, version, &self.clock)?;
        check_declared_length(parts, spec.body_limit)?;
        Ok(Head::Forward(Plan {
            route,
            spec,
            version,
            rel,
        }))
    }

    /// Phase 3's CORS preflight: after the route match, before the method
    /// check, rate limits and authentication (contract §2), answered by
    /// the gateway itself (204). Refuses with 403 a preflight whose origin
    /// the route does not allow.
    fn preflight(
        routes: &[S::Route],
        parts: &Parts,
        out: &mut Outcome,
        side: &mut ResponseSide,
    ) -> Result<Option<Response<ResponseBody>>, GatewayError> {
        let requested = parts
            .headers
            .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|v| Method::from_bytes(v.as_bytes()).ok());
        let for_cors = requested
            .as_ref()
            .and_then(|rm| routing::select_method(routes, rm, |r| S::route(r).methods).ok())
            .or_else(|| routes.first().copied());
        side.cors = for_cors.and_then(|r| S::route(r).cors);
        let (Some(cors), true) = (
            side.cors,
            CorsSpec::is_preflight(&parts.method, &parts.headers),
        ) else {
            return Ok(None);
        };
        out.route = for_cors.map(|r| S::route(r).id);
        let origin = parts
            .headers
            .get(http::header::ORIGIN)
            .and_then(|o| cors.allow_origin(o));
        let Some(origin) = origin else {
            return Err(GatewayError::client(ErrorKind::CorsOriginNotAllowed));
        };
        let mut resp = Response::new(full(Bytes::new()));
        *resp.status_mut() = StatusCode::NO_CONTENT;
        cors.preflight_headers(origin, resp.headers_mut());
        side.preflight = true;
        Ok(Some(resp))
    }

    /// Phase 5, the upstream request's head: the chain's request steps
    /// (which may refuse, e.g. 401/403 for a body signature that does not
    /// verify), the canary, the upstream URI (502 when it cannot be
    /// built), and the forwarded headers.
    fn upstream_head(
        &self,
        ctx: &mut RequestCtx,
        parts: &mut Parts,
        plan: Plan<S::Route>,
        fwd: &ClientForwarded,
        out: &mut Outcome,
    ) -> Result<&Upstream, GatewayError> {
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
}

/// `/health`: the gateway's own answer to GET and HEAD; 405 to any other
/// method.
fn health(method: &Method) -> Result<Response<ResponseBody>, GatewayError> {
    if method != Method::GET && method != Method::HEAD {
        let allow = Methods(Methods::GET | Methods::HEAD);
        return Err(GatewayError::client(ErrorKind::MethodNotAllowed(allow)));
    }
    let mut r = Response::new(full(r#"{"status":"ok"}"#));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// Refuses, after authorization, a version the route does not serve (400,
/// listing those it does) or one past its sunset on `clock` (410).
fn check_version(
    chosen: Chosen,
    version: Option<&VersionSpec>,
    clock: &Clock,
) -> Result<(), GatewayError> {
    if let Some((vs, Err(_))) = chosen {
        return Err(GatewayError::client(ErrorKind::UnsupportedVersion(
            vs.names,
        )));
    }
    if let Some(d) = version.and_then(|v| v.deprecated.as_ref()) {
        if d.gone(clock.now_unix()) {
            return Err(GatewayError::client(ErrorKind::VersionGone));
        }
    }
    Ok(())
}

/// Refuses (413) a body whose declared length is over the route's limit,
/// before a byte of it is read.
fn check_declared_length(parts: &Parts, limit: u64) -> Result<(), GatewayError> {
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::client(ErrorKind::PayloadTooLarge));
    }
    Ok(())
}

/// Phase 7, the upstream's answer for the client: its HTTP version made
/// the client's, its hop-by-hop and internal headers filtered. Refuses
/// with 502 a `101 Switching Protocols`: the gateway never forwards
/// `Upgrade`, so a 101 is bogus.
fn upstream_response(
    resp: Response<crate::proxy::pool::UpstreamBody>,
    ctx: &RequestCtx,
    client_version: http::Version,
    via: &http::HeaderValue,
) -> Result<Response<ResponseBody>, GatewayError> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Err(GatewayError::upstream(
            ErrorKind::BadGateway,
            "unsolicited 101 Switching Protocols",
        ));
    }
    let (mut rparts, rbody) = resp.into_parts();
    // The client spoke its own HTTP version; the upstream's is not its business.
    rparts.version = client_version;
    headers::filter_response(&mut rparts.headers, ctx, via);
    Ok(Response::from_parts(rparts, Either::Left(rbody)))
}
