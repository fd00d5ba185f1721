//! Policies: each declared policy checked where it is written, and each
//! route's effective policy resolved (its own laid over `default`).

use super::{auth, traffic, values, Ctx};
use crate::diag::Problem;
use crate::spec::{Policy, PolicyRef, Spec, SpecPath};

pub(super) fn check_policies(cx: &mut Ctx<'_>, spec: &Spec) {
    for (name, p) in &spec.policies {
        let at = SpecPath::root().key("policies").key(name);
        cx.check(
            &SpecPath::root().key("policies").key_name(name),
            values::ident("policy", name),
        );
        check_policy(cx, &at, p);
        let default = spec.policies.get("default").filter(|_| name != "default");
        auth::check_roles_need_jwt(cx, &at, Some(name), p, default);
    }
}

/// Checks a policy's own fields (named or inline).
pub(super) fn check_policy(cx: &mut Ctx<'_>, at: &SpecPath, p: &Policy) {
    if let Some(t) = &p.timeout {
        cx.check(&at.key("timeout"), values::duration_ms(t));
    }
    if let Some(creds) = &p.forward_credentials {
        let mut seen = Vec::new();
        for (i, c) in creds.iter().enumerate() {
            if seen.contains(c) {
                cx.error(
                    &at.key("forward_credentials").index(i),
                    Problem::new(
                        "this credential is listed twice",
                        "list each credential once",
                    ),
                );
            }
            seen.push(*c);
        }
    }
    auth::check_policy_fields(cx, at, p);
    if let Some(r) = &p.rate_limit {
        traffic::check_rate_limit(cx, &at.key("rate_limit"), r, "policy");
    }
    if let Some(c) = &p.cors {
        traffic::check_cors(cx, &at.key("cors"), c);
    }
    if let Some(b) = &p.body_limit {
        cx.check(&at.key("body_limit"), traffic::parse_size(b));
    }
    if let Some(t) = &p.body_timeout {
        cx.check(&at.key("body_timeout"), values::duration_ms(t));
    }
    if let Some(r) = &p.retries {
        traffic::check_retries(cx, &at.key("retries"), r);
    }
}

/// The route's effective policy: the policy named `default` (when there
/// is one) with the route's named or inline policy laid over it field by
/// field. So `default` can require a JWT everywhere while `public` says
/// `auth: none` and `streaming` only changes the timeout.
pub(super) fn resolve_policy(
    cx: &mut Ctx<'_>,
    spec: &Spec,
    at: &SpecPath,
    p: Option<&PolicyRef>,
) -> (Policy, Option<String>) {
    let base = spec.policies.get("default").cloned().unwrap_or_default();
    match p {
        Some(PolicyRef::Named(name)) => match spec.policies.get(name) {
            Some(pol) => (overlay(base, pol), Some(name.clone())),
            None => {
                let known: Vec<&str> = spec.policies.keys().map(String::as_str).collect();
                cx.error(
                    &at.key("policy"),
                    Problem::new(
                        format!("unknown policy `{name}`"),
                        if known.is_empty() {
                            "declare it under `policies:`".into()
                        } else {
                            format!(
                                "declare it under `policies:`, or use one of: {}",
                                known.join(", ")
                            )
                        },
                    ),
                );
                (base, None)
            }
        },
        Some(PolicyRef::Inline(pol)) => {
            check_policy(cx, &at.key("policy"), pol);
            let default = spec.policies.get("default");
            auth::check_roles_need_jwt(cx, &at.key("policy"), None, pol, default);
            (overlay(base, pol), None)
        }
        None => {
            let name = spec
                .policies
                .contains_key("default")
                .then(|| "default".into());
            (base, name)
        }
    }
}

/// `over`'s fields where set, else `base`'s.
pub(super) fn overlay(base: Policy, over: &Policy) -> Policy {
    let o = over.clone();
    Policy {
        timeout: o.timeout.or(base.timeout),
        forward_credentials: o.forward_credentials.or(base.forward_credentials),
        auth: o.auth.or(base.auth),
        roles: o.roles.or(base.roles),
        service_auth: o.service_auth.or(base.service_auth),
        service_token: o.service_token.or(base.service_token),
        rate_limit: o.rate_limit.or(base.rate_limit),
        cors: o.cors.or(base.cors),
        retries: o.retries.or(base.retries),
        body_limit: o.body_limit.or(base.body_limit),
        body_timeout: o.body_timeout.or(base.body_timeout),
    }
}
