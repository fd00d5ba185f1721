//! Rules about the route table as a whole: it routes something, and every
//! declared service is reached by some route.

use super::Ctx;
use crate::diag::Problem;
use crate::ir::{RouteIr, ServiceIr};
use crate::spec::{Spec, SpecPath};

/// A gateway without routes answers 404 to everything but `/health`. It
/// builds and starts, so the mistake (`routes:` left empty, or its list
/// indented under something else) would only show in production traffic.
/// Leaving `routes` out is already a parse error; an empty list is the
/// same mistake written differently.
pub(super) fn check_not_empty(cx: &mut Ctx<'_>, spec: &Spec) {
    if spec.routes.is_empty() {
        cx.error(
            &SpecPath::root().key_name("routes"),
            Problem::new("the route table is empty, so the gateway would answer 404 to every request", "add a route under `routes:`, e.g. `- { path: /api/orders, service: orders, upstream: /orders }`"),
        );
    }
}

/// A service no route reaches is usually a route that was deleted or a
/// typo'd service name elsewhere; the gateway would still read its URL and
/// credential variables at start-up. It is not wrong, so it is a warning:
/// a service may be declared ahead of the route that will use it.
pub(super) fn check_unused_services(
    cx: &mut Ctx<'_>,
    services: &[ServiceIr],
    routes: &[(usize, RouteIr)],
) {
    let mut used = vec![false; services.len()];
    for (_, r) in routes {
        used[r.service] = true;
        if let Some(canary) = &r.canary {
            used[canary.service] = true;
        }
        for v in r.versions.iter().flat_map(|v| &v.live) {
            used[v.service] = true;
        }
    }
    for (s, _) in services.iter().zip(used).filter(|(_, used)| !used) {
        cx.warn(
            &SpecPath::root().key("services").key_name(&s.name),
            Problem::new(
                format!("service `{}` is declared but no route uses it", s.name),
                format!(
                    "route to it with `service: {}`, or remove it from `services:`",
                    s.name
                ),
            ),
        );
    }
}
