//! Scalar values: durations, methods, environment variable names, URLs,
//! addresses. Each parser returns the fix along with the problem.

use crate::diag::Problem;
use crate::ir::methods::METHODS;

/// Longest duration accepted anywhere: a day. Longer values are typos.
const MAX_DURATION_MS: u64 = 24 * 60 * 60 * 1000;

/// Parses `250ms`, `5s`, `2m`, `1h` into milliseconds.
pub fn duration_ms(s: &str) -> Result<u64, Problem> {
    let help = "write a whole number with a unit: `250ms`, `5s`, `2m` or `1h`";
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    let scale = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(Problem::new(format!("`{s}` is not a duration"), help)),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| Problem::new(format!("`{s}` is not a duration"), help))?;
    let ms = n.saturating_mul(scale);
    if ms == 0 {
        return Err(Problem::new(
            format!("duration `{s}` is zero"),
            "use a positive duration",
        ));
    }
    if ms > MAX_DURATION_MS {
        return Err(Problem::new(
            format!("duration `{s}` is longer than a day"),
            "use at most `24h`",
        ));
    }
    Ok(ms)
}

/// Parses one method name into its bit.
pub fn method_bit(m: &str) -> Result<u16, Problem> {
    if let Some((_, bit)) = METHODS.iter().find(|(name, _)| *name == m) {
        return Ok(*bit);
    }
    let upper = m.to_ascii_uppercase();
    if METHODS.iter().any(|(name, _)| *name == upper) {
        return Err(Problem::new(
            format!("method `{m}` is not upper case"),
            format!("write `{upper}`: methods are case-sensitive"),
        ));
    }
    if upper == "CONNECT" || upper == "TRACE" {
        return Err(Problem::new(
            format!("the gateway does not proxy `{upper}`"),
            "CONNECT opens tunnels and TRACE reflects headers; neither belongs behind an API gateway",
        ));
    }
    Err(Problem::new(
        format!("`{m}` is not an HTTP method the gateway routes"),
        "use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS",
    ))
}

/// Client headers the gateway strips by default because upstream
/// frameworks commonly trust them for the client's address or user, and
/// which a service may take anyway (`allow_client_headers`). The runtime
/// holds the same list, in the same order: `gateway::headers::CLIENT_CLAIMED`
/// (tests/hygiene.rs checks that they agree).
pub const CLIENT_HEADERS: [&str; 13] = [
    "True-Client-IP",
    "X-Client-IP",
    "CF-Connecting-IP",
    "Client-IP",
    "X-Cluster-Client-IP",
    "X-Original-Forwarded-For",
    "X-Envoy-External-Address",
    "Remote-User",
    "X-Remote-User",
    "X-Authenticated-User",
    "X-Auth-Request-User",
    "X-Consumer-Id",
    "X-Original-Host",
];

/// Headers the gateway itself sets, signs with or strips for good
/// (contract §3; `gateway::headers::{OWNED, OVERRIDES, HOP_BY_HOP}`).
const GATEWAY_OWNED: [&str; 25] = [
    "x-internal-service-auth",
    "x-internal-timestamp",
    "x-internal-nonce",
    "x-service-name",
    "x-caller-service",
    "x-tenant-id",
    "x-user-id",
    "x-user-roles",
    "x-request-id",
    "x-correlation-id",
    "forwarded",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-real-ip",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
];

/// One entry of `allow_client_headers`, in lower case. Only a name the
/// gateway strips by default for being client-claimed may be listed:
/// identity, signing, forwarding and hop-by-hop headers belong to the
/// gateway on every route (an upstream must be able to trust them), and
/// any other header already passes, so listing it would be a misreading.
pub fn client_header(name: &str) -> Result<String, Problem> {
    let all = CLIENT_HEADERS.join(", ");
    if let Some(h) = CLIENT_HEADERS.iter().find(|h| h.eq_ignore_ascii_case(name)) {
        return Ok(h.to_ascii_lowercase());
    }
    let lower = name.to_ascii_lowercase();
    if lower.contains('_') {
        // CGI-style servers read `_` as `-`: such spellings are always
        // stripped, so that one header cannot pose as another.
        return Err(Problem::new(
            format!("`{name}`: names with `_` never reach an upstream"),
            format!(
                "write the name with `-` (`{}`); only these may be allowed: {all}",
                name.replace('_', "-")
            ),
        ));
    }
    let owned = GATEWAY_OWNED.contains(&lower.as_str())
        || lower.starts_with("x-forwarded-")
        || lower.starts_with("x-internal-");
    if owned {
        return Err(Problem::new(
            format!("`{name}` belongs to the gateway and can never come from a client"),
            format!(
                "the gateway sets or strips it on every route, so upstreams can trust it; \
                 only these may be allowed: {all}"
            ),
        ));
    }
    Err(Problem::new(
        format!("`{name}` is not a header the gateway strips by default"),
        format!("it already reaches the upstream; list only some of: {all}"),
    ))
}

/// Environment variable names: `[A-Z_][A-Z0-9_]*`. Anything else is most
/// likely a value pasted where its variable's name belongs, so the message
/// never repeats it (it may be a secret).
pub fn env_name(s: &str) -> Result<(), Problem> {
    let ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        return Ok(());
    }
    // Lower-case letters alone may be a misspelt name; anything else
    // (`:`, `/`, `.`, `-`, spaces) is a value pasted where a name belongs.
    let looks_like_name = s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if looks_like_name {
        return Err(Problem::new(
            "environment variable names here are upper case",
            "write the name in upper case letters, digits and `_` (e.g. `ORCHESTRATION_URL`)",
        ));
    }
    Err(Problem::new(
        "this is not an environment variable name; it looks like a literal value",
        "name the variable that holds the value (e.g. `ORCHESTRATION_URL`); values and secrets never go in gateway.yaml",
    ))
}

/// An upstream base URL: `http` or `https`, a host, an optional port and
/// path prefix; no credentials, query or fragment.
pub fn base_url(s: &str) -> Result<(), Problem> {
    let help = "write `http://host:port` or `https://host`, optionally with a path prefix";
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| Problem::new(format!("`{s}` is not a URL"), help))?;
    if scheme != "http" && scheme != "https" {
        return Err(Problem::new(
            format!("URL scheme `{scheme}` is not http or https"),
            help,
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(Problem::new(
            "the URL carries credentials",
            "credentials come from the service's identity settings, never from the URL",
        ));
    }
    if rest.contains('?') || rest.contains('#') {
        return Err(Problem::new(
            format!("URL `{s}` has a query or fragment"),
            help,
        ));
    }
    // `[v6]:port`, `[v6]`, `host:port` or `host`.
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, p)) => match p.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err(Problem::new(format!("URL `{s}` has no valid host"), help)),
            },
            None => return Err(Problem::new(format!("URL `{s}` has no valid host"), help)),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let v6 = authority.starts_with('[');
    let host_ok = !host.is_empty()
        && if v6 {
            host.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            host.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        };
    if !host_ok {
        return Err(Problem::new(format!("URL `{s}` has no valid host"), help));
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |n| n == 0) {
            return Err(Problem::new(
                format!("URL `{s}` has an invalid port `{p}`"),
                help,
            ));
        }
    }
    if path.contains("//") || path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(Problem::new(format!("URL `{s}` has an unclean path"), help));
    }
    Ok(())
}

/// `host:port` to listen on.
pub fn listen_addr(s: &str) -> Result<(), Problem> {
    s.parse::<std::net::SocketAddr>().map(|_| ()).map_err(|_| {
        Problem::new(
            format!("`{s}` is not an address to listen on"),
            "write an IP address and port, e.g. `0.0.0.0:8000` or `[::]:8000`",
        )
    })
}

/// An IP address or CIDR block.
pub fn cidr(s: &str) -> Result<(), Problem> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let help = "write an address (`10.0.0.5`) or a CIDR block (`10.0.0.0/8`, `fd00::/8`)";
    let ip: std::net::IpAddr = addr
        .parse()
        .map_err(|_| Problem::new(format!("`{s}` is not an IP address or CIDR block"), help))?;
    if let Some(l) = len {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match l.parse::<u8>() {
            Ok(n) if n <= max => {}
            _ => {
                return Err(Problem::new(
                    format!("`{s}` has an invalid prefix length"),
                    help,
                ))
            }
        }
    }
    Ok(())
}

/// The gateway name travels in `Via` and `X-Service-Name`, so it must be
/// an HTTP token.
pub fn gateway_name(s: &str) -> Result<(), Problem> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Problem::new(
            format!("gateway name `{s}` is not a plain token"),
            "use letters, digits, `-`, `_` and `.` (at most 64): it is sent in `Via` and `X-Service-Name`",
        ))
    }
}

/// Service, policy and route ids: lower-case identifiers.
pub fn ident(kind: &str, s: &str) -> Result<(), Problem> {
    let ok = s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Problem::new(
            format!("{kind} name `{s}` is not a lower-case identifier"),
            "start with a letter; use a-z, 0-9, `_` and `-`",
        ))
    }
}
