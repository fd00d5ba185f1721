//! Identity rules: JWT and HMAC settings, and what each route asks of its
//! callers. Contract §4 and §5.

use super::{values, Ctx};
use crate::diag::Problem;
use crate::ir::auth::{ClientAuthIr, JwtIr, RouteAuthIr, RouteServiceIr, ServiceAuthIr, TlsIr};
use crate::spec::{AuthKind, ClientCertMode, Jwt, Policy, ServiceAuth, SpecPath, Tls};

/// Algorithms the gateway verifies. `none` is never among them.
pub const ALGORITHMS: [&str; 4] = ["HS256", "RS256", "ES256", "EdDSA"];

/// `gateway.tls`: variable names, and identities that name services.
pub(super) fn check_tls(cx: &mut Ctx<'_>, t: &Tls) -> TlsIr {
    let at = SpecPath::root().key("gateway").key("tls");
    cx.check(&at.key("cert_env"), values::env_name(&t.cert_env));
    cx.check(&at.key("key_env"), values::env_name(&t.key_env));
    if t.cert_env == t.key_env {
        cx.error(
            &at.key("key_env"),
            Problem::new(
                "the certificate and the key are read from the same variable",
                "name one variable for the certificate chain file and another for the key file",
            ),
        );
    }
    let client_auth = t.client_auth.as_ref().map(|c| {
        let cat = at.key("client_auth");
        cx.check(&cat.key("ca_env"), values::env_name(&c.ca_env));
        if c.identities.is_empty() {
            cx.error(
                &cat.key("identities"),
                Problem::new(
                    "client certificates are verified but no identity names a calling service, so every certificate would be refused",
                    "map each certificate identity (a SAN URI such as a SPIFFE id, or a DNS name) to a caller under `identities`",
                ),
            );
        }
        for (id, caller) in &c.identities {
            let iat = cat.key("identities");
            if id.is_empty() || id.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
                cx.error(
                    &iat.key_name(id),
                    Problem::new(
                        format!("`{id}` is not a certificate identity"),
                        "write a SAN URI (`spiffe://corp.example/ns/prod/sa/billing`) or DNS name (`billing.internal.example`)",
                    ),
                );
            }
            cx.check(&iat.key(id), values::ident("caller", caller));
        }
        ClientAuthIr {
            ca_env: c.ca_env.clone(),
            required: c.mode != Some(ClientCertMode::Optional),
            identities: c
                .identities
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    });
    TlsIr {
        cert_env: t.cert_env.clone(),
        key_env: t.key_env.clone(),
        client_auth,
    }
}

/// Leeway and windows may be zero, unlike timeouts.
pub(super) fn seconds(s: &str, max_s: u64) -> Result<u64, Problem> {
    let ms = if s == "0s" || s == "0" {
        0
    } else {
        values::duration_ms(s)?
    };
    if ms % 1000 != 0 {
        return Err(Problem::new(
            format!("`{s}` is not whole seconds"),
            "use seconds, e.g. `30s`",
        ));
    }
    if ms / 1000 > max_s {
        return Err(Problem::new(
            format!("`{s}` is longer than the allowed {max_s}s"),
            format!("use at most `{max_s}s`"),
        ));
    }
    Ok(ms / 1000)
}

/// `gateway.jwt`: the allow-list holds only algorithms the gateway can
/// verify, each with exactly the key material it needs, so no token can be
/// checked against the wrong kind of key (algorithm confusion).
pub(super) fn check_jwt(cx: &mut Ctx<'_>, j: &Jwt) -> JwtIr {
    let at = SpecPath::root().key("gateway").key("jwt");
    if j.algorithms.is_empty() {
        cx.error(
            &at.key("algorithms"),
            Problem::new(
                "the algorithm allow-list is empty",
                "list the algorithms tokens are signed with, e.g. `[HS256]`",
            ),
        );
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, a) in j.algorithms.iter().enumerate() {
        let at = at.key("algorithms").index(i);
        if a.eq_ignore_ascii_case("none") {
            cx.error(
                &at,
                Problem::new(
                    "`none` is never accepted: unsigned tokens prove nothing",
                    "remove it",
                ),
            );
        } else if !ALGORITHMS.contains(&a.as_str()) {
            cx.error(
                &at,
                Problem::new(
                    format!("algorithm `{a}` is not in the supported allow-list"),
                    format!("use one of {}", ALGORITHMS.join(", ")),
                ),
            );
        } else if seen.contains(&a.as_str()) {
            cx.error(
                &at,
                Problem::new(format!("`{a}` is listed twice"), "list each algorithm once"),
            );
        }
        seen.push(a);
    }
    let hs = seen.contains(&"HS256");
    let asym: Vec<&str> = seen
        .iter()
        .copied()
        .filter(|a| *a != "HS256" && ALGORITHMS.contains(a))
        .collect();
    for (key, v) in [
        ("secret_env", &j.secret_env),
        ("public_key_env", &j.public_key_env),
        ("jwks_env", &j.jwks_env),
    ] {
        if let Some(v) = v {
            cx.check(&at.key(key), values::env_name(v));
        }
    }
    match (&j.secret_env, hs) {
        (None, true) => cx.error(
            &at.key("algorithms"),
            Problem::new(
                "HS256 is allowed but no `secret_env` names its secret",
                "add `secret_env: JWT_SECRET` (the variable holding the secret)",
            ),
        ),
        (Some(_), false) => cx.error(
            &at.key_name("secret_env"),
            Problem::new(
                "`secret_env` is set but HS256 is not allowed",
                "add HS256 to `algorithms`, or remove `secret_env`",
            ),
        ),
        _ => {}
    }
    match (&j.public_key_env, &j.jwks_env, asym.is_empty()) {
        (None, None, false) => cx.error(
            &at.key("algorithms"),
            Problem::new(
                format!("{} needs a public key but neither `public_key_env` nor `jwks_env` is set", asym.join(", ")),
                "name the variable holding the PEM file path (`public_key_env`) or the JWKS file path (`jwks_env`)",
            ),
        ),
        (Some(_), Some(_), _) => cx.error(
            &at.key_name("jwks_env"),
            Problem::new("both `public_key_env` and `jwks_env` are set", "use one source of public keys"),
        ),
        (Some(_), None, true) | (None, Some(_), true) => cx.error(
            &at.key("algorithms"),
            Problem::new("a public key is configured but no asymmetric algorithm is allowed", "add RS256, ES256 or EdDSA to `algorithms`, or remove the key"),
        ),
        (Some(_), None, false) if asym.len() > 1 => cx.error(
            &at.key_name("public_key_env"),
            Problem::new(
                format!("one PEM public key cannot verify {}", asym.join(" and ")),
                "use a JWKS file (`jwks_env`) for several key types, or allow one algorithm",
            ),
        ),
        _ => {}
    }
    let leeway_s = j
        .leeway
        .as_ref()
        .and_then(|l| cx.check(&at.key("leeway"), seconds(l, 60)))
        .unwrap_or(0);
    if let Some(c) = &j.cookie {
        let ok = !c.is_empty()
            && c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
        if !ok {
            cx.error(
                &at.key("cookie"),
                Problem::new(
                    format!("`{c}` is not a cookie name"),
                    "use letters, digits, `-`, `_` and `.`",
                ),
            );
        }
    }
    let claim = |c: &Option<String>, default: &str| c.clone().unwrap_or_else(|| default.to_owned());
    JwtIr {
        algorithms: j.algorithms.clone(),
        secret_env: j.secret_env.clone(),
        public_key_env: j.public_key_env.clone(),
        jwks_env: j.jwks_env.clone(),
        issuer: j.issuer.clone(),
        audience: j.audience.clone(),
        leeway_s,
        cookie: j.cookie.clone(),
        subject_claim: claim(&j.claims.subject, "sub"),
        roles_claim: claim(&j.claims.roles, "roles"),
        tenant_claim: j.claims.tenant.clone(),
        revocation_file: j.revocation_file.clone(),
    }
}

/// `gateway.service_auth`: every caller has a secret variable; the window
/// is short enough that replay protection stays meaningful.
pub(super) fn check_service_auth(cx: &mut Ctx<'_>, s: &ServiceAuth) -> ServiceAuthIr {
    let at = SpecPath::root().key("gateway").key("service_auth");
    let window_s = s
        .window
        .as_ref()
        .and_then(|w| cx.check(&at.key("window"), seconds(w, 300)))
        .unwrap_or(60);
    if window_s == 0 {
        cx.error(
            &at.key("window"),
            Problem::new("a zero window rejects every request", "use e.g. `60s`"),
        );
    }
    for (name, env) in &s.callers {
        cx.check(
            &at.key("callers").key_name(name),
            values::ident("caller", name),
        );
        cx.check(&at.key("callers").key(name), values::env_name(env));
    }
    if let Some(e) = &s.shared_secret_env {
        cx.check(&at.key("shared_secret_env"), values::env_name(e));
    }
    let nonce_cache = s.nonce_cache.unwrap_or(100_000);
    if !(1_000..=10_000_000).contains(&nonce_cache) {
        cx.error(
            &at.key("nonce_cache"),
            Problem::new(
                format!("nonce cache size {nonce_cache} is out of range"),
                "use between 1000 and 10000000 entries",
            ),
        );
    }
    ServiceAuthIr {
        window_s,
        callers: s
            .callers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        shared_secret_env: s.shared_secret_env.clone(),
        nonce_cache,
    }
}

/// A policy's identity fields on their own, where they are written: role
/// list, service-auth callers and versions, token variable. Declared
/// policies are checked once, whether or not a route uses them.
pub(super) fn check_policy_fields(cx: &mut Ctx<'_>, at: &SpecPath, p: &Policy) {
    if p.roles.as_ref().is_some_and(Vec::is_empty) {
        cx.error(
            &at.key("roles"),
            Problem::new(
                "the role list is empty, so no caller could pass",
                "list at least one role, or remove `roles`",
            ),
        );
    }
    if let Some(s) = &p.service_auth {
        let sat = at.key("service_auth");
        if s.callers.is_empty() {
            cx.error(
                &sat.key("callers"),
                Problem::new(
                    "the route admits no calling service",
                    "list the callers under `service_auth.callers`",
                ),
            );
        }
        for (i, c) in s.callers.iter().enumerate() {
            cx.check(&sat.key("callers").index(i), values::ident("caller", c));
        }
        if let Some(vs) = &s.versions {
            // With mTLS, an empty list means certificates only.
            if vs.is_empty() && s.mtls != Some(true) {
                cx.error(
                    &sat.key("versions"),
                    Problem::new(
                        "no signature version is accepted",
                        "write `versions: [v2]`, `[v1]` or `[v1, v2]`, or add `mtls: true` to admit callers by client certificate only",
                    ),
                );
            }
            for (i, v) in vs.iter().enumerate() {
                let at = sat.key("versions").index(i);
                if v != "v1" && v != "v2" {
                    cx.error(
                        &at,
                        Problem::new(
                            format!("`{v}` is not a signature version"),
                            "use `v1` or `v2`",
                        ),
                    );
                } else if vs[..i].contains(v) {
                    cx.error(
                        &at,
                        Problem::new(format!("`{v}` is listed twice"), "list each version once"),
                    );
                }
            }
        }
    }
    if let Some(e) = &p.service_token {
        cx.check(&at.key("service_token"), values::env_name(e));
    }
}

/// Roles are read from a verified JWT, so a policy that asks for roles
/// while authentication is off could never let anyone through. A route's
/// policy is its own laid over `default`, so whether roles meet a JWT is
/// decided by the policy and `default` alone, never by the route: the
/// problem is reported once, where the policy is written, not at every
/// route that uses it. `name` is `None` for an inline policy; `default` is
/// the `default` policy, unless `p` is that policy.
pub(super) fn check_roles_need_jwt(
    cx: &mut Ctx<'_>,
    at: &SpecPath,
    name: Option<&str>,
    p: &Policy,
    default: Option<&Policy>,
) {
    let base = default.cloned().unwrap_or_default();
    let jwt = p.auth.or(base.auth) == Some(AuthKind::Jwt);
    let which = name.map_or_else(|| "this policy".to_owned(), |n| format!("policy `{n}`"));
    if p.roles.is_some() && !jwt {
        let message = if p.auth == Some(AuthKind::None) {
            format!(
                "{which} asks for roles but sets `auth: none`, and roles come from a verified JWT"
            )
        } else {
            format!(
                "{which} asks for roles without `auth: jwt`, and roles come from a verified JWT"
            )
        };
        cx.error(
            &at.key_name("roles"),
            Problem::new(
                message,
                "remove `roles` to make the routes public, or set `auth: jwt` in this policy to require the role",
            ),
        );
    } else if p.roles.is_none() && base.roles.is_some() && base.auth == Some(AuthKind::Jwt) && !jwt
    {
        // `default` itself is consistent; this policy turns its JWT off
        // but inherits its roles.
        cx.error(
            &at.key_name("auth"),
            Problem::new(
                format!("{which} sets `auth: none` but inherits `roles` from the `default` policy, and roles come from a verified JWT"),
                "set `auth: jwt` in this policy, or move `roles` from `default` to the policies that need it",
            ),
        );
    }
}

/// What a route's effective policy asks of callers, checked against the
/// gateway's settings: a JWT route needs `gateway.jwt`, an HMAC route needs a
/// configured secret for every caller it admits (unless it accepts the
/// shared secret). Field-level problems were reported where the policy is
/// written ([`check_policy_fields`]).
pub(super) fn check_route_auth(
    cx: &mut Ctx<'_>,
    at: &SpecPath,
    p: &Policy,
    jwt: Option<&JwtIr>,
    sa: Option<&ServiceAuthIr>,
    tls: Option<&TlsIr>,
) -> RouteAuthIr {
    let mut out = RouteAuthIr {
        jwt: p.auth == Some(AuthKind::Jwt),
        roles: p.roles.clone().unwrap_or_default(),
        service_token_env: p.service_token.clone(),
        ..RouteAuthIr::default()
    };
    if out.jwt && jwt.is_none() {
        cx.error(
            at,
            Problem::new(
                "this route requires a JWT but `gateway.jwt` is not configured",
                "add `gateway.jwt` (algorithms, secret or key), or use `auth: none`",
            ),
        );
    }
    let Some(s) = &p.service_auth else {
        return out;
    };
    let Some(sa) = sa else {
        cx.error(
            at,
            Problem::new(
                "this route requires HMAC service auth but `gateway.service_auth` is not configured",
                "declare the callers and their secret variables under `gateway.service_auth.callers` (`service_auth: {}` when callers use mTLS only)",
            ),
        );
        return out;
    };
    let mtls = s.mtls.unwrap_or(false);
    let client_auth = tls.and_then(|t| t.client_auth.as_ref());
    if mtls && client_auth.is_none() {
        cx.error(
            at,
            Problem::new(
                "the route admits callers by client certificate, but `gateway.tls.client_auth` is not configured",
                "configure `gateway.tls` with `client_auth` (client CAs and identities), or remove `mtls: true`",
            ),
        );
    }
    let shared = s.shared_secret.unwrap_or(false);
    let versions = s.versions.clone().unwrap_or_else(|| vec!["v2".into()]);
    // With the shared secret accepted, a caller needs no secret of its own;
    // with mTLS, a caller that a certificate identity names needs none.
    for c in s.callers.iter().filter(|_| !shared) {
        let has_secret = sa.callers.iter().any(|(n, _)| n == c);
        let has_cert = mtls && client_auth.is_some_and(|a| a.declares(c));
        if has_cert && (has_secret || versions.is_empty()) {
            continue;
        }
        if !has_secret && !has_cert {
            let how = if mtls {
                format!(", and no client-certificate identity names it; add `{c}: <SECRET_ENV>` under `gateway.service_auth.callers` or map an identity to `{c}` under `gateway.tls.client_auth.identities`")
            } else {
                format!("; add `{c}: <SECRET_ENV>` under `gateway.service_auth.callers`")
            };
            let (message, help) = how.split_once("; ").unwrap_or((&how, ""));
            cx.error(
                at,
                Problem::new(
                    format!("the route admits `{c}`, but no secret is configured for it{message}"),
                    help.to_owned(),
                ),
            );
        } else if mtls && !has_cert && versions.is_empty() {
            cx.error(
                at,
                Problem::new(
                    format!("the route admits `{c}` by client certificate only, but no certificate identity names it"),
                    format!("map an identity to `{c}` under `gateway.tls.client_auth.identities`"),
                ),
            );
        }
    }
    if shared && sa.shared_secret_env.is_none() {
        cx.error(
            at,
            Problem::new(
                "the route accepts the shared secret, but none is configured",
                "set `gateway.service_auth.shared_secret_env`",
            ),
        );
    }
    out.service = Some(RouteServiceIr {
        callers: s.callers.clone(),
        v1: versions.iter().any(|v| v == "v1"),
        v2: versions.iter().any(|v| v == "v2"),
        shared_secret: shared,
        mtls,
    });
    out
}
