//! The HMAC test vectors of `tests/vectors/hmac.json` (computed with
//! Python's hmac/hashlib, independently of the gateway) against the
//! verifier the gateway builds from its spec. The canonical strings,
//! signatures and body hashes are the `gateway-service` crate's; its
//! `tests/vectors.rs` checks them (and the services' verifier) against the
//! same file.

use std::collections::BTreeSet;

use gateway::auth::hmac::{Admits, HmacVerifier, HmacVersions, ServiceAuthSpec, Signed};
use gateway::auth::SigningHeaders;
use gateway::config::StartupEnv;
use http::HeaderValue;
use sha2::Digest;

/// The vector file, from this crate's manifest directory.
const FILE: &str = "tests/vectors/hmac.json";

#[path = "vectors/load.rs"]
mod load;
use load::{vectors, Vector};

fn header(s: &str) -> Option<HeaderValue> {
    (!s.is_empty()).then(|| HeaderValue::from_str(s).unwrap())
}

fn signing_headers(v: &Vector) -> SigningHeaders {
    SigningHeaders {
        signature: header(&v.header),
        service: header(if v.service.is_empty() {
            "billing"
        } else {
            &v.service
        }),
        timestamp: header(&v.timestamp),
        nonce: header(&v.nonce),
        tenant: header(&v.tenant),
    }
}

/// A verifier whose only caller is `service`, with `secret` in its variable.
fn verifier_for(service: &'static str, secret: &str) -> HmacVerifier {
    let callers: &'static [(&'static str, &'static str)] =
        Box::leak(vec![(service, "VECTOR_CALLER_SECRET")].into_boxed_slice());
    let spec = ServiceAuthSpec {
        window: std::time::Duration::from_secs(60),
        callers,
        shared_secret_env: None,
        nonce_cache: 1000,
    };
    let env = StartupEnv::from_pairs([("VECTOR_CALLER_SECRET", secret)]);
    HmacVerifier::new(&spec, &env).expect("verifier")
}

fn signed<'a>(v: &'a Vector, now: u64) -> Signed<'a> {
    let path_and_query = if v.version == "v1" {
        v.path.as_str()
    } else {
        v.path_and_query.as_str()
    };
    Signed {
        method: &v.method,
        path: path_and_query.split('?').next().unwrap(),
        path_and_query,
        body_sha256: Some(&v.body_sha256)
            .filter(|s| !s.is_empty())
            .map(|s| s.as_str()),
        now,
    }
}

#[test]
fn the_verifier_accepts_every_v2_vector_at_its_timestamp() {
    let mut checked = BTreeSet::new();
    for v in vectors().iter().filter(|v| v.version == "v2") {
        let service: &'static str = Box::leak(v.service.clone().into_boxed_str());
        let verifier = verifier_for(service, &v.secret);
        let now: u64 = v.timestamp.parse().unwrap();
        let admits = Admits {
            callers: &[service],
            versions: HmacVersions::V2,
            shared_secret: false,
        };
        let got = verifier
            .verify(&signing_headers(v), &signed(v, now), &admits)
            .unwrap_or_else(|e| panic!("{}: refused: {e:?}", v.note));
        assert_eq!(got.service, v.service, "{}", v.note);
        assert_eq!(
            got.tenant.as_deref(),
            Some(v.tenant.as_str()).filter(|t| !t.is_empty()),
            "{}",
            v.note
        );
        // A second verification of the same vector is a replay.
        let again = verifier.verify(&signing_headers(v), &signed(v, now), &admits);
        assert_eq!(again.unwrap_err().0, "replayed_nonce", "{}", v.note);
        checked.insert(v.note.clone());
    }
    assert!(checked.len() >= 4);
}

#[test]
fn the_verifier_applies_the_window_to_the_vectors() {
    for v in vectors().iter().filter(|v| v.version == "v2") {
        let service: &'static str = Box::leak(v.service.clone().into_boxed_str());
        let ts: u64 = v.timestamp.parse().unwrap();
        let admits = Admits {
            callers: &[service],
            versions: HmacVersions::V2,
            shared_secret: false,
        };
        let mut times = vec![ts + 60, ts + 61];
        if ts >= 61 {
            times.extend([ts - 60, ts - 61]);
        }
        for now in times {
            // A fresh verifier each time: otherwise the nonce is a replay.
            let verifier = verifier_for(service, &v.secret);
            let got = verifier.verify(&signing_headers(v), &signed(v, now), &admits);
            if now.abs_diff(ts) <= 60 {
                assert!(got.is_ok(), "{} at {now}: {got:?}", v.note);
            } else {
                assert_eq!(got.unwrap_err().0, "stale_timestamp", "{} at {now}", v.note);
            }
        }
    }
}

#[test]
fn the_verifier_accepts_every_v1_vector_at_its_timestamp() {
    for v in vectors().iter().filter(|v| v.version == "v1") {
        let verifier = verifier_for("billing", &v.secret);
        let now: u64 = v.timestamp.parse().unwrap();
        let v1_only = Admits {
            callers: &["billing"],
            versions: HmacVersions::V1,
            shared_secret: false,
        };
        let got = verifier
            .verify(&signing_headers(v), &signed(v, now), &v1_only)
            .unwrap_or_else(|e| panic!("{}: refused: {e:?}", v.note));
        assert_eq!(got.service, "billing");
        assert_eq!(got.tenant, None);
        let v2_only = Admits {
            versions: HmacVersions::V2,
            ..v1_only
        };
        let got = verifier.verify(&signing_headers(v), &signed(v, now), &v2_only);
        assert_eq!(got.unwrap_err().0, "version_not_allowed", "{}", v.note);
    }
}

#[test]
fn a_vector_with_another_secret_or_a_changed_field_is_refused() {
    for v in vectors().iter().filter(|v| v.version == "v2") {
        let service: &'static str = Box::leak(v.service.clone().into_boxed_str());
        let now: u64 = v.timestamp.parse().unwrap();
        let admits = Admits {
            callers: &[service],
            versions: HmacVersions::V2,
            shared_secret: false,
        };
        let verifier = verifier_for(service, &format!("{}-other", v.secret));
        let got = verifier.verify(&signing_headers(v), &signed(v, now), &admits);
        assert_eq!(got.unwrap_err().0, "bad_signature", "{}", v.note);

        let verifier = verifier_for(service, &v.secret);
        let other_body = hex::encode(sha2::Sha256::digest(format!("{}!", v.body)));
        let mut req = signed(v, now);
        req.body_sha256 = Some(&other_body);
        let got = verifier.verify(&signing_headers(v), &req, &admits);
        assert_eq!(got.unwrap_err().0, "bad_signature", "{}", v.note);
    }
}
