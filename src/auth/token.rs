//! The legacy shared service token (contract §5): `X-Service-Token`
//! compared in constant time with the configured secret(s).

use subtle::ConstantTimeEq;

use super::{secrets, AuthFailure};
use crate::chain::{Flow, RequestCtx, RequestParts, Step};
use crate::config::{StartupEnv, StartupError};
use crate::error::{ErrorKind, GatewayError};

/// Chain step: `X-Service-Token` must equal one of the secrets, else
/// `401 {"error":"Invalid service token"}`.
#[derive(Clone)]
pub struct ServiceTokenAuth {
    secrets: Vec<Vec<u8>>,
}

impl std::fmt::Debug for ServiceTokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceTokenAuth").finish_non_exhaustive()
    }
}

impl ServiceTokenAuth {
    /// Reads the token(s) from `var` (comma-separated, for rotation).
    ///
    /// # Errors
    /// The variable is unset or empty.
    pub fn from_env(var: &str, env: &StartupEnv) -> Result<Self, StartupError> {
        let secrets = env.get(var).map(secrets).unwrap_or_default();
        if secrets.is_empty() {
            return Err(StartupError::MissingSecret {
                var: var.to_owned(),
                what: "the shared service token".into(),
            });
        }
        Ok(ServiceTokenAuth { secrets })
    }
}

impl Step for ServiceTokenAuth {
    // The head is all this step needs, so it runs before any body is read.
    fn before_body(&self, ctx: &mut RequestCtx, req: &RequestParts) -> Flow {
        let given = req
            .headers
            .get(crate::headers::name::X_SERVICE_TOKEN)
            .map(|v| v.as_bytes())
            .unwrap_or(b"");
        // Every secret is compared, so timing does not tell which matched.
        let ok = self
            .secrets
            .iter()
            .fold(0u8, |acc, s| acc | s.as_slice().ct_eq(given).unwrap_u8())
            == 1;
        if ok {
            return Flow::Continue;
        }
        let reason = if given.is_empty() {
            "missing_service_token"
        } else {
            "invalid_service_token"
        };
        ctx.auth_failure = Some(AuthFailure::enforced(reason, None));
        Flow::Respond(GatewayError::client(ErrorKind::InvalidServiceToken))
    }

    fn on_request(&self, _: &mut RequestCtx, _: &mut RequestParts) -> Flow {
        Flow::Continue
    }
}
