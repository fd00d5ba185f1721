//! Regressions from reviewing the spine against the contract: framing,
//! disguised headers, Via, bogus upstream answers, disconnects.

#[path = "support/aegis.rs"]
mod aegis;
#[path = "support/lib.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis::Spec as Aegis;
use gateway::log::AccessSink;
use support::{echo_upstream, raw, send, start_shared, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Lines = Arc<Mutex<Vec<String>>>;

/// The AEGIS spec with the knowledge-graph service at `kg` (public
/// routes: /api/v1/entity-types*).
async fn aegis_with(kg: String) -> (Running, Lines) {
    let lines = Lines::default();
    let mut env = support::aegis_env();
    env.push(("KNOWLEDGE_GRAPH_URL", kg));
    let (gw, _) = start_shared::<Aegis>(&env, AccessSink::Memory(lines.clone())).await;
    (gw, lines)
}

async fn aegis() -> (Running, Lines) {
    aegis_with(format!("http://{}", echo_upstream("knowledge_graph").await)).await
}

fn status_of(raw: &str) -> u16 {
    raw.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn underscore_spellings_of_owned_headers_never_reach_the_upstream() {
    let (gw, _) = aegis().await;
    let got = send(
        "GET",
        &gw.url("/api/v1/entity-types/x"),
        &[
            ("x-user_id", "admin"),
            ("x_tenant_id", "t1"),
            ("x-user_roles", "admin"),
            ("x-forwarded_for", "9.9.9.9"),
            ("x-request_id", "r"),
            ("x-service_token", "s"),
            ("x-http-method-override", "DELETE"),
            ("x-original-url", "/api/v1/admin"),
            ("x-real-ip", "6.6.6.6"),
            ("x_custom_header", "kept"),
        ],
        "",
    )
    .await;
    assert_eq!(got.status, 200);
    let h = got.json()["headers"].clone();
    for gone in [
        "x-user_id",
        "x_tenant_id",
        "x-user_roles",
        "x-forwarded_for",
        "x-request_id",
        "x-service_token",
        "x-http-method-override",
        "x-original-url",
        "x-real-ip",
    ] {
        assert!(h.get(gone).is_none(), "{gone} reached the upstream: {h}");
    }
    assert_eq!(h["x_custom_header"], "kept", "other underscore names pass");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_via_entry_is_kept_and_ours_appended() {
    let (gw, _) = aegis().await;
    let req = "GET /api/v1/entity-types/x HTTP/1.1\r\nHost: gw\r\nVia: 1.0 a\r\nVia: 1.1 b\r\nConnection: close\r\n\r\n";
    let resp = raw(gw.addr, req.as_bytes()).await;
    assert!(
        resp.contains(r#""via":"1.0 a, 1.1 b, 1.1 aegis-gateway""#),
        "{resp}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn framing_problems_are_client_errors() {
    let (gw, lines) = aegis().await;
    let cases: [(&str, u16); 3] = [
        // Broken chunked framing: the client's fault, not the upstream's.
        (
            "POST /api/v1/entity-types/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nchunk\r\nZZ\r\n",
            400,
        ),
        // A transfer coding the gateway does not decode.
        (
            "POST /api/v1/entity-types/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            501,
        ),
        // Two Host headers (RFC 9112 §3.2).
        (
            "GET /api/v1/entity-types/x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
            400,
        ),
    ];
    for (req, want) in cases {
        let resp = raw(gw.addr, req.as_bytes()).await;
        assert_eq!(status_of(&resp), want, "{resp}");
        assert!(
            resp.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{resp}"
        );
    }
    gw.shutdown().await;
    let lines = lines.lock().unwrap();
    assert!(
        lines.iter().all(|l| !l.contains("Bad gateway")),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn absolute_form_targets_name_the_forwarded_host() {
    let (gw, _) = aegis().await;
    let req = "GET http://b.example/api/v1/entity-types/x HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n";
    let resp = raw(gw.addr, req.as_bytes()).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(resp.contains(r#""x-forwarded-host":"b.example""#), "{resp}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_trace_drops_the_old_tracestate() {
    let (gw, _) = aegis().await;
    let got = send(
        "GET",
        &gw.url("/api/v1/entity-types/x"),
        &[("traceparent", "garbage"), ("tracestate", "vendor=1")],
        "",
    )
    .await;
    assert!(got.json()["headers"].get("tracestate").is_none());
    let kept = send(
        "GET",
        &gw.url("/api/v1/entity-types/x"),
        &[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "vendor=1"),
        ],
        "",
    )
    .await;
    assert_eq!(kept.json()["headers"]["tracestate"], "vendor=1");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsolicited_101_from_the_upstream_is_502() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            });
        }
    });
    let (gw, _) = aegis_with(format!("http://{addr}")).await;
    let got = send("GET", &gw.url("/api/v1/entity-types/x"), &[], "").await;
    assert_eq!(got.status, 502);
    assert_eq!(got.json()["error"], "Bad gateway");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_early_is_still_logged() {
    let (gw, lines) = aegis().await;
    let url = gw.url("/api/v1/entity-types/slow");
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        send("GET", &url, &[("x-correlation-id", "left-early")], ""),
    )
    .await;
    assert!(gave_up.is_err(), "the upstream takes 3 s");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let line = lines
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains("left-early"))
        .cloned()
        .expect("an access-log line for the abandoned request");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["status"], 499);
    assert_eq!(v["route"], "api_v1_entity_types");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn authentication_runs_before_the_body_is_read() {
    // knowledge_graph is signed with HMAC v2, so its routes read the body;
    // an unauthenticated client must still get 401 first, not 413.
    let (gw, _) = aegis().await;
    let req =
        "POST /api/v1/graph/entities/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 2097152\r\n\r\n";
    let resp = raw(gw.addr, req.as_bytes()).await;
    assert_eq!(status_of(&resp), 401, "{resp}");
    gw.shutdown().await;
}

mod client_headers {
    gateway_macros::spec!("tests/specs/client_headers.yaml");
}

/// The headers upstream frameworks commonly trust for the client's
/// address or user (issue 13 §4), as a client would spell them.
const CLIENT_CLAIMED: [&str; 13] = [
    "True-Client-IP",
    "X-Client-IP",
    "CF-Connecting-IP",
    "Client-IP",
    "X-Cluster-Client-IP",
    "X-Original-Forwarded-For",
    "X-Envoy-External-Address",
    "Remote-User",
    "X-Remote-User",
    "X-Authenticated-User",
    "X-Auth-Request-User",
    "X-Consumer-Id",
    "X-Original-Host",
];

/// Issue 13 §4: client-claimed address and user headers are stripped by
/// default; a service that lists some in `allow_client_headers` receives
/// exactly those (its underscore spellings still not), and the allow-list
/// of one service never opens them for another.
#[tokio::test(flavor = "multi_thread")]
async fn client_claimed_headers_are_stripped_unless_the_service_allows_them() {
    let (trusting, plain) = (
        echo_upstream("trusting").await,
        echo_upstream("plain").await,
    );
    let gw = support::start::<client_headers::Spec>(&[
        ("CH_TRUSTING_URL", format!("http://{trusting}")),
        ("CH_PLAIN_URL", format!("http://{plain}")),
    ])
    .await;
    let mut sent: Vec<(&str, &str)> = CLIENT_CLAIMED.iter().map(|h| (*h, "6.6.6.6")).collect();
    sent.push(("True_Client_IP", "7.7.7.7"));
    sent.push(("x-custom", "kept"));
    for (path, allowed) in [
        ("/plain/x", &[][..]),
        ("/trusting/x", &["true-client-ip", "x-remote-user"][..]),
    ] {
        let got = send("GET", &gw.url(path), &sent, "").await;
        assert_eq!(got.status, 200, "{path}");
        let h = got.json()["headers"].clone();
        for name in CLIENT_CLAIMED {
            let lower = name.to_ascii_lowercase();
            if allowed.contains(&lower.as_str()) {
                assert_eq!(h[&lower], "6.6.6.6", "{path}: {name} allowed: {h}");
            } else {
                assert!(h.get(&lower).is_none(), "{path}: {name} reached it: {h}");
            }
        }
        assert!(h.get("true_client_ip").is_none(), "{path}: {h}");
        assert_eq!(h["x-custom"], "kept", "{path}");
    }
    gw.shutdown().await;
}

/// The spec compiler's list of names `allow_client_headers` accepts is
/// the runtime's list of names stripped by default, in the same order.
#[test]
fn the_compiler_and_the_runtime_agree_on_client_claimed_headers() {
    let compiler: Vec<String> = gateway_codegen::validate::values::CLIENT_HEADERS
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let claimed = gateway::headers::CLIENT_CLAIMED;
    let runtime: Vec<&str> = claimed.iter().map(http::HeaderName::as_str).collect();
    assert_eq!(compiler, runtime);
    let ours: Vec<String> = CLIENT_CLAIMED
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    assert_eq!(ours, runtime);
}

/// Issue 13 §4: CGI/WSGI-style frameworks read `_` as `-`, so
/// `Content_Length` next to the real `Content-Length` (or
/// `Transfer_Encoding`, or `X_User_Id`) would give the upstream two
/// readings of one request. Every such spelling of a framing, hop-by-hop,
/// client-claimed or gateway-owned header is dropped.
#[tokio::test(flavor = "multi_thread")]
async fn underscore_spellings_of_framing_and_hop_by_hop_headers_are_stripped() {
    let (gw, _) = aegis().await;
    let req = "POST /api/v1/entity-types/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\
        Content_Length: 500\r\nTransfer_Encoding: chunked\r\nX_User_Id: admin\r\n\
        Keep_Alive: timeout=5\r\nProxy_Authorization: Basic eA==\r\nX_Client_IP: 6.6.6.6\r\n\
        X-Original_Host: evil.example\r\nX_Unrelated: kept\r\nConnection: close\r\n\r\nhello";
    let resp = raw(gw.addr, req.as_bytes()).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    let echo: serde_json::Value = serde_json::from_str(body).unwrap();
    let h = &echo["headers"];
    for gone in [
        "content_length",
        "transfer_encoding",
        "x_user_id",
        "keep_alive",
        "proxy_authorization",
        "x_client_ip",
        "x-original_host",
    ] {
        assert!(h.get(gone).is_none(), "{gone} reached the upstream: {h}");
    }
    assert_eq!(h["content-length"], "5");
    assert_eq!(h["x_unrelated"], "kept", "other underscore names pass");
    assert_eq!(echo["body"], "hello");
    gw.shutdown().await;
}
