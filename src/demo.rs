//! `gateway demo`: the compiled spec at work on a machine with nothing else
//! running. Every service of the spec is answered by a stand-in on
//! loopback that echoes, as JSON, the request it received (method, the
//! rewritten path and query, every header, and whether the gateway's proof
//! of identity verifies); unset credentials get development values (those
//! of `dev.env`); the gateway listens on 127.0.0.1; and the banner prints
//! ready-to-paste `curl` commands for a public route, a JWT route, a
//! role-gated 403 and a rate-limited 429, found in the compiled route table.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway::auth::jwt::{self, JwtAlgorithm};
use gateway::config::{self, StartupEnv, StartupError};
use gateway::outbound::OutboundIdentity;
use gateway::routes;
use gateway::routing::{self, Router};
use gateway::server::Gateway;
use gateway::service::{Proof, ServiceVerifier};
use gateway::spec::{RouteSpec, ServiceSpec, Spec};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The development user the demo mints a token for.
const USER: &str = "alice";
/// Her one role: one that the role-gated example does not admit.
const ROLE: &str = "viewer";

/// Runs the demo until SIGTERM or Ctrl-C.
pub fn run() -> Result<(), StartupError> {
    let mut env = StartupEnv::from_process();
    let rt = crate::runtime(&env)?;
    rt.block_on(async {
        let signals = crate::Signals::install().map_err(|source| StartupError::Bind {
            addr: ([127, 0, 0, 1], 0).into(),
            source,
        })?;
        fill_dev_secrets(&mut env);
        let mut stand_ins = Vec::new();
        for s in routes::Spec::SERVICES {
            let addr = stand_in(s, &env).await?;
            env.set(s.url_env, format!("http://{addr}"));
            stand_ins.push((s.name, addr));
        }
        let addr = listen(&env)?;
        let gw = Arc::new(gateway_with_dev_credentials(&mut env)?);
        config::check_dev_secrets(&env, addr)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let bound = listener.local_addr().unwrap_or(addr);
        let scheme = if gw.tls().is_some() { "https" } else { "http" };
        let banner = banner(&env, &format!("{scheme}://{bound}"), &stand_ins)?;
        // A closed stdout (`gateway demo | head`) only loses the banner;
        // the demo keeps serving.
        let _ = crate::write_stdout(&banner);
        crate::serve_until_signal(gw, listener, signals).await;
        Ok(())
    })
}

/// `GATEWAY_LISTEN`, else the spec's address on loopback (its port on
/// 127.0.0.1 when the spec listens on every interface).
fn listen(env: &StartupEnv) -> Result<SocketAddr, StartupError> {
    if env.get("GATEWAY_LISTEN").is_some() {
        return config::listen_addr(routes::Spec::GATEWAY, env);
    }
    let spec = routes::Spec::GATEWAY.listen;
    let addr: SocketAddr = spec
        .parse()
        .map_err(|_| StartupError::Listen(spec.to_owned()))?;
    Ok(if addr.ip().is_loopback() {
        addr
    } else {
        ([127, 0, 0, 1], addr.port()).into()
    })
}

/// Development values for the credentials the compiled spec reads, where
/// the environment has none: `dev.env`'s, so a token minted with `dev.env`
/// loaded is accepted by the demo.
fn fill_dev_secrets(env: &mut StartupEnv) {
    if let Some(j) = routes::JWT_SPEC {
        if j.algorithms.contains(&JwtAlgorithm::HS256) {
            env.set_default(j.secret_env.unwrap_or("JWT_SECRET"), config::DEV_JWT_SECRET);
        }
    }
    for s in routes::Spec::SERVICES {
        if let Some(var) = secret_env(s) {
            if env.get(&format!("{var}_FILE")).is_none() {
                env.set_default(var, config::dev_service_secret(s.name));
            }
        }
    }
}

/// Builds the gateway, giving every other credential start-up asks for
/// (HMAC callers' secrets, a shared service token...) a development value
/// when the environment has none: `dev-only-<variable>`. Paths to key and
/// certificate files are the user's to give.
fn gateway_with_dev_credentials(
    env: &mut StartupEnv,
) -> Result<Gateway<routes::Spec>, StartupError> {
    loop {
        match Gateway::<routes::Spec>::new(env) {
            Err(StartupError::MissingSecret { var, what }) => {
                let name = var.split(" (or ").next().unwrap_or(&var).to_owned();
                let credential = !what.starts_with("the path")
                    && ["secret", "token", "credential"]
                        .iter()
                        .any(|w| what.contains(w));
                let value = format!(
                    "{}{}",
                    config::DEV_SECRET_PREFIX,
                    name.to_ascii_lowercase().replace('_', "-")
                );
                if !(credential && config::is_variable_name(&name) && env.set_default(&name, value))
                {
                    return Err(StartupError::MissingSecret { var, what });
                }
            }
            other => return other,
        }
    }
}

fn secret_env(s: &ServiceSpec) -> Option<&'static str> {
    match s.identity {
        OutboundIdentity::Hmac { secret_env }
        | OutboundIdentity::HmacV1 { secret_env }
        | OutboundIdentity::Jwt { secret_env, .. } => Some(secret_env),
        OutboundIdentity::Unsigned => None,
    }
}

// === stand-in upstreams ===

/// Starts the stand-in for `s` on an ephemeral loopback port. It checks
/// the gateway's proof with the gateway's own verifier, as a Rust service
/// would (`gateway::service::ServiceVerifier`).
async fn stand_in(s: &'static ServiceSpec, env: &StartupEnv) -> Result<SocketAddr, StartupError> {
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    let listener = TcpListener::bind(any)
        .await
        .map_err(|source| StartupError::Bind { addr: any, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartupError::Bind { addr: any, source })?;
    let proof = match s.identity {
        OutboundIdentity::Hmac { .. } => Some(Proof::HmacV2),
        OutboundIdentity::HmacV1 { .. } => Some(Proof::HmacV1),
        OutboundIdentity::Jwt { .. } => Some(Proof::Jwt),
        OutboundIdentity::Unsigned => None,
    };
    let verifier = proof.and_then(|p| {
        let secrets = gateway::auth::secrets(env.get(secret_env(s)?)?);
        let v = ServiceVerifier::new(
            s.name,
            routes::Spec::GATEWAY.name,
            secrets,
            Duration::from_secs(60),
        );
        Some(Arc::new(v.with_proofs(&[p])))
    });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let verifier = verifier.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    echo(s, proof.is_some(), verifier.clone(), req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Headers whose values are credentials: echoed shortened.
const CREDENTIALS: [&str; 4] = [
    "authorization",
    "x-internal-service-auth",
    "cookie",
    "x-service-token",
];

/// What a stand-in answers, in this order.
#[derive(serde::Serialize)]
struct Echo<'a> {
    stand_in_for: &'a str,
    method: &'a str,
    path: &'a str,
    body_bytes: usize,
    gateway_proof: String,
    headers: BTreeMap<String, String>,
}

async fn echo(
    s: &'static ServiceSpec,
    signed: bool,
    verifier: Option<Arc<ServiceVerifier>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let proof = match (&verifier, signed) {
        (_, false) => "none: the spec sends this service unsigned requests".to_owned(),
        (None, true) => "not checked: the credential comes from a file".to_owned(),
        (Some(v), true) => match v.verify(&parts, &body) {
            Ok(call) => format!("{:?} from `{}`: verified", call.proof, call.caller),
            Err(r) => format!("REJECTED: {}", r.reason),
        },
    };
    let mut headers = BTreeMap::new();
    for (name, value) in &parts.headers {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let v = if CREDENTIALS.contains(&name.as_str()) && v.len() > 24 {
            format!("{}…", v.chars().take(20).collect::<String>())
        } else {
            v
        };
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|all: &mut String| {
                all.push_str(", ");
                all.push_str(&v);
            })
            .or_insert(v);
    }
    let echo = Echo {
        stand_in_for: s.name,
        method: parts.method.as_str(),
        path: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        body_bytes: body.len(),
        gateway_proof: proof,
        headers,
    };
    let mut text = serde_json::to_string_pretty(&echo).unwrap_or_default();
    text.push('\n');
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

// === the examples ===

/// A route of the compiled table, with what `gateway routes` says of its
/// authentication and policy.
struct Row {
    route: &'static RouteSpec,
    auth: String,
    policy: String,
}

/// The compiled routes in spec order, each with its AUTH and POLICY cells
/// from the route table (the one place the compiled spec describes them).
fn rows() -> Vec<Row> {
    let table = routes::Spec::ROUTE_TABLE;
    let mut lines = table.lines().skip_while(|l| !l.starts_with("ROUTE "));
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let col = |name: &str| header.find(&format!(" {name} ")).map(|i| i + 1);
    let (Some(methods), Some(auth), Some(policy), Some(timeout)) =
        (col("METHODS"), col("AUTH"), col("POLICY"), col("TIMEOUT"))
    else {
        return Vec::new();
    };
    fn cell(l: &str, a: usize, b: usize) -> &str {
        l.get(a..b.min(l.len())).unwrap_or("").trim()
    }
    let cells: Vec<(String, String, String)> = lines
        .take_while(|l| !l.is_empty())
        .map(|l| {
            (
                cell(l, 0, methods).to_owned(),
                cell(l, auth, policy).to_owned(),
                cell(l, policy, timeout).to_owned(),
            )
        })
        .collect();
    let mut specs: Vec<&'static RouteSpec> = routes::Spec::PATHS
        .iter()
        .flat_map(|(_, rs)| rs.iter().map(|r| routes::Spec::route(*r)))
        .collect();
    specs.sort_by_key(|r| r.index);
    specs.dedup_by_key(|r| r.index);
    specs
        .into_iter()
        .filter_map(|route| {
            let (_, auth, policy) = cells.iter().find(|(p, _, _)| p == route.pattern)?;
            Some(Row {
                route,
                auth: auth.clone(),
                policy: policy.clone(),
            })
        })
        .collect()
}

/// A GET path that reaches `route` (and no other): parameters become `42`
/// and `demo`, a prefix gets `/demo` below it.
fn sample_path(
    route: &RouteSpec,
    router: &Router<&'static [<routes::Spec as Spec>::Route]>,
) -> Option<String> {
    let mut path = String::new();
    let mut rest = route.pattern;
    while let Some(open) = rest.find('{') {
        path.push_str(&rest[..open]);
        let close = rest[open..].find('}')? + open;
        path.push_str(if rest[open..].starts_with("{*") {
            "demo"
        } else {
            "42"
        });
        rest = &rest[close + 1..];
    }
    match rest.strip_suffix('*') {
        Some(base) => {
            path.push_str(base);
            path.push_str("/demo");
        }
        None => path.push_str(rest),
    }
    let m = router.lookup(&path).ok()?;
    let r = routing::select_method(m.routes, &http::Method::GET, |r| {
        routes::Spec::route(r).methods
    })
    .ok()?;
    (routes::Spec::route(r).index == route.index).then_some(path)
}

/// `limit=100/min+10/consumer` from a POLICY cell: (rate text, burst, key).
fn rate_limit(policy: &str) -> Option<(&str, u64, &str)> {
    let l = policy.split(' ').find_map(|p| p.strip_prefix("limit="))?;
    let (rate, rest) = l.split_once('+')?;
    let (burst, key) = rest.split_once('/')?;
    Some((rate, burst.parse().ok()?, key))
}

fn banner(
    env: &StartupEnv,
    base: &str,
    stand_ins: &[(&str, SocketAddr)],
) -> Result<String, StartupError> {
    let g = routes::Spec::GATEWAY;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "gateway demo: `{}` on {base}, with {} stand-in upstream{} on 127.0.0.1 ({}).",
        g.name,
        stand_ins.len(),
        if stand_ins.len() == 1 { "" } else { "s" },
        stand_ins
            .iter()
            .map(|(n, a)| format!("{n} :{}", a.port()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out.push_str(
        "Each stand-in answers with what it received: the rewritten path and query, every\n\
         header (the identity the gateway added) and whether the gateway's signature verifies.\n\
         Credentials not set in the environment hold development values (those of dev.env).\n\
         Routes: `gateway routes`. Ctrl-C stops the demo. In another terminal:\n",
    );
    if base.starts_with("https:") {
        out.push_str(
            "(The listener speaks TLS: add `--cacert <its CA>` to each command, and use the \
             host name its certificate names.)\n",
        );
    }
    let router = Router::new(routes::Spec::PATHS.iter().copied())
        .map_err(|e| StartupError::Router(e.to_string()))?;
    let rows = rows();
    let get = |r: &&Row| r.route.methods.contains(&http::Method::GET);
    let example = |pred: &dyn Fn(&Row) -> bool| {
        rows.iter()
            .filter(get)
            .filter(|r| pred(r))
            .find_map(|r| Some((r, sample_path(r.route, &router)?)))
    };
    let mut n = 0;
    let mut heading = |out: &mut String, text: &str| {
        n += 1;
        let _ = write!(out, "\n# {n}. {text}\n");
    };
    if let Some((r, path)) = example(&|r| r.auth == "public") {
        heading(
            &mut out,
            &format!(
                "A public route ({}): the stand-in shows what the gateway forwarded.",
                r.route.pattern
            ),
        );
        let _ = writeln!(out, "curl -s '{base}{path}?page=2'");
    }
    let token = match routes::JWT_SPEC {
        Some(spec) if spec.algorithms.contains(&JwtAlgorithm::HS256) => {
            let roles = [ROLE.to_owned()];
            Some(jwt::mint(
                spec,
                env,
                USER,
                &roles,
                None,
                Duration::from_secs(3600),
            )?)
        }
        _ => None,
    };
    if let Some(token) = &token {
        if let Some((r, path)) = example(&|r| r.auth == "jwt") {
            heading(
                &mut out,
                &format!(
                    "A JWT route ({}), with a development token for `{USER}` (role `{ROLE}`, valid 1 h):\n\
                     #    the stand-in receives her identity as X-User-Id and X-User-Roles.",
                    r.route.pattern
                ),
            );
            let _ = writeln!(out, "TOKEN='{token}'");
            let _ = writeln!(
                out,
                "curl -s -H \"Authorization: Bearer $TOKEN\" '{base}{path}'"
            );
        }
        let gated = |r: &Row| {
            r.auth
                .strip_prefix("jwt roles=")
                .is_some_and(|roles| !roles.split('|').any(|x| x == ROLE))
        };
        if let Some((r, path)) = example(&gated) {
            let roles = r
                .auth
                .trim_start_matches("jwt roles=")
                .replace('|', "` or `");
            heading(
                &mut out,
                &format!(
                    "A route for role `{roles}` ({}), which {USER} lacks: 403.",
                    r.route.pattern
                ),
            );
            let _ = writeln!(
                out,
                "curl -s -i -H \"Authorization: Bearer $TOKEN\" '{base}{path}'; echo"
            );
        }
    }
    // The 429 example runs without a token, so it needs a public route
    // whose limit a client address can exhaust.
    let limited = |r: &Row| {
        r.auth == "public"
            && rate_limit(&r.policy)
                .is_some_and(|(_, _, key)| matches!(key, "consumer" | "ip" | "route"))
    };
    if let Some((r, path)) = example(&limited) {
        if let Some((rate, burst, key)) = rate_limit(&r.policy) {
            let who = if key == "route" {
                "for everyone"
            } else {
                "per client"
            };
            let count = burst + 10;
            heading(
                &mut out,
                &format!(
                    "The rate limit of {} (a burst of {burst}, then {rate} {who}): {count} requests, 200s then 429s.",
                    r.route.pattern
                ),
            );
            let _ = writeln!(
                out,
                "curl -s -o /dev/null -w '%{{http_code}} ' '{base}{path}?n=[1-{count}]'; echo"
            );
        }
    }
    if n == 0 {
        out.push_str(
            "\n(The compiled spec has no public or HS256 JWT route with a GET to show.)\n",
        );
    }
    out.push('\n');
    Ok(out)
}
