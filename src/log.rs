//! Structured logs on stdout, one JSON object per line: the access log
//! (one line per request, contract §8) and everything else through
//! `tracing`.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

pub(crate) mod access;
pub mod throttle;

/// Installs the JSON `tracing` subscriber (level from `RUST_LOG`, default
/// `info`). Safe to call more than once.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}

/// One access-log line. Fields that do not apply are `null`, so every line
/// has the same keys.
#[derive(Debug, Serialize)]
pub struct Access<'a> {
    /// RFC 3339 UTC time the line was written.
    pub timestamp: String,
    /// Always `INFO`, like the other log lines.
    pub level: &'static str,
    /// Always `access`.
    pub target: &'static str,
    /// The request id (also in `X-Request-Id`).
    pub request_id: &'a str,
    /// The correlation id.
    pub correlation_id: &'a str,
    /// Request method.
    pub method: &'a str,
    /// Request path (no query: queries may carry secrets).
    pub path: &'a str,
    /// Matched route id.
    pub route: Option<&'static str>,
    /// Upstream service name.
    pub upstream: Option<&'static str>,
    /// Response status.
    pub status: u16,
    /// Time from arrival to response head, in ms.
    pub duration_ms: f64,
    /// Time the upstream took to answer with a head, in ms.
    pub upstream_ms: Option<f64>,
    /// Verified calling service.
    pub caller: Option<&'a str>,
    /// Verified tenant.
    pub tenant: Option<&'a str>,
    /// Client address.
    pub client_ip: String,
    /// Why the gateway answered itself, when it did (never secrets).
    pub error: Option<String>,
}

/// Where access-log lines go.
#[derive(Debug, Clone, Default)]
pub enum AccessSink {
    /// Standard output, one JSON line per request (the default).
    #[default]
    Stdout,
    /// Nowhere (`GATEWAY_ACCESS_LOG=off`).
    Off,
    /// Kept in memory, for tests.
    Memory(Arc<Mutex<Vec<String>>>),
}

impl AccessSink {
    /// From `GATEWAY_ACCESS_LOG` (`stdout`, the default, or `off`).
    pub fn from_env(value: Option<&str>) -> Self {
        match value {
            Some("off") => AccessSink::Off,
            _ => AccessSink::Stdout,
        }
    }

    /// Writes one log line (an [`Access`] or a [`SecurityEvent`]).
    pub fn write(&self, line: &impl Serialize) {
        match self {
            AccessSink::Off => {}
            AccessSink::Stdout => {
                let Ok(mut buf) = serde_json::to_vec(line) else {
                    return;
                };
                buf.push(b'\n');
                // One write per line keeps lines whole when threads log at
                // once; a closed stdout loses the line, never the request.
                let _ = std::io::stdout().lock().write_all(&buf);
            }
            AccessSink::Memory(lines) => {
                if let (Ok(l), Ok(mut v)) = (serde_json::to_string(line), lines.lock()) {
                    v.push(l);
                }
            }
        }
    }
}

/// One security-event line per authentication failure (contract §8).
/// Never carries a secret, token or signature.
#[derive(Debug, Serialize)]
pub struct SecurityEvent<'a> {
    /// RFC 3339 UTC time.
    pub timestamp: String,
    /// `WARN`.
    pub level: &'static str,
    /// `security`.
    pub target: &'static str,
    /// Always `auth_failure`.
    pub event: &'static str,
    /// Why (`expired`, `bad_signature`, `replayed_nonce`, ...).
    pub reason: &'static str,
    /// `enforce` (rejected) or `audit` (forwarded without identity).
    pub mode: &'static str,
    /// The caller when known: a claimed service name or a user id.
    pub caller: Option<&'a str>,
    /// The request id.
    pub request_id: &'a str,
    /// The correlation id.
    pub correlation_id: &'a str,
    /// Request method.
    pub method: &'a str,
    /// Request path (no query).
    pub path: &'a str,
    /// Matched route id.
    pub route: Option<&'static str>,
    /// Client address.
    pub client_ip: String,
}

/// One security-event line per TLS handshake the gateway refused.
#[derive(Debug, Serialize)]
pub struct TlsEvent {
    /// RFC 3339 UTC time.
    pub timestamp: String,
    /// `WARN`.
    pub level: &'static str,
    /// `security`.
    pub target: &'static str,
    /// Always `tls_handshake_failed`.
    pub event: &'static str,
    /// Why, machine-readable (`client_certificate_expired`, ...).
    pub reason: &'static str,
    /// rustls's description of the failure.
    pub detail: String,
    /// Client address.
    pub client_ip: String,
}

/// One line for the refused TLS handshakes that were not logged one by
/// one (over [`crate::tls::REFUSED_HANDSHAKES_LOGGED_PER_SECOND`]).
#[derive(Debug, Serialize)]
pub struct TlsSuppressed {
    /// RFC 3339 UTC time.
    pub timestamp: String,
    /// `WARN`.
    pub level: &'static str,
    /// `security`.
    pub target: &'static str,
    /// Always `tls_handshake_failed_suppressed`.
    pub event: &'static str,
    /// How many refused handshakes this line stands for.
    pub suppressed: u64,
}

/// Now as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_413), (2025, 11, 21));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
