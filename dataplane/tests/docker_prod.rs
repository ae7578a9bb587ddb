//! The seed's production path, as a user follows it: `make docker-prod`
//! (docker/build.sh, then docker/run.sh) runs the data plane's image as the
//! container `securevault-dataplane`, hardened, its store on the named
//! volume `securevault-data`; `make health` then answers with no credential
//! given (the admin password `make docker-prod` keeps in DATA_DIR);
//! `make docker-down` removes the container and keeps the volume, so what
//! was written before is there after the next `make docker-prod`.
//!
//! Against a private engine this test starts (DOCKER_HOST), on free ports,
//! with a temporary DATA_DIR, and `PROFILE=debug` as in tests/image.rs: the
//! debug binaries `make test` built, packed the production way.

// Test code: a failure is a panic with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    os::unix::fs::PermissionsExt,
    process::{Command, Output},
};

use serde_json::Value;
use testkit::{DockerEngine, TempDir, bins::workspace_root, free_port};

const CONTAINER: &str = "securevault-dataplane";
const VOLUME: &str = "securevault-data";

/// `make` in the repository, as a user on this machine with the test's
/// engine, ports and data directory.
struct Seed<'a> {
    engine: &'a DockerEngine,
    data: TempDir,
    port: u16,
    metrics_port: u16,
}

impl Seed<'_> {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `make -s TARGET ARGS…` with `env`; its output whatever its status.
    fn make(&self, target: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new("make");
        cmd.arg("-C")
            .arg(workspace_root())
            .args(["-s", target])
            .args(args)
            .env("DOCKER_HOST", self.engine.host())
            .env("PROFILE", "debug")
            .env("DATA_DIR", self.data.path())
            .env("LISTEN_ADDR", format!("127.0.0.1:{}", self.port))
            .env("METRICS_ADDR", format!("127.0.0.1:{}", self.metrics_port))
            // What the user has not set: the scripts make or find them.
            .env_remove("ADMIN_PASSWORD")
            .env_remove("SECRET_KEY")
            .env_remove("HEALTH_TOKEN")
            .env_remove("SECUREVAULT_ENV")
            .env_remove("DATABASE_URL")
            .env_remove("SMTP_HOST")
            // A user's make, not a sub-make of `make test`.
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .env_remove("MAKELEVEL");
        for (name, value) in env {
            cmd.env(name, value);
        }
        cmd.output().unwrap()
    }

    /// [`Seed::make`] that must succeed; its stdout.
    fn ok(&self, target: &str, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.make(target, args, env);
        assert!(
            out.status.success(),
            "make {target} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `make docker-prod`, which must end with the container healthy; its id.
    ///
    /// The ports were free when picked, but the images take minutes to
    /// build, and meanwhile another test's client may take one as its
    /// ephemeral port: the script then refuses to start, saying so, and the
    /// test picks others (the second build is cached), as a user would.
    fn docker_prod(&mut self) -> String {
        let mut attempts = 1;
        let out = loop {
            let out = self.make("docker-prod", &[], &[]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() && stderr.contains("is in use") && attempts < 3 {
                attempts += 1;
                self.port = free_port();
                self.metrics_port = free_port();
                continue;
            }
            assert!(
                out.status.success(),
                "make docker-prod failed ({}):\n{}\n{stderr}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
            );
            break String::from_utf8_lossy(&out.stdout).into_owned();
        };
        assert!(out.contains("securevault/dataplane:0.1.0 "), "{out}");
        assert!(
            out.contains(&format!("{CONTAINER} is healthy at {}", self.url())),
            "{out}"
        );
        assert!(out.contains("make docker-down"), "{out}");
        let health = self.inspect("{{.State.Health.Status}} {{.Id}}");
        let (status, id) = health.split_once(' ').unwrap();
        assert_eq!(status, "healthy");
        id.to_owned()
    }

    /// `make health URL=…` (with `env`): the detailed health report.
    fn health(&self, env: &[(&str, &str)]) -> Value {
        let out = self.ok("health", &[&format!("URL={}", self.url())], env);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    fn inspect(&self, format: &str) -> String {
        self.engine
            .docker(&["container", "inspect", "-f", format, CONTAINER])
            .unwrap()
            .trim()
            .to_owned()
    }

    /// `curl` against the data plane, which must answer 2xx; its JSON.
    fn api(&self, args: &[&str]) -> Value {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--fail-with-body",
                "-H",
                "Content-Type: application/json",
            ])
            .args(args)
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "curl {args:?}: {body} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    fn admin_token(&self) -> String {
        let password = std::fs::read_to_string(self.data.path().join("admin-password")).unwrap();
        let login = serde_json::json!({"username": "admin", "password": password.trim()});
        let answer = self.api(&[
            "-d",
            &login.to_string(),
            &format!("{}/api/auth/login", self.url()),
        ]);
        answer["token"].as_str().unwrap().to_owned()
    }
}

/// Removes the container should the test fail half-way (the engine's own
/// drop then stops an idle daemon).
struct RemoveContainer<'a>(&'a DockerEngine);

impl Drop for RemoveContainer<'_> {
    fn drop(&mut self) {
        let _ = self.0.output(&["rm", "-f", CONTAINER]);
    }
}

#[test]
fn make_docker_prod_runs_the_hardened_container_and_its_volume_outlives_docker_down() {
    let engine = DockerEngine::start().unwrap();
    let _cleanup = RemoveContainer(&engine);
    let mut seed = Seed {
        engine: &engine,
        data: TempDir::new("docker-prod-data").unwrap(),
        port: free_port(),
        metrics_port: free_port(),
    };

    // Nothing runs yet: `make health` has nobody to ask.
    assert!(
        !seed
            .make("health", &[&format!("URL={}", seed.url())], &[])
            .status
            .success()
    );

    let first = seed.docker_prod();

    // The secrets it made for production mode, private, for the next run
    // and for `make health`.
    for file in ["admin-password", "secret-key"] {
        let meta = std::fs::metadata(seed.data.path().join(file)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
    }

    // `make health` with no credential given answers the detailed report.
    let report = seed.health(&[]);
    assert_eq!(report["status"], "healthy", "{report}");
    assert_eq!(report["version"], "0.1.0", "{report}");
    assert_eq!(
        report["checks"]["database"]["status"], "healthy",
        "{report}"
    );
    assert_eq!(
        report["checks"]["database"]["backend"], "sqlite",
        "{report}"
    );

    // Hardened as asked, in production mode, on the named volume.
    assert_eq!(
        seed.inspect(
            "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} \
             {{.HostConfig.SecurityOpt}} {{.HostConfig.NetworkMode}} \
             {{.HostConfig.RestartPolicy.Name}}"
        ),
        "65534:65534 true [ALL] [no-new-privileges] host unless-stopped"
    );
    assert_eq!(
        seed.inspect("{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}};{{end}}"),
        format!("volume {VOLUME} /var/lib/securevault;")
    );
    assert!(
        seed.inspect("{{json .HostConfig.Tmpfs}}")
            .contains("\"/tmp\""),
        "/tmp is a tmpfs"
    );
    // The process itself, not only the configuration: user and group 65534.
    let top = engine
        .docker(&["top", CONTAINER, "-o", "pid,uid,gid"])
        .unwrap();
    assert_eq!(
        top.lines()
            .nth(1)
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>()),
        Some(vec!["65534", "65534"]),
        "{top}"
    );
    let logs = engine.output(&["logs", CONTAINER]).unwrap();
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("\"mode\":\"production\""),
        "production mode"
    );

    // Something written through the API: a key with the `metrics` scope,
    // which `make health` then signs in with instead of the password.
    let admin = seed.admin_token();
    let created = seed.api(&[
        "-H",
        &format!("Authorization: Bearer {admin}"),
        "-d",
        r#"{"name": "docker-prod-monitoring", "scopes": ["metrics"]}"#,
        &format!("{}/api/keys", seed.url()),
    ]);
    let key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(seed.health(&[("HEALTH_TOKEN", &key)])["status"], "healthy");
    // A key the store does not hold is refused: the check below can fail.
    let bogus = seed.make(
        "health",
        &[&format!("URL={}", seed.url())],
        &[("HEALTH_TOKEN", "sv_live_not-a-key-of-this-store")],
    );
    assert!(!bogus.status.success(), "an unknown key signed in");

    // Down: no container, the volume and the engine are still there.
    let down = seed.make("docker-down", &[], &[]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_eq!(
        engine
            .docker(&["ps", "-aq", "--filter", &format!("name=^{CONTAINER}$")])
            .unwrap()
            .trim(),
        "",
        "the container is gone"
    );
    engine.docker(&["volume", "inspect", VOLUME]).unwrap();
    assert!(
        !seed
            .make("health", &[&format!("URL={}", seed.url())], &[])
            .status
            .success()
    );

    // Up again: a new container, on the same volume, knows the key.
    let second = seed.docker_prod();
    assert_ne!(first, second, "a new container");
    assert_eq!(seed.health(&[("HEALTH_TOKEN", &key)])["status"], "healthy");
    let admin = seed.admin_token();
    let keys = seed.api(&[
        "-H",
        &format!("Authorization: Bearer {admin}"),
        &format!("{}/api/keys", seed.url()),
    ]);
    assert!(
        keys.to_string().contains("docker-prod-monitoring"),
        "{keys}"
    );

    let down = seed.make("docker-down", &[], &[]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_eq!(
        engine.docker(&["ps", "-aq"]).unwrap().trim(),
        "",
        "nothing left running"
    );
}
