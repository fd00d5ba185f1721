//! Traffic rules (contract §7): rate limits, CORS, body limits.

use super::{values, Ctx};
use crate::diag::Problem;
use crate::ir::traffic::{CorsIr, RateLimitIr, RetriesIr};
use crate::spec::{Cors, RateKey, RateLimit, Retries, SpecPath};

/// `100/min` -> (100, 60).
pub fn parse_rate(s: &str) -> Result<(u32, u64), Problem> {
    let help = "write a count per unit: `100/min`, `10/s`, `5000/h`";
    let (n, unit) = s
        .split_once('/')
        .ok_or_else(|| Problem::new(format!("`{s}` is not a rate"), help))?;
    let n = n.trim();
    let n: u32 = n.parse().map_err(|_| {
        // All digits, yet no u32: the count is simply too large.
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            Problem::new(
                format!("the count {n} in `{s}` is too large for a rate limit"),
                format!(
                    "use a count of at most {} per unit, e.g. `{}/s`, or remove `rate_limit` for no limit",
                    u32::MAX,
                    u32::MAX
                ),
            )
        } else {
            Problem::new(format!("`{s}` is not a rate"), help)
        }
    })?;
    let window = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        "d" | "day" => 86_400,
        _ => return Err(Problem::new(format!("`{s}` has an unknown unit"), help)),
    };
    if n == 0 {
        return Err(Problem::new(
            "a rate of zero admits nothing",
            "use a positive count",
        ));
    }
    Ok((n, window))
}

/// `10MiB`, `512KiB`, `1000000` -> bytes; at most 1 GiB.
pub fn parse_size(s: &str) -> Result<u64, Problem> {
    let bytes = size_bytes(s)?;
    if bytes == 0 || bytes > 1 << 30 {
        return Err(Problem::new(
            format!("body limit `{s}` is out of range"),
            "use between 1 byte and 1GiB",
        ));
    }
    Ok(bytes)
}

/// `10MiB`, `512KiB`, `1000000` -> bytes (saturating), range unchecked.
pub fn size_bytes(s: &str) -> Result<u64, Problem> {
    let help = "write bytes with an optional unit: `512KiB`, `10MiB`, `1GiB`, `100000`";
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let n: u64 = n
        .parse()
        .map_err(|_| Problem::new(format!("`{s}` is not a size"), help))?;
    let scale = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(Problem::new(format!("`{s}` has an unknown unit"), help)),
    };
    Ok(n.saturating_mul(scale))
}

/// A rate limit's IR, without diagnostics (they were reported where the
/// policy is written).
pub fn rate_limit_ir(r: &RateLimit, default_name: &str) -> Option<RateLimitIr> {
    let (count, window_s) = parse_rate(&r.rate).ok()?;
    let name = r.name.clone().unwrap_or_else(|| header_name(default_name));
    Some(RateLimitIr {
        count,
        window_s,
        burst: r.burst.unwrap_or(count).max(1),
        key: r.key.unwrap_or(RateKey::Consumer),
        name,
    })
}

/// A default policy name fit for a header: the policy's name, or the
/// route path with anything but `[A-Za-z0-9_.-]` replaced.
fn header_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_matches('_')
        .to_owned()
}

/// A CORS policy's IR, without diagnostics.
pub fn cors_ir(c: &Cors) -> CorsIr {
    CorsIr {
        origins: c.origins.iter().filter(|o| *o != "*").cloned().collect(),
        any: c.origins.iter().any(|o| o == "*"),
        methods: c.methods.clone(),
        headers: c.headers.clone(),
        expose: c.expose.clone(),
        credentials: c.credentials.unwrap_or(false),
        max_age_s: match &c.max_age {
            Some(s) if s == "0s" || s == "0" => 0,
            Some(s) => values::duration_ms(s).map(|ms| ms / 1000).unwrap_or(0),
            None => 0,
        },
    }
}

/// A rate limit's own fields.
pub(super) fn check_rate_limit(
    cx: &mut Ctx<'_>,
    at: &SpecPath,
    r: &RateLimit,
    default_name: &str,
) -> Option<RateLimitIr> {
    let (count, window_s) = cx.check(&at.key("rate"), parse_rate(&r.rate))?;
    let burst = r.burst.unwrap_or(count);
    if burst == 0 {
        cx.error(
            &at.key("burst"),
            Problem::new("a burst of zero admits nothing", "use at least 1"),
        );
    }
    let name = r.name.clone().unwrap_or_else(|| default_name.to_owned());
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || name.is_empty()
    {
        cx.error(
            &at.key("name"),
            Problem::new(
                format!("`{name}` cannot be a policy name in a header"),
                "use letters, digits, `-`, `_`, `.`",
            ),
        );
    }
    Some(RateLimitIr {
        count,
        window_s,
        burst: burst.max(1),
        key: r.key.unwrap_or(RateKey::Consumer),
        name,
    })
}

/// Whether `s` is an HTTP token (RFC 9110 §5.6.2).
pub(crate) fn token_ok(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

/// A CORS policy: a wildcard origin cannot carry credentials (browsers
/// refuse it, and it would hand every site the user's cookies).
pub(super) fn check_cors(cx: &mut Ctx<'_>, at: &SpecPath, c: &Cors) -> Option<CorsIr> {
    let any = c.origins.iter().any(|o| o == "*");
    if c.origins.is_empty() {
        cx.error(
            &at.key("origins"),
            Problem::new("no origin is allowed", "list origins, or `[\"*\"]` for any"),
        );
    }
    if any && c.origins.len() > 1 {
        cx.error(
            &at.key("origins"),
            Problem::new(
                "`*` already allows every origin",
                "use `[\"*\"]` alone, or list exact origins",
            ),
        );
    }
    for (i, o) in c.origins.iter().enumerate().filter(|(_, o)| *o != "*") {
        let ok = (o.starts_with("http://") || o.starts_with("https://"))
            && o.split_once("://")
                .is_some_and(|(_, rest)| !rest.is_empty() && !rest.contains('/'));
        if !ok {
            cx.error(
                &at.key("origins").index(i),
                Problem::new(
                    format!("`{o}` is not an origin"),
                    "write `scheme://host[:port]` with no path, e.g. `https://app.example.com`",
                ),
            );
        }
    }
    let credentials = c.credentials.unwrap_or(false);
    if any && credentials {
        cx.error(
            &at.key_name("credentials"),
            Problem::new(
                "a wildcard origin cannot allow credentials",
                "list the exact origins that may send credentials, or set `credentials: false`",
            ),
        );
    }
    if let Some(ms) = &c.methods {
        for (i, m) in ms.iter().enumerate() {
            cx.check(&at.key("methods").index(i), values::method_bit(m));
        }
    }
    for (field, list) in [("headers", &c.headers), ("expose", &c.expose)] {
        for (i, h) in list.iter().enumerate() {
            if !token_ok(h) {
                cx.error(
                    &at.key(field).index(i),
                    Problem::new(
                        format!("`{h}` is not a header name"),
                        "use the header's name, e.g. `Content-Type`",
                    ),
                );
            }
        }
    }
    let max_age_s = match &c.max_age {
        Some(s) if s == "0s" || s == "0" => 0,
        Some(s) => cx
            .check(&at.key("max_age"), values::duration_ms(s))
            .map(|ms| ms / 1000)
            .unwrap_or(0),
        None => 0,
    };
    Some(CorsIr {
        origins: c.origins.iter().filter(|o| *o != "*").cloned().collect(),
        any,
        methods: c.methods.clone(),
        headers: c.headers.clone(),
        expose: c.expose.clone(),
        credentials,
        max_age_s,
    })
}

/// Retries' IR, without diagnostics.
pub fn retries_ir(r: &Retries) -> RetriesIr {
    let ms = |v: &Option<String>, d: u64| {
        v.as_deref()
            .and_then(|s| values::duration_ms(s).ok())
            .unwrap_or(d)
    };
    RetriesIr {
        attempts: r.attempts.clamp(1, 10),
        on: r.on.clone(),
        per_try_ms: r
            .per_try_timeout
            .as_deref()
            .and_then(|s| values::duration_ms(s).ok()),
        backoff_ms: ms(&r.backoff, 25),
        max_backoff_ms: ms(&r.max_backoff, 1000),
        budget: r.budget.unwrap_or(20),
        min_per_second: r.min_per_second.unwrap_or(10),
        non_idempotent: r.non_idempotent.unwrap_or(false),
    }
}

/// Retries stay bounded: a few attempts, statuses that can be transient
/// (5xx, 408, 429), and a budget, so retries cannot multiply an outage.
pub(super) fn check_retries(cx: &mut Ctx<'_>, at: &SpecPath, r: &Retries) {
    if !(2..=10).contains(&r.attempts) {
        cx.error(
            &at.key("attempts"),
            Problem::new(
                format!("{} attempts is out of range", r.attempts),
                "use 2 to 10 attempts in all",
            ),
        );
    }
    for (i, s) in r.on.iter().enumerate() {
        if !(*s >= 500 && *s <= 599 || *s == 408 || *s == 429) {
            cx.error(
                &at.key("on").index(i),
                Problem::new(
                    format!("status {s} is not worth retrying"),
                    "retry 5xx, 408 or 429 only",
                ),
            );
        }
    }
    for key in ["per_try_timeout", "backoff", "max_backoff"] {
        let v = match key {
            "per_try_timeout" => &r.per_try_timeout,
            "backoff" => &r.backoff,
            _ => &r.max_backoff,
        };
        if let Some(s) = v {
            cx.check(&at.key(key), values::duration_ms(s));
        }
    }
    let ms = |v: &Option<String>| v.as_deref().and_then(|s| values::duration_ms(s).ok());
    if let (Some(b), Some(m)) = (ms(&r.backoff), ms(&r.max_backoff)) {
        if b > m {
            cx.error(
                &at.key("max_backoff"),
                Problem::new(
                    "`max_backoff` is shorter than `backoff`",
                    "the first backoff doubles up to `max_backoff`: make it at least `backoff`",
                ),
            );
        }
    }
    if let Some(n) = r.min_per_second {
        if n > 1000 {
            cx.error(
                &at.key("min_per_second"),
                Problem::new(
                    format!("{n} retries per second is not a floor but no budget"),
                    "use 0 to 1000; the budget is what keeps retries from multiplying an outage",
                ),
            );
        }
    }
    if let Some(b) = r.budget {
        if !(1..=100).contains(&b) {
            cx.error(
                &at.key("budget"),
                Problem::new(
                    format!("a budget of {b}% is out of range"),
                    "use 1 to 100 (percent of requests)",
                ),
            );
        }
    }
}
