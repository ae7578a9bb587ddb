//! The cap on open connections (`MAX_CONNECTIONS`). A place is taken before
//! the TCP accept and travels with the socket until it is closed, so the cap
//! counts every socket, TLS handshakes in progress included; while all
//! places are taken the server does not accept, and new clients wait in the
//! kernel's backlog (or time out there) instead of costing us memory.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError},
    time::Instant,
};

use crate::telemetry::Metrics;

/// At most one warning this often while the cap is reached: under a flood
/// it is reached at every accept.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// A TCP listener that accepts no more than its cap of connections at once.
pub struct LimitedListener {
    tcp: TcpListener,
    places: Arc<Semaphore>,
    max: usize,
    metrics: Arc<Metrics>,
    warned: Option<Instant>,
}

impl LimitedListener {
    /// Accepts on `tcp`, at most `max` connections open at once.
    pub fn new(tcp: TcpListener, max: usize, metrics: Arc<Metrics>) -> LimitedListener {
        LimitedListener {
            tcp,
            places: Arc::new(Semaphore::new(max)),
            max,
            metrics,
            warned: None,
        }
    }

    /// Waits for a free place, then for a connection.
    async fn place(&mut self) -> OwnedSemaphorePermit {
        match self.places.clone().try_acquire_owned() {
            Ok(place) => return place,
            Err(TryAcquireError::Closed) => {}
            Err(TryAcquireError::NoPermits) => {
                self.metrics.http_connection_limit_reached_total.inc();
                if self.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    self.warned = Some(Instant::now());
                    tracing::warn!(
                        max_connections = self.max,
                        "MAX_CONNECTIONS connections are open: new ones wait until one closes"
                    );
                }
            }
        }
        match self.places.clone().acquire_owned().await {
            Ok(place) => place,
            // The semaphore is never closed; were it, accepting would stop.
            Err(_) => std::future::pending().await,
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = Counted<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let place = self.place().await;
            match self.tcp.accept().await {
                Ok((tcp, peer)) => {
                    // Small answers go out at once instead of waiting for
                    // more to fill a packet (Nagle).
                    let _ = tcp.set_nodelay(true);
                    return (Counted::new(tcp, place, &self.metrics), peer);
                }
                Err(e) => {
                    // Out of file descriptors, usually: wait, as axum does,
                    // and give the place back meanwhile.
                    drop(place);
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A socket holding one of the listener's places, given back (and the
/// `http_connections_open` gauge lowered) when it is dropped.
pub struct Counted<T> {
    io: T,
    _place: OwnedSemaphorePermit,
    _open: Open,
}

/// One `http_connections_open`, for as long as it lives.
struct Open(prometheus::IntGauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl<T> Counted<T> {
    fn new(io: T, place: OwnedSemaphorePermit, metrics: &Metrics) -> Counted<T> {
        let open = metrics.http_connections_open.clone();
        open.inc();
        Counted {
            io,
            _place: place,
            _open: Open(open),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

super::write_through!(Counted);
