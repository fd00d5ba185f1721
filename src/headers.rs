//! Headers the gateway owns (contract §3): what is stripped from clients,
//! what is set on every upstream request, and what is filtered from
//! upstream responses.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::chain::RequestCtx;
use crate::config::TrustedProxies;
use crate::error::ErrorKind;

/// Identity and signing headers only the gateway may set: a client that
/// sends them is ignored, whatever the route.
pub const OWNED: [&str; 10] = [
    "x-internal-service-auth",
    "x-internal-timestamp",
    "x-internal-nonce",
    "x-service-name",
    "x-caller-service",
    "x-tenant-id",
    "x-user-id",
    "x-user-roles",
    "x-request-id",
    "forwarded",
];

pub mod name;

/// [`OWNED`] and [`OVERRIDES`] as header names, removed from every request.
const STRIPPED: [HeaderName; 16] = [
    HeaderName::from_static("x-internal-service-auth"),
    HeaderName::from_static("x-internal-timestamp"),
    HeaderName::from_static("x-internal-nonce"),
    HeaderName::from_static("x-service-name"),
    HeaderName::from_static("x-caller-service"),
    HeaderName::from_static("x-tenant-id"),
    HeaderName::from_static("x-user-id"),
    HeaderName::from_static("x-user-roles"),
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-real-ip"),
];

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded in either direction.
pub const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// Headers that let a client rewrite the method or URL behind the
/// gateway's back (bypassing the 405 check or path rules in upstream
/// frameworks that honour them), or claim a client address.
pub const OVERRIDES: [&str; 6] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-real-ip",
];

/// Headers that upstream frameworks commonly trust for the client's
/// address or user (issue 13 §4), as `X-Real-IP` above. Stripped from
/// every client request unless the route's service lists them in
/// `allow_client_headers` (gateway.yaml); the spec compiler accepts no
/// other names there (`gateway_codegen::validate::values::CLIENT_HEADERS`,
/// the same list, in the same order).
pub const CLIENT_CLAIMED: [HeaderName; 13] = [
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("client-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
    HeaderName::from_static("x-original-forwarded-for"),
    HeaderName::from_static("x-envoy-external-address"),
    HeaderName::from_static("remote-user"),
    HeaderName::from_static("x-remote-user"),
    HeaderName::from_static("x-authenticated-user"),
    HeaderName::from_static("x-auth-request-user"),
    HeaderName::from_static("x-consumer-id"),
    HeaderName::from_static("x-original-host"),
];

/// The bit of `n` in a mask over [`CLIENT_CLAIMED`], or 0 for any other
/// name.
fn claimed_bit(n: &HeaderName) -> u16 {
    CLIENT_CLAIMED
        .iter()
        .position(|c| c == n)
        .map_or(0, |i| 1 << i)
}

/// A mask over [`CLIENT_CLAIMED`] of the names a service allows
/// (`ServiceSpec::allow_client_headers`, lower case). Names outside the
/// list add nothing: the spec compiler refuses them.
pub fn claimed_mask(allowed: &[&str]) -> u16 {
    allowed.iter().fold(0, |m, a| {
        m | CLIENT_CLAIMED
            .iter()
            .position(|c| c.as_str().eq_ignore_ascii_case(a))
            .map_or(0, |i| 1 << i)
    })
}

/// Names whose underscore spelling is also dropped, besides those the
/// gateway strips anyway: message framing, which must have one meaning.
const FRAMING: [HeaderName; 1] = [header::CONTENT_LENGTH];

/// Removes the headers named in `Connection`, the hop-by-hop headers, and
/// every other header `also` picks, in one pass (requests and responses).
pub fn strip_hop_by_hop(h: &mut HeaderMap, also: impl Fn(&HeaderName) -> bool) {
    strip_connection_named(h);
    remove_where(h, |n| HOP_BY_HOP.contains(n) || also(n));
}

/// Removes every header present that `doomed` picks, in one pass over the
/// headers the message carries (a handful) rather than a hashed lookup for
/// each name the gateway strips (about thirty).
fn remove_where(h: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    let mut buf = [0u8; 64];
    loop {
        // The name is copied to the stack and looked up as `&str`: cloning
        // a name parsed from the wire may allocate.
        let len = match h.keys().find(|k| doomed(k)) {
            None => return,
            Some(k) if k.as_str().len() <= buf.len() => {
                buf[..k.as_str().len()].copy_from_slice(k.as_str().as_bytes());
                k.as_str().len()
            }
            Some(_) => 0,
        };
        let gone = std::str::from_utf8(&buf[..len])
            .ok()
            .filter(|n| !n.is_empty())
            .and_then(|n| h.remove(n))
            .is_some();
        if !gone {
            // A name too long for the buffer.
            if let Some(k) = h.keys().find(|k| doomed(k)).cloned() {
                h.remove(k);
            }
        }
    }
}

/// Removes the headers that `Connection` lists (RFC 9110 §7.6.1).
fn strip_connection_named(h: &mut HeaderMap) {
    let mut i = 0;
    // A copy of a value shares its bytes, and names are looked up as
    // `&str`: nothing is allocated.
    while let Some(v) = h.get_all(header::CONNECTION).iter().nth(i).cloned() {
        for token in v.as_bytes().split(|b| *b == b',') {
            if let Ok(name) = std::str::from_utf8(token.trim_ascii()) {
                // `Connection` itself goes with the other hop-by-hop
                // headers; removing it here would skip its other lines.
                if !name.is_empty() && !name.eq_ignore_ascii_case("connection") {
                    h.remove(name);
                }
            }
        }
        i += 1;
    }
}

/// What the client said about forwarding, read before stripping: kept only
/// when the peer is a trusted proxy.
#[derive(Debug, Default, Clone)]
pub struct ClientForwarded {
    /// Incoming `X-Forwarded-For`.
    pub for_chain: Option<HeaderValue>,
    /// Incoming `X-Forwarded-Proto`.
    pub proto: Option<HeaderValue>,
    /// Incoming `X-Forwarded-Host`.
    pub host: Option<HeaderValue>,
    /// The host the client addressed: the absolute-form target's authority
    /// (RFC 9112 §3.2.2), else `Host`.
    pub request_host: Option<HeaderValue>,
    /// A framing problem that makes the request unacceptable.
    pub rejection: Option<ErrorKind>,
    /// A [`CLIENT_CLAIMED`] header some service allows is still present
    /// (see [`strip_client`]'s `keep`).
    pub claimed: bool,
}

/// Whether a header name is, read the way CGI/WSGI-style servers read
/// names (`_` as `-`), one the gateway strips, owns or frames with. Such
/// spellings are dropped so that `X-User_Id` cannot become
/// `HTTP_X_USER_ID` upstream, nor `Content_Length` a second
/// `CONTENT_LENGTH` next to the real one. Compares in place: no
/// allocation.
fn disguised(name: &str) -> bool {
    if !name.contains('_') {
        return false;
    }
    let folded = |b: u8| if b == b'_' { b'-' } else { b };
    let is = |want: &str| want.len() == name.len() && name.bytes().map(folded).eq(want.bytes());
    let starts = |prefix: &str| {
        name.len() > prefix.len()
            && name
                .bytes()
                .take(prefix.len())
                .map(folded)
                .eq(prefix.bytes())
    };
    STRIPPED
        .iter()
        .chain(&HOP_BY_HOP)
        .chain(&CLIENT_CLAIMED)
        .chain(&FRAMING)
        .any(|n| is(n.as_str()))
        || starts("x-forwarded-")
        || starts("x-internal-")
        || ["x-service-token", "x-correlation-id"].into_iter().any(is)
}

/// Whether an HTTP/2 request carries more than `max` header fields
/// (`gateway.limits.max_headers`). hyper's HTTP/1 parser refuses those
/// itself, but h2 bounds only the header list's size, so the count is
/// taken here; no allocation, and one length check when under the limit.
/// Cookie crumbs (RFC 9113 §8.2.3) count as the one `Cookie` header they
/// are over HTTP/1, so a browser's split cookies are not refused.
pub fn h2_over_field_limit(parts: &http::request::Parts, max: usize) -> bool {
    let h = &parts.headers;
    if parts.version != http::Version::HTTP_2 || h.len() <= max {
        return false;
    }
    let crumbs = h.get_all(header::COOKIE).iter().count();
    h.len() - crumbs.saturating_sub(1) > max
}

/// Strips every header the gateway owns from a client request, returning
/// the forwarding information it needs later. Runs before any policy.
///
/// `authority` is the request target's (absolute form, or HTTP/2's
/// `:authority`). `keep` is a mask over [`CLIENT_CLAIMED`]: the names some
/// service allows, left in place for now; [`strip_claimed`] removes them
/// once the service is known, unless it is one that allows them.
pub fn strip_client(
    h: &mut HeaderMap,
    authority: Option<&http::uri::Authority>,
    version: http::Version,
    keep: u16,
) -> ClientForwarded {
    let joined = |h: &HeaderMap, n: HeaderName| -> Option<HeaderValue> {
        let mut vals = h.get_all(n).iter();
        let first = vals.next()?.clone();
        let rest: Vec<&[u8]> = vals.map(HeaderValue::as_bytes).collect();
        if rest.is_empty() {
            return Some(first);
        }
        let mut all = first.as_bytes().to_vec();
        for r in rest {
            all.extend_from_slice(b", ");
            all.extend_from_slice(r);
        }
        HeaderValue::from_bytes(&all).ok()
    };
    let mut rejection = host_problem(h, authority, version);
    // hyper decodes `chunked` only; any other coding would reach the
    // upstream undecoded and unannounced (RFC 9112 §6.1: 501).
    let te_ok = h
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .all(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked"));
    if !te_ok {
        rejection = Some(ErrorKind::NotImplemented("Unsupported transfer coding"));
    }
    let fwd = ClientForwarded {
        for_chain: joined(h, name::X_FORWARDED_FOR),
        proto: h.get(name::X_FORWARDED_PROTO).cloned(),
        host: h.get(name::X_FORWARDED_HOST).cloned(),
        request_host: authority
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .or_else(|| h.get(header::HOST).cloned()),
        rejection,
        claimed: keep != 0 && h.keys().any(|k| claimed_bit(k) & keep != 0),
    };
    strip_hop_by_hop(h, |n| {
        STRIPPED.contains(n)
            || claimed_bit(n) & !keep != 0
            || n.as_str().starts_with("x-forwarded-")
            || disguised(n.as_str())
    });
    fwd
}

/// What is wrong with the host a request names, if anything. RFC 9112
/// §3.2: an HTTP/1.1 request without `Host`, or with more than one, is
/// 400 (HTTP/1.0 predates `Host`; HTTP/2 may carry `:authority`
/// instead). A target or `Host` with userinfo (`u:p@host`) is refused, as
/// nginx does: it would travel on as `X-Forwarded-Host`.
fn host_problem(
    h: &HeaderMap,
    authority: Option<&http::uri::Authority>,
    version: http::Version,
) -> Option<ErrorKind> {
    let mut hosts = h.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Some(ErrorKind::BadRequest("Invalid Host header"));
    }
    let missing = match version {
        http::Version::HTTP_09 | http::Version::HTTP_10 => false,
        http::Version::HTTP_11 => host.is_none(),
        _ => host.is_none() && authority.is_none(),
    };
    if missing {
        return Some(ErrorKind::BadRequest("Missing Host header"));
    }
    if authority.is_some_and(|a| a.as_str().contains('@')) {
        return Some(ErrorKind::BadRequest(
            "Invalid request target: userinfo is not allowed",
        ));
    }
    if host.is_some_and(|v| v.as_bytes().contains(&b'@')) {
        return Some(ErrorKind::BadRequest("Invalid Host header"));
    }
    None
}

/// Removes the [`CLIENT_CLAIMED`] headers phase 1 left in place for some
/// service, unless `allowed` (the chosen service's
/// `allow_client_headers`) names them. Runs only when
/// [`ClientForwarded::claimed`] says such a header is there.
pub fn strip_claimed(h: &mut HeaderMap, allowed: &[&str]) {
    let allow = claimed_mask(allowed);
    remove_where(h, |n| claimed_bit(n) & !allow != 0);
}

/// The client address: the peer, or, when the peer is a trusted proxy, the
/// nearest address in the forwarded chain that is not a trusted proxy.
pub fn client_ip(peer: IpAddr, fwd: &ClientForwarded, trusted: &TrustedProxies) -> IpAddr {
    // An IPv4 client on a dual-stack listener appears as ::ffff:a.b.c.d.
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let Some(chain) = fwd.for_chain.as_ref().and_then(|v| v.to_str().ok()) else {
        return peer;
    };
    let mut client = peer;
    for hop in chain.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !trusted.contains(client) {
            break;
        }
    }
    client
}

/// Sets the forwarding, tracing and identity headers of an upstream request.
pub fn set_upstream(
    h: &mut HeaderMap,
    ctx: &RequestCtx,
    fwd: &ClientForwarded,
    trusted_peer: bool,
    via: &HeaderValue,
) {
    // Up to eleven headers are added: one growth of the map, not several.
    h.reserve(11);
    let peer = ctx.peer.ip().to_canonical();
    let xff = match (&fwd.for_chain, trusted_peer, peer) {
        (Some(chain), true, _) => {
            HeaderValue::from_str(&format!("{}, {peer}", chain.to_str().unwrap_or_default()))
        }
        (_, _, IpAddr::V4(v4)) => HeaderValue::from_bytes(ipv4_text(v4, &mut [0; 15])),
        _ => HeaderValue::from_str(&peer.to_string()),
    };
    if let Ok(v) = xff {
        h.insert(name::X_FORWARDED_FOR, v);
    }
    let proto = fwd
        .proto
        .clone()
        .filter(|_| trusted_peer)
        .unwrap_or(HeaderValue::from_static(if ctx.https {
            "https"
        } else {
            "http"
        }));
    h.insert(name::X_FORWARDED_PROTO, proto);
    let host = fwd
        .host
        .clone()
        .filter(|_| trusted_peer)
        .or(fwd.request_host.clone());
    if let Some(host) = host {
        h.insert(name::X_FORWARDED_HOST, host);
    }
    append_via(h, via);
    h.insert(name::X_REQUEST_ID, ctx.ids.request_id.clone());
    h.insert(name::X_CORRELATION_ID, ctx.ids.correlation_id.clone());
    h.insert(name::TRACEPARENT, ctx.ids.traceparent.clone());
    if let Some(v) = ctx
        .caller
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert(name::X_CALLER_SERVICE, v);
    }
    if let Some(user) = &ctx.user {
        // Built once per verified token (`User::new`); cloning shares them.
        if let Some(v) = &user.headers.0 {
            h.insert(name::X_USER_ID, v.clone());
        }
        if let Some(v) = &user.headers.1 {
            h.insert(name::X_USER_ROLES, v.clone());
        }
    }
    if let Some(v) = ctx
        .tenant
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
    {
        h.insert(name::X_TENANT_ID, v);
    }
}

/// An IPv4 address in dotted decimal, written into `buf`: the formatter
/// machinery costs more than the rest of the forwarding headers together.
fn ipv4_text(ip: std::net::Ipv4Addr, buf: &mut [u8; 15]) -> &[u8] {
    let mut n = 0;
    for (i, o) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if o >= 100 {
            buf[n] = b'0' + o / 100;
            n += 1;
        }
        if o >= 10 {
            buf[n] = b'0' + o / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + o % 10;
        n += 1;
    }
    &buf[..n]
}

/// Appends this gateway to `Via` (RFC 9110 §7.6.3), in both directions,
/// keeping every entry already there.
pub fn append_via(h: &mut HeaderMap, via: &HeaderValue) {
    if !h.contains_key(header::VIA) {
        // The common case: a shared copy of the gateway's own value.
        h.insert(header::VIA, via.clone());
        return;
    }
    let mut v: Vec<u8> = Vec::new();
    for prev in h.get_all(header::VIA) {
        v.extend_from_slice(prev.as_bytes());
        v.extend_from_slice(b", ");
    }
    v.extend_from_slice(via.as_bytes());
    let value = HeaderValue::from_bytes(&v).unwrap_or_else(|_| via.clone());
    h.insert(header::VIA, value);
}

/// Filters an upstream response: hop-by-hop headers, `Server` and
/// `X-Powered-By` go; `Via`, `X-Request-Id` and `X-Correlation-Id` are set.
pub fn filter_response(h: &mut HeaderMap, ctx: &RequestCtx, via: &HeaderValue) {
    strip_hop_by_hop(h, |n| n == header::SERVER || n == name::X_POWERED_BY);
    append_via(h, via);
    set_ids(h, ctx);
}

/// `X-Request-Id` and `X-Correlation-Id`, on every response.
pub fn set_ids(h: &mut HeaderMap, ctx: &RequestCtx) {
    h.insert(name::X_REQUEST_ID, ctx.ids.request_id.clone());
    h.insert(name::X_CORRELATION_ID, ctx.ids.correlation_id.clone());
}

#[cfg(test)]
mod names_tests {
    use super::*;

    #[test]
    fn ipv4_text_is_the_standard_dotted_decimal() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.100.9.99",
        ] {
            let v4: std::net::Ipv4Addr = ip.parse().unwrap();
            assert_eq!(ipv4_text(v4, &mut [0; 15]), ip.as_bytes());
        }
    }

    #[test]
    fn strip_client_removes_owned_listed_long_and_many_headers_and_keeps_the_rest() {
        let mut h = HeaderMap::new();
        let mut add = |n: &str, v: &str| {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        };
        add("x-user-id", "forged");
        add("x_user_id", "forged");
        add("connection", "x-secret, Keep-Alive");
        add("connection", "x-other");
        add("x-secret", "1");
        add("x-other", "2");
        add("keep-alive", "timeout=5");
        add("x-forwarded-for", "1.2.3.4");
        add(
            &format!("x-forwarded-{}", "a".repeat(80)),
            "longer than the buffer",
        );
        for i in 0..20 {
            add(&format!("x-forwarded-n{i}"), "more than one pass");
        }
        add("accept", "*/*");
        add("x-custom", "kept");
        let fwd = strip_client(&mut h, None, http::Version::HTTP_11, 0);
        assert_eq!(fwd.for_chain.unwrap(), "1.2.3.4");
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-custom"]);
    }

    #[test]
    fn underscore_spellings_are_read_as_cgi_reads_them() {
        for n in [
            "x_user_id",
            "content_length",
            "transfer_encoding",
            "keep_alive",
            "true_client_ip",
            "x-original_host",
            "x_forwarded_anything",
            "x_internal_x",
            "x_correlation_id",
        ] {
            assert!(disguised(n), "{n}");
        }
        for n in [
            "x_custom",
            "x-user-id",
            "content_lengthx",
            "x_forwarded_",
            "te",
        ] {
            assert!(!disguised(n), "{n}");
        }
    }

    #[test]
    fn host_rules_by_version() {
        use http::Version as V;
        let host = |v: Option<&'static str>| {
            let mut h = HeaderMap::new();
            if let Some(v) = v {
                h.insert(header::HOST, HeaderValue::from_static(v));
            }
            h
        };
        let auth = |a: &str| a.parse::<http::uri::Authority>().unwrap();
        let gw = auth("gw");
        let cases = [
            (host(Some("gw")), None, V::HTTP_11, true),
            (host(None), None, V::HTTP_11, false),
            (host(None), Some(&gw), V::HTTP_11, false),
            (host(None), None, V::HTTP_10, true),
            (host(None), None, V::HTTP_2, false),
            (host(None), Some(&gw), V::HTTP_2, true),
            (host(Some("gw")), None, V::HTTP_2, true),
            (host(Some("u:p@gw")), None, V::HTTP_11, false),
        ];
        for (h, a, v, ok) in &cases {
            assert_eq!(host_problem(h, *a, *v).is_none(), *ok, "{h:?} {a:?} {v:?}");
        }
        let userinfo = auth("u:p@gw");
        assert!(host_problem(&host(Some("gw")), Some(&userinfo), V::HTTP_11).is_some());
    }

    #[test]
    fn stripped_names_are_owned_and_overrides() {
        let want: Vec<&str> = OWNED.iter().chain(&OVERRIDES).copied().collect();
        let stripped = STRIPPED;
        let got: Vec<&str> = stripped.iter().map(HeaderName::as_str).collect();
        assert_eq!(got, want);
    }
}
