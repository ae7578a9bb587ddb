//! A webhook receiver per test: `tests/webhooks/receiver.py`, which verifies
//! each delivery with the reference Standard Webhooks library
//! (`standardwebhooks` from PyPI, installed by `tests/setup/python-venv.sh`),
//! records it, and answers with statuses the test queues.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;

use crate::bins;
use crate::dirs::free_port;
use crate::mailpit::http;
use crate::process::Process;
use crate::{Error, Result};

/// The reference library, pinned.
const REQUIREMENT: &str = "standardwebhooks==1.1.0";
const VENV_SCRIPT: &str = "tests/setup/python-venv.sh";
const RECEIVER: &str = "tests/webhooks/receiver.py";
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// One delivery as the receiver saw it.
#[derive(Debug, Clone, Deserialize)]
pub struct Delivery {
    /// The request path.
    pub path: String,
    /// Request headers, names in lower case.
    pub headers: std::collections::BTreeMap<String, String>,
    /// The JSON body (`None` when it was not JSON).
    pub body: Option<serde_json::Value>,
    /// With a secret: whether `standardwebhooks` verified the signature.
    pub verified: Option<bool>,
    /// Why verification (or JSON parsing) failed.
    pub error: Option<String>,
    /// The status the receiver answered.
    pub answered: u16,
}

/// A running receiver on a free 127.0.0.1 port, stopped on drop.
#[derive(Debug)]
pub struct WebhookReceiver {
    process: Process,
    port: u16,
}

impl WebhookReceiver {
    /// Starts a receiver that verifies signatures with `secret` (a
    /// `whsec_…` string), or records deliveries unverified when `None`.
    pub fn start(secret: Option<&str>) -> Result<WebhookReceiver> {
        let python = python()?;
        let script = bins::workspace_script(RECEIVER)?;
        let port = free_port();
        let mut cmd = Command::new(python);
        cmd.arg(&script).arg(port.to_string());
        if let Some(secret) = secret {
            cmd.arg(secret);
        }
        let process = Process::spawn(&format!("webhooks:{port}"), cmd)?;
        process.wait_for_line(|l| l.contains("listening on"), START_TIMEOUT)?;
        Ok(WebhookReceiver { process, port })
    }

    /// Where to send webhooks.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/securevault", self.port)
    }

    /// Every delivery so far, oldest first.
    pub fn deliveries(&self) -> Result<Vec<Delivery>> {
        let body = self.request("GET", "/_events", "")?;
        serde_json::from_str(&body)
            .map_err(|e| Error::io("parsing the receiver's events", e.into()))
    }

    /// The next deliveries are answered with `statuses`, in order; then 204.
    pub fn answer_next(&self, statuses: &[u16]) -> Result<()> {
        let body = serde_json::json!({ "statuses": statuses }).to_string();
        self.request("POST", "/_control", &body).map(drop)
    }

    /// The process, e.g. for its log.
    pub fn process(&self) -> &Process {
        &self.process
    }

    fn request(&self, method: &str, path: &str, body: &str) -> Result<String> {
        let what = format!("{method} http://127.0.0.1:{}{path}", self.port);
        let (status, text) =
            http(self.port, method, path, body).map_err(|e| Error::io(what.clone(), e))?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        Err(Error::CommandFailed {
            command: what,
            status: format!("HTTP {status}"),
            output: text,
        })
    }
}

/// The virtualenv's python with the reference library, installed once per
/// machine and looked up once per test process.
fn python() -> Result<std::path::PathBuf> {
    static PYTHON: OnceLock<std::result::Result<std::path::PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            bins::built_by_script(VENV_SCRIPT, &[REQUIREMENT]).map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|output| Error::CommandFailed {
            command: format!("{VENV_SCRIPT} {REQUIREMENT}"),
            status: "failed (once per test process)".to_owned(),
            output,
        })
}
