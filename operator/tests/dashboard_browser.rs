//! The SecureVault dashboard the chart ships, shown by a real Perses in a
//! real browser, with data from a real data plane.
//!
//! Everything here is real: `scripts/monitoring-up.sh` (what `make
//! monitoring-up` runs) starts the `dataplane` binary, Debian's Prometheus
//! scraping it with the rules of the `operator` binary, and Perses (built
//! from its Go module and npm packages by `tests/setup/perses.sh`), whose
//! file provisioning holds the dashboard `percli migrate` makes of
//! `charts/securevault-operator/dashboards/securevault.json`. The test sends
//! the data plane traffic (health checks, a failed sign-in) until
//! Prometheus has enough samples for every rate, then Debian's Chromium,
//! driven by playwright-core (`tests/monitoring/dashboard.spec.mjs`), opens
//! the dashboard with its variables set to the scraped instance and fails
//! when a panel is missing, loads forever, shows an error or draws no line,
//! or when the browser reports an error. Then the script is stopped with
//! SIGTERM, and everything it started must be gone.
//!
//! The screenshot goes to `$SCREENSHOT_DIR/dashboard-perses.png` (the one in
//! docs/screenshots comes from `SCREENSHOT_DIR=docs/screenshots`), else
//! `dashboard-screenshots/` in cargo's target directory.

// Test support: a failure is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use operator::build::dashboard;
use testkit::{Process, TempDir, bins, free_port, workspace_binary};

/// The browser steps, relative to the workspace root.
const SPEC: &str = "tests/monitoring/dashboard.spec.mjs";
/// The stack under test.
const MONITORING_UP: &str = "scripts/monitoring-up.sh";
/// Builds Perses once; prints its directory.
const PERSES_SETUP: &str = "tests/setup/perses.sh";
/// Installs Chromium and playwright-core; prints node_modules.
const BROWSER_SETUP: &str = "tests/setup/browser.sh";
/// From starting the script to the dashboard's URL on its stdout (Perses is
/// already built by then).
const START_LIMIT: Duration = Duration::from_secs(120);
/// Samples of the latest request series Prometheus must hold before the
/// browser looks: a rate needs two, a line needs two rates.
const SAMPLES: u64 = 4;
/// Prometheus scrapes every 5 s; this is SAMPLES of them and a margin.
const SAMPLES_LIMIT: Duration = Duration::from_secs(60);
/// The spec stops itself after 3 minutes; this only catches a node that
/// hangs beyond that.
const RUN_LIMIT: Duration = Duration::from_secs(4 * 60);

#[test]
fn every_panel_of_the_dashboard_shows_data_in_perses_in_a_real_browser() {
    // Set up first: a cold build should not eat into the servers' time.
    let modules = bins::setup(BROWSER_SETUP, &[]).unwrap();
    assert!(modules.join("playwright-core").is_dir(), "{modules:?}");
    let perses = bins::setup(PERSES_SETUP, &[]).unwrap();
    for file in ["perses", "percli", "plugins"] {
        assert!(perses.join(file).exists(), "{PERSES_SETUP} built no {file}");
    }
    let node = bins::system_binary("node", "TESTKIT_NODE").unwrap();
    let root = bins::workspace_root();

    let data = TempDir::new("dashboard").unwrap();
    let addr = |_| format!("127.0.0.1:{}", free_port());
    let [dataplane, metrics, prometheus, perses_addr] = [(); 4].map(addr);
    let mut cmd = Command::new(root.join(MONITORING_UP));
    cmd.current_dir(&root)
        .env("DATA_DIR", data.path())
        .env("DATAPLANE_ADDR", &dataplane)
        .env("METRICS_ADDR", &metrics)
        .env("PROMETHEUS_ADDR", &prometheus)
        .env("PERSES_ADDR", &perses_addr)
        .env("OPERATOR_BIN", env!("CARGO_BIN_EXE_operator"))
        .env("DATAPLANE_BIN", workspace_binary("dataplane").unwrap());
    let stack = Stack(Process::spawn("monitoring-up", cmd).unwrap());
    let url = stack
        .0
        .wait_for_line(|l| l.starts_with("http://"), START_LIMIT)
        .unwrap_or_else(|e| panic!("{MONITORING_UP} printed no dashboard URL: {e}"));
    let var = |name: &str| {
        let key = format!("var-{name}=");
        let value = url.split(['?', '&']).find_map(|p| p.strip_prefix(&key));
        value
            .unwrap_or_else(|| panic!("no {key} in {url}"))
            .to_owned()
    };
    let (namespace, service) = (var("namespace"), var("securevault"));

    let traffic = Traffic::start(&dataplane);
    // The failed sign-in (401) is the last series to appear; once it has
    // SAMPLES samples, every panel's rate has points to draw.
    let query = format!(
        "count_over_time(http_requests_total{{namespace=\"{namespace}\",service=\"{service}\",status=\"401\"}}[5m])"
    );
    let deadline = Instant::now() + SAMPLES_LIMIT;
    loop {
        let answer = http(
            &prometheus,
            "GET",
            &format!("/api/v1/query?query={}", encode(&query)),
        );
        let samples = answer
            .as_deref()
            .ok()
            .and_then(|body| serde_json::from_str::<serde_json::Value>(body).ok())
            .and_then(|v| {
                v["data"]["result"][0]["value"][1]
                    .as_str()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0);
        if samples >= SAMPLES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has {samples} samples of {query} after {SAMPLES_LIMIT:?}: {answer:?}"
        );
        thread::sleep(Duration::from_millis(500));
    }

    let screenshot = bins::screenshot_dir("dashboard-screenshots").join("dashboard-perses.png");
    let mut cmd = Command::new(node);
    cmd.arg(root.join(SPEC))
        .current_dir(&root)
        .env("NODE_PATH", &modules)
        .env("DASHBOARD_URL", &url)
        // The Grafana dashboard the chart ships, which Perses shows migrated.
        .env("GRAFANA_DASHBOARD", root.join(dashboard::CHART_FILE))
        // The data is some 30 s old; at one minute, the time axis's labels
        // overlap.
        .env("DASHBOARD_RANGE", "2m")
        .env("SCREENSHOT", &screenshot);
    let mut spec = Process::spawn("dashboard.spec", cmd).unwrap();
    let status = spec.wait_exit(RUN_LIMIT);
    let output = spec.output_lines().join("\n");
    drop(spec); // kills a node that outlived RUN_LIMIT
    let requests = traffic.stop();

    if !matches!(&status, Ok(s) if s.success()) {
        let perses_log = data.path().join("perses/perses.log");
        let tail = |path: &Path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<_> = text.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        };
        panic!(
            "the dashboard's browser test failed ({}):\n{output}\n\nscreenshot: {}\n\n\
             {MONITORING_UP} said:\n{}\n\nPerses' last lines:\n{}",
            status.map_or_else(|e| e.to_string(), |s| s.to_string()),
            screenshot.display(),
            stack.0.log_tail(),
            tail(&perses_log),
        );
    }
    eprintln!(
        "{output}\n{requests} requests sent to the data plane\nscreenshot: {}",
        screenshot.display()
    );

    // SIGTERM to the script stops everything it started.
    stack.stop();
    for (what, addr) in [
        ("the data plane", &dataplane),
        ("Prometheus", &prometheus),
        ("Perses", &perses_addr),
    ] {
        assert!(
            TcpStream::connect(addr).is_err(),
            "{what} still listens on {addr} after the script was stopped"
        );
    }
}

/// The script's process: on drop (a failed assertion included) it gets
/// SIGTERM and a moment to stop what it started, as Ctrl-C would, not the
/// SIGKILL of [`Process`]'s own drop, which would leave its servers behind.
struct Stack(Process);

impl Stack {
    /// Sends SIGTERM and waits for the script to exit.
    fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if self.0.is_running() {
            let _ = self.0.signal("TERM");
            let exited = self.0.wait_exit(Duration::from_secs(30));
            assert!(exited.is_ok(), "{MONITORING_UP} did not stop on SIGTERM");
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if thread::panicking() {
            let _ = self.0.signal("TERM");
            let _ = self.0.wait_exit(Duration::from_secs(30));
        } else {
            self.terminate();
        }
    }
}

/// Requests to the data plane's API in the background, so that every
/// request panel has a rate to show: health checks every 200 ms, and a
/// failed sign-in every second (a second status, and the `auth_*` series).
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<u64>>,
}

impl Traffic {
    fn start(addr: &str) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, addr) = (Arc::clone(&stop), addr.to_owned());
        let thread = thread::spawn(move || {
            let mut sent = 0;
            while !flag.load(Ordering::Relaxed) {
                let _ = http(&addr, "GET", "/api/health");
                if sent % 5 == 0 {
                    let body = r#"{"username":"admin","password":"not the password"}"#;
                    let _ = http(&addr, "POST /api/auth/login", body);
                }
                sent += 1;
                thread::sleep(Duration::from_millis(200));
            }
            sent
        });
        Traffic {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the requests; how many health checks were sent.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap())
    }
}

impl Drop for Traffic {
    /// A failed assertion stops the requests too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A plain HTTP/1.0 request: `method` is `GET` (then `target` is the path)
/// or `POST <path>` (then `target` is a JSON body). The body of the answer.
fn http(addr: &str, method: &str, target: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = match method.strip_prefix("POST ") {
        Some(path) => format!(
            "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{target}",
            target.len()
        ),
        None => format!("{method} {target} HTTP/1.0\r\nHost: {addr}\r\n\r\n"),
    };
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map_or(response.clone(), |(_, body)| body.to_owned()))
}

/// `text` percent-encoded for a URL's query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
