//! Outbound identity (contract §6): every upstream request carries a proof
//! of the gateway's identity that the upstream checks with the public
//! verifier (`gateway::service::ServiceVerifier`).

#[path = "support/aegis.rs"]
mod aegis;
#[path = "support/lib.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway::config::StartupEnv;
use gateway::log::AccessSink;
use gateway::server::Gateway;
use gateway::service::{Proof, ServiceVerifier};
use serde_json::json;
use support::{
    now, send, sign_claims, start_shared, verifier, verifying_upstream, Log, Received,
    AEGIS_SERVICES,
};

mod outbound {
    gateway_macros::spec!("tests/specs/outbound.yaml");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_aegis_upstream_verifies_the_gateway_on_every_route() {
    let mut env = support::aegis_env();
    let mut logs = Vec::new();
    for (service, url_var, _) in AEGIS_SERVICES {
        let secret = support::service_secret(service);
        let (addr, log) = verifying_upstream(verifier(service, "aegis-gateway", &[&secret])).await;
        env.push((url_var, format!("http://{addr}")));
        logs.push(log);
    }
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (gw, _) = start_shared::<aegis::Spec>(&env, AccessSink::Memory(lines.clone())).await;
    let bearer = support::admin_bearer();
    let paths = [
        ("POST", "/api/v1/conversations/c1?x=1", "Jwt"),
        ("POST", "/api/v1/agents/a1/execute", "Jwt"),
        ("GET", "/api/v1/approvals/9", "HmacV2"),
        ("PUT", "/api/v1/graph/entities/e1", "HmacV2"),
        ("GET", "/api/v1/admin/users", "HmacV2"),
        ("GET", "/api/v1/entity-types", "HmacV2"),
        ("POST", "/api/v1/ingest/csv", "Jwt"),
        ("GET", "/api/v1/compliance/reports", "HmacV2"),
        ("GET", "/api/v1/alerts/a1", "HmacV2"),
        ("POST", "/api/v1/auth/token", "HmacV2"),
    ];
    for (method, path, proof) in paths {
        let got = send(
            method,
            &gw.url(path),
            &[("authorization", &bearer)],
            r#"{"k":1}"#,
        )
        .await;
        assert_eq!(got.status, 200, "{method} {path}");
        let echo = got.json();
        assert_eq!(echo["verdict"]["ok"], true, "{method} {path}: {echo}");
        assert_eq!(echo["verdict"]["caller"], "aegis-gateway");
        assert_eq!(echo["verdict"]["proof"], proof, "{path}");
        let h = &echo["headers"];
        assert_eq!(h["x-service-name"], "aegis-gateway");
        assert!(h["x-request-id"].is_string() && h["x-correlation-id"].is_string());
        assert!(h["traceparent"].is_string() && h["via"] == "1.1 aegis-gateway");
    }
    // No credential, signature or token in any log line.
    let all = lines.lock().unwrap().join("\n");
    for (service, _, _) in AEGIS_SERVICES {
        assert!(!all.contains(&support::service_secret(service)));
    }
    assert!(!all.contains("v2=") && !all.contains("Bearer"));
    gw.shutdown().await;
}

struct Outbound {
    gw: support::Running,
    handle: Arc<Gateway<outbound::Spec>>,
    logs: [Log; 4],
    lines: Arc<Mutex<Vec<String>>>,
}

const V2_SECRET: &str = "v2-upstream-credential";
const V1_SECRET: &str = "v1-upstream-credential";
const TOKEN_SECRET: &str = "token-upstream-credential";
const USER_SECRET: &str = "outbound-users-jwt-secret";

async fn outbound_gateway(extra: Vec<(&'static str, String)>, v2_secrets: &[&str]) -> Outbound {
    let (v2, l2) = verifying_upstream(verifier("signed_v2", "outbound-gateway", v2_secrets)).await;
    let (v1, l1) =
        verifying_upstream(verifier("signed_v1", "outbound-gateway", &[V1_SECRET])).await;
    let (tok, lt) =
        verifying_upstream(verifier("tokened", "outbound-gateway", &[TOKEN_SECRET])).await;
    let (none, ln) = verifying_upstream(verifier("unsigned", "outbound-gateway", &["x"])).await;
    let mut env = vec![
        ("OUT_JWT_SECRET", USER_SECRET.to_owned()),
        ("OUT_V2_URL", format!("http://{v2}")),
        ("OUT_V1_URL", format!("http://{v1}")),
        ("OUT_TOKEN_URL", format!("http://{tok}")),
        ("OUT_NONE_URL", format!("http://{none}")),
        ("OUT_V1_SECRET", V1_SECRET.to_owned()),
        ("OUT_TOKEN_SECRET", TOKEN_SECRET.to_owned()),
    ];
    env.extend(extra);
    if !env.iter().any(|(k, _)| k.starts_with("OUT_V2_SECRET")) {
        env.push(("OUT_V2_SECRET", V2_SECRET.to_owned()));
    }
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (gw, handle) =
        start_shared::<outbound::Spec>(&env, AccessSink::Memory(lines.clone())).await;
    Outbound {
        gw,
        handle,
        logs: [l2, l1, lt, ln],
        lines,
    }
}

fn user(tenant: &str) -> String {
    let t = sign_claims(
        &json!({"sub": "u-7", "roles": ["r"], "org": tenant, "exp": now() + 600}),
        USER_SECRET,
    );
    format!("Bearer {t}")
}

#[tokio::test(flavor = "multi_thread")]
async fn each_identity_kind_is_verifiable_and_carries_the_verified_tenant() {
    let o = outbound_gateway(vec![], &[V2_SECRET]).await;
    let auth = user("acme");
    let call = |path: &'static str| {
        let (url, auth) = (o.gw.url(path), auth.clone());
        async move {
            send(
                "POST",
                &url,
                &[
                    ("authorization", &auth),
                    ("x-tenant-id", "forged"),
                    ("x-service-name", "forged"),
                ],
                "payload",
            )
            .await
            .json()
        }
    };
    let v2 = call("/v2/orders?draft=1").await;
    assert_eq!(
        v2["verdict"],
        json!({"ok": true, "caller": "outbound-gateway", "proof": "HmacV2", "tenant": "acme"})
    );
    assert_eq!(
        v2["uri"], "/in/orders?draft=1",
        "signed over the rewritten path and query"
    );
    let v1 = call("/v1/orders").await;
    assert_eq!(v1["verdict"]["proof"], "HmacV1");
    assert_eq!(v1["verdict"]["ok"], true);
    let tok = call("/tok/orders").await;
    assert_eq!(tok["verdict"]["proof"], "Jwt");
    assert_eq!(tok["verdict"]["ok"], true);
    let none = call("/none/orders").await;
    assert_eq!(
        none["verdict"],
        json!({"ok": false, "reason": "missing_proof"})
    );
    // The gateway's name travels only with a proof of it (contract §3):
    // an unsigned upstream gets no `X-Service-Name`, whatever the client sent.
    assert!(
        none["headers"].get("x-service-name").is_none(),
        "an unsigned upstream got X-Service-Name: {}",
        none["headers"]
    );
    for echo in [&v2, &v1, &tok] {
        assert_eq!(echo["headers"]["x-service-name"], "outbound-gateway");
        assert_eq!(
            echo["headers"]["x-tenant-id"], "acme",
            "the verified tenant, never the client's"
        );
        assert_eq!(echo["headers"]["x-user-id"], "u-7");
    }
    o.gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tampering_in_transit_is_detected_and_every_request_is_signed_anew() {
    let o = outbound_gateway(vec![], &[V2_SECRET]).await;
    let auth = user("acme");
    for _ in 0..2 {
        let got = send(
            "PUT",
            &o.gw.url("/v2/item/1?a=b"),
            &[("authorization", &auth)],
            "body-1",
        )
        .await;
        assert_eq!(got.json()["verdict"]["ok"], true);
    }
    let seen = o.logs[0].lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let nonce = |r: &Received| r.parts.headers["x-internal-nonce"].clone();
    assert_ne!(
        nonce(&seen[0]),
        nonce(&seen[1]),
        "a fresh nonce per request"
    );
    let ts: u64 = seen[0].parts.headers["x-internal-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // A fresh verifier (no replay memory) accepts the untouched request...
    let check = |parts: &http::request::Parts, body: &[u8]| {
        ServiceVerifier::new(
            "signed_v2",
            "outbound-gateway",
            vec![V2_SECRET.as_bytes().to_vec()],
            Duration::from_secs(60),
        )
        .verify_at(parts, body, ts)
    };
    assert!(check(&seen[0].parts, &seen[0].body).is_ok());
    // ...and refuses it after any change in transit.
    let mut path = seen[0].parts.clone();
    path.uri = "/in/item/2?a=b".parse().unwrap();
    let mut query = seen[0].parts.clone();
    query.uri = "/in/item/1?a=c".parse().unwrap();
    let mut method = seen[0].parts.clone();
    method.method = http::Method::DELETE;
    let mut tenant = seen[0].parts.clone();
    tenant
        .headers
        .insert("x-tenant-id", "other".parse().unwrap());
    for (what, parts, body) in [
        ("path", &path, &seen[0].body[..]),
        ("query", &query, &seen[0].body[..]),
        ("method", &method, &seen[0].body[..]),
        ("tenant", &tenant, &seen[0].body[..]),
        ("body", &seen[0].parts, &b"body-2"[..]),
    ] {
        assert_eq!(
            check(parts, body).unwrap_err().reason,
            "bad_signature",
            "{what}"
        );
    }
    // A verifier that only accepts v1 refuses these v2 proofs.
    let v1_only = ServiceVerifier::new(
        "signed_v2",
        "outbound-gateway",
        vec![V2_SECRET.as_bytes().to_vec()],
        Duration::from_secs(60),
    )
    .with_proofs(&[Proof::HmacV1]);
    assert_eq!(
        v1_only
            .verify_at(&seen[0].parts, &seen[0].body, ts)
            .unwrap_err()
            .reason,
        "proof_not_accepted"
    );
    // The second request was signed anew and verifies on its own.
    assert_eq!(
        check(&seen[1].parts, &seen[1].body).map(|v| v.proof),
        Ok(Proof::HmacV2),
    );
    o.gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_token_is_reused_across_requests() {
    let o = outbound_gateway(vec![], &[V2_SECRET]).await;
    let auth = user("acme");
    for _ in 0..3 {
        send("GET", &o.gw.url("/tok/x"), &[("authorization", &auth)], "").await;
    }
    let seen = o.logs[2].lock().unwrap().clone();
    let tokens: Vec<_> = seen
        .iter()
        .map(|r| r.parts.headers["authorization"].clone())
        .collect();
    assert_eq!(tokens.len(), 3);
    assert!(
        tokens.windows(2).all(|w| w[0] == w[1]),
        "minted once, not per request"
    );
    o.gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_from_files_rotate_on_reload() {
    let dir = std::env::temp_dir().join(format!("gateway-rotation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("v2-secret");
    std::fs::write(&file, "old-credential\n").unwrap();
    // The upstream accepts both during the overlap.
    let o = outbound_gateway(
        vec![("OUT_V2_SECRET_FILE", file.display().to_string())],
        &["old-credential", "new-credential"],
    )
    .await;
    let auth = user("acme");
    let get = || {
        let (url, auth) = (o.gw.url("/v2/x"), auth.clone());
        async move { send("GET", &url, &[("authorization", &auth)], "").await }
    };
    assert_eq!(get().await.json()["verdict"]["ok"], true);
    std::fs::write(&file, "new-credential").unwrap();
    o.handle.reload().unwrap();
    assert_eq!(get().await.json()["verdict"]["ok"], true);
    let seen = o.logs[0].lock().unwrap().clone();
    let only = |secret: &str, r: &Received| {
        let ts: u64 = r.parts.headers["x-internal-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        ServiceVerifier::new(
            "signed_v2",
            "outbound-gateway",
            vec![secret.as_bytes().to_vec()],
            Duration::from_secs(60),
        )
        .verify_at(&r.parts, &r.body, ts)
        .is_ok()
    };
    assert!(only("old-credential", &seen[0]) && !only("new-credential", &seen[0]));
    assert!(
        only("new-credential", &seen[1]) && !only("old-credential", &seen[1]),
        "old rejected after rotation"
    );
    // A broken file keeps the current credential.
    std::fs::remove_file(&file).unwrap();
    assert!(o.handle.reload().is_err());
    assert_eq!(get().await.json()["verdict"]["ok"], true);
    let all = o.lines.lock().unwrap().join("\n");
    assert!(!all.contains("old-credential") && !all.contains("new-credential"));
    o.gw.shutdown().await;
}

#[test]
fn start_up_needs_every_credential_and_https_in_production() {
    let base = [
        ("OUT_JWT_SECRET", "j"),
        ("OUT_V2_SECRET", "a"),
        ("OUT_V1_SECRET", "b"),
        ("OUT_TOKEN_SECRET", "c"),
    ];
    let start = |extra: &[(&'static str, &'static str)], drop: Option<&str>| {
        let env: Vec<(&str, &str)> = base
            .iter()
            .chain(extra)
            .copied()
            .filter(|(k, _)| Some(*k) != drop)
            .collect();
        Gateway::<outbound::Spec>::new(&StartupEnv::from_pairs(env)).map(|_| ())
    };
    assert!(start(&[], None).is_ok());
    let e = start(&[], Some("OUT_TOKEN_SECRET"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("OUT_TOKEN_SECRET (or OUT_TOKEN_SECRET_FILE)"),
        "{e}"
    );
    let e = start(
        &[("OUT_V1_SECRET_FILE", "/nonexistent")],
        Some("OUT_V1_SECRET"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("OUT_V1_SECRET_FILE") && e.contains("cannot read"),
        "{e}"
    );
    // Production refuses plain HTTP, except where the service allows it
    // (signed_v2 does; signed_v1 does not).
    let e = start(&[("GATEWAY_ENV", "production")], None)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("default URL of service `signed_v1`") && e.contains("plain HTTP is refused"),
        "{e}"
    );
    let e = start(
        &[
            ("GATEWAY_ENV", "production"),
            ("OUT_V1_URL", "http://10.0.0.1:80"),
        ],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("OUT_V1_URL: `http://10.0.0.1:80`"), "{e}");
}

/// `Gateway::rehearse` (the entry point of `benches/chain.rs`) builds the
/// head the upstream would get without sending it: the rewritten URI, the
/// verified user's headers, and an outbound proof the upstream's own
/// verifier accepts; a refusal is the answer the client would get, and
/// the gateway's own paths forward nothing.
#[test]
fn rehearse_builds_the_signed_upstream_head_without_sending() {
    let env = StartupEnv::from_pairs(support::aegis_env());
    let gw = Gateway::<aegis::Spec>::new(&env).unwrap();
    let conn = gateway::server::Connection {
        peer: "127.0.0.1:40000".parse().unwrap(),
        tls: false,
        client: gateway::tls::ClientIdentity::Anonymous,
    };
    let request = |bearer: Option<&str>, path: &str| {
        let mut r = http::Request::get(path)
            .header("host", "gateway.test")
            .header("x-user-id", "forged");
        if let Some(b) = bearer {
            r = r.header("authorization", b);
        }
        r.body(()).unwrap()
    };
    let bearer = support::admin_bearer();
    let head = gw
        .rehearse(
            request(Some(&bearer), "/api/v1/graph/entities/e1?x=1"),
            &conn,
        )
        .unwrap()
        .expect("a proxied route forwards a head");
    assert_eq!(head.uri, "http://localhost:8003/entities/e1?x=1");
    assert!(head.headers["x-user-id"]
        .to_str()
        .unwrap()
        .starts_with("admin-"));
    assert!(head.headers.get("authorization").is_none(), "{head:?}");
    let secret = support::service_secret("knowledge_graph");
    let v = verifier("knowledge_graph", "aegis-gateway", &[&secret]);
    let verdict = v.lock().unwrap().verify(&head, b"").unwrap();
    assert_eq!(verdict.caller, "aegis-gateway");
    assert!(matches!(verdict.proof, Proof::HmacV2));

    let refused = gw
        .rehearse(request(None, "/api/v1/graph/entities/e1"), &conn)
        .unwrap_err();
    assert_eq!(refused.status(), http::StatusCode::UNAUTHORIZED);
    assert!(gw
        .rehearse(request(None, "/health"), &conn)
        .unwrap()
        .is_none());
}
