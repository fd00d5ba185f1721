//! The human-readable route table: what `gateway routes` prints and what a
//! pull request's snapshot diff shows.

use crate::ir::{methods, Checked, RouteIr};
use crate::spec::Credential;

fn duration_text(ms: u64) -> String {
    match ms {
        n if n % 3_600_000 == 0 => format!("{}h", n / 3_600_000),
        n if n % 60_000 == 0 => format!("{}m", n / 60_000),
        n if n % 1000 == 0 => format!("{}s", n / 1000),
        n => format!("{n}ms"),
    }
}

fn policy_text(c: &Checked, r: &RouteIr) -> String {
    let mut parts = vec![r.policy_name.clone().unwrap_or_else(|| "-".into())];
    for c in &r.forward {
        parts.push(match c {
            Credential::Authorization => "+authorization".into(),
            Credential::ServiceToken => "+service_token".into(),
            Credential::AuthCookie => "+auth_cookie".into(),
        });
    }
    if let Some(rl) = &r.rate_limit {
        let unit = match rl.window_s {
            1 => "s".to_owned(),
            60 => "min".to_owned(),
            3600 => "h".to_owned(),
            86_400 => "d".to_owned(),
            n => format!("{n}s"),
        };
        let key = format!("{:?}", rl.key).to_ascii_lowercase();
        parts.push(format!("limit={}/{unit}+{}/{key}", rl.count, rl.burst));
    }
    if let Some(cors) = &r.cors {
        parts.push(if cors.any {
            "cors=*".to_owned()
        } else {
            format!("cors={}", cors.origins.join("|"))
        });
    }
    if let Some(canary) = &r.canary {
        let name = &c.services[canary.service].name;
        parts.push(format!(
            "canary={}%->{name}",
            canary.basis_points as f64 / 100.0
        ));
    }
    if let Some(v) = &r.versions {
        let live: Vec<String> = v
            .live
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let mut t = format!("{}->{}", x.name, c.services[x.service].name);
                if i == v.default {
                    t.push('*');
                }
                if let Some(d) = &x.deprecated {
                    t.push_str(if d.gone_after_sunset {
                        "(deprecated,410)"
                    } else {
                        "(deprecated)"
                    });
                }
                t
            })
            .collect();
        parts.push(format!("versions={}", live.join("|")));
    }
    if let Some(rt) = &r.retries {
        let on: Vec<String> = rt.on.iter().map(u16::to_string).collect();
        parts.push(format!("retries={}x[{}]", rt.attempts, on.join(",")));
    }
    if let Some(b) = r.body_limit {
        parts.push(format!("body<={}", size_text(b)));
    }
    if r.body_timeout_ms != c.gateway.body_ms {
        parts.push(format!("body_timeout={}", duration_text(r.body_timeout_ms)));
    }
    parts.join(" ")
}

fn size_text(n: u64) -> String {
    match n {
        n if n % (1 << 30) == 0 => format!("{}GiB", n >> 30),
        n if n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => format!("{n}B"),
    }
}

/// The route table as aligned plain text.
pub fn explain(c: &Checked) -> String {
    let header = [
        "ROUTE", "METHODS", "SERVICE", "UPSTREAM", "AUTH", "POLICY", "TIMEOUT", "ID",
    ];
    let mut rows: Vec<[String; 8]> = vec![header.map(String::from)];
    for r in &c.routes {
        rows.push([
            r.pattern_text.clone(),
            methods::text(r.methods),
            c.services[r.service].name.clone(),
            r.upstream_text.clone(),
            r.auth.describe(),
            policy_text(c, r),
            duration_text(r.timeout_ms),
            r.id.clone(),
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let g = &c.gateway;
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let tls = match &g.tls {
        None => String::new(),
        Some(t) => match &t.client_auth {
            None => " with TLS".into(),
            Some(a) => format!(
                " with TLS, client certificates {} ({})",
                if a.required { "required" } else { "optional" },
                plural(a.identities.len(), "identity").replace("identitys", "identities")
            ),
        },
    };
    let mut out = format!(
        "gateway `{}` listening on {}{tls} ({}, {})\n\n",
        g.name,
        g.listen,
        plural(c.routes.len(), "route"),
        plural(c.services.len(), "service")
    );
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str("\nSERVICE");
    let sw = c
        .services
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0)
        .max(7);
    out.push_str(&" ".repeat(sw - 7 + 2));
    out.push_str("URL (environment variable, default)");
    let urls: Vec<String> = c
        .services
        .iter()
        .map(|s| format!("${} or {}", s.env, s.default_url))
        .collect();
    let uw = urls.iter().map(String::len).max().unwrap_or(0).max(35);
    out.push_str(&" ".repeat(uw - 35 + 2));
    out.push_str("IDENTITY\n");
    for (s, url) in c.services.iter().zip(&urls) {
        let rate = match s.breaker.and_then(|b| b.rate) {
            Some(r) => format!(
                " or {}% of {}+ in {}",
                r.percent,
                r.min_requests,
                duration_text(r.window_ms)
            ),
            None => String::new(),
        };
        let connect = match s.connect_ms {
            Some(ms) => format!(", connect {}", duration_text(ms)),
            None => String::new(),
        };
        let breaker = match s.breaker {
            Some(b) => format!(
                ", breaker {} failures{rate}/{}/{} probe{}",
                b.failures,
                duration_text(b.open_ms),
                b.probes,
                if b.probes == 1 { "" } else { "s" }
            ),
            None => ", no breaker".into(),
        };
        let plaintext = if s.allow_plaintext {
            ", plain http allowed in production"
        } else {
            ""
        };
        let client_cert = match &s.tls_client_cert {
            Some(c) => format!(", client certificate ${}", c.cert_env),
            None => String::new(),
        };
        let client_headers = if s.allow_client_headers.is_empty() {
            String::new()
        } else {
            format!(", trusts client {}", s.allow_client_headers.join(" "))
        };
        let plain = format!("{client_cert}{breaker}{connect}{plaintext}{client_headers}");
        out.push_str(&format!(
            "{:sw$}  {url:uw$}  {}{plain}\n",
            s.name,
            s.identity.describe()
        ));
    }
    out.push_str("\n/health is answered by the gateway itself. GET routes also answer HEAD.\n");
    out
}
