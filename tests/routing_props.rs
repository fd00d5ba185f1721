//! Laws of routing, checked on random inputs:
//! - the compiled router (spec compiler's paths + runtime router) picks the
//!   same route as a simple reference matcher written here from contract §1;
//! - rewrites substitute parameters exactly, raw;
//! - no path with a dot segment or an encoded slash reaches an upstream.

#[path = "support/aegis.rs"]
mod aegis;

use aegis::Spec as Aegis;
use gateway::proxy::upstream_path;
use gateway::routing::{select_method, Router};
use gateway::spec::{Methods, Part, RouteSpec, Spec as _};
use gateway_codegen::validate::pattern::{Part as IrPart, Seg};
use gateway_codegen::validate::RouteIr;
use proptest::prelude::*;

// === reference matcher ===

/// How specific a path segment's match was: lower is more specific.
const STATIC: u8 = 0;
const PARAM: u8 = 1;
const REST: u8 = 2;

/// Contract §1 read literally: the rank of each path segment when `route`
/// matches `path`, or `None`.
fn reference_rank(route: &RouteIr, path: &str) -> Option<Vec<u8>> {
    let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let pat = &route.pattern;
    let mut ranks = Vec::new();
    for (i, seg) in pat.segments.iter().enumerate() {
        match seg {
            Seg::Lit(l) => {
                if segs.get(i) != Some(&l.as_str()) {
                    return None;
                }
                ranks.push(STATIC);
            }
            Seg::Param(_) => {
                if segs.get(i).is_none_or(|s| s.is_empty()) {
                    return None;
                }
                ranks.push(PARAM);
            }
            Seg::CatchAll(_) => {
                let rest = segs.get(i..).map(|r| r.join("/")).unwrap_or_default();
                if rest.is_empty() {
                    return None;
                }
                ranks.extend(std::iter::repeat_n(REST, segs.len() - i));
                return Some(ranks);
            }
        }
    }
    let n = pat.segments.len();
    let rest = &segs[n.min(segs.len())..];
    if pat.prefix {
        // The base itself, the base with a trailing slash, or anything below.
        match rest {
            [] => {}
            [""] => ranks.push(STATIC),
            _ => ranks.extend(std::iter::repeat_n(REST, rest.len())),
        }
        return Some(ranks);
    }
    let want: &[&str] = if pat.trailing_slash { &[""] } else { &[] };
    if n == 0 && segs == [""] {
        // The root pattern `/`.
        return Some(ranks);
    }
    (segs.len() >= n && rest == want).then(|| {
        ranks.extend(want.iter().map(|_| STATIC));
        ranks
    })
}

/// The most specific matching route; `None` when none matches.
fn reference(routes: &[RouteIr], path: &str) -> Option<usize> {
    routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| reference_rank(r, path).map(|rank| (rank, i)))
        .min()
        .map(|(_, i)| i)
}

// === generators ===

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "ab", "c"]).prop_map(String::from),
        2 => Just("{p}".to_owned()),
    ]
}

fn pattern() -> impl Strategy<Value = String> {
    (prop::collection::vec(segment(), 0..4), 0..4u8).prop_map(|(segs, tail)| {
        let mut seen = 0;
        let mut p = String::new();
        for s in segs {
            p.push('/');
            if s == "{p}" {
                p.push_str(&format!("{{p{seen}}}"));
                seen += 1;
            } else {
                p.push_str(&s);
            }
        }
        match tail {
            1 if !p.is_empty() && !p.ends_with('}') => p.push('*'),
            2 => p.push_str("/{*rest}"),
            3 if !p.is_empty() => p.push('/'),
            _ => {}
        }
        if p.is_empty() {
            p.push('/');
        }
        p
    })
}

fn spec_yaml(patterns: &[String]) -> String {
    let mut y = String::from(
        "gateway: { name: prop, listen: \"127.0.0.1:0\" }\nservices:\n  s: { url: { env: S_URL, default: \"http://localhost:1\" }, identity: { kind: none, unsigned: true } }\nroutes:\n",
    );
    for (i, p) in patterns.iter().enumerate() {
        y.push_str(&format!(
            "  - {{ id: r{i}, path: \"{p}\", service: s, upstream: / }}\n"
        ));
    }
    y
}

fn request_path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(
            prop::sample::select(vec!["a", "b", "ab", "c", "x", "abc"]),
            0..5,
        ),
        any::<bool>(),
    )
        .prop_map(|(segs, slash)| {
            let mut p = String::new();
            for s in segs {
                p.push('/');
                p.push_str(s);
            }
            if slash || p.is_empty() {
                p.push('/');
            }
            p
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn router_agrees_with_reference(
        patterns in prop::collection::vec(pattern(), 1..6),
        paths in prop::collection::vec(request_path(), 1..12),
    ) {
        let compiled = gateway_codegen::compile_str("prop.yaml", &spec_yaml(&patterns));
        // Sets with two routes matching the same requests are rejected at
        // build time; the law is about the sets that compile.
        prop_assume!(compiled.is_ok());
        let compiled = compiled.unwrap();
        let checked = compiled.checked();
        let router = Router::new(checked.paths.iter().map(|(p, r)| (p.clone(), r.clone()))).unwrap();
        for path in &paths {
            let got = router
                .lookup(path)
                .ok()
                .map(|m| select_method(m.routes, &http::Method::GET, |_| Methods::ANY).unwrap());
            let want = reference(&checked.routes, path);
            prop_assert_eq!(got, want, "path {} with routes {:?}", path, patterns);
        }
    }

    #[test]
    fn rewrites_substitute_parameters_exactly(
        a in "[A-Za-z0-9_~-]{1,6}(%[0-9A-F]{2}[a-z]{0,2}){0,2}",
        b in "[A-Za-z0-9._~-]{0,3}[A-Za-z0-9_~-]{1,4}",
        rest in "[a-z0-9]{1,4}(/[a-z0-9%]{1,4}){0,3}",
        query in proptest::option::of("[a-z0-9=&%]{0,12}"),
    ) {
        let yaml = "gateway: { name: prop, listen: \"127.0.0.1:0\" }\n\
            services:\n  s: { url: { env: S_URL, default: \"http://localhost:1\" }, identity: { kind: none, unsigned: true } }\n\
            routes:\n\
            \x20 - { path: \"/p/{a}/q/{b}\", service: s, upstream: \"/u/{b}/v/{a}\" }\n\
            \x20 - { path: \"/c/{a}/{*rest}\", service: s, upstream: \"/d/{a}/{*rest}\" }\n\
            \x20 - { path: \"/pre*\", service: s, upstream: \"/up*\" }\n";
        let compiled = gateway_codegen::compile_str("prop.yaml", yaml).unwrap();
        let checked = compiled.checked();
        let router = Router::new(checked.paths.iter().map(|(p, r)| (p.clone(), r.clone()))).unwrap();
        let specs: Vec<RouteSpec> = checked.routes.iter().map(runtime_spec).collect();
        let cases = [
            (format!("/p/{a}/q/{b}"), format!("/u/{b}/v/{a}")),
            (format!("/c/{a}/{rest}"), format!("/d/{a}/{rest}")),
            (format!("/pre/{rest}"), format!("/up/{rest}")),
            ("/pre".to_owned(), "/up".to_owned()),
        ];
        for (path, want) in cases {
            let m = router.lookup(&path);
            prop_assume!(m.is_ok());
            let m = m.unwrap();
            let route = &specs[m.routes[0]];
            let got = upstream_path(route, route.upstream, &m, &path, query.as_deref(), "");
            let want = match &query { Some(q) => format!("{want}?{q}"), None => want };
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn no_dot_segment_or_encoded_slash_reaches_an_upstream(
        path in "/api/v1/(conversations|agents/[a.%2eE]{1,4}/stream|graph/context|compliance)(/[a.%25cfF2E]{0,5}){0,4}",
    ) {
        let router = Router::new(Aegis::PATHS.iter().copied()).unwrap();
        if let Ok(m) = router.lookup(&path) {
            if let Ok(route) = select_method(m.routes, &http::Method::GET, |r| Aegis::route(r).methods) {
                let up = upstream_path(Aegis::route(route), Aegis::route(route).upstream, &m, &path, None, "");
                let lower = up.to_ascii_lowercase();
                prop_assert!(!lower.contains("%2f") && !lower.contains("%5c"), "{} -> {}", path, up);
                for seg in lower.split('/') {
                    let decoded = seg.replace("%2e", ".");
                    prop_assert!(decoded != "." && decoded != "..", "{} -> {}", path, up);
                }
            }
        }
    }
}

/// The runtime constants the generator would emit for a checked route.
fn runtime_spec(r: &RouteIr) -> RouteSpec {
    let parts: Vec<Part> = r
        .template
        .iter()
        .map(|p| match p {
            IrPart::Lit(l) => Part::Lit(Box::leak(l.clone().into_boxed_str())),
            IrPart::Param(i) => Part::Param(*i),
            IrPart::Rest => Part::Rest,
            IrPart::Suffix => Part::Suffix,
        })
        .collect();
    RouteSpec {
        id: "prop",
        pattern: "prop",
        methods: Methods::ANY,
        service: 0,
        upstream: Box::leak(parts.into_boxed_slice()),
        rest_segment: r.rest_segment,
        timeout: std::time::Duration::from_secs(1),
        body_timeout: std::time::Duration::from_secs(10),
        policy: None,
        buffer_body: None,
        body_limit: 1 << 20,
        cors: None,
        canary: None,
        retries: None,
        versions: None,
        index: 0,
    }
}
