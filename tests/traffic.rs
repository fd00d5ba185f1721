//! Traffic policy (contract §7) through the running gateway: rate limits,
//! CORS, body limits.

#[path = "support/aegis.rs"]
mod aegis;
#[path = "support/lib.rs"]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis::Spec as Aegis;
use support::{aegis_token, echo_upstream, raw, send, start, Running};

async fn aegis() -> Running {
    let mut env = support::aegis_env();
    for (service, url_var, _) in support::AEGIS_SERVICES {
        env.push((url_var, format!("http://{}", echo_upstream(service).await)));
    }
    start::<Aegis>(&env).await
}

fn bearer(user: &str) -> String {
    format!("Bearer {}", aegis_token(user, &["operator"]))
}

#[tokio::test(flavor = "multi_thread")]
async fn aegis_limits_each_user_to_a_burst_of_ten_then_429() {
    let gw = aegis().await;
    let alice = bearer("alice");
    for i in 0..10 {
        let got = send(
            "GET",
            &gw.url("/api/v1/rules"),
            &[("authorization", &alice)],
            "",
        )
        .await;
        assert_eq!(got.status, 200, "request {i}");
        // The quota is the burst (10), the window the time 10 tokens take
        // to come back at 100/min (6 s): `r` never exceeds `q`.
        assert_eq!(got.header("ratelimit-policy"), Some(r#""aegis";q=10;w=6"#));
        let want = format!(r#""aegis";r={};t={}"#, 9 - i, if i == 9 { 1 } else { 0 });
        assert_eq!(got.header("ratelimit"), Some(want.as_str()), "request {i}");
    }
    let got = send(
        "GET",
        &gw.url("/api/v1/rules"),
        &[("authorization", &alice)],
        "",
    )
    .await;
    assert_eq!(got.status, 429);
    assert_eq!(got.json()["error"], "Too many requests");
    assert_eq!(
        got.json()["request_id"],
        got.header("x-request-id").unwrap()
    );
    assert_eq!(got.header("retry-after"), Some("1"));
    assert_eq!(got.header("ratelimit-policy"), Some(r#""aegis";q=10;w=6"#));
    assert_eq!(got.header("ratelimit"), Some(r#""aegis";r=0;t=1"#));
    // Another user has a bucket of their own.
    let bob = send(
        "GET",
        &gw.url("/api/v1/rules"),
        &[("authorization", &bearer("bob"))],
        "",
    )
    .await;
    assert_eq!(bob.status, 200);
    // A token comes back after 0.6 s: polled, with a deadline, so that a
    // loaded machine only makes the test slower.
    let refused = std::time::Instant::now();
    loop {
        let again = send(
            "GET",
            &gw.url("/api/v1/rules"),
            &[("authorization", &alice)],
            "",
        )
        .await;
        if again.status == 200 {
            break;
        }
        assert_eq!(again.status, 429);
        assert!(
            refused.elapsed() < Duration::from_secs(10),
            "no token came back in {:?}",
            refused.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aegis_answers_cors_preflights_before_auth_and_owns_cors_headers() {
    let gw = aegis().await;
    // No token: the preflight is answered before authentication.
    let got = send(
        "OPTIONS",
        &gw.url("/api/v1/agents/a1/execute"),
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, content-type",
            ),
        ],
        "",
    )
    .await;
    assert_eq!(got.status, 204);
    assert_eq!(got.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        got.header("access-control-allow-methods"),
        Some("GET, POST, PUT, PATCH, DELETE, OPTIONS")
    );
    assert_eq!(
        got.header("access-control-allow-headers"),
        Some("Content-Type, Authorization")
    );
    assert_eq!(got.header("access-control-max-age"), Some("86400"));
    assert!(
        got.header("ratelimit").is_none(),
        "preflights are not rate limited"
    );
    // Even on a POST-only route, a preflight is not a 405.
    // Actual requests carry the gateway's CORS headers; the upstream's are dropped.
    let got = send(
        "GET",
        &gw.url("/api/v1/rules/leaky"),
        &[
            ("origin", "https://app.example"),
            ("authorization", &bearer("carol")),
        ],
        "",
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("access-control-allow-origin"), Some("*"));
    assert!(
        got.header("access-control-allow-credentials").is_none(),
        "the upstream's CORS headers are gone"
    );
    // The gateway's own errors carry them too, so a browser can read them.
    let got = send(
        "GET",
        &gw.url("/api/v1/rules"),
        &[("origin", "https://app.example")],
        "",
    )
    .await;
    assert_eq!(got.status, 401);
    assert_eq!(got.header("access-control-allow-origin"), Some("*"));
    // Without Origin there is nothing to add.
    let got = send("GET", &gw.url("/api/v1/entity-types"), &[], "").await;
    assert!(got.header("access-control-allow-origin").is_none());
    gw.shutdown().await;
}

mod edge_cases {
    gateway_macros::spec!("tests/specs/edge_cases.yaml");
}

async fn edge() -> Running {
    edge_with_bouncy("http://127.0.0.1:9".into()).await
}

async fn edge_with_bouncy(bouncy: String) -> Running {
    let reader = echo_upstream("reader").await;
    let writer = echo_upstream("writer").await;
    start::<edge_cases::Spec>(&[
        ("READER_URL", format!("http://{reader}")),
        ("WRITER_URL", format!("http://{writer}")),
        ("FLAKY_URL", "http://127.0.0.1:9".into()),
        ("BOUNCY_URL", bouncy),
    ])
    .await
}

/// An upstream that answers with the scripted (status, delay) pairs in
/// order, then 200s; it counts every request it sees.
async fn scripted_upstream(script: Vec<(u16, u64)>) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (script, counter) = (script.clone(), counter.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let (status, delay) = script.lock().unwrap().pop_front().unwrap_or((200, 0));
                    async move {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        let mut r = http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from("done"),
                        ));
                        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
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
    (addr, hits)
}

#[tokio::test(flavor = "multi_thread")]
async fn exact_origins_with_credentials_and_refused_origins() {
    let gw = edge().await;
    let preflight = |origin: &'static str| {
        let url = gw.url("/cors-exact/x");
        async move {
            send(
                "OPTIONS",
                &url,
                &[("origin", origin), ("access-control-request-method", "PUT")],
                "",
            )
            .await
        }
    };
    let ok = preflight("https://app.example").await;
    assert_eq!(ok.status, 204);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(ok.header("access-control-allow-headers"), Some("X-Custom"));
    assert_eq!(ok.header("access-control-max-age"), Some("600"));
    assert_eq!(ok.header("vary"), Some("Origin"));
    let refused = preflight("https://evil.example").await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"], "Origin not allowed");
    assert!(refused.header("access-control-allow-origin").is_none());
    // A disallowed origin's actual request goes through without CORS headers.
    let got = send(
        "GET",
        &gw.url("/cors-exact/x"),
        &[("origin", "https://evil.example")],
        "",
    )
    .await;
    assert_eq!(got.status, 200);
    assert!(got.header("access-control-allow-origin").is_none());
    let got = send(
        "GET",
        &gw.url("/cors-exact/x"),
        &[("origin", "https://app.example")],
        "",
    )
    .await;
    assert_eq!(
        got.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        got.header("access-control-expose-headers"),
        Some("X-Request-Id")
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_limit_are_413_and_never_complete_upstream() {
    let gw = edge().await;
    assert_eq!(
        send("POST", &gw.url("/small/x"), &[], &"a".repeat(1024))
            .await
            .status,
        200
    );
    // A declared length over the limit: refused before the upstream.
    let got = send("POST", &gw.url("/small/x"), &[], &"a".repeat(1025)).await;
    assert_eq!(got.status, 413);
    assert_eq!(got.json()["error"], "Request body too large");
    // A chunked body that grows past the limit.
    let mut req = String::from("POST /small/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    for _ in 0..4 {
        req.push_str("200\r\n");
        req.push_str(&"b".repeat(512));
        req.push_str("\r\n");
    }
    req.push_str("0\r\n\r\n");
    let resp = raw(gw.addr, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ip_keyed_limit_applies_to_anonymous_clients() {
    let gw = edge().await;
    assert_eq!(
        send("GET", &gw.url("/limited-ip/x"), &[], "").await.status,
        200
    );
    assert_eq!(
        send("GET", &gw.url("/limited-ip/x"), &[], "").await.status,
        200
    );
    let got = send("GET", &gw.url("/limited-ip/x"), &[], "").await;
    assert_eq!(got.status, 429);
    assert_eq!(
        got.header("ratelimit-policy"),
        Some(r#""limited-ip";q=2;w=1"#)
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn canary_is_sticky_per_consumer_and_can_be_forced() {
    let gw = edge().await;
    let side = |force: Option<&'static str>| {
        let url = gw.url("/canary/x");
        async move {
            let headers: Vec<(&str, &str)> = force.map(|f| ("x-canary", f)).into_iter().collect();
            send("GET", &url, &headers, "").await.json()
        }
    };
    let forced = side(Some("always")).await;
    assert_eq!(
        (forced["service"].as_str(), forced["uri"].as_str()),
        (Some("writer"), Some("/c/x"))
    );
    assert_eq!(side(Some("never")).await["service"], "reader");
    // One consumer (this client address) always lands on the same side.
    let first = side(None).await["service"].clone();
    for _ in 0..20 {
        assert_eq!(side(None).await["service"], first);
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn canary_force_values_are_the_specs_own() {
    // Regression (issue 14, point 17): only `always` / `never` forced a side.
    let gw = edge().await;
    let side = |force: Option<&'static str>| {
        let url = gw.url("/release/x");
        async move {
            let headers: Vec<(&str, &str)> = force.map(|f| ("x-release", f)).into_iter().collect();
            send("GET", &url, &headers, "").await.json()["service"].clone()
        }
    };
    for _ in 0..3 {
        assert_eq!(side(Some("canary")).await, "writer");
        assert_eq!(side(Some("stable")).await, "reader");
    }
    // Any other value, the defaults and other spellings included, is
    // ignored: the request takes this consumer's sticky side.
    let sticky = side(None).await;
    for other in [
        "always",
        "never",
        "Canary",
        "STABLE",
        "canary-1",
        "canary,stable",
    ] {
        assert_eq!(side(Some(other)).await, sticky, "{other:?}");
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_requests_are_retried_on_configured_statuses() {
    let (addr, hits) = scripted_upstream(vec![(503, 0), (500, 0)]).await;
    let gw = edge_with_bouncy(format!("http://{addr}")).await;
    let got = send("GET", &gw.url("/retry/x"), &[], "").await;
    assert_eq!(got.status, 200, "third attempt succeeds");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn attempts_are_capped_and_the_last_answer_is_returned() {
    let (addr, hits) = scripted_upstream(vec![(503, 0); 5]).await;
    let gw = edge_with_bouncy(format!("http://{addr}")).await;
    assert_eq!(send("GET", &gw.url("/retry/x"), &[], "").await.status, 503);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn non_idempotent_and_unlisted_statuses_are_not_retried() {
    let (addr, hits) = scripted_upstream(vec![(503, 0), (502, 0)]).await;
    let gw = edge_with_bouncy(format!("http://{addr}")).await;
    assert_eq!(
        send("POST", &gw.url("/retry/x"), &[], "{}").await.status,
        503
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1, "POST is not retried");
    assert_eq!(send("GET", &gw.url("/retry/x"), &[], "").await.status, 502);
    assert_eq!(hits.load(Ordering::SeqCst), 2, "502 is not in the list");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_per_try_timeout_is_retried_within_the_whole_request_timeout() {
    let (addr, hits) = scripted_upstream(vec![(200, 1000)]).await;
    let gw = edge_with_bouncy(format!("http://{addr}")).await;
    let started = std::time::Instant::now();
    let got = send("GET", &gw.url("/retry/x"), &[], "").await;
    assert_eq!(got.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_errors_are_retried_then_502() {
    let gw = edge().await;
    let got = send("GET", &gw.url("/retry/x"), &[], "").await;
    assert_eq!(got.status, 502);
    gw.shutdown().await;
}
