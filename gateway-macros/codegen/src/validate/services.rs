//! Upstream services: URLs, identities, TLS, breakers, and the headers a
//! service may trust. Each service is checked on its own, then against
//! the others (credentials are never shared).

use std::collections::BTreeMap;

use super::{values, Ctx};
use crate::diag::Problem;
use crate::ir::{BreakerIr, FailureRateIr, GatewayIr, ServiceIr};
use crate::spec::{Spec, SpecPath};

pub(super) fn check_services(cx: &mut Ctx<'_>, spec: &Spec) -> Vec<ServiceIr> {
    let mut out = Vec::new();
    for (name, s) in &spec.services {
        let at = SpecPath::root().key("services").key(name);
        cx.check(
            &SpecPath::root().key("services").key_name(name),
            values::ident("service", name),
        );
        cx.check(&at.key("url").key("env"), values::env_name(&s.url.env));
        cx.check(
            &at.key("url").key("default"),
            values::base_url(&s.url.default),
        );
        let tls_ca_env = s.tls.as_ref().and_then(|t| {
            t.ca_file_env.as_ref().and_then(|e| {
                cx.check(&at.key("tls").key("ca_file_env"), values::env_name(e))
                    .map(|()| e.clone())
            })
        });
        let tls_client_cert = s
            .tls
            .as_ref()
            .and_then(|t| super::identity::check_client_cert(cx, &at.key("tls"), t));
        let breaker = check_breaker(cx, &at, s.circuit_breaker.as_ref()).map(|b| BreakerIr {
            rate: check_breaker_rate(cx, &at, s.circuit_breaker.as_ref()),
            ..b
        });
        let identity = super::identity::check_identity(cx, name, s.identity.as_ref());
        let connect_ms = s.connect_timeout.as_ref().and_then(|t| {
            let ms = cx.check(&at.key("connect_timeout"), values::duration_ms(t))?;
            if ms > 60_000 {
                cx.error(
                    &at.key("connect_timeout"),
                    Problem::new(
                        "a connect timeout over 1m holds requests on a dead host",
                        "use at most 1m; connecting on a healthy network takes milliseconds",
                    ),
                );
            }
            Some(ms)
        });
        out.push(ServiceIr {
            name: name.clone(),
            env: s.url.env.clone(),
            default_url: s.url.default.trim_end_matches('/').to_owned(),
            identity,
            allow_plaintext: s.allow_plaintext.unwrap_or(false),
            breaker,
            tls_ca_env,
            tls_client_cert,
            connect_ms,
            allow_client_headers: check_client_headers(cx, &at, &s.allow_client_headers),
        });
    }
    check_distinct_credentials(cx, &out);
    out
}

/// `allow_client_headers`: each name one the gateway strips by default
/// for being client-claimed ([`values::client_header`]), listed once. A
/// team that trusts a CDN's `True-Client-IP` opts in per service; the
/// gateway's own identity headers can never be opted in.
pub(super) fn check_client_headers(
    cx: &mut Ctx<'_>,
    at: &SpecPath,
    names: &[String],
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let here = at.key("allow_client_headers").index(i);
        let Some(h) = cx.check(&here, values::client_header(name)) else {
            continue;
        };
        if out.contains(&h) {
            cx.error(
                &here,
                Problem::new(
                    format!("`{name}` is listed twice"),
                    "remove the repeated entry",
                ),
            );
            continue;
        }
        out.push(h);
    }
    out
}

/// A credential has one job. The JWT user secret signs nothing else (else
/// a service token the gateway mints would pass as a user's), and the
/// shared secret is no service's credential. A calling service's secret
/// may double as the gateway's credential for that same service: its
/// signatures name the signer, so one cannot be replayed as the other.
pub(super) fn check_secret_reuse(cx: &mut Ctx<'_>, g: &GatewayIr, services: &[ServiceIr]) {
    let outbound: Vec<(&str, &str)> = services
        .iter()
        .filter_map(|s| {
            s.identity
                .secret_env
                .as_deref()
                .map(|e| (e, s.name.as_str()))
        })
        .collect();
    let jwt_at = SpecPath::root().key("gateway").key("jwt").key("secret_env");
    let sa_at = SpecPath::root().key("gateway").key("service_auth");
    let reuse = |cx: &mut Ctx<'_>, at: &SpecPath, var: &str, other: String| {
        cx.error(
            at,
            Problem::new(
                format!("`{var}` is also {other}"),
                "give every credential its own variable",
            ),
        );
    };
    let jwt = g.jwt.as_ref().and_then(|j| j.secret_env.as_deref());
    if let Some(var) = jwt {
        if let Some((_, svc)) = outbound.iter().find(|(e, _)| *e == var) {
            reuse(
                cx,
                &jwt_at,
                var,
                format!("the outbound credential of `{svc}`"),
            );
        }
    }
    let Some(sa) = &g.service_auth else {
        return;
    };
    for (caller, var) in &sa.callers {
        let at = sa_at.key("callers").key(caller);
        if jwt == Some(var.as_str()) {
            reuse(cx, &at, var, "the JWT secret".into());
        } else if let Some((_, svc)) = outbound.iter().find(|(e, s)| e == var && s != caller) {
            reuse(cx, &at, var, format!("the outbound credential of `{svc}`"));
        }
    }
    if let Some(var) = sa.shared_secret_env.as_deref() {
        let at = sa_at.key("shared_secret_env");
        if jwt == Some(var) {
            reuse(cx, &at, var, "the JWT secret".into());
        } else if let Some((_, svc)) = outbound.iter().find(|(e, _)| *e == var) {
            reuse(cx, &at, var, format!("the outbound credential of `{svc}`"));
        }
    }
}

/// A breaker per upstream is on by default, so one failing service is
/// answered fast instead of tying up connections; bounds keep it useful.
pub(super) fn check_breaker(
    cx: &mut Ctx<'_>,
    at: &SpecPath,
    b: Option<&crate::spec::CircuitBreaker>,
) -> Option<BreakerIr> {
    let at = at.key("circuit_breaker");
    let Some(b) = b else {
        return Some(BreakerIr::DEFAULT);
    };
    if b.enabled == Some(false) {
        if b.failures.is_some()
            || b.open_for.is_some()
            || b.probes.is_some()
            || b.failure_rate.is_some()
            || b.window.is_some()
            || b.min_requests.is_some()
        {
            cx.error(
                &at.key_name("enabled"),
                Problem::new(
                    "a disabled breaker has no other settings",
                    "remove `enabled: false` or the other fields",
                ),
            );
        }
        return None;
    }
    let failures = b.failures.unwrap_or(5);
    if !(1..=1000).contains(&failures) {
        cx.error(
            &at.key("failures"),
            Problem::new(
                format!("{failures} failures is out of range"),
                "use between 1 and 1000",
            ),
        );
    }
    let probes = b.probes.unwrap_or(1);
    if !(1..=100).contains(&probes) {
        cx.error(
            &at.key("probes"),
            Problem::new(
                format!("{probes} probes is out of range"),
                "use between 1 and 100",
            ),
        );
    }
    let open_ms = b
        .open_for
        .as_ref()
        .and_then(|d| cx.check(&at.key("open_for"), values::duration_ms(d)))
        .unwrap_or(30_000);
    Some(BreakerIr {
        failures,
        open_ms,
        probes,
        rate: None,
    })
}

/// The optional failure-rate trigger of a breaker: consecutive failures
/// miss an upstream that fails every other request, so a share over a
/// window can open it too; the window and floor keep a handful of
/// requests from deciding.
pub(super) fn check_breaker_rate(
    cx: &mut Ctx<'_>,
    at: &SpecPath,
    b: Option<&crate::spec::CircuitBreaker>,
) -> Option<FailureRateIr> {
    let b = b.filter(|b| b.enabled != Some(false))?;
    let at = at.key("circuit_breaker");
    let Some(percent) = b.failure_rate else {
        for (field, set) in [
            ("window", b.window.is_some()),
            ("min_requests", b.min_requests.is_some()),
        ] {
            if set {
                cx.error(
                    &at.key(field),
                    Problem::new(
                        format!("`{field}` belongs to a failure rate, and none is set"),
                        "add `failure_rate: 50` (percent), or remove it",
                    ),
                );
            }
        }
        return None;
    };
    if !(1..=100).contains(&percent) {
        cx.error(
            &at.key("failure_rate"),
            Problem::new(
                format!("a failure rate of {percent}% is out of range"),
                "use 1 to 100 (percent of the requests in the window)",
            ),
        );
    }
    let window = b
        .window
        .as_ref()
        .and_then(|d| cx.check(&at.key("window"), values::duration_ms(d)))
        .unwrap_or(30_000);
    if !(1_000..=3_600_000).contains(&window) {
        cx.error(
            &at.key("window"),
            Problem::new("the failure-rate window is out of range", "use 1s to 1h"),
        );
    }
    let min = b.min_requests.unwrap_or(20);
    if min == 0 {
        cx.error(
            &at.key("min_requests"),
            Problem::new(
                "a rate over no requests means nothing",
                "use at least 1; the default is 20",
            ),
        );
    }
    Some(FailureRateIr {
        percent,
        window_ms: window,
        min_requests: min,
    })
}

/// Credentials are per service, never shared: two services signing with
/// one secret could impersonate the gateway to each other.
pub(super) fn check_distinct_credentials(cx: &mut Ctx<'_>, services: &[ServiceIr]) {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for s in services {
        let Some(env) = s.identity.secret_env.as_deref() else {
            continue;
        };
        if let Some(first) = seen.insert(env, &s.name) {
            cx.error(
                &SpecPath::root()
                    .key("services")
                    .key(&s.name)
                    .key("identity")
                    .key("secret_env"),
                Problem::new(
                    format!(
                        "services `{first}` and `{}` share the credential `{env}`",
                        s.name
                    ),
                    "give each upstream service its own credential variable",
                ),
            );
        }
    }
}
