//! HTTPS for real: the data plane serves a certificate issued by a CA made
//! in the test, to clients that trust that CA and nothing else; old
//! protocols and plain HTTP on the TLS port are refused; replaced files are
//! served from the next connection on by the same process; a broken pair is
//! reported, never fatal.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::{binary, start};
use testkit::{
    DataPlane, TempDir,
    certs::{Issued, TestCa},
};

/// How long a replaced file may take to be served: TLS_RELOAD_SECS=1 here.
const RELOAD_DEADLINE: Duration = Duration::from_secs(20);

struct Files {
    dir: TempDir,
}

impl Files {
    fn new(cert: &str, key: &str) -> Files {
        let files = Files {
            dir: TempDir::new("tls").unwrap(),
        };
        files.replace(cert, key);
        files
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    /// Written beside and renamed over, as the kubelet swaps a Secret's
    /// files: a reader never sees half a file.
    fn replace(&self, cert: &str, key: &str) {
        for (path, text) in [(self.cert(), cert), (self.key(), key)] {
            let tmp = path.with_extension("new");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TLS_CERT_FILE", self.cert().display().to_string()),
            ("TLS_KEY_FILE", self.key().display().to_string()),
            ("TLS_RELOAD_SECS", "1".to_owned()),
        ]
    }
}

fn start_tls(files: &Files) -> DataPlane {
    let env = files.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    start(&env)
}

/// A client that trusts `ca` and no other authority.
fn trusting(ca: &str) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .tls_info(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A client that accepts any certificate, to read health reports from a
/// server whose certificate nobody can trust.
fn insecure() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The certificate the server presents to a new connection, if a client
/// trusting `ca` accepts it.
async fn trusted_certificate(dp: &DataPlane, ca: &str) -> Option<Vec<u8>> {
    let r = trusting(ca).get(dp.url("/api/health")).send().await.ok()?;
    assert_eq!(r.status(), 200);
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .map(<[u8]>::to_vec)
}

async fn served_certificate(dp: &DataPlane, ca: &str) -> Vec<u8> {
    trusted_certificate(dp, ca)
        .await
        .expect("a certificate the client trusts")
}

async fn wait_for_certificate(dp: &DataPlane, ca: &str, expected: &Issued) {
    let deadline = Instant::now() + RELOAD_DEADLINE;
    while trusted_certificate(dp, ca).await.as_ref() != Some(&expected.der) {
        assert!(
            Instant::now() < deadline,
            "the replaced certificate was not served within {RELOAD_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Status and body of a health route, read with [`insecure`].
/// `GET path` as the administrator (the detailed report needs the
/// `metrics` scope), trusting any certificate.
async fn get_health(dp: &DataPlane, path: &str) -> (u16, serde_json::Value) {
    let login = insecure()
        .post(dp.url("/api/auth/login"))
        .json(&serde_json::json!({
            "username": testkit::ADMIN_USERNAME,
            "password": testkit::ADMIN_PASSWORD,
        }))
        .send()
        .await
        .unwrap();
    let token: serde_json::Value = login.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let r = insecure()
        .get(dp.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap();
    (code, body)
}

/// Sends `bytes` on a new TCP connection and returns what comes back until
/// the server closes it (or 5 s pass).
fn raw_exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

/// A TLS 1.1 ClientHello: client_version 3.2, no supported_versions
/// extension, the suites and signature algorithms a server would otherwise
/// accept (so that the version is the only thing wrong). A server that only
/// speaks 1.2 and 1.3 must answer with a fatal `protocol_version` alert.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend([0x5a; 32]); // random
    body.push(0); // no session id
    // ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-ECDSA-AES128-CBC-SHA
    body.extend([0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x09]);
    body.extend([0x01, 0x00]); // null compression
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    let extension = [
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01,
    ];
    body.extend((extension.len() as u16).to_be_bytes());
    body.extend(extension);
    let mut handshake = vec![0x01, 0x00, 0x00, body.len() as u8];
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, handshake.len() as u8];
    record.extend(handshake);
    record
}

#[tokio::test]
async fn https_from_a_private_ca_with_hsts_and_nothing_older_than_tls_1_2() {
    let ca = TestCa::new("SecureVault test CA").unwrap();
    let issued = ca.issue(&["localhost", "127.0.0.1"]).unwrap();
    let files = Files::new(&issued.cert_pem, &issued.key_pem);
    let dp = start_tls(&files);
    assert!(dp.url("/").starts_with("https://"), "{}", dp.url("/"));

    // Verified against our CA only, with HSTS on the answer.
    let r = trusting(&ca.pem)
        .get(dp.url("/api/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");

    // A client trusting another CA refuses the server.
    let stranger = TestCa::new("someone else").unwrap();
    let refused = trusting(&stranger.pem)
        .get(dp.url("/api/health"))
        .send()
        .await;
    assert!(refused.is_err(), "a client of another CA must not connect");

    // TLS 1.2 still works for older clients.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls12 = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap()])
        .tls_version_max(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert_eq!(
        tls12
            .get(dp.url("/api/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // HTTP/2 by ALPN, as the kubelet's probes and most clients prefer it
    // (curl, trusting the same CA only).
    let ca_file = TempDir::new("ca").unwrap();
    let ca_path = ca_file.path().join("ca.crt");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--http2", "--cacert"])
        .arg(&ca_path)
        .args(["-o", "/dev/null", "-w", "%{http_version} %{http_code}"])
        .arg(dp.url("/api/health"))
        .output()
        .expect("curl (make test-deps installs it)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // TLS 1.1: a fatal protocol_version alert (record 0x15, level 2, 70).
    let answer = raw_exchange(dp.addr(), &tls11_client_hello());
    assert!(
        answer.len() >= 7 && answer[0] == 0x15 && answer[5] == 2 && answer[6] == 70,
        "a TLS 1.1 hello must get a protocol_version alert, got {answer:02x?}"
    );

    // Plain HTTP on the TLS port gets no HTTP answer.
    let answer = raw_exchange(
        dp.addr(),
        b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP must not be answered: {}",
        String::from_utf8_lossy(&answer)
    );

    // None of that hurt the server.
    assert_eq!(served_certificate(&dp, &ca.pem).await, issued.der);
}

#[tokio::test]
async fn replaced_files_are_served_to_the_next_connection_by_the_same_process() {
    let ca = TestCa::new("SecureVault test CA").unwrap();
    let first = ca.issue(&["localhost", "127.0.0.1"]).unwrap();
    let files = Files::new(&first.cert_pem, &first.key_pem);
    let mut dp = start_tls(&files);
    let pid = dp.process().pid();
    assert_eq!(served_certificate(&dp, &ca.pem).await, first.der);

    // A connection opened before the renewal keeps working after it.
    let kept = trusting(&ca.pem);
    assert_eq!(
        kept.get(dp.url("/api/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Renewal, as cert-manager does it: a new certificate and key.
    let renewed = ca.issue(&["localhost", "127.0.0.1"]).unwrap();
    files.replace(&renewed.cert_pem, &renewed.key_pem);
    wait_for_certificate(&dp, &ca.pem, &renewed).await;
    assert_eq!(dp.process().pid(), pid, "served without a restart");
    assert_eq!(
        kept.get(dp.url("/api/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (code, health) = get_health(&dp, "/api/health/detailed").await;
    assert_eq!(code, 200);
    assert_eq!(health["checks"]["tls"]["status"], "healthy", "{health}");

    // A new certificate with the old key: refused, reported, and the
    // renewed certificate stays in service.
    let next = ca.issue(&["localhost", "127.0.0.1"]).unwrap();
    files.replace(&next.cert_pem, &renewed.key_pem);
    let deadline = Instant::now() + RELOAD_DEADLINE;
    let health = loop {
        let (code, health) = get_health(&dp, "/api/health/detailed").await;
        if health["checks"]["tls"]["status"] == "unhealthy" {
            assert_eq!(code, 200, "a refused renewal degrades, it does not fail");
            break health;
        }
        assert!(Instant::now() < deadline, "the mismatch was not reported");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(health["status"], "degraded");
    let error = health["checks"]["tls"]["error"].as_str().unwrap();
    assert!(
        error.contains("does not match the certificate")
            && error.contains("previous certificate is still served")
            && error.contains("TLS_CERT_FILE="),
        "{error}"
    );
    assert_eq!(served_certificate(&dp, &ca.pem).await, renewed.der);
    let (ready, _) = get_health(&dp, "/api/health/ready").await;
    assert_eq!(ready, 200, "still serving a good certificate");

    // Fixed files are picked up again.
    let fixed = ca.issue(&["localhost", "127.0.0.1"]).unwrap();
    files.replace(&fixed.cert_pem, &fixed.key_pem);
    wait_for_certificate(&dp, &ca.pem, &fixed).await;
    assert_eq!(dp.process().pid(), pid);
}

#[tokio::test]
async fn a_key_that_does_not_match_is_reported_and_the_pod_is_not_ready() {
    let ca = TestCa::new("SecureVault test CA").unwrap();
    let one = ca.issue(&["localhost", "127.0.0.1"]).unwrap();
    let other = ca.issue(&["localhost", "127.0.0.1"]).unwrap();
    let files = Files::new(&one.cert_pem, &other.key_pem);
    let dp = start_tls(&files);

    let (code, health) = get_health(&dp, "/api/health/detailed").await;
    assert_eq!(code, 503, "{health}");
    assert_eq!(health["checks"]["tls"]["critical"], true);
    let error = health["checks"]["tls"]["error"].as_str().unwrap();
    assert!(error.contains("does not match the certificate"), "{error}");

    let (ready, body) = get_health(&dp, "/api/health/ready").await;
    assert_eq!(ready, 503);
    let reason = body["reason"].clone();
    assert!(
        reason
            .as_str()
            .unwrap()
            .starts_with("no usable TLS certificate: the private key does not match"),
        "{reason}"
    );
    // What it serves meanwhile is trusted by nobody.
    assert!(
        trusting(&ca.pem)
            .get(dp.url("/api/health"))
            .send()
            .await
            .is_err()
    );

    // Once the right key arrives, the pod serves it and becomes ready.
    files.replace(&one.cert_pem, &one.key_pem);
    wait_for_certificate(&dp, &ca.pem, &one).await;
    let (ready, _) = get_health(&dp, "/api/health/ready").await;
    assert_eq!(ready, 200);
}

#[tokio::test]
async fn an_expired_certificate_is_served_and_reported() {
    let ca = TestCa::new("SecureVault test CA").unwrap();
    let expired = ca.issue_expired(&["localhost", "127.0.0.1"]).unwrap();
    let files = Files::new(&expired.cert_pem, &expired.key_pem);
    let dp = start_tls(&files);

    let (code, health) = get_health(&dp, "/api/health/detailed").await;
    assert_eq!(code, 200, "{health}");
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["checks"]["tls"]["critical"], false);
    let error = health["checks"]["tls"]["error"].as_str().unwrap();
    assert!(
        error.contains("the certificate expired on 2021-01-01T00:00:00Z"),
        "{error}"
    );
    // Clients that check dates refuse it, which is why it is reported.
    assert!(
        trusting(&ca.pem)
            .get(dp.url("/api/health"))
            .send()
            .await
            .is_err()
    );
}

#[test]
fn half_a_tls_configuration_or_a_missing_file_stops_the_process_naming_it() {
    let dir = TempDir::new("tls-config").unwrap();
    let run = |env: &[(&str, &str)]| {
        let mut cmd = DataPlane::command(binary(), dir.path());
        cmd.arg("serve");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = run(&[("TLS_CERT_FILE", "/etc/tls/tls.crt")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid TLS_KEY_FILE: required with TLS_CERT_FILE=/etc/tls/tls.crt"),
        "{stderr}"
    );

    let missing = Path::new("/nonexistent/tls.crt");
    let out = run(&[
        ("TLS_CERT_FILE", missing.to_str().unwrap()),
        ("TLS_KEY_FILE", "/nonexistent/tls.key"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "invalid TLS_CERT_FILE=\"/nonexistent/tls.crt\": no such file: expected a PEM certificate chain"
        ),
        "{stderr}"
    );
}
