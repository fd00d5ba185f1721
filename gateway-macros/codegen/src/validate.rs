//! Validation: every rule the spec must satisfy, each a small `check_*`,
//! producing the checked model that `emit` turns into code.
//!
//! All problems are collected and reported together, each pointing at the
//! line and column of the value at fault.

pub mod pattern;
pub mod values;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use crate::diag::{Diagnostic, Diagnostics};
use crate::spec::{Credential, Planned, Policy, PolicyRef, Source, Spec, SpecPath};
use pattern::{Part, Pattern, Problem};

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
    /// Byte length of a prefix route's base, where its suffix starts.
    pub prefix_len: Option<usize>,
    /// Upstream response-head timeout.
    pub timeout_ms: u64,
    /// Credentials forwarded upstream.
    pub forward: Vec<Credential>,
    /// The named policy, if any.
    pub policy_name: Option<String>,
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
}

impl Ctx<'_> {
    fn error(&mut self, at: &SpecPath, p: Problem) {
        let (line, col) = self.src.locate(at);
        self.diags
            .push(Diagnostic::at(self.src, line, col, p.message).help(p.help));
    }

    fn check<T>(&mut self, at: &SpecPath, r: Result<T, Problem>) -> Option<T> {
        r.map_err(|p| self.error(at, p)).ok()
    }

    /// A field reserved for later work is an error until it is built, so a
    /// spec never believes it is protected by a policy that does not run.
    fn planned(&mut self, at: &SpecPath, field: Option<&Planned>, what: &str) {
        if field.is_some() {
            let name = at.0.last().map(|s| format!("{s:?}")).unwrap_or_default();
            let _ = name;
            self.error(
                at,
                Problem {
                    message: format!("`{}` is not implemented yet ({what})", last_key(at)),
                    help: "remove it for now; docs/gateway-yaml.md marks the fields that are planned".into(),
                },
            );
        }
    }
}

fn last_key(p: &SpecPath) -> String {
    match p.0.last() {
        Some(crate::spec::PathSeg::Key(k)) => k.clone(),
        _ => p.to_string(),
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
    };
    let gateway = check_gateway(&mut cx, spec);
    let services = check_services(&mut cx, spec);
    check_policies(&mut cx, spec);
    let mut routes = Vec::new();
    for (i, r) in spec.routes.iter().enumerate() {
        if let Some(route) = check_route(&mut cx, spec, &services, &gateway, i) {
            routes.push((i, route));
        }
        let _ = r;
    }
    check_route_ids(&mut cx, &mut routes);
    let paths = check_conflicts(&mut cx, &routes);
    if !cx.diags.is_empty() {
        return Err(Diagnostics(cx.diags));
    }
    Ok(Checked {
        gateway,
        services,
        routes: routes.into_iter().map(|(_, r)| r).collect(),
        paths,
        warnings: Diagnostics::default(),
    })
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
        Some(s) => cx.check(&t.key(key), values::duration_ms(s)).unwrap_or(default),
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
    };
    cx.planned(&at.key("tls"), g.tls.as_ref(), "TLS termination");
    cx.planned(&at.key("jwt"), g.jwt.as_ref(), "JWT authentication");
    cx.planned(&at.key("service_auth"), g.service_auth.as_ref(), "HMAC service auth");
    ir
}

fn check_services(cx: &mut Ctx<'_>, spec: &Spec) -> Vec<ServiceIr> {
    let mut out = Vec::new();
    for (name, s) in &spec.services {
        let at = SpecPath::root().key("services").key(name);
        cx.check(&at, values::ident("service", name));
        cx.check(&at.key("url").key("env"), values::env_name(&s.url.env));
        cx.check(&at.key("url").key("default"), values::base_url(&s.url.default));
        cx.planned(&at.key("identity"), s.identity.as_ref(), "outbound identity");
        cx.planned(&at.key("tls"), s.tls.as_ref(), "upstream TLS");
        cx.planned(&at.key("circuit_breaker"), s.circuit_breaker.as_ref(), "circuit breaking");
        cx.planned(&at.key("allow_plaintext"), s.allow_plaintext.as_ref(), "production HTTPS enforcement");
        out.push(ServiceIr {
            name: name.clone(),
            env: s.url.env.clone(),
            default_url: s.url.default.trim_end_matches('/').to_owned(),
        });
    }
    out
}

fn check_policies(cx: &mut Ctx<'_>, spec: &Spec) {
    for (name, p) in &spec.policies {
        let at = SpecPath::root().key("policies").key(name);
        cx.check(&at, values::ident("policy", name));
        check_policy(cx, &at, p);
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
                    Problem {
                        message: "this credential is listed twice".into(),
                        help: "list each credential once".into(),
                    },
                );
            }
            seen.push(*c);
        }
    }
    cx.planned(&at.key("auth"), p.auth.as_ref(), "JWT authentication");
    cx.planned(&at.key("roles"), p.roles.as_ref(), "role checks");
    cx.planned(&at.key("service_auth"), p.service_auth.as_ref(), "HMAC service auth");
    cx.planned(&at.key("service_token"), p.service_token.as_ref(), "shared service tokens");
    cx.planned(&at.key("rate_limit"), p.rate_limit.as_ref(), "rate limiting");
    cx.planned(&at.key("cors"), p.cors.as_ref(), "CORS");
    cx.planned(&at.key("retries"), p.retries.as_ref(), "retries");
    cx.planned(&at.key("body_limit"), p.body_limit.as_ref(), "body limits");
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
    cx.planned(&at.key("versions"), r.versions.as_ref(), "API versions");
    cx.planned(&at.key("canary"), r.canary.as_ref(), "canary routing");
    let pattern = cx.check(&at.key("path"), pattern::parse_pattern(&r.path));
    if r.path == "/health" {
        cx.error(
            &at.key("path"),
            Problem {
                message: "`/health` is answered by the gateway itself".into(),
                help: "give the upstream's health check another path, e.g. `/api/v1/<service>/health`".into(),
            },
        );
    }
    let methods = check_methods(cx, &at, r.methods.as_deref());
    let service = services.iter().position(|s| s.name == r.service);
    if service.is_none() {
        let known: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        cx.error(
            &at.key("service"),
            Problem {
                message: format!("route `{}` uses unknown service `{}`", r.path, r.service),
                help: format!("declare it under `services:`, or use one of: {}", known.join(", ")),
            },
        );
    }
    let template = pattern
        .as_ref()
        .and_then(|p| cx.check(&at.key("upstream"), pattern::parse_template(&r.upstream, p)));
    let (policy, policy_name, policy_at) = resolve_policy(cx, spec, &at, r.policy.as_ref());
    let timeout_ms = policy
        .and_then(|p| p.timeout.as_deref())
        .and_then(|t| values::duration_ms(t).ok())
        .unwrap_or(gw.upstream_ms);
    let mut forward = policy
        .and_then(|p| p.forward_credentials.clone())
        .unwrap_or_default();
    forward.sort();
    forward.dedup();
    let _ = policy_at;
    let (pattern, methods, service, template) = (pattern?, methods?, service?, template?);
    let prefix_len = pattern
        .prefix
        .then(|| pattern.prefix_base().trim_end_matches('/').len());
    Some(RouteIr {
        id: r.id.clone().unwrap_or_default(),
        pattern_text: r.path.clone(),
        pattern,
        methods,
        service,
        upstream_text: r.upstream.clone(),
        template,
        prefix_len,
        timeout_ms,
        forward,
        policy_name,
    })
}

/// Finds the route's policy: a name under `policies:`, an inline mapping,
/// or the policy named `default` when the route names none.
fn resolve_policy<'s>(
    cx: &mut Ctx<'_>,
    spec: &'s Spec,
    at: &SpecPath,
    p: Option<&'s PolicyRef>,
) -> (Option<&'s Policy>, Option<String>, SpecPath) {
    match p {
        Some(PolicyRef::Named(name)) => match spec.policies.get(name) {
            Some(pol) => (Some(pol), Some(name.clone()), SpecPath::root().key("policies").key(name)),
            None => {
                let known: Vec<&str> = spec.policies.keys().map(String::as_str).collect();
                cx.error(
                    &at.key("policy"),
                    Problem {
                        message: format!("unknown policy `{name}`"),
                        help: if known.is_empty() {
                            "declare it under `policies:`".into()
                        } else {
                            format!("declare it under `policies:`, or use one of: {}", known.join(", "))
                        },
                    },
                );
                (None, None, at.clone())
            }
        },
        Some(PolicyRef::Inline(pol)) => {
            check_policy(cx, &at.key("policy"), pol);
            (Some(pol), None, at.key("policy"))
        }
        None => match spec.policies.get("default") {
            Some(pol) => (Some(pol), Some("default".into()), SpecPath::root().key("policies").key("default")),
            None => (None, None, at.clone()),
        },
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
            Problem {
                message: "the method list is empty, so the route could never match".into(),
                help: "list at least one method, or remove `methods` to accept all".into(),
            },
        );
        return None;
    }
    let mut bits = 0u16;
    let mut ok = true;
    for (i, m) in list.iter().enumerate() {
        match values::method_bit(m) {
            Ok(b) if bits & b != 0 && !(b == 2 && list.iter().filter(|x| *x == "HEAD").count() == 1) => {
                cx.error(
                    &at.key("methods").index(i),
                    Problem {
                        message: format!("method `{m}` is listed twice"),
                        help: "list each method once".into(),
                    },
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

/// Route ids name the generated enum variants and appear in logs, so they
/// must be unique. An id is derived from the path unless given.
fn check_route_ids(cx: &mut Ctx<'_>, routes: &mut [(usize, RouteIr)]) {
    let derived: Vec<String> = routes.iter().map(|(_, r)| derive_id(&r.pattern)).collect();
    for (k, (i, r)) in routes.iter_mut().enumerate() {
        if r.id.is_empty() {
            let same_path = derived.iter().filter(|d| **d == derived[k]).count() > 1;
            r.id = if same_path {
                format!("{}_{}", derived[k], method_suffix(r.methods))
            } else {
                derived[k].clone()
            };
        } else {
            let at = SpecPath::root().key("routes").index(*i).key("id");
            let ok = r.id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && r.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                cx.error(
                    &at,
                    Problem {
                        message: format!("route id `{}` is not a snake_case identifier", r.id),
                        help: "use a-z, 0-9 and `_`, starting with a letter".into(),
                    },
                );
            }
        }
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in routes.iter() {
        if let Some(first) = seen.insert(r.id.clone(), *i) {
            let (fl, _) = cx.src.locate(&SpecPath::root().key("routes").index(first));
            cx.error(
                &SpecPath::root().key("routes").index(*i),
                Problem {
                    message: format!("route id `{}` is also the id of the route at line {fl}", r.id),
                    help: "give one of them an explicit, different `id:`".into(),
                },
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
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
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
    values::METHODS
        .iter()
        .filter(|(m, b)| bits & b != 0 && !(*m == "HEAD" && bits & 1 != 0))
        .map(|(m, _)| m.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join("_")
}

/// Two routes must never match the same request. Router paths are
/// inserted into the same `matchit` version the gateway runs, so "conflict"
/// means exactly what dispatch would find ambiguous; routes that share a
/// path are allowed only with disjoint methods.
fn check_conflicts(cx: &mut Ctx<'_>, routes: &[(usize, RouteIr)]) -> Vec<(String, Vec<usize>)> {
    let mut paths: Vec<(String, Vec<usize>)> = Vec::new();
    for (k, (i, r)) in routes.iter().enumerate() {
        for p in r.pattern.router_paths() {
            match paths.iter_mut().find(|(q, _)| *q == p) {
                Some((_, sharing)) => {
                    if let Some(&other) = sharing.iter().find(|&&o| routes[o].1.methods & r.methods != 0) {
                        conflict(cx, &routes[other], (*i, r), "also matches");
                    } else if !sharing.contains(&k) {
                        sharing.push(k);
                    }
                }
                None => paths.push((p, vec![k])),
            }
        }
    }
    let mut router = matchit::Router::new();
    let mut ok_paths = Vec::new();
    for (p, sharing) in paths {
        match router.insert(p.clone(), ()) {
            Ok(()) => ok_paths.push((p, sharing)),
            Err(matchit::InsertError::Conflict { with }) => {
                let other = ok_paths
                    .iter()
                    .find(|(q, _)| *q == with)
                    .map(|(_, s): &(String, Vec<usize>)| s[0])
                    .unwrap_or(sharing[0]);
                conflict(cx, &routes[other], (routes[sharing[0]].0, &routes[sharing[0]].1), "overlaps");
            }
            Err(e) => {
                let (i, r) = &routes[sharing[0]];
                cx.error(
                    &SpecPath::root().key("routes").index(*i).key("path"),
                    Problem {
                        message: format!("route `{}` cannot be routed: {e}", r.pattern_text),
                        help: "simplify the pattern to literal segments, `{name}` and a final `{*rest}` or `*`".into(),
                    },
                );
            }
        }
    }
    ok_paths
}

fn conflict(cx: &mut Ctx<'_>, first: &(usize, RouteIr), second: (usize, &RouteIr), verb: &str) {
    let (fl, fc) = cx.src.locate(&SpecPath::root().key("routes").index(first.0).key("path"));
    cx.error(
        &SpecPath::root().key("routes").index(second.0).key("path"),
        Problem {
            message: format!(
                "route `{}` {verb} requests of route `{}` (line {fl}, column {fc})",
                second.1.pattern_text, first.1.pattern_text
            ),
            help: "two routes must never match the same request: change one path, or give them disjoint `methods`".into(),
        },
    );
}
