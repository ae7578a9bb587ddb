//! The contract between operator and data plane: the environment the operator
//! renders for a SecureVault (ConfigMap values and the referenced Secrets'
//! values) starts the real data-plane binary, which becomes healthy against a
//! real PostgreSQL, Redis, SMTP server and model server (llama.cpp), and
//! serves HTTPS from the TLS Secret's files where the pod mounts them.

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::*;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Secret},
};
use testkit::{
    DataPlane, LlamaServer, Mailpit, Postgres, Redis, TempDir, certs::TestCa, workspace_binary,
};

#[tokio::test]
async fn the_rendered_environment_starts_a_ready_data_plane() {
    let pg = Postgres::start().unwrap();
    let db_url = pg.create_database("contract").unwrap();
    let redis = Redis::start().unwrap();
    let mailpit = Mailpit::start().unwrap();
    let llama = LlamaServer::start().unwrap();

    let w = World::new("contract").await;
    let op = w.operator("solo");
    op.wait_leader();
    w.kubectl(&[
        "create",
        "secret",
        "generic",
        "mail-credentials",
        &format!("--from-literal=database-url={db_url}"),
        &format!("--from-literal=redis-url={}", redis.url()),
        "--from-literal=smtp-username=securevault",
        "--from-literal=smtp-password=s3cret",
        "--from-literal=openai-api-key=sk-test",
        "--from-literal=webhook-url=https://hooks.example.com/T0/B0",
        "--from-literal=webhook-secret=whsec_c2VjdXJldmF1bHQtdGVzdC13ZWJob29rLWtleS0zMmI=",
    ])
    .unwrap();
    let ca = TestCa::new("contract CA").unwrap();
    let issued = ca.issue(&["127.0.0.1"]).unwrap();
    let tls_dir = TempDir::new("contract-tls").unwrap();
    let (cert_path, key_path) = (
        tls_dir.path().join("tls.crt"),
        tls_dir.path().join("tls.key"),
    );
    std::fs::write(&cert_path, &issued.cert_pem).unwrap();
    std::fs::write(&key_path, &issued.key_pem).unwrap();
    w.kubectl(&[
        "create",
        "secret",
        "tls",
        "mail-tls",
        &format!("--cert={}", cert_path.display()),
        &format!("--key={}", key_path.display()),
    ])
    .unwrap();
    w.apply(&vault(
        "mail",
        &format!("  version: 0.1.0
  tls: {{secretName: mail-tls}}
  replicas: 2
  logLevel: debug
  database:
    urlSecretRef: {{name: mail-credentials, key: database-url}}
  redis:
    urlSecretRef: {{name: mail-credentials, key: redis-url}}
  smtp:
    host: 127.0.0.1
    port: {smtp_port}
    tls: none
    from: noreply@example.com
    credentialsSecretRef: {{name: mail-credentials, usernameKey: smtp-username, passwordKey: smtp-password}}
  ai:
    baseUrl: {ai_url}
    apiKeySecretRef: {{name: mail-credentials, key: openai-api-key}}
  webhook:
    urlSecretRef: {{name: mail-credentials, key: webhook-url}}
    signingSecretRef: {{name: mail-credentials, key: webhook-secret}}
  auth:
    sessionTtlSeconds: 1800
    trustedProxies: [10.0.0.0/8, 192.168.1.7]
    login: {{maxFailures: 10, windowSeconds: 600, blockSeconds: 900}}
  rateLimits: {{api: 120/99h, email: 99999/99999s, ai: 5/9999m, onRedisFailure: deny}}
",
            smtp_port = mailpit.smtp_port(),
            ai_url = llama.base_url(),
        ),
    ))
    .unwrap();
    wait_ready(&w, "mail").await;

    // The container's environment exactly as the kubelet would assemble it.
    let deployment = w.api::<Deployment>().get("mail").await.unwrap();
    let container = deployment.spec.template.spec.clone().unwrap().containers[0].clone();
    let mut env = BTreeMap::new();
    for source in container.env_from.unwrap_or_default() {
        let name = source.config_map_ref.unwrap().name;
        let cm = w.api::<ConfigMap>().get(&name).await.unwrap();
        env.extend(cm.data.unwrap_or_default());
    }
    for var in container.env.unwrap_or_default() {
        let value = match (var.value, var.value_from) {
            (Some(v), _) => v,
            (None, Some(from)) => {
                let r = from.secret_key_ref.unwrap();
                let secret = w.api::<Secret>().get(&r.name).await.unwrap();
                String::from_utf8(secret.data.unwrap()[&r.key].0.clone()).unwrap()
            }
            (None, None) => String::new(),
        };
        env.insert(var.name, value);
    }
    assert_eq!(env["SECUREVAULT_ENV"], "production");

    // Every name the operator renders is a setting the data plane knows.
    let binary = workspace_binary("dataplane")
        .expect("build the data plane first: cargo build -p dataplane");
    let help = std::process::Command::new(&binary)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout)
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for name in env.keys() {
        assert!(
            help.contains(&format!("[env: {name}")),
            "{name} is not a data-plane setting"
        );
    }

    // The TLS Secret's keys, where the Deployment mounts them: the files
    // the pod would see are the ones the Secret was made from.
    let pod = deployment.spec.template.spec.clone().unwrap();
    let mount = container
        .volume_mounts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.name == "tls")
        .expect("the TLS Secret mounted");
    let volume = pod
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == "tls")
        .and_then(|v| v.secret)
        .unwrap();
    assert_eq!(volume.secret_name.as_deref(), Some("mail-tls"));
    for (var, file) in [("TLS_CERT_FILE", &cert_path), ("TLS_KEY_FILE", &key_path)] {
        let key = file.file_name().unwrap().to_str().unwrap();
        assert_eq!(env[var], format!("{}/{key}", mount.mount_path));
        env.insert(var.to_owned(), file.display().to_string());
    }

    // Only the pod's own port and volume path differ on a test machine.
    env.remove("LISTEN_ADDR");
    env.remove("METRICS_ADDR");
    env.remove("DATA_DIR");
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let dp = DataPlane::start(&binary, &vars).unwrap();
    // reqwest is built without a default TLS provider (the data plane picks ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    assert!(dp.url("/").starts_with("https://"), "{}", dp.url("/"));
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let ready = client
        .get(dp.url("/api/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    // The detailed report is for administrators (and `metrics` keys).
    let password = env
        .get("ADMIN_PASSWORD")
        .map_or(testkit::ADMIN_PASSWORD, String::as_str);
    let login: serde_json::Value = client
        .post(dp.url("/api/auth/login"))
        .json(&serde_json::json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let detailed: serde_json::Value = client
        .get(dp.url("/api/health/detailed"))
        .bearer_auth(login["token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detailed["checks"]["database"]["backend"], "postgres");
    assert_eq!(detailed["checks"]["cache"]["backend"], "redis");
    assert_eq!(detailed["checks"]["smtp"]["status"], "healthy");
    assert_eq!(detailed["checks"]["ai"]["status"], "healthy");
    assert_eq!(detailed["checks"]["tls"]["status"], "healthy");
    assert_eq!(detailed["status"], "healthy", "{detailed}");
}
