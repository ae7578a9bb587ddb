//! A private SeaweedFS per test: a real S3-compatible server for backups.
//!
//! `weed server` runs its master, volume server, filer and S3 gateway in one
//! process, each on a free port given explicitly (the gRPC ports too, which
//! would otherwise be the HTTP port + 10000 and could collide). The S3
//! gateway knows one identity, [`SeaweedFs::ACCESS_KEY`], allowed to read,
//! write and list but not to administer: a bucket the test did not create
//! with [`SeaweedFs::create_bucket`] does not exist (`-s3.autoCreateBucket`
//! is off too). Tests read back what arrived through the filer's HTTP API.
//! The binary is `$TESTKIT_WEED`, else the one `tests/setup/seaweedfs.sh`
//! builds from Go modules and caches.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::dirs::{TempDir, free_port};
use crate::process::Process;
use crate::{Error, Result, bins, mailpit::http};

/// How long a start may take before it is reported as failed.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The script that builds `weed`, relative to the workspace root.
const SCRIPT: &str = "tests/setup/seaweedfs.sh";

/// A private SeaweedFS on free 127.0.0.1 ports, killed on drop.
#[derive(Debug)]
pub struct SeaweedFs {
    // Before `dir`: on drop, the server dies before its files go.
    process: Option<Process>,
    dir: TempDir,
    binary: PathBuf,
    master: (u16, u16),
    filer: (u16, u16),
    s3_port: u16,
}

/// One object in a bucket, as the filer lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Its name in the folder listed.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

impl SeaweedFs {
    /// The access key id of the one identity.
    pub const ACCESS_KEY: &str = "securevault-test";
    /// Its secret access key.
    pub const SECRET_KEY: &str = "securevault-test-secret-0123456789";

    /// Starts a new server and waits (up to 60 s) until the S3 gateway
    /// answers.
    pub fn start() -> Result<SeaweedFs> {
        let binary = match std::env::var_os("TESTKIT_WEED") {
            Some(path) => PathBuf::from(path),
            None => bins::built_by_script(SCRIPT, &[])?,
        };
        let mut s = SeaweedFs {
            process: None,
            dir: TempDir::new("seaweedfs")?,
            binary,
            master: (free_port(), free_port()),
            filer: (free_port(), free_port()),
            s3_port: free_port(),
        };
        s.launch()?;
        Ok(s)
    }

    /// The S3 endpoint, `http://127.0.0.1:P`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Creates a bucket, as an administrator would (`weed shell`).
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        let out = self.shell(&format!("s3.bucket.create -name {name}"))?;
        if out.contains(&format!("created bucket {name}")) {
            Ok(())
        } else {
            Err(Error::io(
                format!("create bucket {name}"),
                std::io::Error::other(out),
            ))
        }
    }

    /// The objects directly in `folder` (`bucket/prefix`), by name order;
    /// empty when the folder does not exist.
    pub fn objects(&self, folder: &str) -> Result<Vec<Object>> {
        let path = format!("/buckets/{}/?limit=10000", folder.trim_matches('/'));
        let (status, body) = http(self.filer.0, "GET", &path, "")
            .map_err(|e| Error::io(format!("list {folder} on the filer"), e))?;
        if status == 404 {
            return Ok(Vec::new());
        }
        let listing: serde_json::Value = serde_json::from_str(&body).map_err(|e| {
            Error::io(
                format!("parse the filer's listing of {folder}"),
                std::io::Error::other(format!("{e}: {body}")),
            )
        })?;
        let mut objects: Vec<Object> = listing["Entries"]
            .as_array()
            .into_iter()
            .flatten()
            // Folders have the directory bit (0o20000000000 in Go's
            // os.FileMode) in their mode.
            .filter(|e| e["Mode"].as_u64().is_some_and(|m| m & (1 << 31) == 0))
            .filter_map(|e| {
                Some(Object {
                    name: e["FullPath"].as_str()?.rsplit('/').next()?.to_owned(),
                    size: e["FileSize"].as_u64().unwrap_or(0),
                })
            })
            .collect();
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }

    /// Kills the server (as a crash would); the endpoint then refuses
    /// connections.
    pub fn stop(&mut self) {
        self.process = None;
    }

    fn shell(&self, command: &str) -> Result<String> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("shell")
            .arg(format!(
                "-master=127.0.0.1:{}.{}",
                self.master.0, self.master.1
            ))
            .arg(format!(
                "-filer=127.0.0.1:{}.{}",
                self.filer.0, self.filer.1
            ));
        bins::run_with_input(&mut cmd, command)
    }

    fn launch(&mut self) -> Result<()> {
        let config = self.dir.path().join("s3.json");
        let identities = serde_json::json!({"identities": [{
            "name": "backups",
            "credentials": [{"accessKey": Self::ACCESS_KEY, "secretKey": Self::SECRET_KEY}],
            "actions": ["Read", "Write", "List", "Tagging"],
        }]});
        std::fs::write(&config, identities.to_string())
            .map_err(|e| Error::io(format!("write {}", config.display()), e))?;
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data)
            .map_err(|e| Error::io(format!("create {}", data.display()), e))?;
        let (volume, volume_grpc, s3_grpc) = (free_port(), free_port(), free_port());
        let mut cmd = Command::new(&self.binary);
        cmd.arg("server")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={}", self.master.0))
            .arg(format!("-master.port.grpc={}", self.master.1))
            // Small volumes: the default reserves gigabytes of disk.
            .args(["-master.volumeSizeLimitMB=64", "-volume.max=16"])
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-volume.port.grpc={volume_grpc}"))
            .arg("-filer")
            .arg(format!("-filer.port={}", self.filer.0))
            .arg(format!("-filer.port.grpc={}", self.filer.1))
            .arg("-s3")
            .arg(format!("-s3.port={}", self.s3_port))
            .arg(format!("-s3.port.grpc={s3_grpc}"))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg("-s3.autoCreateBucket=false")
            .arg(format!("-s3.config={}", config.display()));
        let name = format!("seaweedfs:{}", self.s3_port);
        let process = Process::spawn(&name, cmd)?;
        // The S3 gateway answers an unsigned request with 403 once it is up;
        // the bucket shell needs the filer, which starts before it.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok((status, _)) = http(self.s3_port, "GET", "/", "")
                && status == 403
            {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("SeaweedFS's S3 gateway on port {}", self.s3_port),
                    waited: START_TIMEOUT,
                    log_tail: process.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.process = Some(process);
        Ok(())
    }
}
