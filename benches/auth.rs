//! Per-request cryptography and policy checks without the network: HMAC v2
//! signing and verification, JWT HS256 (uncached and cached) and ES256
//! verification, a rate-limit check.
//!
//! `cargo bench --bench auth`

use std::collections::HashMap;
use std::time::Duration;

use divan::{black_box, Bencher};
use gateway::auth::hmac::{self, Admits, HmacVerifier, HmacVersions, Mode, Signed, V2Input};
use gateway::auth::jwt::JwtVerifier;
use gateway::auth::SigningHeaders;
use gateway::config::StartupEnv;

fn main() {
    divan::main();
}

const SECRET: &[u8] = b"billing-bench-secret-0123456789abcdef";
const BODY_SHA: &str = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

#[divan::bench]
fn hmac_v2_sign() -> String {
    hmac::sign_v2(
        black_box(SECRET),
        &V2Input {
            method: "POST",
            path_and_query: "/api/v1/invoices/42?draft=true",
            timestamp: "1700000000",
            nonce: "n0123456789abcdef0123456789abcd",
            service: "billing",
            tenant: "acme",
            body_sha256: BODY_SHA,
        },
    )
}

#[divan::bench]
fn hmac_v2_verify(b: Bencher) {
    let verifier = HmacVerifier::from_secrets(
        HashMap::from([("billing".to_owned(), vec![SECRET.to_vec()])]),
        Vec::new(),
        Duration::from_secs(300),
        1 << 16,
        Mode::Enforce,
    );
    let now = hmac::now_unix();
    let ts = now.to_string();
    let mut n = 0u64;
    b.with_inputs(|| {
        // A fresh nonce each time: a replayed one would be refused early.
        n += 1;
        let nonce = format!("bench{n:027}");
        let sig = hmac::sign_v2(
            SECRET,
            &V2Input {
                method: "POST",
                path_and_query: "/api/v1/invoices/42",
                timestamp: &ts,
                nonce: &nonce,
                service: "billing",
                tenant: "acme",
                body_sha256: BODY_SHA,
            },
        );
        let mut h = http::HeaderMap::new();
        h.insert("x-internal-service-auth", sig.parse().unwrap());
        h.insert("x-service-name", "billing".parse().unwrap());
        h.insert("x-internal-timestamp", ts.parse().unwrap());
        h.insert("x-internal-nonce", nonce.parse().unwrap());
        h.insert("x-tenant-id", "acme".parse().unwrap());
        SigningHeaders::read(&h)
    })
    .bench_local_refs(|h| {
        let signed = Signed {
            method: "POST",
            path: "/api/v1/invoices/42",
            path_and_query: "/api/v1/invoices/42",
            body_sha256: Some(BODY_SHA),
            now,
        };
        let admits = Admits {
            callers: &["billing"],
            versions: HmacVersions(HmacVersions::V2.0),
            shared_secret: false,
        };
        assert!(verifier.verify(h, &signed, &admits).is_ok());
    });
}

/// The bundled spec's JWT verifier and a valid HS256 token for it.
fn hs256() -> (JwtVerifier, String) {
    let secret = "bench-jwt-secret-0123456789abcdef";
    let env = StartupEnv::from_pairs([("JWT_SECRET", secret)]);
    let verifier = JwtVerifier::new(&gateway::routes::JWT, &env).unwrap();
    let claims = serde_json::json!({
        "user_id": "alice", "roles": ["operator"], "iss": "aegis-gateway",
        "exp": hmac::now_unix() + 3600, "iat": hmac::now_unix(),
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    (verifier, token)
}

#[divan::bench]
fn jwt_hs256_verify(b: Bencher) {
    let (verifier, token) = hs256();
    b.bench_local(|| verifier.verify(black_box(&token)).unwrap());
}

/// The same token again, as the JWT step sees a client's repeated token:
/// a hit in the cache of verified tokens.
#[divan::bench]
fn jwt_hs256_verify_cached(b: Bencher) {
    let (verifier, token) = hs256();
    verifier.verify_cached(&token).unwrap();
    b.bench_local(|| verifier.verify_cached(black_box(&token)).unwrap());
}

/// ES256 (P-256) with a PEM public key, uncached.
#[divan::bench]
fn jwt_es256_verify(b: Bencher) {
    use gateway::auth::jwt::{JwtAlgorithm, JwtSpec};
    static SPEC: JwtSpec = JwtSpec {
        algorithms: &[JwtAlgorithm::ES256],
        secret_env: None,
        public_key_env: Some("BENCH_EC_PUBLIC_KEY"),
        jwks_env: None,
        issuer: None,
        audience: None,
        leeway: Duration::ZERO,
        cookie: None,
        subject_claim: "sub",
        roles_claim: "roles",
        tenant_claim: None,
        revocation_file: None,
    };
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");
    let env = StartupEnv::from_pairs([("BENCH_EC_PUBLIC_KEY", format!("{keys}/ec_public.pem"))]);
    let verifier = JwtVerifier::new(&SPEC, &env).unwrap();
    let private = std::fs::read(format!("{keys}/ec_private.pem")).unwrap();
    let claims = serde_json::json!({
        "sub": "alice", "roles": ["operator"], "exp": hmac::now_unix() + 3600,
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(&private).unwrap(),
    )
    .unwrap();
    b.bench_local(|| verifier.verify(black_box(&token)).unwrap());
}

/// The rate-limit step as a route runs it: key, bucket, headers.
#[divan::bench]
fn rate_limit_step(b: Bencher) {
    use gateway::chain::{Flow, RequestCtx, Step};
    use gateway::policy::ratelimit::{RateKeyKind, RateLimit, RateLimitSpec};
    let limit = RateLimit::new(RateLimitSpec {
        name: "bench",
        count: 1_000_000_000,
        window: Duration::from_secs(1),
        burst: 1_000_000,
        key: RateKeyKind::Ip,
    });
    let parts = http::Request::new(()).into_parts().0;
    let peer: std::net::SocketAddr = "10.1.2.3:40000".parse().unwrap();
    b.with_inputs(|| RequestCtx {
        ids: gateway::ids::Ids::from_headers(&http::HeaderMap::new()),
        peer,
        client_ip: peer.ip(),
        started: std::time::Instant::now(),
        caller: None,
        tenant: None,
        user: None,
        signing: SigningHeaders::default(),
        body_sha256: None,
        auth_failure: None,
        rate_limit: None,
        caller_pending: false,
        https: false,
        client_cert: None,
    })
    .bench_local_refs(|ctx| assert!(matches!(limit.before_body(ctx, &parts), Flow::Continue)));
}
