//! API versions (contract §7) through the running gateway: selection by
//! `API-Version`, `Accept` and the default; 400 for unknown versions;
//! deprecation headers; 410 after a sunset; and a property test that the
//! choice never depends on header order.

#[path = "support/lib.rs"]
mod support;

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use serde_json::json;
use support::{echo_upstream, now, send, sign_claims, start, Got, Running};

mod versions {
    gateway_macros::spec!("tests/specs/versions.yaml");
}
use versions::Spec as Versioned;

const SECRET: &str = "versions-jwt-secret-6b1f0e";

async fn gateway() -> Running {
    let v1 = echo_upstream("widgets-v1").await;
    let v2 = echo_upstream("widgets").await;
    start::<Versioned>(&[
        ("VER_JWT_SECRET", SECRET.to_owned()),
        ("VER_V1_URL", format!("http://{v1}")),
        ("VER_V2_URL", format!("http://{v2}")),
    ])
    .await
}

fn bearer() -> String {
    let claims = json!({"sub": "carol", "exp": now() + 600});
    format!("Bearer {}", sign_claims(&claims, SECRET))
}

async fn get(gw: &Running, headers: &[(&str, &str)]) -> Got {
    let auth = bearer();
    let mut h = vec![("authorization", auth.as_str())];
    h.extend_from_slice(headers);
    send("GET", &gw.url("/api/widgets/7?full=1"), &h, "").await
}

/// Where the echo upstream says the request went.
fn landed(got: &Got) -> (String, String) {
    let j = got.json();
    (
        j["service"].as_str().unwrap_or_default().to_owned(),
        j["uri"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_version_serves_requests_that_name_none() {
    let gw = gateway().await;
    let got = get(&gw, &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        landed(&got),
        ("widgets".into(), "/v2/widgets/7?full=1".into())
    );
    assert_eq!(got.header("api-version"), Some("2"));
    assert_eq!(got.header("vary"), Some("API-Version, Accept"));
    assert_eq!(got.header("deprecation"), None);
    assert_eq!(got.header("sunset"), None);
    // A plain Accept names no version.
    let got = get(&gw, &[("accept", "application/json, */*;q=0.1")]).await;
    assert_eq!(got.header("api-version"), Some("2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn api_version_then_accept_select_each_versions_own_upstream() {
    let gw = gateway().await;
    let got = get(&gw, &[("api-version", "2024-06-01")]).await;
    assert_eq!(
        landed(&got),
        ("widgets".into(), "/2024-06-01/widgets/7?full=1".into())
    );
    assert_eq!(got.header("api-version"), Some("2024-06-01"));

    let got = get(&gw, &[("accept", "application/vnd.acme.v2024-06-01+json")]).await;
    assert_eq!(got.header("api-version"), Some("2024-06-01"));
    let got = get(&gw, &[("accept", "application/json; version=1")]).await;
    assert_eq!(
        landed(&got),
        ("widgets-v1".into(), "/v1/widgets/7?full=1".into())
    );
    // API-Version wins over Accept.
    let got = get(
        &gw,
        &[
            ("accept", "application/vnd.acme.v1+json"),
            ("api-version", "2"),
        ],
    )
    .await;
    assert_eq!(got.header("api-version"), Some("2"));
    assert_eq!(landed(&got).0, "widgets");
    // The client's API-Version header travels on for the upstream to see.
    assert_eq!(got.json()["headers"]["api-version"], "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deprecated_version_says_so_and_when_it_goes() {
    let gw = gateway().await;
    let got = get(&gw, &[("api-version", "1")]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("api-version"), Some("1"));
    assert_eq!(got.header("deprecation"), Some("@1767225600"));
    assert_eq!(got.header("sunset"), Some("Tue, 30 Jun 2099 00:00:00 GMT"));
    assert_eq!(
        got.header("link"),
        Some(r#"<https://docs.example.com/widgets/v1-deprecation>; rel="deprecation""#)
    );
    assert_eq!(got.header("vary"), Some("API-Version, Accept"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_past_its_sunset_is_gone() {
    let gw = gateway().await;
    let got = get(&gw, &[("api-version", "0")]).await;
    assert_eq!(got.status, 410);
    assert_eq!(got.json()["error"], "API version retired");
    assert_eq!(got.header("api-version"), Some("0"));
    assert_eq!(got.header("deprecation"), Some("@1577836800"));
    assert_eq!(got.header("sunset"), Some("Fri, 01 Jan 2021 00:00:00 GMT"));
    assert_eq!(got.header("content-type"), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_version_is_400_listing_the_supported_ones() {
    let gw = gateway().await;
    for h in [
        ("api-version", "3"),
        ("accept", "application/vnd.acme.v3+json"),
        ("accept", "application/json; version=v2"),
    ] {
        let got = get(&gw, &[h]).await;
        assert_eq!(got.status, 400, "{h:?}");
        let j = got.json();
        assert_eq!(j["error"], "Unsupported API version");
        assert_eq!(j["supported"], json!(["0", "1", "2", "2024-06-01"]));
        assert_eq!(j["request_id"], got.header("x-request-id").unwrap());
        assert_eq!(got.header("vary"), Some("API-Version, Accept"));
        assert_eq!(got.header("api-version"), None);
    }
    // Authentication comes first (contract §2): no token, 401.
    let got = send(
        "GET",
        &gw.url("/api/widgets/7"),
        &[("api-version", "3")],
        "",
    )
    .await;
    assert_eq!(got.status, 401);
}

/// Contract §2: version selection comes before the body limit, so a
/// request naming an unknown version with an oversized body is a 400, and
/// a known version with the same body is the 413.
#[tokio::test(flavor = "multi_thread")]
async fn version_selection_comes_before_the_body_limit() {
    let gw = gateway().await;
    let head = |version: &str| {
        format!(
            "POST /api/widgets/7 HTTP/1.1\r\nhost: gw.test\r\nauthorization: {}\r\napi-version: {version}\r\ncontent-length: 20000000\r\nconnection: close\r\n\r\n",
            bearer()
        )
    };
    let unknown = support::raw(gw.addr, head("9").as_bytes()).await;
    assert!(unknown.starts_with("HTTP/1.1 400"), "{unknown}");
    assert!(unknown.contains("Unsupported API version"), "{unknown}");
    let known = support::raw(gw.addr, head("2").as_bytes()).await;
    assert!(known.starts_with("HTTP/1.1 413"), "{known}");
}

fn select(headers: &[(&'static str, String)]) -> Result<usize, ()> {
    let route = <Versioned as gateway::spec::Spec>::route(versions::RouteId::ApiWidgetsId);
    let set = route.versions.expect("the route has versions");
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(*k, HeaderValue::from_str(v).unwrap());
    }
    set.select(&map).map_err(|_| ())
}

fn media_range() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec!["0", "1", "2", "2024-06-01", "9", "v2"]);
    let q = prop::sample::select(vec!["", ";q=1", ";q=0.9", ";q=0.5", ";q=0"]);
    (0..4u8, name, q).prop_map(|(kind, n, q)| match kind {
        0 => format!("application/vnd.acme.v{n}+json{q}"),
        1 => format!("application/json;version={n}{q}"),
        2 => format!("text/html{q}"),
        _ => format!("application/vnd.other.v{n}+json{q}"),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever the order of headers, of header lines and of the ranges
    /// within one `Accept`, the same version (or the same refusal) comes out.
    #[test]
    fn selection_ignores_header_order(
        api in prop::option::of(prop::sample::select(vec!["1", "2", "7"])),
        ranges in prop::collection::vec(media_range(), 0..6),
        split in 0usize..6,
        seed in any::<u64>(),
    ) {
        let split = split.min(ranges.len());
        let mut headers: Vec<(&'static str, String)> = Vec::new();
        if let Some(a) = api {
            headers.push(("api-version", a.to_owned()));
        }
        if split > 0 {
            headers.push(("accept", ranges[..split].join(", ")));
        }
        if split < ranges.len() {
            headers.push(("accept", ranges[split..].join(", ")));
        }
        let want = select(&headers);
        // Reverse the header lines, then the ranges in one line, then a
        // seeded rotation of all ranges.
        let mut reversed = headers.clone();
        reversed.reverse();
        prop_assert_eq!(select(&reversed), want);
        let mut flipped: Vec<(&'static str, String)> = Vec::new();
        if let Some(a) = api {
            flipped.push(("api-version", a.to_owned()));
        }
        let mut all = ranges.clone();
        all.reverse();
        let k = if all.is_empty() { 0 } else { (seed as usize) % all.len() };
        all.rotate_left(k);
        if !all.is_empty() {
            flipped.insert(0, ("accept", all.join(",")));
        }
        prop_assert_eq!(select(&flipped), want);
    }
}

/// The sunset is judged on the gateway's one clock (`Gateway::with_clock`),
/// not the wall clock: on a manual clock half a year before v0's sunset
/// (2021-01-01) v0 is forwarded, and once the clock reaches the sunset it
/// is gone. No sleep, no network (`Gateway::rehearse`).
#[test]
fn the_sunset_is_judged_on_the_gateways_clock() {
    use gateway::config::StartupEnv;
    use gateway::error::ErrorKind;
    use gateway::server::{Connection, Gateway};
    use gateway::time::ManualClock;

    let env = StartupEnv::from_pairs([
        ("VER_JWT_SECRET", SECRET),
        ("VER_V1_URL", "http://127.0.0.1:9"),
        ("VER_V2_URL", "http://127.0.0.1:9"),
    ]);
    // 2020-07-01T00:00:00Z.
    let time = ManualClock::new(1_593_561_600);
    let gw = Gateway::<Versioned>::with_clock(&env, time.clock()).unwrap();
    let conn = Connection {
        peer: "127.0.0.1:40000".parse().unwrap(),
        tls: false,
        client: gateway::tls::ClientIdentity::Anonymous,
    };
    let request = || {
        http::Request::get("/api/widgets/7")
            .header("host", "gateway.test")
            .header("authorization", bearer())
            .header("api-version", "0")
            .body(())
            .unwrap()
    };
    let head = gw.rehearse(request(), &conn).unwrap();
    let head = head.expect("v0 is forwarded before its sunset");
    assert_eq!(head.uri.path(), "/v0/widgets/7");
    // 184 days later: 2021-01-01T00:00:00Z, the sunset.
    time.advance(std::time::Duration::from_secs(184 * 86_400));
    let refused = gw.rehearse(request(), &conn).unwrap_err();
    assert_eq!(refused.kind, ErrorKind::VersionGone);
}
