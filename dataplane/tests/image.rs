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

use std::{process::Command, time::Duration};

use testkit::{DockerEngine, TempDir, free_port};

#[test]
fn the_image_runs_read_only_as_nobody_without_capabilities_and_is_healthy() {
    let engine = DockerEngine::start().unwrap();
    let built = engine.build_images().unwrap();
    assert!(built.contains("securevault/dataplane:0.1.0 "), "{built}");
    assert!(built.contains("securevault/operator:0.1.0 "), "{built}");

    let config = engine.docker(&[
        "image",
        "inspect",
        "-f",
        "{{.Config.User}} {{index .Config.Labels \"org.opencontainers.image.version\"}} {{len .RootFS.Layers}}",
        "securevault/dataplane:0.1.0",
    ]).unwrap();
    assert_eq!(
        config.trim(),
        "65534:65534 0.1.0 3",
        "user, version label, layers (rootfs, the state directory, the binary: no base)"
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
    engine
        .docker(&[
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
        ])
        .unwrap();
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
    let logs = engine.output(&["logs", &name]).unwrap();
    engine.docker(&["rm", "-f", &name]).unwrap();
    assert!(
        health.is_some(),
        "the container never answered /api/health: {}",
        String::from_utf8_lossy(&logs.stderr)
    );
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("\"mode\":\"production\""),
        "the image runs in production mode by default"
    );

    let crd = engine
        .docker(&[
            "run",
            "--rm",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--network",
            "none",
            "securevault/operator:0.1.0",
            "crd",
        ])
        .unwrap();
    assert!(crd.contains("kind: CustomResourceDefinition"));

    // Each image says what it is, as its version label does.
    for binary in ["dataplane", "operator"] {
        let version = engine
            .docker(&[
                "run",
                "--rm",
                "--network",
                "none",
                &format!("securevault/{binary}:0.1.0"),
                "--version",
            ])
            .unwrap();
        assert_eq!(version.trim(), format!("{binary} 0.1.0"));
    }
}
