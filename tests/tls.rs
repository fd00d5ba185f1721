//! TLS termination and mutual TLS (contract §8): real handshakes on
//! loopback with certificates made by the test (rcgen). A good client
//! certificate names its calling service; expired, wrong-CA and missing
//! certificates fail the handshake with a security event; a certificate
//! naming no declared service is 403; HTTP/2 over TLS; the server
//! certificate is reloaded without dropping connections; the gateway
//! presents its own client certificate to an upstream that requires one.
//! Issue 13 §6: a resumed session does not outlive its certificate, audit
//! mode forwards a refused certificate without identity, `/health`
//! answers whatever the certificate, key usage and chain length are
//! checked, refused handshakes are aggregated in the log.

#[path = "support/lib.rs"]
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gateway::config::StartupEnv;
use gateway::log::AccessSink;
use gateway::server::Gateway;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::HandshakeKind;
use serde_json::Value;
use support::{echo_upstream, start_shared, Running};

mod mtls {
    gateway_macros::spec!("tests/specs/mtls.yaml");
}

mod required {
    gateway_macros::spec!("tests/specs/mtls_required.yaml");
}

type Lines = Arc<Mutex<Vec<String>>>;

const BILLING: &str = "spiffe://corp.example/ns/prod/sa/billing";

/// A certificate authority.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A leaf certificate and its key.
struct Leaf {
    der: CertificateDer<'static>,
    pem: String,
    key: KeyPair,
}

impl Leaf {
    fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.serialize_der().into())
    }
}

fn leaf(ca: &Ca, sans: Vec<SanType>, client: bool, expired: bool) -> Leaf {
    leaf_with(ca, sans, client, |params| {
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
    })
}

/// A leaf certificate whose parameters `adjust` changes last.
fn leaf_with(
    ca: &Ca,
    sans: Vec<SanType>,
    client: bool,
    adjust: impl FnOnce(&mut CertificateParams),
) -> Leaf {
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    adjust(&mut params);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    Leaf {
        der: cert.der().clone(),
        pem: cert.pem(),
        key,
    }
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

fn dns(s: &str) -> SanType {
    SanType::DnsName(s.try_into().unwrap())
}

/// A fresh directory for one test's PEM files.
fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gateway-tls-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(d: &Path, name: &str, text: &str) -> String {
    let p = d.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// What every test starts from: a server CA and certificate for
/// `localhost`, a client CA, and the files the gateway reads.
struct Pki {
    server_ca: Ca,
    client_ca: Ca,
    dir: PathBuf,
    cert_file: String,
    key_file: String,
    client_ca_file: String,
}

fn pki(tag: &str) -> Pki {
    let server_ca = ca("server CA");
    let client_ca = ca("client CA");
    let server = leaf(&server_ca, vec![dns("localhost")], false, false);
    let d = dir(tag);
    Pki {
        cert_file: write(&d, "server.pem", &server.pem),
        key_file: write(&d, "server.key", &server.key.serialize_pem()),
        client_ca_file: write(&d, "client-ca.pem", &client_ca.pem),
        dir: d,
        server_ca,
        client_ca,
    }
}

fn client_config(pki: &Pki, cert: Option<&Leaf>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let chain = cert.map(|c| (vec![c.der.clone()], c.key_der()));
    client_config_with(pki, chain, rustls::DEFAULT_VERSIONS, alpn)
}

/// A client presenting `chain` (leaf first) with its key, if any, and
/// speaking only `versions`. Its session cache (rustls's default, in
/// memory) resumes sessions on later connections made with the same
/// configuration.
fn client_config_with(
    pki: &Pki,
    chain: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(
        CertificateDer::pem_slice_iter(pki.server_ca.pem.as_bytes()).map(Result::unwrap),
    );
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match chain {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

use rustls::pki_types::pem::PemObject;

/// An answer over TLS, or why there was none.
#[derive(Debug)]
struct Answer {
    status: u16,
    version: http::Version,
    body: Value,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Opens a TLS connection and an HTTP/1.1 client on it.
async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<(Sender, Vec<CertificateDer<'static>>), String> {
    connect_telling(addr, config)
        .await
        .map(|(sender, presented, _)| (sender, presented))
}

/// [`connect`], also saying whether the handshake was full or resumed.
async fn connect_telling(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<(Sender, Vec<CertificateDer<'static>>, HandshakeKind), String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let presented = tls.get_ref().1.peer_certificates().unwrap_or(&[]).to_vec();
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("http: {e}"))?;
    tokio::spawn(conn);
    Ok((sender, presented, kind))
}

async fn request(
    sender: &mut Sender,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, String> {
    let mut req = http::Request::builder()
        .uri(path)
        .header("host", "localhost");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    // An HTTP/1 sender takes one request at a time: sending before the
    // previous exchange has fully settled is refused as "canceled".
    sender.ready().await.map_err(|e| format!("ready: {e}"))?;
    let resp = sender
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .map_err(|e| format!("request: {e}"))?;
    let (status, version) = (resp.status().as_u16(), resp.version());
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Answer {
        status,
        version,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}

/// One request on a fresh TLS connection.
async fn https_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, String> {
    let (mut sender, _) = connect(addr, config).await?;
    request(&mut sender, path, headers).await
}

fn events(lines: &Lines, event: &str) -> Vec<Value> {
    lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == event)
        .collect()
}

/// The security events arrive after the handshake failed on the server
/// side, which the client may see first: wait a little for them.
async fn wait_for_event(lines: &Lines, event: &str, reason: &str) -> Value {
    for _ in 0..100 {
        if let Some(e) = events(lines, event)
            .into_iter()
            .find(|e| e["reason"] == reason)
        {
            return e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!(
        "no `{event}` event with reason `{reason}`: {:?}",
        lines.lock().unwrap()
    );
}

/// The environment the `mtls` spec starts with: the PKI's files, and the
/// ledger upstreams' CA and client certificate pointing at them too (those
/// upstreams are started only where a test needs them, but their files must
/// exist for start-up).
fn mtls_env(pki: &Pki, backend: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MTLS_CERT_FILE", pki.cert_file.clone()),
        ("MTLS_KEY_FILE", pki.key_file.clone()),
        ("MTLS_CLIENT_CA", pki.client_ca_file.clone()),
        (
            "MTLS_BILLING_SECRET",
            "billing-hmac-secret-0123456789".into(),
        ),
        ("MTLS_BACKEND_URL", backend.to_owned()),
        ("MTLS_LEDGER_CA", pki.client_ca_file.clone()),
        ("MTLS_LEDGER_ANON_CA", pki.client_ca_file.clone()),
        ("MTLS_LEDGER_CLIENT_CERT", pki.cert_file.clone()),
        ("MTLS_LEDGER_CLIENT_KEY", pki.key_file.clone()),
    ]
}

async fn start_mtls(pki: &Pki, extra: Vec<(&'static str, String)>) -> (Running, Lines) {
    let up = echo_upstream("backend").await;
    let mut env = mtls_env(pki, &format!("http://{up}"));
    for (k, v) in extra {
        env.retain(|(e, _)| *e != k);
        env.push((k, v));
    }
    let lines = Lines::default();
    let (gw, _) = start_shared::<mtls::Spec>(&env, AccessSink::Memory(lines.clone())).await;
    (gw, lines)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_names_the_calling_service() {
    let pki = pki("identity");
    let (gw, lines) = start_mtls(&pki, vec![]).await;
    let billing = leaf(&pki.client_ca, vec![uri(BILLING)], true, false);
    let reporting = leaf(
        &pki.client_ca,
        vec![dns("reporting.internal.example")],
        true,
        false,
    );
    let as_billing = client_config(&pki, Some(&billing), &[]);
    let as_reporting = client_config(&pki, Some(&reporting), &[]);
    let anonymous = client_config(&pki, None, &[]);

    // Admitted by certificate, the identity forwarded, the scheme https;
    // a client's own caller header never travels.
    let got = https_get(
        gw.addr,
        as_billing.clone(),
        "/billing/x",
        &[("x-caller-service", "admin")],
    )
    .await
    .unwrap();
    assert_eq!(got.status, 200, "{:?}", got.body);
    let h = &got.body["headers"];
    assert_eq!(h["x-caller-service"], "billing");
    assert_eq!(h["x-forwarded-proto"], "https");
    // Contract §8: the access log names the verified caller.
    let access: Vec<Value> = lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "access" && v["path"] == "/billing/x")
        .collect();
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["caller"], "billing");
    // The verified caller is known on every route, as with HMAC.
    let got = https_get(gw.addr, as_billing.clone(), "/public/x", &[])
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.body["headers"]["x-caller-service"], "billing");
    // A DNS-name identity, on a certificates-only route.
    let got = https_get(gw.addr, as_reporting.clone(), "/reports/q", &[])
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.body["headers"]["x-caller-service"], "reporting");

    // A known service the route does not admit: 403, never a fallback.
    let got = https_get(gw.addr, as_reporting, "/billing/x", &[])
        .await
        .unwrap();
    assert_eq!(got.status, 403);
    assert_eq!(got.body["error"], "Service authentication failed");
    let e = wait_for_event(&lines, "auth_failure", "caller_not_allowed").await;
    assert_eq!(e["caller"], "reporting");
    // No certificate (optional here): public routes serve, the
    // certificates-only route refuses, the HMAC route asks for a signature.
    let got = https_get(gw.addr, anonymous.clone(), "/public/x", &[])
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    assert!(got.body["headers"].get("x-caller-service").is_none());
    let got = https_get(gw.addr, anonymous.clone(), "/reports/q", &[])
        .await
        .unwrap();
    assert_eq!(got.status, 403);
    wait_for_event(&lines, "auth_failure", "missing_client_certificate").await;
    let got = https_get(gw.addr, anonymous.clone(), "/billing/x", &[])
        .await
        .unwrap();
    assert_eq!(got.status, 403);

    // Without a certificate, the same route admits billing by HMAC v2.
    let ts = gateway::auth::hmac::now_unix().to_string();
    let nonce = gateway::auth::hmac::fresh_nonce();
    let empty = gateway::auth::hmac::body_sha256(b"");
    let sig = gateway::auth::hmac::sign_v2(
        b"billing-hmac-secret-0123456789",
        &gateway::auth::hmac::V2Input {
            method: "GET",
            path_and_query: "/billing/signed",
            timestamp: &ts,
            nonce: &nonce,
            service: "billing",
            tenant: "",
            body_sha256: &empty,
        },
    );
    let got = https_get(
        gw.addr,
        anonymous,
        "/billing/signed",
        &[
            ("x-internal-service-auth", &sig),
            ("x-service-name", "billing"),
            ("x-internal-timestamp", &ts),
            ("x-internal-nonce", &nonce),
        ],
    )
    .await
    .unwrap();
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(got.body["headers"]["x-caller-service"], "billing");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_wrong_ca_and_unknown_certificates_are_refused() {
    let pki = pki("refused");
    let (gw, lines) = start_mtls(&pki, vec![]).await;
    let expired = leaf(&pki.client_ca, vec![uri(BILLING)], true, true);
    let other_ca = ca("someone else's CA");
    let foreign = leaf(&other_ca, vec![uri(BILLING)], true, false);
    let unknown = leaf(
        &pki.client_ca,
        vec![uri("spiffe://corp.example/ns/prod/sa/intruder")],
        true,
        false,
    );

    // Expired and wrong-CA certificates fail the handshake (with TLS 1.3
    // the client learns it at its first read), and each is logged.
    for (cert, reason) in [
        (&expired, "client_certificate_expired"),
        (&foreign, "client_certificate_unknown_issuer"),
    ] {
        let got = https_get(
            gw.addr,
            client_config(&pki, Some(cert), &[]),
            "/public/x",
            &[],
        )
        .await;
        assert!(got.is_err(), "{reason}: {got:?}");
        let e = wait_for_event(&lines, "tls_handshake_failed", reason).await;
        assert_eq!(e["client_ip"], "127.0.0.1");
        assert!(e["detail"].as_str().unwrap().contains("certificate"), "{e}");
    }
    // A valid certificate naming no declared service: 403 on every route.
    let got = https_get(
        gw.addr,
        client_config(&pki, Some(&unknown), &[]),
        "/public/x",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(got.status, 403);
    assert_eq!(got.body["error"], "Service authentication failed");
    let e = wait_for_event(&lines, "auth_failure", "unknown_client_certificate").await;
    assert_eq!(e["caller"], "spiffe://corp.example/ns/prod/sa/intruder");
    // Still serving.
    let got = https_get(gw.addr, client_config(&pki, None, &[]), "/public/x", &[])
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_required_client_certificate_is_required() {
    let pki = pki("required");
    let up = echo_upstream("backend").await;
    let lines = Lines::default();
    let (gw, _) = start_shared::<required::Spec>(
        &[
            ("REQ_CERT_FILE", pki.cert_file.clone()),
            ("REQ_KEY_FILE", pki.key_file.clone()),
            ("REQ_CLIENT_CA", pki.client_ca_file.clone()),
            ("REQ_BACKEND_URL", format!("http://{up}")),
        ],
        AccessSink::Memory(lines.clone()),
    )
    .await;
    let got = https_get(gw.addr, client_config(&pki, None, &[]), "/api/x", &[]).await;
    assert!(got.is_err(), "{got:?}");
    wait_for_event(&lines, "tls_handshake_failed", "client_certificate_missing").await;
    let billing = leaf(&pki.client_ca, vec![uri(BILLING)], true, false);
    let got = https_get(
        gw.addr,
        client_config(&pki, Some(&billing), &[]),
        "/api/x",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.body["headers"]["x-caller-service"], "billing");
    // Plain HTTP on the TLS port is no request at all.
    let plain = support::raw(gw.addr, b"GET /api/x HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_over_tls_with_alpn() {
    let pki = pki("h2");
    let (gw, _) = start_mtls(&pki, vec![]).await;
    let billing = leaf(&pki.client_ca, vec![uri(BILLING)], true, false);
    let config = client_config(&pki, Some(&billing), &[b"h2", b"http/1.1"]);
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    // Several streams on the one connection.
    for i in 0..3 {
        let req = http::Request::builder()
            .uri(format!("https://localhost/billing/h2-{i}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let body: Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["headers"]["x-caller-service"], "billing");
        assert_eq!(body["headers"]["x-forwarded-proto"], "https");
    }
    // http/1.1 when the client offers only that.
    let got = https_get(
        gw.addr,
        client_config(&pki, Some(&billing), &[b"http/1.1"]),
        "/billing/h1",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(got.version, http::Version::HTTP_11);
    assert_eq!(got.status, 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_certificate_reloads_without_dropping_connections() {
    let pki = pki("reload");
    let up = echo_upstream("backend").await;
    let env = mtls_env(&pki, &format!("http://{up}"));
    let (gw, handle) = start_shared::<mtls::Spec>(&env, AccessSink::Off).await;
    let config = client_config(&pki, None, &[]);
    let (mut old, first) = connect(gw.addr, config.clone()).await.unwrap();
    assert_eq!(
        request(&mut old, "/public/1", &[]).await.unwrap().status,
        200
    );

    // A new certificate in the same files, then SIGHUP's reload.
    let renewed = leaf(&pki.server_ca, vec![dns("localhost")], false, false);
    std::fs::write(&pki.cert_file, &renewed.pem).unwrap();
    std::fs::write(&pki.key_file, renewed.key.serialize_pem()).unwrap();
    handle.reload().unwrap();
    let (mut new, second) = connect(gw.addr, config.clone()).await.unwrap();
    assert_ne!(
        first[0], second[0],
        "the new connection got the old certificate"
    );
    assert_eq!(second[0], renewed.der);
    assert_eq!(
        request(&mut new, "/public/2", &[]).await.unwrap().status,
        200
    );
    // The connection opened before the reload still serves.
    assert_eq!(
        request(&mut old, "/public/3", &[]).await.unwrap().status,
        200
    );

    // A key that does not match: the reload fails, the previous
    // certificate stays in force.
    let stray = KeyPair::generate().unwrap();
    std::fs::write(&pki.key_file, stray.serialize_pem()).unwrap();
    let e = handle.reload().unwrap_err().to_string();
    assert!(
        e.starts_with("MTLS_KEY_FILE") && e.contains("does not match"),
        "{e}"
    );
    let (_, third) = connect(gw.addr, config).await.unwrap();
    assert_eq!(third[0], renewed.der);
    gw.shutdown().await;
}

#[test]
fn missing_or_mismatched_files_stop_start_up_naming_the_variable() {
    let pki = pki("startup");
    let other_key = write(
        &pki.dir,
        "other.key",
        &KeyPair::generate().unwrap().serialize_pem(),
    );
    let not_pem = write(&pki.dir, "garbage.pem", "not a certificate\n");
    // The working environment with `var` left out, or set to `value`.
    let env = |var: &str, value: Option<&str>| -> StartupEnv {
        let mut pairs = mtls_env(&pki, "http://127.0.0.1:9");
        pairs.retain(|(k, _)| *k != var);
        if let Some(v) = value {
            pairs.push((
                ["MTLS_CERT_FILE", "MTLS_KEY_FILE", "MTLS_LEDGER_CLIENT_KEY"]
                    .into_iter()
                    .find(|k| *k == var)
                    .unwrap(),
                v.to_owned(),
            ));
        }
        StartupEnv::from_pairs(pairs)
    };
    let fails = |var: &str, value: Option<&str>| {
        Gateway::<mtls::Spec>::new(&env(var, value))
            .unwrap_err()
            .to_string()
    };
    assert!(Gateway::<mtls::Spec>::new(&env("", None)).is_ok());
    for var in ["MTLS_CERT_FILE", "MTLS_KEY_FILE", "MTLS_CLIENT_CA"] {
        let e = fails(var, None);
        assert!(e.starts_with(var), "{var}: {e}");
    }
    let e = fails("MTLS_KEY_FILE", Some(&other_key));
    assert!(
        e.starts_with("MTLS_KEY_FILE") && e.contains("does not match"),
        "{e}"
    );
    let e = fails("MTLS_CERT_FILE", Some(&not_pem));
    assert!(
        e.starts_with("MTLS_CERT_FILE") && e.contains("no PEM certificate"),
        "{e}"
    );
    // The upstream client certificate is checked the same way.
    let e = fails("MTLS_LEDGER_CLIENT_KEY", Some(&other_key));
    assert!(
        e.starts_with("MTLS_LEDGER_CLIENT_KEY") && e.contains("does not match"),
        "{e}"
    );
}

/// An HTTPS upstream that requires a client certificate from `client_ca`
/// and answers with the SAN URIs of the one it got.
async fn mtls_upstream(server: &Leaf, client_ca: &Ca) -> SocketAddr {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(
        CertificateDer::pem_slice_iter(client_ca.pem.as_bytes()).map(Result::unwrap),
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server.der.clone()], server.key_der())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let presented = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.as_ref().to_vec());
                let svc = service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                    let body = serde_json::json!({ "client_cert_bytes": presented.as_ref().map(Vec::len) });
                    async move {
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                            body.to_string(),
                        ))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_presents_its_client_certificate_to_an_upstream() {
    let pki = pki("upstream");
    // The ledger's own PKI: its server certificate, and the CA it trusts
    // for client certificates, which issued the gateway's.
    let ledger_ca = ca("ledger CA");
    let ledger_server = leaf(&ledger_ca, vec![dns("localhost")], false, false);
    let gateway_clients = ca("gateway client CA");
    let gateway_cert = leaf(
        &gateway_clients,
        vec![uri("spiffe://corp.example/ns/prod/sa/mtls-gateway")],
        true,
        false,
    );
    let ledger = mtls_upstream(&ledger_server, &gateway_clients).await;
    let d = &pki.dir;
    let (gw, lines) = start_mtls(
        &pki,
        vec![
            (
                "MTLS_LEDGER_URL",
                format!("https://localhost:{}", ledger.port()),
            ),
            (
                "MTLS_LEDGER_ANON_URL",
                format!("https://localhost:{}", ledger.port()),
            ),
            ("MTLS_LEDGER_CA", write(d, "ledger-ca.pem", &ledger_ca.pem)),
            (
                "MTLS_LEDGER_ANON_CA",
                write(d, "ledger-ca.pem", &ledger_ca.pem),
            ),
            (
                "MTLS_LEDGER_CLIENT_CERT",
                write(d, "gw-client.pem", &gateway_cert.pem),
            ),
            (
                "MTLS_LEDGER_CLIENT_KEY",
                write(d, "gw-client.key", &gateway_cert.key.serialize_pem()),
            ),
        ],
    )
    .await;
    let anonymous = client_config(&pki, None, &[]);
    let got = https_get(gw.addr, anonymous.clone(), "/ledger/balance", &[])
        .await
        .unwrap();
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(
        got.body["client_cert_bytes"].as_u64(),
        Some(gateway_cert.der.len() as u64)
    );
    // The same upstream without the gateway's certificate refuses the
    // handshake: 502, with the reason in the access log.
    let got = https_get(gw.addr, anonymous, "/anonymous-ledger/balance", &[])
        .await
        .unwrap();
    assert_eq!(got.status, 502);
    let access: Vec<Value> = lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["status"] == 502)
        .collect();
    assert_eq!(access.len(), 1, "{access:?}");
    gw.shutdown().await;
}

/// Seconds since the Unix epoch, now.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Polls `lines` until `done` holds (deadline 20 s: the machine may be
/// loaded), then returns the parsed lines.
async fn wait_for_lines(lines: &Lines, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let parsed: Vec<Value> = lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect();
        if done(&parsed) {
            return parsed;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "log never got there: {parsed:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn count(lines: &[Value], event: &str, reason: &str) -> usize {
    lines
        .iter()
        .filter(|v| v["event"] == event && v["reason"] == reason)
        .count()
}

/// Issue 13 §6: a session resumed after its client certificate expired
/// kept the certificate's identity (TLS 1.2 session ids and TLS 1.3
/// tickets alike), which undid expiry. A resumed connection whose
/// certificate has expired is now refused like a full handshake with it.
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_certificate_does_not_survive_session_resumption() {
    let pki = pki("resume");
    let (gw, lines) = start_mtls(&pki, vec![]).await;
    // Valid for a few seconds: long enough for two handshakes per version
    // on a loaded machine.
    let not_after = unix_now() + 8;
    let short = leaf_with(&pki.client_ca, vec![uri(BILLING)], true, |p| {
        p.not_after = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(not_after);
    });
    let versions: [&'static rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS12, &rustls::version::TLS13];
    let mut clients = Vec::new();
    for version in versions {
        let config = client_config_with(
            &pki,
            Some((vec![short.der.clone()], short.key_der())),
            &[version],
            &[],
        );
        // A full handshake, then a resumed one: both are the billing
        // service while the certificate is valid.
        for expected in [HandshakeKind::Full, HandshakeKind::Resumed] {
            let (mut sender, _, kind) = connect_telling(gw.addr, config.clone()).await.unwrap();
            assert_eq!(kind, expected, "{version:?}");
            let got = request(&mut sender, "/billing/x", &[]).await.unwrap();
            assert_eq!(got.status, 200, "{version:?} {kind:?}: {:?}", got.body);
            assert_eq!(got.body["headers"]["x-caller-service"], "billing");
        }
        clients.push((version, config));
    }
    assert!(
        unix_now() <= not_after,
        "the machine is too slow for this test's margin"
    );
    while unix_now() <= not_after {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for (version, config) in &clients {
        // The client resumes (no certificate is presented again) and the
        // gateway closes the connection instead of serving it.
        let (mut sender, _, kind) = connect_telling(gw.addr, config.clone()).await.unwrap();
        assert_eq!(kind, HandshakeKind::Resumed, "{version:?}");
        let got = request(&mut sender, "/billing/x", &[]).await;
        assert!(got.is_err(), "{version:?}: served {got:?}");
    }
    // One security event per refused resumption, as for a full handshake.
    let logged = wait_for_lines(&lines, |l| {
        count(l, "tls_handshake_failed", "client_certificate_expired") >= 2
    })
    .await;
    assert_eq!(
        count(
            &logged,
            "tls_handshake_failed",
            "client_certificate_expired"
        ),
        2
    );
    // Nothing reached the upstream after expiry.
    let served: Vec<&Value> = logged
        .iter()
        .filter(|v| v["target"] == "access" && v["path"] == "/billing/x")
        .collect();
    assert_eq!(served.len(), 4, "{served:?}");
    // A full handshake with it is refused too (as before).
    let fresh = client_config(&pki, Some(&short), &[]);
    assert!(https_get(gw.addr, fresh, "/billing/x", &[]).await.is_err());
    gw.shutdown().await;
}

/// Issue 13 §6: in audit mode a certificate naming a service the route
/// does not admit was forwarded with `X-Caller-Service` set to it. Audit
/// mode forwards a failed caller without identity, whatever proved it.
#[tokio::test(flavor = "multi_thread")]
async fn audit_mode_forwards_a_refused_certificate_without_identity() {
    let pki = pki("audit");
    let (gw, lines) = start_mtls(&pki, vec![("INTERNAL_AUTH_MODE", "audit".into())]).await;
    let reporting = leaf(
        &pki.client_ca,
        vec![dns("reporting.internal.example")],
        true,
        false,
    );
    let as_reporting = client_config(&pki, Some(&reporting), &[]);
    let got = https_get(gw.addr, as_reporting.clone(), "/billing/x", &[])
        .await
        .unwrap();
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert!(
        got.body["headers"].get("x-caller-service").is_none(),
        "{:?}",
        got.body["headers"]
    );
    let e = wait_for_event(&lines, "auth_failure", "caller_not_allowed").await;
    assert_eq!(e["mode"], "audit");
    assert_eq!(e["caller"], "reporting");
    let access = wait_for_lines(&lines, |l| {
        l.iter()
            .any(|v| v["target"] == "access" && v["path"] == "/billing/x")
    })
    .await;
    let line = access
        .iter()
        .find(|v| v["target"] == "access" && v["path"] == "/billing/x")
        .unwrap();
    assert_eq!(line["caller"], Value::Null, "{line}");
    // Where the certificate is admitted, its identity still travels.
    let got = https_get(gw.addr, as_reporting, "/reports/q", &[])
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.body["headers"]["x-caller-service"], "reporting");
    gw.shutdown().await;
}

/// Issue 13 §6: `/health` answered 403 on a connection whose valid
/// certificate names no declared service; it always answers 200.
#[tokio::test(flavor = "multi_thread")]
async fn health_answers_whatever_the_client_certificate() {
    let pki = pki("health");
    let (gw, _) = start_mtls(&pki, vec![]).await;
    let unknown = leaf(
        &pki.client_ca,
        vec![uri("spiffe://corp.example/ns/prod/sa/intruder")],
        true,
        false,
    );
    let (mut sender, _) = connect(gw.addr, client_config(&pki, Some(&unknown), &[]))
        .await
        .unwrap();
    let got = request(&mut sender, "/health", &[]).await.unwrap();
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(got.body, serde_json::json!({"status": "ok"}));
    // Everything else on that connection is still refused.
    let got = request(&mut sender, "/public/x", &[]).await.unwrap();
    assert_eq!(got.status, 403);
    gw.shutdown().await;
}

/// Issue 13 §6: a client certificate whose key usage lacks
/// `digitalSignature` (here `keyCertSign` only, with the clientAuth EKU)
/// was accepted; it is refused, as `openssl verify -purpose sslclient`
/// does. A certificate without the extension, or with
/// `digitalSignature`, is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_without_digital_signature_is_refused() {
    use rcgen::KeyUsagePurpose;
    let pki = pki("key-usage");
    let (gw, lines) = start_mtls(&pki, vec![]).await;
    let with_usage = |usages: Vec<KeyUsagePurpose>| {
        leaf_with(&pki.client_ca, vec![uri(BILLING)], true, |p| {
            p.key_usages = usages;
        })
    };
    let signing_only = with_usage(vec![KeyUsagePurpose::KeyCertSign]);
    let got = https_get(
        gw.addr,
        client_config(&pki, Some(&signing_only), &[]),
        "/billing/x",
        &[],
    )
    .await;
    assert!(got.is_err(), "{got:?}");
    let e = wait_for_event(
        &lines,
        "tls_handshake_failed",
        "client_certificate_bad_key_usage",
    )
    .await;
    assert!(
        e["detail"].as_str().unwrap().contains("digitalSignature"),
        "{e}"
    );
    for usages in [
        vec![KeyUsagePurpose::DigitalSignature],
        vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ],
        Vec::new(),
    ] {
        let good = with_usage(usages.clone());
        let got = https_get(
            gw.addr,
            client_config(&pki, Some(&good), &[]),
            "/billing/x",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{usages:?}: {e}"));
        assert_eq!(got.status, 200, "{usages:?}");
        assert_eq!(got.body["headers"]["x-caller-service"], "billing");
    }
    gw.shutdown().await;
}

/// Issue 13 §6: every certificate a client sends is a candidate issuer
/// the verifier may try, so a long chain cost many times a normal
/// handshake. More than `MAX_CLIENT_INTERMEDIATES` are refused before any
/// of them is verified.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_client_chain_is_refused() {
    let pki = pki("chain");
    let (gw, lines) = start_mtls(&pki, vec![]).await;
    let billing = leaf(&pki.client_ca, vec![uri(BILLING)], true, false);
    let max = gateway::tls::MAX_CLIENT_INTERMEDIATES;
    // Well-formed CA certificates that issued nothing here: the chain
    // still verifies through the client CA, whatever their number.
    let fillers: Vec<CertificateDer<'static>> = (0..=max)
        .map(|i| CertificateDer::from_pem_slice(ca(&format!("filler {i}")).pem.as_bytes()).unwrap())
        .collect();
    let chain = |n: usize| {
        let mut chain = vec![billing.der.clone()];
        chain.extend(fillers[..n].iter().cloned());
        client_config_with(
            &pki,
            Some((chain, billing.key_der())),
            rustls::DEFAULT_VERSIONS,
            &[],
        )
    };
    let got = https_get(gw.addr, chain(max), "/billing/x", &[])
        .await
        .unwrap();
    assert_eq!(got.status, 200, "{:?}", got.body);
    let got = https_get(gw.addr, chain(max + 1), "/billing/x", &[]).await;
    assert!(got.is_err(), "{got:?}");
    let e = wait_for_event(
        &lines,
        "tls_handshake_failed",
        "client_certificate_chain_too_long",
    )
    .await;
    assert_eq!(e["client_ip"], "127.0.0.1");
    gw.shutdown().await;
}

/// Issue 13 §6: every refused handshake wrote a WARN line, without limit,
/// so a flood of them flooded the log. At most
/// `REFUSED_HANDSHAKES_LOGGED_PER_SECOND` lines are written per second;
/// the rest are counted and reported in one summary line.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_refused_handshakes_does_not_flood_the_log() {
    const FLOOD: usize = 150;
    let limit = gateway::tls::REFUSED_HANDSHAKES_LOGGED_PER_SECOND as usize;
    let pki = pki("flood");
    let up = echo_upstream("backend").await;
    let lines = Lines::default();
    let (gw, _) = start_shared::<required::Spec>(
        &[
            ("REQ_CERT_FILE", pki.cert_file.clone()),
            ("REQ_KEY_FILE", pki.key_file.clone()),
            ("REQ_CLIENT_CA", pki.client_ca_file.clone()),
            ("REQ_BACKEND_URL", format!("http://{up}")),
        ],
        AccessSink::Memory(lines.clone()),
    )
    .await;
    let anonymous = client_config(&pki, None, &[]);
    let started = std::time::Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..FLOOD {
        let (addr, config) = (gw.addr, anonymous.clone());
        flood.spawn(async move { https_get(addr, config, "/api/x", &[]).await.is_err() });
    }
    while let Some(refused) = flood.join_next().await {
        assert!(refused.unwrap());
    }
    let took = started.elapsed().as_secs() as usize;
    // Every refusal is accounted for: a line of its own, or in a summary.
    let accounted = |l: &[Value]| -> (usize, usize, u64) {
        let own = count(l, "tls_handshake_failed", "client_certificate_missing");
        let summaries: Vec<&Value> = l
            .iter()
            .filter(|v| v["event"] == "tls_handshake_failed_suppressed")
            .collect();
        let suppressed = summaries
            .iter()
            .map(|v| v["suppressed"].as_u64().unwrap())
            .sum();
        (own, summaries.len(), suppressed)
    };
    let logged = wait_for_lines(&lines, |l| {
        let (own, _, suppressed) = accounted(l);
        own + suppressed as usize >= FLOOD
    })
    .await;
    let (own, summaries, suppressed) = accounted(&logged);
    assert_eq!(own + suppressed as usize, FLOOD);
    // Bounded by the rate, not by the flood: the flood touched at most
    // took + 2 one-second windows, and the server may log its last
    // refusals in one more after the clients saw them.
    assert!(own <= limit * (took + 3), "{own} lines in {took} s");
    assert!(
        suppressed > 0,
        "nothing suppressed: {own} lines in {took} s"
    );
    assert!(summaries <= took + 3, "{summaries} summaries in {took} s");
    let summary = logged
        .iter()
        .find(|v| v["event"] == "tls_handshake_failed_suppressed")
        .unwrap();
    assert_eq!(summary["level"], "WARN");
    assert_eq!(summary["target"], "security");
    gw.shutdown().await;
}
