//! The HTTP/1.1 transport: our own accept loop over hyper (instead of `axum::serve`), so that
//!
//! - the transport's limits sit far above the edge layer's (`plumbing::edge`: 64 headers, 16 KiB
//!   of them, an 8 KiB request target): every request between the two is answered by our
//!   middleware with the JSON error shape and `Connection: close`;
//! - the few requests the transport itself must refuse — more than [`MAX_HEADERS`] headers, a
//!   head over [`MAX_HEAD_BYTES`], a request target over hyper's fixed 64 KiB, a head that is not
//!   HTTP — get that shape too: hyper answers them itself with a bodiless 400/414/431, which
//!   [`JsonRefusals`] recognises on the way out and replaces with the same answer plus a JSON body;
//! - a client that trickles its head, or idles between requests, is cut off after
//!   [`Bounds::head_timeout`] (slowloris), and at most [`Bounds::max_connections`] are open at once
//!   (one more gets a 503 with our JSON shape and is closed).
//!
//! Graceful shutdown: on the signal the listener stops accepting and every connection finishes
//! its request in flight before the future returns, for at most [`Bounds::shutdown_grace`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tower::{Layer, Service};

/// More headers than this are refused by the transport (our edge refuses more than 64 first).
pub const MAX_HEADERS: usize = 512;
/// The largest request head the transport reads (our edge refuses more than 16 KiB of headers
/// and an 8 KiB target first).
pub const MAX_HEAD_BYTES: usize = 256 * 1024;
/// How long a client may take to send a request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(20);

/// The transport's own bounds (`serve --max-http-connections`, `--head-timeout`,
/// `--shutdown-grace`).
#[derive(Debug, Clone)]
pub struct Bounds {
    /// Open client connections at most; one more is answered 503 `too_many_connections` with
    /// `Retry-After` and closed, so a flood of idle or half-sent connections cannot exhaust the
    /// process's file descriptors.
    pub max_connections: usize,
    /// How long a client may take to send a request head, counted from the moment the server
    /// waits for one: a connection that sends half a request, or sits idle between requests,
    /// is closed after this long (slowloris).
    pub head_timeout: Duration,
    /// How long shutdown waits for requests in flight before it closes what is left.
    pub shutdown_grace: Duration,
    /// Terminate TLS here (`--tls-cert`/`--tls-key`); plain HTTP when `None`. A handshake must
    /// finish within `head_timeout`.
    pub tls: Option<std::sync::Arc<super::tls::Tls>>,
}

impl Default for Bounds {
    fn default() -> Self {
        Self { max_connections: 4096, head_timeout: HEAD_TIMEOUT, shutdown_grace: Duration::from_secs(10), tls: None }
    }
}

/// Seconds a client refused for [`Bounds::max_connections`] is asked to wait.
pub const BUSY_RETRY_AFTER: u64 = 1;

/// Serves `app` on `listener` until `shutdown` completes, then waits for the requests in flight,
/// with the default [`Bounds`].
///
/// # Errors
/// Never for a single connection's failure (logged at debug); the loop ends only on `shutdown`.
pub async fn serve(listener: TcpListener, app: Router, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    serve_with(listener, app, shutdown, Bounds::default()).await
}

/// [`serve`] with the given [`Bounds`].
///
/// # Errors
/// Never for a single connection's failure (logged at debug); the loop ends only on `shutdown`.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
    bounds: Bounds,
) -> io::Result<()> {
    let mut make = app.into_make_service_with_connect_info::<SocketAddr>();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES)
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.head_timeout);
    let graceful = GracefulShutdown::new();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(bounds.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    if !matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset) {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%remote, limit = bounds.max_connections, "connection refused: too many open connections");
            tokio::spawn(refuse_busy(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok(svc) = make.call(remote).await;
        let watcher = graceful.watcher();
        let http = http.clone();
        match &bounds.tls {
            None => {
                tokio::spawn(async move {
                    serve_io(http, stream, svc, watcher, remote).await;
                    drop(slot);
                });
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                let handshake_bound = bounds.head_timeout;
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_bound, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let svc = axum::Extension(super::client::ServedOverTls).layer(svc);
                            serve_io(http, stream, svc, watcher, remote).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, %remote, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                    drop(slot);
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(bounds.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(grace = ?bounds.shutdown_grace, "requests still in flight after the shutdown grace; closing them");
    }
    Ok(())
}

/// Serves one connection, plain or already through its TLS handshake, until it ends (or
/// shutdown's grace runs out): hyper's refusals get the JSON shape on the way out.
async fn serve_io<I, S>(
    http: hyper::server::conn::http1::Builder,
    io: I,
    svc: S,
    watcher: hyper_util::server::graceful::Watcher,
    remote: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<
            axum::http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = http.serve_connection(TokioIo::new(JsonRefusals::new(io)), TowerToHyperService::new(svc));
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, %remote, "connection ended with an error");
    }
}

/// Answers a connection over the limit with 503 and our JSON error shape, then closes it. Bounded
/// in time: a client that does not read is dropped.
async fn refuse_busy(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = r#"{"error":{"code":"too_many_connections","message":"the server has too many open connections; try again shortly"}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: {BUSY_RETRY_AFTER}\r\nconnection: close\r\nx-content-type-options: nosniff\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// A connection's byte stream that replaces hyper's own bodiless refusals (written when a request
/// head cannot be parsed or is over the transport's limits, just before the connection closes)
/// with the same status and our JSON error body. Everything else passes through untouched.
///
/// The recognised answer is exact: a whole write that is only a response head, status 400, 414 or
/// 431, `content-length: 0`. Our own handlers never answer those statuses without a body, so
/// nothing of theirs can be mistaken for it.
pub struct JsonRefusals<T> {
    inner: T,
    /// A replacement being written: the bytes and how many are out.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T> JsonRefusals<T> {
    pub fn new(inner: T) -> Self {
        Self { inner, pending: None }
    }
}

/// hyper's automatic answer, rewritten with the JSON error shape; `None` for anything else.
#[must_use]
pub fn rewrite_automatic_answer(written: &[u8]) -> Option<Vec<u8>> {
    if written.len() > 512 || !written.ends_with(b"\r\n\r\n") {
        return None;
    }
    let head = std::str::from_utf8(written).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    use crate::plumbing::edge::{MAX_HEADER_BYTES, MAX_HEADERS as EDGE_HEADERS, MAX_URI_BYTES};
    let (code, message) = match status_line.get(..13)? {
        "HTTP/1.1 400 " => ("bad_request", "the request is not well-formed HTTP/1.1".to_owned()),
        "HTTP/1.1 414 " => ("uri_too_long", format!("the request target is too long (at most {MAX_URI_BYTES} bytes)")),
        "HTTP/1.1 431 " => (
            "headers_too_large",
            format!("too many or too large request headers (at most {EDGE_HEADERS} headers, {MAX_HEADER_BYTES} bytes)"),
        ),
        _ => return None,
    };
    let mut date = None;
    let mut bodiless = false;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" if value.trim() == "0" => bodiless = true,
            "date" => date = Some(value.trim()),
            "connection" => {}
            _ => return None,
        }
    }
    if !bodiless {
        return None;
    }
    let body = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
    let mut out = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\
         x-content-type-options: nosniff\r\ncontent-security-policy: default-src 'none'; frame-ancestors 'none'\r\n",
        body.len()
    );
    if let Some(d) = date {
        out.push_str(&format!("date: {d}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    Some(out.into_bytes())
}

impl<T: AsyncWrite + Unpin> JsonRefusals<T> {
    /// Writes out a pending replacement; `Ready(Ok)` once nothing is pending.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            if *done == bytes.len() {
                self.pending = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *done += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonRefusals<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonRefusals<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        if let Some(replacement) = rewrite_automatic_answer(buf) {
            // The whole original counts as written; the replacement goes out in its place.
            self.pending = Some((replacement, 0));
            let _ = self.drain(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next())
            && rewrite_automatic_answer(only).is_some()
        {
            return self.poll_write(cx, only);
        }
        if self.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite_automatic_answer;

    #[test]
    fn only_hypers_bodiless_refusals_are_rewritten() {
        let auto = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 04:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite_automatic_answer(auto).expect("rewritten")).expect("utf-8");
        assert!(out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"));
        assert!(out.contains("connection: close\r\n") && out.contains("date: Mon, 07 Dec 2026 04:00:00 GMT\r\n"));
        assert!(out.ends_with(r#"{"error":{"code":"headers_too_large","message":"too many or too large request headers (at most 64 headers, 16384 bytes)"}}"#));
        for other in [
            // Our own answers carry a body, other statuses, other headers: untouched.
            &b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\ncontent-length: 60\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-other: 1\r\n\r\n",
            b"{\"a\":1}",
        ] {
            assert!(rewrite_automatic_answer(other).is_none(), "{}", String::from_utf8_lossy(other));
        }
    }
}
