//! A real OpenAI-compatible model server per test: llama.cpp's server (from
//! PyPI's `llama-cpp-python[server]`) running SmolLM2-135M-Instruct, both
//! prepared and cached by `tests/setup/llama-server.sh`. It runs offline on
//! 127.0.0.1 and answers `/v1/chat/completions` (streaming too) and
//! `/v1/models`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::bins;
use crate::dirs::free_port;
use crate::mailpit::http;
use crate::process::Process;
use crate::{Error, Result};

const SCRIPT: &str = "tests/setup/llama-server.sh";
/// Loading the model takes a second or two; a cold page cache more.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The name the server answers to (`--model_alias`).
pub const MODEL: &str = "smollm2";

/// A running model server on a free port, stopped on drop.
#[derive(Debug)]
pub struct LlamaServer {
    process: Process,
    port: u16,
}

impl LlamaServer {
    /// Starts the server and waits until `GET /v1/models` answers 200.
    pub fn start() -> Result<LlamaServer> {
        let port = free_port();
        Ok(LlamaServer {
            process: spawn(port)?,
            port,
        })
    }

    /// Stops the server (SIGKILL: as a crashed or evicted one goes) and
    /// waits for it to exit; its port then refuses connections.
    pub fn kill(&mut self) -> Result<()> {
        self.process.signal("KILL")?;
        self.process.wait_exit(Duration::from_secs(10))?;
        Ok(())
    }

    /// Starts it again on the same port, after [`LlamaServer::kill`].
    pub fn restart(&mut self) -> Result<()> {
        self.process = spawn(self.port)?;
        Ok(())
    }

    /// The base URL an OpenAI client takes (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process, to pause it (SIGSTOP) or stop it.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// Spawns the server on `port` and waits until `GET /v1/models` answers 200.
fn spawn(port: u16) -> Result<Process> {
    let (python, model) = prepared()?;
    let mut cmd = Command::new(python);
    cmd.args(["-m", "llama_cpp.server", "--model"])
        .arg(model)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--model_alias", MODEL, "--n_ctx", "2048"])
        // By default llama-cpp-python's server ends a stream early (with
        // [DONE], no finish reason) whenever another request arrives:
        // the data plane's background health check would cut every
        // stream it overlaps. Real OpenAI-compatible servers queue.
        .args(["--interrupt_requests", "false"]);
    let process = Process::spawn(&format!("llama:{port}"), cmd)?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok((200, _)) = http(port, "GET", "/v1/models", "") {
            return Ok(process);
        }
        if Instant::now() > deadline {
            return Err(Error::CommandFailed {
                command: format!("llama_cpp.server on port {port}"),
                status: format!("not ready within {START_TIMEOUT:?}"),
                output: String::new(),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The venv's python and the model file, prepared once per machine and
/// looked up once per test process.
fn prepared() -> Result<(PathBuf, PathBuf)> {
    static PREPARED: OnceLock<std::result::Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    PREPARED
        .get_or_init(|| {
            let script = bins::workspace_script(SCRIPT).map_err(|e| e.to_string())?;
            let out = bins::run(&mut Command::new(&script)).map_err(|e| e.to_string())?;
            let mut lines = out.lines().rev();
            let model = PathBuf::from(lines.next().unwrap_or_default().trim());
            let python = PathBuf::from(lines.next().unwrap_or_default().trim());
            if bins::is_executable(&python) && model.is_file() {
                Ok((python, model))
            } else {
                Err(format!(
                    "{SCRIPT} printed {out:?}: expected the python, then the model file"
                ))
            }
        })
        .clone()
        .map_err(|output| Error::CommandFailed {
            command: SCRIPT.to_owned(),
            status: "failed (once per test process)".to_owned(),
            output,
        })
}
