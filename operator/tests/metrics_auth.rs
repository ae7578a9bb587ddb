//! The operator's own `/metrics` on the real control plane: only a bearer
//! token whose user may `get` the non-resource URL `/metrics` reads it (the
//! API server's TokenReview and SubjectAccessReview decide), through the
//! chart's `<fullname>-metrics-reader` ClusterRole; the probes stay
//! anonymous; a setting that would open the metrics stops the start.

// Test code: a failure is a panic with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{process::Command, time::Duration};

use common::*;

#[tokio::test]
async fn metrics_need_a_token_allowed_to_get_them_and_the_probes_none() {
    let w = World::new("metrics-auth").await;
    // The chart's metrics-reader ClusterRole, as a release named after the
    // namespace, bound to one ServiceAccount; another has no rights.
    let rbac = helm(&[
        "template",
        w.ns(),
        repo_root()
            .join("charts/securevault-operator")
            .to_str()
            .unwrap(),
        "--namespace",
        w.ns(),
        "--show-only",
        "templates/metrics-rbac.yaml",
    ]);
    let _cleanup = ClusterScoped {
        cluster: w.cluster,
        instance: w.ns().to_owned(),
    };
    w.cluster
        .kubectl_stdin(&["apply", "-f", "-"], &rbac)
        .unwrap();
    let reader_role = format!("{}-securevault-operator-metrics-reader", w.ns());
    bind_cluster_role(w.cluster, w.ns(), "reader", &reader_role);
    for account in ["reader", "nobody"] {
        w.kubectl(&["create", "serviceaccount", account]).unwrap();
    }
    // The binding in force before the first scrape: the operator keeps a
    // refusal for 30 s.
    let may_read = |account: &str| {
        w.cluster
            .kubectl(&[
                "auth",
                "can-i",
                "get",
                "/metrics",
                &format!("--as=system:serviceaccount:{}:{account}", w.ns()),
            ])
            .is_ok_and(|out| out.trim() == "yes")
    };
    eventually(
        Duration::from_secs(20),
        "the metrics-reader binding in force",
        || async { Some(may_read("reader")) },
        |yes| *yes,
    )
    .await;
    assert!(!may_read("nobody"));
    let token = |account: &str| {
        w.kubectl(&["create", "token", account, "--duration=10m"])
            .unwrap()
            .trim()
            .to_owned()
    };
    let (reader, nobody) = (token("reader"), token("nobody"));

    // On loopback, as every other test runs it, but with the check on.
    let operator = w.operator_with("metrics-auth", &[("METRICS_AUTH", "on")]);
    let addr = metrics_addr(&operator.process);

    let (status, _) = http_get_as(&addr, "/metrics", None);
    assert_eq!(status, 401, "no token");
    let (status, _) = http_get_as(&addr, "/metrics", Some("not-a-token"));
    assert_eq!(status, 401, "a token the API server does not know");
    let (status, _) = http_get_as(&addr, "/metrics", Some(&nobody));
    assert_eq!(status, 403, "a ServiceAccount without the right");
    let (status, body) = http_get_as(&addr, "/metrics", Some(&reader));
    assert_eq!(status, 200, "bound to metrics-reader: {body}");
    assert!(body.contains("securevault_reconciles_total"), "{body}");
    // Again, from the cache this time: the same answers.
    assert_eq!(http_get_as(&addr, "/metrics", Some(&reader)).0, 200);
    assert_eq!(http_get_as(&addr, "/metrics", Some(&nobody)).0, 403);
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(http_get_as(&addr, probe, None), (200, "ok".to_owned()));
    }

    let log = operator.process.output_lines().join("\n");
    assert!(
        !log.contains(&reader) && !log.contains(&nobody),
        "a token reached the log:\n{log}"
    );
}

/// A wrong `METRICS_AUTH` stops the operator before it does anything, with
/// a message naming the variable (no cluster needed: it never gets that far).
#[test]
fn a_wrong_metrics_auth_stops_the_start_naming_the_variable() {
    for (value, addr, said) in [
        ("yes", "127.0.0.1:0", "METRICS_AUTH"),
        // Anonymous metrics on an address other hosts reach: refused.
        ("off", "0.0.0.0:0", "METRICS_AUTH=off"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_operator"))
            .arg("run")
            .env("METRICS_AUTH", value)
            .env("METRICS_ADDR", addr)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "METRICS_AUTH={value} started");
        assert!(text.contains(said), "METRICS_AUTH={value}: {text}");
    }
}
