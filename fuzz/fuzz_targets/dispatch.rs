//! Request dispatch and rewrite: path sanity (`routing::path::check`), the
//! compiled router (`Router::lookup` over a spec's `PATHS`), the method
//! check (`select_method`) and the rewrite (`proxy::upstream_path`), on
//! arbitrary method and request-target bytes.
//!
//! Route tables (control bits 0-2): the bundled `gateway.yaml`
//! (`gateway::routes`), specs compiled with `gateway_macros::spec!`
//! (`tests/specs/edge_cases.yaml`, `fetch_service.yaml`, `versions.yaml`
//! and two codegen fixtures), or a table generated from the input and
//! compiled with `gateway_codegen::compile_str` (the laws of
//! `tests/routing_props.rs`).
//!
//! Oracles:
//! - nothing panics;
//! - `lookup` refuses exactly what `check` refuses, and `check` accepts
//!   exactly the paths a reference reading of its rules accepts;
//! - the method check returns a route that accepts the method, or the
//!   union of the path's methods;
//! - the reference matcher says the chosen route's pattern matches the
//!   path; every captured parameter is what it captures, and the upstream
//!   path is exactly the template filled with them (parameters
//!   round-trip), plus the query;
//! - an upstream path never contains a dot segment (`.`, `..`, literal or
//!   `%2e`-encoded, also before a `;`), an encoded slash or backslash
//!   (`%2f`, `%5c`), never starts with `//`, and is a valid path-and-query;
//! - for generated tables, the router picks the route the reference
//!   matcher (`tests/support/reference_matcher.rs`, shared with
//!   `tests/routing_props.rs`) picks.
#![no_main]

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use gateway::proxy::upstream_path;
use gateway::routing::{path::check, select_method, Miss, PathMatch, Router};
use gateway::spec::{Methods, Part, RouteSpec, Spec};
use gateway_codegen::validate::pattern::Part as IrPart;
use gateway_codegen::validate::RouteIr;
use gateway_fuzz::dispatch as field;
use gateway_fuzz::Fields;
use http::Method;
use libfuzzer_sys::fuzz_target;
use reference_matcher::{match_route, most_specific, Match};

/// The reference route matcher, shared with `tests/routing_props.rs`.
#[path = "../../tests/support/reference_matcher.rs"]
mod reference_matcher;

mod edge_cases {
    gateway_macros::spec!("../tests/specs/edge_cases.yaml");
}
mod fetch_service {
    gateway_macros::spec!("../tests/specs/fetch_service.yaml");
}
mod versions {
    gateway_macros::spec!("../tests/specs/versions.yaml");
}
mod prefix_and_catch_all {
    gateway_macros::spec!("../gateway-macros/codegen/tests/fixtures/ok/prefix_and_catch_all.yaml");
}
mod param_beside_catch_all {
    gateway_macros::spec!(
        "../gateway-macros/codegen/tests/fixtures/ok/param_beside_catch_all.yaml"
    );
}

// === the reference reading of the rules ===

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decodes a segment; `None` for a malformed escape.
fn decode(seg: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(seg.len());
    let mut i = 0;
    while i < seg.len() {
        if seg[i] == b'%' {
            let hi = seg.get(i + 1).copied().and_then(hex)?;
            let lo = seg.get(i + 2).copied().and_then(hex)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(seg[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Whether a lead byte and the continuation byte after it begin an
/// overlong UTF-8 sequence: even with every later continuation byte at its
/// largest, the code point would fit in a shorter form. Read from the
/// UTF-8 definition (including the obsolete 5- and 6-byte forms), not
/// from the gateway's table.
fn starts_overlong(lead: u8, next: u8) -> bool {
    let len = lead.leading_ones();
    if !(2..=6).contains(&len) || next & 0xC0 != 0x80 {
        return false;
    }
    let lead_bits = u64::from(lead & (0x7F >> len));
    let mut max = lead_bits << 6 | u64::from(next & 0x3F);
    for _ in 2..len {
        max = max << 6 | 0x3F;
    }
    let shortest_min: u64 = match len {
        2 => 0x80,
        3 => 0x800,
        4 => 0x1_0000,
        5 => 0x20_0000,
        _ => 0x400_0000,
    };
    max < shortest_min
}

/// Path sanity as README "Behaviour" and contract §1 state it, written
/// segment by segment (the gateway's `check` is a one-pass byte scanner).
fn reference_check(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    rest.as_bytes().split(|b| *b == b'/').all(|seg| {
        if seg.iter().any(|&b| b == b'\\' || b >= 0x80) {
            return false;
        }
        let Some(decoded) = decode(seg) else {
            return false;
        };
        if decoded
            .iter()
            .any(|&b| b == b'/' || b == b'\\' || b < 0x20 || b == 0x7f)
        {
            return false;
        }
        // Overlong UTF-8 (`%c0%ae` is `.` to a lax decoder).
        if decoded.windows(2).any(|w| starts_overlong(w[0], w[1])) {
            return false;
        }
        // `..;x` is `..` to servers that strip path parameters.
        let head = seg.split(|b| *b == b';').next().unwrap_or(seg);
        let head = decode(head).unwrap_or_default();
        head != b"." && head != b".."
    })
}

/// The laws every upstream path obeys.
fn assert_safe_upstream(up: &str, path: &str) {
    let (p, _query) = up.split_once('?').unwrap_or((up, ""));
    assert!(p.starts_with('/'), "{path} -> {up}: not absolute");
    assert!(
        !p.starts_with("//"),
        "{path} -> {up}: network-path reference"
    );
    let lower = p.to_ascii_lowercase();
    assert!(
        !lower.contains("%2f") && !lower.contains("%5c") && !p.contains('\\'),
        "{path} -> {up}: encoded slash"
    );
    for seg in lower.split('/') {
        let head = seg.split(';').next().unwrap_or(seg);
        let decoded = head.replace("%2e", ".");
        assert!(
            decoded != "." && decoded != "..",
            "{path} -> {up}: dot segment"
        );
    }
    assert!(
        http::uri::PathAndQuery::try_from(up).is_ok(),
        "{path} -> {up}: not a valid path-and-query"
    );
}

/// What dispatch reads of a route: a compiled spec's `RouteSpec`, or a
/// generated table's checked route.
#[derive(Clone, Copy)]
struct Route<'s> {
    /// The path pattern as written.
    pattern: &'s str,
    methods: Methods,
    /// The upstream template.
    upstream: &'s [Part],
    /// Where a catch-all's or prefix route's rest starts.
    rest_segment: Option<usize>,
    versions: Option<&'static gateway::policy::version::VersionSet>,
}

impl Route<'static> {
    fn of(spec: &'static RouteSpec) -> Self {
        Route {
            pattern: spec.pattern,
            methods: spec.methods,
            upstream: spec.upstream,
            rest_segment: spec.rest_segment,
            versions: spec.versions,
        }
    }
}

/// The reference matcher's reading of `route` on `path`: the router chose
/// the route, so its pattern must match.
fn reference_match<'p>(route: &Route<'_>, path: &'p str) -> Match<'p> {
    match_route(route.pattern, path).unwrap_or_else(|| {
        panic!(
            "{path}: the router chose {}, which the reference matcher says does not match",
            route.pattern
        )
    })
}

/// The router's parameters for a match: the named ones, then the first
/// segment below a catch-all's or prefix's base and what follows it, if
/// any (`Pattern::router_paths` inserts those as `{pN}/{*pN+1}`).
fn router_params<'p>(m: &Match<'p>) -> Vec<&'p str> {
    let below = m.rest.or_else(|| {
        m.suffix
            .and_then(|s| s.strip_prefix('/'))
            .filter(|s| !s.is_empty())
    });
    let mut params = m.params.clone();
    if let Some(below) = below {
        let (first, more) = below.split_once('/').unwrap_or((below, ""));
        params.push(first);
        if !more.is_empty() {
            params.push(more);
        }
    }
    params
}

/// The expected upstream path: the template filled with what the reference
/// matcher captured.
fn expected_upstream(m: &Match<'_>, template: &[Part], query: Option<&str>) -> String {
    let mut out = String::new();
    for part in template {
        match *part {
            Part::Lit(l) => out.push_str(l),
            Part::Param(i) => out.push_str(m.params[i]),
            Part::Rest => out.push_str(m.rest.expect("Rest without a catch-all")),
            Part::Suffix => out.push_str(m.suffix.expect("Suffix without a prefix")),
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Dispatches one request and checks every law; returns the chosen route.
fn dispatch<'s, V: AsRef<[R]>, R: Copy + std::fmt::Debug>(
    router: &Router<V>,
    route_of: impl Fn(R) -> Route<'s>,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Option<R> {
    let lookup = router.lookup(path);
    let sane = check(path);
    match (&lookup, sane) {
        (Err(Miss::BadPath(e)), Err(want)) => assert_eq!(*e, want),
        (Err(Miss::BadPath(e)), Ok(())) => panic!("{path}: lookup says {e:?}, check accepts"),
        (_, Err(e)) => panic!("{path}: check says {e:?}, lookup went on"),
        _ => {}
    }
    let m = lookup.ok()?;
    let routes = m.routes.as_ref();
    check_match(routes, &m, &route_of, path);
    let route = match select_method(routes, method, |r| route_of(r).methods) {
        Ok(r) => {
            assert!(
                route_of(r).methods.contains(method),
                "{method} {path}: {r:?}"
            );
            r
        }
        Err(Methods(allow)) => {
            let union = routes.iter().fold(0, |a, &r| a | route_of(r).methods.0);
            assert_eq!(allow, union, "{method} {path}: Allow");
            assert!(routes
                .iter()
                .all(|&r| !route_of(r).methods.contains(method)));
            // The path's first route is still rewritten below.
            routes.first().copied()?
        }
    };
    let spec = route_of(route);
    let captured = reference_match(&spec, path);
    let mut templates = vec![spec.upstream];
    if let Some(vs) = spec.versions {
        templates.extend(vs.live.iter().map(|v| v.upstream));
    }
    for template in templates {
        let up = upstream_path(template, spec.rest_segment, &m, path, query, "");
        let want = expected_upstream(&captured, template, query);
        assert_eq!(up, want, "{path} via {}: rewrite", spec.pattern);
        assert_safe_upstream(&up, path);
        // A service URL's base path is only prepended.
        let based = upstream_path(template, spec.rest_segment, &m, path, query, "/base");
        assert_eq!(based, format!("/base{up}"));
    }
    Some(route)
}

/// Captured parameters are the request's own segments.
fn check_match<'s, V, R: Copy>(
    routes: &[R],
    m: &PathMatch<'_, '_, V>,
    route_of: &impl Fn(R) -> Route<'s>,
    path: &str,
) {
    assert!(!routes.is_empty());
    let got: Vec<&str> = m.params.iter().map(|(_, v)| v).collect();
    for &r in routes {
        let spec = route_of(r);
        let want = router_params(&reference_match(&spec, path));
        assert_eq!(got, want, "{path} via {}: parameters", spec.pattern);
        assert!(
            want.iter().all(|p| !p.is_empty()),
            "{path}: empty parameter"
        );
    }
}

type Table<S> = Router<&'static [<S as Spec>::Route]>;

fn table<S: Spec>(cell: &'static OnceLock<Table<S>>) -> &'static Table<S> {
    cell.get_or_init(|| Router::new(S::PATHS.iter().copied()).expect("compiled paths insert"))
}

macro_rules! run_spec {
    ($spec:ty, $method:expr, $path:expr, $query:expr) => {{
        static ROUTER: OnceLock<Table<$spec>> = OnceLock::new();
        dispatch(
            table::<$spec>(&ROUTER),
            |r| Route::of(<$spec>::route(r)),
            $method,
            $path,
            $query,
        );
    }};
}

// === generated tables ===

/// `Part::Lit` needs `'static` text: template literals are interned, at
/// most 50 000 of them, so a long run's memory stays bounded.
fn intern(s: &str) -> Option<&'static str> {
    static SEEN: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut g = SEEN.lock().ok()?;
    let set = g.get_or_insert_with(HashSet::new);
    if let Some(&x) = set.get(s) {
        return Some(x);
    }
    if set.len() > 50_000 {
        return None;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    set.insert(leaked);
    Some(leaked)
}

/// A checked route's template as the runtime reads it.
fn runtime_template(r: &RouteIr) -> Option<Vec<Part>> {
    r.template
        .iter()
        .map(|p| {
            Some(match p {
                IrPart::Lit(l) => Part::Lit(intern(l)?),
                IrPart::Param(i) => Part::Param(*i),
                IrPart::Rest => Part::Rest,
                IrPart::Suffix => Part::Suffix,
            })
        })
        .collect()
}

fn run_generated(desc: &[u8], method: &Method, path: &str, query: Option<&str>) {
    let Some(yaml) = std::str::from_utf8(desc)
        .ok()
        .and_then(field::generated_yaml)
    else {
        return;
    };
    let Ok(compiled) = gateway_codegen::compile_str("fuzz.yaml", &yaml) else {
        return;
    };
    let checked = compiled.checked();
    let Some(templates) = checked
        .routes
        .iter()
        .map(runtime_template)
        .collect::<Option<Vec<_>>>()
    else {
        return;
    };
    let route_of = |i: usize| {
        let r = &checked.routes[i];
        Route {
            pattern: &r.pattern_text,
            methods: Methods(r.methods),
            upstream: &templates[i],
            rest_segment: r.rest_segment,
            versions: None,
        }
    };
    let router = Router::new(checked.paths.iter().cloned()).expect("compiled paths insert");
    let got = dispatch(&router, route_of, method, path, query);
    if check(path).is_ok() {
        let patterns = checked.routes.iter().map(|r| r.pattern_text.as_str());
        let want = most_specific(patterns, path);
        let got_any = router.lookup(path).ok().map(|m| m.routes[0]);
        assert_eq!(got_any, want, "{path} in\n{yaml}");
        if let (Some(g), Some(w)) = (got, want) {
            assert_eq!(
                checked.routes[g].pattern_text,
                checked.routes[w].pattern_text
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let f = Fields::parse(data, field::FIELDS);
    let method = Method::from_bytes(f.bytes(field::METHOD)).unwrap_or(Method::GET);
    let target = f.bytes(field::TARGET);

    // `check` and `lookup` take any text: a reference reading of the rules
    // must agree with `check` on all of it.
    if let Ok(raw) = std::str::from_utf8(target) {
        assert_eq!(
            check(raw).is_ok(),
            reference_check(raw),
            "check and the reference disagree on {raw:?}: {:?}",
            check(raw)
        );
    }
    // A server hands the router only a parsed request target.
    let Ok(pq) = http::uri::PathAndQuery::try_from(target) else {
        return;
    };
    let (path, query) = (pq.path(), pq.query());
    match f.ctl & field::TABLE_MASK {
        0 => run_spec!(gateway::routes::Spec, &method, path, query),
        1 => run_spec!(edge_cases::Spec, &method, path, query),
        2 => run_spec!(fetch_service::Spec, &method, path, query),
        3 => run_spec!(versions::Spec, &method, path, query),
        4 => run_spec!(prefix_and_catch_all::Spec, &method, path, query),
        5 => run_spec!(param_beside_catch_all::Spec, &method, path, query),
        _ => run_generated(f.bytes(field::TABLE), &method, path, query),
    }
});
