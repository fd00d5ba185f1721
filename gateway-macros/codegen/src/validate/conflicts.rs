//! Route conflicts: no two routes may match the same request, checked with
//! the same `matchit` version the gateway routes with.

use std::collections::BTreeSet;

use super::Ctx;
use crate::diag::{Diagnostic, Problem};
use crate::ir::methods;
use crate::ir::pattern::Tier;
use crate::ir::{Checked, RouteIr};
use crate::spec::{Source, SpecPath};

/// Two routes must never match the same request. Each route's router
/// paths are collected; where routes share a path, the more specific tier
/// owns it, and routes of the same tier must have disjoint methods. The
/// paths are then inserted into the same `matchit` version the gateway
/// runs, so the router cannot reject at start-up what passed here.
pub(super) fn check_conflicts(
    cx: &mut Ctx<'_>,
    routes: &[(usize, RouteIr)],
) -> Vec<(String, Vec<usize>)> {
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

pub(super) fn conflict(cx: &mut Ctx<'_>, routes: &[(usize, RouteIr)], first: usize, second: usize) {
    let ((fi, f), (si, s)) = (&routes[first], &routes[second]);
    let (fl, fc) = cx
        .src
        .locate(&SpecPath::root().key("routes").index(*fi).key("path"));
    let shared = f.methods & s.methods;
    let methods = match shared {
        methods::ALL => String::new(),
        2 => "HEAD (GET implies HEAD) ".into(),
        _ => format!("{} ", methods::text(shared)),
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
pub(super) fn check_health_shadow(src: &Source<'_>, checked: &mut Checked) {
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
