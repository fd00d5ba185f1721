//! The gateway binary: `gateway` (serve), `gateway routes`, and the
//! developer helpers `gateway demo`, `gateway token` and `gateway sign`.
#![forbid(unsafe_code)]

mod demo;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use gateway::auth::hmac::{self, V2Input};
use gateway::auth::jwt;
use gateway::config::{check_dev_secrets, listen_addr, StartupEnv, StartupError};
use gateway::routes;
use gateway::server::{self, Gateway};
use gateway::spec::Spec;

/// A compiled internal API gateway. Routes come from the spec compiled into
/// this binary (gateway.yaml, or GATEWAY_SPEC at build time).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic (the default).
    Serve,
    /// Serve on 127.0.0.1 with a stand-in for every upstream service and
    /// development credentials, and print curl commands to try.
    Demo,
    /// Print the compiled route table.
    Routes,
    /// Mint a development JWT (HS256) from the configured secret.
    Token {
        /// Subject (the user id).
        #[arg(long)]
        sub: String,
        /// Comma-separated roles.
        #[arg(long, default_value = "")]
        roles: String,
        /// Tenant, when the spec names a tenant claim.
        #[arg(long)]
        tenant: Option<String>,
        /// Lifetime: 90s, 15m, 1h ...
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
    },
    /// Print HMAC service-auth headers for a request, one per line (for
    /// `curl -H @file`).
    Sign {
        /// Calling service name (X-Service-Name).
        #[arg(long)]
        service: String,
        /// Environment variable holding the service's secret.
        #[arg(long)]
        secret_env: String,
        /// Tenant (X-Tenant-Id), covered by a v2 signature.
        #[arg(long)]
        tenant: Option<String>,
        /// Sign with the older v1 scheme instead of v2.
        #[arg(long)]
        v1: bool,
        /// File holding the request body.
        #[arg(long)]
        body: Option<std::path::PathBuf>,
        /// Request method.
        method: String,
        /// Path and query exactly as they will be sent.
        path: String,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 90s, 15m, 1h"))?;
    let secs = match &s[digits.len()..] {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("`{s}` is not a duration like 90s, 15m, 1h")),
    };
    Ok(Duration::from_secs(secs))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Routes => Ok(routes::Spec::ROUTE_TABLE.to_owned()),
        Command::Token {
            sub,
            roles,
            tenant,
            ttl,
        } => token(&sub, &roles, tenant.as_deref(), ttl),
        Command::Sign {
            service,
            secret_env,
            tenant,
            v1,
            body,
            method,
            path,
        } => sign(
            &service,
            &secret_env,
            tenant.as_deref(),
            v1,
            body.as_deref(),
            &method,
            &path,
        ),
        Command::Serve => {
            gateway::log::init();
            serve()
                .map(|()| String::new())
                .inspect_err(|e| tracing::error!(error = %e, "gateway cannot start"))
        }
        Command::Demo => {
            gateway::log::init();
            demo::run()
                .map(|()| String::new())
                .inspect_err(|e| tracing::error!(error = %e, "gateway demo cannot start"))
        }
    };
    let written = match result {
        Ok(out) => write_stdout(&out),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        // The reader stopped reading (`gateway routes | head`): what it
        // wanted it has; leave quietly, as tools killed by SIGPIPE do.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "gateway: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a subcommand's whole output. Never `print!`, which panics when
/// the reader has gone ("failed printing to stdout: Broken pipe").
///
/// # Errors
/// The write error, `BrokenPipe` included, for the caller to judge.
fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

fn token(
    sub: &str,
    roles: &str,
    tenant: Option<&str>,
    ttl: Duration,
) -> Result<String, StartupError> {
    let spec = jwt_spec().ok_or_else(|| StartupError::Config {
        var: "gateway.jwt".into(),
        why: "the compiled spec has no JWT settings".into(),
    })?;
    if tenant.is_some() && spec.tenant_claim.is_none() {
        return Err(StartupError::Config {
            var: "--tenant".into(),
            why: "the compiled spec names no tenant claim (`gateway.jwt.claims.tenant`), \
                  so the gateway would ignore a tenant in the token; leave out --tenant, \
                  or add the claim to the spec"
                .into(),
        });
    }
    let roles: Vec<String> = roles
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(String::from)
        .collect();
    let token = jwt::mint(spec, &StartupEnv::from_process(), sub, &roles, tenant, ttl)?;
    Ok(format!("{token}\n"))
}

/// The compiled spec's JWT settings, if it has them.
fn jwt_spec() -> Option<&'static jwt::JwtSpec> {
    routes::JWT_SPEC
}

#[allow(clippy::too_many_arguments, reason = "one argument per CLI flag")]
fn sign(
    service: &str,
    secret_env: &str,
    tenant: Option<&str>,
    v1: bool,
    body: Option<&std::path::Path>,
    method: &str,
    path: &str,
) -> Result<String, StartupError> {
    let env = StartupEnv::from_process();
    let secret = env
        .get(secret_env)
        .and_then(|v| gateway::auth::secrets(v).into_iter().next())
        .ok_or_else(|| StartupError::MissingSecret {
            var: secret_env.to_owned(),
            what: format!("the HMAC secret of `{service}`"),
        })?;
    let body = match body {
        Some(p) => std::fs::read(p).map_err(|e| StartupError::Config {
            var: "--body".into(),
            why: format!("cannot read `{}`: {e}", p.display()),
        })?,
        None => Vec::new(),
    };
    let method = method.to_ascii_uppercase();
    let ts = hmac::now_unix().to_string();
    let mut out = format!("X-Service-Name: {service}\nX-Internal-Timestamp: {ts}\n");
    if v1 {
        let path_only = path.split('?').next().unwrap_or(path);
        let sig = hmac::sign_v1(&secret, &method, path_only, &ts);
        out.push_str(&format!("X-Internal-Service-Auth: {sig}\n"));
        return Ok(out);
    }
    let nonce = hmac::fresh_nonce();
    let digest = hmac::body_sha256(&body);
    let input = V2Input {
        method: &method,
        path_and_query: path,
        timestamp: &ts,
        nonce: &nonce,
        service,
        tenant: tenant.unwrap_or(""),
        body_sha256: &digest,
    };
    out.push_str(&format!("X-Internal-Nonce: {nonce}\n"));
    if let Some(t) = tenant {
        out.push_str(&format!("X-Tenant-Id: {t}\n"));
    }
    let sig = hmac::sign_v2(&secret, &input);
    out.push_str(&format!("X-Internal-Service-Auth: {sig}\n"));
    Ok(out)
}

fn serve() -> Result<(), StartupError> {
    let env = StartupEnv::from_process();
    let addr = listen_addr(routes::Spec::GATEWAY, &env)?;
    check_dev_secrets(&env, addr)?;
    let gw = Arc::new(Gateway::<routes::Spec>::new(&env)?);
    let rt = runtime(&env)?;
    rt.block_on(async {
        // Handlers first: a signal that arrives while starting must not
        // kill the process (it would without a handler installed).
        let signals = Signals::install().map_err(|source| StartupError::Bind { addr, source })?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        serve_until_signal(gw, listener, signals).await;
        Ok(())
    })
}

/// The runtime `GATEWAY_WORKERS` asks for.
fn runtime(env: &StartupEnv) -> Result<tokio::runtime::Runtime, StartupError> {
    let workers = env
        .get("GATEWAY_WORKERS")
        .map(|n| {
            n.parse::<usize>()
                .ok()
                .filter(|n| (1..=1024).contains(n))
                .ok_or_else(|| StartupError::Config {
                    var: "GATEWAY_WORKERS".into(),
                    why: format!("`{n}` is not a number of worker threads (1 to 1024)"),
                })
        })
        .transpose()?;
    let mut builder = match workers {
        // One worker: everything (accepting included) on this one thread.
        // A multi-thread runtime with one worker still accepts on the main
        // thread and hands every connection across; measured on the load
        // benchmark, the single thread serves 10-30% more requests for less
        // CPU each (BENCHMARKS.md).
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder
        .enable_all()
        .build()
        .map_err(|source| StartupError::Config {
            var: "GATEWAY_WORKERS".into(),
            why: format!("cannot start the runtime: {source}"),
        })
}

/// Logs the upstreams and the address, then serves until SIGTERM or
/// Ctrl-C, re-reading credentials on SIGHUP.
async fn serve_until_signal(
    gw: Arc<Gateway<routes::Spec>>,
    listener: tokio::net::TcpListener,
    signals: Signals,
) {
    for u in (0..routes::Spec::SERVICES.len()).filter_map(|i| gw.proxy().upstream(i)) {
        tracing::info!(service = u.name, url = %format!("{}://{}{}", u.url.scheme, u.url.authority, u.url.base_path), "upstream");
    }
    let bound = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let scheme = if gw.tls().is_some() { "https" } else { "http" };
    tracing::info!(name = routes::Spec::GATEWAY.name, listen = %bound, scheme, "gateway listening");
    let Signals { term, hup } = signals;
    tokio::spawn(reload_on_sighup(gw.clone(), hup));
    server::serve(gw, listener, shutdown_signal(term)).await;
    tracing::info!("gateway stopped");
}

/// Signal streams, created before the listener is bound.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
    #[cfg(not(unix))]
    term: (),
    #[cfg(not(unix))]
    hup: (),
}

impl Signals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Self> {
        Ok(Signals { term: (), hup: () })
    }
}

/// SIGHUP re-reads revocation lists; a failed reload keeps the old state.
#[cfg(unix)]
async fn reload_on_sighup(gw: Arc<Gateway<routes::Spec>>, mut hup: tokio::signal::unix::Signal) {
    while hup.recv().await.is_some() {
        match gw.reload() {
            Ok(()) => tracing::info!("reloaded on SIGHUP"),
            Err(e) => tracing::error!(error = %e, "reload failed; keeping the previous state"),
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_sighup(_gw: Arc<Gateway<routes::Spec>>, _hup: ()) {}

/// SIGTERM or Ctrl-C.
#[cfg(unix)]
async fn shutdown_signal(mut term: tokio::signal::unix::Signal) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

/// Ctrl-C.
#[cfg(not(unix))]
async fn shutdown_signal(_term: ()) {
    let _ = tokio::signal::ctrl_c().await;
}
