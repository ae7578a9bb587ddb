//! Starts the real servers and exercises every handle the way other crates'
//! tests will.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{Error, Postgres, Process, Redis, TempDir, free_port, workspace_binary};

fn sh(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]);
    cmd
}

/// A raw RESP round trip, independent of `Redis::ping`.
fn redis_command(port: u16, command: &[u8]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(command)?;
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn refuses(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

#[test]
fn redis_ping_stop_restart_same_port() {
    let mut redis = Redis::start().unwrap();
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}/"));
    assert_eq!(
        redis_command(port, b"*1\r\n$4\r\nPING\r\n").unwrap(),
        "+PONG\r\n"
    );
    let set = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
    assert_eq!(redis_command(port, set).unwrap(), "+OK\r\n");

    redis.stop().unwrap();
    assert!(refuses(port), "port {port} still accepts after stop");
    assert!(redis.ping().is_err());
    redis.stop().unwrap(); // idempotent

    redis.restart().unwrap();
    assert_eq!(redis.port(), port);
    redis.ping().unwrap();
    // No persistence: a restarted cache is empty.
    let get = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    assert_eq!(redis_command(port, get).unwrap(), "$-1\r\n");

    let pid = redis.process().unwrap().pid();
    drop(redis);
    assert!(refuses(port));
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn redis_restart_while_running() {
    let mut redis = Redis::start().unwrap();
    let first = redis.process().unwrap().pid();
    redis.restart().unwrap();
    assert_ne!(redis.process().unwrap().pid(), first);
    redis.ping().unwrap();
}

#[test]
fn postgres_create_database_and_query() {
    let pg = Postgres::start().unwrap();
    let port = pg.port();
    assert_eq!(
        pg.url(),
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    );
    assert_eq!(pg.psql("postgres", "SELECT 1").unwrap(), "1");

    let url = pg.create_database("vault_test").unwrap();
    assert_eq!(
        url,
        format!("postgres://postgres@127.0.0.1:{port}/vault_test")
    );
    assert_eq!(
        pg.psql("vault_test", "SELECT current_database()").unwrap(),
        "vault_test"
    );
    assert_eq!(pg.psql("vault_test", "SELECT 1; SELECT 2").unwrap(), "1\n2");

    // SQL errors surface with psql's message.
    let err = pg.psql("vault_test", "SELECT * FROM missing").unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    // Creating it twice fails; bad names are rejected before running anything.
    assert!(pg.create_database("vault_test").is_err());
    for bad in ["", "Vault", "a-b", "x;DROP DATABASE postgres", "a\"b"] {
        assert!(
            matches!(pg.create_database(bad), Err(Error::InvalidArgument(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn two_postgres_at_once_are_independent() {
    let a = Postgres::start().unwrap();
    let b = Postgres::start().unwrap();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.data_dir(), b.data_dir());
    a.psql("postgres", "CREATE TABLE only_in_a (x int)")
        .unwrap();
    assert_eq!(
        a.psql(
            "postgres",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"
        )
        .unwrap(),
        "1"
    );
    assert_eq!(
        b.psql(
            "postgres",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"
        )
        .unwrap(),
        "0"
    );
}

#[test]
fn postgres_stop_restart_keeps_data_and_port() {
    let mut pg = Postgres::start().unwrap();
    let port = pg.port();
    let data_dir = pg.data_dir();
    pg.psql(
        "postgres",
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')",
    )
    .unwrap();

    pg.stop().unwrap();
    assert!(refuses(port), "port {port} still accepts after stop");
    assert!(pg.psql("postgres", "SELECT 1").is_err());

    pg.restart().unwrap();
    assert_eq!(pg.port(), port);
    assert_eq!(pg.psql("postgres", "SELECT v FROM t").unwrap(), "kept");

    // Restarting a running server works too.
    pg.restart().unwrap();
    assert_eq!(pg.psql("postgres", "SELECT v FROM t").unwrap(), "kept");

    let pid = pg.process().unwrap().pid();
    drop(pg);
    assert!(refuses(port));
    assert!(!data_dir.exists(), "data dir not removed on drop");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn process_wait_for_line_finds_output() {
    let mut p = Process::spawn("hello", sh("echo hello; echo err >&2; sleep 5")).unwrap();
    let line = p
        .wait_for_line(|l| l == "hello", Duration::from_secs(5))
        .unwrap();
    assert_eq!(line, "hello");
    p.wait_for_line(|l| l == "err", Duration::from_secs(5))
        .unwrap();
    // Already-captured lines are found again.
    assert_eq!(
        p.wait_for_line(|l| l.starts_with("hel"), Duration::ZERO)
            .unwrap(),
        "hello"
    );
    assert!(p.output_lines().contains(&"hello".to_owned()));
    assert!(p.is_running());
}

#[test]
fn process_wait_for_line_times_out_with_log_tail() {
    let p = Process::spawn("quiet", sh("echo only-line; sleep 5")).unwrap();
    let started = Instant::now();
    let err = p
        .wait_for_line(|l| l == "never", Duration::from_millis(300))
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("only-line"), "{err}");
}

#[test]
fn process_wait_for_line_fails_when_process_exits() {
    let p = Process::spawn("short", sh("echo bye; exit 3")).unwrap();
    let err = p
        .wait_for_line(|l| l == "never", Duration::from_secs(10))
        .unwrap_err();
    match &err {
        Error::Exited {
            status, log_tail, ..
        } => {
            assert!(status.contains('3'), "{status}");
            assert!(log_tail.contains("bye"), "{log_tail}");
        }
        other => panic!("expected Exited, got {other:?}"),
    }
}

#[test]
fn process_signal_term_is_reported() {
    let mut p = Process::spawn("sleeper", sh("exec sleep 30")).unwrap();
    assert!(p.is_running());
    p.signal("TERM").unwrap();
    let status = p.wait_exit(Duration::from_secs(5)).unwrap();
    assert_eq!(status.signal(), Some(15));
    assert!(!p.is_running());
    // The pid is reaped and may be reused: signalling must refuse.
    assert!(matches!(p.signal("KILL"), Err(Error::NotRunning { .. })));
    assert!(matches!(
        p.signal("TERM; rm"),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn process_stop_and_cont() {
    let mut p = Process::spawn("stopped", sh("exec sleep 30")).unwrap();
    p.signal("SIGSTOP").unwrap();
    assert!(p.wait_exit(Duration::from_millis(200)).is_err());
    p.signal("CONT").unwrap();
    assert!(p.is_running());
    // Drop kills and reaps even a stopped child.
    p.signal("STOP").unwrap();
    let pid = p.pid();
    drop(p);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(stat.is_empty(), "pid {pid} remains: {stat}");
}

#[test]
fn spawn_failure_names_the_program() {
    let err = Process::spawn("ghost", Command::new("/nonexistent/testkit-ghost")).unwrap_err();
    assert!(err.to_string().contains("testkit-ghost"), "{err}");
}

#[test]
fn temp_dir_and_free_port() {
    let dir = TempDir::new("servers").unwrap();
    assert!(dir.path().is_dir());
    let port = free_port();
    assert_ne!(port, 0);
    // Nobody listens on a port that was just free.
    assert!(refuses(port));
}

#[test]
fn workspace_binary_reports_what_it_tried() {
    let err = workspace_binary("no-such-testkit-binary").unwrap_err();
    match err {
        Error::BinaryNotFound { name, tried } => {
            assert_eq!(name, "no-such-testkit-binary");
            assert!(tried.len() >= 2, "{tried:?}");
        }
        other => panic!("expected BinaryNotFound, got {other:?}"),
    }
}
