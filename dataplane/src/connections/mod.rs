//! Client connections: our own accept loop in place of `axum::serve`, so
//! that a slow or silent client cannot hold the server.
//!
//! - [`limit`]: at most `MAX_CONNECTIONS` sockets open; beyond that the
//!   server stops accepting until one closes.
//! - Each connection runs in its own task with a watchdog ([`activity`]):
//!   a connection with no request in flight is closed after
//!   `HEADER_READ_TIMEOUT_SECS` before its first request (it said nothing,
//!   or half a request) or while the next one trickles in (HTTP/1.1), and
//!   after `IDLE_TIMEOUT_SECS` otherwise (HTTP/1.1 keep-alive and HTTP/2
//!   alike). A request in flight is never cut here, however long it takes.
//! - Closing is polite first (hyper's graceful shutdown: HTTP/2 says
//!   GOAWAY, HTTP/1.1 closes once idle) and forced a second later if the
//!   connection still has no request in flight (half a request: hyper
//!   waits for the rest of it otherwise).
//! - SIGTERM: stop accepting, close idle connections, let requests in flight
//!   finish for up to `SHUTDOWN_TIMEOUT_SECS`.
//!
//! Why not hyper's own `header_read_timeout`: it starts again as soon as a
//! keep-alive connection falls idle, so it would close idle HTTP/1.1
//! connections after 10 s. Proxies in front of us (ingress-nginx, cloud load
//! balancers) keep theirs for 60 s and more; a backend that closes first
//! makes them fail a request now and then with a 502. So the idle clock and
//! the header clock are ours: the header clock starts with the first byte
//! of a request (or when the connection opens).
//!
//! Answers hyper makes by itself (400 for a malformed request, 431 for
//! oversized headers) never reach the router, so they do not carry the
//! security headers of `middleware::security_headers`: hyper 1 offers no
//! hook for them. They have no body, and the connection is closed after
//! them; see `docs/security.md` ("Slow clients cannot hold the server").

/// `AsyncWrite` for a wrapper of ours whose `io` field does the writing: the
/// wrappers here watch reads or hold a place, and write straight through.
macro_rules! write_through {
    ($wrapper:ident) => {
        impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<T> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.io.is_write_vectored()
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
            }
        }
    };
}
use write_through;

mod activity;
mod limit;

use std::{convert::Infallible, net::SocketAddr, pin::pin, sync::Arc};

use axum::{Router, extract::ConnectInfo, serve::Listener};
use futures::future::BoxFuture;
use hyper::{Request, Response, body::Incoming};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::watch,
    time::{Duration, Instant},
};
use tower::ServiceExt;

use self::activity::{Activity, Finishing, Watched};
pub use self::limit::{Counted, LimitedListener};
use crate::{config::ConnectionLimits, shutdown::Shutdown, telemetry::Metrics};

/// How long a connection asked to close politely gets to do so while it has
/// no request in flight, before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What every connection task shares.
struct Shared {
    builder: Builder<TokioExecutor>,
    router: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
}

/// Serves `router` on `listener` ([`LimitedListener`], or the TLS listener
/// over it) until `shutdown` fires; then stops accepting and gives requests
/// in flight up to `grace` to finish.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    grace: Duration,
) where
    L: Listener<Addr = SocketAddr>,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = Arc::new(Shared {
        builder: builder(),
        router,
        limits,
        metrics,
    });
    // Every connection task holds a receiver; when all are gone, every
    // connection is closed.
    let (open_tx, open_rx) = watch::channel(());
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.wait() => break,
        };
        tokio::spawn(connection(
            io,
            peer,
            shared.clone(),
            shutdown.clone(),
            open_rx.clone(),
        ));
    }
    // Closes the listening socket: new connections are refused from now on.
    drop(listener);
    drop(open_rx);
    tracing::info!(
        grace_seconds = grace.as_secs(),
        "shutting down: draining requests in flight"
    );
    if tokio::time::timeout(grace, open_tx.closed()).await.is_err() {
        tracing::warn!(
            "requests still in flight after the grace period (SHUTDOWN_TIMEOUT_SECS); stopping anyway"
        );
    }
}

/// HTTP/1.1 and HTTP/2, told apart by the first bytes (the HTTP/2 preface),
/// after ALPN over TLS as in plain text.
fn builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    // Ours instead (see the module doc). No timer is set, so hyper would not
    // run it anyway; said explicitly so that adding a timer does not turn it on.
    builder.http1().header_read_timeout(None);
    builder
}

/// Serves one connection until it closes, is closed by its watchdog, or the
/// server stops.
async fn connection<I>(
    io: I,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Shutdown,
    _open: watch::Receiver<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let service = Counting {
        router: shared.router.clone(),
        peer,
        activity: activity.clone(),
    };
    let io = TokioIo::new(Watched::new(io, activity.clone()));
    let mut conn = pin!(shared.builder.serve_connection(io, service));
    // When the connection was asked to close.
    let mut closing: Option<Instant> = None;
    let mut stopping = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = shutdown.wait(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
                closing.get_or_insert_with(Instant::now);
            }
            reason = activity.expired(&shared.limits), if closing.is_none() => {
                shared
                    .metrics
                    .http_connections_timed_out_total
                    .with_label_values(&[reason.as_str()])
                    .inc();
                tracing::debug!(%peer, reason = reason.as_str(), "closing a connection: timeout");
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            () = activity.quiet_for(CLOSE_GRACE, closing.unwrap_or_else(Instant::now)),
                if closing.is_some() => {
                // Still open with nothing in flight: dropping `conn` closes it.
                return;
            }
        }
    }
}

/// The router, for one connection: gives handlers the peer's address
/// (`ConnectInfo`, as `into_make_service_with_connect_info` did) and counts
/// each request in flight for the watchdog.
#[derive(Clone)]
struct Counting {
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for Counting {
    type Response = Response<Finishing>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.start(request.version());
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(request).await?;
            Ok(response.map(|body| Finishing::new(body, in_flight)))
        })
    }
}
