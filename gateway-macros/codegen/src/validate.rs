//! Validation: every rule the spec must satisfy, each a small `check_*`,
//! producing the checked model that `emit` turns into code.
//!
//! All problems are collected and reported together, each pointing at the
//! line and column of the value at fault.

pub mod auth;
pub mod limits;
pub mod pattern;
mod table;
pub mod traffic;
pub mod values;
pub mod versions;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::Problem;
use crate::diag::{Diagnostic, Diagnostics};
use crate::spec::{Credential, Policy, PolicyRef, Source, Spec, SpecPath};
use pattern::{Part, Pattern, Tier};

/// The spec after validation: everything `emit` needs, resolved.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Gateway-wide settings.
    pub gateway: GatewayIr,
    /// Services in name order; routes refer to them by index.
    pub services: Vec<ServiceIr>,
    /// Routes in file order.
    pub routes: Vec<RouteIr>,
    /// Router paths, each with the routes (by index) that share it.
    pub paths: Vec<(String, Vec<usize>)>,
    /// Warnings found along the way.
    pub warnings: Diagnostics,
}

/// Resolved `gateway:` settings.
#[derive(Debug, Clone)]
pub struct GatewayIr {
    /// Name for `Via`, logs, outbound identity.
    pub name: String,
    /// Default listen address.
    pub listen: String,
    /// Trusted proxy addresses and blocks.
    pub trusted_proxies: Vec<String>,
    /// Upstream connect timeout.
    pub connect_ms: u64,
    /// Default upstream response-head timeout.
    pub upstream_ms: u64,
    /// Drain deadline on shutdown.
    pub drain_ms: u64,
    /// Client request-head deadline.
    pub header_read_ms: u64,
    /// What one client may send.
    pub limits: limits::LimitsIr,
    /// Default client request-body deadline (and stall limit).
    pub body_ms: u64,
    /// JWT verification, when configured.
    pub jwt: Option<auth::JwtIr>,
    /// HMAC service auth, when configured.
    pub service_auth: Option<auth::ServiceAuthIr>,
    /// TLS termination, when configured.
    pub tls: Option<auth::TlsIr>,
}

/// A resolved upstream service.
#[derive(Debug, Clone)]
pub struct ServiceIr {
    /// Its name in the spec.
    pub name: String,
    /// The variable holding its base URL.
    pub env: String,
    /// The base URL when the variable is unset.
    pub default_url: String,
    /// How requests to it are signed.
    pub identity: auth::IdentityIr,
    /// Plain HTTP allowed in production.
    pub allow_plaintext: bool,
    /// Circuit breaker: (failures, open for ms, probes), or off.
    pub breaker: Option<(u32, u64, u32)>,
    /// Breaker failure rate: (percent, window ms, minimum requests).
    pub breaker_rate: Option<(u32, u64, u32)>,
    /// Variable naming a CA bundle for an `https://` upstream.
    pub tls_ca_env: Option<String>,
    /// Variables naming the client certificate chain and key (mTLS).
    pub tls_client_cert: Option<(String, String)>,
    /// Connect timeout overriding the gateway's.
    pub connect_ms: Option<u64>,
    /// Client-claimed headers it receives anyway, lower case.
    pub allow_client_headers: Vec<String>,
}

/// A resolved route.
#[derive(Debug, Clone)]
pub struct RouteIr {
    /// snake_case id (`api_v1_agents_id_execute`).
    pub id: String,
    /// The path pattern as written.
    pub pattern_text: String,
    /// The parsed pattern.
    pub pattern: Pattern,
    /// Method bits (see [`values::METHODS`]).
    pub methods: u16,
    /// Index into [`Checked::services`].
    pub service: usize,
    /// The upstream template as written.
    pub upstream_text: String,
    /// The parsed template.
    pub template: Vec<Part>,
    /// Path segment where the forwarded rest starts (catch-all or prefix).
    pub rest_segment: Option<usize>,
    /// Upstream response-head timeout.
    pub timeout_ms: u64,
    /// Client request-body deadline (and stall limit).
    pub body_timeout_ms: u64,
    /// Credentials forwarded upstream.
    pub forward: Vec<Credential>,
    /// The named policy, if any.
    pub policy_name: Option<String>,
    /// What the route asks of its callers.
    pub auth: auth::RouteAuthIr,
    /// Rate limit.
    pub rate_limit: Option<traffic::RateLimitIr>,
    /// CORS policy.
    pub cors: Option<traffic::CorsIr>,
    /// Explicit body limit in bytes.
    pub body_limit: Option<u64>,
    /// Canary.
    pub canary: Option<CanaryIr>,
    /// Retries.
    pub retries: Option<traffic::RetriesIr>,
    /// API versions; `service` and `template` are then the default's.
    pub versions: Option<versions::VersionsIr>,
    /// Index of the route in the spec's `routes:` list.
    pub spec_index: usize,
}

impl RouteIr {
    /// `CamelCase` enum variant for the id.
    pub fn variant(&self) -> String {
        self.id
            .split('_')
            .filter(|w| !w.is_empty())
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// `UPPER_SNAKE` constant name for the id.
    pub fn const_name(&self) -> String {
        self.id.to_ascii_uppercase()
    }
}

/// Collects diagnostics while checking.
struct Ctx<'a> {
    src: &'a Source<'a>,
    diags: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn error(&mut self, at: &SpecPath, p: Problem) {
        let (line, col) = self.src.locate(at);
        self.diags
            .push(Diagnostic::at(self.src, line, col, p.message).help(p.help));
    }

    fn warn(&mut self, at: &SpecPath, p: Problem) {
        let (line, col) = self.src.locate(at);
        self.warnings.push(
            Diagnostic::at(self.src, line, col, p.message)
                .help(p.help)
                .warning(),
        );
    }

    fn check<T>(&mut self, at: &SpecPath, r: Result<T, Problem>) -> Option<T> {
        r.map_err(|p| self.error(at, p)).ok()
    }
}

/// Validates a parsed spec.
///
/// # Errors
/// Every rule violation, located.
pub fn check(src: &Source<'_>, spec: &Spec) -> Result<Checked, Diagnostics> {
    let mut cx = Ctx {
        src,
        diags: Vec::new(),
        warnings: Vec::new(),
    };
    let gateway = check_gateway(&mut cx, spec);
    let services = check_services(&mut cx, spec);
    check_secret_reuse(&mut cx, &gateway, &services);
    check_policies(&mut cx, spec);
    table::check_not_empty(&mut cx, spec);
    let mut routes = Vec::new();
    for i in 0..spec.routes.len() {
        if let Some(route) = check_route(&mut cx, spec, &services, &gateway, i) {
            routes.push((i, route));
        }
    }
    check_service_idents(&mut cx, &services);
    check_route_ids(&mut cx, &mut routes);
    let paths = check_conflicts(&mut cx, &routes);
    if !cx.diags.is_empty() {
        return Err(Diagnostics(cx.diags));
    }
    // Only a spec without errors has every route resolved to its services.
    table::check_unused_services(&mut cx, &services, &routes);
    let mut checked = Checked {
        gateway,
        services,
        routes: routes.into_iter().map(|(_, r)| r).collect(),
        paths,
        warnings: Diagnostics(cx.warnings),
    };
    check_health_shadow(src, &mut checked);
    Ok(checked)
}

fn check_gateway(cx: &mut Ctx<'_>, spec: &Spec) -> GatewayIr {
    let at = SpecPath::root().key("gateway");
    let g = &spec.gateway;
    cx.check(&at.key("name"), values::gateway_name(&g.name));
    cx.check(&at.key("listen"), values::listen_addr(&g.listen));
    for (i, p) in g.trusted_proxies.iter().enumerate() {
        cx.check(&at.key("trusted_proxies").index(i), values::cidr(p));
    }
    let t = at.key("timeouts");
    let mut dur = |key: &str, v: &Option<String>, default: u64| match v {
        Some(s) => cx
            .check(&t.key(key), values::duration_ms(s))
            .unwrap_or(default),
        None => default,
    };
    let ir = GatewayIr {
        name: g.name.clone(),
        listen: g.listen.clone(),
        trusted_proxies: g.trusted_proxies.clone(),
        connect_ms: dur("connect", &g.timeouts.connect, 5_000),
        upstream_ms: dur("upstream", &g.timeouts.upstream, 30_000),
        drain_ms: dur("drain", &g.timeouts.drain, 30_000),
        header_read_ms: dur("header_read", &g.timeouts.header_read, 10_000),
        body_ms: dur("body", &g.timeouts.body, 10_000),
        limits: limits::LimitsIr::default(),
        jwt: None,
        service_auth: None,
        tls: None,
    };
    GatewayIr {
        limits: limits::check_limits(cx, &at.key("limits"), &g.limits),
        jwt: g.jwt.as_ref().map(|j| auth::check_jwt(cx, j)),
        service_auth: g
            .service_auth
            .as_ref()
            .map(|s| auth::check_service_auth(cx, s)),
        tls: g.tls.as_ref().map(|t| auth::check_tls(cx, t)),
        ..ir
    }
}

fn check_services(cx: &mut Ctx<'_>, spec: &Spec) -> Vec<ServiceIr> {
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
            .and_then(|t| auth::check_client_cert(cx, &at.key("tls"), t));
        let breaker = check_breaker(cx, &at, s.circuit_breaker.as_ref());
        let breaker_rate = check_breaker_rate(cx, &at, s.circuit_breaker.as_ref());
        let identity = auth::check_identity(cx, name, s.identity.as_ref());
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
            breaker_rate,
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
fn check_client_headers(cx: &mut Ctx<'_>, at: &SpecPath, names: &[String]) -> Vec<String> {
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
fn check_secret_reuse(cx: &mut Ctx<'_>, g: &GatewayIr, services: &[ServiceIr]) {
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

/// A route's canary, checked.
#[derive(Debug, Clone)]
pub struct CanaryIr {
    /// Index of the canary service.
    pub service: usize,
    /// Share of consumers, in basis points.
    pub basis_points: u32,
    /// Lower-case header forcing a side.
    pub header: String,
    /// The header value that forces the canary.
    pub force_canary: String,
    /// The header value that forces the route's own service.
    pub force_stable: String,
}

/// A canary gets a share of a route's traffic on another service with the
/// same upstream template; the share is per consumer, so it must be a
/// percentage and the service a different, declared one.
fn check_canary(
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
fn check_force_values(
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
    Option<versions::VersionsIr>,
);

/// The route's upstream: its own `service` and `upstream`, or, with
/// `versions`, the default version's (and the versions).
fn check_upstreams(
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
fn check_service_and_template(
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

/// A breaker per upstream is on by default, so one failing service is
/// answered fast instead of tying up connections; bounds keep it useful.
fn check_breaker(
    cx: &mut Ctx<'_>,
    at: &SpecPath,
    b: Option<&crate::spec::CircuitBreaker>,
) -> Option<(u32, u64, u32)> {
    let at = at.key("circuit_breaker");
    let Some(b) = b else {
        return Some((5, 30_000, 1));
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
    Some((failures, open_ms, probes))
}

/// The optional failure-rate trigger of a breaker.
fn check_breaker_rate(
    cx: &mut Ctx<'_>,
    at: &SpecPath,
    b: Option<&crate::spec::CircuitBreaker>,
) -> Option<(u32, u64, u32)> {
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
    Some((percent, window, min))
}

/// Credentials are per service, never shared: two services signing with
/// one secret could impersonate the gateway to each other.
fn check_distinct_credentials(cx: &mut Ctx<'_>, services: &[ServiceIr]) {
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

fn check_policies(cx: &mut Ctx<'_>, spec: &Spec) {
    for (name, p) in &spec.policies {
        let at = SpecPath::root().key("policies").key(name);
        cx.check(
            &SpecPath::root().key("policies").key_name(name),
            values::ident("policy", name),
        );
        check_policy(cx, &at, p);
        let default = spec.policies.get("default").filter(|_| name != "default");
        auth::check_roles_need_jwt(cx, &at, Some(name), p, default);
    }
}

/// Checks a policy's own fields (named or inline).
fn check_policy(cx: &mut Ctx<'_>, at: &SpecPath, p: &Policy) {
    if let Some(t) = &p.timeout {
        cx.check(&at.key("timeout"), values::duration_ms(t));
    }
    if let Some(creds) = &p.forward_credentials {
        let mut seen = Vec::new();
        for (i, c) in creds.iter().enumerate() {
            if seen.contains(c) {
                cx.error(
                    &at.key("forward_credentials").index(i),
                    Problem::new(
                        "this credential is listed twice",
                        "list each credential once",
                    ),
                );
            }
            seen.push(*c);
        }
    }
    auth::check_policy_fields(cx, at, p);
    if let Some(r) = &p.rate_limit {
        traffic::check_rate_limit(cx, &at.key("rate_limit"), r, "policy");
    }
    if let Some(c) = &p.cors {
        traffic::check_cors(cx, &at.key("cors"), c);
    }
    if let Some(b) = &p.body_limit {
        cx.check(&at.key("body_limit"), traffic::parse_size(b));
    }
    if let Some(t) = &p.body_timeout {
        cx.check(&at.key("body_timeout"), values::duration_ms(t));
    }
    if let Some(r) = &p.retries {
        traffic::check_retries(cx, &at.key("retries"), r);
    }
}

fn check_route(
    cx: &mut Ctx<'_>,
    spec: &Spec,
    services: &[ServiceIr],
    gw: &GatewayIr,
    i: usize,
) -> Option<RouteIr> {
    let r = &spec.routes[i];
    let at = SpecPath::root().key("routes").index(i);
    let pattern = cx.check(&at.key("path"), pattern::parse_pattern(&r.path));
    if r.path == "/health" {
        cx.error(
            &at.key("path"),
            Problem::new(
                "`/health` is answered by the gateway itself",
                "give the upstream's health check another path, e.g. `/api/v1/<service>/health`",
            ),
        );
    }
    let methods = check_methods(cx, &at, r.methods.as_deref());
    let (service, template, versions) = check_upstreams(cx, &at, r, pattern.as_ref(), services);
    if r.canary.is_some() && r.versions.is_some() {
        cx.error(
            &at.key("canary"),
            Problem::new(
                "a versioned route cannot also have a canary",
                "put the canary's upstream under its own version, or split the route",
            ),
        );
    }
    let (policy, policy_name) = resolve_policy(cx, spec, &at, r.policy.as_ref());
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
    if forward.contains(&Credential::AuthCookie)
        && gw.jwt.as_ref().and_then(|j| j.cookie.as_ref()).is_none()
    {
        cx.error(
            &policy_at,
            Problem::new(
                "`auth_cookie` is forwarded but no `gateway.jwt.cookie` is configured",
                "set `gateway.jwt.cookie`, or remove `auth_cookie`",
            ),
        );
    }
    let (pattern, methods, service, template) = (pattern?, methods?, service?, template?);
    let canary = r
        .canary
        .as_ref()
        .and_then(|c| check_canary(cx, &at.key("canary"), c, services, service));
    // Every service the route may reach: its own, a canary, each version.
    let reachable = std::iter::once(service)
        .chain(canary.as_ref().map(|c| c.service))
        .chain(
            versions
                .iter()
                .flat_map(|v| v.live.iter().map(|x| x.service)),
        );
    let jwt_service = reachable
        .into_iter()
        .find(|&i| services[i].identity.kind == crate::spec::IdentityKind::Jwt);
    if let (Some(jwt_service), true) = (jwt_service, forward.contains(&Credential::Authorization)) {
        cx.error(
            &policy_at,
            Problem::new(format!(
                    "the client's Authorization is forwarded, but service `{}` receives the gateway's token there",
                    services[jwt_service].name
                ), "stop forwarding `authorization`, or sign this service with `hmac`"),
        );
    }
    if let Some(per_try) = policy
        .retries
        .as_ref()
        .and_then(|r| r.per_try_timeout.as_deref())
        .and_then(|t| values::duration_ms(t).ok())
    {
        if per_try >= timeout_ms {
            cx.error(
                &policy_at,
                Problem::new(format!(
                        "the per-try timeout ({per_try} ms) is not shorter than the route's timeout ({timeout_ms} ms)"
                    ), "an attempt that times out could never be retried: shorten `retries.per_try_timeout` or lengthen `timeout`"),
            );
        }
    }
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
        auth,
        spec_index: i,
    })
}

/// The route's effective policy: the policy named `default` (when there
/// is one) with the route's named or inline policy laid over it field by
/// field. So `default` can require a JWT everywhere while `public` says
/// `auth: none` and `streaming` only changes the timeout.
fn resolve_policy(
    cx: &mut Ctx<'_>,
    spec: &Spec,
    at: &SpecPath,
    p: Option<&PolicyRef>,
) -> (Policy, Option<String>) {
    let base = spec.policies.get("default").cloned().unwrap_or_default();
    match p {
        Some(PolicyRef::Named(name)) => match spec.policies.get(name) {
            Some(pol) => (overlay(base, pol), Some(name.clone())),
            None => {
                let known: Vec<&str> = spec.policies.keys().map(String::as_str).collect();
                cx.error(
                    &at.key("policy"),
                    Problem::new(
                        format!("unknown policy `{name}`"),
                        if known.is_empty() {
                            "declare it under `policies:`".into()
                        } else {
                            format!(
                                "declare it under `policies:`, or use one of: {}",
                                known.join(", ")
                            )
                        },
                    ),
                );
                (base, None)
            }
        },
        Some(PolicyRef::Inline(pol)) => {
            check_policy(cx, &at.key("policy"), pol);
            let default = spec.policies.get("default");
            auth::check_roles_need_jwt(cx, &at.key("policy"), None, pol, default);
            (overlay(base, pol), None)
        }
        None => {
            let name = spec
                .policies
                .contains_key("default")
                .then(|| "default".into());
            (base, name)
        }
    }
}

/// `over`'s fields where set, else `base`'s.
fn overlay(base: Policy, over: &Policy) -> Policy {
    let o = over.clone();
    Policy {
        timeout: o.timeout.or(base.timeout),
        forward_credentials: o.forward_credentials.or(base.forward_credentials),
        auth: o.auth.or(base.auth),
        roles: o.roles.or(base.roles),
        service_auth: o.service_auth.or(base.service_auth),
        service_token: o.service_token.or(base.service_token),
        rate_limit: o.rate_limit.or(base.rate_limit),
        cors: o.cors.or(base.cors),
        retries: o.retries.or(base.retries),
        body_limit: o.body_limit.or(base.body_limit),
        body_timeout: o.body_timeout.or(base.body_timeout),
    }
}

/// Methods are case-sensitive tokens; a route that lists none accepts all
/// standard methods. GET implies HEAD (RFC 9110 §9.3.2).
fn check_methods(cx: &mut Ctx<'_>, at: &SpecPath, list: Option<&[String]>) -> Option<u16> {
    let Some(list) = list else {
        return Some(values::ALL_METHODS);
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

/// Route ids name generated enum variants, struct fields and constants
/// and appear in logs, so each must be unique and a valid Rust name in
/// every form. An id is derived from the path unless given; routes whose
/// derived ids collide get their methods appended, then a number.
fn check_route_ids(cx: &mut Ctx<'_>, routes: &mut [(usize, RouteIr)]) {
    let derived: Vec<String> = routes.iter().map(|(_, r)| derive_id(&r.pattern)).collect();
    let methods: Vec<u16> = routes.iter().map(|(_, r)| r.methods).collect();
    let mut taken: BTreeMap<String, usize> = BTreeMap::new();
    for (k, (i, r)) in routes.iter_mut().enumerate() {
        if !r.id.is_empty() {
            let at = SpecPath::root().key("routes").index(*i).key("id");
            let ok = r.id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && r.id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && !r.id.contains("__")
                && !r.id.ends_with('_');
            if !ok || is_keyword(&r.id) {
                cx.error(
                    &at,
                    Problem::new(
                        format!("route id `{}` is not a usable snake_case identifier", r.id),
                        "use a-z, 0-9 and single `_`, starting with a letter; not a Rust keyword",
                    ),
                );
            }
            continue;
        }
        let mut id = derived[k].clone();
        // Routes that share a derived id are usually one path split by
        // method: name them by method when that tells them apart.
        let same: Vec<u16> = derived
            .iter()
            .zip(&methods)
            .filter(|(d, _)| **d == id)
            .map(|(_, m)| *m)
            .collect();
        let distinct = same
            .iter()
            .all(|m| same.iter().filter(|o| *o == m).count() == 1);
        if same.len() > 1 && distinct {
            id = format!("{id}_{}", method_suffix(r.methods));
        }
        if is_keyword(&id) {
            id.push_str("_route");
        }
        let mut n = 2;
        let base = id.clone();
        while taken.contains_key(&id) {
            id = format!("{base}_{n}");
            n += 1;
        }
        taken.insert(id.clone(), k);
        r.id = id;
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut variants: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in routes.iter() {
        let at = SpecPath::root().key("routes").index(*i);
        let line =
            |cx: &Ctx<'_>, j: usize| cx.src.locate(&SpecPath::root().key("routes").index(j)).0;
        if let Some(first) = seen.insert(r.id.clone(), *i) {
            let fl = line(cx, first);
            cx.error(
                &at.key("id"),
                Problem::new(
                    format!(
                        "route id `{}` is also the id of the route at line {fl}",
                        r.id
                    ),
                    "give one of them an explicit, different `id:`",
                ),
            );
        } else if let Some(first) = variants.insert(r.variant(), *i) {
            let fl = line(cx, first);
            cx.error(
                &at.key("path"),
                Problem::new(
                    format!(
                        "route id `{}` names the same Rust type `{}` as the route at line {fl}",
                        r.id,
                        r.variant()
                    ),
                    "give one of them an explicit `id:` that differs in more than underscores",
                ),
            );
        }
    }
}

/// Rust keywords cannot name generated fields.
fn is_keyword(id: &str) -> bool {
    syn::parse_str::<syn::Ident>(id).is_err()
}

/// Service names become constants (`service::UNIFIED_DATA`), so two names
/// that differ only in `-` versus `_` would collide.
fn check_service_idents(cx: &mut Ctx<'_>, services: &[ServiceIr]) {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for s in services {
        let ident = s.name.replace('-', "_").to_ascii_uppercase();
        if let Some(first) = seen.insert(ident.clone(), &s.name) {
            cx.error(
                &SpecPath::root().key("services").key_name(&s.name),
                Problem::new(
                    format!(
                        "services `{first}` and `{}` both become the constant `{ident}`",
                        s.name
                    ),
                    "rename one of them",
                ),
            );
        }
    }
}

/// `/api/v1/agents/{id}/execute` -> `api_v1_agents_id_execute`.
pub fn derive_id(p: &Pattern) -> String {
    let mut words: Vec<String> = Vec::new();
    for seg in &p.segments {
        let text = match seg {
            pattern::Seg::Lit(l) | pattern::Seg::Param(l) | pattern::Seg::CatchAll(l) => l,
        };
        let w: String = text
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        words.extend(w.split('_').filter(|s| !s.is_empty()).map(str::to_owned));
    }
    let id = words.join("_");
    match id.chars().next() {
        None => "root".into(),
        Some(c) if c.is_ascii_digit() => format!("r_{id}"),
        Some(_) => id,
    }
}

fn method_suffix(bits: u16) -> String {
    if bits == values::ALL_METHODS {
        return "any".into();
    }
    values::METHODS
        .iter()
        .filter(|(m, b)| bits & b != 0 && !(*m == "HEAD" && bits & 1 != 0))
        .map(|(m, _)| m.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join("_")
}

/// Two routes must never match the same request. Each route's router
/// paths are collected; where routes share a path, the more specific tier
/// owns it, and routes of the same tier must have disjoint methods. The
/// paths are then inserted into the same `matchit` version the gateway
/// runs, so the router cannot reject at start-up what passed here.
fn check_conflicts(cx: &mut Ctx<'_>, routes: &[(usize, RouteIr)]) -> Vec<(String, Vec<usize>)> {
    let mut paths: Vec<(String, Tier, Vec<usize>)> = Vec::new();
    let mut reported: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (k, (_, r)) in routes.iter().enumerate() {
        for (p, tier) in r.pattern.router_paths() {
            let Some((_, owner_tier, sharing)) = paths.iter_mut().find(|(q, ..)| *q == p) else {
                paths.push((p, tier, vec![k]));
                continue;
            };
            if tier > *owner_tier || sharing.contains(&k) {
                continue;
            }
            if tier < *owner_tier {
                *owner_tier = tier;
                *sharing = vec![k];
                continue;
            }
            match sharing
                .iter()
                .find(|&&o| routes[o].1.methods & r.methods != 0)
            {
                Some(&other) => {
                    if reported.insert((other, k)) {
                        conflict(cx, routes, other, k);
                    }
                }
                None => sharing.push(k),
            }
        }
    }
    let mut router = matchit::Router::new();
    let mut ok_paths: Vec<(String, Vec<usize>)> = Vec::new();
    for (p, _, sharing) in paths {
        match router.insert(p.clone(), ()) {
            Ok(()) => ok_paths.push((p, sharing)),
            Err(e) => {
                let other = match &e {
                    matchit::InsertError::Conflict { with } => {
                        ok_paths.iter().find(|(q, _)| q == with).map(|(_, s)| s[0])
                    }
                    _ => None,
                };
                match other {
                    Some(o) if reported.insert((o, sharing[0])) => {
                        conflict(cx, routes, o, sharing[0])
                    }
                    Some(_) => {}
                    None => {
                        let (i, r) = &routes[sharing[0]];
                        if reported.insert((sharing[0], sharing[0])) {
                            cx.error(
                                &SpecPath::root().key("routes").index(*i).key("path"),
                                Problem::new(format!("route `{}` cannot be routed: {e}", r.pattern_text), "simplify the pattern to literal segments, `{name}` and a final `{*rest}` or `*`"),
                            );
                        }
                    }
                }
            }
        }
    }
    ok_paths
}

fn conflict(cx: &mut Ctx<'_>, routes: &[(usize, RouteIr)], first: usize, second: usize) {
    let ((fi, f), (si, s)) = (&routes[first], &routes[second]);
    let (fl, fc) = cx
        .src
        .locate(&SpecPath::root().key("routes").index(*fi).key("path"));
    let shared = f.methods & s.methods;
    let methods = match shared {
        values::ALL_METHODS => String::new(),
        2 => "HEAD (GET implies HEAD) ".into(),
        _ => format!("{} ", crate::emit::methods_text(shared)),
    };
    cx.error(
        &SpecPath::root().key("routes").index(*si).key("path"),
        Problem::new(format!(
                "route `{}` matches the same {methods}requests as route `{}` (line {fl}, column {fc})",
                s.pattern_text, f.pattern_text
            ), "two routes must never match the same request: change one path, or give them disjoint `methods`"),
    );
}

/// `GET /health` is always answered by the gateway; a route that would
/// also match it never sees those requests, which is worth a warning.
fn check_health_shadow(src: &Source<'_>, checked: &mut Checked) {
    let mut router = matchit::Router::new();
    for (p, sharing) in &checked.paths {
        let _ = router.insert(p.clone(), sharing.clone());
    }
    if let Ok(m) = router.at("/health") {
        for &k in m.value.iter() {
            let r = &checked.routes[k];
            if r.methods & 3 != 0 {
                let (line, col) = src.locate(
                    &SpecPath::root()
                        .key("routes")
                        .index(r.spec_index)
                        .key("path"),
                );
                checked.warnings.0.push(
                    Diagnostic::at(src, line, col, format!("route `{}` also matches `/health`, which the gateway answers itself for GET and HEAD", r.pattern_text))
                        .help("the upstream never sees GET /health through this route; that is usually intended")
                        .warning(),
                );
            }
        }
    }
}
