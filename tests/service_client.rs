//! The service client (the seed's `fetchService()`): signs like the
//! gateway, propagates tenant and correlation ids, times out, breaks the
//! circuit, and decodes JSON or returns a typed error.

#[path = "support/lib.rs"]
mod support;

use std::time::Duration;

use gateway::config::StartupEnv;
use gateway::outbound::OutboundIdentity;
use gateway::policy::breaker::BreakerSpec;
use gateway::service::{CallContext, ServiceClient, ServiceError};
use gateway::spec::ServiceSpec;
use serde_json::Value;
use support::{verifier, verifying_upstream};

static INSIGHTS: ServiceSpec = ServiceSpec {
    name: "insights",
    url_env: "INSIGHTS_SERVICE_URL",
    default_url: "http://127.0.0.1:9",
    identity: OutboundIdentity::Hmac {
        secret_env: "INSIGHTS_SERVICE_SECRET",
    },
    allow_plaintext: true,
    breaker: Some(BreakerSpec {
        failures: 2,
        open_for: Duration::from_secs(60),
        probes: 1,
        rate: None,
    }),
    tls_ca_env: None,
    tls_client_cert: None,
    connect_timeout: None,
    allow_client_headers: &[],
};

static ML: ServiceSpec = ServiceSpec {
    name: "ml",
    url_env: "ML_SERVICE_URL",
    default_url: "http://127.0.0.1:9",
    identity: OutboundIdentity::Jwt {
        secret_env: "ML_SERVICE_SECRET",
        ttl: Duration::from_secs(120),
    },
    allow_plaintext: true,
    breaker: None,
    tls_ca_env: None,
    tls_client_cert: None,
    connect_timeout: None,
    allow_client_headers: &[],
};

async fn client(
    spec: &'static ServiceSpec,
    url_env: &str,
    secret_env: &str,
    secret: &str,
) -> ServiceClient {
    let (addr, _) = verifying_upstream(verifier(spec.name, "api-gateway", &[secret])).await;
    let env = StartupEnv::from_pairs([
        (url_env, format!("http://{addr}")),
        (secret_env, secret.to_owned()),
    ]);
    ServiceClient::new("api-gateway", spec, Duration::from_millis(800), &env).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_are_signed_and_carry_tenant_and_correlation() {
    let insights = client(
        &INSIGHTS,
        "INSIGHTS_SERVICE_URL",
        "INSIGHTS_SERVICE_SECRET",
        "s3",
    )
    .await;
    let ctx = CallContext {
        tenant: Some("acme".into()),
        correlation_id: Some("corr-42".into()),
    };
    let got: Value = insights
        .get("/api/v1/trends?window=7d", &ctx)
        .await
        .unwrap();
    assert_eq!(got["verdict"]["ok"], true, "{got}");
    assert_eq!(got["verdict"]["proof"], "HmacV2");
    assert_eq!(got["verdict"]["tenant"], "acme");
    assert_eq!(got["uri"], "/api/v1/trends?window=7d");
    let h = &got["headers"];
    assert_eq!(h["x-correlation-id"], "corr-42");
    assert_eq!(h["x-service-name"], "api-gateway");
    assert!(h["x-request-id"].as_str().unwrap().len() >= 32);
    let posted: Value = insights
        .call(
            http::Method::POST,
            "/api/v1/scores",
            Some(&serde_json::json!({"k": 1})),
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(posted["verdict"]["ok"], true, "the body hash is signed");
    let ml = client(&ML, "ML_SERVICE_URL", "ML_SERVICE_SECRET", "m1").await;
    let got: Value = ml
        .get("/api/v1/predict", &CallContext::default())
        .await
        .unwrap();
    assert_eq!(got["verdict"]["proof"], "Jwt");
    let h = &got["headers"];
    assert_eq!(
        h["x-correlation-id"], h["x-request-id"],
        "a fresh correlation id when none is given"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_typed_and_open_the_circuit() {
    let insights = client(
        &INSIGHTS,
        "INSIGHTS_SERVICE_URL",
        "INSIGHTS_SERVICE_SECRET",
        "s3",
    )
    .await;
    let ctx = CallContext::default();
    match insights.get::<Value>("/x/missing", &ctx).await {
        Err(ServiceError::Status { status: 404, .. }) => {}
        other => panic!("{other:?}"),
    }
    match insights.get::<Value>("/x/notjson", &ctx).await {
        Err(ServiceError::Decode { .. }) => {}
        other => panic!("{other:?}"),
    }
    match insights.get::<Value>("/x/slow", &ctx).await {
        Err(ServiceError::Timeout(s)) => assert_eq!(s, "insights"),
        other => panic!("{other:?}"),
    }
    // 4xx and decode problems did not count; one timeout did. One 500 more
    // makes two consecutive failures and opens the circuit.
    assert!(matches!(
        insights.get::<Value>("/x/broken", &ctx).await,
        Err(ServiceError::Status { status: 500, .. })
    ));
    match insights.get::<Value>("/x/fine", &ctx).await {
        Err(ServiceError::CircuitOpen(s)) => assert_eq!(s, "insights"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn plain_http_is_refused_in_production_unless_allowed() {
    static STRICT: ServiceSpec = ServiceSpec {
        allow_plaintext: false,
        ..INSIGHTS
    };
    let env = StartupEnv::from_pairs([
        ("INSIGHTS_SERVICE_URL", "http://insights.internal:3005"),
        ("INSIGHTS_SERVICE_SECRET", "s"),
        ("GATEWAY_ENV", "production"),
    ]);
    let e = ServiceClient::new("api-gateway", &STRICT, Duration::from_secs(1), &env)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("INSIGHTS_SERVICE_URL") && e.contains("plain HTTP is refused"),
        "{e}"
    );
    // Outside production, and with the service's explicit opt-in, it is built.
    let dev = StartupEnv::from_pairs([
        ("INSIGHTS_SERVICE_URL", "http://insights.internal:3005"),
        ("INSIGHTS_SERVICE_SECRET", "s"),
    ]);
    assert!(ServiceClient::new("api-gateway", &STRICT, Duration::from_secs(1), &dev).is_ok());
    assert!(ServiceClient::new("api-gateway", &INSIGHTS, Duration::from_secs(1), &env).is_ok());
}

#[test]
fn a_missing_credential_stops_construction() {
    let env = StartupEnv::from_pairs([("INSIGHTS_SERVICE_URL", "http://127.0.0.1:1")]);
    let e = ServiceClient::new("api-gateway", &INSIGHTS, Duration::from_secs(1), &env)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("INSIGHTS_SERVICE_SECRET (or INSIGHTS_SERVICE_SECRET_FILE)"),
        "{e}"
    );
}
