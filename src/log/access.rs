//! The access-log guard of a request in flight: every request gets one
//! access-log line, written when the answer is ready or, when the client
//! went away first and the request's future was dropped, on drop with
//! status 499 (nginx's convention).

use std::net::IpAddr;
use std::time::Instant;

use http::{HeaderValue, Method, Uri};

use super::{now_rfc3339, Access, AccessSink, SecurityEvent};

/// What happened to a request, for its access-log line.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// The matched route's id.
    pub route: Option<&'static str>,
    /// The upstream service's name, once chosen.
    pub upstream: Option<&'static str>,
    /// How long the upstream took to answer with a head.
    pub upstream_ms: Option<f64>,
    /// Why the gateway answered itself, when it did.
    pub error: Option<String>,
}

/// The access-log line of a request in flight: written by
/// [`finish`](PendingLog::finish), or on drop with status 499 when the
/// client closed the connection first, so every request is logged.
pub(crate) struct PendingLog<'g> {
    sink: &'g AccessSink,
    request_id: HeaderValue,
    correlation_id: HeaderValue,
    /// The request's method.
    pub method: Method,
    /// The request's URI (only its path is logged).
    pub uri: Uri,
    client_ip: IpAddr,
    started: Instant,
    /// What happened so far.
    pub out: Outcome,
    done: bool,
}

impl<'g> PendingLog<'g> {
    /// Starts the line of a request that arrived at `started`.
    pub fn new(
        sink: &'g AccessSink,
        ids: (&HeaderValue, &HeaderValue),
        method: &Method,
        uri: &Uri,
        client_ip: IpAddr,
        started: Instant,
    ) -> Self {
        PendingLog {
            sink,
            request_id: ids.0.clone(),
            correlation_id: ids.1.clone(),
            method: method.clone(),
            uri: uri.clone(),
            client_ip,
            started,
            out: Outcome::default(),
            done: false,
        }
    }

    fn write(
        &self,
        status: u16,
        caller: Option<&str>,
        tenant: Option<&str>,
        error: Option<String>,
    ) {
        self.sink.write(&Access {
            timestamp: now_rfc3339(),
            level: "INFO",
            target: "access",
            request_id: self.request_id.to_str().unwrap_or(""),
            correlation_id: self.correlation_id.to_str().unwrap_or(""),
            method: self.method.as_str(),
            path: self.uri.path(),
            route: self.out.route,
            upstream: self.out.upstream,
            status,
            duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            upstream_ms: self.out.upstream_ms,
            caller,
            tenant,
            client_ip: self.client_ip.to_string(),
            error,
        });
    }

    /// Writes the security-event line of an authentication failure
    /// (`reason`, `enforce` or `audit`, the claimed caller).
    pub fn auth_failure(&self, reason: &'static str, mode: &'static str, caller: Option<&str>) {
        self.sink.write(&SecurityEvent {
            timestamp: now_rfc3339(),
            level: "WARN",
            target: "security",
            event: "auth_failure",
            reason,
            mode,
            caller,
            request_id: self.request_id.to_str().unwrap_or(""),
            correlation_id: self.correlation_id.to_str().unwrap_or(""),
            method: self.method.as_str(),
            path: self.uri.path(),
            route: self.out.route,
            client_ip: self.client_ip.to_string(),
        });
    }

    /// Writes the line with the answer's status and the verified caller.
    pub fn finish(&mut self, status: u16, caller: Option<&str>, tenant: Option<&str>) {
        self.done = true;
        self.write(status, caller, tenant, self.out.error.clone());
    }
}

impl Drop for PendingLog<'_> {
    fn drop(&mut self) {
        if !self.done {
            let error = Some("client closed the connection before the response".to_owned());
            self.write(499, None, None, error);
        }
    }
}
