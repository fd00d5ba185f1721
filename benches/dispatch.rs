//! Dispatch: path sanity + match + method + parameters, for every route of
//! the bundled spec, against two baselines in the same run: a
//! `matchit::Router` built at run time from the YAML's own patterns, and a
//! linear prefix scan (how a hand-written gateway matches). All three run
//! the same path sanity check (contract §1), so only matching differs.
//!
//! `cargo bench --bench dispatch`

use divan::{black_box, Bencher};
use gateway::routes::Spec;
use gateway::routing::{select_method, Router};
use gateway::spec::{RouteSpec, Spec as _};
use gateway_codegen::validate::pattern::Seg;

fn main() {
    divan::main();
}

// The spec generator is an example, so anyone can write a spec to a file:
// `cargo run --example gen_spec -- 1000 > /tmp/routes.yaml`.
#[allow(dead_code)]
#[path = "../examples/gen_spec.rs"]
mod gen_spec;
use gen_spec::generated_spec;

/// A request path the route matches: parameters filled in, a tail below a
/// prefix route.
fn example_path(r: &gateway_codegen::validate::RouteIr) -> String {
    let mut p = String::new();
    for s in &r.pattern.segments {
        p.push('/');
        match s {
            Seg::Lit(t) => p.push_str(t),
            Seg::Param(_) => p.push_str("a1b2c3"),
            Seg::CatchAll(_) => p.push_str("x/y"),
        }
    }
    if r.pattern.prefix {
        p.push_str("/tail");
    }
    if p.is_empty() {
        p.push('/');
    }
    p
}

/// One request path per route (parameters filled in), with its method.
fn requests() -> Vec<(http::Method, String)> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.yaml")).unwrap();
    let compiled = gateway_codegen::compile_str("gateway.yaml", &text).unwrap();
    compiled
        .checked()
        .routes
        .iter()
        .map(|r| {
            let p = example_path(r);
            let m = gateway::spec::Methods::NAMES
                .iter()
                .find(|(_, b)| r.methods & b != 0)
                .map_or(http::Method::GET, |(n, _)| n.parse().unwrap());
            (m, p)
        })
        .collect()
}

/// The gateway's compiled router: the build-time path table, one lookup.
#[divan::bench]
fn compiled_router(b: Bencher) {
    let router = Router::new(Spec::PATHS.iter().copied()).unwrap();
    let reqs = requests();
    b.counter(divan::counter::ItemsCount::new(reqs.len()))
        .bench_local(|| {
            for (m, p) in &reqs {
                let hit = router.lookup(black_box(p)).unwrap();
                let r = select_method(hit.routes, m, |r| Spec::route(r).methods).unwrap();
                black_box((r, hit.param(0)));
            }
        });
}

/// Baseline: matchit built at run time from the route patterns, one
/// route per entry, the method checked after (what a runtime-configured
/// gateway on matchit does).
#[divan::bench]
fn runtime_matchit(b: Bencher) {
    let mut router: matchit::Router<Vec<&'static RouteSpec>> = matchit::Router::new();
    for (path, routes) in Spec::PATHS {
        router
            .insert(*path, routes.iter().map(|r| Spec::route(*r)).collect())
            .unwrap();
    }
    let reqs = requests();
    b.counter(divan::counter::ItemsCount::new(reqs.len()))
        .bench_local(|| {
            for (m, p) in &reqs {
                gateway::routing::path::check(black_box(p)).unwrap();
                let hit = router.at(p).unwrap();
                let r = hit.value.iter().find(|r| r.methods.contains(m)).unwrap();
                black_box((r, hit.params.iter().next()));
            }
        });
}

/// Baseline: a linear scan of path prefixes, longest first.
#[divan::bench]
fn linear_prefix_scan(b: Bencher) {
    let mut table: Vec<(String, &'static RouteSpec)> = Spec::PATHS
        .iter()
        .flat_map(|(path, routes)| {
            let prefix = path.split('{').next().unwrap_or(path).to_owned();
            routes
                .iter()
                .map(move |r| (prefix.clone(), Spec::route(*r)))
        })
        .collect();
    table.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    let reqs = requests();
    b.counter(divan::counter::ItemsCount::new(reqs.len()))
        .bench_local(|| {
            for (m, p) in &reqs {
                gateway::routing::path::check(black_box(p)).unwrap();
                let r = table
                    .iter()
                    .find(|(prefix, r)| p.starts_with(prefix.as_str()) && r.methods.contains(m));
                black_box(r);
            }
        });
}

/// The router paths, each route's methods, and one request per route.
type Generated = (Vec<(String, Vec<usize>)>, Vec<u16>, Vec<String>);

fn generated(n: usize) -> Generated {
    let compiled = gateway_codegen::compile_str("generated.yaml", &generated_spec(n)).unwrap();
    let c = compiled.checked();
    let methods = c.routes.iter().map(|r| r.methods).collect();
    let requests = c.routes.iter().map(example_path).collect();
    (c.paths.clone(), methods, requests)
}

/// The gateway's router over generated specs: cost per request should
/// follow path length, not route count.
#[divan::bench(args = [1_000, 10_000], sample_count = 20)]
fn compiled_router_generated(b: Bencher, n: usize) {
    let (paths, methods, reqs) = generated(n);
    let router = Router::new(paths).unwrap();
    let get = http::Method::GET;
    b.counter(divan::counter::ItemsCount::new(reqs.len()))
        .bench_local(|| {
            for p in &reqs {
                let hit = router.lookup(black_box(p)).unwrap();
                let r = select_method(hit.routes.as_slice(), &get, |i| {
                    gateway::spec::Methods(methods[i])
                })
                .unwrap();
                black_box((r, hit.param(0)));
            }
        });
}

/// Baseline over generated specs: `matchit` built at run time, each path
/// holding its routes' methods, the method checked after.
#[divan::bench(args = [1_000, 10_000], sample_count = 20)]
fn runtime_matchit_generated(b: Bencher, n: usize) {
    let (paths, methods, reqs) = generated(n);
    let mut router: matchit::Router<Vec<(usize, u16)>> = matchit::Router::new();
    for (path, routes) in &paths {
        router
            .insert(
                path.as_str(),
                routes.iter().map(|&r| (r, methods[r])).collect(),
            )
            .unwrap();
    }
    let get = http::Method::GET;
    b.counter(divan::counter::ItemsCount::new(reqs.len()))
        .bench_local(|| {
            for p in &reqs {
                gateway::routing::path::check(black_box(p)).unwrap();
                let hit = router.at(p).unwrap();
                let r = hit
                    .value
                    .iter()
                    .find(|(_, m)| gateway::spec::Methods(*m).contains(&get))
                    .unwrap();
                black_box((r, hit.params.iter().next()));
            }
        });
}

/// Baseline over generated specs: a linear prefix scan.
#[divan::bench(args = [1_000, 10_000], sample_count = 20)]
fn linear_prefix_scan_generated(b: Bencher, n: usize) {
    let (paths, _, reqs) = generated(n);
    let mut table: Vec<(String, usize)> = paths
        .iter()
        .map(|(p, rs)| (p.split('{').next().unwrap_or(p).to_owned(), rs[0]))
        .collect();
    table.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    b.counter(divan::counter::ItemsCount::new(reqs.len()))
        .bench_local(|| {
            for p in &reqs {
                gateway::routing::path::check(black_box(p)).unwrap();
                black_box(
                    table
                        .iter()
                        .find(|(prefix, _)| p.starts_with(prefix.as_str())),
                );
            }
        });
}
