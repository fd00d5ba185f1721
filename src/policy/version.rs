//! API version selection (contract §7): `API-Version`, else `Accept`
//! (`application/vnd.<vendor>.v<name>+json` or a `version=` parameter),
//! else the route's default. Header values for deprecated versions are
//! computed at build time; selection allocates nothing.

use http::{HeaderMap, HeaderValue};

use crate::headers::name;

pub use crate::spec::policies::{DeprecatedSpec, VersionSet, VersionSpec};

/// The request named no version this route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported;

impl VersionSet {
    /// The version a request selects, as an index into `live`.
    ///
    /// `API-Version` wins when present (several lines must agree). Else
    /// the `Accept` ranges that name a version are weighed by `q`; among
    /// equals the default wins, then the newest. So the result never
    /// depends on the order of headers or of ranges.
    ///
    /// # Errors
    /// [`Unsupported`] when the request names only versions not served.
    pub fn select(&self, headers: &HeaderMap) -> Result<usize, Unsupported> {
        let mut named: Option<usize> = None;
        for v in headers.get_all(name::API_VERSION) {
            let want = v.to_str().map_err(|_| Unsupported)?.trim();
            let i = self.index(want).ok_or(Unsupported)?;
            if named.is_some_and(|n| n != i) {
                return Err(Unsupported);
            }
            named = Some(i);
        }
        if let Some(i) = named {
            return Ok(i);
        }
        // (q in thousandths, index)
        let mut best: Option<(u16, usize)> = None;
        let mut saw_unknown = false;
        for v in headers.get_all(http::header::ACCEPT) {
            let Ok(v) = v.to_str() else { continue };
            for range in v.split(',') {
                let Some((name, q)) = self.named_in(range) else {
                    continue;
                };
                if q == 0 {
                    continue;
                }
                let Some(i) = name.and_then(|n| self.index(n)) else {
                    saw_unknown = true;
                    continue;
                };
                best = Some(match best {
                    Some(b) if self.better(b, (q, i)) => b,
                    _ => (q, i),
                });
            }
        }
        match best {
            Some((_, i)) => Ok(i),
            None if saw_unknown => Err(Unsupported),
            None => Ok(self.default),
        }
    }

    /// Whether candidate `a` beats `b`: higher q, then the default, then
    /// the newer version.
    fn better(&self, a: (u16, usize), b: (u16, usize)) -> bool {
        if a.0 != b.0 {
            return a.0 > b.0;
        }
        if a.1 == self.default || b.1 == self.default {
            return a.1 == self.default;
        }
        a.1 >= b.1
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.live.iter().position(|v| v.name == name)
    }

    /// For a media range naming a version: `(Some(name), q)`, or
    /// `(None, q)` when its two ways of naming one disagree. `None` for a
    /// range that names no version.
    fn named_in<'a>(&self, range: &'a str) -> Option<(Option<&'a str>, u16)> {
        let mut parts = range.split(';');
        let media = parts.next()?.trim();
        let from_type = media
            .split_once('/')
            .filter(|(t, _)| t.eq_ignore_ascii_case("application"))
            .and_then(|(_, sub)| vendor_version(sub, self.vendor));
        let mut from_param = None;
        let mut q = 1000;
        for p in parts {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim().trim_matches('"'));
            if k.eq_ignore_ascii_case("version") {
                from_param = Some(v);
            } else if k.eq_ignore_ascii_case("q") {
                q = parse_q(v);
            }
        }
        match (from_type, from_param) {
            (None, None) => None,
            (Some(a), Some(b)) if a != b => Some((None, q)),
            (Some(a), _) | (None, Some(a)) => Some((Some(a), q)),
        }
    }

    /// Adds `API-Version`, `Vary` and a deprecated version's headers.
    pub fn response_headers(&self, selected: Option<usize>, h: &mut HeaderMap) {
        h.append(
            http::header::VARY,
            HeaderValue::from_static("API-Version, Accept"),
        );
        let Some(v) = selected.and_then(|i| self.live.get(i)) else {
            return;
        };
        h.insert(name::API_VERSION, HeaderValue::from_static(v.name));
        if let Some(d) = &v.deprecated {
            h.insert(name::DEPRECATION, HeaderValue::from_static(d.deprecation));
            if let Some(s) = d.sunset {
                h.insert(name::SUNSET, HeaderValue::from_static(s));
            }
            if let Some(l) = d.link {
                h.append(http::header::LINK, HeaderValue::from_static(l));
            }
        }
    }
}

impl DeprecatedSpec {
    /// Whether the version answers 410 at `now` (Unix seconds).
    pub fn gone(&self, now: u64) -> bool {
        self.gone_after_sunset && self.sunset_unix.is_some_and(|s| now >= s)
    }
}

/// `vnd.<vendor>.v<name>+json` -> `<name>`.
fn vendor_version<'a>(sub: &'a str, vendor: &str) -> Option<&'a str> {
    let rest = strip_prefix_ci(sub, "vnd.")?;
    let rest = strip_prefix_ci(rest, vendor)?;
    let rest = strip_prefix_ci(rest, ".v")?;
    let n = rest.len().checked_sub(5)?;
    let (name, suffix) = (rest.get(..n)?, rest.get(n..)?);
    (suffix.eq_ignore_ascii_case("+json") && !name.is_empty()).then_some(name)
}

fn strip_prefix_ci<'a>(s: &'a str, p: &str) -> Option<&'a str> {
    let head = s.get(..p.len())?;
    head.eq_ignore_ascii_case(p).then(|| &s[p.len()..])
}

/// RFC 9110 qvalue in thousandths; malformed counts as 1.
fn parse_q(v: &str) -> u16 {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    match int {
        "0" => {
            let mut n = 0u16;
            for (i, c) in frac.bytes().take(3).enumerate() {
                if !c.is_ascii_digit() {
                    return 1000;
                }
                n += u16::from(c - b'0') * [100, 10, 1][i];
            }
            n
        }
        _ => 1000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &[VersionSpec] = &[
        VersionSpec {
            name: "1",
            service: 0,
            upstream: &[],
            deprecated: None,
        },
        VersionSpec {
            name: "2",
            service: 0,
            upstream: &[],
            deprecated: None,
        },
        VersionSpec {
            name: "2024-06-01",
            service: 0,
            upstream: &[],
            deprecated: None,
        },
    ];
    const SET: VersionSet = VersionSet {
        vendor: "aegis",
        default: 1,
        live: LIVE,
        names: &["1", "2", "2024-06-01"],
    };

    fn pick(h: &[(&'static str, &'static str)]) -> Result<&'static str, Unsupported> {
        let mut m = HeaderMap::new();
        for (k, v) in h {
            m.append(*k, HeaderValue::from_static(v));
        }
        SET.select(&m).map(|i| LIVE[i].name)
    }

    #[test]
    fn api_version_then_accept_then_default() {
        assert_eq!(pick(&[]), Ok("2"));
        assert_eq!(pick(&[("api-version", "1")]), Ok("1"));
        assert_eq!(pick(&[("api-version", " 2024-06-01 ")]), Ok("2024-06-01"));
        assert_eq!(
            pick(&[
                ("accept", "application/vnd.aegis.v1+json"),
                ("api-version", "2024-06-01")
            ]),
            Ok("2024-06-01")
        );
        assert_eq!(
            pick(&[("accept", "application/vnd.AEGIS.v1+JSON")]),
            Ok("1")
        );
        assert_eq!(pick(&[("accept", "application/json; version=1")]), Ok("1"));
        assert_eq!(
            pick(&[("accept", "application/json;version=\"1\"")]),
            Ok("1")
        );
        assert_eq!(pick(&[("accept", "application/json, text/html")]), Ok("2"));
        assert_eq!(
            pick(&[("accept", "application/vnd.other.v1+json")]),
            Ok("2")
        );
    }

    #[test]
    fn unknown_versions_are_refused() {
        assert_eq!(pick(&[("api-version", "3")]), Err(Unsupported));
        assert_eq!(pick(&[("api-version", "")]), Err(Unsupported));
        assert_eq!(
            pick(&[("api-version", "1"), ("api-version", "2")]),
            Err(Unsupported)
        );
        assert_eq!(
            pick(&[("accept", "application/vnd.aegis.v9+json")]),
            Err(Unsupported)
        );
        assert_eq!(
            pick(&[("accept", "application/vnd.aegis.v1+json; version=2")]),
            Err(Unsupported)
        );
        // A known version among unknown ones is served.
        assert_eq!(
            pick(&[(
                "accept",
                "application/vnd.aegis.v9+json, application/vnd.aegis.v1+json"
            )]),
            Ok("1")
        );
    }

    #[test]
    fn accept_weighs_q_then_prefers_default_then_newest() {
        assert_eq!(
            pick(&[(
                "accept",
                "application/vnd.aegis.v1+json;q=0.5, application/json;version=2024-06-01;q=0.9"
            )]),
            Ok("2024-06-01")
        );
        assert_eq!(
            pick(&[(
                "accept",
                "application/vnd.aegis.v1+json, application/vnd.aegis.v2+json"
            )]),
            Ok("2")
        );
        assert_eq!(
            pick(&[(
                "accept",
                "application/vnd.aegis.v2024-06-01+json, application/vnd.aegis.v1+json"
            )]),
            Ok("2024-06-01")
        );
        assert_eq!(
            pick(&[("accept", "application/vnd.aegis.v1+json;q=0")]),
            Ok("2")
        );
    }

    #[test]
    fn deprecated_versions_carry_their_headers() {
        static LIVE: [VersionSpec; 1] = [VersionSpec {
            name: "1",
            service: 0,
            upstream: &[],
            deprecated: Some(DeprecatedSpec {
                deprecation: "@1767225600",
                sunset: Some("Wed, 30 Jun 2027 00:00:00 GMT"),
                sunset_unix: Some(1_814_313_600),
                link: Some("<https://docs.example/v1>; rel=\"deprecation\""),
                gone_after_sunset: true,
            }),
        }];
        let set = VersionSet {
            vendor: "aegis",
            default: 0,
            live: &LIVE,
            names: &["1"],
        };
        let mut h = HeaderMap::new();
        set.response_headers(Some(0), &mut h);
        assert_eq!(h["api-version"], "1");
        assert_eq!(h["vary"], "API-Version, Accept");
        assert_eq!(h["deprecation"], "@1767225600");
        assert_eq!(h["sunset"], "Wed, 30 Jun 2027 00:00:00 GMT");
        assert_eq!(h["link"], "<https://docs.example/v1>; rel=\"deprecation\"");
        let d = LIVE[0].deprecated.as_ref().unwrap();
        assert!(!d.gone(1_814_313_599));
        assert!(d.gone(1_814_313_600));
    }
}
