//! The HMAC test vectors of the gateway's `tests/vectors/hmac.json`
//! (computed with Python's hmac/hashlib, independently of this crate)
//! against this crate's canonical strings, signatures, body hashes, its
//! signature verifier and the services' [`ServiceVerifier`]. The gateway
//! verifies its callers with the same code (its `tests/hmac_vectors.rs`
//! checks the verifier it builds from a spec).

use std::sync::Arc;
use std::time::Duration;

use gateway_service::hmac::{
    body_sha256, canonical_v1, canonical_v2, sign_v1, sign_v2, Admits, HmacVersions,
    SignatureVerifier, Signed, SigningHeaders, V2Input,
};
use gateway_service::{ManualClock, Proof, ServiceVerifier};
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderValue;
use sha2::Digest;

/// Lowercase hex, written out here rather than taken from the crate.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The vector file, from this crate's manifest directory.
const FILE: &str = "../tests/vectors/hmac.json";

#[path = "../../tests/vectors/load.rs"]
mod load;
use load::{vectors, Vector};

fn input(v: &Vector) -> V2Input<'_> {
    V2Input {
        method: &v.method,
        path_and_query: &v.path_and_query,
        timestamp: &v.timestamp,
        nonce: &v.nonce,
        service: &v.service,
        tenant: &v.tenant,
        body_sha256: &v.body_sha256,
    }
}

/// The test's own HMAC (not the crate's), to check the vectors themselves.
fn independent_hex(secret: &str, canonical: &str) -> String {
    let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(canonical.as_bytes());
    hex(&m.finalize().into_bytes())
}

#[test]
fn the_vectors_agree_with_an_independent_implementation() {
    for v in vectors() {
        let expected = independent_hex(&v.secret, &v.canonical);
        match v.version.as_str() {
            "v1" => {
                assert_eq!(v.header, expected, "{}", v.note);
                assert_eq!(
                    v.canonical,
                    [v.method.as_str(), &v.path, &v.timestamp].join("\n"),
                    "{}",
                    v.note
                );
            }
            _ => {
                assert_eq!(v.header, format!("v2={expected}"), "{}", v.note);
                assert_eq!(
                    v.body_sha256,
                    hex(&sha2::Sha256::digest(v.body.as_bytes())),
                    "{}",
                    v.note
                );
                let lines = [
                    "v2",
                    &v.method,
                    &v.path_and_query,
                    &v.timestamp,
                    &v.nonce,
                    &v.service,
                    &v.tenant,
                    &v.body_sha256,
                ];
                assert_eq!(v.canonical, lines.join("\n"), "{}", v.note);
            }
        }
    }
}

#[test]
fn canonical_strings_match_the_vectors() {
    for v in vectors() {
        let got = match v.version.as_str() {
            "v1" => canonical_v1(&v.method, &v.path, &v.timestamp),
            _ => canonical_v2(&input(&v)),
        };
        assert_eq!(got, v.canonical, "{} ({})", v.note, v.version);
    }
}

#[test]
fn signatures_match_the_vectors() {
    for v in vectors() {
        let got = match v.version.as_str() {
            "v1" => sign_v1(v.secret.as_bytes(), &v.method, &v.path, &v.timestamp),
            _ => sign_v2(v.secret.as_bytes(), &input(&v)),
        };
        assert_eq!(got, v.header, "{} ({})", v.note, v.version);
    }
}

#[test]
fn body_hashes_match_the_vectors() {
    let mut seen = 0;
    for v in vectors().iter().filter(|v| v.version == "v2") {
        assert_eq!(body_sha256(v.body.as_bytes()), v.body_sha256, "{}", v.note);
        seen += 1;
    }
    assert!(seen > 0);
    // The empty body hashes to SHA-256 of the empty string.
    assert_eq!(
        body_sha256(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

fn header(s: &str) -> Option<HeaderValue> {
    (!s.is_empty()).then(|| HeaderValue::from_str(s).unwrap())
}

/// The request a vector describes, as a service receives it.
fn request(v: &Vector) -> http::request::Parts {
    let uri = if v.version == "v1" {
        &v.path
    } else {
        &v.path_and_query
    };
    let mut req = http::Request::builder()
        .method(v.method.as_str())
        .uri(uri.as_str())
        .body(())
        .unwrap();
    let h = req.headers_mut();
    for (name, value) in [
        ("x-internal-service-auth", &v.header),
        ("x-internal-timestamp", &v.timestamp),
        ("x-internal-nonce", &v.nonce),
        ("x-tenant-id", &v.tenant),
    ] {
        if let Some(value) = header(value) {
            h.insert(name, value);
        }
    }
    h.insert("x-service-name", header(caller(v)).unwrap());
    req.into_parts().0
}

/// The signing service: the vector's, or `billing` for v1 vectors (v1
/// does not sign the name).
fn caller(v: &Vector) -> &str {
    if v.service.is_empty() {
        "billing"
    } else {
        &v.service
    }
}

#[test]
fn the_service_verifier_accepts_every_vector_at_its_timestamp_and_not_after_the_window() {
    let mut seen = (0, 0);
    for v in vectors() {
        let ts: u64 = v.timestamp.parse().unwrap();
        let clock = Arc::new(ManualClock::new(ts));
        let verifier = ServiceVerifier::new(
            "receiver",
            caller(&v),
            vec![v.secret.as_bytes().to_vec()],
            Duration::from_secs(60),
        )
        .with_clock(clock.clone());
        let parts = request(&v);
        let call = verifier
            .verify(&parts, v.body.as_bytes())
            .unwrap_or_else(|e| panic!("{}: refused: {e:?}", v.note));
        assert_eq!(call.caller, caller(&v), "{}", v.note);
        if v.version == "v2" {
            seen.1 += 1;
            assert_eq!(call.proof, Proof::HmacV2, "{}", v.note);
            assert_eq!(
                call.tenant.as_deref(),
                Some(v.tenant.as_str()).filter(|t| !t.is_empty()),
                "{}",
                v.note
            );
            assert_eq!(
                verifier
                    .verify(&parts, v.body.as_bytes())
                    .unwrap_err()
                    .reason,
                "replayed_nonce",
                "{}",
                v.note
            );
        } else {
            seen.0 += 1;
            assert_eq!(
                (call.proof, call.tenant),
                (Proof::HmacV1, None),
                "{}",
                v.note
            );
        }
        // One more second past the window: stale, whatever the proof.
        clock.advance(61);
        assert_eq!(
            verifier
                .verify(&parts, v.body.as_bytes())
                .unwrap_err()
                .reason,
            "stale_timestamp",
            "{}",
            v.note
        );
        // Another body never matches a v2 signature.
        if v.version == "v2" {
            clock.set(ts);
            let fresh = ServiceVerifier::new(
                "receiver",
                caller(&v),
                vec![v.secret.as_bytes().to_vec()],
                Duration::from_secs(60),
            );
            let got = fresh.verify_at(&parts, format!("{}!", v.body).as_bytes(), ts);
            assert_eq!(got.unwrap_err().reason, "bad_signature", "{}", v.note);
        }
    }
    assert!(seen.0 >= 3 && seen.1 >= 4, "{seen:?}");
}

#[test]
fn the_signature_verifier_accepts_every_vector_with_its_admitted_version_only() {
    for v in vectors() {
        let ts: u64 = v.timestamp.parse().unwrap();
        let service = caller(&v);
        let secrets = [(service.to_owned(), vec![v.secret.as_bytes().to_vec()])];
        let verifier = SignatureVerifier::new(
            secrets.into_iter().collect(),
            Vec::new(),
            Duration::from_secs(60),
            100,
        );
        let parts = request(&v);
        let h = SigningHeaders::read(&parts.headers);
        let body = body_sha256(v.body.as_bytes());
        let signed = Signed {
            method: &v.method,
            path: parts.uri.path(),
            path_and_query: parts.uri.path_and_query().unwrap().as_str(),
            body_sha256: Some(&body),
            now: ts,
        };
        let (own, other) = if v.version == "v1" {
            (HmacVersions::V1, HmacVersions::V2)
        } else {
            (HmacVersions::V2, HmacVersions::V1)
        };
        let callers = [service];
        let admits = |versions| Admits {
            callers: &callers,
            versions,
            shared_secret: false,
        };
        assert_eq!(
            verifier.verify(&h, &signed, &admits(other)).unwrap_err().0,
            "version_not_allowed",
            "{}",
            v.note
        );
        let got = verifier
            .verify(&h, &signed, &admits(own))
            .unwrap_or_else(|e| panic!("{}: refused: {e:?}", v.note));
        assert_eq!(got.service, service, "{}", v.note);
    }
}
