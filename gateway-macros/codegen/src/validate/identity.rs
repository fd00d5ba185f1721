//! How the gateway proves itself to each upstream: the service's signing
//! identity, and the client certificate it presents over TLS.

use super::auth::seconds;
use super::{values, Ctx};
use crate::diag::Problem;
use crate::ir::auth::IdentityIr;
use crate::ir::ClientCertIr;
use crate::spec::{SpecPath, UpstreamTls};

/// `services.*.tls.client_cert_env` and `client_key_env`: both or neither.
pub(super) fn check_client_cert(
    cx: &mut Ctx<'_>,
    at: &SpecPath,
    t: &UpstreamTls,
) -> Option<ClientCertIr> {
    match (&t.client_cert_env, &t.client_key_env) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let ok = cx
                .check(&at.key("client_cert_env"), values::env_name(cert))
                .is_some()
                & cx.check(&at.key("client_key_env"), values::env_name(key))
                    .is_some();
            if cert == key {
                cx.error(
                    &at.key("client_key_env"),
                    Problem::new(
                        "the client certificate and its key are read from the same variable",
                        "name one variable for the certificate chain file and another for the key file",
                    ),
                );
            }
            ok.then(|| ClientCertIr {
                cert_env: cert.clone(),
                key_env: key.clone(),
            })
        }
        (Some(_), None) => {
            cx.error(
                &at.key("client_cert_env"),
                Problem::new(
                    "a client certificate without its key",
                    "add `client_key_env`: the variable naming the PEM private key file",
                ),
            );
            None
        }
        (None, Some(_)) => {
            cx.error(
                &at.key("client_key_env"),
                Problem::new(
                    "a client key without its certificate",
                    "add `client_cert_env`: the variable naming the PEM certificate chain file",
                ),
            );
            None
        }
    }
}

/// `services.*.identity`: every upstream request carries a proof of the
/// gateway's identity unless the spec says, visibly, that it does not; each
/// signed kind names its own credential variable.
pub(super) fn check_identity(
    cx: &mut Ctx<'_>,
    service: &str,
    id: Option<&crate::spec::Identity>,
) -> IdentityIr {
    use crate::spec::IdentityKind as K;
    let at = SpecPath::root().key("services").key(service);
    let fallback = IdentityIr {
        kind: K::None,
        secret_env: None,
        ttl_s: 300,
    };
    let Some(id) = id else {
        cx.error(
            &SpecPath::root().key("services").key_name(service),
            Problem::new(
                format!("service `{service}` has no outbound identity"),
                "add `identity: { kind: hmac, secret_env: <VAR> }` (or jwt, hmac-v1); `{ kind: none, unsigned: true }` sends unsigned requests",
            ),
        );
        return fallback;
    };
    let at = at.key("identity");
    match (id.kind, &id.secret_env) {
        (K::None, Some(_)) => cx.error(
            &at.key_name("secret_env"),
            Problem::new("an unsigned service has no credential", "remove `secret_env`, or choose a signed kind"),
        ),
        (K::None, None) if id.unsigned != Some(true) => cx.error(
            &at.key("kind"),
            Problem::new(
                "unsigned requests need an explicit opt-in",
                "add `unsigned: true` to say that this service gets no proof of the gateway's identity",
            ),
        ),
        (K::None, None) => {}
        (_, None) => cx.error(
            &at.key("kind"),
            Problem::new("a signed identity needs its credential variable", "add `secret_env: <VAR>` (the variable, or `<VAR>_FILE` naming a file)"),
        ),
        (_, Some(env)) => {
            cx.check(&at.key("secret_env"), values::env_name(env));
        }
    }
    if id.kind != K::None && id.unsigned.is_some() {
        cx.error(
            &at.key_name("unsigned"),
            Problem::new("`unsigned` only goes with `kind: none`", "remove it"),
        );
    }
    let ttl_s = match (&id.ttl, id.kind) {
        (Some(_), k) if k != K::Jwt => {
            cx.error(
                &at.key_name("ttl"),
                Problem::new("`ttl` is for service tokens (`kind: jwt`)", "remove it"),
            );
            300
        }
        (Some(t), _) => match cx.check(&at.key("ttl"), seconds(t, 300)) {
            Some(0) => {
                cx.error(
                    &at.key("ttl"),
                    Problem::new("a zero lifetime", "use up to `300s`"),
                );
                300
            }
            Some(n) => n,
            None => 300,
        },
        (None, _) => 300,
    };
    IdentityIr {
        kind: id.kind,
        secret_env: id.secret_env.clone().filter(|_| id.kind != K::None),
        ttl_s,
    }
}
