//! User authentication (contract §4) on the AEGIS spec (the tests' copy) and on
//! specs with asymmetric keys: where tokens come from, what makes them
//! invalid, roles, identity sent upstream, and the security events.

#[path = "support/aegis.rs"]
mod aegis;
#[path = "support/lib.rs"]
mod support;

use std::sync::{Arc, Mutex};

use aegis::Spec as Aegis;
use base64::Engine as _;
use gateway::log::AccessSink;
use serde_json::{json, Value};
use support::{
    aegis_token, echo_upstream, now, send, sign_claims, start_shared, Got, Running, JWT_SECRET,
};

type Lines = Arc<Mutex<Vec<String>>>;

async fn aegis() -> (Running, Lines) {
    let mut env = support::aegis_env();
    for (name, var) in [
        ("orchestration", "ORCHESTRATION_URL"),
        ("knowledge_graph", "KNOWLEDGE_GRAPH_URL"),
        ("auth", "AUTH_URL"),
    ] {
        env.push((var, format!("http://{}", echo_upstream(name).await)));
    }
    let lines = Lines::default();
    let (gw, _) = start_shared::<Aegis>(&env, AccessSink::Memory(lines.clone())).await;
    (gw, lines)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn get_with(gw: &Running, path: &str, headers: &[(&str, &str)]) -> Got {
    send("GET", &gw.url(path), headers, "").await
}

/// The security events logged so far, parsed.
fn events(lines: &Lines) -> Vec<Value> {
    lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["event"] == "auth_failure")
        .collect()
}

fn assert_401(got: &Got, message: &str) {
    assert_eq!(got.status, 401, "{:?}", got.body);
    assert_eq!(got.header("www-authenticate"), Some("Bearer"));
    assert_eq!(got.header("content-type"), Some("application/json"));
    let body = got.json();
    assert_eq!(body["error"], message);
    assert_eq!(body["request_id"], got.header("x-request-id").unwrap());
}

/// A token from raw header and claims JSON, signed HS256 with `secret`.
fn handmade(header: &Value, claims: &Value, signature: Option<&str>) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let signing_input = format!("{}.{}", b64(header), b64(claims));
    let sig = signature.unwrap_or("");
    format!("{signing_input}.{sig}")
}

fn claims(extra: Value) -> Value {
    let mut base = json!({"user_id": "u-1", "roles": ["operator"], "iss": "aegis-gateway", "exp": now() + 600});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_bearer_reaches_the_upstream_with_the_verified_identity() {
    let (gw, _) = aegis().await;
    let token = aegis_token("alice", &["operator", "reviewer"]);
    let got = get_with(
        &gw,
        "/api/v1/rules/r1",
        &[
            ("authorization", &bearer(&token)),
            ("x-user-id", "mallory"),
            ("x-user-roles", "admin"),
            ("x-tenant-id", "other"),
            ("cookie", "aegis_token=zzz; theme=dark"),
        ],
    )
    .await;
    assert_eq!(got.status, 200);
    let h = &got.json()["headers"];
    assert_eq!(h["x-user-id"], "alice");
    assert_eq!(h["x-user-roles"], "operator,reviewer");
    assert!(h.get("x-tenant-id").is_none(), "no tenant claim configured");
    // The client's bearer stays at the gateway; orchestration receives the
    // gateway's own service token instead (outbound identity `jwt`).
    let upstream_auth = h["authorization"].as_str().unwrap();
    assert!(
        !upstream_auth.contains(&token),
        "the client's bearer was forwarded"
    );
    let service_token = upstream_auth.strip_prefix("Bearer ").unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(service_token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], "aegis-gateway");
    assert_eq!(claims["aud"], "orchestration");
    assert_eq!(
        h["cookie"], "theme=dark",
        "the auth cookie stays, other cookies pass"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_and_invalid_tokens_are_401_with_a_security_event() {
    let (gw, lines) = aegis().await;
    let wrong_secret = sign_claims(&claims(json!({})), "not-the-secret");
    let expired = sign_claims(&claims(json!({"exp": now() - 5})), JWT_SECRET);
    let no_exp = sign_claims(&claims(json!({"exp": null})), JWT_SECRET);
    let wrong_iss = sign_claims(&claims(json!({"iss": "someone-else"})), JWT_SECRET);
    let no_iss = sign_claims(&claims(json!({"iss": null})), JWT_SECRET);
    // RFC 7519: `iss` is one string; jsonwebtoken accepts a list holding it.
    let iss_list = sign_claims(
        &claims(json!({"iss": ["aegis-gateway", "evil"]})),
        JWT_SECRET,
    );
    let not_yet = sign_claims(&claims(json!({"nbf": now() + 600})), JWT_SECRET);
    let no_subject = sign_claims(&claims(json!({"user_id": null})), JWT_SECRET);
    let bad_roles = sign_claims(&claims(json!({"roles": "admin"})), JWT_SECRET);
    let alg_none = handmade(
        &json!({"alg": "none", "typ": "JWT"}),
        &claims(json!({})),
        None,
    );
    let alg_hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &claims(json!({})),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let rs256 = rs256_token(&claims(json!({})), None);
    let cases: Vec<(&str, Option<String>, &str, &str)> = vec![
        (
            "no credential",
            None,
            "Authentication required",
            "missing_token",
        ),
        (
            "empty bearer",
            Some("Bearer ".into()),
            "Authentication required",
            "missing_token",
        ),
        (
            "garbage",
            Some(bearer("not.a.jwt")),
            "Invalid token",
            "malformed_token",
        ),
        (
            "wrong secret",
            Some(bearer(&wrong_secret)),
            "Invalid token",
            "bad_signature",
        ),
        (
            "expired",
            Some(bearer(&expired)),
            "Token expired",
            "expired",
        ),
        (
            "no exp",
            Some(bearer(&no_exp)),
            "Invalid token",
            "missing_claim",
        ),
        (
            "wrong issuer",
            Some(bearer(&wrong_iss)),
            "Invalid token",
            "wrong_issuer",
        ),
        (
            "no issuer",
            Some(bearer(&no_iss)),
            "Invalid token",
            "missing_claim",
        ),
        (
            "issuer as a list",
            Some(bearer(&iss_list)),
            "Invalid token",
            "malformed_issuer",
        ),
        (
            "not yet valid",
            Some(bearer(&not_yet)),
            "Invalid token",
            "not_yet_valid",
        ),
        (
            "no subject",
            Some(bearer(&no_subject)),
            "Invalid token",
            "missing_subject",
        ),
        (
            "roles not a list",
            Some(bearer(&bad_roles)),
            "Invalid token",
            "malformed_roles",
        ),
        (
            "alg none",
            Some(bearer(&alg_none)),
            "Invalid token",
            "malformed_token",
        ),
        (
            "HS512 not allowed",
            Some(bearer(&alg_hs512)),
            "Invalid token",
            "algorithm_not_allowed",
        ),
        (
            "RS256 not allowed",
            Some(bearer(&rs256)),
            "Invalid token",
            "algorithm_not_allowed",
        ),
    ];
    for (what, auth, message, reason) in &cases {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let got = get_with(&gw, "/api/v1/rules", &headers).await;
        assert_401(&got, message);
        let ev = events(&lines);
        let last = ev
            .last()
            .unwrap_or_else(|| panic!("{what}: no security event"));
        assert_eq!(last["reason"], *reason, "{what}");
        assert_eq!(
            last["request_id"],
            got.header("x-request-id").unwrap(),
            "{what}"
        );
        assert_eq!(last["path"], "/api/v1/rules");
        assert_eq!(last["client_ip"], "127.0.0.1");
        assert_eq!(last["mode"], "enforce");
    }
    assert_eq!(events(&lines).len(), cases.len(), "one event per rejection");
    // No token or secret ever reaches the log.
    let all = lines.lock().unwrap().join("\n");
    for secret in [
        JWT_SECRET,
        wrong_secret.as_str(),
        expired.as_str(),
        alg_none.as_str(),
    ] {
        assert!(!all.contains(secret), "logged a credential");
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cookie_is_the_fallback_and_a_bearer_header_wins() {
    let (gw, lines) = aegis().await;
    let good = aegis_token("bob", &["operator"]);
    let cookie = format!("theme=dark; aegis_token={good}");
    let got = get_with(&gw, "/api/v1/workspaces/w/stream", &[("cookie", &cookie)]).await;
    assert_eq!(
        got.status, 200,
        "cookie alone authenticates (EventSource clients)"
    );
    assert_eq!(got.json()["headers"]["x-user-id"], "bob");
    // An invalid bearer is the credential even when the cookie is valid.
    let got = get_with(
        &gw,
        "/api/v1/workspaces/w/stream",
        &[
            ("authorization", "Bearer invalid.token.here"),
            ("cookie", &cookie),
        ],
    )
    .await;
    assert_401(&got, "Invalid token");
    assert_eq!(events(&lines).last().unwrap()["reason"], "malformed_token");
    // A valid bearer with an invalid cookie is fine.
    let got = get_with(
        &gw,
        "/api/v1/rules",
        &[
            ("authorization", &bearer(&good)),
            ("cookie", "aegis_token=junk"),
        ],
    )
    .await;
    assert_eq!(got.status, 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_gate_admin_and_detection_rules() {
    let (gw, lines) = aegis().await;
    let cases = [
        ("/api/v1/admin/users", &["operator"][..], 403),
        ("/api/v1/admin/users", &["admin"][..], 200),
        ("/api/v1/admin", &["reviewer", "admin"][..], 200),
        ("/api/v1/detection-rules/r1", &["operator"][..], 403),
        ("/api/v1/detection-rules/r1", &["power_user"][..], 200),
        ("/api/v1/detection-rules", &["admin"][..], 200),
        ("/api/v1/detection-rules", &[][..], 403),
        ("/api/v1/rules", &[][..], 200),
    ];
    for (path, roles, want) in cases {
        let token = aegis_token("carol", roles);
        let got = get_with(&gw, path, &[("authorization", &bearer(&token))]).await;
        assert_eq!(got.status, want, "{path} as {roles:?}");
        if want == 403 {
            assert_eq!(got.json()["error"], "Insufficient role");
            let ev = events(&lines);
            let last = ev.last().unwrap();
            assert_eq!(last["reason"], "missing_role");
            assert_eq!(last["caller"], "carol");
        }
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn public_routes_need_no_token() {
    let (gw, lines) = aegis().await;
    for path in [
        "/api/v1/auth/token",
        "/api/v1/entity-types",
        "/api/v1/entity-types/well",
        "/api/v1/relationship-types/x",
        "/api/v1/relationship-rules",
        "/health",
    ] {
        let got = send("POST", &gw.url(path), &[], "{}").await;
        let want = if path == "/health" { 405 } else { 200 };
        // /health belongs to the gateway: POST there is 405, never routed.
        assert_eq!(got.status, want, "{path}");
    }
    let got = send("POST", &gw.url("/health"), &[], "").await;
    assert_eq!(got.header("allow"), Some("GET, HEAD"));
    assert_eq!(get_with(&gw, "/health", &[]).await.status, 200);
    // A token on a public route is neither checked nor forwarded.
    let got = get_with(
        &gw,
        "/api/v1/entity-types",
        &[("authorization", "Bearer junk")],
    )
    .await;
    assert_eq!(got.status, 200);
    assert!(got.json()["headers"].get("authorization").is_none());
    assert!(got.json()["headers"].get("x-user-id").is_none());
    // The rest of the auth service's API is not public.
    assert_eq!(get_with(&gw, "/api/v1/auth/me", &[]).await.status, 401);
    assert!(events(&lines)
        .iter()
        .all(|e| e["path"] == "/api/v1/auth/me"));
    gw.shutdown().await;
}

// === asymmetric keys ===

fn key(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn rs256_token(claims: &Value, kid: Option<&str>) -> String {
    let pem = std::fs::read(key("rsa_private.pem")).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

mod jwt_keys {
    gateway_macros::spec!("tests/specs/jwt_keys.yaml");
}

mod jwt_jwks {
    gateway_macros::spec!("tests/specs/jwt_jwks.yaml");
}

#[tokio::test(flavor = "multi_thread")]
async fn rs256_with_a_pem_key_and_algorithm_confusion_is_refused() {
    let up = echo_upstream("backend").await;
    let lines = Lines::default();
    let (gw, _) = start_shared::<jwt_keys::Spec>(
        &[
            ("KEYS_BACKEND_URL", format!("http://{up}")),
            ("KEYS_PUBLIC_KEY_FILE", key("rsa_public.pem")),
        ],
        AccessSink::Memory(lines.clone()),
    )
    .await;
    let c = json!({"sub": "svc-user", "iss": "keys-issuer", "exp": now() + 600});
    let got = get_with(
        &gw,
        "/api/x",
        &[("authorization", &bearer(&rs256_token(&c, None)))],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["headers"]["x-user-id"], "svc-user");
    // The classic confusion attack: HS256 "signed" with the public key as
    // the secret. HS256 is not in this spec's allow-list.
    let public_pem = std::fs::read(key("rsa_public.pem")).unwrap();
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &c,
        &jsonwebtoken::EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    let got = get_with(&gw, "/api/x", &[("authorization", &bearer(&forged))]).await;
    assert_401(&got, "Invalid token");
    assert_eq!(
        events(&lines).last().unwrap()["reason"],
        "algorithm_not_allowed"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_keys_verify_rs256_es256_and_eddsa_by_kid() {
    let up = echo_upstream("backend").await;
    let (gw, _) = start_shared::<jwt_jwks::Spec>(
        &[
            ("JWKS_BACKEND_URL", format!("http://{up}")),
            ("JWKS_FILE", key("jwks.json")),
        ],
        AccessSink::Off,
    )
    .await;
    let c = json!({"sub": "k", "exp": now() + 600});
    let sign = |alg, file: &str, kid: &str| {
        let pem = std::fs::read(key(file)).unwrap();
        let key = match alg {
            jsonwebtoken::Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(&pem),
            jsonwebtoken::Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(&pem),
            _ => jsonwebtoken::EncodingKey::from_ed_pem(&pem),
        }
        .unwrap();
        let mut h = jsonwebtoken::Header::new(alg);
        h.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&h, &c, &key).unwrap()
    };
    for (alg, file, kid) in [
        (jsonwebtoken::Algorithm::RS256, "rsa_private.pem", "rsa-1"),
        (jsonwebtoken::Algorithm::ES256, "ec_private.pem", "ec-1"),
        (jsonwebtoken::Algorithm::EdDSA, "ed_private.pem", "ed-1"),
    ] {
        let got = get_with(
            &gw,
            "/api/x",
            &[("authorization", &bearer(&sign(alg, file, kid)))],
        )
        .await;
        assert_eq!(got.status, 200, "{alg:?}");
    }
    // A kid that names another key fails.
    let wrong_kid = sign(jsonwebtoken::Algorithm::RS256, "rsa_private.pem", "ec-1");
    let got = get_with(&gw, "/api/x", &[("authorization", &bearer(&wrong_kid))]).await;
    assert_eq!(got.status, 401);
    gw.shutdown().await;
}

#[test]
fn missing_or_malformed_keys_stop_start_up_naming_the_variable() {
    use gateway::config::StartupEnv;
    use gateway::server::Gateway;
    let err = |env: &[(&str, &str)]| {
        Gateway::<jwt_keys::Spec>::new(&StartupEnv::from_pairs(env.iter().copied()))
            .unwrap_err()
            .to_string()
    };
    let e = err(&[]);
    assert!(e.starts_with("KEYS_PUBLIC_KEY_FILE:"), "{e}");
    let e = err(&[("KEYS_PUBLIC_KEY_FILE", "/nonexistent/key.pem")]);
    assert!(
        e.contains("KEYS_PUBLIC_KEY_FILE") && e.contains("cannot read"),
        "{e}"
    );
    let ec = key("ec_public.pem");
    let e = err(&[("KEYS_PUBLIC_KEY_FILE", ec.as_str())]);
    assert!(
        e.contains("KEYS_PUBLIC_KEY_FILE") && e.contains("RS256"),
        "{e}"
    );
    let e = Gateway::<Aegis>::new(&StartupEnv::default())
        .unwrap_err()
        .to_string();
    assert_eq!(e, "JWT_SECRET: the HS256 JWT secret is not set");
}

mod revocation {
    gateway_macros::spec!("tests/specs/revocation.yaml");
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_tokens_and_subjects_are_401_and_the_list_reloads() {
    let list = format!(
        "{}/target/test-revocation-list.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::create_dir_all(std::path::Path::new(&list).parent().unwrap()).unwrap();
    std::fs::write(&list, "# revoked\njti:stolen-token-id\n").unwrap();
    // The spec names the file relative to the working directory, which
    // `cargo test` sets to the package root.
    let up = echo_upstream("backend").await;
    let lines = Lines::default();
    let secret = "revocation-secret";
    let (gw, handle) = start_shared::<revocation::Spec>(
        &[
            ("REVOCATION_BACKEND_URL", format!("http://{up}")),
            ("REVOCATION_JWT_SECRET", secret.into()),
        ],
        AccessSink::Memory(lines.clone()),
    )
    .await;
    let token = |sub: &str, jti: &str| {
        sign_claims(&json!({"sub": sub, "jti": jti, "exp": now() + 600}), secret)
    };
    let call = |t: String| {
        let url = gw.url("/api/x");
        async move {
            send(
                "GET",
                &url,
                &[("authorization", &format!("Bearer {t}"))],
                "",
            )
            .await
        }
    };
    // One token string throughout, so the cache of verified tokens is
    // exercised: the reload below must evict it.
    let dave = token("dave", "fine-id");
    assert_eq!(call(dave.clone()).await.status, 200);
    assert_eq!(call(dave.clone()).await.status, 200);
    let got = call(token("dave", "stolen-token-id")).await;
    assert_401(&got, "Token revoked");
    assert_eq!(events(&lines).last().unwrap()["reason"], "revoked");
    // Revoke a subject and reload (what SIGHUP does).
    std::fs::write(&list, "jti:stolen-token-id\nsub:dave\n").unwrap();
    handle.reload().unwrap();
    assert_eq!(call(dave.clone()).await.status, 401);
    assert_eq!(call(token("erin", "other")).await.status, 200);
    // A broken file keeps the previous list.
    std::fs::write(&list, "garbage line\n").unwrap();
    assert!(handle.reload().is_err());
    assert_eq!(call(dave).await.status, 401);
    gw.shutdown().await;
}

mod jwt_cache {
    gateway_macros::spec!("tests/specs/jwt_cache.yaml");
}

/// The cache of verified tokens (issue 6) never admits what full
/// verification would refuse: a tampered copy of a cached token, or a
/// cached token once its `exp` has passed.
#[tokio::test(flavor = "multi_thread")]
async fn cached_tokens_still_expire_and_tampered_copies_are_refused() {
    let up = echo_upstream("backend").await;
    let lines = Lines::default();
    let secret = "cache-secret";
    let (gw, _handle) = start_shared::<jwt_cache::Spec>(
        &[
            ("CACHE_BACKEND_URL", format!("http://{up}")),
            ("CACHE_JWT_SECRET", secret.into()),
        ],
        AccessSink::Memory(lines.clone()),
    )
    .await;
    let call = |t: String| {
        let url = gw.url("/api/x");
        async move {
            send(
                "GET",
                &url,
                &[("authorization", &format!("Bearer {t}"))],
                "",
            )
            .await
        }
    };
    let exp = now() + 2;
    let short = sign_claims(
        &json!({"sub": "frank", "roles": ["a", "b"], "exp": exp}),
        secret,
    );
    for _ in 0..3 {
        let got = call(short.clone()).await;
        assert_eq!(got.status, 200);
        let h = &got.json()["headers"];
        assert_eq!(h["x-user-id"], "frank");
        assert_eq!(h["x-user-roles"], "a,b");
    }
    // Same header and claims, another signature: refused although the
    // genuine token is cached.
    let (signed, sig) = short.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{signed}.{flipped}{}", &sig[1..]);
    assert_401(&call(tampered).await, "Invalid token");
    assert_eq!(events(&lines).last().unwrap()["reason"], "bad_signature");
    // Past `exp` (leeway 0 here), the cached token is expired.
    while now() <= exp {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_401(&call(short).await, "Token expired");
    assert_eq!(events(&lines).last().unwrap()["reason"], "expired");
    gw.shutdown().await;
}

mod identity {
    gateway_macros::spec!("tests/specs/identity.yaml");
}

/// The identity spec in front of `up`, its JWTs signed with `secret`,
/// access-log lines into `lines`.
async fn start_identity(up: std::net::SocketAddr, secret: &str, lines: &Lines) -> Running {
    let (gw, _) = start_shared::<identity::Spec>(
        &[
            ("ID_BACKEND_URL", format!("http://{up}")),
            ("ID_JWT_SECRET", secret.into()),
            ("ID_BILLING_SECRET", "b".into()),
            ("ID_REPORTING_SECRET", "r".into()),
            ("ID_SHARED_SECRET", "s".into()),
            ("ID_SERVICE_TOKEN", "t".into()),
        ],
        AccessSink::Memory(lines.clone()),
    )
    .await;
    gw
}

#[tokio::test(flavor = "multi_thread")]
async fn audience_and_tenant_claims_when_configured() {
    let up = echo_upstream("backend").await;
    let lines = Lines::default();
    let secret = "identity-jwt-secret";
    let gw = start_identity(up, secret, &lines).await;
    let token = |aud: Value| {
        let c =
            json!({"sub": "u1", "iss": "id-issuer", "aud": aud, "org": "acme", "exp": now() + 600});
        format!("Bearer {}", sign_claims(&c, secret))
    };
    let ok = get_with(
        &gw,
        "/user/x",
        &[("authorization", &token(json!("gateway")))],
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.json()["headers"]["x-tenant-id"],
        "acme",
        "tenant from the verified claim"
    );
    let listed = get_with(
        &gw,
        "/user/x",
        &[("authorization", &token(json!(["other", "gateway"])))],
    )
    .await;
    assert_eq!(
        listed.status, 200,
        "aud may be a list containing the audience"
    );
    let wrong = get_with(
        &gw,
        "/user/x",
        &[("authorization", &token(json!("someone-else")))],
    )
    .await;
    assert_401(&wrong, "Invalid token");
    assert_eq!(events(&lines).last().unwrap()["reason"], "wrong_audience");
    // The access log names the verified caller and tenant.
    let access: Vec<Value> = lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["target"] == "access" && v["status"] == 200)
        .collect();
    assert_eq!(access[0]["caller"], "u1");
    assert_eq!(access[0]["tenant"], "acme");
    gw.shutdown().await;
}

/// Issue 13 §3: a verified claim that cannot travel upstream exactly as
/// signed (a control character, a role that is not one item of
/// `X-User-Roles`, a tenant that is not a string) makes the token invalid:
/// 401, a security event naming the claim but not its value, the upstream
/// never called, and the refusal not cached (the same token is refused
/// again, while a good token of the same user still passes).
#[tokio::test(flavor = "multi_thread")]
async fn claims_that_cannot_be_forwarded_fail_closed() {
    let up = echo_upstream("backend").await;
    let lines = Lines::default();
    let secret = "identity-jwt-secret";
    let gw = start_identity(up, secret, &lines).await;
    let token = |extra: Value| {
        let mut c = json!({"sub": "dave", "roles": ["viewer", "editor"], "iss": "id-issuer",
            "aud": "gateway", "org": "acme", "exp": now() + 600});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        format!("Bearer {}", sign_claims(&c, secret))
    };
    let upstream_calls = || {
        lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["target"] == "access" && !v["upstream"].is_null())
            .count()
    };
    let cases = [
        (
            "a control character in the subject",
            json!({"sub": "dave\u{1}"}),
            "invalid_claim_subject",
        ),
        (
            "a space around the subject",
            json!({"sub": "dave "}),
            "invalid_claim_subject",
        ),
        (
            "one bad role among good ones",
            json!({"roles": ["viewer", "ad\u{1}min", "editor"]}),
            "invalid_claim_roles",
        ),
        (
            "a comma inside a role",
            json!({"roles": ["viewer,admin"]}),
            "invalid_claim_roles",
        ),
        (
            "an empty role",
            json!({"roles": ["viewer", ""]}),
            "invalid_claim_roles",
        ),
        (
            "a control character in the tenant",
            json!({"org": "acme\u{1}"}),
            "invalid_claim_tenant",
        ),
        (
            "a tenant that is not a string",
            json!({"org": ["acme", "globex"]}),
            "invalid_claim_tenant",
        ),
        (
            "an empty tenant",
            json!({"org": ""}),
            "invalid_claim_tenant",
        ),
    ];
    for (what, extra, reason) in cases {
        let t = token(extra);
        // Twice: a refused token is never cached as good.
        for _ in 0..2 {
            let got = get_with(&gw, "/user/x", &[("authorization", &t)]).await;
            assert_401(&got, "Invalid token");
            let ev = events(&lines);
            let last = ev.last().unwrap();
            assert_eq!(last["reason"], reason, "{what}");
            let logged = last.to_string();
            assert!(
                !logged.contains("\\u0001") && !logged.contains("dave"),
                "{what}: {logged}"
            );
        }
        assert_eq!(upstream_calls(), 0, "{what}: forwarded");
    }
    // The same user with clean claims passes, with every header set.
    let ok = get_with(&gw, "/user/x", &[("authorization", &token(json!({})))]).await;
    assert_eq!(ok.status, 200);
    assert_eq!(upstream_calls(), 1);
    let h = &ok.json()["headers"];
    assert_eq!(h["x-user-id"], "dave");
    assert_eq!(h["x-user-roles"], "viewer,editor");
    assert_eq!(h["x-tenant-id"], "acme");
    gw.shutdown().await;
}
