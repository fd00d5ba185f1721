//! HTTPS upstreams (contract §8): certificates verified against a
//! configured CA bundle or the system roots, SNI from the upstream host,
//! and no way to skip verification. Real handshakes on loopback with
//! certificates made by the test (rcgen).

#[path = "support/lib.rs"]
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gateway::config::StartupEnv;
use gateway::log::AccessSink;
use gateway::server::Gateway;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use support::{send, start_shared};

mod tls {
    gateway_macros::spec!("tests/specs/tls_upstream.yaml");
}

struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn pki() -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let ca = params.self_signed(&key).unwrap();
    Pki {
        ca_pem: ca.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// An HTTPS upstream presenting a certificate for `names`, answering with
/// the SNI it saw and the Host header.
async fn https_upstream(pki: &Pki, names: &[&str]) -> SocketAddr {
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, &pki.issuer).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
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
                let sni = tls.get_ref().1.server_name().unwrap_or("").to_owned();
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let body = serde_json::json!({
                        "sni": sni,
                        "host": req.headers().get("host").and_then(|h| h.to_str().ok()),
                        "uri": req.uri().to_string(),
                    });
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

fn ca_file(pki: &Pki, tag: &str) -> String {
    let path =
        std::env::temp_dir().join(format!("gateway-test-ca-{}-{tag}.pem", std::process::id()));
    std::fs::write(&path, &pki.ca_pem).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn verified_https_upstreams_and_refused_bad_certificates() {
    let pki = pki();
    let good = https_upstream(&pki, &["localhost"]).await;
    let wrong_name = https_upstream(&pki, &["elsewhere.example"]).await;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let start = |trusted: SocketAddr| {
        let env = vec![
            (
                "TRUSTED_URL",
                format!("https://localhost:{}", trusted.port()),
            ),
            ("TRUSTED_CA_FILE", ca_file(&pki, "good")),
            ("SYSTEM_URL", format!("https://localhost:{}", good.port())),
        ];
        let lines = lines.clone();
        async move { start_shared::<tls::Spec>(&env, AccessSink::Memory(lines)).await }
    };
    let (gw, _) = start(good).await;
    // The configured CA verifies the upstream; SNI and Host name it.
    let got = send("GET", &gw.url("/trusted/x?y=1"), &[], "").await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let echo = got.json();
    assert_eq!(echo["sni"], "localhost");
    assert_eq!(echo["host"], format!("localhost:{}", good.port()));
    assert_eq!(echo["uri"], "/x?y=1");
    // The system roots do not trust the tests' CA: 502, and the log says why.
    let got = send("GET", &gw.url("/system/x"), &[], "").await;
    assert_eq!(got.status, 502);
    let id = got.header("x-request-id").unwrap().to_owned();
    gw.shutdown().await;
    let why = |id: &str| {
        lines
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(id))
            .cloned()
            .unwrap()
    };
    let line = why(&id);
    assert!(
        line.contains("certificate") || line.contains("UnknownIssuer"),
        "{line}"
    );
    // A certificate for another name is refused even from the trusted CA.
    let (gw, _) = start(wrong_name).await;
    let got = send("GET", &gw.url("/trusted/x"), &[], "").await;
    assert_eq!(got.status, 502);
    let line = why(got.header("x-request-id").unwrap());
    assert!(
        line.contains("NotValidForName") || line.contains("not valid for name"),
        "{line}"
    );
    gw.shutdown().await;
}

#[test]
fn a_missing_or_empty_ca_bundle_stops_start_up() {
    let e = Gateway::<tls::Spec>::new(&StartupEnv::default())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("TRUSTED_CA_FILE"), "{e}");
    let empty = std::env::temp_dir().join(format!("gateway-empty-ca-{}.pem", std::process::id()));
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let env = StartupEnv::from_pairs([("TRUSTED_CA_FILE", empty.display().to_string())]);
    let e = Gateway::<tls::Spec>::new(&env).unwrap_err().to_string();
    assert!(
        e.starts_with("TRUSTED_CA_FILE") && e.contains("holds no PEM certificate"),
        "{e}"
    );
    // HTTPS upstreams need no plain-HTTP opt-in in production.
    let pki = pki();
    let env = StartupEnv::from_pairs([
        ("TRUSTED_CA_FILE", ca_file(&pki, "prod")),
        ("GATEWAY_ENV", "production".into()),
    ]);
    assert!(Gateway::<tls::Spec>::new(&env).is_ok());
}
