//! One route: its path, methods, upstream (or versions), canary, and the
//! rules that join a route to its policy and its services.

use super::{auth, pattern, policies, traffic, values, versions, Ctx};
use crate::diag::Problem;
use crate::ir::methods;
use crate::ir::pattern::{Part, Pattern};
use crate::ir::{CanaryIr, GatewayIr, RouteIr, ServiceIr};
use crate::spec::{Credential, PolicyRef, Spec, SpecPath};

/// One route, resolved against its services and its effective policy.
/// Each rule is its own `check_*` below; this function only gathers what
/// they need and assembles the route.
pub(super) fn check_route(
    cx: &mut Ctx<'_>,
    spec: &Spec,
    services: &[ServiceIr],
    gw: &GatewayIr,
    i: usize,
) -> Option<RouteIr> {
    let r = &spec.routes[i];
    let at = SpecPath::root().key("routes").index(i);
    let pattern = cx.check(&at.key("path"), pattern::parse_pattern(&r.path));
    check_not_health(cx, &at, &r.path);
    let methods = check_methods(cx, &at, r.methods.as_deref());
    let (service, template, versions) = check_upstreams(cx, &at, r, pattern.as_ref(), services);
    check_canary_or_versions(cx, &at, r);
    let (policy, policy_name) = policies::resolve_policy(cx, spec, &at, r.policy.as_ref());
    let timeout_ms = policy
        .timeout
        .as_deref()
        .and_then(|t| values::duration_ms(t).ok())
        .unwrap_or(gw.upstream_ms);
    let body_timeout_ms = policy
        .body_timeout
        .as_deref()
        .and_then(|t| values::duration_ms(t).ok())
        .unwrap_or(gw.body_ms);
    let mut forward = policy.forward_credentials.clone().unwrap_or_default();
    forward.sort();
    forward.dedup();
    let policy_at = if r.policy.is_some() {
        at.key("policy")
    } else {
        at.key("path")
    };
    let auth = auth::check_route_auth(
        cx,
        &policy_at,
        &policy,
        gw.jwt.as_ref(),
        gw.service_auth.as_ref(),
        gw.tls.as_ref(),
    );
    check_cookie_forwarded(cx, &policy_at, &forward, gw);
    let (pattern, methods, service, template) = (pattern?, methods?, service?, template?);
    let canary = r
        .canary
        .as_ref()
        .and_then(|c| check_canary(cx, &at.key("canary"), c, services, service));
    // Every service the route may reach: its own, a canary, each version.
    let reachable: Vec<usize> = std::iter::once(service)
        .chain(canary.as_ref().map(|c| c.service))
        .chain(
            versions
                .iter()
                .flat_map(|v| v.live.iter().map(|x| x.service)),
        )
        .collect();
    check_authorization_forwarded(cx, &policy_at, &forward, services, &reachable);
    check_per_try_timeout(cx, &policy_at, &policy, timeout_ms);
    let rest_segment = pattern.rest_segment();
    Some(RouteIr {
        id: r.id.clone().unwrap_or_default(),
        pattern_text: r.path.clone(),
        pattern,
        methods,
        service,
        upstream_text: versions.as_ref().map_or_else(
            || r.upstream.clone().unwrap_or_default(),
            |v| v.live[v.default].upstream_text.clone(),
        ),
        template,
        versions,
        rest_segment,
        timeout_ms,
        body_timeout_ms,
        forward,
        rate_limit: policy
            .rate_limit
            .as_ref()
            .and_then(|rl| traffic::rate_limit_ir(rl, policy_name.as_deref().unwrap_or(&r.path))),
        cors: policy.cors.as_ref().map(traffic::cors_ir),
        body_limit: policy
            .body_limit
            .as_deref()
            .and_then(|b| traffic::parse_size(b).ok()),
        canary,
        retries: policy.retries.as_ref().map(traffic::retries_ir),
        policy_name,
        inline_policy: matches!(r.policy, Some(PolicyRef::Inline(_))),
        auth,
        spec_index: i,
    })
}

/// The gateway answers `GET /health` itself (liveness for the load
/// balancer), so a route written for exactly that path would never be
/// reached; its author almost certainly meant the upstream's own check.
fn check_not_health(cx: &mut Ctx<'_>, at: &SpecPath, path: &str) {
    if path == "/health" {
        cx.error(
            &at.key("path"),
            Problem::new(
                "`/health` is answered by the gateway itself",
                "give the upstream's health check another path, e.g. `/api/v1/<service>/health`",
            ),
        );
    }
}

/// Versions choose the upstream by the request's media type and a canary
/// by the consumer; both at once would leave it undefined which wins.
fn check_canary_or_versions(cx: &mut Ctx<'_>, at: &SpecPath, r: &crate::spec::Route) {
    if r.canary.is_some() && r.versions.is_some() {
        cx.error(
            &at.key("canary"),
            Problem::new(
                "a versioned route cannot also have a canary",
                "put the canary's upstream under its own version, or split the route",
            ),
        );
    }
}

/// The auth cookie is named by `gateway.jwt.cookie`; without it there is
/// no cookie the gateway could recognise, so forwarding it means nothing.
fn check_cookie_forwarded(cx: &mut Ctx<'_>, at: &SpecPath, forward: &[Credential], gw: &GatewayIr) {
    if forward.contains(&Credential::AuthCookie)
        && gw.jwt.as_ref().and_then(|j| j.cookie.as_ref()).is_none()
    {
        cx.error(
            at,
            Problem::new(
                "`auth_cookie` is forwarded but no `gateway.jwt.cookie` is configured",
                "set `gateway.jwt.cookie`, or remove `auth_cookie`",
            ),
        );
    }
}

/// A service signed with `jwt` receives the gateway's token in
/// `Authorization`, so a forwarded client `Authorization` would be
/// overwritten (or, worse, confused with the gateway's proof). Checked
/// for every service the route may reach.
fn check_authorization_forwarded(
    cx: &mut Ctx<'_>,
    at: &SpecPath,
    forward: &[Credential],
    services: &[ServiceIr],
    reachable: &[usize],
) {
    let jwt_service = reachable
        .iter()
        .find(|&&i| services[i].identity.kind == crate::spec::IdentityKind::Jwt);
    if let (Some(&s), true) = (jwt_service, forward.contains(&Credential::Authorization)) {
        cx.error(
            at,
            Problem::new(
                format!(
                    "the client's Authorization is forwarded, but service `{}` receives the gateway's token there",
                    services[s].name
                ),
                "stop forwarding `authorization`, or sign this service with `hmac`",
            ),
        );
    }
}

/// A retry happens only after an attempt fails inside the route's
/// timeout; a per-try timeout as long as the route's leaves no time for a
/// second attempt, so the retries configured could never run.
fn check_per_try_timeout(
    cx: &mut Ctx<'_>,
    at: &SpecPath,
    policy: &crate::spec::Policy,
    timeout_ms: u64,
) {
    let per_try = policy
        .retries
        .as_ref()
        .and_then(|r| r.per_try_timeout.as_deref())
        .and_then(|t| values::duration_ms(t).ok());
    if let Some(per_try) = per_try.filter(|&p| p >= timeout_ms) {
        cx.error(
            at,
            Problem::new(
                format!(
                    "the per-try timeout ({per_try} ms) is not shorter than the route's timeout ({timeout_ms} ms)"
                ),
                "an attempt that times out could never be retried: shorten `retries.per_try_timeout` or lengthen `timeout`",
            ),
        );
    }
}

/// A canary gets a share of a route's traffic on another service with the
/// same upstream template; the share is per consumer, so it must be a
/// percentage and the service a different, declared one.
pub(super) fn check_canary(
    cx: &mut Ctx<'_>,
    at: &SpecPath,
    c: &crate::spec::Canary,
    services: &[ServiceIr],
    primary: usize,
) -> Option<CanaryIr> {
    let idx = services.iter().position(|s| s.name == c.service);
    match idx {
        None => cx.error(
            &at.key("service"),
            Problem::new(
                format!("canary service `{}` is not declared", c.service),
                "declare it under `services:`",
            ),
        ),
        Some(i) if i == primary => cx.error(
            &at.key("service"),
            Problem::new(
                "the canary is the route's own service",
                "name another service, or remove `canary`",
            ),
        ),
        Some(_) => {}
    }
    if !(0.0..=100.0).contains(&c.weight) || c.weight.is_nan() {
        cx.error(
            &at.key("weight"),
            Problem::new(
                format!("canary weight {} is not a percentage", c.weight),
                "use 0 to 100, e.g. `5` for 5% of consumers",
            ),
        );
    }
    let header = c.header.clone().unwrap_or_else(|| "X-Canary".into());
    if header.is_empty()
        || !header
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
    {
        cx.error(
            &at.key("header"),
            Problem::new(
                format!("`{header}` is not a header name"),
                "use letters, digits and `-`, e.g. `X-Canary`",
            ),
        );
    }
    let (force_canary, force_stable) = check_force_values(cx, &at.key("force_values"), c);
    let bp = (c.weight.clamp(0.0, 100.0) * 100.0).round() as u32;
    Some(CanaryIr {
        service: idx?,
        basis_points: bp,
        header: header.to_ascii_lowercase(),
        force_canary,
        force_stable,
    })
}

/// The force header's values are compared byte for byte with what a client
/// sends, so each must be something a header can carry exactly (an HTTP
/// token: no spaces, which proxies may trim, no commas, which may join
/// values), and the two must differ or one side could never be forced.
pub(super) fn check_force_values(
    cx: &mut Ctx<'_>,
    at: &SpecPath,
    c: &crate::spec::Canary,
) -> (String, String) {
    let given = c.force_values.clone().unwrap_or_default();
    let canary = given.canary.unwrap_or_else(|| "always".into());
    let stable = given.stable.unwrap_or_else(|| "never".into());
    for (side, value) in [("canary", &canary), ("stable", &stable)] {
        if !traffic::token_ok(value) {
            let message = if value.is_empty() {
                format!("the `{side}` force value is empty")
            } else {
                format!("`{value}` cannot be matched as a header value")
            };
            cx.error(
                &at.key(side),
                Problem::new(
                    message,
                    "use one word of letters, digits, `-`, `_` or `.`, e.g. `canary`",
                ),
            );
        }
    }
    if canary == stable {
        cx.error(
            &at.key("stable"),
            Problem::new(format!("`{stable}` would force both sides"), "give `canary` and `stable` different values (the defaults are `always` and `never`)"),
        );
    }
    (canary, stable)
}

type Upstreams = (
    Option<usize>,
    Option<Vec<Part>>,
    Option<crate::ir::traffic::VersionsIr>,
);

/// The route's upstream: its own `service` and `upstream`, or, with
/// `versions`, the default version's (and the versions).
pub(super) fn check_upstreams(
    cx: &mut Ctx<'_>,
    at: &SpecPath,
    r: &crate::spec::Route,
    pattern: Option<&Pattern>,
    services: &[ServiceIr],
) -> Upstreams {
    let mut one = |cx: &mut Ctx<'_>, at: &SpecPath, svc: &str, up: &str, p: Option<&Pattern>| {
        check_service_and_template(cx, at, &r.path, svc, up, p, services)
    };
    match (&r.versions, &r.service, &r.upstream) {
        (Some(v), None, None) => {
            let vs = versions::check_versions(cx, &at.key("versions"), v, pattern, &mut one);
            match vs {
                Some(vs) => {
                    let d = &vs.live[vs.default];
                    (Some(d.service), Some(d.template.clone()), Some(vs))
                }
                None => (None, None, None),
            }
        }
        (Some(_), s, _) => {
            let field = if s.is_some() { "service" } else { "upstream" };
            cx.error(
                &at.key(field),
                Problem::new(
                    format!("`{field}` is set beside `versions`"),
                    "with `versions`, each live version names its own `service` and `upstream`",
                ),
            );
            (None, None, None)
        }
        (None, Some(svc), Some(up)) => {
            let (s, t) = one(cx, at, svc, up, pattern);
            (s, t, None)
        }
        (None, s, _) => {
            let field = if s.is_none() { "service" } else { "upstream" };
            cx.error(
                &at.key("path"),
                Problem::new(
                    format!("route `{}` has no `{field}`", r.path),
                    "name the upstream `service` and its `upstream` path, or list `versions`",
                ),
            );
            (None, None, None)
        }
    }
}

/// A `service` name and an `upstream` template, as a route or a version
/// writes them.
pub(super) fn check_service_and_template(
    cx: &mut Ctx<'_>,
    at: &SpecPath,
    path: &str,
    svc: &str,
    up: &str,
    pattern: Option<&Pattern>,
    services: &[ServiceIr],
) -> (Option<usize>, Option<Vec<Part>>) {
    let service = services.iter().position(|s| s.name == svc);
    if service.is_none() {
        let known: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        cx.error(
            &at.key("service"),
            Problem::new(
                format!("route `{path}` uses unknown service `{svc}`"),
                if known.is_empty() {
                    "declare it under `services:`".into()
                } else {
                    format!(
                        "declare it under `services:`, or use one of: {}",
                        known.join(", ")
                    )
                },
            ),
        );
    }
    let template =
        pattern.and_then(|p| cx.check(&at.key("upstream"), pattern::parse_template(up, p)));
    (service, template)
}

/// Methods are case-sensitive tokens; a route that lists none accepts all
/// standard methods. GET implies HEAD (RFC 9110 §9.3.2).
pub(super) fn check_methods(
    cx: &mut Ctx<'_>,
    at: &SpecPath,
    list: Option<&[String]>,
) -> Option<u16> {
    let Some(list) = list else {
        return Some(methods::ALL);
    };
    if list.is_empty() {
        cx.error(
            &at.key("methods"),
            Problem::new(
                "the method list is empty, so the route could never match",
                "list at least one method, or remove `methods` to accept all",
            ),
        );
        return None;
    }
    let mut bits = 0u16;
    let mut ok = true;
    for (i, m) in list.iter().enumerate() {
        match values::method_bit(m) {
            Ok(b) if bits & b != 0 => {
                cx.error(
                    &at.key("methods").index(i),
                    Problem::new(
                        format!("method `{m}` is listed twice"),
                        "list each method once",
                    ),
                );
                ok = false;
            }
            Ok(b) => bits |= b,
            Err(p) => {
                cx.error(&at.key("methods").index(i), p);
                ok = false;
            }
        }
    }
    if bits & 1 != 0 {
        bits |= 2;
    }
    ok.then_some(bits)
}
