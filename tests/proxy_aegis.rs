//! The AEGIS spec (`tests/specs/aegis.yaml`, the tests' copy of the
//! bundled `gateway.yaml`), black-box: a real listener on 127.0.0.1:0 in
//! front of one in-process upstream per service.

#[path = "support/aegis.rs"]
mod aegis;
#[path = "support/lib.rs"]
mod support;

use std::time::{Duration, Instant};

use aegis::{RouteId, Spec};
use gateway::spec::Spec as _;
use http_body_util::BodyExt;
use support::{admin_bearer, echo_upstream, raw, start, Running};

/// Every request of these tests carries a valid admin token; the identity
/// rules themselves are tested in `tests/auth_jwt.rs`.
async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> support::Got {
    let bearer = admin_bearer();
    let mut all = vec![("authorization", bearer.as_str())];
    all.extend(
        headers
            .iter()
            .filter(|(k, _)| *k != "authorization")
            .copied(),
    );
    support::send(method, url, &all, body).await
}

async fn get(url: &str) -> support::Got {
    send("GET", url, &[], "").await
}

const SERVICES: [(&str, &str); 7] = [
    ("orchestration", "ORCHESTRATION_URL"),
    ("knowledge_graph", "KNOWLEDGE_GRAPH_URL"),
    ("approval", "APPROVAL_URL"),
    ("ingestion", "INGESTION_URL"),
    ("compliance", "COMPLIANCE_URL"),
    ("flaring", "FLARING_URL"),
    ("auth", "AUTH_URL"),
];

async fn aegis() -> Running {
    let mut env = support::aegis_env();
    for (name, var) in SERVICES {
        let addr = echo_upstream(name).await;
        env.push((var, format!("http://{addr}")));
    }
    start::<Spec>(&env).await
}

/// (route, method, public path, service, upstream path and query)
#[rustfmt::skip]
const REWRITES: &[(RouteId, &str, &str, &str, &str)] = {
    use RouteId::*;
    &[
        (ApiV1Conversations, "GET", "/api/v1/conversations", "orchestration", "/conversations"),
        (ApiV1Conversations, "GET", "/api/v1/conversations/", "orchestration", "/conversations/"),
        (ApiV1Conversations, "GET", "/api/v1/conversations/c1/messages?limit=5&after=%2Fx", "orchestration", "/conversations/c1/messages?limit=5&after=%2Fx"),
        (ApiV1Conversations, "DELETE", "/api/v1/conversations/a%20b", "orchestration", "/conversations/a%20b"),
        (ApiV1AgentsIdExecute, "POST", "/api/v1/agents/a1/execute", "orchestration", "/execute"),
        (ApiV1AgentsIdStreamConvId, "GET", "/api/v1/agents/a1/stream/c%2B9", "orchestration", "/conversations/c%2B9/stream"),
        (ApiV1Approvals, "GET", "/api/v1/approvals", "approval", "/approvals"),
        (ApiV1Approvals, "PUT", "/api/v1/approvals/42/decision", "approval", "/approvals/42/decision"),
        (ApiV1GraphContextManagedId, "GET", "/api/v1/graph/context/managed/m1", "knowledge_graph", "/context/assemble/managed/m1"),
        (ApiV1GraphContextWellApi, "GET", "/api/v1/graph/context/42-001-00001?depth=2", "knowledge_graph", "/context/assemble/42-001-00001?depth=2"),
        (ApiV1GraphContextWellApi, "GET", "/api/v1/graph/context/managed", "knowledge_graph", "/context/assemble/managed"),
        (ApiV1GraphEntities, "GET", "/api/v1/graph/entities/e1", "knowledge_graph", "/entities/e1"),
        (ApiV1Impact, "GET", "/api/v1/impact/e1", "knowledge_graph", "/impact/e1"),
        (ApiV1Admin, "GET", "/api/v1/admin/users", "knowledge_graph", "/admin/users"),
        (ApiV1EntityTypes, "GET", "/api/v1/entity-types", "knowledge_graph", "/entity-types"),
        (ApiV1RelationshipTypes, "GET", "/api/v1/relationship-types/t1", "knowledge_graph", "/relationship-types/t1"),
        (ApiV1RelationshipRules, "GET", "/api/v1/relationship-rules", "knowledge_graph", "/relationship-rules"),
        (ApiV1DetectionRules, "PATCH", "/api/v1/detection-rules/r1", "knowledge_graph", "/event-detection-rules/r1"),
        (ApiV1Entities, "GET", "/api/v1/entities/x", "knowledge_graph", "/managed-entities/x"),
        (ApiV1IngestCsv, "POST", "/api/v1/ingest/csv", "ingestion", "/ingest/operator/csv"),
        (ApiV1Ingest, "POST", "/api/v1/ingest/json", "ingestion", "/ingest/json"),
        (ApiV1ComplianceSummary, "GET", "/api/v1/compliance/summary", "orchestration", "/compliance/summary"),
        (ApiV1ComplianceMatrix, "GET", "/api/v1/compliance/matrix", "orchestration", "/compliance/matrix"),
        (ApiV1ComplianceCharts, "GET", "/api/v1/compliance/charts/trend", "orchestration", "/compliance/charts/trend"),
        (ApiV1ComplianceAssess, "POST", "/api/v1/compliance/assess/w1", "orchestration", "/compliance/assess/w1"),
        (ApiV1Compliance, "GET", "/api/v1/compliance/reports/1", "compliance", "/compliance/reports/1"),
        (ApiV1Compliance, "GET", "/api/v1/compliance", "compliance", "/compliance"),
        (ApiV1Compliance, "GET", "/api/v1/compliance/summary/extra", "compliance", "/compliance/summary/extra"),
        (ApiV1Checklists, "GET", "/api/v1/checklists/1", "orchestration", "/checklists/1"),
        (ApiV1Rules, "GET", "/api/v1/rules", "orchestration", "/rules"),
        (ApiV1Workspaces, "GET", "/api/v1/workspaces/w/events", "orchestration", "/workspaces/w/events"),
        (ApiV1Events, "GET", "/api/v1/events?since=1", "flaring", "/events?since=1"),
        (ApiV1FlareEvents, "GET", "/api/v1/flare-events/1", "flaring", "/flare-events/1"),
        (ApiV1RepairObligations, "GET", "/api/v1/repair-obligations", "flaring", "/repair-obligations"),
        (ApiV1Authorizations, "GET", "/api/v1/authorizations/a", "flaring", "/authorizations/a"),
        (ApiV1Alerts, "GET", "/api/v1/alerts/a", "flaring", "/alerts/a"),
        (ApiV1Flaring, "GET", "/api/v1/flaring/legacy", "flaring", "/flaring/legacy"),
        (ApiV1AuthToken, "POST", "/api/v1/auth/token", "auth", "/auth/token"),
        (ApiV1Auth, "POST", "/api/v1/auth/refresh", "auth", "/auth/refresh"),
    ]
};

#[tokio::test(flavor = "multi_thread")]
async fn every_aegis_route_rewrites_to_its_upstream() {
    let gw = aegis().await;
    for (_, method, path, service, upstream) in REWRITES {
        let got = send(method, &gw.url(path), &[], "body").await;
        assert_eq!(got.status, 200, "{method} {path}: {:?}", got.body);
        let echo = got.json();
        assert_eq!(echo["service"], *service, "{method} {path}");
        assert_eq!(echo["uri"], *upstream, "{method} {path}");
        assert_eq!(echo["method"], *method, "{method} {path}");
        assert_eq!(echo["body"], "body", "{method} {path}");
    }
    // The table covers every route of the spec.
    for route in RouteId::ALL {
        assert!(
            REWRITES.iter().any(|(r, ..)| r == route),
            "no rewrite case for {}",
            Spec::route(*route).pattern
        );
    }
    gw.shutdown().await;
}

/// What `gateway routes` prints for the AEGIS spec (that the binary prints
/// its compiled table is `tests/binary.rs`'s concern).
#[test]
fn the_route_table_names_the_gateway_and_its_routes() {
    let table = Spec::ROUTE_TABLE;
    assert!(table.contains("/api/v1/agents/{id}/execute"), "{table}");
    assert!(
        table.starts_with("gateway `aegis-gateway` listening on 0.0.0.0:8000"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unmatched_paths_are_404_at_segment_boundaries() {
    let gw = aegis().await;
    for path in [
        "/api/v1/administrator",
        "/api/v1/conversationsX",
        "/api/v1/entitiesfoo",
        "/api/v2/conversations",
        "/",
        "/api/v1/agents/a1",
        "/api/v1/agents/a1/execute/more",
        "/api/v1/graph/context",
        "/health/extra",
    ] {
        let got = get(&gw.url(path)).await;
        assert_eq!(got.status, 404, "{path}");
        let body = got.json();
        assert_eq!(body["error"], "Not found");
        assert_eq!(body["request_id"], got.header("x-request-id").unwrap());
        assert_eq!(got.header("content-type"), Some("application/json"));
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_method_is_405_with_allow() {
    let gw = aegis().await;
    let got = get(&gw.url("/api/v1/agents/a1/execute")).await;
    assert_eq!(got.status, 405);
    assert_eq!(got.header("allow"), Some("POST"));
    assert_eq!(got.json()["error"], "Method not allowed");
    let got = send("DELETE", &gw.url("/api/v1/agents/a1/execute"), &[], "").await;
    assert_eq!(got.status, 405);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_is_answered_by_the_gateway() {
    let gw = aegis().await;
    let got = get(&gw.url("/health")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), serde_json::json!({"status": "ok"}));
    assert!(got.header("x-request-id").is_some());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_paths_are_400_and_never_forwarded() {
    let gw = aegis().await;
    for path in [
        "/api/v1/conversations/../admin",
        "/api/v1/conversations/./x",
        "/api/v1/conversations/%2e%2e/admin",
        "/api/v1/conversations/%2E%2e",
        "/api/v1/conversations/.%2E/x",
        "/api/v1/conversations/%2e",
        "/api/v1/conversations/a%2fb",
        "/api/v1/conversations/a%2Fb",
        "/api/v1/conversations/a%5cb",
        "/api/v1/conversations/a%00b",
        "/api/v1/conversations/a%0d%0ab",
        "/api/v1/conversations/a%zzb",
        "/api/v1/nothing/../x",
    ] {
        let got = get(&gw.url(path)).await;
        assert_eq!(got.status, 400, "{path}");
        assert!(
            got.json()["error"]
                .as_str()
                .unwrap()
                .starts_with("Invalid path"),
            "{path}"
        );
    }
    // What a client library would refuse to send.
    for target in ["/api/v1/conversations/a\\b", "*"] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let resp = raw(gw.addr, req.as_bytes()).await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{target}: {resp}");
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_owned_headers_are_stripped_and_gateway_headers_set() {
    let gw = aegis().await;
    let hostile = [
        ("x-internal-service-auth", "v2=deadbeef"),
        ("x-internal-timestamp", "1"),
        ("x-internal-nonce", "nonce-nonce-nonce"),
        ("x-service-name", "billing"),
        ("x-caller-service", "billing"),
        ("x-tenant-id", "other-tenant"),
        ("x-user-id", "admin"),
        ("x-user-roles", "admin"),
        ("x-request-id", "client-chosen"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-prefix", "/evil"),
        ("forwarded", "for=6.6.6.6"),
        ("connection", "x-drop-me"),
        ("x-drop-me", "1"),
        ("keep-alive", "timeout=5"),
        ("proxy-authorization", "Basic eA=="),
        ("x-service-token", "shared"),
        ("cookie", "session=1"),
        ("x-correlation-id", "corr-123:abc"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("x-custom", "kept"),
    ];
    let got = send("GET", &gw.url("/api/v1/rules"), &hostile, "").await;
    assert_eq!(got.status, 200);
    let echo = got.json();
    let h = &echo["headers"];
    for name in [
        "x-internal-service-auth",
        "x-internal-timestamp",
        "x-internal-nonce",
        "x-caller-service",
        "x-tenant-id",
        "forwarded",
        "connection",
        "x-drop-me",
        "keep-alive",
        "proxy-authorization",
        "x-service-token",
    ] {
        assert!(h.get(name).is_none(), "{name} reached the upstream: {h}");
    }
    // What the client claimed is replaced by the gateway's own identity:
    // its name, and for orchestration its service token, never the
    // client's bearer.
    assert_eq!(h["x-service-name"], "aegis-gateway");
    let token = h["authorization"]
        .as_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap();
    let claims = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token)
        .unwrap()
        .claims;
    assert_eq!(
        (claims["iss"].as_str(), claims["aud"].as_str()),
        (Some("aegis-gateway"), Some("orchestration"))
    );
    // The verified identity replaces what the client claimed.
    assert!(
        h["x-user-id"].as_str().unwrap().starts_with("admin-"),
        "{h}"
    );
    assert_eq!(h["x-user-roles"], "admin,power_user,operator,reviewer");
    assert!(h.get("x-forwarded-prefix").is_none());
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], gw.addr.to_string());
    assert_eq!(h["via"], "1.1 aegis-gateway");
    assert_eq!(h["cookie"], "session=1");
    assert_eq!(h["x-custom"], "kept");
    assert_eq!(h["x-correlation-id"], "corr-123:abc");
    let upstream_authority = echo_host(&echo);
    assert_eq!(h["host"], upstream_authority);
    let request_id = got.header("x-request-id").unwrap();
    assert_ne!(request_id, "client-chosen");
    assert_eq!(h["x-request-id"], request_id);
    assert_eq!(got.header("x-correlation-id"), Some("corr-123:abc"));
    let tp = h["traceparent"].as_str().unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{tp}"
    );
    assert!(!tp.contains("00f067aa0ba902b7"), "new span id: {tp}");
    assert!(tp.ends_with("-01"));
    gw.shutdown().await;
}

/// The authority the gateway connected to, as the echo saw it in `uri`
/// (origin-form) is not available, so read it from the Host header and
/// check it is a loopback address with a port.
fn echo_host(echo: &serde_json::Value) -> String {
    let host = echo["headers"]["host"].as_str().unwrap().to_owned();
    assert!(host.starts_with("127.0.0.1:"), "{host}");
    host
}

#[tokio::test(flavor = "multi_thread")]
async fn fresh_ids_when_the_client_sends_none_or_invalid_ones() {
    let gw = aegis().await;
    let got = send(
        "GET",
        &gw.url("/api/v1/rules"),
        &[
            ("x-correlation-id", "bad value with spaces"),
            ("traceparent", "garbage"),
        ],
        "",
    )
    .await;
    let h = &got.json()["headers"];
    let rid = got.header("x-request-id").unwrap();
    assert_eq!(got.header("x-correlation-id"), Some(rid));
    assert_eq!(h["x-correlation-id"], rid);
    let tp = h["traceparent"].as_str().unwrap();
    assert_eq!(tp.len(), 55);
    assert!(tp.starts_with("00-"));
    let other = get(&gw.url("/api/v1/rules")).await;
    assert_ne!(
        other.header("x-request-id"),
        Some(rid),
        "ids are per request"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_response_headers_are_filtered() {
    let gw = aegis().await;
    let got = get(&gw.url("/api/v1/rules/leaky")).await;
    assert_eq!(got.status, 200);
    for gone in ["server", "x-powered-by", "x-upstream-hop", "keep-alive"] {
        assert!(got.header(gone).is_none(), "{gone} reached the client");
    }
    assert_eq!(got.header("x-kept"), Some("yes"));
    assert_eq!(got.header("via"), Some("1.1 aegis-gateway"));
    assert!(got.header("x-request-id").is_some());
    assert!(got.header("x-correlation-id").is_some());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_sent_events_stream_event_by_event() {
    let gw = aegis().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let req = http::Request::get(gw.url("/api/v1/workspaces/w1/sse"))
        .header("authorization", admin_bearer())
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let started = Instant::now();
    let mut arrivals = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            arrivals.push((
                started.elapsed(),
                String::from_utf8_lossy(&data).into_owned(),
            ));
        }
    }
    let text: String = arrivals.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(text, "data: event 0\n\ndata: event 1\n\ndata: event 2\n\n");
    // The first event arrived long before the stream ended: not buffered.
    let first = arrivals.first().unwrap().0;
    let last = arrivals.last().unwrap().0;
    assert!(last - first >= Duration::from_millis(450), "{arrivals:?}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_upstream_is_502() {
    let mut env = support::aegis_env();
    for (name, var) in SERVICES {
        let addr = echo_upstream(name).await;
        env.push((var, format!("http://{addr}")));
    }
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    env.retain(|(v, _)| *v != "AUTH_URL");
    env.push(("AUTH_URL", format!("http://{closed}")));
    let gw = start::<Spec>(&env).await;
    let got = send("POST", &gw.url("/api/v1/auth/token"), &[], "{}").await;
    assert_eq!(got.status, 502);
    assert_eq!(got.json()["error"], "Bad gateway");
    assert_eq!(
        got.json()["request_id"],
        got.header("x-request-id").unwrap()
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_access_log_line_per_request_with_the_request_id() {
    let mut env = support::aegis_env();
    for (name, var) in SERVICES {
        let addr = echo_upstream(name).await;
        env.push((var, format!("http://{addr}")));
    }
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let gw = support::start_with_log::<Spec>(&env, gateway::log::AccessSink::Memory(lines.clone()))
        .await;
    let ok = send(
        "POST",
        &gw.url("/api/v1/agents/a1/execute?secret=1"),
        &[("x-correlation-id", "c-1")],
        "",
    )
    .await;
    let missing = get(&gw.url("/nope")).await;
    gw.shutdown().await;
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["request_id"], ok.header("x-request-id").unwrap());
    assert_eq!(first["correlation_id"], "c-1");
    assert_eq!(first["method"], "POST");
    assert_eq!(
        first["path"], "/api/v1/agents/a1/execute",
        "no query in logs"
    );
    assert_eq!(first["route"], "api_v1_agents_id_execute");
    assert_eq!(first["upstream"], "orchestration");
    assert_eq!(first["status"], 200);
    assert_eq!(first["client_ip"], "127.0.0.1");
    assert!(first["duration_ms"].as_f64().unwrap() >= first["upstream_ms"].as_f64().unwrap());
    for key in ["caller", "tenant", "timestamp", "level", "target"] {
        assert!(first.get(key).is_some(), "{key} missing");
    }
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(
        second["request_id"],
        missing.header("x-request-id").unwrap()
    );
    assert_eq!(second["status"], 404);
    assert_eq!(second["route"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_bodies_stream_to_the_upstream() {
    let gw = aegis().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<
        Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
    >(2);
    let body = http_body_util::StreamBody::new(futures_util::stream::poll_fn({
        let mut rx = rx;
        move |cx| rx.poll_recv(cx)
    }));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::StreamBody<_>>();
    let req = http::Request::post(gw.url("/api/v1/ingest/upload/first-chunk"))
        .header("authorization", admin_bearer())
        .body(body)
        .unwrap();
    tx.send(Ok(hyper::body::Frame::data(bytes::Bytes::from_static(
        b"first part",
    ))))
    .await
    .unwrap();
    // The response arrives while the client still holds the rest of the body.
    let resp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .expect("the upstream saw the first chunk before the body ended")
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&got[..], b"first part");
    drop(tx);
    gw.shutdown().await;
}
