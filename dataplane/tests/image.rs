//! The production images, built by docker/build.sh (`make docker-prod`) with
//! a private Docker engine this test starts (Debian's dockerd, its state in
//! a temporary directory) and stops. The data plane runs as a user would run
//! it hardened: read-only root filesystem, every capability dropped, user
//! 65534, its state on a volume; it answers `/api/health`. The operator
//! image runs its binary too.
//!
//! The images here pack the debug binaries `make test` has already built
//! (`PROFILE=debug`): the Dockerfile, the libraries, the user and the
//! entrypoint are the production ones; only the binaries' optimisation
//! differs, and a release build would add minutes to every cold test run.

// Test code: a failure is a panic with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{path::PathBuf, process::Command, time::Duration};

use testkit::{Process, TempDir, free_port};

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A private dockerd, stopped with the test.
struct Engine {
    _process: Process,
    host: String,
    _dir: TempDir,
}

impl Engine {
    fn start() -> Engine {
        let dockerd = testkit::bins::system_binary("dockerd", "TESTKIT_DOCKERD")
            .expect("dockerd (Debian's docker.io; make test-deps installs it)");
        let dir = TempDir::new("dockerd").unwrap();
        let host = format!("unix://{}", dir.path().join("docker.sock").display());
        let mut cmd = Command::new(dockerd);
        cmd.arg("--storage-driver=vfs")
            .arg(format!("--data-root={}", dir.path().join("data").display()))
            .arg(format!("--exec-root={}", dir.path().join("exec").display()))
            .arg(format!(
                "--pidfile={}",
                dir.path().join("dockerd.pid").display()
            ))
            .arg(format!("--host={host}"))
            .args(["--iptables=false", "--bridge=none"]);
        let process = Process::spawn("dockerd", cmd).unwrap();
        let engine = Engine {
            _process: process,
            host,
            _dir: dir,
        };
        for _ in 0..150 {
            if engine.docker(&["info"]).status.success() {
                return engine;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("dockerd did not answer within 30 s");
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .env("DOCKER_HOST", &self.host)
            .args(args)
            .output()
            .expect("the docker client runs")
    }

    /// `docker ARGS…`'s standard output; fails the test on an error.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

#[test]
fn the_image_runs_read_only_as_nobody_without_capabilities_and_is_healthy() {
    let engine = Engine::start();
    let out = Command::new(root().join("docker/build.sh"))
        .env("DOCKER_HOST", &engine.host)
        .env("PROFILE", "debug")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker/build.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built = String::from_utf8(out.stdout).unwrap();
    assert!(built.contains("securevault/dataplane:0.1.0 "), "{built}");
    assert!(built.contains("securevault/operator:0.1.0 "), "{built}");

    let config = engine.ok(&[
        "image",
        "inspect",
        "-f",
        "{{.Config.User}} {{index .Config.Labels \"org.opencontainers.image.version\"}} {{len .RootFS.Layers}}",
        "securevault/dataplane:0.1.0",
    ]);
    assert_eq!(
        config.trim(),
        "65534:65534 0.1.0 2",
        "user, version label, layers (no base)"
    );

    let data = TempDir::new("image-data").unwrap();
    // As a Kubernetes emptyDir with fsGroup: writable by the pod's user.
    Command::new("chmod")
        .arg("777")
        .arg(data.path())
        .status()
        .unwrap();
    let port = free_port();
    let name = format!("securevault-image-test-{port}");
    engine.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--user",
        "65534:65534",
        "--network",
        "host",
        "-v",
        &format!("{}:/var/lib/securevault", data.path().display()),
        "-e",
        "SECRET_KEY=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "-e",
        "ADMIN_PASSWORD=image-test-password",
        "-e",
        &format!("LISTEN_ADDR=127.0.0.1:{port}"),
        "securevault/dataplane:0.1.0",
    ]);
    let mut health = None;
    for _ in 0..100 {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://127.0.0.1:{port}/api/health"))
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout) == "200" {
            health = Some(());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let logs = engine.docker(&["logs", &name]);
    engine.ok(&["rm", "-f", &name]);
    assert!(
        health.is_some(),
        "the container never answered /api/health: {}",
        String::from_utf8_lossy(&logs.stderr)
    );
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("\"mode\":\"production\""),
        "the image runs in production mode by default"
    );

    let crd = engine.ok(&[
        "run",
        "--rm",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--network",
        "none",
        "securevault/operator:0.1.0",
        "crd",
    ]);
    assert!(crd.contains("kind: CustomResourceDefinition"));
}
