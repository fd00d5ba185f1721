//! The proxy table of the fetch-service gateway (seed 000), compiled through
//! `gateway_macros::spec!` and served in front of one upstream per service.

#[path = "support/lib.rs"]
mod support;

use gateway::spec::Spec as _;
use support::{echo_upstream, get, send, start};

mod fetch_service {
    gateway_macros::spec!("tests/specs/fetch_service.yaml");
}

use fetch_service::{RouteId, Spec};

/// (route, public path, service, upstream path)
#[rustfmt::skip]
const TABLE: &[(RouteId, &str, &str, &str)] = {
    use RouteId::*;
    &[
        (ApiInsightsRest, "/api/insights/trends?window=7d", "insights", "/api/v1/trends?window=7d"),
        (ApiDataRest, "/api/data/accounts/42", "unified_data", "/api/accounts/42"),
        (ApiTemplatesRest, "/api/templates/t1", "workflow_engine", "/api/v1/templates/t1"),
        (ApiWorkflowsRest, "/api/workflows/w1/steps", "workflow_engine", "/api/v1/workflows/w1/steps"),
        (ApiRunsRest, "/api/runs/r1", "workflow_engine", "/api/v1/runs/r1"),
        (ApiAgentsRest, "/api/agents/a1/run", "agent_orchestrator", "/api/v1/agents/a1/run"),
        (ApiAgentRest, "/api/agent/chat", "agent_orchestrator", "/api/v1/agent/chat"),
        (ApiMlRest, "/api/ml/predict", "ml", "/api/v1/predict"),
        (ApiV1BhiRest, "/api/v1/bhi/score", "insights", "/api/v1/bhi/score"),
        (ApiV1NbaRest, "/api/v1/nba/next", "insights", "/api/v1/nba/next"),
        (ApiV1SaasRest, "/api/v1/saas/usage", "insights", "/api/v1/saas/usage"),
        (ApiV1RiskRest, "/api/v1/risk/a%2Bb", "insights", "/api/v1/risk/a%2Bb"),
    ]
};

#[tokio::test(flavor = "multi_thread")]
async fn every_proxy_mapping_reaches_its_service() {
    let mut env = Vec::new();
    for (service, var) in [
        ("insights", "INSIGHTS_SERVICE_URL"),
        ("unified_data", "UNIFIED_DATA_SERVICE_URL"),
        ("workflow_engine", "WORKFLOW_ENGINE_URL"),
        ("agent_orchestrator", "AGENT_ORCHESTRATOR_URL"),
        ("ml", "ML_SERVICE_URL"),
    ] {
        env.push((var, format!("http://{}", echo_upstream(service).await)));
    }
    let gw = start::<Spec>(&env).await;
    for (_, path, service, upstream) in TABLE {
        let got = send("POST", &gw.url(path), &[], "x").await;
        assert_eq!(got.status, 200, "{path}");
        let echo = got.json();
        assert_eq!(echo["service"], *service, "{path}");
        assert_eq!(echo["uri"], *upstream, "{path}");
        assert_eq!(echo["headers"]["via"], "1.1 api-gateway");
    }
    for route in RouteId::ALL {
        assert!(
            TABLE.iter().any(|(r, ..)| r == route),
            "{}",
            Spec::route(*route).pattern
        );
    }
    // A catch-all needs something to catch; `/api/insights` alone is not routed.
    assert_eq!(get(&gw.url("/api/insights")).await.status, 404);
    assert_eq!(get(&gw.url("/api/insights/")).await.status, 404);
    gw.shutdown().await;
}
