//! Validation: every rule the spec must satisfy, each a small `check_*`,
//! producing the checked model that `emit` turns into code.
//!
//! All problems are collected and reported together, each pointing at the
//! line and column of the value at fault.

pub mod auth;
mod conflicts;
mod identity;
mod ids;
pub mod limits;
pub mod pattern;
mod policies;
mod routes;
mod services;
mod table;
pub mod traffic;
pub mod values;
pub mod versions;

#[cfg(test)]
mod tests;

use crate::diag::{Diagnostic, Diagnostics, Problem};
use crate::ir::GatewayIr;
use crate::spec::{Source, Spec, SpecPath};

pub use ids::derive_id;

/// The checked model lives in [`crate::ir`]; these names stay here for the
/// tests, benchmarks and fuzz targets that import them from `validate`.
pub use crate::ir::{Checked, RouteIr};

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
    let services = services::check_services(&mut cx, spec);
    services::check_secret_reuse(&mut cx, &gateway, &services);
    policies::check_policies(&mut cx, spec);
    table::check_not_empty(&mut cx, spec);
    let mut routes = Vec::new();
    for i in 0..spec.routes.len() {
        if let Some(route) = routes::check_route(&mut cx, spec, &services, &gateway, i) {
            routes.push((i, route));
        }
    }
    ids::check_service_idents(&mut cx, &services);
    ids::check_policy_idents(&mut cx, spec);
    ids::check_route_ids(&mut cx, &mut routes);
    let paths = conflicts::check_conflicts(&mut cx, &routes);
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
    conflicts::check_health_shadow(src, &mut checked);
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
        limits: crate::ir::traffic::LimitsIr::default(),
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
