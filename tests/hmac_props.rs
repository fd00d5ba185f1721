//! Properties of HMAC service-auth verification (contract §5): a signature
//! made by an independent signer verifies with `HmacVerifier::verify`, and
//! changing any one signed field makes it fail.

use gateway::auth::hmac::{Admits, HmacVerifier, HmacVersions, ServiceAuthSpec, Signed, Verified};
use gateway::auth::SigningHeaders;
use gateway::config::StartupEnv;
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderValue;
use proptest::prelude::*;
use sha2::Digest;

const WINDOW: u64 = 60;

/// Two callers with the same secret, so that a changed service name fails
/// on the canonical string alone, not on the key.
const SPEC: ServiceAuthSpec = ServiceAuthSpec {
    window: std::time::Duration::from_secs(WINDOW),
    callers: &[
        ("billing", "PROP_SECRET"),
        ("reporting", "PROP_SECRET"),
        ("ledger", "PROP_SECRET"),
    ],
    shared_secret_env: None,
    nonce_cache: 10_000,
};
const CALLERS: &[&str] = &["billing", "reporting", "ledger"];

fn verifier(secret: &str) -> HmacVerifier {
    HmacVerifier::new(&SPEC, &StartupEnv::from_pairs([("PROP_SECRET", secret)])).unwrap()
}

fn hmac_hex(secret: &str, canonical: &str) -> String {
    let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(canonical.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

fn sha256_hex(body: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(body))
}

/// A v2 request: the fields the signature covers.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    path_and_query: String,
    timestamp: u64,
    nonce: String,
    service: String,
    tenant: String,
    body: Vec<u8>,
}

impl Req {
    fn sign_v2(&self, secret: &str) -> String {
        let canonical = [
            "v2".to_owned(),
            self.method.clone(),
            self.path_and_query.clone(),
            self.timestamp.to_string(),
            self.nonce.clone(),
            self.service.clone(),
            self.tenant.clone(),
            sha256_hex(&self.body),
        ]
        .join("\n");
        format!("v2={}", hmac_hex(secret, &canonical))
    }

    fn path(&self) -> &str {
        self.path_and_query.split('?').next().unwrap()
    }

    fn sign_v1(&self, secret: &str) -> String {
        hmac_hex(
            secret,
            &format!("{}\n{}\n{}", self.method, self.path(), self.timestamp),
        )
    }

    /// Verifies `self` as sent with `signature`, at `now`.
    fn verify(
        &self,
        v: &HmacVerifier,
        signature: &str,
        now: u64,
        versions: HmacVersions,
    ) -> Result<Verified, &'static str> {
        let h = SigningHeaders {
            signature: Some(HeaderValue::from_str(signature).unwrap()),
            service: Some(HeaderValue::from_str(&self.service).unwrap()),
            timestamp: Some(HeaderValue::from_str(&self.timestamp.to_string()).unwrap()),
            nonce: Some(HeaderValue::from_str(&self.nonce).unwrap()),
            tenant: (!self.tenant.is_empty()).then(|| HeaderValue::from_str(&self.tenant).unwrap()),
        };
        let body = sha256_hex(&self.body);
        let signed = Signed {
            method: &self.method,
            path: self.path(),
            path_and_query: &self.path_and_query,
            body_sha256: Some(&body),
            now,
        };
        let admits = Admits {
            callers: CALLERS,
            versions,
            shared_secret: false,
        };
        v.verify(&h, &signed, &admits).map_err(|(reason, _)| reason)
    }
}

fn method() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
    ])
    .prop_map(str::to_owned)
}

fn path() -> impl Strategy<Value = String> {
    "(/([A-Za-z0-9._~-]|%[0-9A-F]{2}){1,12}){1,4}/?"
}

fn path_and_query() -> impl Strategy<Value = String> {
    (path(), prop::option::of("[A-Za-z0-9=&%._-]{0,24}")).prop_map(|(p, q)| match q {
        Some(q) => format!("{p}?{q}"),
        None => p,
    })
}

fn nonce() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{16,128}"
}

fn service() -> impl Strategy<Value = String> {
    prop::sample::select(CALLERS.to_vec()).prop_map(str::to_owned)
}

fn tenant() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[A-Za-z0-9._-]{1,24}"]
}

fn req() -> impl Strategy<Value = Req> {
    (
        method(),
        path_and_query(),
        1_000_000u64..4_000_000_000,
        nonce(),
        service(),
        tenant(),
        prop::collection::vec(any::<u8>(), 0..256),
    )
        .prop_map(
            |(method, path_and_query, timestamp, nonce, service, tenant, body)| Req {
                method,
                path_and_query,
                timestamp,
                nonce,
                service,
                tenant,
                body,
            },
        )
}

fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&*+./:;<=>?@^_~-]{1,64}"
}

/// A time inside the window around `ts`.
fn skewed(ts: u64, skew: i64) -> u64 {
    ts.checked_add_signed(skew).unwrap()
}

/// One signed field changed.
#[derive(Debug, Clone)]
enum Change {
    Method(String),
    PathAndQuery(String),
    /// A different timestamp, still inside the window of `now`.
    Timestamp(i64),
    Nonce(String),
    Service(String),
    Tenant(String),
    Body(Vec<u8>),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        method().prop_map(Change::Method),
        path_and_query().prop_map(Change::PathAndQuery),
        (-(WINDOW as i64)..=WINDOW as i64).prop_map(Change::Timestamp),
        nonce().prop_map(Change::Nonce),
        service().prop_map(Change::Service),
        tenant().prop_map(Change::Tenant),
        prop::collection::vec(any::<u8>(), 0..256).prop_map(Change::Body),
    ]
}

impl Change {
    /// `r` with this change applied, when it changes anything.
    fn apply(&self, r: &Req, now: u64) -> Option<Req> {
        let mut t = r.clone();
        match self {
            Change::Method(m) => t.method = m.clone(),
            Change::PathAndQuery(p) => t.path_and_query = p.clone(),
            Change::Timestamp(s) => t.timestamp = skewed(now, *s),
            Change::Nonce(n) => t.nonce = n.clone(),
            Change::Service(s) => t.service = s.clone(),
            Change::Tenant(x) => t.tenant = x.clone(),
            Change::Body(b) => t.body = b.clone(),
        }
        let same = t.method == r.method
            && t.path_and_query == r.path_and_query
            && t.timestamp == r.timestamp
            && t.nonce == r.nonce
            && t.service == r.service
            && t.tenant == r.tenant
            && t.body == r.body;
        (!same).then_some(t)
    }

    /// Whether v1 covers this field.
    fn in_v1(&self, r: &Req, t: &Req) -> bool {
        match self {
            Change::Method(_) | Change::Timestamp(_) => true,
            Change::PathAndQuery(_) => r.path() != t.path(),
            _ => false,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn v2_signed_independently_verifies(
        r in req(),
        secret in secret(),
        skew in -(WINDOW as i64)..=WINDOW as i64,
    ) {
        let v = verifier(&secret);
        let now = skewed(r.timestamp, skew);
        let got = r.verify(&v, &r.sign_v2(&secret), now, HmacVersions::V2);
        let got = got.map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
        prop_assert_eq!(&got.service, &r.service);
        prop_assert_eq!(got.tenant, (!r.tenant.is_empty()).then(|| r.tenant.clone()));
        // Also where a route accepts both versions.
        let v = verifier(&secret);
        let both = HmacVersions(HmacVersions::V1.0 | HmacVersions::V2.0);
        prop_assert!(r.verify(&v, &r.sign_v2(&secret), now, both).is_ok());
    }

    #[test]
    fn v2_fails_when_any_signed_field_changes(
        r in req(),
        secret in secret(),
        change in change(),
    ) {
        let now = r.timestamp;
        let Some(t) = change.apply(&r, now) else {
            return Ok(());
        };
        let signature = r.sign_v2(&secret);
        // Fresh verifier: the nonce is new to it.
        let got = t.verify(&verifier(&secret), &signature, now, HmacVersions::V2);
        prop_assert_eq!(got.map(|_| ()), Err("bad_signature"), "{:?} -> {:?}", r, t);
        // The untampered request still verifies on that verifier's twin.
        prop_assert!(r.verify(&verifier(&secret), &signature, now, HmacVersions::V2).is_ok());
    }

    #[test]
    fn v2_fails_with_any_other_secret(
        r in req(),
        secret in secret(),
        other in secret(),
    ) {
        prop_assume!(secret != other);
        let got = r.verify(&verifier(&other), &r.sign_v2(&secret), r.timestamp, HmacVersions::V2);
        prop_assert_eq!(got.map(|_| ()), Err("bad_signature"));
    }

    #[test]
    fn v2_nonces_are_single_use_on_one_verifier(
        r in req(),
        other in req(),
        secret in secret(),
    ) {
        let v = verifier(&secret);
        prop_assert!(r.verify(&v, &r.sign_v2(&secret), r.timestamp, HmacVersions::V2).is_ok());
        prop_assert_eq!(
            r.verify(&v, &r.sign_v2(&secret), r.timestamp, HmacVersions::V2).map(|_| ()),
            Err("replayed_nonce")
        );
        // Another request from the same service, correctly signed, with the same nonce.
        let reuse = Req { nonce: r.nonce.clone(), service: r.service.clone(), timestamp: r.timestamp, ..other };
        prop_assert_eq!(
            reuse.verify(&v, &reuse.sign_v2(&secret), r.timestamp, HmacVersions::V2).map(|_| ()),
            Err("replayed_nonce")
        );
    }

    #[test]
    fn v1_signed_independently_verifies_without_a_tenant(
        r in req(),
        secret in secret(),
        skew in -(WINDOW as i64)..=WINDOW as i64,
    ) {
        let now = skewed(r.timestamp, skew);
        let got = r.verify(&verifier(&secret), &r.sign_v1(&secret), now, HmacVersions::V1);
        let got = got.map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
        prop_assert_eq!(&got.service, &r.service);
        prop_assert_eq!(got.tenant, None, "v1 does not cover the tenant");
        // A v1 signature is not accepted where only v2 is.
        let got = r.verify(&verifier(&secret), &r.sign_v1(&secret), now, HmacVersions::V2);
        prop_assert_eq!(got.map(|_| ()), Err("version_not_allowed"));
    }

    #[test]
    fn v1_fails_when_method_path_or_timestamp_changes(
        r in req(),
        secret in secret(),
        change in prop_oneof![
            method().prop_map(Change::Method),
            path_and_query().prop_map(Change::PathAndQuery),
            (-(WINDOW as i64)..=WINDOW as i64).prop_map(Change::Timestamp),
        ],
    ) {
        let now = r.timestamp;
        let Some(t) = change.apply(&r, now) else {
            return Ok(());
        };
        let signature = r.sign_v1(&secret);
        let got = t.verify(&verifier(&secret), &signature, now, HmacVersions::V1);
        if change.in_v1(&r, &t) {
            prop_assert_eq!(got.map(|_| ()), Err("bad_signature"), "{:?} -> {:?}", r, t);
        } else {
            // Only the query changed: v1 does not cover it.
            prop_assert!(got.is_ok(), "{:?} -> {:?}", r, t);
        }
    }

    #[test]
    fn v1_ignores_what_it_does_not_sign(
        r in req(),
        secret in secret(),
        change in prop_oneof![
            nonce().prop_map(Change::Nonce),
            tenant().prop_map(Change::Tenant),
            prop::collection::vec(any::<u8>(), 0..64).prop_map(Change::Body),
        ],
    ) {
        let Some(t) = change.apply(&r, r.timestamp) else {
            return Ok(());
        };
        let got = t.verify(&verifier(&secret), &r.sign_v1(&secret), r.timestamp, HmacVersions::V1);
        prop_assert!(got.is_ok(), "{:?}", got);
    }

    #[test]
    fn timestamps_outside_the_window_are_stale(
        r in req(),
        secret in secret(),
        beyond in 1u64..100_000,
        future in any::<bool>(),
    ) {
        let now = if future { r.timestamp - WINDOW - beyond } else { r.timestamp + WINDOW + beyond };
        for (sig, versions) in [(r.sign_v2(&secret), HmacVersions::V2), (r.sign_v1(&secret), HmacVersions::V1)] {
            let got = r.verify(&verifier(&secret), &sig, now, versions);
            prop_assert_eq!(got.map(|_| ()), Err("stale_timestamp"));
        }
    }
}

/// Contract §5: "for v2 a nonce already seen from that service inside the
/// window (whatever request it came with)" is rejected. A request signed
/// with a timestamp up to one window in the future is accepted, so its
/// exact replay stays inside the window until `first seen + 2 windows`,
/// inclusive; every such replay must be refused.
#[test]
fn a_replay_is_refused_for_as_long_as_its_timestamp_is_inside_the_window() {
    let t0 = 1_700_000_000u64;
    let mut accepted = Vec::new();
    for skew in -(WINDOW as i64)..=WINDOW as i64 {
        let r = Req {
            method: "POST".into(),
            path_and_query: "/internal/v2/pay".into(),
            timestamp: skewed(t0, skew),
            nonce: format!("replay-nonce-{:04}", skew + 100),
            service: "billing".into(),
            tenant: "acme".into(),
            body: b"{}".to_vec(),
        };
        let v = verifier("replay-secret");
        let sig = r.sign_v2("replay-secret");
        assert!(
            r.verify(&v, &sig, t0, HmacVersions::V2).is_ok(),
            "skew {skew}"
        );
        let last = r.timestamp + WINDOW;
        for now in t0..=last {
            if let Ok(ok) = r.verify(&v, &sig, now, HmacVersions::V2) {
                accepted.push((skew, now - t0, ok.service));
            }
        }
    }
    assert!(
        accepted.is_empty(),
        "replays accepted (timestamp skew at first sight, seconds after first sight): {accepted:?}"
    );
}
