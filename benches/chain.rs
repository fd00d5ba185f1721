//! A full policy chain without the network: one request head through
//! everything the gateway does before it contacts the upstream
//! ([`Gateway::rehearse`]): ids, header hygiene, path check, match, method,
//! rate limit, JWT, the upstream URI and headers, HMAC v2 signing. The
//! specs are the load benchmark's (`benches/load/full.yaml` and
//! `bare.yaml`), so these figures are the policy part of its CPU per
//! request.
//!
//! `cargo bench --bench chain`

use std::net::SocketAddr;

use divan::{black_box, Bencher};
use gateway::config::StartupEnv;
use gateway::server::{Connection, Gateway};
use gateway::tls::ClientIdentity;

mod full {
    gateway_macros::spec!("benches/load/full.yaml");
}

mod bare {
    gateway_macros::spec!("benches/load/bare.yaml");
}

fn main() {
    divan::main();
}

const JWT_SECRET: &str = "bench-jwt-secret-0123456789abcdef";

fn env() -> StartupEnv {
    StartupEnv::from_pairs([
        ("BENCH_JWT_SECRET", JWT_SECRET),
        ("BENCH_RULES_SECRET", "bench-rules-secret-0123456789abcdef"),
    ])
}

fn conn() -> Connection {
    Connection {
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
        tls: false,
        client: ClientIdentity::Anonymous,
    }
}

/// A valid HS256 token for `sub`.
fn token(sub: &str) -> String {
    let now = gateway::auth::hmac::now_unix();
    let claims = serde_json::json!({ "sub": sub, "exp": now + 3600, "iat": now });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// The request wrk sends in the load benchmark.
fn request(bearer: &str) -> http::Request<()> {
    http::Request::get("/api/v1/rules/r1?expand=owner")
        .header("host", "127.0.0.1:18080")
        .header("user-agent", "wrk")
        .header("authorization", bearer)
        .body(())
        .unwrap()
}

/// JWT (a client's repeated token: a verified-token cache hit), rate limit
/// keyed on the user, outbound HMAC v2 signing.
#[divan::bench]
fn full_chain(b: Bencher) {
    let gw = Gateway::<full::Spec>::new(&env()).unwrap();
    let (conn, bearer) = (conn(), format!("Bearer {}", token("bench-user")));
    let head = gw.rehearse(request(&bearer), &conn).unwrap().unwrap();
    assert!(
        head.headers.contains_key("x-internal-service-auth"),
        "{head:?}"
    );
    b.with_inputs(|| request(&bearer))
        .bench_local_values(|req| gw.rehearse(black_box(req), &conn).unwrap());
}

/// The same, with a token the gateway has not seen (full signature check
/// and claim parsing): one new client per request.
#[divan::bench]
fn full_chain_new_token(b: Bencher) {
    let gw = Gateway::<full::Spec>::new(&env()).unwrap();
    let conn = conn();
    let mut n = 0u64;
    b.with_inputs(|| {
        n += 1;
        request(&format!("Bearer {}", token(&format!("user-{n}"))))
    })
    .bench_local_values(|req| gw.rehearse(black_box(req), &conn).unwrap());
}

/// No policy at all: what every request pays (ids, hygiene, routing, the
/// upstream URI and headers).
#[divan::bench]
fn no_policies(b: Bencher) {
    let gw = Gateway::<bare::Spec>::new(&env()).unwrap();
    let conn = conn();
    b.with_inputs(|| request("Bearer x"))
        .bench_local_values(|req| gw.rehearse(black_box(req), &conn).unwrap());
}
