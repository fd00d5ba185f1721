//! The server: a [`Gateway`] built once from a compiled spec, serving
//! connections ([`serve`], in `listen.rs`) and running every request
//! through the fixed phase order of contract §2.
//!
//! The phases, in order, each one function (in `pipeline.rs` unless
//! named) whose doc comment says what it may refuse and why:
//! 1. `begin`: ids minted or continued, client-owned headers stripped
//!    ([`crate::headers`], [`crate::ids`]);
//! 2. `admit`: refusals before routing (an unreadable forwarding chain,
//!    too many header fields, an unknown client certificate);
//! 3. `head`: `/health`, path sanity and route match (400, 404), CORS
//!    `preflight`, method (405), the chain's head-only steps (rate limit,
//!    authentication, authorization), version and declared body length;
//! 4. `request_body` (`read_body.rs`): a body the route verifies is read
//!    whole (413, 408, 503), any other streamed under its limits;
//! 5. `upstream_head`: the chain's request steps, the canary, the upstream
//!    URI and forwarded headers;
//! 6. `attempts` (`attempts.rs`): the upstream call under breaker,
//!    retries and timeout;
//! 7. `upstream_response`: the upstream's answer filtered for the client;
//! 8. `respond` (`respond.rs`): every answer, refusals included, gets the
//!    ids and the CORS, version and rate-limit headers; the security
//!    event and one access-log line ([`crate::log`]) are written.

mod attempts;
mod listen;
mod pipeline;
mod read_body;
mod respond;

use std::net::SocketAddr;

use http::HeaderValue;

use crate::body::budget::BodyBudget;
use crate::config::{StartupEnv, StartupError, TrustedProxies};
use crate::headers;
use crate::log::AccessSink;
use crate::policy::retry::RetryBudget;
use crate::proxy::Proxy;
use crate::routing::Router;
use crate::spec::Spec;
use crate::time::Clock;
use crate::tls::{ClientIdentity, Terminator};

pub use listen::serve;

/// What the gateway knows about one client connection.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The calling service its client certificate names, if any.
    pub client: ClientIdentity,
}

/// A gateway for one compiled spec: router, chains and proxy, built once.
pub struct Gateway<S: Spec> {
    router: Router<&'static [S::Route]>,
    chains: S::Chains,
    proxy: Proxy,
    trusted: TrustedProxies,
    via: HeaderValue,
    tls: Option<Terminator>,
    access_log: AccessSink,
    /// Each route's retry budget, by route index.
    budgets: Vec<RetryBudget>,
    /// The client-claimed headers some service allows
    /// (`allow_client_headers`), as a mask over
    /// [`headers::CLIENT_CLAIMED`]: phase 1 leaves these for
    /// `upstream_head` to judge.
    claimed_allowed: u16,
    /// Memory for buffered request bodies (`gateway.limits`).
    bodies: BodyBudget,
    /// The one clock of breakers, retry budgets, outbound signatures and
    /// version sunsets.
    clock: Clock,
}

impl<S: Spec> std::fmt::Debug for Gateway<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("name", &S::GATEWAY.name)
            .finish()
    }
}

impl<S: Spec> Gateway<S> {
    /// Builds the gateway from the environment, on the system clock.
    ///
    /// # Errors
    /// Anything in the environment that stops start-up, naming the variable.
    pub fn new(env: &StartupEnv) -> Result<Self, StartupError> {
        Self::with_clock(env, Clock::system())
    }

    /// Builds the gateway from the environment, with `clock` timing its
    /// breakers, retry budgets, outbound signatures and version sunsets
    /// (a [`crate::time::ManualClock`]'s in tests).
    ///
    /// # Errors
    /// Anything in the environment that stops start-up, naming the variable.
    pub fn with_clock(env: &StartupEnv, clock: Clock) -> Result<Self, StartupError> {
        let g = S::GATEWAY;
        let router = Router::new(S::PATHS.iter().copied())
            .map_err(|e| StartupError::Router(e.to_string()))?;
        let via = HeaderValue::from_str(&format!("1.1 {}", g.name))
            .map_err(|_| StartupError::Router(format!("gateway name `{}`", g.name)))?;
        Ok(Gateway {
            router,
            chains: S::build_chains(env)?,
            proxy: Proxy::new(g.name, S::SERVICES, env, g.connect_timeout, &clock)?,
            trusted: TrustedProxies::parse(g.trusted_proxies)?,
            via,
            tls: g.tls.map(|t| Terminator::new(t, env)).transpose()?,
            access_log: AccessSink::from_env(env.get("GATEWAY_ACCESS_LOG")),
            budgets: {
                let n = S::PATHS
                    .iter()
                    .flat_map(|(_, routes)| routes.iter())
                    .map(|r| S::route(*r).index + 1)
                    .max()
                    .unwrap_or(0);
                (0..n)
                    .map(|_| RetryBudget::with_clock(clock.clone()))
                    .collect()
            },
            claimed_allowed: S::SERVICES
                .iter()
                .fold(0, |m, s| m | headers::claimed_mask(s.allow_client_headers)),
            bodies: BodyBudget::new(g.limits.body_buffer, g.limits.body_buffer_per_client),
            clock,
        })
    }

    /// Sends access-log lines to `sink` instead.
    pub fn with_access_log(mut self, sink: AccessSink) -> Self {
        self.access_log = sink;
        self
    }

    /// Re-reads what may change without a restart (SIGHUP): revocation
    /// lists, file-based upstream credentials, the listener's certificate,
    /// key and client CAs. On error the previous state stays in force.
    ///
    /// # Errors
    /// The first thing that could not be re-read (the others still are).
    pub fn reload(&self) -> Result<(), StartupError> {
        let chains = S::reload(&self.chains);
        let proxy = self.proxy.reload();
        let tls = self.tls.as_ref().map_or(Ok(()), Terminator::reload);
        chains.and(proxy).and(tls)
    }

    /// Whether the listener terminates TLS (`gateway.tls`).
    pub fn tls(&self) -> Option<&Terminator> {
        self.tls.as_ref()
    }

    /// The resolved upstreams, for the start-up log.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Bytes of request bodies the gateway holds right now, buffered
    /// before proxying (bounded by `gateway.limits.body_buffer`).
    pub fn buffered_body_bytes(&self) -> usize {
        self.bodies.in_use()
    }
}
