//! SIGTERM: stop accepting, finish the request in flight, close the pool,
//! exit 0. The slow request is real: PostgreSQL holds a table lock that the
//! stats query must wait for.

mod common;

use std::{process::Command, time::Duration};

use common::*;
use reqwest::StatusCode;
use testkit::{Process, bins::pg_binary};

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_zero() {
    let pg = Postgres::start().unwrap();
    let url = pg.create_database("drain").unwrap();
    let mut dp = start(&[("DATABASE_URL", &url), ("SHUTDOWN_TIMEOUT_SECS", "20")]);

    // A second session holds an exclusive lock on `emails` for 3 s.
    // Signed in before the lock: the login itself must not wait on it.
    let admin = authed(&dp).await;
    let mut locker = Command::new(pg_binary("psql").unwrap());
    locker.args([
        "-h",
        "127.0.0.1",
        "-p",
        &pg.port().to_string(),
        "-U",
        "postgres",
        "-d",
        "drain",
        "-c",
    ]);
    locker.arg("BEGIN; LOCK TABLE emails IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT;");
    let _locker = Process::spawn("locker", locker).unwrap();
    eventually(Duration::from_secs(10), "the lock to be held", || async {
        pg.psql(
            "drain",
            "SELECT count(*) FROM pg_locks WHERE relation = 'emails'::regclass AND mode = 'AccessExclusiveLock' AND granted",
        )
        .unwrap()
            == "1"
    })
    .await;

    // The stats request now waits for the lock.
    let in_flight = tokio::spawn(admin.get(dp.url("/api/stats")).send());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !in_flight.is_finished(),
        "the request should be waiting on the lock"
    );

    dp.process().signal("TERM").unwrap();
    dp.process()
        .wait_for_line(
            |l| l.contains("draining requests in flight"),
            Duration::from_secs(5),
        )
        .unwrap();
    // The listener closes promptly: new connections are refused while the
    // slow request is still in flight. (The accept loop sees the signal on
    // its own task, so allow it a moment.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::net::TcpStream::connect(dp.addr()).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "new connections are still accepted 2 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !in_flight.is_finished(),
        "the slow request should still be in flight"
    );

    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await["emails"]["total"]["all_time"], 0);

    let status = dp.process().wait_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(status.code(), Some(0));
}
