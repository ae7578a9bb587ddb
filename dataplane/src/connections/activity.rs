//! What one connection is doing, for its watchdog: how many requests are in
//! flight, since when none is, and since when the bytes of the next one
//! have been arriving.
//!
//! A request is in flight from the moment its headers are in (hyper calls
//! the service) until its response body is dropped: sent to the end, or
//! abandoned by the client. A streamed AI answer or a slow upload is in
//! flight for as long as it lasts, and no timeout here cuts it; bounding it
//! is the job of `REQUEST_TIMEOUT_SECS` (and `AI_TIMEOUT_SECS` for a
//! streamed generation).
//!
//! The traffic never wakes the watchdog: it looks at the state when its own
//! clock says so, at the deadline it computed and at least every `recheck`
//! (the shortest of its timeouts). Whatever happens in between only moves a
//! deadline to at least `recheck` after the last look (a request ending
//! starts an idle clock, the first byte of the next one a header clock), so
//! the next look still comes before it and no deadline is missed or late.
//! Waking the watchdog on every change instead cost each request three
//! wake-ups of its connection's task and three timers set and cancelled: a
//! third of what `GET /api/health` cost the data plane beyond a bare axum
//! server (docs/benchmarks.md, "AI gateway at load").

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll},
};

use axum::body::Body;
use hyper::{
    Version,
    body::{Bytes, Frame, SizeHint},
};
use tokio::{
    io::{AsyncRead, ReadBuf},
    time::{Duration, Instant},
};

use crate::config::ConnectionLimits;

/// Why a connection was closed by its watchdog (the `reason` label of
/// `http_connections_timed_out_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No complete request within `HEADER_READ_TIMEOUT_SECS`.
    HeaderRead,
    /// No request for `IDLE_TIMEOUT_SECS`.
    Idle,
}

impl Reason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::HeaderRead => "header_read",
            Reason::Idle => "idle",
        }
    }
}

/// One connection's activity, shared by its socket, its service, the
/// response bodies in flight and its watchdog.
pub struct Activity {
    state: Mutex<State>,
}

struct State {
    in_flight: usize,
    /// Requests started so far.
    requests: u64,
    /// HTTP/2 sends frames of its own between requests (window updates,
    /// pings), so arriving bytes do not mean a request is arriving.
    http2: bool,
    /// When the last request in flight ended (or the connection opened).
    idle_since: Instant,
    /// When the first byte arrived since then: the next request is coming.
    arriving_since: Option<Instant>,
}

impl Activity {
    /// A connection that has just opened.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            state: Mutex::new(State {
                in_flight: 0,
                requests: 0,
                http2: false,
                idle_since: Instant::now(),
                arriving_since: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is a few plain assignments, which a panic cannot
        // leave half-done, so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request's headers are in; it counts as in flight until the
    /// returned guard is dropped.
    pub fn start(self: &Arc<Self>, version: Version) -> InFlight {
        let mut state = self.lock();
        state.in_flight += 1;
        state.requests += 1;
        state.http2 |= version == Version::HTTP_2;
        state.arriving_since = None;
        InFlight(self.clone())
    }

    fn bytes_arrived(&self) {
        let mut state = self.lock();
        if state.in_flight == 0 && state.arriving_since.is_none() {
            state.arriving_since = Some(Instant::now());
        }
    }

    /// Resolves once the connection has had no request in flight for too
    /// long: before its first request, `header_read_timeout` from its
    /// opening (a client that says nothing, or half a request); after it,
    /// `idle_timeout` from the last response, or `header_read_timeout` from
    /// the first byte of a next request that never completes (HTTP/1.1).
    pub async fn expired(&self, limits: &ConnectionLimits) -> Reason {
        let recheck = limits.header_read_timeout.min(limits.idle_timeout);
        self.wait_until(recheck, |state| {
            if state.in_flight > 0 {
                return None;
            }
            if state.requests == 0 {
                return Some((
                    state.idle_since + limits.header_read_timeout,
                    Reason::HeaderRead,
                ));
            }
            match state.arriving_since {
                Some(since) if !state.http2 => {
                    Some((since + limits.header_read_timeout, Reason::HeaderRead))
                }
                _ => Some((state.idle_since + limits.idle_timeout, Reason::Idle)),
            }
        })
        .await
    }

    /// Resolves once no request has been in flight for `grace`, counted
    /// from `since` at the earliest.
    pub async fn quiet_for(&self, grace: Duration, since: Instant) {
        self.wait_until(grace, |state| {
            (state.in_flight == 0).then(|| (state.idle_since.max(since) + grace, ()))
        })
        .await;
    }

    /// Waits until the deadline `deadline` computes from the state has
    /// passed, looking again at the latest every `recheck` (`None`: no
    /// deadline while the state stays as it is). See the module doc for why
    /// `recheck` must be no longer than any timeout `deadline` adds.
    async fn wait_until<R>(
        &self,
        recheck: Duration,
        deadline: impl Fn(&State) -> Option<(Instant, R)>,
    ) -> R {
        loop {
            let next = deadline(&self.lock());
            let now = Instant::now();
            let wake = match next {
                Some((at, result)) if at <= now => return result,
                Some((at, _)) => at.min(now + recheck),
                None => now + recheck,
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// A request in flight; dropping it ends the request for the watchdog.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
            state.arriving_since = None;
        }
    }
}

/// A response body that keeps its request in flight until hyper drops it:
/// after the last byte was handed to the socket, or when the client left.
pub struct Finishing {
    body: Body,
    _in_flight: InFlight,
}

impl Finishing {
    /// `body`, keeping `in_flight` alive as long as it is.
    pub fn new(body: Body, in_flight: InFlight) -> Finishing {
        Finishing {
            body,
            _in_flight: in_flight,
        }
    }
}

impl hyper::body::Body for Finishing {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The connection's socket, noting when bytes arrive.
pub struct Watched<T> {
    io: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    /// `io`, reporting to `activity`.
    pub fn new(io: T, activity: Arc<Activity>) -> Watched<T> {
        Watched { io, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_arrived();
        }
        polled
    }
}

super::write_through!(Watched);

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 8,
        }
    }

    async fn expires_after(activity: &Activity) -> (Reason, Duration) {
        let start = Instant::now();
        let reason = activity.expired(&limits()).await;
        (reason, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_gets_the_header_read_timeout() {
        let activity = Activity::new();
        assert_eq!(
            expires_after(&activity).await,
            (Reason::HeaderRead, Duration::from_secs(10))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_never_expires_and_idling_starts_when_it_ends() {
        let activity = Activity::new();
        let request = activity.start(Version::HTTP_11);
        let watchdog = {
            let activity = activity.clone();
            tokio::spawn(async move { expires_after(&activity).await })
        };
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!watchdog.is_finished());
        drop(request);
        assert_eq!(
            watchdog.await.unwrap(),
            (Reason::Idle, Duration::from_secs(675))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn over_http1_the_first_byte_of_a_next_request_starts_the_header_clock() {
        let activity = Activity::new();
        drop(activity.start(Version::HTTP_11));
        tokio::time::sleep(Duration::from_secs(30)).await;
        activity.bytes_arrived();
        assert_eq!(
            expires_after(&activity).await,
            (Reason::HeaderRead, Duration::from_secs(10))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn over_http2_frames_between_requests_do_not() {
        let activity = Activity::new();
        drop(activity.start(Version::HTTP_2));
        tokio::time::sleep(Duration::from_secs(30)).await;
        activity.bytes_arrived();
        assert_eq!(
            expires_after(&activity).await,
            (Reason::Idle, Duration::from_secs(45))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_for_waits_out_a_request_in_flight() {
        let activity = Activity::new();
        let request = activity.start(Version::HTTP_11);
        let since = Instant::now();
        let quiet = {
            let activity = activity.clone();
            tokio::spawn(async move {
                activity.quiet_for(Duration::from_secs(1), since).await;
                since.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(request);
        assert_eq!(quiet.await.unwrap(), Duration::from_secs(6));
    }
}
