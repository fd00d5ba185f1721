//! The `gateway` binary itself: start-up, `/health`, SIGTERM, and a clear
//! start-up error for a bad environment.
//!
//! The binary serves the bundled `gateway.yaml`, so these tests assert only
//! what holds for any spec, and take the variables it needs from the
//! compiled table (`gateway::routes`): editing a route needs no edit here.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gateway::outbound::OutboundIdentity;
use gateway::routes::Spec as Bundled;
use gateway::spec::Spec as _;

fn gateway() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gateway"));
    c.env("GATEWAY_LISTEN", "127.0.0.1:0")
        .env("GATEWAY_ACCESS_LOG", "off")
        .envs(secret_vars().map(|v| (v, format!("binary-test-{v}"))))
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// The secrets the bundled spec reads at start-up: the user JWT secret and
/// each service's outbound credential.
fn secret_vars() -> impl Iterator<Item = &'static str> {
    let jwt = gateway::routes::JWT_SPEC.and_then(|j| j.secret_env);
    let services = Bundled::SERVICES.iter().filter_map(|s| match s.identity {
        OutboundIdentity::Hmac { secret_env }
        | OutboundIdentity::HmacV1 { secret_env }
        | OutboundIdentity::Jwt { secret_env, .. } => Some(secret_env),
        OutboundIdentity::Unsigned => None,
    });
    jwt.into_iter().chain(services)
}

#[test]
fn serves_health_and_exits_zero_on_sigterm() {
    health_then_sigterm(gateway());
}

/// One worker runs everything on a single thread (a current-thread
/// runtime): it must serve and shut down the same way.
#[test]
fn one_worker_serves_health_and_exits_zero_on_sigterm() {
    let mut c = gateway();
    c.env("GATEWAY_WORKERS", "1");
    health_then_sigterm(c);
}

fn health_then_sigterm(mut gateway: Command) {
    let mut child = gateway.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("gateway logged its address").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).expect("log lines are JSON");
        if v["message"] == "gateway listening" {
            break v["listen"].as_str().unwrap().to_owned();
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    });
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(status.ends_with(r#"{"status":"ok"}"#), "{status}");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let started = Instant::now();
    let code = loop {
        if let Some(code) = child.try_wait().unwrap() {
            break code;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "{code:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "an idle gateway exits at once"
    );
}

#[test]
fn bad_upstream_url_stops_start_up_naming_the_variable() {
    let var = Bundled::SERVICES[0].url_env;
    let out = gateway().env(var, "ftp://upstream").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{var}: `ftp://upstream` is not a usable upstream URL"
        )),
        "{stderr}"
    );
}

#[test]
fn routes_subcommand_needs_no_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("routes")
        .output()
        .unwrap();
    assert!(out.status.success());
    // The compiled table (`tests/generated.rs` snapshots it; what the AEGIS
    // table says is checked on the tests' copy in `tests/proxy_aegis.rs`).
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(table, Bundled::ROUTE_TABLE);
    assert!(table.starts_with(&format!(
        "gateway `{}` listening on ",
        Bundled::GATEWAY.name
    )));
}

#[test]
fn sigterm_right_after_start_up_still_exits_zero() {
    for _ in 0..5 {
        let mut child = gateway().spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        // As soon as the address is known, before anything else happens.
        let addr = loop {
            let line = lines.next().expect("gateway logged its address").unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["message"] == "gateway listening" {
                break v["listen"].as_str().unwrap().to_owned();
            }
        };
        assert!(std::net::TcpStream::connect(&addr).is_ok());
        let kill = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let status = child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }
}

#[test]
fn a_bad_worker_count_stops_start_up_naming_the_variable() {
    let out = gateway().env("GATEWAY_WORKERS", "0").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("GATEWAY_WORKERS: `0` is not a number of worker threads (1 to 1024)"),
        "{stderr}"
    );
}
