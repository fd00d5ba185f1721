//! The inbound proof verifier (`gateway_service::ServiceVerifier`, the
//! gateway's own HMAC v1/v2 verifier plus service JWTs, from the
//! `gateway-service` crate the gateway re-exports as `gateway::service`)
//! on arbitrary headers, method, path, body and clock.
//!
//! Oracles:
//! - it never panics;
//! - whatever it accepts really carries a valid proof, checked here
//!   independently: the signature header equals `sign_v1`/`sign_v2` over
//!   what was received (or the JWT verifies with a known secret), the
//!   caller is the gateway, the timestamp is inside the window;
//! - a request signed correctly from the input (`sign_v1`, `sign_v2` or a
//!   JWT) is accepted exactly when its clock, nonce and claims allow it,
//!   with the right proof and tenant; a v2 replay is refused;
//! - the same request with a covered part changed after signing (method,
//!   path, query, body, timestamp, tenant, signature) is refused.
#![no_main]

use std::time::Duration;

use gateway_service::hmac::{sign_v1, sign_v2, valid_nonce, V2Input};
use gateway_service::{Proof, ServiceVerifier, VerifiedCall};
use gateway_fuzz::hmac as field;
use gateway_fuzz::{header_pairs, Fields};
use http::{HeaderName, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;

/// The gateway's name, as the verifier knows it.
const GATEWAY: &str = "aegis-gateway";
/// The service doing the verifying (the JWT audience).
const AUDIENCE: &str = "billing";
/// The secret a rotation keeps besides the input's.
const OLD_SECRET: &[u8] = b"old-rotated-secret";

const SIGNATURE: &str = "x-internal-service-auth";
const SERVICE_NAME: &str = "x-service-name";
const TIMESTAMP_H: &str = "x-internal-timestamp";
const NONCE_H: &str = "x-internal-nonce";
const TENANT_H: &str = "x-tenant-id";

/// What the sender signed.
#[derive(Debug, Clone)]
struct Sent {
    method: String,
    path_and_query: String,
    timestamp: String,
    nonce: String,
    service: String,
    tenant: String,
    body: Vec<u8>,
}

impl Sent {
    fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(p, _)| p)
    }
}

fn body_sha256(body: &[u8]) -> String {
    gateway_service::hmac::body_sha256(body)
}

fn sign(version: u8, secret: &[u8], s: &Sent) -> String {
    if version == 1 {
        return sign_v1(secret, &s.method, s.path(), &s.timestamp);
    }
    let body = body_sha256(&s.body);
    sign_v2(
        secret,
        &V2Input {
            method: &s.method,
            path_and_query: &s.path_and_query,
            timestamp: &s.timestamp,
            nonce: &s.nonce,
            service: &s.service,
            tenant: &s.tenant,
            body_sha256: &body,
        },
    )
}

/// A service JWT as the gateway mints one, with `iat`/`exp` from the input.
fn jwt(secret: &[u8], s: &Sent, iat: u64, exp: u64) -> String {
    let mut claims = serde_json::json!({
        "iss": s.service, "aud": AUDIENCE, "sub": s.service, "iat": iat, "exp": exp,
    });
    if !s.nonce.is_empty() {
        claims["jti"] = serde_json::Value::String(s.nonce.clone());
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("HS256 encoding cannot fail")
}

fn first<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The independent check of an accepted request: the proof it carries is
/// valid for one of `secrets`, as received.
fn assert_really_signed(
    parts: &http::request::Parts,
    body: &[u8],
    now: u64,
    window: u64,
    secrets: &[Vec<u8>],
    call: &VerifiedCall,
) {
    assert_eq!(
        call.caller, GATEWAY,
        "accepted a caller that is not the gateway"
    );
    let Some(sig) = parts.headers.get(SIGNATURE) else {
        assert_eq!(call.proof, Proof::Jwt, "no signature header, yet {call:?}");
        assert_eq!(call.tenant, None);
        let bearer = first(parts, "authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .expect("a JWT proof without a bearer token");
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.validate_exp = false;
        v.set_audience(&[AUDIENCE]);
        v.set_issuer(&[GATEWAY]);
        v.set_required_spec_claims(&["exp", "iat"]);
        let claims = secrets.iter().find_map(|k| {
            jsonwebtoken::decode::<serde_json::Value>(
                bearer,
                &jsonwebtoken::DecodingKey::from_secret(k),
                &v,
            )
            .ok()
        });
        let claims = claims.expect("accepted a JWT no secret verifies").claims;
        let exp = claims["exp"].as_u64().expect("exp");
        assert!(exp > now, "accepted an expired service JWT");
        assert_eq!(claims["sub"], GATEWAY);
        assert!(claims["jti"].is_string(), "accepted a JWT without jti");
        return;
    };
    let sig = sig.to_str().expect("accepted a non-text signature");
    let service = first(parts, SERVICE_NAME).expect("accepted without X-Service-Name");
    assert_eq!(service, GATEWAY);
    let ts = first(parts, TIMESTAMP_H).expect("accepted without a timestamp");
    let ts_n: u64 = ts.parse().expect("accepted a malformed timestamp");
    assert!(now.abs_diff(ts_n) <= window, "accepted a stale timestamp");
    let received = Sent {
        method: parts.method.as_str().to_owned(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned(),
        timestamp: ts.to_owned(),
        nonce: first(parts, NONCE_H).unwrap_or("").to_owned(),
        service: service.to_owned(),
        // Any UTF-8, as signed; a v2 call with another tenant header is
        // refused (a v1 signature covers no tenant).
        tenant: match parts
            .headers
            .get(TENANT_H)
            .map(|v| std::str::from_utf8(v.as_bytes()))
        {
            None => String::new(),
            Some(Ok(t)) => t.to_owned(),
            Some(Err(_)) => {
                assert_ne!(
                    call.proof,
                    Proof::HmacV2,
                    "accepted a tenant that is not UTF-8"
                );
                String::new()
            }
        },
        body: body.to_vec(),
    };
    let version = match call.proof {
        Proof::HmacV1 => {
            assert!(!sig.starts_with("v2="), "a v2 header accepted as v1");
            assert_eq!(call.tenant, None, "v1 covers no tenant");
            1
        }
        Proof::HmacV2 => {
            assert!(sig.starts_with("v2="), "a v1 header accepted as v2");
            assert!(
                valid_nonce(received.nonce.as_bytes()),
                "accepted a bad nonce"
            );
            let want = (!received.tenant.is_empty()).then(|| received.tenant.clone());
            assert_eq!(call.tenant, want, "tenant not the signed one");
            2
        }
        Proof::Jwt => panic!("a signed request verified as a JWT"),
    };
    // The received header, compared as hex: verification decodes it, so
    // upper-case hex is the same signature.
    let ok = secrets
        .iter()
        .any(|k| sign(version, k, &received).eq_ignore_ascii_case(sig));
    assert!(ok, "accepted a signature no secret makes: {sig}");
}

fn header(name: &str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    Some((
        HeaderName::from_bytes(name.as_bytes()).ok()?,
        HeaderValue::from_str(value).ok()?,
    ))
}

fuzz_target!(|data: &[u8]| {
    let f = Fields::parse(data, field::FIELDS);
    let kind = f.ctl & 3;
    let mutation = (f.ctl >> field::MUTATION_SHIFT) & 7;
    let text = |i: usize| f.text(i).map(str::to_owned);
    let (Some(method), Some(pq)) = (text(field::METHOD), text(field::PATH_AND_QUERY)) else {
        return;
    };
    let now = f.number(field::NOW).unwrap_or(1_700_000_000);
    let window = f.number(field::WINDOW).unwrap_or(60);
    let secret = match f.bytes(field::SECRET) {
        b"" => b"gateway-secret".to_vec(),
        s => s.to_vec(),
    };
    let secrets = if f.ctl & field::ROTATION != 0 {
        vec![OLD_SECRET.to_vec(), secret.clone()]
    } else {
        vec![secret.clone()]
    };
    let mut verifier = ServiceVerifier::new(
        AUDIENCE,
        GATEWAY,
        secrets.clone(),
        Duration::from_secs(window),
    );
    if f.ctl & field::V2_ONLY != 0 {
        verifier = verifier.with_proofs(&[Proof::HmacV2]);
    }
    let sent = Sent {
        method: method.clone(),
        path_and_query: pq.clone(),
        timestamp: text(field::TIMESTAMP)
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| now.to_string()),
        nonce: text(field::NONCE).unwrap_or_default(),
        service: text(field::SERVICE)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| GATEWAY.to_owned()),
        tenant: text(field::TENANT).unwrap_or_default(),
        body: f.bytes(field::BODY).to_vec(),
    };

    // What is received: `sent`, possibly changed after signing.
    let mut recv = sent.clone();
    let mut signature = None;
    let mut jwt_times = None;
    match kind {
        field::KIND_V1 | field::KIND_V2 => signature = Some(sign(kind + 1, &secret, &sent)),
        field::KIND_JWT => {
            let (off, life) = text(field::JWT)
                .and_then(|j| {
                    let (a, b) = j.split_once(',')?;
                    Some((a.trim().parse::<i64>().ok()?, b.trim().parse::<u64>().ok()?))
                })
                .unwrap_or((0, 120));
            let iat = now.saturating_add_signed(off);
            let exp = iat.saturating_add(life);
            jwt_times = Some((iat, exp));
        }
        _ => {}
    }
    let mut covered_change = false;
    match mutation {
        1 => {
            recv.method = if recv.method == "GET" { "POST" } else { "GET" }.to_owned();
            covered_change = kind != field::KIND_JWT;
        }
        2 => {
            recv.path_and_query = match recv.path_and_query.split_once('?') {
                Some((p, q)) => format!("{p}x?{q}"),
                None => format!("{}x", recv.path_and_query),
            };
            covered_change = kind != field::KIND_JWT;
        }
        3 => {
            recv.path_and_query
                .push_str(if recv.path_and_query.contains('?') {
                    "&x"
                } else {
                    "?x"
                });
            covered_change = kind == field::KIND_V2;
        }
        4 => {
            recv.body.push(b'x');
            covered_change = kind == field::KIND_V2;
        }
        5 => {
            recv.timestamp = format!("{}0", recv.timestamp);
            covered_change = kind != field::KIND_JWT;
        }
        6 => {
            recv.tenant.push('x');
            covered_change = kind == field::KIND_V2;
        }
        7 => {
            // Another secret's signature (or token).
            covered_change = kind != field::KIND_RAW;
        }
        _ => {}
    }
    // Not an equivalent HMAC key: keys are zero-padded, so only a non-NUL
    // byte makes a different one.
    let wrong_secret = [secret.as_slice(), b"x"].concat();
    let signing_secret: &[u8] = if mutation == 7 {
        &wrong_secret
    } else {
        &secret
    };
    if mutation == 7 {
        if let Some(s) = signature.as_mut() {
            *s = sign(kind + 1, signing_secret, &sent);
        }
    }

    // Build the received request.
    let (Ok(method), Ok(uri)) = (
        Method::from_bytes(recv.method.as_bytes()),
        recv.path_and_query.parse::<Uri>(),
    ) else {
        return;
    };
    // Only what a server would hand over: the target exactly as sent.
    if uri.path_and_query().map(|pq| pq.as_str()) != Some(recv.path_and_query.as_str()) {
        return;
    }
    let mut built: Vec<(HeaderName, HeaderValue)> = Vec::new();
    let mut buildable = true;
    let mut add = |name: &str, value: &str| match header(name, value) {
        Some(h) => built.push(h),
        None => buildable = false,
    };
    if let Some(sig) = &signature {
        add(SIGNATURE, sig);
        add(SERVICE_NAME, &recv.service);
        add(TIMESTAMP_H, &recv.timestamp);
        if kind == field::KIND_V2 {
            add(NONCE_H, &recv.nonce);
        }
        if !recv.tenant.is_empty() {
            add(TENANT_H, &recv.tenant);
        }
    }
    if let Some((iat, exp)) = jwt_times {
        add(
            "authorization",
            &format!("Bearer {}", jwt(signing_secret, &sent, iat, exp)),
        );
        if !recv.tenant.is_empty() {
            add(TENANT_H, &recv.tenant);
        }
    }
    let extra: Vec<(HeaderName, HeaderValue)> = header_pairs(f.bytes(field::EXTRA))
        .filter_map(|(n, v)| {
            Some((
                HeaderName::from_bytes(n).ok()?,
                HeaderValue::from_bytes(v).ok()?,
            ))
        })
        .collect();
    let extra_first = f.ctl & field::EXTRA_FIRST != 0;
    let mut req = http::Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    let (first_batch, second_batch) = if extra_first {
        (&extra, &built)
    } else {
        (&built, &extra)
    };
    for (n, v) in first_batch.iter().chain(second_batch) {
        req.headers_mut().append(n.clone(), v.clone());
    }
    let (parts, ()) = req.into_parts();
    let result = verifier.verify_at(&parts, &recv.body, now);

    if let Ok(call) = &result {
        assert_really_signed(&parts, &recv.body, now, window, &secrets, call);
        if f.ctl & field::V2_ONLY != 0 {
            assert_eq!(
                call.proof,
                Proof::HmacV2,
                "a proof the verifier does not accept"
            );
        }
    }

    // The built request: expected outcome. Extra headers may shadow or add
    // signing headers; then only the independent check above applies.
    let names = [
        SIGNATURE,
        SERVICE_NAME,
        TIMESTAMP_H,
        NONCE_H,
        TENANT_H,
        "authorization",
    ];
    let shadowed = extra.iter().any(|(n, _)| names.contains(&n.as_str()));
    if kind == field::KIND_RAW || !buildable || shadowed {
        return;
    }
    if covered_change {
        assert!(
            result.is_err(),
            "accepted after a covered change ({mutation}): {result:?}"
        );
        return;
    }
    let ts_ok = recv
        .timestamp
        .parse::<u64>()
        .is_ok_and(|ts| now.abs_diff(ts) <= window);
    let caller_ok = recv.service == GATEWAY;
    let expect_ok = match kind {
        field::KIND_V1 => ts_ok && caller_ok && f.ctl & field::V2_ONLY == 0,
        field::KIND_V2 => ts_ok && caller_ok && valid_nonce(recv.nonce.as_bytes()),
        _ => {
            let (iat, exp) = jwt_times.unwrap_or_default();
            caller_ok
                && f.ctl & field::V2_ONLY == 0
                && exp > now
                && exp - iat <= 300
                && iat <= now.saturating_add(window)
                && !recv.nonce.is_empty()
        }
    };
    match (&result, expect_ok) {
        (Ok(call), true) => {
            let proof = [Proof::HmacV1, Proof::HmacV2, Proof::Jwt][kind as usize];
            assert_eq!(call.proof, proof);
            let tenant =
                (kind == field::KIND_V2 && !recv.tenant.is_empty()).then(|| recv.tenant.clone());
            assert_eq!(call.tenant, tenant);
            // Replays: v2 is refused, v1 and JWTs carry no nonce to track.
            let again = verifier.verify_at(&parts, &recv.body, now);
            if kind == field::KIND_V2 {
                assert_eq!(again.map_err(|r| r.reason), Err("replayed_nonce"));
            } else {
                assert_eq!(again.as_ref().ok(), Some(call));
            }
        }
        (Err(r), true) => panic!("a correctly signed request was refused: {}", r.reason),
        (Ok(call), false) => panic!("accepted what its clock or claims refuse: {call:?}"),
        (Err(_), false) => {}
    }
});
