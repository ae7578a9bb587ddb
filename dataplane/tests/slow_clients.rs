//! Slow clients cannot hold the server. Against the real binary, over HTTP
//! and HTTPS: a connection that sends half a request, or nothing, is closed
//! after `HEADER_READ_TIMEOUT_SECS`; one with no request in flight after
//! `IDLE_TIMEOUT_SECS` (HTTP/1.1 and HTTP/2), while a request that stays in
//! flight longer than that is served to its end; beyond `MAX_CONNECTIONS`
//! the server stops accepting until a connection closes. Other clients are
//! served all along.
//!
//! The long request is a real one: a login whose body the client uploads
//! slowly, a piece a second, as a client on a bad link would. The handler
//! waits for the whole body, so the request is in flight for as long as the
//! upload lasts, with nothing special on the server's side.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use common::*;
use futures::{Stream, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use testkit::{TempDir, certs::TestCa};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The header-read timeout the tests set, in seconds.
const HEADER_READ: u64 = 2;
/// The idle timeout the tests set, in seconds.
const IDLE: u64 = 2;
/// How late a close may come: the server's one second of grace after asking
/// a connection to close, and a busy test machine.
const MARGIN: Duration = Duration::from_secs(5);
/// Half a request: the headers never end.
const HALF_REQUEST: &[u8] =
    b"POST /api/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: appl";

/// Reads what the server sends until it closes the connection (end of
/// stream or reset); an error saying so if it is still open after `limit`.
async fn closed_within<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Result<Vec<u8>, String> {
    let mut answer = Vec::new();
    let read_to_close = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    match tokio::time::timeout(limit, read_to_close).await {
        Ok(()) => Ok(answer),
        Err(_) => Err(format!("still open after {limit:?}")),
    }
}

/// Asserts that each of `streams` (named) is closed by the server no earlier
/// than `timeout` after `opened` and no later than `timeout` + [`MARGIN`].
async fn all_closed<S: AsyncRead + Unpin>(
    opened: Instant,
    timeout: Duration,
    streams: Vec<(&str, &mut S)>,
) {
    for (name, stream) in streams {
        let left = (timeout + MARGIN).saturating_sub(opened.elapsed());
        let answer = closed_within(stream, left)
            .await
            .unwrap_or_else(|e| panic!("the {name} connection: {e}"));
        assert!(
            opened.elapsed() >= timeout,
            "the {name} connection was closed after {:?}, before the timeout",
            opened.elapsed()
        );
        assert!(
            !answer.starts_with(b"HTTP/1.1 200"),
            "the {name} connection got an answer: {}",
            String::from_utf8_lossy(&answer)
        );
    }
}

/// The test administrator's login, as JSON.
fn login_body() -> Vec<u8> {
    serde_json::json!({
        "username": testkit::ADMIN_USERNAME,
        "password": testkit::ADMIN_PASSWORD,
    })
    .to_string()
    .into_bytes()
}

/// A request body that the client sends a piece at a time.
type SlowBody = StreamBody<Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, Infallible>> + Send>>>;

/// A body that arrives in six pieces, one a second: longer than [`IDLE`]
/// and [`HEADER_READ`].
fn slow_body(bytes: Vec<u8>) -> SlowBody {
    let pieces: Vec<Bytes> = bytes
        .chunks(bytes.len().div_ceil(6))
        .map(Bytes::copy_from_slice)
        .collect();
    StreamBody::new(Box::pin(futures::stream::iter(pieces).then(
        |piece| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(Frame::data(piece))
        },
    )))
}

/// The test administrator's login, uploaded slowly.
fn slow_login(dp: &DataPlane) -> hyper::Request<SlowBody> {
    hyper::Request::post(format!("http://{}/api/auth/login", dp.addr()))
        .header("host", dp.addr())
        .header("content-type", "application/json")
        .body(slow_body(login_body()))
        .unwrap()
}

/// Checks the answer to [`slow_login`]: a session, after the whole upload.
async fn assert_signed_in<B>(response: hyper::Response<B>, started: Instant)
where
    B: hyper::body::Body,
    B::Error: std::fmt::Debug,
{
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let session: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(session["token"].is_string(), "{session}");
    assert!(
        started.elapsed() > Duration::from_secs(2 * IDLE.max(HEADER_READ)),
        "the upload took only {:?}: it must outlast the timeouts",
        started.elapsed()
    );
}

/// What a connection future of hyper's client says when it ends: the
/// server closed the connection (or, for HTTP/2, said goodbye and closed).
async fn connection_closed_within<F, E>(connection: F, limit: Duration, what: &str)
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Debug,
{
    match tokio::time::timeout(limit, connection).await {
        Ok(_) => {}
        Err(_) => panic!("the idle {what} connection is still open after {limit:?}"),
    }
}

/// After the slow login was answered on `connection`: it stays open while
/// idle for about the idle timeout, then the server closes it. `sender` is
/// held until then (a client whose last sender is gone closes by itself).
async fn closed_once_idle<S, E>(
    connection: tokio::task::JoinHandle<Result<(), E>>,
    sender: S,
    what: &str,
) where
    E: std::fmt::Debug + Send + 'static,
{
    let idle_from = Instant::now();
    connection_closed_within(
        async { connection.await.unwrap() },
        Duration::from_secs(IDLE) + MARGIN,
        what,
    )
    .await;
    drop(sender);
    // Closed by the idle timeout, not right after the answer (the server's
    // clock started a moment before `idle_from`).
    assert!(
        idle_from.elapsed() >= Duration::from_secs(IDLE) / 2,
        "closed {:?} after the answer",
        idle_from.elapsed()
    );
}

#[tokio::test]
async fn half_sent_and_silent_connections_are_closed_after_the_header_read_timeout() {
    let dp = start(&[("HEADER_READ_TIMEOUT_SECS", &HEADER_READ.to_string())]);
    let opened = Instant::now();
    let mut silent = TcpStream::connect(dp.addr()).await.unwrap();
    let mut half = TcpStream::connect(dp.addr()).await.unwrap();
    half.write_all(HALF_REQUEST).await.unwrap();
    // More of both kinds: the server keeps serving everyone else meanwhile.
    let mut held = Vec::new();
    for i in 0..20 {
        let mut stream = TcpStream::connect(dp.addr()).await.unwrap();
        if i % 2 == 0 {
            stream.write_all(HALF_REQUEST).await.unwrap();
        }
        held.push(stream);
    }
    for _ in 0..5 {
        let r = client().get(dp.url("/api/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }

    all_closed(
        opened,
        Duration::from_secs(HEADER_READ),
        vec![("silent", &mut silent), ("half-sent", &mut half)],
    )
    .await;
    for stream in &mut held {
        closed_within(stream, MARGIN).await.unwrap();
    }
    let closed = metric(
        &dp,
        "http_connections_timed_out_total{reason=\"header_read\"}",
    )
    .await;
    assert!(closed >= Some(22.0), "{closed:?}");
    assert_eq!(
        client()
            .get(dp.url("/api/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// The TLS test's files and a client config trusting its CA only.
struct Tls {
    _dir: TempDir,
    env: Vec<(&'static str, String)>,
    ca: String,
}

impl Tls {
    fn new() -> Tls {
        let ca = TestCa::new("slow clients CA").unwrap();
        let issued = ca.issue(&["localhost", "127.0.0.1"]).unwrap();
        let dir = TempDir::new("tls").unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        Tls {
            env: vec![
                ("TLS_CERT_FILE", cert.display().to_string()),
                ("TLS_KEY_FILE", key.display().to_string()),
            ],
            _dir: dir,
            ca: ca.pem,
        }
    }

    fn start(&self, extra: &[(&'static str, &str)]) -> DataPlane {
        let mut env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.extend_from_slice(extra);
        start(&env)
    }

    /// A TLS connection whose handshake is done, ALPN `http/1.1`.
    async fn connect(&self, dp: &DataPlane) -> tokio_rustls::client::TlsStream<TcpStream> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca.as_bytes()).unwrap())
            .unwrap();
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(dp.addr()).await.unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }

    fn client(&self) -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca.as_bytes()).unwrap()])
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }
}

#[tokio::test]
async fn over_https_half_sent_and_silent_connections_are_closed_after_the_header_read_timeout() {
    let tls = Tls::new();
    let dp = tls.start(&[("HEADER_READ_TIMEOUT_SECS", &HEADER_READ.to_string())]);
    let opened = Instant::now();
    // Silent before the handshake, silent after it, half a request after it.
    let mut no_hello = TcpStream::connect(dp.addr()).await.unwrap();
    let mut silent = tls.connect(&dp).await;
    let mut half = tls.connect(&dp).await;
    half.write_all(HALF_REQUEST).await.unwrap();
    half.flush().await.unwrap();
    for _ in 0..5 {
        let r = tls
            .client()
            .get(dp.url("/api/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    all_closed(
        opened,
        Duration::from_secs(HEADER_READ),
        vec![("silent TLS", &mut silent), ("half-sent TLS", &mut half)],
    )
    .await;
    // The handshake gets the same time as the headers.
    all_closed(
        opened,
        Duration::from_secs(HEADER_READ),
        vec![("silent TCP (no TLS hello)", &mut no_hello)],
    )
    .await;
    assert_eq!(
        tls.client()
            .get(dp.url("/api/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn over_http1_a_slow_upload_outlasting_the_idle_timeout_is_served_then_the_idle_connection_closes()
 {
    // The upload outlasts the header-read timeout too: it is a body, not headers.
    let dp = start(&[
        ("IDLE_TIMEOUT_SECS", &IDLE.to_string()),
        ("HEADER_READ_TIMEOUT_SECS", &HEADER_READ.to_string()),
    ]);
    let tcp = TcpStream::connect(dp.addr()).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);

    let started = Instant::now();
    let response = sender.send_request(slow_login(&dp)).await.unwrap();
    assert_eq!(response.version(), hyper::Version::HTTP_11);
    assert_signed_in(response, started).await;

    closed_once_idle(connection, sender, "HTTP/1.1").await;
}

#[tokio::test]
async fn over_http2_a_slow_upload_outlasting_the_idle_timeout_is_served_then_the_idle_connection_closes()
 {
    // The upload outlasts the header-read timeout too: it is a body, not headers.
    let dp = start(&[
        ("IDLE_TIMEOUT_SECS", &IDLE.to_string()),
        ("HEADER_READ_TIMEOUT_SECS", &HEADER_READ.to_string()),
    ]);
    let tcp = TcpStream::connect(dp.addr()).await.unwrap();
    // HTTP/2 with prior knowledge (h2c): the server tells the protocols apart
    // by the connection preface, as it does after ALPN over TLS.
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);

    let started = Instant::now();
    let response = sender.send_request(slow_login(&dp)).await.unwrap();
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    assert_signed_in(response, started).await;

    closed_once_idle(connection, sender, "HTTP/2").await;
    let closed = metric(&dp, "http_connections_timed_out_total{reason=\"idle\"}").await;
    assert!(closed >= Some(1.0), "{closed:?}");
}

/// With `MAX_CONNECTIONS=2` and two connections held by slow clients
/// (sending `held_sends`), a third client is not served until the server
/// has closed one of them, and then it is.
async fn a_third_client_waits_for_a_free_place(
    dp: &DataPlane,
    held_sends: &[u8],
    client: reqwest::Client,
) {
    let opened = Instant::now();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(dp.addr()).await.unwrap();
        stream.write_all(held_sends).await.unwrap();
        held.push(stream);
    }
    // Connections are accepted in the order they arrive: the third is not.
    let third = tokio::spawn(client.get(dp.url("/api/health")).send());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served while MAX_CONNECTIONS=2 were held"
    );

    let timeout = Duration::from_secs(HEADER_READ_FOR_CAP);
    let answered = tokio::time::timeout((timeout + MARGIN).saturating_sub(opened.elapsed()), third)
        .await
        .expect("the third client was not served after the held connections timed out")
        .unwrap()
        .unwrap();
    assert_eq!(answered.status(), 200);
    assert!(
        opened.elapsed() >= timeout,
        "served before a held connection was closed"
    );
    for stream in &mut held {
        closed_within(stream, MARGIN).await.unwrap();
    }
}

/// The header-read timeout of the cap tests: long enough that the held
/// connections are surely still open when the third client is checked.
const HEADER_READ_FOR_CAP: u64 = 4;

#[tokio::test]
async fn beyond_max_connections_the_server_stops_accepting_until_one_closes() {
    let dp = start(&[
        ("MAX_CONNECTIONS", "2"),
        ("HEADER_READ_TIMEOUT_SECS", &HEADER_READ_FOR_CAP.to_string()),
    ]);
    a_third_client_waits_for_a_free_place(&dp, HALF_REQUEST, client()).await;
    // And it serves as before.
    for _ in 0..3 {
        assert_eq!(
            client()
                .get(dp.url("/api/health"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
}

#[tokio::test]
async fn over_https_beyond_max_connections_the_server_stops_accepting_until_one_closes() {
    let tls = Tls::new();
    let dp = tls.start(&[
        ("MAX_CONNECTIONS", "2"),
        ("HEADER_READ_TIMEOUT_SECS", &HEADER_READ_FOR_CAP.to_string()),
    ]);
    // Held before their handshake: the place is taken from the TCP accept on.
    a_third_client_waits_for_a_free_place(&dp, b"", tls.client()).await;
    for _ in 0..3 {
        assert_eq!(
            tls.client()
                .get(dp.url("/api/health"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
}
