use super::pattern::{parse_pattern, parse_template, Part, Tier};
use super::values::{base_url, duration_ms, env_name};
use super::*;

#[test]
fn router_paths_expand_rests_below_a_parameter() {
    let paths = |p: &str| parse_pattern(p).unwrap().router_paths();
    assert_eq!(paths("/a/{id}"), vec![("/a/{p0}".to_owned(), Tier::Exact)]);
    assert_eq!(paths("/"), vec![("/".to_owned(), Tier::Exact)]);
    assert_eq!(paths("/a/"), vec![("/a/".to_owned(), Tier::Exact)]);
    assert_eq!(
        paths("/a*"),
        vec![
            ("/a".to_owned(), Tier::Exact),
            ("/a/".to_owned(), Tier::Exact),
            ("/a/{p0}".to_owned(), Tier::Rest),
            ("/a/{p0}/".to_owned(), Tier::Rest),
            ("/a/{p0}/{*p1}".to_owned(), Tier::Rest),
        ]
    );
    assert_eq!(
        paths("/t/{x}/{*rest}"),
        vec![
            ("/t/{p0}/{p1}".to_owned(), Tier::Rest),
            ("/t/{p0}/{p1}/".to_owned(), Tier::Rest),
            ("/t/{p0}/{p1}/{*p2}".to_owned(), Tier::Rest),
        ]
    );
    assert_eq!(parse_pattern("/t/{x}/f*").unwrap().rest_segment(), Some(3));
    assert_eq!(parse_pattern("/t/{*r}").unwrap().rest_segment(), Some(1));
    assert_eq!(parse_pattern("/t/{x}").unwrap().rest_segment(), None);
}

#[test]
fn templates_reference_parameters_by_position() {
    let p = parse_pattern("/a/{x}/b/{y}/{*rest}").unwrap();
    assert_eq!(
        parse_template("/u/{y}/{x}/{*rest}", &p).unwrap(),
        vec![
            Part::Lit("/u/".into()),
            Part::Param(1),
            Part::Lit("/".into()),
            Part::Param(0),
            Part::Lit("/".into()),
            Part::Rest,
        ]
    );
    let prefix = parse_pattern("/a*").unwrap();
    assert_eq!(parse_template("/*", &prefix).unwrap(), vec![Part::Suffix]);
    assert_eq!(
        parse_template("/x*", &prefix).unwrap(),
        vec![Part::Lit("/x".into()), Part::Suffix]
    );
    assert!(parse_template("/{z}", &p).is_err());
    assert!(
        parse_template("/{rest}", &p).is_err(),
        "a catch-all is written {{*rest}}"
    );
    assert!(parse_template("/x*", &p).is_err(), "not a prefix route");
}

#[test]
fn scalar_values() {
    assert_eq!(duration_ms("250ms"), Ok(250));
    assert_eq!(duration_ms("5s"), Ok(5000));
    assert_eq!(duration_ms("2m"), Ok(120_000));
    assert_eq!(duration_ms("1h"), Ok(3_600_000));
    for bad in ["5", "0s", "1.5s", "s", "-1s", "25h", "5 s"] {
        assert!(duration_ms(bad).is_err(), "{bad}");
    }
    for good in [
        "http://localhost:8001",
        "https://svc.internal/base",
        "http://[::1]:80",
        "http://10.0.0.1",
    ] {
        assert!(base_url(good).is_ok(), "{good}");
    }
    for bad in [
        "ftp://x",
        "http://",
        "http://u:p@x",
        "http://x?q",
        "http://x:0",
        "http://::1",
        "localhost:80",
        "http://x/../y",
    ] {
        assert!(base_url(bad).is_err(), "{bad}");
    }
    assert!(env_name("ORCHESTRATION_URL").is_ok());
    assert!(env_name("_X1").is_ok());
    let secret = env_name("s3cr3t-value").unwrap_err();
    assert!(
        !secret.message.contains("s3cr3t"),
        "never repeats a possible secret"
    );
    assert!(env_name("orders_url")
        .unwrap_err()
        .message
        .contains("upper case"));
}

#[test]
fn derived_ids_name_the_path() {
    let id = |p: &str| derive_id(&parse_pattern(p).unwrap());
    assert_eq!(
        id("/api/v1/agents/{id}/execute"),
        "api_v1_agents_id_execute"
    );
    assert_eq!(id("/api/v1/conversations*"), "api_v1_conversations");
    assert_eq!(id("/api/insights/{*rest}"), "api_insights_rest");
    assert_eq!(id("/"), "root");
    assert_eq!(id("/2fa/x-y"), "r_2fa_x_y");
}

#[test]
fn a_sunset_already_past_is_a_build_warning() {
    let spec = |sunset: &str| {
        format!(
            r#"gateway: {{ name: g, listen: "127.0.0.1:8000" }}
services:
  w:
    url: {{ env: W_URL, default: "http://localhost:9001" }}
    identity: {{ kind: none, unsigned: true }}
routes:
  - path: /w
    versions:
      vendor: acme
      default: 2
      live:
        - {{ version: 1, service: w, upstream: /w1, deprecated: {{ since: 2020-01-01, sunset: {sunset} }} }}
        - {{ version: 2, service: w, upstream: /w2 }}
"#
        )
    };
    let past = crate::compile_str("gateway.yaml", &spec("2021-06-30")).unwrap();
    let text = past.warnings().render();
    assert!(
        text.contains("gateway.yaml:12:93: warning")
            && text.contains("version `1` is past its sunset (2021-06-30)"),
        "{text}"
    );
    let future = crate::compile_str("gateway.yaml", &spec("2099-06-30")).unwrap();
    assert_eq!(future.warnings().warnings().count(), 0);
}

#[test]
fn head_limits_accept_what_hyper_can_honour() {
    use super::limits::{max_head, max_headers};
    for (text, want) in [
        ("8KiB", Some(8 * 1024)),
        ("64KiB", Some(64 * 1024)),
        ("1MiB", Some(1 << 20)),
        ("8191", None),
        ("4KiB", None),
        ("1025KiB", None),
        ("99999999999999999999GiB", None),
        ("64 KiB", None),
        ("lots", None),
    ] {
        assert_eq!(max_head(text).ok(), want, "{text}");
    }
    for (n, ok) in [
        (0, false),
        (1, true),
        (100, true),
        (1000, true),
        (1001, false),
    ] {
        assert_eq!(max_headers(n).is_ok(), ok, "{n}");
    }
}

#[test]
fn a_service_no_route_reaches_is_a_build_warning() {
    // `v2` is reached only as a version, `canary` only as a canary: both
    // are used. `spare` is reached by nothing.
    let yaml = r#"gateway: { name: g, listen: "127.0.0.1:8000" }
services:
  canary:
    url: { env: C_URL, default: "http://localhost:9003" }
    identity: { kind: none, unsigned: true }
  spare:
    url: { env: S_URL, default: "http://localhost:9004" }
    identity: { kind: none, unsigned: true }
  v1:
    url: { env: V1_URL, default: "http://localhost:9001" }
    identity: { kind: none, unsigned: true }
  v2:
    url: { env: V2_URL, default: "http://localhost:9002" }
    identity: { kind: none, unsigned: true }
routes:
  - path: /w
    versions:
      vendor: acme
      default: 1
      live:
        - { version: 1, service: v1, upstream: /w1 }
        - { version: 2, service: v2, upstream: /w2 }
  - path: /c
    service: v1
    upstream: /c
    canary: { service: canary, weight: 5 }
"#;
    let compiled = crate::compile_str("gateway.yaml", yaml).unwrap();
    let warnings: Vec<_> = compiled.warnings().warnings().collect();
    assert_eq!(warnings.len(), 1, "{}", compiled.warnings().render());
    assert_eq!(
        warnings[0].one_line(),
        "gateway.yaml:6:3: warning: service `spare` is declared but no route uses it \
         (help: route to it with `service: spare`, or remove it from `services:`)"
    );
    let used = yaml.replace(
        "service: v1\n    upstream: /c",
        "service: spare\n    upstream: /c",
    );
    let compiled = crate::compile_str("gateway.yaml", &used).unwrap();
    assert!(
        compiled
            .warnings()
            .0
            .iter()
            .all(|w| !w.message.contains("no route uses")),
        "{}",
        compiled.warnings().render()
    );
}
