//! Calling another service the way the gateway does (the twin of the
//! seed's `fetchService()`): the caller's signature (the same
//! [`Signer`]), tenant and correlation id propagated, a fresh request id,
//! a timeout, an optional circuit breaker, and JSON decoded or a typed
//! error. Needs the `client` feature (on by default).

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::hmac;
use crate::sign::{Outgoing, Signer};

/// The ids and identity a call carries to the next service.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The verified tenant, if any.
    pub tenant: Option<String>,
    /// The correlation id of the request being served (a fresh one if none).
    pub correlation_id: Option<String>,
}

/// Why a call failed.
#[derive(Debug)]
pub enum ServiceError {
    /// The service's circuit is open; it was not contacted.
    CircuitOpen(String),
    /// No response within the timeout.
    Timeout(String),
    /// It could not be reached.
    Connect {
        /// The service.
        service: String,
        /// What failed.
        why: String,
    },
    /// It answered with a non-2xx status.
    Status {
        /// The service.
        service: String,
        /// The status.
        status: u16,
        /// The body it sent.
        body: Bytes,
    },
    /// Its answer was not the expected JSON.
    Decode {
        /// The service.
        service: String,
        /// What failed.
        why: String,
    },
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::CircuitOpen(s) => {
                write!(f, "service `{s}` is temporarily unavailable (circuit open)")
            }
            ServiceError::Timeout(s) => {
                write!(f, "service `{s}` did not answer within the timeout")
            }
            ServiceError::Connect { service, why } => {
                write!(f, "service `{service}` could not be reached: {why}")
            }
            ServiceError::Status {
                service, status, ..
            } => write!(f, "service `{service}` answered {status}"),
            ServiceError::Decode { service, why } => write!(
                f,
                "service `{service}` sent a body that is not the expected JSON: {why}"
            ),
        }
    }
}

impl std::error::Error for ServiceError {}

/// A breaker's verdict on a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead.
    Allowed,
    /// Go ahead as a probe of a half-open circuit; report the outcome.
    Probe,
    /// The circuit is open: fail without contacting the service.
    Rejected,
}

/// A circuit breaker a [`ServiceClient`] consults (the gateway plugs in
/// its own, per service).
pub trait Breaker: Send + Sync + fmt::Debug {
    /// Whether a call may go ahead.
    fn admit(&self) -> Admission;
    /// The outcome of an admitted call: `ok` unless it failed at the
    /// connection, timed out or got a 5xx.
    fn record(&self, admission: Admission, ok: bool);
    /// An admitted call whose outcome says nothing about the service.
    fn release(&self, admission: Admission);
}

/// Where a service is: `scheme://authority` and a path prefix without a
/// trailing slash (often empty).
#[derive(Debug, Clone)]
pub struct BaseUrl {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host:port`.
    pub authority: Authority,
    /// Path prefix without a trailing slash.
    pub base_path: String,
}

impl BaseUrl {
    /// Reads `http[s]://host[:port][/prefix]`.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn parse(url: &str) -> Result<Self, &'static str> {
        let uri: http::Uri = url.parse().map_err(|_| "not a URL")?;
        let scheme = uri.scheme().cloned().ok_or("no scheme")?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err("the scheme must be http or https");
        }
        let authority = uri.authority().cloned().ok_or("no host")?;
        if authority.as_str().contains('@') {
            return Err("credentials do not belong in the URL");
        }
        if uri.query().is_some() {
            return Err("a base URL has no query");
        }
        Ok(BaseUrl {
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }
}

/// Calls one service: signs every call with its [`Signer`], propagates
/// the tenant and correlation id, sends a fresh `X-Request-Id`, times out,
/// consults its [`Breaker`] if it has one, and decodes JSON or returns a
/// typed [`ServiceError`]. Plain HTTP by default; `C` is any hyper
/// connector (the gateway passes its TLS one).
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use gateway_service::{BaseUrl, CallContext, OutboundIdentity, ServiceClient, Signer, StartupEnv, SystemClock};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let env = StartupEnv::from_process();
/// let identity = OutboundIdentity::Hmac { secret_env: "INSIGHTS_SERVICE_SECRET" };
/// let signer = Signer::new("billing", "insights", identity, &env, Arc::new(SystemClock))?;
/// let url = BaseUrl::parse(env.get("INSIGHTS_SERVICE_URL").unwrap_or("http://localhost:3005"))?;
/// let insights = ServiceClient::http("insights", url, signer, Duration::from_secs(5));
/// let ctx = CallContext { tenant: Some("acme".into()), correlation_id: None };
/// let trends: serde_json::Value = insights.get("/api/v1/trends?window=7d", &ctx).await?;
/// # Ok(()) }
/// ```
pub struct ServiceClient<C = HttpConnector> {
    service: &'static str,
    url: BaseUrl,
    signer: Signer,
    breaker: Option<Box<dyn Breaker>>,
    timeout: Duration,
    client: Client<C, Full<Bytes>>,
}

impl<C> fmt::Debug for ServiceClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceClient")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl ServiceClient<HttpConnector> {
    /// A plain-HTTP client for `service` at `url`; connecting may take up
    /// to `timeout` too.
    pub fn http(service: &'static str, url: BaseUrl, signer: Signer, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        Self::with_connector(service, url, signer, timeout, connector)
    }
}

impl<C> ServiceClient<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    /// A client for `service` at `url`, connecting through `connector`.
    pub fn with_connector(
        service: &'static str,
        url: BaseUrl,
        signer: Signer,
        timeout: Duration,
        connector: C,
    ) -> Self {
        ServiceClient {
            service,
            url,
            signer,
            breaker: None,
            timeout,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Consults `breaker` before every call and reports the outcome.
    #[must_use]
    pub fn with_breaker(mut self, breaker: impl Breaker + 'static) -> Self {
        self.breaker = Some(Box::new(breaker));
        self
    }

    /// `GET path_and_query`, decoding JSON.
    ///
    /// # Errors
    /// See [`ServiceError`].
    pub async fn get<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
        ctx: &CallContext,
    ) -> Result<T, ServiceError> {
        self.call(Method::GET, path_and_query, None::<&()>, ctx)
            .await
    }

    /// Calls the service with an optional JSON body and decodes its JSON
    /// answer.
    ///
    /// # Errors
    /// See [`ServiceError`].
    pub async fn call<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
        ctx: &CallContext,
    ) -> Result<T, ServiceError> {
        let service = || self.service.to_owned();
        let admission = self
            .breaker
            .as_ref()
            .map_or(Admission::Allowed, |b| b.admit());
        if admission == Admission::Rejected {
            return Err(ServiceError::CircuitOpen(service()));
        }
        let result = self.send(method, path_and_query, body, ctx).await;
        if let Some(b) = &self.breaker {
            match &result {
                Ok((status, _)) => b.record(admission, *status < 500),
                Err(ServiceError::Decode { .. }) => b.release(admission),
                Err(_) => b.record(admission, false),
            }
        }
        let (status, bytes) = result?;
        if !(200..300).contains(&status) {
            return Err(ServiceError::Status {
                service: service(),
                status,
                body: bytes,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ServiceError::Decode {
            service: service(),
            why: e.to_string(),
        })
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
        ctx: &CallContext,
    ) -> Result<(u16, Bytes), ServiceError> {
        let service = || self.service.to_owned();
        let bytes = match body {
            Some(b) => Bytes::from(serde_json::to_vec(b).map_err(|e| ServiceError::Decode {
                service: service(),
                why: format!("cannot encode the request body: {e}"),
            })?),
            None => Bytes::new(),
        };
        let pq = format!("{}{path_and_query}", self.url.base_path);
        let uri = format!("{}://{}{pq}", self.url.scheme, self.url.authority);
        let mut req = Request::builder().method(method.clone()).uri(uri);
        let request_id = uuid::Uuid::new_v4().to_string();
        let correlation = ctx
            .correlation_id
            .clone()
            .unwrap_or_else(|| request_id.clone());
        let headers = req.headers_mut().ok_or_else(|| ServiceError::Connect {
            service: service(),
            why: "invalid request".into(),
        })?;
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        if body.is_some() {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        for (name, value) in [
            ("x-request-id", Some(request_id.as_str())),
            ("x-correlation-id", Some(correlation.as_str())),
            ("x-tenant-id", ctx.tenant.as_deref()),
        ] {
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(name, v);
            }
        }
        let digest = hmac::body_sha256(&bytes);
        let outgoing = Outgoing {
            method: method.as_str(),
            path_and_query: &pq,
            tenant: ctx.tenant.as_deref(),
            body_sha256: Some(&digest),
        };
        self.signer
            .sign(headers, &outgoing)
            .map_err(|why| ServiceError::Connect {
                service: service(),
                why: why.into(),
            })?;
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| ServiceError::Connect {
                service: service(),
                why: e.to_string(),
            })?;
        let resp = match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => return Err(ServiceError::Timeout(service())),
            Ok(Err(e)) => {
                return Err(ServiceError::Connect {
                    service: service(),
                    why: std::error::Error::source(&e)
                        .map_or_else(|| e.to_string(), |s| s.to_string()),
                })
            }
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status().as_u16();
        let body = tokio::time::timeout(self.timeout, resp.into_body().collect())
            .await
            .map_err(|_| ServiceError::Timeout(service()))?
            .map_err(|e| ServiceError::Connect {
                service: service(),
                why: e.to_string(),
            })?
            .to_bytes();
        Ok((status, body))
    }
}
