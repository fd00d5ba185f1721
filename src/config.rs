//! Start-up configuration: what comes from the environment, resolved and
//! checked once, with errors that name the variable at fault.

use std::net::{IpAddr, SocketAddr};

use crate::spec::{GatewaySpec, ServiceSpec};

/// The environment the gateway starts in (tests pass their own), and the
/// masking of variable names in messages: the `gateway-service` crate's,
/// whose credentials read the same environment.
pub use gateway_service::env::{is_variable_name, StartupEnv, VarName};

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// `GATEWAY_LISTEN` or the spec's listen address is unusable.
    #[error("GATEWAY_LISTEN: `{0}` is not an address to listen on (e.g. 0.0.0.0:8000)")]
    Listen(String),
    /// An upstream URL variable holds an unusable URL.
    #[error("{var}: `{value}` is not a usable upstream URL: {why}")]
    UpstreamUrl {
        /// The variable (or `default of <service>`).
        var: String,
        /// Its value.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A trusted proxy entry is not an address or block.
    #[error("gateway.trusted_proxies: `{0}` is not an IP address or CIDR block")]
    TrustedProxy(String),
    /// The compiled router could not be built.
    #[error("the compiled routes could not be loaded into the router: {0}")]
    Router(String),
    /// A variable holding a secret is unset or empty. The variable is
    /// shown through [`VarName`]: a configured "name" that is really a
    /// pasted secret is never printed in full.
    #[error("{}: {what} is not set", VarName(var))]
    MissingSecret {
        /// The variable.
        var: String,
        /// What it should hold.
        what: String,
    },
    /// A key file is unreadable or malformed.
    #[error("{}: {why}", VarName(var))]
    BadKey {
        /// The variable naming the file.
        var: String,
        /// What is wrong.
        why: String,
    },
    /// The revocation list cannot be used.
    #[error("revocation list `{path}`: {why}")]
    Revocation {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// A setting is not acceptable.
    #[error("{var}: {why}")]
    Config {
        /// The variable or spec field.
        var: String,
        /// What is wrong.
        why: String,
    },
    /// Binding the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

impl From<gateway_service::EnvError> for StartupError {
    /// The `gateway-service` crate's credential errors are the variants
    /// of the same names and texts.
    fn from(e: gateway_service::EnvError) -> Self {
        use gateway_service::EnvError;
        match e {
            EnvError::MissingSecret { var, what } => StartupError::MissingSecret { var, what },
            EnvError::BadKey { var, why } => StartupError::BadKey { var, why },
            EnvError::Config { var, why } => StartupError::Config { var, why },
        }
    }
}

/// `dev.env`'s development JWT secret, also what `gateway demo` uses.
pub const DEV_JWT_SECRET: &str = "aegis-local-dev-secret-change-in-production";

/// Every development-only credential (`dev.env`, `gateway demo`) starts
/// with this: `dev-only-<service>-credential`.
pub const DEV_SECRET_PREFIX: &str = "dev-only-";

/// The variable that lets a published development secret serve beyond
/// loopback.
pub const ALLOW_DEV_SECRETS: &str = "GATEWAY_ALLOW_DEV_SECRETS";

/// The development credential `dev.env` and `gateway demo` give a service.
pub fn dev_service_secret(service: &str) -> String {
    format!(
        "{DEV_SECRET_PREFIX}{}-credential",
        service.replace('_', "-")
    )
}

/// Whether `value` (or one of its comma-separated rotation entries) is a
/// published development secret.
pub fn is_dev_secret(value: &str) -> bool {
    value
        .split(',')
        .map(str::trim)
        .any(|v| v == DEV_JWT_SECRET || v.starts_with(DEV_SECRET_PREFIX))
}

/// Refuses a published development secret (`dev.env`'s values) on an
/// address other clients can reach: anyone who has read `dev.env` could
/// mint tokens for it. Loopback is fine; `GATEWAY_ALLOW_DEV_SECRETS=1`
/// overrides (a throw-away test host, say).
///
/// # Errors
/// The first variable (by name) holding a development secret, when `addr`
/// is not loopback and the override is not set.
pub fn check_dev_secrets(env: &StartupEnv, addr: SocketAddr) -> Result<(), StartupError> {
    if addr.ip().to_canonical().is_loopback() || env.get(ALLOW_DEV_SECRETS) == Some("1") {
        return Ok(());
    }
    let mut names: Vec<&str> = env
        .vars()
        .filter(|(_, v)| is_dev_secret(v))
        .map(|(k, _)| k)
        .collect();
    names.sort_unstable();
    match names.first() {
        None => Ok(()),
        Some(var) => Err(StartupError::Config {
            var: VarName(var).to_string(),
            why: format!(
                "holds a published development secret (dev.env), and the gateway would listen on {addr}, \
                 beyond this machine; set a real secret, listen on 127.0.0.1 (GATEWAY_LISTEN), \
                 or set {ALLOW_DEV_SECRETS}=1 to serve it anyway"
            ),
        }),
    }
}

/// The listen address: `GATEWAY_LISTEN`, else the spec's.
///
/// # Errors
/// An unparsable address.
pub fn listen_addr(g: &GatewaySpec, env: &StartupEnv) -> Result<SocketAddr, StartupError> {
    let s = env.get("GATEWAY_LISTEN").unwrap_or(g.listen);
    s.parse().map_err(|_| StartupError::Listen(s.to_owned()))
}

/// An upstream base URL, split for building request URIs (the service
/// client's [`gateway_service::BaseUrl`]).
pub use gateway_service::BaseUrl as UpstreamUrl;

/// Resolves a service's base URL from its variable or default.
///
/// # Errors
/// A URL that is not plain `http://host[:port][/prefix]`.
pub fn upstream_url(s: &ServiceSpec, env: &StartupEnv) -> Result<UpstreamUrl, StartupError> {
    let (var, value) = match env.get(s.url_env) {
        Some(v) => (s.url_env.to_owned(), v),
        None => (
            format!("default URL of service `{}`", s.name),
            s.default_url,
        ),
    };
    UpstreamUrl::parse(value).map_err(|why| StartupError::UpstreamUrl {
        var,
        value: value.to_owned(),
        why,
    })
}

/// Trusted proxy addresses and CIDR blocks.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses the spec's list.
    ///
    /// # Errors
    /// An entry that is not an address or block.
    pub fn parse(list: &[&str]) -> Result<Self, StartupError> {
        let mut out = Vec::new();
        for s in list {
            let bad = || StartupError::TrustedProxy((*s).to_owned());
            let (addr, len) = match s.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (*s, None),
            };
            let ip: IpAddr = addr.parse().map_err(|_| bad())?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = match len {
                Some(l) => l.parse::<u8>().ok().filter(|n| *n <= max).ok_or_else(bad)?,
                None => max,
            };
            out.push((ip, len));
        }
        Ok(TrustedProxies(out))
    }

    /// Whether `ip` is inside any trusted block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.0.iter().any(|&(net, len)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_match_blocks() {
        let t = TrustedProxies::parse(&["10.0.0.0/8", "192.168.1.7", "fd00::/8"]).unwrap();
        assert!(t.contains("10.1.2.3".parse().unwrap()));
        assert!(t.contains("192.168.1.7".parse().unwrap()));
        assert!(!t.contains("192.168.1.8".parse().unwrap()));
        assert!(t.contains("fd12::1".parse().unwrap()));
        assert!(t.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(!t.contains("11.0.0.1".parse().unwrap()));
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
    }

    #[test]
    fn upstream_urls_come_from_env_or_default() {
        let s = ServiceSpec {
            name: "orchestration",
            url_env: "ORCHESTRATION_URL",
            default_url: "http://localhost:8001",
            identity: crate::outbound::OutboundIdentity::Unsigned,
            allow_plaintext: false,
            breaker: None,
            tls_ca_env: None,
            tls_client_cert: None,
            connect_timeout: None,
            allow_client_headers: &[],
        };
        let u = upstream_url(&s, &StartupEnv::default()).unwrap();
        assert_eq!(u.authority.as_str(), "localhost:8001");
        let env = StartupEnv::from_pairs([("ORCHESTRATION_URL", "http://10.0.0.1:9000/base/")]);
        let u = upstream_url(&s, &env).unwrap();
        assert_eq!(
            (u.authority.as_str(), u.base_path.as_str()),
            ("10.0.0.1:9000", "/base")
        );
        let env = StartupEnv::from_pairs([("ORCHESTRATION_URL", "ftp://x")]);
        let e = upstream_url(&s, &env).unwrap_err().to_string();
        assert!(e.starts_with("ORCHESTRATION_URL: `ftp://x`"), "{e}");
    }

    /// Issue 14, point 8: a `secret_env` holding a pasted secret is never
    /// echoed in full when its "variable" is unset.
    #[test]
    fn a_name_that_looks_like_a_secret_is_never_printed_in_full() {
        for name in [
            "JWT_SECRET",
            "ID_BILLING_SECRET",
            "X509_CERT_FILE",
            "K8S_TOKEN",
            "_X1",
        ] {
            assert!(is_variable_name(name), "{name}");
        }
        for secret in [
            "S3CR3TVALUE123",
            "s3cr3t-value",
            "hunter2",
            "AKIAIOSFODNN7EXAMPLEKEY0123",
            "1ABC",
            "",
        ] {
            assert!(!is_variable_name(secret), "{secret}");
            let e = StartupError::MissingSecret {
                var: secret.into(),
                what: "the HS256 JWT secret".into(),
            }
            .to_string();
            assert!(secret.len() < 3 || !e.contains(secret), "{e}");
            assert!(e.contains(&format!("({} characters", secret.len())), "{e}");
        }
        let e = StartupError::MissingSecret {
            var: "S3CR3TVALUE123 (or S3CR3TVALUE123_FILE)".into(),
            what: "the credential".into(),
        }
        .to_string();
        assert!(!e.contains("S3CR3T"), "{e}");
        assert!(e.starts_with("`S3…` (14 characters"), "{e}");
        let e = StartupError::MissingSecret {
            var: "APPROVAL_SERVICE_SECRET (or APPROVAL_SERVICE_SECRET_FILE)".into(),
            what: "the credential".into(),
        }
        .to_string();
        assert_eq!(
            e,
            "APPROVAL_SERVICE_SECRET (or APPROVAL_SERVICE_SECRET_FILE): the credential is not set"
        );
        let e = StartupError::BadKey {
            var: "S3CR3TVALUE123".into(),
            why: "cannot read".into(),
        }
        .to_string();
        assert!(!e.contains("S3CR3TVALUE123"), "{e}");
    }

    /// Issue 14, point 2: `dev.env`'s secrets serve loopback only, unless
    /// told otherwise.
    #[test]
    fn development_secrets_are_refused_beyond_loopback() {
        let dev = StartupEnv::from_pairs([("JWT_SECRET", DEV_JWT_SECRET), ("OTHER", "a real one")]);
        let any: SocketAddr = "0.0.0.0:8000".parse().unwrap();
        let e = check_dev_secrets(&dev, any).unwrap_err().to_string();
        assert!(
            e.starts_with("JWT_SECRET: holds a published development secret"),
            "{e}"
        );
        assert!(e.contains("GATEWAY_ALLOW_DEV_SECRETS=1"), "{e}");
        assert!(!e.contains(DEV_JWT_SECRET), "{e}");
        for ok in [
            "127.0.0.1:8000",
            "[::1]:8000",
            "127.0.0.2:9",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(check_dev_secrets(&dev, ok.parse().unwrap()).is_ok(), "{ok}");
        }
        let mut allowed = dev.clone();
        allowed.set(ALLOW_DEV_SECRETS, "1");
        assert!(check_dev_secrets(&allowed, any).is_ok());
        let rotated = StartupEnv::from_pairs([("M", "new-secret, dev-only-memory-credential")]);
        assert!(check_dev_secrets(&rotated, any).is_err());
        let real = StartupEnv::from_pairs([("JWT_SECRET", "a real secret")]);
        assert!(check_dev_secrets(&real, any).is_ok());
    }

    /// `dev.env` and `gateway demo` publish the same development secrets,
    /// and the start-up check knows every one of them.
    #[test]
    fn dev_env_holds_the_known_development_secrets() {
        let text = include_str!("../dev.env");
        let mut secrets = 0;
        for line in text.lines().filter(|l| l.starts_with("export ")) {
            let (name, rest) = line["export ".len()..].split_once('=').unwrap();
            let value = rest
                .trim_matches('"')
                .strip_prefix(&format!("${{{name}:-"))
                .and_then(|v| v.strip_suffix('}'))
                .unwrap_or_else(|| panic!("{line}: write `export NAME=\"${{NAME:-value}}\"`"));
            if name == "GATEWAY_LISTEN" {
                let addr: SocketAddr = value.parse().unwrap();
                assert!(addr.ip().is_loopback(), "{line}");
                continue;
            }
            assert!(is_dev_secret(value), "{line}");
            if let Some(service) = name.strip_suffix("_SERVICE_SECRET") {
                assert_eq!(
                    value,
                    dev_service_secret(&service.to_ascii_lowercase()),
                    "{line}"
                );
            } else {
                assert_eq!((name, value), ("JWT_SECRET", DEV_JWT_SECRET));
            }
            secrets += 1;
        }
        // JWT_SECRET and one credential per signed service of the bundled spec.
        let signed = <crate::routes::Spec as crate::spec::Spec>::SERVICES
            .iter()
            .filter(|s| !matches!(s.identity, crate::outbound::OutboundIdentity::Unsigned))
            .count();
        assert_eq!(secrets, 1 + signed, "JWT_SECRET and one per signed service");
        assert!(
            text.contains("export GATEWAY_LISTEN="),
            "dev.env binds loopback"
        );
    }

    #[test]
    fn set_default_keeps_what_is_set() {
        let mut env = StartupEnv::from_pairs([("A", "1"), ("B", "")]);
        assert!(!env.set_default("A", "x"));
        assert!(env.set_default("B", "y"));
        assert!(env.set_default("C", "z"));
        assert_eq!(
            (env.get("A"), env.get("B"), env.get("C")),
            (Some("1"), Some("y"), Some("z"))
        );
    }
}
