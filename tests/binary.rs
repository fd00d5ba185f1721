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

/// Issue 14, point 2: a development secret (dev.env's) on an address
/// beyond loopback stops start-up, naming the variable and the override.
#[test]
fn a_development_secret_beyond_loopback_stops_start_up() {
    let mut child = gateway()
        .env("GATEWAY_LISTEN", "0.0.0.0:0")
        .env("JWT_SECRET", "aegis-local-dev-secret-change-in-production")
        .env_remove("GATEWAY_ALLOW_DEV_SECRETS")
        .spawn()
        .unwrap();
    // A gateway that starts anyway would serve forever: end it, and fail.
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the gateway started with a development secret on 0.0.0.0");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("JWT_SECRET: holds a published development secret")
            && stderr.contains("GATEWAY_ALLOW_DEV_SECRETS=1"),
        "{stderr}"
    );
    assert!(!stderr.contains("aegis-local-dev-secret"), "{stderr}");
}

/// Issue 14, point 7: a tenant the token cannot carry is refused, not
/// dropped.
#[test]
fn token_refuses_a_tenant_the_spec_has_no_claim_for() {
    let out = gateway()
        .args(["token", "--sub", "alice", "--tenant", "acme"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no token printed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--tenant: the compiled spec names no tenant claim"),
        "{stderr}"
    );
    let out = gateway()
        .args(["token", "--sub", "alice"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).split('.').count(), 3);
}

/// Issue 14, point 8: a "variable name" that looks like a pasted secret
/// is never echoed in full.
#[test]
fn a_secret_pasted_as_a_variable_name_is_not_echoed() {
    let out = gateway()
        .args([
            "sign",
            "--service",
            "billing",
            "--secret-env",
            "S3CR3TVALUE123",
            "GET",
            "/x",
        ])
        .env_remove("S3CR3TVALUE123")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("S3CR3TVALUE123"), "{stderr}");
    assert!(stderr.contains("`S3…` (14 characters"), "{stderr}");
}

/// Issue 14, point 6: a reader that stops reading (`gateway routes | head`)
/// ends the command quietly. The shell waits before starting the gateway,
/// so the pipe's only reader is already closed when it writes.
#[test]
fn every_subcommand_exits_quietly_on_a_closed_pipe() {
    let bin = env!("CARGO_BIN_EXE_gateway");
    for args in [
        "routes",
        "token --sub alice",
        "sign --service billing --secret-env PIPE_SECRET GET /x",
        "--help",
        "--version",
    ] {
        let mut sh = Command::new("sh");
        sh.args(["-c", &format!("sleep 1; exec \"$GATEWAY_BIN\" {args}")])
            .env("GATEWAY_BIN", bin)
            .env("JWT_SECRET", "binary-test-secret")
            .env("PIPE_SECRET", "s")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut running = sh.spawn().unwrap();
        drop(running.stdout.take());
        let out = running.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "`gateway {args}`: {stderr}");
        assert!(out.status.success(), "`gateway {args}`: {:?}", out.status);
    }
}

/// Issue 14, point 1: `gateway demo` on a machine with nothing else
/// running: every curl command its banner prints answers as the banner
/// says (run through `bash` exactly as printed, with the demo's own
/// development credentials).
#[test]
fn the_demo_answers_its_printed_curl_commands() {
    let curl = Command::new("curl").arg("--version").output();
    assert!(
        curl.is_ok_and(|o| o.status.success()),
        "this test runs the demo's curl commands: install curl"
    );
    let mut demo = Command::new(env!("CARGO_BIN_EXE_gateway"));
    demo.arg("demo")
        .env("GATEWAY_LISTEN", "127.0.0.1:0")
        .env("GATEWAY_ACCESS_LOG", "off")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The demo fills every credential itself.
    for v in secret_vars() {
        demo.env_remove(v).env_remove(format!("{v}_FILE"));
    }
    let mut child = demo.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = Vec::new();
    let bound = loop {
        let line = lines.next().expect("the demo printed its banner").unwrap();
        if line.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["message"] == "gateway listening" {
                break v["listen"].as_str().unwrap().to_owned();
            }
        } else {
            banner.push(line);
        }
    };
    // README.md quotes the banner: the quote must stay true.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let quoted = readme
        .split("It prints commands to paste")
        .nth(1)
        .and_then(|r| r.split("```text").nth(1))
        .and_then(|r| r.split("```").next())
        .expect("README.md quotes the demo's banner");
    // The README describes the AEGIS table as shipped: while `gateway.yaml`
    // is that table (the tests' copy, tests/specs/aegis.yaml), the quote
    // must be what the demo prints. A user who has edited the routes has
    // a README about the shipped table, not theirs: nothing to compare.
    let spec_of = |path: &str| {
        let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
            .unwrap_or_default();
        text.find("\ngateway:")
            .map(|at| text[at..].to_owned())
            .unwrap_or_default()
    };
    let shipped = spec_of("gateway.yaml") == spec_of("tests/specs/aegis.yaml");
    if !shipped {
        eprintln!("gateway.yaml is not the shipped AEGIS table: README quote not compared");
    }
    for line in quoted
        .lines()
        .filter(|l| shipped && (l.starts_with("# ") || l.starts_with("curl ")))
    {
        let line = line.replace("127.0.0.1:8000", &bound);
        assert!(
            banner.contains(&line),
            "README.md quotes `{line}`, the demo prints {banner:#?}"
        );
    }
    // Examples: a `# N.` heading, then the lines to paste.
    let mut examples: Vec<(String, String)> = Vec::new();
    for line in &banner {
        if line.starts_with("# ") && line.as_bytes().get(2).is_some_and(u8::is_ascii_digit) {
            examples.push((line.clone(), String::new()));
        } else if let Some((_, script)) = examples.last_mut() {
            if !line.starts_with('#') && !line.is_empty() {
                script.push_str(line);
                script.push('\n');
            }
        }
    }
    let token = examples
        .iter()
        .flat_map(|(_, s)| s.lines())
        .find(|l| l.starts_with("TOKEN="))
        .map(|l| format!("{l}\n"))
        .unwrap_or_default();
    let run = |script: &str| {
        let out = Command::new("bash")
            .args(["-c", &format!("{token}{script}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(examples.len(), 4, "{banner:#?}");
    let json = |text: &str| -> serde_json::Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    // 1. Public: the stand-in's echo of the rewritten request.
    let (title, script) = &examples[0];
    assert!(title.contains("public route"), "{title}");
    let echo = json(&run(script));
    // Whatever route the demo picked from the compiled table: a declared
    // service's stand-in got a rewritten path and a proof it verified.
    let proof = |echo: &serde_json::Value| {
        let p = echo["gateway_proof"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let from = format!(" from `{}`: verified", Bundled::GATEWAY.name);
        assert!(p.ends_with(&from), "{echo}");
    };
    let service = echo["stand_in_for"].as_str().unwrap_or_default();
    assert!(
        Bundled::SERVICES.iter().any(|s| s.name == service),
        "{echo}"
    );
    assert!(
        echo["path"].as_str().is_some_and(|p| p.starts_with('/')),
        "{echo}"
    );
    proof(&echo);
    assert!(echo["headers"]["x-request-id"].is_string(), "{echo}");
    assert!(echo["headers"]["x-user-id"].is_null(), "{echo}");
    // 2. JWT: the identity reaches the stand-in.
    let (title, script) = &examples[1];
    assert!(title.contains("JWT route"), "{title}");
    let echo = json(&run(script));
    assert_eq!(echo["headers"]["x-user-id"], "alice", "{echo}");
    assert_eq!(echo["headers"]["x-user-roles"], "viewer", "{echo}");
    proof(&echo);
    // 3. A role she lacks: 403.
    let (title, script) = &examples[2];
    assert!(title.ends_with("403."), "{title}");
    let answer = run(script);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains(r#""error":"Insufficient role""#),
        "{answer}"
    );
    // 4. The limit: admitted first, then 429s.
    let (title, script) = &examples[3];
    assert!(title.contains("200s then 429s"), "{title}");
    let codes: Vec<String> = run(script).split_whitespace().map(String::from).collect();
    assert_eq!(codes.first().map(String::as_str), Some("200"), "{codes:?}");
    assert!(codes.iter().any(|c| c == "429"), "{codes:?}");
    assert!(codes.iter().all(|c| c == "200" || c == "429"), "{codes:?}");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(child.wait().unwrap().success());
}
