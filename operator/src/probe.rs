//! `operator probe URL`: asks an operator's `/readyz` (or any plain-HTTP
//! URL) whether it answers, from inside its own image. The chart's
//! `helm test` hook runs it: the image has no shell and no curl, and the
//! whole exchange is one GET, so it is written here rather than pulled in
//! as an HTTP client.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use url::Url;

/// Why a probe did not get a 2xx answer.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The URL is not `http://host[:port]/path`.
    #[error("{0} is not a plain http:// URL with a host")]
    NotHttp(Url),
    /// Connecting, writing or reading failed.
    #[error("{url}: {source}")]
    Io {
        /// What was probed.
        url: Url,
        /// The failure.
        source: std::io::Error,
    },
    /// Nothing came back in time.
    #[error("{0}: no answer within {1:?}")]
    Timeout(Url, Duration),
    /// An answer that is not HTTP.
    #[error("{0}: the answer is not HTTP: {1:?}")]
    NotHttpAnswer(Url, String),
    /// An answer other than 2xx.
    #[error("{0} answered {1}")]
    Status(Url, u16),
}

/// GETs `url` until it answers 2xx or `patience` has passed, and returns
/// the last failure if it never did.
///
/// Asking again is what a check run right after an install needs: the
/// Service's forwarding rules are written by kube-proxy a moment after the
/// Service exists, and a new operator answers 503 until its first sync.
pub async fn probe_within(url: &Url, patience: Duration) -> Result<u16, ProbeError> {
    const PAUSE: Duration = Duration::from_secs(1);
    const ATTEMPT: Duration = Duration::from_secs(5);
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let answer = probe(url, left.min(ATTEMPT)).await;
        match answer {
            Err(ProbeError::NotHttp(_)) => return answer,
            Err(_) if left > PAUSE => tokio::time::sleep(PAUSE).await,
            _ => return answer,
        }
    }
}

/// GETs `url` once and succeeds on a 2xx status.
pub async fn probe(url: &Url, timeout: Duration) -> Result<u16, ProbeError> {
    match tokio::time::timeout(timeout, get(url)).await {
        Err(_) => Err(ProbeError::Timeout(url.clone(), timeout)),
        Ok(Err(e)) => Err(e),
        Ok(Ok(status)) if (200..300).contains(&status) => Ok(status),
        Ok(Ok(status)) => Err(ProbeError::Status(url.clone(), status)),
    }
}

async fn get(url: &Url) -> Result<u16, ProbeError> {
    let (Some(host), Some(port), "http") =
        (url.host_str(), url.port_or_known_default(), url.scheme())
    else {
        return Err(ProbeError::NotHttp(url.clone()));
    };
    let io = |source| ProbeError::Io {
        url: url.clone(),
        source,
    };
    let mut stream = TcpStream::connect((host, port)).await.map_err(io)?;
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    // The status line is all we read: `HTTP/1.1 200 OK`.
    let mut head = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    while head.len() < 256 && !head.ends_with(b"\r\n") {
        if stream.read(&mut byte).await.map_err(io)? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head).trim_end().to_owned();
    let mut words = line.split(' ');
    match (words.next(), words.next().map(str::parse::<u16>)) {
        (Some(version), Some(Ok(status))) if version.starts_with("HTTP/") => Ok(status),
        _ => Err(ProbeError::NotHttpAnswer(url.clone(), line)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve(answer: &'static str) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"GET /readyz HTTP/1.1\r\n"));
            s.write_all(answer.as_bytes()).await.unwrap();
        });
        Url::parse(&format!("http://{addr}/readyz")).unwrap()
    }

    #[tokio::test]
    async fn a_2xx_passes_and_anything_else_is_named() {
        let second = Duration::from_secs(1);
        let ok = serve("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        assert_eq!(probe(&ok, second).await.unwrap(), 200);
        let down = serve("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let e = probe(&down, second).await.unwrap_err().to_string();
        assert!(e.ends_with("/readyz answered 503"), "{e}");
        let garbage = serve("SSH-2.0-OpenSSH\r\n").await;
        assert!(matches!(
            probe(&garbage, second).await,
            Err(ProbeError::NotHttpAnswer(..))
        ));
        let https = Url::parse("https://127.0.0.1:1/readyz").unwrap();
        assert!(matches!(
            probe_within(&https, 3 * second).await,
            Err(ProbeError::NotHttp(_))
        ));
        assert!(matches!(
            probe(&https, second).await,
            Err(ProbeError::NotHttp(_))
        ));
    }

    #[tokio::test]
    async fn probe_within_asks_again_until_the_server_answers() {
        // A port nobody listens on yet: refused at first, as a Service is
        // before kube-proxy has written its rules.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = Url::parse(&format!("http://{addr}/readyz")).unwrap();
        assert!(matches!(
            probe(&url, Duration::from_secs(1)).await,
            Err(ProbeError::Io { .. })
        ));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        });
        assert_eq!(
            probe_within(&url, Duration::from_secs(20)).await.unwrap(),
            200
        );
        // Patience spent: the last failure is what is reported.
        let gone = Url::parse(&format!("http://{addr}/readyz")).unwrap();
        let e = probe_within(&gone, Duration::from_secs(2)).await;
        assert!(matches!(e, Err(ProbeError::Io { .. })), "{e:?}");
    }
}
