//! Laws of routing, checked on random inputs:
//! - the compiled router (spec compiler's paths + runtime router) picks the
//!   same route as the reference matcher (`support/reference_matcher.rs`,
//!   shared with the `dispatch` fuzz target), also on paths with empty
//!   segments (`//`, a trailing `/`), and forwards what it captures;
//! - rewrites substitute parameters exactly, raw;
//! - no path with a dot segment or an encoded slash reaches an upstream.

#[path = "support/aegis.rs"]
mod aegis;
#[path = "support/reference_matcher.rs"]
mod reference_matcher;

use aegis::Spec as Aegis;
use gateway::proxy::upstream_path;
use gateway::routing::{select_method, Router};
use gateway::spec::{Methods, Part, Spec as _};
use gateway_codegen::validate::pattern::Part as IrPart;
use gateway_codegen::validate::RouteIr;
use proptest::prelude::*;
use reference_matcher::{match_route, most_specific};

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
        let t = echo_template(p);
        y.push_str(&format!(
            "  - {{ id: r{i}, path: \"{p}\", service: s, upstream: \"{t}\" }}\n"
        ));
    }
    y
}

/// An upstream template forwarding everything `pattern` captures:
/// `/a/{p0}/{*rest}` -> `/u/{p0}/{*rest}`, `/a/{p0}/b*` -> `/u/{p0}*`.
fn echo_template(pattern: &str) -> String {
    let prefix = pattern.ends_with('*') && !pattern.ends_with('}');
    let mut t = String::from("/u");
    for seg in pattern.trim_end_matches('*').split('/') {
        if seg.starts_with('{') {
            t.push('/');
            t.push_str(seg);
        }
    }
    if prefix {
        t.push('*');
    }
    t
}

/// What the reference says [`echo_template`] forwards for `path`.
fn echo_expected(pattern: &str, path: &str) -> Option<String> {
    let m = match_route(pattern, path)?;
    let mut t = String::from("/u");
    for p in m.params.iter().chain(&m.rest) {
        t.push('/');
        t.push_str(p);
    }
    t.push_str(m.suffix.unwrap_or(""));
    Some(t)
}

/// Request paths over the patterns' literals plus others, with empty
/// segments (`//`, `/a//b`) and trailing slashes.
fn request_path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(
            prop::sample::select(vec!["a", "b", "ab", "c", "x", "abc", "", ""]),
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

/// The reference matcher on the contract's and README's own examples.
#[test]
fn reference_matcher_reads_the_documented_examples() {
    // A prefix route matches at a segment boundary only (contract §1).
    for path in ["/api/v1/admin", "/api/v1/admin/", "/api/v1/admin/x/y"] {
        assert!(match_route("/api/v1/admin*", path).is_some(), "{path}");
    }
    assert!(match_route("/api/v1/admin*", "/api/v1/administrator").is_none());
    // `{*rest}` needs at least one byte; empty segments match no `{param}`,
    // and one right below a prefix or catch-all matches neither (README
    // "Behaviour"); deeper down they are part of the rest.
    for (pattern, path) in [
        ("/x/{*rest}", "/x/"),
        ("/x/{*rest}", "/x//y"),
        ("/x*", "/x//y"),
        ("/x*", "/x//"),
        ("/x/{id}", "/x//"),
        ("/{id}/y", "//y"),
    ] {
        assert!(match_route(pattern, path).is_none(), "{pattern} {path}");
    }
    let m = match_route("/x/{*rest}", "/x/y//z").unwrap();
    assert_eq!(m.rest, Some("y//z"));
    let m = match_route("/x/{id}/b*", "/x/7/b/y//").unwrap();
    assert_eq!((m.params, m.suffix), (vec!["7"], Some("/y//")));
    // A trailing slash is part of the pattern.
    assert!(match_route("/a/", "/a").is_none());
    assert!(match_route("/a", "/a/").is_none());
    // The most specific route wins: static > `{param}` > `{*rest}`.
    let routes = ["/a/{*rest}", "/a/{id}", "/a/b"];
    assert_eq!(most_specific(routes, "/a/b"), Some(2));
    assert_eq!(most_specific(routes, "/a/c"), Some(1));
    assert_eq!(most_specific(routes, "/a/c/d"), Some(0));
    assert_eq!(most_specific(routes, "/a//"), None);
    assert_eq!(most_specific(routes, "/a"), None);
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
        let templates: Vec<&[Part]> = checked.routes.iter().map(runtime_template).collect();
        for path in &paths {
            let m = router.lookup(path).ok();
            let got = m
                .as_ref()
                .map(|m| select_method(m.routes, &http::Method::GET, |_| Methods::ANY).unwrap());
            let want = most_specific(checked.routes.iter().map(|r| r.pattern_text.as_str()), path);
            prop_assert_eq!(got, want, "path {} with routes {:?}", path, patterns);
            if let (Some(m), Some(r)) = (m, got) {
                let route = &checked.routes[r];
                let up = upstream_path(templates[r], route.rest_segment, &m, path, None, "");
                let want = echo_expected(&route.pattern_text, path);
                prop_assert_eq!(Some(&up), want.as_ref(), "path {} via {}", path, route.pattern_text);
                prop_assert!(!up.starts_with("//"), "path {} via {} -> {}", path, route.pattern_text, up);
            }
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
        let templates: Vec<&[Part]> = checked.routes.iter().map(runtime_template).collect();
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
            let r = m.routes[0];
            let rest_segment = checked.routes[r].rest_segment;
            let got = upstream_path(templates[r], rest_segment, &m, &path, query.as_deref(), "");
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
                let spec = Aegis::route(route);
                let up = upstream_path(spec.upstream, spec.rest_segment, &m, &path, None, "");
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

/// The runtime template the generator would emit for a checked route
/// (`Part::Lit` holds `'static` text: the few literals are leaked).
fn runtime_template(r: &RouteIr) -> &'static [Part] {
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
    Box::leak(parts.into_boxed_slice())
}
