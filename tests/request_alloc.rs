//! Heap allocations per request through the whole gateway (issue 6): head
//! parsing, ids, policies, signing, the upstream exchange and the response,
//! for a route without policies, the load benchmark's full chain (JWT, rate
//! limit, outbound HMAC v2 signing) and an inbound HMAC v2 route. The client and the
//! upstream speak raw HTTP/1.1 from fixed buffers, and the HMAC requests are
//! signed before counting starts, so what is counted is the gateway's. The
//! budgets fail the test when a change adds allocations; lower them as the
//! figures come down (BENCHMARKS.md).

#[path = "support/lib.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Index just past the head and the content length, once a whole
/// response is in `buf[..n]`.
fn complete(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let len: usize = head
        .split("\r\n")
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= head_end + len).then_some(head_end + len)
}

/// An upstream answering every request on a connection with the same
/// fixed response, from fixed buffers (it allocates nothing per request).
async fn raw_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 16384];
                let mut n = 0;
                loop {
                    match s.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                    // Requests here have no body: a head is a request.
                    while let Some(end) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
                        let end = end + 4;
                        let resp = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";
                        if s.write_all(resp).await.is_err() {
                            return;
                        }
                        buf.copy_within(end..n, 0);
                        n -= end;
                    }
                }
            });
        }
    });
    addr
}

/// Sends each request on one keep-alive connection and reads its answer;
/// returns the allocations counted per request.
async fn measure(gw: SocketAddr, warm: &[Vec<u8>], counted: &[Vec<u8>]) -> f64 {
    let mut s = TcpStream::connect(gw).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 65536];
    let mut exchange = async |req: &[u8], s: &mut TcpStream| {
        s.write_all(req).await.unwrap();
        let mut n = 0;
        loop {
            let k = s.read(&mut buf[n..]).await.unwrap();
            assert!(k > 0, "the gateway closed the connection");
            n += k;
            if let Some(end) = complete(&buf[..n]) {
                assert!(
                    buf.starts_with(b"HTTP/1.1 200"),
                    "{}",
                    String::from_utf8_lossy(&buf[..end])
                );
                break;
            }
        }
    };
    for r in warm {
        exchange(r, &mut s).await;
    }
    ALLOCS.store(0, Ordering::SeqCst);
    ON.store(true, Ordering::SeqCst);
    for r in counted {
        exchange(r, &mut s).await;
    }
    ON.store(false, Ordering::SeqCst);
    ALLOCS.load(Ordering::SeqCst) as f64 / counted.len() as f64
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: gw.test\r\n{extra}\r\n").into_bytes()
}

mod identity {
    gateway_macros::spec!("tests/specs/identity.yaml");
}
mod bare {
    gateway_macros::spec!("benches/load/bare.yaml");
}
mod full {
    gateway_macros::spec!("benches/load/full.yaml");
}

const ROUNDS: usize = 200;

// One test, so no other test's threads allocate while counting.
#[tokio::test(flavor = "current_thread")]
async fn allocations_per_request_stay_within_budget() {
    let up = raw_upstream().await;
    let env = |jwt: &str| {
        vec![
            ("BENCH_UPSTREAM_URL", format!("http://{up}")),
            ("BENCH_JWT_SECRET", jwt.to_owned()),
            ("BENCH_RULES_SECRET", "alloc-rules-secret".to_owned()),
        ]
    };
    // No policy at all: the proxy path alone.
    let gw = support::start::<bare::Spec>(&env("unused")).await;
    let public = get("/api/v1/rules/7", "");
    let public = measure(gw.addr, &vec![public.clone(); 20], &vec![public; ROUNDS]).await;
    gw.shutdown().await;

    // The load benchmark's full chain: JWT, rate limit, outbound HMAC v2.
    let secret = "alloc-jwt-secret-0123456789";
    let gw = support::start::<full::Spec>(&env(secret)).await;
    let token = support::sign_claims(
        &serde_json::json!({"sub": "alloc-user", "exp": support::now() + 600}),
        secret,
    );
    let jwt = get(
        "/api/v1/rules/7",
        &format!("authorization: Bearer {token}\r\n"),
    );
    let jwt = measure(gw.addr, &vec![jwt.clone(); 20], &vec![jwt; ROUNDS]).await;
    gw.shutdown().await;

    let id = support::start::<identity::Spec>(&[
        ("ID_BACKEND_URL", format!("http://{up}")),
        ("ID_JWT_SECRET", "alloc-jwt-secret".into()),
        ("ID_BILLING_SECRET", "alloc-billing-secret".into()),
        ("ID_REPORTING_SECRET", "alloc-reporting-secret".into()),
        ("ID_SHARED_SECRET", "alloc-shared-secret".into()),
        ("ID_SERVICE_TOKEN", "alloc-token".into()),
    ])
    .await;
    let signed = |i: usize| {
        let nonce = format!("alloc{i:027}");
        let ts = gateway::auth::hmac::now_unix().to_string();
        let empty = gateway::auth::hmac::body_sha256(b"");
        let sig = gateway::auth::hmac::sign_v2(
            b"alloc-billing-secret",
            &gateway::auth::hmac::V2Input {
                method: "GET",
                path_and_query: "/internal/v2/x",
                timestamp: &ts,
                nonce: &nonce,
                service: "billing",
                tenant: "acme",
                body_sha256: &empty,
            },
        );
        get(
            "/internal/v2/x",
            &format!(
                "x-internal-service-auth: {sig}\r\nx-service-name: billing\r\nx-internal-timestamp: {ts}\r\nx-internal-nonce: {nonce}\r\nx-tenant-id: acme\r\n"
            ),
        )
    };
    let warm: Vec<Vec<u8>> = (0..20).map(signed).collect();
    let counted: Vec<Vec<u8>> = (20..20 + ROUNDS).map(signed).collect();
    let hmac = measure(id.addr, &warm, &counted).await;
    id.shutdown().await;

    println!("allocations per request: no policies {public:.1}, JWT + limit + signing {jwt:.1}, inbound HMAC {hmac:.1}");
    for (what, got, budget) in [
        ("no policies", public, 21.0),
        ("full chain", jwt, 40.0),
        ("inbound hmac", hmac, 47.0),
    ] {
        assert!(got > 0.0, "{what}: nothing counted, the test is broken");
        assert!(
            got <= budget,
            "{what}: {got:.1} allocations per request, budget {budget}"
        );
    }
}
