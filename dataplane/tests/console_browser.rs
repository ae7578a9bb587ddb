//! The web console in a real browser, as a person uses it.
//!
//! The console is server-rendered HTML under a strict
//! `Content-Security-Policy` (`default-src 'self'`), so the HTTP-level tests
//! cannot tell whether it works: a form whose button does nothing, a script
//! the policy refuses, a streamed answer that never shows, or a page a screen
//! reader cannot follow all answer 200. Only a browser sees those. This test
//! drives Debian's Chromium through playwright-core
//! (`tests/console/console.spec.mjs`) against the real `dataplane` binary,
//! wired to a real SMTP server (mailpit) and a real model server (llama.cpp),
//! so every step goes through the same code a user's click does: signing in
//! and being blocked, an API key created and revoked in the browser and used
//! from a plain HTTP client, test emails delivered, refused and retried,
//! a generation streamed in. Any console error, uncaught exception, CSP
//! violation or serious accessibility violation (axe-core) fails it, and the
//! screenshots it leaves (desktop and phone width) are there to look at.
//!
//! Chromium and the npm packages come from `tests/setup/browser.sh`, which
//! installs them once; never a browser build of playwright's own, which this
//! machine cannot download.

// Test support: a failure is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{path::PathBuf, process::Command, time::Duration};

use testkit::{LlamaServer, Mailpit, Process, bins};

/// The browser steps, relative to the workspace root.
const SPEC: &str = "tests/console/console.spec.mjs";
/// Installs Chromium, playwright-core and axe-core; prints node_modules.
const SETUP: &str = "tests/setup/browser.sh";
/// The spec stops itself after 8 minutes; this only catches a node that
/// hangs beyond that.
const RUN_LIMIT: Duration = Duration::from_secs(10 * 60);

#[test]
fn the_console_works_in_a_real_browser() {
    // Set up first: a cold install should not eat into the servers' time.
    let modules = node_modules();
    let axe = modules.join("axe-core/axe.min.js");
    let node = bins::system_binary("node", "TESTKIT_NODE").unwrap();

    let mailpit = Mailpit::start().unwrap();
    let mut llama = LlamaServer::start().unwrap();
    let smtp_port = mailpit.smtp_port().to_string();
    let ai_url = llama.base_url();
    let mut dp = common::start(&[
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", &smtp_port),
        ("SMTP_TLS", "none"),
        ("SMTP_FROM", "SecureVault <noreply@securevault.test>"),
        ("OPENAI_BASE_URL", &ai_url),
        ("OPENAI_MODEL", testkit::llama::MODEL),
        // The browser talks plain HTTP to 127.0.0.1: a Secure cookie would
        // never be sent back, and no page after the sign-in would load.
        ("SESSION_COOKIE_SECURE", "false"),
    ]);

    let screenshots = bins::screenshot_dir("console-screenshots");
    let root = bins::workspace_root();
    let mut cmd = Command::new(node);
    cmd.arg(root.join(SPEC))
        .current_dir(&root)
        .env("NODE_PATH", &modules)
        .env("SV_URL", dp.url(""))
        .env("MAILPIT_URL", mailpit.http_url())
        .env("SV_ADMIN_USER", testkit::ADMIN_USERNAME)
        .env("SV_ADMIN_PASSWORD", testkit::ADMIN_PASSWORD)
        .env("SCREENSHOT_DIR", &screenshots)
        .env("AXE_PATH", &axe);
    let mut spec = Process::spawn("console.spec", cmd).unwrap();
    let status = spec.wait_exit(RUN_LIMIT);
    let output = spec.output_lines().join("\n");
    drop(spec); // kills a node that outlived RUN_LIMIT

    if !matches!(&status, Ok(s) if s.success()) {
        // The model server's tail too: when it dies, the data plane only
        // says that the stream broke.
        let model = llama.process();
        let model_state = if model.is_running() {
            "running"
        } else {
            "exited"
        };
        panic!(
            "the console's browser test failed ({}):\n{output}\n\nscreenshots: {}\n\n\
             the data plane's last lines:\n{}\n\nthe model server's ({model_state}) last lines:\n{}",
            status.map_or_else(|e| e.to_string(), |s| s.to_string()),
            screenshots.display(),
            dp.process().log_tail(),
            model.log_tail()
        );
    }
    eprintln!("{output}\nscreenshots: {}", screenshots.display());
}

/// The node_modules directory holding playwright-core and axe-core.
fn node_modules() -> PathBuf {
    let dir = bins::setup(SETUP, &[]).unwrap();
    assert!(
        dir.join("playwright-core").is_dir(),
        "{SETUP} printed {}, not a node_modules with playwright-core",
        dir.display()
    );
    dir
}
