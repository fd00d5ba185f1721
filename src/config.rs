//! Start-up configuration: what comes from the environment, resolved and
//! checked once, with errors that name the variable at fault.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::spec::{GatewaySpec, ServiceSpec};

/// The environment the gateway starts in. Tests pass their own.
#[derive(Debug, Clone, Default)]
pub struct StartupEnv {
    vars: HashMap<String, String>,
}

impl StartupEnv {
    /// The process environment.
    pub fn from_process() -> Self {
        StartupEnv {
            vars: std::env::vars().collect(),
        }
    }

    /// An environment from pairs (for tests and tools).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        StartupEnv {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A variable's value, if set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

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
    /// A variable holding a secret is unset or empty.
    #[error("{var}: {what} is not set")]
    MissingSecret {
        /// The variable.
        var: String,
        /// What it should hold.
        what: String,
    },
    /// A key file is unreadable or malformed.
    #[error("{var}: {why}")]
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

/// The listen address: `GATEWAY_LISTEN`, else the spec's.
///
/// # Errors
/// An unparsable address.
pub fn listen_addr(g: &GatewaySpec, env: &StartupEnv) -> Result<SocketAddr, StartupError> {
    let s = env.get("GATEWAY_LISTEN").unwrap_or(g.listen);
    s.parse().map_err(|_| StartupError::Listen(s.to_owned()))
}

/// An upstream base URL, split for building request URIs.
#[derive(Debug, Clone)]
pub struct UpstreamUrl {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// `host:port`.
    pub authority: http::uri::Authority,
    /// Path prefix without a trailing slash (often empty).
    pub base_path: String,
}

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
    let err = |why| StartupError::UpstreamUrl {
        var: var.clone(),
        value: value.to_owned(),
        why,
    };
    let uri: http::Uri = value.parse().map_err(|_| err("not a URL"))?;
    let scheme = uri.scheme().cloned().ok_or_else(|| err("no scheme"))?;
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        return Err(err("the scheme must be http or https"));
    }
    let authority = uri.authority().cloned().ok_or_else(|| err("no host"))?;
    if authority.as_str().contains('@') {
        return Err(err("credentials do not belong in the URL"));
    }
    if uri.query().is_some() {
        return Err(err("a base URL has no query"));
    }
    Ok(UpstreamUrl {
        scheme,
        authority,
        base_path: uri.path().trim_end_matches('/').to_owned(),
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
}
