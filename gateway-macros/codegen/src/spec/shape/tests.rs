use super::int_help;

/// The range a parse error names for a whole-number field is the range that
/// field's own validation rule enforces: a value of the right type but out
/// of range gets a validation help naming the same bounds. Keeps the table
/// in `int_help` from drifting away from the `check_*` rules.
#[test]
fn parse_ranges_match_the_validation_rules() {
    let base = |service: &str, gateway: &str, policy: &str| {
        format!(
            r#"gateway:
  name: g
  listen: "127.0.0.1:8000"
{gateway}
services:
  orders:
    url: {{ env: ORDERS_URL, default: "http://localhost:9001" }}
    identity: {{ kind: none, unsigned: true }}
{service}
routes:
  - path: /orders
    service: orders
    upstream: /orders
    policy: {{ {policy} }}
"#
        )
    };
    let breaker = |f: &str| base(&format!("    circuit_breaker: {{ {f} }}"), "", "");
    let retries = |f: &str| base("", "", &format!("retries: {{ attempts: 3, {f} }}"));
    // (field, a spec with it out of range, the bounds both messages name)
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("failures", breaker("failures: 1001"), &["1", "1000"]),
        ("probes", breaker("probes: 101"), &["1", "100"]),
        ("failure_rate", breaker("failure_rate: 101"), &["1", "100"]),
        (
            "min_requests",
            breaker("failure_rate: 50, min_requests: 0"),
            &["1", "20"],
        ),
        (
            "nonce_cache",
            base("", "  service_auth: { nonce_cache: 10 }", ""),
            &["1000", "10000000"],
        ),
        (
            "attempts",
            retries("").replace("attempts: 3", "attempts: 11"),
            &["2", "10"],
        ),
        ("budget", retries("budget: 101"), &["1", "100"]),
        (
            "min_per_second",
            retries("min_per_second: 1001"),
            &["0", "1000"],
        ),
        ("on", retries("on: [404]"), &["408", "429"]),
        (
            "max_headers",
            base("", "  limits: { max_headers: 1001 }", ""),
            &["1", "1000"],
        ),
        (
            "burst",
            base("", "", "rate_limit: { rate: 10/min, burst: 0 }"),
            &["1"],
        ),
    ];
    for (field, yaml, bounds) in cases {
        let err = crate::compile_str("gateway.yaml", &yaml)
            .err()
            .unwrap_or_else(|| panic!("{field}: out of range, yet it compiled:\n{yaml}"));
        let help = err.0[0].help.clone().unwrap_or_default();
        let parse = int_help(field, "u32");
        for b in bounds {
            let has = |text: &str| text.split(|c: char| !c.is_ascii_digit()).any(|n| n == *b);
            assert!(
                has(&help) && has(&parse),
                "{field}: bound {b} differs: validation says `{help}`, parsing says `{parse}`"
            );
        }
    }
}
