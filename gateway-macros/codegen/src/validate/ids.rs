//! Names that become Rust identifiers: route ids (derived or given),
//! service and policy constants. Each must be unique in every form the
//! emitter writes it, which [`crate::ir::names`] defines.

use std::collections::BTreeMap;

use super::{pattern, Ctx};
use crate::diag::Problem;
use crate::ir::methods;
use crate::ir::pattern::Pattern;
use crate::ir::{RouteIr, ServiceIr};
use crate::spec::SpecPath;

/// Route ids name generated enum variants, struct fields and constants
/// and appear in logs, so each must be unique and a valid Rust name in
/// every form. An id is derived from the path unless given; routes whose
/// derived ids collide get their methods appended, then a number.
pub(super) fn check_route_ids(cx: &mut Ctx<'_>, routes: &mut [(usize, RouteIr)]) {
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
pub(super) fn is_keyword(id: &str) -> bool {
    syn::parse_str::<syn::Ident>(id).is_err()
}

/// Service names become constants (`service::UNIFIED_DATA`), so two names
/// that differ only in `-` versus `_` would collide.
pub(super) fn check_service_idents(cx: &mut Ctx<'_>, services: &[ServiceIr]) {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for s in services {
        let ident = s.const_name();
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

/// Policy names become constants too (`policy::RULE_EDITORS_ROUTE`), so
/// two names that differ only in `-` versus `_` would collide.
pub(super) fn check_policy_idents(cx: &mut Ctx<'_>, spec: &crate::spec::Spec) {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for name in spec.policies.keys() {
        let ident = crate::ir::names::upper_snake(name);
        if let Some(first) = seen.insert(ident.clone(), name) {
            cx.error(
                &SpecPath::root().key("policies").key_name(name),
                Problem::new(
                    format!(
                        "policies `{first}` and `{name}` both become the constant `{ident}_ROUTE`"
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

pub(super) fn method_suffix(bits: u16) -> String {
    if bits == methods::ALL {
        return "any".into();
    }
    methods::METHODS
        .iter()
        .filter(|(m, b)| bits & b != 0 && !(*m == "HEAD" && bits & 1 != 0))
        .map(|(m, _)| m.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join("_")
}
