//! The `gateway` binary itself: start-up, `/health`, SIGTERM, and a clear
//! start-up error for a bad environment.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn gateway() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gateway"));
    c.env("GATEWAY_LISTEN", "127.0.0.1:0")
        .env("GATEWAY_ACCESS_LOG", "off")
        .env("JWT_SECRET", "binary-test-secret")
        .envs(
            [
                "ORCHESTRATION",
                "MEMORY",
                "KNOWLEDGE_GRAPH",
                "APPROVAL",
                "INGESTION",
                "COMPLIANCE",
                "FLARING",
                "AUTH",
            ]
            .map(|s| (format!("{s}_SERVICE_SECRET"), format!("binary-test-{s}"))),
        )
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
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
    let out = gateway()
        .env("FLARING_URL", "ftp://flaring")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("FLARING_URL: `ftp://flaring` is not a usable upstream URL"),
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
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("/api/v1/agents/{id}/execute"));
    assert!(table.starts_with("gateway `aegis-gateway` listening on 0.0.0.0:8000"));
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
