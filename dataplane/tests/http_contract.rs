//! The HTTP contract every route keeps, on the real binary with its default
//! SQLite store: security headers and request ids on every answer, JSON
//! errors, metrics labelled by route template, and the OpenAPI document.

mod common;

use common::*;
use reqwest::StatusCode;

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_a_request_id() {
    let dp = start(&[("MAX_BODY_BYTES", "2048")]);
    // Signed in: without credentials the guard answers 401 before the
    // router could say 405.
    let c = authed(&dp).await;

    let ok = c.get(dp.url("/api/health")).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_security_headers(ok.headers());

    let not_found = c.get(dp.url("/api/nothing-here")).send().await.unwrap();
    assert_eq!(not_found.status(), StatusCode::NOT_FOUND);
    assert_security_headers(not_found.headers());
    let body = json(not_found).await;
    assert_eq!(body["error"]["code"], "not_found");

    let wrong_method = c.delete(dp.url("/api/stats")).send().await.unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_security_headers(wrong_method.headers());
    assert_eq!(wrong_method.headers()["allow"], "GET,HEAD");
    assert_eq!(
        json(wrong_method).await["error"]["code"],
        "method_not_allowed"
    );

    let too_large = c
        .post(dp.url("/api/stats"))
        .header("content-type", "application/json")
        .body(vec![b' '; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_security_headers(too_large.headers());
    let body = json(too_large).await;
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2048 bytes")
    );
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_and_any_other_is_replaced() {
    let dp = start(&[]);
    let c = client();
    let kept = c
        .get(dp.url("/api/health"))
        .header("x-request-id", "abc-123.trace")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "abc-123.trace");

    let replaced = c
        .get(dp.url("/api/health"))
        .header("x-request-id", "<script>alert(1)</script>")
        .send()
        .await
        .unwrap();
    let id = replaced.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(id, "<script>alert(1)</script>");
    assert_eq!(id.len(), 36, "a generated UUID, got {id}");

    let generated = c.get(dp.url("/api/health")).send().await.unwrap();
    assert_ne!(
        generated.headers()["x-request-id"],
        replaced.headers()["x-request-id"]
    );
}

#[tokio::test]
async fn liveness_readiness_and_detailed_health_answer_on_sqlite() {
    let dp = start(&[]);
    let live = get(&dp, "/api/health").await;
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(json(live).await["status"], "ok");

    let ready = get(&dp, "/api/health/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(json(ready).await["status"], "ready");

    let detailed = json(get(&dp, "/api/health/detailed").await).await;
    assert_eq!(detailed["status"], "healthy");
    assert_eq!(detailed["checks"]["database"]["backend"], "sqlite");
    assert_eq!(detailed["checks"]["database"]["status"], "healthy");
    assert!(
        detailed["checks"]["database"]["latency_ms"]
            .as_f64()
            .unwrap()
            >= 0.0
    );
    assert_eq!(detailed["checks"]["cache"]["backend"], "memory");
    // The sampler's first reading lands a moment after start.
    eventually(
        std::time::Duration::from_secs(5),
        "a memory sample",
        || async {
            let d = json(get(&dp, "/api/health/detailed").await).await;
            d["system"]["memory_percent"].as_f64().unwrap() > 0.0
        },
    )
    .await;
}

#[tokio::test]
async fn metrics_carry_the_seed_names_and_count_requests_by_route_template() {
    let dp = start(&[]);
    for _ in 0..3 {
        get(&dp, "/api/health").await;
    }
    get(&dp, "/api/nothing/8c1d3f").await;
    get(&dp, "/api/emails/5e0f9a").await;

    let text = metrics_text(&dp).await;
    for name in [
        "emails_sent_total",
        "ai_generations_total",
        "system_cpu_percent",
        "system_memory_percent",
        "cache_hit_rate",
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(text.contains(&format!("\n{name}")), "{name} missing");
    }
    let health = r#"http_requests_total{method="GET",route="/api/health",status="200"}"#;
    assert_eq!(metric(&dp, health).await, Some(3.0));
    get(&dp, "/api/health").await;
    assert_eq!(metric(&dp, health).await, Some(4.0));

    // A path no route matched is counted under one label, never its raw path.
    let unmatched = r#"http_requests_total{method="GET",route="unmatched",status="404"}"#;
    assert_eq!(metric(&dp, unmatched).await, Some(1.0));
    // A templated route is counted under its template, whatever the id.
    let email = r#"http_requests_total{method="GET",route="/api/emails/{id}",status="404"}"#;
    assert_eq!(metric(&dp, email).await, Some(1.0));
    assert!(!text.contains("8c1d3f") && !text.contains("5e0f9a"));
    assert!(
        metric(
            &dp,
            r#"http_request_duration_seconds_count{method="GET",route="/api/health"}"#
        )
        .await
        .is_some_and(|n| n >= 4.0)
    );
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_that_answer() {
    let dp = start(&[]);
    let doc = json(get(&dp, "/api/openapi.json").await).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    documented.sort();
    assert_eq!(
        documented,
        [
            ("DELETE", "/api/keys/{id}"),
            ("DELETE", "/api/suppressions/{address}"),
            ("GET", "/api/audit"),
            ("GET", "/api/auth/me"),
            ("GET", "/api/dkim"),
            ("GET", "/api/emails/{id}"),
            ("GET", "/api/generations/{id}"),
            ("GET", "/api/health"),
            ("GET", "/api/health/detailed"),
            ("GET", "/api/health/ready"),
            ("GET", "/api/keys"),
            ("GET", "/api/openapi.json"),
            ("GET", "/api/stats"),
            ("GET", "/api/suppressions"),
            ("GET", "/api/usage"),
            ("GET", "/api/users"),
            ("PATCH", "/api/users/{id}"),
            ("POST", "/api/auth/login"),
            ("POST", "/api/auth/logout"),
            ("POST", "/api/emails/{id}/retry"),
            ("POST", "/api/generate-content"),
            ("POST", "/api/keys"),
            ("POST", "/api/send-email"),
            ("POST", "/api/suppressions"),
            ("POST", "/api/users"),
            ("POST", "/v1/chat/completions"),
            ("PUT", "/api/keys/{id}/budget"),
        ]
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
    );
    // Signed in, so the guard lets every request reach its handler; logout
    // last, since it ends the session.
    let admin = authed(&dp).await;
    documented.sort_by_key(|(_, path)| path == "/api/auth/logout");
    for (method, path) in &documented {
        let response = admin
            .request(
                method.parse().unwrap(),
                dp.url(&path.replace("{id}", "some-id")),
            )
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        // A 404 from a handler (no such email) is fine; the router's is not.
        assert!(
            status != StatusCode::METHOD_NOT_ALLOWED && !body.contains("no such route"),
            "{method} {path} is documented but the router does not know it: {status} {body}"
        );
    }
}
