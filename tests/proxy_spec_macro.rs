//! Specs other than the bundled one, compiled through `gateway_macros::spec!`:
//! timeouts, method-split paths, credential forwarding, graceful shutdown.

#[path = "support/lib.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{echo_upstream, get, send, start, Running};

mod edge_cases {
    gateway_macros::spec!("tests/specs/edge_cases.yaml");
}

// The smallest table (one route, one service, no policy): compiled here,
// under the workspace's `clippy -D warnings`, so generated code that leaves
// a variable or an item unused in a tiny spec fails the build.
mod tiny {
    gateway_macros::spec!("tests/specs/tiny.yaml");
}

async fn gateway() -> Running {
    gateway_with_flaky("http://127.0.0.1:9".into()).await
}

async fn gateway_with_flaky(flaky: String) -> Running {
    let reader = echo_upstream("reader").await;
    let writer = echo_upstream("writer").await;
    start::<edge_cases::Spec>(&[
        ("READER_URL", format!("http://{reader}")),
        ("WRITER_URL", format!("http://{writer}")),
        ("FLAKY_URL", flaky),
    ])
    .await
}

/// An upstream that answers 500 while `healthy` is false, counting hits.
async fn flaky_upstream(healthy: Arc<AtomicBool>, hits: Arc<AtomicUsize>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (healthy, hits) = (healthy.clone(), hits.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let ok = healthy.load(Ordering::SeqCst);
                    async move {
                        let mut r =
                            http::Response::new(http_body_util::Full::new(bytes::Bytes::from("x")));
                        if !ok {
                            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });
    addr
}

/// An upstream that reads requests and never answers; counts the
/// connections it accepted and those the other side closed.
async fn hanging_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, c) = (accepted.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, accepted, closed)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_upstream_costs_other_routes_nothing_and_its_connections_are_closed() {
    let (hanging, accepted, closed) = hanging_upstream().await;
    let reader = echo_upstream("reader").await;
    let writer = echo_upstream("writer").await;
    let gw = start::<edge_cases::Spec>(&[
        ("READER_URL", format!("http://{reader}")),
        ("WRITER_URL", format!("http://{writer}")),
        ("FLAKY_URL", "http://127.0.0.1:9".into()),
        ("HANGING_URL", format!("http://{hanging}")),
    ])
    .await;
    let hung: Vec<_> = (0..30)
        .map(|_| {
            let url = gw.url("/hanging/x");
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    // While 30 requests wait on the hanging upstream, another route
    // answers; every hung request is still waiting afterwards.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..5 {
        assert_eq!(get(&gw.url("/orders")).await.json()["service"], "reader");
    }
    assert!(
        hung.iter().all(|h| !h.is_finished()),
        "the other route waited for the hanging one"
    );
    for h in hung {
        let got = h.await.unwrap();
        assert_eq!(got.status, 504);
    }
    // Each timed-out request's upstream connection is closed, not left
    // open in the pool.
    let deadline = Instant::now() + Duration::from_secs(2);
    while closed.load(Ordering::SeqCst) < accepted.load(Ordering::SeqCst)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (a, c) = (
        accepted.load(Ordering::SeqCst),
        closed.load(Ordering::SeqCst),
    );
    assert!(a >= 1);
    assert_eq!(c, a, "{a} upstream connections opened, {c} closed");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_upstream_is_504_after_the_route_timeout() {
    let gw = gateway().await;
    let started = Instant::now();
    let got = get(&gw.url("/quick/slow")).await;
    let took = started.elapsed();
    assert_eq!(got.status, 504);
    assert_eq!(got.json()["error"], "Gateway timeout");
    assert_eq!(
        got.json()["request_id"],
        got.header("x-request-id").unwrap()
    );
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    // The same upstream behind the default (5 s) timeout answers.
    let got = get(&gw.url("/patient/slow")).await;
    assert_eq!(got.status, 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_path_split_by_method_across_services() {
    let gw = gateway().await;
    assert_eq!(get(&gw.url("/orders")).await.json()["service"], "reader");
    assert_eq!(
        send("POST", &gw.url("/orders"), &[], "{}").await.json()["service"],
        "writer"
    );
    assert_eq!(
        send("PUT", &gw.url("/orders"), &[], "{}").await.json()["service"],
        "writer"
    );
    let got = send("DELETE", &gw.url("/orders"), &[], "").await;
    assert_eq!(got.status, 405);
    assert_eq!(got.header("allow"), Some("GET, HEAD, POST, PUT"));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_forwarded_only_where_the_route_says_so() {
    let gw = gateway().await;
    let creds = [("authorization", "Bearer t"), ("x-service-token", "s")];
    let h = &send("GET", &gw.url("/auth-passthrough/x"), &creds, "")
        .await
        .json()["headers"];
    assert_eq!(h["authorization"], "Bearer t");
    assert_eq!(h["x-service-token"], "s");
    let got = send("GET", &gw.url("/inline/x"), &creds, "").await.json();
    assert_eq!(got["uri"], "/x");
    assert_eq!(got["headers"]["authorization"], "Bearer t");
    assert!(got["headers"].get("x-service-token").is_none());
    let h = &send("GET", &gw.url("/patient/x"), &creds, "").await.json()["headers"];
    assert!(h.get("authorization").is_none());
    assert!(h.get("x-service-token").is_none());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_finishes_in_flight_requests_and_refuses_new_connections() {
    let gw = gateway().await;
    let url = gw.url("/patient/slow");
    let addr = gw.addr;
    let in_flight = tokio::spawn(async move { get(&url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let stopping = tokio::spawn(gw.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The listener is closed at once.
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting"
    );
    let got = in_flight.await.unwrap();
    assert_eq!(got.status, 200, "the in-flight request completed");
    stopping.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not wait for the drain deadline"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_gateway_stops_at_once() {
    let gw = gateway().await;
    let _ = get(&gw.url("/orders")).await;
    let started = Instant::now();
    gw.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prefix_route_under_a_parameter_forwards_the_right_suffix() {
    let gw = gateway().await;
    for (path, want) in [
        ("/t/acme/files", "/tenants/acme/files"),
        ("/t/acme/files/", "/tenants/acme/files/"),
        (
            "/t/a-much-longer-tenant/files/x/y.txt?v=1",
            "/tenants/a-much-longer-tenant/files/x/y.txt?v=1",
        ),
        ("/root-rest/a/b%20c/", "/r/a/b%20c/"),
        ("/root-rest/a", "/r/a"),
    ] {
        let got = get(&gw.url(path)).await;
        assert_eq!(got.status, 200, "{path}");
        assert_eq!(got.json()["uri"], want, "{path}");
    }
    assert_eq!(get(&gw.url("/t/acme/filesx")).await.status, 404);
    assert_eq!(
        get(&gw.url("/root-rest/")).await.status,
        404,
        "a catch-all needs a value"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn param_route_beats_prefix_route_without_method_fallback() {
    let gw = gateway().await;
    let got = send("POST", &gw.url("/items/7"), &[], "{}").await;
    assert_eq!(
        (got.status.as_u16(), got.json()["uri"].clone()),
        (200, "/items/7".into())
    );
    // GET /items/7 belongs to the POST-only param route: 405, not the prefix route.
    let got = get(&gw.url("/items/7")).await;
    assert_eq!(got.status, 405);
    assert_eq!(got.header("allow"), Some("POST"));
    // Deeper and shallower paths are the prefix route's.
    assert_eq!(
        get(&gw.url("/items/7/reviews")).await.json()["uri"],
        "/catalog/7/reviews"
    );
    assert_eq!(get(&gw.url("/items")).await.json()["uri"], "/catalog");
    assert_eq!(get(&gw.url("/items/")).await.json()["uri"], "/catalog/");
    gw.shutdown().await;
}

/// The status of the first answer to `/flaky/x` that is not the open
/// circuit's 503, polled until a deadline: the breaker's `open_for`
/// (400 ms in the spec) has passed by then, measured from `opened` (a
/// little after the circuit opened; so no sooner than half of it).
async fn after_open(gw: &Running, opened: Instant) -> u16 {
    const OPEN_FOR: Duration = Duration::from_millis(400);
    loop {
        let status = get(&gw.url("/flaky/x")).await.status.as_u16();
        if status != 503 {
            assert!(
                opened.elapsed() >= OPEN_FOR / 2,
                "the circuit let a request through {:?} after opening",
                opened.elapsed()
            );
            return status;
        }
        assert!(
            opened.elapsed() < OPEN_FOR + Duration::from_secs(10),
            "the circuit is still open {:?} later",
            opened.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_circuit_opens_answers_503_without_connecting_and_recovers() {
    let (healthy, hits) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let addr = flaky_upstream(healthy.clone(), hits.clone()).await;
    let gw = gateway_with_flaky(format!("http://{addr}")).await;
    // Three 500s pass through and open the circuit.
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/flaky/x")).await.status, 500);
    }
    let opened = Instant::now();
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // While open: 503 JSON, and the upstream is not contacted.
    for _ in 0..5 {
        let got = get(&gw.url("/flaky/x")).await;
        assert_eq!(got.status, 503);
        assert_eq!(got.json()["error"], "Service temporarily unavailable");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // After open_for, one probe goes through; it fails, so it reopens.
    assert_eq!(after_open(&gw, opened).await, 500);
    let reopened = Instant::now();
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    assert_eq!(get(&gw.url("/flaky/x")).await.status, 503);
    // The upstream recovers; the next probe closes the circuit.
    healthy.store(true, Ordering::SeqCst);
    assert_eq!(after_open(&gw, reopened).await, 200);
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/flaky/x")).await.status, 200);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 8);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_upstream_opens_the_circuit_after_502s() {
    let gw = gateway().await;
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/flaky/x")).await.status, 502);
    }
    assert_eq!(get(&gw.url("/flaky/x")).await.status, 503);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_route_spec_without_policies_serves() {
    let only = echo_upstream("only").await;
    let gw = start::<tiny::Spec>(&[("ONLY_URL", format!("http://{only}"))]).await;
    let got = get(&gw.url("/only")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["uri"], "/upstream-only");
    assert_eq!(get(&gw.url("/other")).await.status, 404);
    gw.shutdown().await;
}
