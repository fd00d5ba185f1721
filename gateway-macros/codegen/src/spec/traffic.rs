//! The traffic part of the spec model (contract §7): rate limits, CORS,
//! body limits.

use serde::Deserialize;

/// `rate_limit:` of a policy: a token bucket per route and key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained rate: `100/min`, `10/s`, `1000/h`.
    pub rate: String,
    /// Requests allowed at once before the rate applies. Default: 1.
    pub burst: Option<u32>,
    /// What a bucket belongs to. Default `consumer`.
    pub key: Option<RateKey>,
    /// The name in `RateLimit-Policy`; default the policy's name.
    pub name: Option<String>,
}

/// What each bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKey {
    /// The JWT subject, else the verified calling service, else the client
    /// address; checked after authentication.
    Consumer,
    /// The client address; checked before authentication.
    Ip,
    /// The verified calling service, else the client address.
    Service,
    /// One bucket for the whole route.
    Route,
}

/// `cors:` of a policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    /// Allowed origins: exact `scheme://host[:port]` values, or `["*"]`.
    pub origins: Vec<String>,
    /// Methods a preflight allows. Default: the route's methods.
    pub methods: Option<Vec<String>>,
    /// Request headers a preflight allows.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Response headers scripts may read.
    #[serde(default)]
    pub expose: Vec<String>,
    /// Whether credentials (cookies) may be sent. Default `false`.
    pub credentials: Option<bool>,
    /// How long a preflight may be cached. Default `0s` (not cached).
    pub max_age: Option<String>,
}

/// `canary:` of a route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// The service that gets the canary share (same upstream template).
    pub service: String,
    /// Percent of consumers sent to it, 0 to 100 (decimals allowed).
    pub weight: f64,
    /// Request header forcing a side. Default `X-Canary`.
    pub header: Option<String>,
    /// The values of `header` that force each side. Default `always`
    /// (canary) and `never` (stable).
    pub force_values: Option<CanaryForceValues>,
}

/// `canary.force_values:` the words that force each side, so a team can
/// use the ones its tooling already sends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryForceValues {
    /// Sends the request to the canary service. Default `always`.
    pub canary: Option<String>,
    /// Sends the request to the route's own service. Default `never`.
    pub stable: Option<String>,
}

/// `retries:` of a policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    /// Attempts in all, the first included (2 to 10).
    pub attempts: u32,
    /// Upstream statuses that are retried. Connect errors always are.
    #[serde(default)]
    pub on: Vec<u16>,
    /// Timeout of each attempt; its expiry is retried. Default: none (the
    /// route's `timeout` bounds every attempt together).
    pub per_try_timeout: Option<String>,
    /// First backoff; doubles per attempt, with full jitter. Default `25ms`.
    pub backoff: Option<String>,
    /// Longest backoff. Default `1s`.
    pub max_backoff: Option<String>,
    /// Retries at most this percent of requests. Default 20.
    pub budget: Option<u32>,
    /// Retries always allowed per second, however quiet. Default 10.
    pub min_per_second: Option<u32>,
    /// Also retry POST and PATCH. Default `false`.
    pub non_idempotent: Option<bool>,
}

/// `versions:` of a route: several live API versions, each its own
/// upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Versions {
    /// The `<vendor>` of `application/vnd.<vendor>.v<name>+json`.
    pub vendor: String,
    /// The version served when a request names none.
    #[serde(deserialize_with = "version_name")]
    pub default: String,
    /// The live versions, oldest first.
    pub live: Vec<Version>,
}

/// One live API version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    /// Its name: `1`, `2`, `2024-06-01`.
    #[serde(deserialize_with = "version_name")]
    pub version: String,
    /// The upstream service serving it.
    pub service: String,
    /// Its upstream path template.
    pub upstream: String,
    /// Deprecation notice, when the version is on its way out.
    pub deprecated: Option<Deprecated>,
}

/// `deprecated:` of a version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deprecated {
    /// When it was deprecated: `2026-01-31` or `2026-01-31T12:00:00Z`.
    pub since: String,
    /// When it stops being served (same forms).
    pub sunset: Option<String>,
    /// A page explaining the deprecation (`Link: <url>; rel="deprecation"`).
    pub link: Option<String>,
    /// Answer `410 Gone` once the sunset has passed. Default `false`.
    pub gone_after_sunset: Option<bool>,
}

/// A version name written as a YAML string or whole number (`1`, `"2"`);
/// anything else gets an error that says how to write it.
fn version_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Name;
    impl serde::de::Visitor<'_> for Name {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a version name such as `2` or `\"2024-06-01\"`")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
            Err(E::custom(format_args!(
                "the version name {v} is a number; quote it (`\"{v}\"`) so it is kept as written"
            )))
        }
    }
    d.deserialize_any(Name)
}
