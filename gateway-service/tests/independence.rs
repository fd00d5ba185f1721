//! A service can depend on this crate without the gateway's runtime: its
//! dependency tree (as `cargo tree` resolves it for this package alone)
//! holds no server, TLS, rate-limiting or routing crate, and without the
//! default `client` feature no HTTP client or async runtime either.

use std::process::Command;

/// `cargo tree` of this package with `args`, one crate name per line.
fn tree(args: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let out = Command::new(cargo)
        .args(["tree", "--offline", "--manifest-path", manifest])
        .args(["-p", "gateway-service", "-e", "normal", "--prefix", "none"])
        .args(["--format", "{p} {f}"])
        .args(args)
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("gateway-service ")),
        "{text}"
    );
    lines
}

fn name(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or_default()
}

/// The gateway's runtime crates: a service verifying or calling must not
/// pull any of them in.
const RUNTIME: &[&str] = &[
    "gateway",
    "gateway-codegen",
    "gateway-macros",
    "rustls",
    "tokio-rustls",
    "hyper-rustls",
    "rustls-native-certs",
    "webpki-roots",
    "governor",
    "matchit",
    "tracing-subscriber",
    "clap",
    "x509-parser",
];

#[test]
fn the_verifier_alone_needs_no_http_stack_no_runtime_and_nothing_of_the_gateway() {
    let lines = tree(&["--no-default-features"]);
    for line in &lines {
        let n = name(line);
        assert!(
            !RUNTIME.contains(&n)
                && !["hyper", "hyper-util", "h2", "tokio", "http-body-util"].contains(&n),
            "a verifier-only build depends on {line}"
        );
    }
    for needed in ["hmac", "sha2", "http"] {
        assert!(
            lines.iter().any(|l| name(l) == needed),
            "{needed}: {lines:?}"
        );
    }
}

#[test]
fn the_client_adds_hyper_s_client_only() {
    let lines = tree(&[]);
    for line in &lines {
        assert!(
            !RUNTIME.contains(&name(line)),
            "the client depends on {line}"
        );
        if name(line) == "hyper" || name(line) == "hyper-util" {
            let features = line.split_whitespace().nth(2).unwrap_or_default();
            assert!(
                !features.split(',').any(|f| f.starts_with("server")),
                "the client enables a server: {line}"
            );
        }
    }
    assert!(lines.iter().any(|l| name(l) == "hyper"), "{lines:?}");
}
