//! Inputs the fuzz targets (`fuzz/`) found, kept as tests so the fixes
//! stay. Each test fails (panics on an overflow, or accepts a replay)
//! without its fix.

use std::time::Duration;

use gateway::auth::hmac::{body_sha256, sign_v2, V2Input};
use gateway::service::{Proof, ServiceVerifier};

const GATEWAY: &str = "aegis-gateway";
const SECRET: &[u8] = b"gateway-secret";
const NONCE: &str = "nonce-0123456789abcdef";

/// A v2-signed request as the gateway sends it, stamped `ts`.
fn signed_v2(ts: u64) -> (http::request::Parts, Vec<u8>) {
    signed_v2_for(ts, "acme", Some(b"acme"))
}

/// A v2 request signed for `tenant`, carrying `header` as `X-Tenant-Id`.
fn signed_v2_for(ts: u64, tenant: &str, header: Option<&[u8]>) -> (http::request::Parts, Vec<u8>) {
    let body = br#"{"amount":42}"#.to_vec();
    let ts = ts.to_string();
    let digest = body_sha256(&body);
    let sig = sign_v2(
        SECRET,
        &V2Input {
            method: "POST",
            path_and_query: "/internal/invoices?draft=true",
            timestamp: &ts,
            nonce: NONCE,
            service: GATEWAY,
            tenant,
            body_sha256: &digest,
        },
    );
    let mut req = http::Request::builder()
        .method("POST")
        .uri("/internal/invoices?draft=true")
        .header("x-internal-service-auth", sig)
        .header("x-service-name", GATEWAY)
        .header("x-internal-timestamp", ts)
        .header("x-internal-nonce", NONCE);
    if let Some(h) = header {
        req = req.header("x-tenant-id", http::HeaderValue::from_bytes(h).unwrap());
    }
    let (parts, ()) = req.body(()).unwrap().into_parts();
    (parts, body)
}

fn verifier(window: Duration) -> ServiceVerifier {
    ServiceVerifier::new("billing", GATEWAY, vec![SECRET.to_vec()], window)
}

/// fuzz/hmac_verify: a window of `u64::MAX` seconds overflowed
/// `2 * window + 1` (the replay cache's memory) in `HmacVerifier::from_secrets`.
#[test]
fn the_widest_window_builds_a_verifier_that_still_refuses_replays() {
    let v = verifier(Duration::from_secs(u64::MAX));
    let (parts, body) = signed_v2(1_700_000_000);
    let call = v.verify_at(&parts, &body, 5).expect("inside any window");
    assert_eq!(call.proof, Proof::HmacV2);
    assert_eq!(call.tenant.as_deref(), Some("acme"));
    let replay = v.verify_at(&parts, &body, u64::MAX).unwrap_err();
    assert_eq!(replay.reason, "replayed_nonce");
}

/// fuzz/hmac_verify (seed `vector3-end-of-time`): a signed v2 request near
/// the end of the clock overflowed the nonce's expiry (`now + remember`);
/// saturated, it must still be remembered, even at `u64::MAX` itself.
#[test]
fn a_v2_request_at_the_end_of_time_is_accepted_once() {
    for now in [u64::MAX - 5, u64::MAX] {
        let v = verifier(Duration::from_secs(60));
        let (parts, body) = signed_v2(now - 3);
        let call = v.verify_at(&parts, &body, now).expect("a fresh signature");
        assert_eq!(call.proof, Proof::HmacV2);
        let replay = v.verify_at(&parts, &body, now).unwrap_err();
        assert_eq!(replay.reason, "replayed_nonce", "at {now}");
    }
}

/// fuzz/hmac_verify (seed `jwt-end-of-time`): a valid service JWT checked
/// near the end of the clock overflowed `now + window` in `verify_token`.
#[test]
fn a_service_jwt_at_the_end_of_time_is_checked_without_overflow() {
    let now = u64::MAX - 10;
    let claims = serde_json::json!({
        "iss": GATEWAY, "aud": "billing", "sub": GATEWAY,
        "iat": now, "exp": now + 5, "jti": NONCE,
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let (parts, ()) = http::Request::builder()
        .uri("/internal/invoices")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
        .into_parts();
    let call = verifier(Duration::from_secs(60))
        .verify_at(&parts, b"", now)
        .expect("a valid token");
    assert_eq!(call.proof, Proof::Jwt);
    let late = verifier(Duration::from_secs(60)).verify_at(&parts, b"", now + 5);
    assert_eq!(late.unwrap_err().reason, "expired_service_token");
}

/// fuzz/hmac_verify: a v2 request signed for a non-ASCII tenant (a JWT's
/// tenant claim is signed as is) was refused as `bad_signature`: the
/// verifier read a header that is not visible ASCII as no tenant at all.
#[test]
fn a_v2_signature_over_a_utf8_tenant_verifies() {
    let v = verifier(Duration::from_secs(60));
    let (parts, body) = signed_v2_for(1_700_000_000, "Zürich", Some("Zürich".as_bytes()));
    let call = v
        .verify_at(&parts, &body, 1_700_000_000)
        .expect("signed as sent");
    assert_eq!(call.tenant.as_deref(), Some("Zürich"));
}

/// The other side of the same reading: a tenant header that is not UTF-8
/// (so never signed) on a request signed without a tenant was accepted,
/// with the header read as absent.
#[test]
fn a_v2_tenant_header_that_is_not_utf8_is_refused() {
    let v = verifier(Duration::from_secs(60));
    let (parts, body) = signed_v2_for(1_700_000_000, "", Some(b"\xffacme"));
    let refused = v.verify_at(&parts, &body, 1_700_000_000).unwrap_err();
    assert_eq!(refused.reason, "malformed_tenant");
    let (parts, body) = signed_v2_for(1_700_000_000, "", None);
    assert_eq!(
        v.verify_at(&parts, &body, 1_700_000_000).unwrap().tenant,
        None
    );
}

/// fuzz/dispatch (generated table `/a/{x}>/b/..;v/{x}`): the spec compiler
/// accepted an upstream template with a `..;v` segment, which Tomcat and
/// Spring read as `..`, so every request went upstream with a dot segment.
/// Requests with such segments are refused (400); templates are too.
#[test]
fn a_dot_segment_with_path_parameters_in_an_upstream_template_is_a_build_error() {
    let yaml = |upstream: &str| {
        format!(
            "gateway: {{ name: fuzz, listen: \"127.0.0.1:0\" }}\n\
             services:\n  s: {{ url: {{ env: S_URL, default: \"http://localhost:1\" }}, identity: {{ kind: none, unsigned: true }} }}\n\
             routes:\n  - {{ id: r0, path: \"/a/{{x}}\", service: s, upstream: \"{upstream}\" }}\n"
        )
    };
    assert!(gateway_codegen::compile_str("fuzz.yaml", &yaml("/b/v;x/{x}")).is_ok());
    for bad in ["/b/..;v/{x}", "/b/.;/{x}", "/b/{x}/..;"] {
        let err = gateway_codegen::compile_str("fuzz.yaml", &yaml(bad)).unwrap_err();
        let text = err.render();
        assert!(text.contains("fuzz.yaml:5:"), "{text}");
        assert!(text.contains("segment"), "{text}");
    }
}
