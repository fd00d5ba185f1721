//! Dispatch allocates nothing: path sanity, route match, method check and
//! parameter capture, for every route of the AEGIS spec (the tests' copy,
//! `tests/specs/aegis.yaml`) and for the 400,
//! 404 and 405 outcomes. A counting global allocator proves it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

#[path = "support/aegis.rs"]
mod aegis;

use aegis::Spec;
use gateway::routing::{select_method, Miss, Router};
use gateway::spec::{Methods, Spec as _};
use gateway_codegen::validate::pattern::Seg;

struct Counting;

thread_local! {
    // Counts only on the thread that opted in, so the test harness's own
    // threads cannot disturb the figure.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count<T>(f: impl FnOnce() -> T) -> (T, usize) {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (out, ALLOCS.with(Cell::get))
}

/// Example request paths for every route of the AEGIS spec, made from
/// the spec itself so a new route is covered without editing this test.
fn example_paths() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/specs/aegis.yaml"
    ))
    .unwrap();
    let compiled = gateway_codegen::compile_str("aegis.yaml", &text).unwrap();
    let mut out = Vec::new();
    for r in &compiled.checked().routes {
        let mut base = String::new();
        for seg in &r.pattern.segments {
            base.push('/');
            match seg {
                Seg::Lit(l) => base.push_str(l),
                Seg::Param(_) => base.push_str("p%20q"),
                Seg::CatchAll(_) => base.push_str("a/b/c"),
            }
        }
        if r.pattern.prefix {
            out.push(format!("{base}/deeper/still"));
            out.push(format!("{base}/"));
        }
        out.push(base);
    }
    out
}

/// What dispatch does per request, returning a digest so nothing is
/// optimized away.
fn dispatch(
    router: &Router<&'static [aegis::RouteId]>,
    method: &http::Method,
    path: &str,
) -> usize {
    match router.lookup(path) {
        Ok(m) => match select_method(m.routes, method, |r| Spec::route(r).methods) {
            Ok(route) => {
                let spec = Spec::route(route);
                let params: usize = (0..4).filter_map(|i| m.param(i)).map(str::len).sum();
                spec.id.len() + params
            }
            Err(Methods(allow)) => 405 + allow as usize,
        },
        Err(Miss::NotFound) => 404,
        Err(Miss::BadPath(_)) => 400,
    }
}

#[test]
fn dispatch_allocates_nothing() {
    let router = Router::new(Spec::PATHS.iter().copied()).unwrap();
    let paths = example_paths();
    assert!(paths.len() > 31 * 2, "every route has examples");
    let misses = [
        ("GET", "/api/v1/administrator", 404),
        ("GET", "/nothing/here", 404),
        ("GET", "/", 404),
        ("GET", "/api/v1/agents/a/execute", 405),
        ("GET", "/api/v1/conversations/%2e%2e/x", 400),
        ("GET", "/api/v1/conversations/a%2fb", 400),
        ("GET", "/api/v1/../x", 400),
        ("GET", "no-slash", 400),
    ];
    let methods = [http::Method::GET, http::Method::POST, http::Method::DELETE];
    let mut checked = 0;
    for path in &paths {
        for method in &methods {
            let (digest, allocs) = count(|| dispatch(&router, method, path));
            assert_eq!(allocs, 0, "{method} {path} allocated {allocs} times");
            assert!(
                digest != 404 && digest != 400,
                "{method} {path} did not match"
            );
            checked += 1;
        }
    }
    for (method, path, want) in misses {
        let method: http::Method = method.parse().unwrap();
        let (digest, allocs) = count(|| dispatch(&router, &method, path));
        assert_eq!(allocs, 0, "{method} {path} allocated {allocs} times");
        assert!(
            digest == want || (want == 405 && digest > 405),
            "{path}: {digest}"
        );
        checked += 1;
    }
    // The counter works: a real allocation is seen.
    let (_, allocs) = count(|| std::hint::black_box(vec![1u8; 16]));
    assert_eq!(allocs, 1);
    assert!(checked > 100);
}
