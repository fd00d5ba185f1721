//! The spec model: `gateway.yaml` as written, parsed with serde.
//!
//! Every struct denies unknown fields, so a typo is a located build error.

mod auth;
mod locate;
mod shape;
mod traffic;

use std::collections::BTreeMap;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::diag::Diagnostics;

pub use auth::{
    AuthKind, Claims, ClientAuth, ClientCertMode, Identity, IdentityKind, Jwt, RouteServiceAuth,
    ServiceAuth, Tls,
};
pub use locate::{PathSeg, SpecPath};
pub use traffic::{Canary, Cors, Deprecated, RateKey, RateLimit, Retries, Version, Versions};

/// The whole spec file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Settings of the gateway process itself.
    pub gateway: Gateway,
    /// Upstream services, by name.
    #[serde(default, deserialize_with = "unique_map")]
    pub services: BTreeMap<String, Service>,
    /// Named, reusable policies.
    #[serde(default, deserialize_with = "unique_map")]
    pub policies: BTreeMap<String, Policy>,
    /// The route table.
    pub routes: Vec<Route>,
}

/// `gateway:`: name, listener and gateway-wide defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// The gateway's name: `Via`, outbound `X-Service-Name`, logs.
    pub name: String,
    /// `host:port` to listen on; `GATEWAY_LISTEN` overrides it.
    pub listen: String,
    /// Addresses or CIDR blocks whose `X-Forwarded-*` chain is trusted.
    #[serde(default, deserialize_with = "null_as_default")]
    pub trusted_proxies: Vec<String>,
    /// Gateway-wide timeouts.
    #[serde(default, deserialize_with = "null_as_default")]
    pub timeouts: Timeouts,
    /// Gateway-wide limits on what a client may send and make the gateway hold.
    #[serde(default, deserialize_with = "null_as_default")]
    pub limits: Limits,
    /// TLS termination and client certificates.
    pub tls: Option<auth::Tls>,
    /// JWT verification settings.
    pub jwt: Option<Jwt>,
    /// HMAC service-auth settings.
    pub service_auth: Option<ServiceAuth>,
}

/// Gateway-wide timeouts, as duration strings (`250ms`, `5s`, `1m`, `1h`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// TCP connect to an upstream. Default `5s`.
    pub connect: Option<String>,
    /// Time for an upstream to answer with a response head. Default `30s`.
    pub upstream: Option<String>,
    /// How long in-flight requests may finish after SIGTERM. Default `30s`.
    pub drain: Option<String>,
    /// Time a client has to send its request head. Default `10s`.
    pub header_read: Option<String>,
    /// Time a client has to send a whole buffered request body, and the
    /// longest a streamed body may stall. Default `10s`.
    pub body: Option<String>,
}

/// `gateway.limits:` what one client may send, and what clients may make
/// the gateway hold, gateway-wide. Sizes as in `body_limit` (`64MiB`,
/// `1KiB`, bytes).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The largest request head: the request line and headers over HTTP/1,
    /// the header list over HTTP/2, as a size (`64KiB`). Default `64KiB`.
    pub max_head: Option<String>,
    /// The most header fields in a request. Default 100.
    pub max_headers: Option<u32>,
    /// The least a streamed request body must average, in bytes per
    /// second, once its first `timeouts.body` has passed. Default `1KiB`.
    pub min_body_rate: Option<String>,
    /// Request-body bytes the gateway buffers at once, all clients
    /// together. Default `64MiB`.
    pub body_buffer: Option<String>,
    /// The share of `body_buffer` one client address, and one connection,
    /// may hold. Default `8MiB`.
    pub body_buffer_per_client: Option<String>,
}

/// An upstream service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Base URL: an environment variable and a default.
    pub url: ServiceUrl,
    /// How the gateway proves who it is to this service.
    pub identity: Option<Identity>,
    /// Upstream TLS settings (for `https://` URLs).
    pub tls: Option<UpstreamTls>,
    /// Circuit breaker; on with defaults when absent.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Allow a plain-HTTP URL when `GATEWAY_ENV=production`.
    pub allow_plaintext: Option<bool>,
    /// TCP (and TLS) connect timeout for this service; default
    /// `gateway.timeouts.connect`.
    pub connect_timeout: Option<String>,
    /// Client headers stripped by default (client address or user claims,
    /// e.g. `True-Client-IP`) that this service receives anyway.
    #[serde(default, deserialize_with = "null_as_default")]
    pub allow_client_headers: Vec<String>,
}

/// `url: { env: NAME, default: http://... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceUrl {
    /// The environment variable holding the base URL.
    pub env: String,
    /// The URL used when the variable is unset.
    pub default: String,
}

/// One route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Explicit route id; derived from the path when absent.
    pub id: Option<String>,
    /// The public path pattern.
    pub path: String,
    /// Allowed methods; all standard methods when absent.
    pub methods: Option<Vec<String>>,
    /// Upstream service name (absent when `versions` names them).
    pub service: Option<String>,
    /// Upstream path template (absent when `versions` names them).
    pub upstream: Option<String>,
    /// A named policy, or an inline one.
    pub policy: Option<PolicyRef>,
    /// Several live API versions, each its own upstream.
    pub versions: Option<Versions>,
    /// A weighted share of the traffic to another upstream.
    pub canary: Option<Canary>,
}

/// `policy: name` or `policy: { ... }`.
#[derive(Debug)]
pub enum PolicyRef {
    /// A policy declared under `policies:`.
    Named(String),
    /// A policy written on the route itself.
    Inline(Box<Policy>),
}

/// A policy: what runs between matching and proxying.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Upstream response-head timeout for the route.
    pub timeout: Option<String>,
    /// Client credentials forwarded upstream (stripped otherwise).
    pub forward_credentials: Option<Vec<Credential>>,
    /// User authentication: `jwt` or `none`.
    pub auth: Option<AuthKind>,
    /// Roles of which the caller needs one.
    pub roles: Option<Vec<String>>,
    /// HMAC service authentication.
    pub service_auth: Option<RouteServiceAuth>,
    /// Variable holding the shared `X-Service-Token` secret(s).
    pub service_token: Option<String>,
    /// Rate limit.
    pub rate_limit: Option<RateLimit>,
    /// CORS.
    pub cors: Option<Cors>,
    /// Retries.
    pub retries: Option<Retries>,
    /// Request body limit: `10MiB`, `512KiB`, or bytes. Default `10MiB`.
    pub body_limit: Option<String>,
    /// Time the client has to send a buffered body, and the longest a
    /// streamed one may stall. Default `gateway.timeouts.body`.
    pub body_timeout: Option<String>,
}

/// A client credential that a route may forward upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    /// The `Authorization` header.
    Authorization,
    /// The `X-Service-Token` header.
    ServiceToken,
    /// The JWT cookie (`gateway.jwt.cookie`); other cookies always pass.
    AuthCookie,
}

/// An empty section (`timeouts:` with nothing under it) means the default.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A mapping whose keys must be unique: YAML parsers keep the last of two
/// equal keys, which would silently drop a service or policy.
pub(crate) fn unique_map<'de, D, T>(d: D) -> Result<BTreeMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = BTreeMap<String, T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a mapping of names")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key_seed(NewKey(&out))? {
                let value = map.next_value()?;
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

/// A mapping key that must not be in `self.0` yet. The check runs inside
/// the key's visitor so that the error carries the second key's position.
struct NewKey<'m, T>(&'m BTreeMap<String, T>);

impl<'de, T> de::DeserializeSeed<'de> for NewKey<'_, T> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, T> Visitor<'de> for NewKey<'_, T> {
    type Value = String;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        if self.0.contains_key(v) {
            Err(E::custom(format_args!("`{v}` is declared twice")))
        } else {
            Ok(v.to_owned())
        }
    }
}

impl<'de> Deserialize<'de> for PolicyRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PolicyRef;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a policy name or a policy mapping")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PolicyRef, E> {
                Ok(PolicyRef::Named(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PolicyRef, A::Error> {
                Policy::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|p| PolicyRef::Inline(Box::new(p)))
            }
        }
        d.deserialize_any(V)
    }
}

/// The parsed spec with the text it came from, so that any later
/// diagnostic can point at a line and column.
#[derive(Debug)]
pub struct Source<'a> {
    /// The file name used in diagnostics (`gateway.yaml`).
    pub file: &'a str,
    /// The spec text.
    pub text: &'a str,
}

impl Source<'_> {
    /// Parses the spec.
    ///
    /// # Errors
    /// A YAML syntax error, an unknown field or a wrongly typed value, located.
    pub fn parse(&self) -> Result<Spec, Diagnostics> {
        serde_yaml::from_str::<Spec>(self.text)
            .map_err(|e| Diagnostics::one(shape::diagnose(self, &e)))
    }

    /// The line and column of the value at `path`, or of its nearest
    /// ancestor that exists in the text.
    pub fn locate(&self, path: &SpecPath) -> (usize, usize) {
        locate::locate(self.text, path)
    }
}

/// `services.*.circuit_breaker`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    /// `false` turns the breaker off. Default `true`.
    pub enabled: Option<bool>,
    /// Consecutive failures that open the circuit. Default 5.
    pub failures: Option<u32>,
    /// How long the circuit stays open before probing. Default `30s`.
    pub open_for: Option<String>,
    /// Probes admitted at once while half-open. Default 1.
    pub probes: Option<u32>,
    /// Also open when this percent of the requests in `window` failed.
    /// Off by default.
    pub failure_rate: Option<u32>,
    /// The failure-rate window. Default `30s`.
    pub window: Option<String>,
    /// Requests in the window below which the rate is not judged.
    /// Default 20.
    pub min_requests: Option<u32>,
}

/// `services.*.tls`: how an `https://` upstream's certificate is verified.
/// There is no setting that turns verification off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// Variable holding the path of a PEM CA bundle that replaces the
    /// system roots for this service.
    pub ca_file_env: Option<String>,
    /// Variable holding the path of the PEM client certificate chain
    /// presented to the service (mutual TLS).
    pub client_cert_env: Option<String>,
    /// Variable holding the path of that certificate's PEM private key.
    pub client_key_env: Option<String>,
}
