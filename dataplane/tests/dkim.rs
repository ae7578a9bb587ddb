//! DKIM: what mailpit (a real SMTP server) received is verified by dkimpy
//! (PyPI), an implementation independent of ours, against the TXT records
//! `GET /api/dkim` says to publish. The keys are made by openssl, as the
//! docs tell an administrator to make them.

// Test support below the tests: a failure is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{collections::BTreeMap, path::Path, process::Command, time::Duration};

use common::*;
use serde_json::{Value, json};
use testkit::bins;

const DOMAIN: &str = "securevault.test";

/// Writes a key named after its record into `dir`, as the docs say to make
/// one: `openssl genpkey` (PKCS#8, RSA or Ed25519) or `openssl genrsa
/// -traditional` (PKCS#1).
fn make_key(dir: &Path, selector: &str, domain: &str, kind: &str) {
    let file = dir.join(format!("{selector}._domainkey.{domain}"));
    let file = file.to_str().unwrap();
    let args: Vec<&str> = match kind {
        "rsa-pkcs1" => vec!["genrsa", "-traditional", "-out", file, "2048"],
        "rsa" => vec![
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            file,
        ],
        "ed25519" => vec!["genpkey", "-algorithm", "ed25519", "-out", file],
        other => panic!("no key kind {other}"),
    };
    let out = Command::new("openssl").args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start_signing(mailpit: &Mailpit, keys: &Path, extra: &[(&str, &str)]) -> DataPlane {
    let mut env = vec![("DKIM_KEYS_DIR", keys.to_str().unwrap())];
    env.extend_from_slice(extra);
    start_with_smtp(mailpit, &env)
}

/// Sends one email and returns its source as mailpit received it.
async fn send_and_receive(dp: &DataPlane, mailpit: &Mailpit, subject: &str) -> String {
    let before = mailpit.message_count().unwrap();
    let r = authed(dp)
        .await
        .post(dp.url("/api/send-email"))
        .json(&json!({
            "to": ["Ada <ada@example.com>"],
            "cc": ["bob@example.com"],
            "subject": subject,
            "text": "Hello  Ada,\n\tyour order has shipped.   \n\n",
            "html": "<p>Hello <b>Ada</b></p>",
            "headers": {"X-Order": "  1234  "},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    wait_for("the email in mailpit", Duration::from_secs(30), || async {
        let n = mailpit.message_count().unwrap();
        if n > before {
            Ok(())
        } else {
            Err(format!("{n} messages"))
        }
    })
    .await;
    let newest = &mailpit.messages().unwrap()[0];
    assert_eq!(newest.subject, subject);
    mailpit.raw(&newest.id).unwrap()
}

/// `GET /api/dkim` as the administrator.
async fn dkim_report(dp: &DataPlane) -> Value {
    let r = get(dp, "/api/dkim").await;
    assert_eq!(r.status(), 200);
    json(r).await
}

/// The records as "DNS": name -> TXT value.
fn dns(report: &Value) -> BTreeMap<String, String> {
    report["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// dkimpy's verdict on each signature of `message`: (selector, algorithm, verified).
fn verify(message: &str, dns: &BTreeMap<String, String>) -> Vec<(String, String, bool)> {
    let python = bins::built_by_script(
        "tests/setup/python-venv.sh",
        &["dkimpy==1.1.8", "pynacl==1.6.2"],
    )
    .unwrap();
    let script = bins::workspace_script("tests/email/dkim-verify.py").unwrap();
    let dir = TempDir::new("dkim-verify").unwrap();
    let (message_file, dns_file) = (dir.path().join("message.eml"), dir.path().join("dns.json"));
    std::fs::write(&message_file, message).unwrap();
    std::fs::write(&dns_file, serde_json::to_string(dns).unwrap()).unwrap();
    let out = Command::new(python)
        .arg(script)
        .arg(&message_file)
        .arg(&dns_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dkim-verify.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    results
        .iter()
        .map(|r| {
            assert_eq!(r["domain"], DOMAIN);
            (
                r["selector"].as_str().unwrap().to_owned(),
                r["algorithm"].as_str().unwrap().to_owned(),
                r["verified"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// What the process printed: its log (stdout) and stderr.
fn output(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn verdicts(list: &[(&str, &str, bool)]) -> Vec<(String, String, bool)> {
    list.iter()
        .map(|(s, a, v)| ((*s).to_owned(), (*a).to_owned(), *v))
        .collect()
}

#[tokio::test]
async fn rsa_and_ed25519_signatures_verify_and_survive_a_rotation() {
    let mailpit = Mailpit::start().unwrap();
    let keys = TempDir::new("dkim-keys").unwrap();
    make_key(keys.path(), "rsa2026", DOMAIN, "rsa");
    make_key(keys.path(), "ed2026", DOMAIN, "ed25519");
    // A key of another domain is published but does not sign.
    make_key(keys.path(), "other", "example.org", "ed25519");

    let dp = start_signing(&mailpit, keys.path(), &[]);
    let report = dkim_report(&dp).await;
    assert_eq!(report["domain"], DOMAIN);
    assert_eq!(report["signed"], true);
    let records = report["records"].as_array().unwrap();
    assert_eq!(records.len(), 3, "{report}");
    let by_name = |name: &str| records.iter().find(|r| r["name"] == name).unwrap().clone();
    let rsa = by_name("rsa2026._domainkey.securevault.test");
    assert!(
        rsa["value"]
            .as_str()
            .unwrap()
            .starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"),
        "{rsa}"
    );
    assert_eq!(rsa["algorithm"], "rsa-sha256");
    assert_eq!(rsa["signs"], true);
    // The RSA value is longer than one TXT string may be: the zone line cuts it.
    assert!(rsa["zone"].as_str().unwrap().contains("\" \""), "{rsa}");
    assert_eq!(by_name("other._domainkey.example.org")["signs"], false);
    // Never the private key.
    assert!(!report.to_string().contains("PRIVATE"), "{report}");

    let mut published = dns(&report);
    let first = send_and_receive(&dp, &mailpit, "Your order").await;
    assert_eq!(
        verify(&first, &published),
        verdicts(&[
            ("ed2026", "ed25519-sha256", true),
            ("rsa2026", "rsa-sha256", true)
        ]),
        "{first}"
    );
    // The verifier is not vacuous: a changed body or header breaks both.
    let tampered = first.replace("shipped", "shopped");
    assert!(verify(&tampered, &published).iter().all(|(_, _, ok)| !ok));
    let tampered = first.replacen("Subject: Your order", "Subject: Your refund", 1);
    assert_ne!(tampered, first);
    assert!(verify(&tampered, &published).iter().all(|(_, _, ok)| !ok));
    // So does a second From added on the way (From is signed twice).
    let added = first.replacen("From: ", "From: Mallory <m@evil.test>\r\nFrom: ", 1);
    assert!(verify(&added, &published).iter().all(|(_, _, ok)| !ok));
    drop(dp);

    // Rotation, step 1: a new selector beside the old ones; all three sign.
    make_key(keys.path(), "rsa2027", DOMAIN, "rsa-pkcs1");
    let dp = start_signing(&mailpit, keys.path(), &[]);
    published.extend(dns(&dkim_report(&dp).await));
    let during = send_and_receive(&dp, &mailpit, "During the rotation").await;
    assert_eq!(
        verify(&during, &published),
        verdicts(&[
            ("ed2026", "ed25519-sha256", true),
            ("rsa2026", "rsa-sha256", true),
            ("rsa2027", "rsa-sha256", true),
        ])
    );
    drop(dp);

    // Step 2: the old RSA key removed; what was sent before still verifies
    // while its record stays published.
    std::fs::remove_file(keys.path().join("rsa2026._domainkey.securevault.test")).unwrap();
    let dp = start_signing(&mailpit, keys.path(), &[]);
    let report = dkim_report(&dp).await;
    assert!(!dns(&report).contains_key("rsa2026._domainkey.securevault.test"));
    let after = send_and_receive(&dp, &mailpit, "After the rotation").await;
    assert_eq!(
        verify(&after, &published),
        verdicts(&[
            ("ed2026", "ed25519-sha256", true),
            ("rsa2027", "rsa-sha256", true)
        ])
    );
    assert_eq!(
        verify(&first, &published)[1],
        ("rsa2026".into(), "rsa-sha256".into(), true)
    );
    assert_eq!(metric(&dp, "emails_unsigned_total").await, Some(0.0));
}

#[tokio::test]
async fn without_a_key_for_the_sender_domain_mail_is_refused_unless_allowed_and_counted() {
    let mailpit = Mailpit::start().unwrap();
    let keys = TempDir::new("dkim-keys").unwrap();
    make_key(keys.path(), "other", "example.org", "ed25519");
    let port = mailpit.smtp_port().to_string();
    let dir = keys.path().to_str().unwrap();
    let smtp = [
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", port.as_str()),
        ("SMTP_TLS", "none"),
        ("SMTP_FROM", "noreply@securevault.test"),
        ("DKIM_KEYS_DIR", dir),
    ];

    // Refused at start, saying what to add or set.
    let out = run(&smtp, &["serve"]);
    let stderr = output(&out);
    assert!(!out.status.success(), "started without a key: {stderr}");
    assert!(!stderr.contains("store ready"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "DKIM_KEYS_DIR {dir} has no key for securevault.test, the domain of SMTP_FROM: add <selector>._domainkey.securevault.test, or set DKIM_ALLOW_UNSIGNED=true"
        )),
        "{stderr}"
    );
    // A file that is not a named key is refused too, naming it.
    std::fs::write(keys.path().join("dkim.pem"), "x").unwrap();
    let out = run(
        &[&smtp[..], &[("DKIM_ALLOW_UNSIGNED", "true")]].concat(),
        &["serve"],
    );
    let stderr = output(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        // (The log is JSON: the file name's quotes are escaped.)
        stderr.contains("dkim.pem")
            && stderr.contains("must be named <selector>._domainkey.<domain>"),
        "{stderr}"
    );
    std::fs::remove_file(keys.path().join("dkim.pem")).unwrap();
    // Refusing unsigned mail with no keys at all cannot work either.
    let out = run(
        &[&smtp[..4], &[("DKIM_ALLOW_UNSIGNED", "false")]].concat(),
        &["serve"],
    );
    let stderr = output(&out);
    assert!(stderr.contains("DKIM_ALLOW_UNSIGNED"), "{stderr}");
    assert!(stderr.contains("set DKIM_KEYS_DIR"), "{stderr}");

    // Allowed: it goes unsigned, and the metric counts it.
    let dp = start_signing(&mailpit, keys.path(), &[("DKIM_ALLOW_UNSIGNED", "true")]);
    let report = dkim_report(&dp).await;
    assert_eq!(report["signed"], false, "{report}");
    let message = send_and_receive(&dp, &mailpit, "Unsigned").await;
    assert!(!message.contains("DKIM-Signature"), "{message}");
    wait_for(
        "emails_unsigned_total 1",
        Duration::from_secs(10),
        || async {
            match metric(&dp, "emails_unsigned_total").await {
                Some(1.0) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // A member may not read the records.
    let member = member(&dp, "ops").await;
    let r = member.get(dp.url("/api/dkim")).send().await.unwrap();
    assert_eq!(r.status(), 403);
}
