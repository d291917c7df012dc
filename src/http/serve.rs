//! Serving the router over HTTP or HTTPS with limits: a connection cap, a header-read timeout
//! (which also ends idle keep-alive connections), an idle timeout on the socket and a body
//! timeout (in `buffer_body` in the parent module). `axum::serve` has none of these, and without them a few
//! hundred idle clients used up the process's file descriptors, which media sockets and
//! session writes need too.
//!
//! One accept loop; each accepted connection takes a permit of a semaphore of
//! [`HttpLimits::max_connections`] and is served by hyper's HTTP/1 connection in its own task
//! (TLS handshake included, bounded by the header timeout). Beyond the cap a plain-HTTP
//! connection is answered `503` with the JSON error dict and closed (at most
//! [`REFUSING_AT_ONCE`] such answers in flight; beyond that it is closed at once). Running out
//! of descriptors in `accept` pauses the loop briefly instead of spinning.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;

use crate::config::HttpLimits;
use crate::metrics::METRICS;
use crate::protocol::{self, ErrorType, WireError};

/// Connections over the cap being answered 503 at once; more are closed without an answer.
pub const REFUSING_AT_ONCE: usize = 64;
/// How long a refused connection is given to send its request and read the 503.
const REFUSE_TIME: Duration = Duration::from_secs(1);
/// A refused client silent this long is done sending.
const DRAIN_PAUSE: Duration = Duration::from_millis(200);
/// How long open connections may take to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The pause after `accept` failed for want of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` (over TLS with `tls`) within `limits`, until `stop` resolves;
/// then lets open connections finish their requests (up to 5 s).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: HttpLimits,
    stop: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(REFUSING_AT_ONCE));
    let (stopping, stop_rx) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refuse(tcp, peer, tls.is_none(), &refusing);
            continue;
        };
        let (app, builder, tls, stop_rx) = (app.clone(), builder.clone(), tls.clone(), stop_rx.clone());
        let (handshake, idle) = (limits.header_timeout, limits.idle_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            let _open = OpenConnection::new();
            let _ = tcp.set_nodelay(true);
            match tls {
                None => serve_connection(Idle::new(tcp, idle), app, &builder, stop_rx).await,
                Some(acceptor) => match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => serve_connection(Idle::new(stream, idle), app, &builder, stop_rx).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    // Every permit back = every connection finished.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, permits.acquire_many(all)).await;
    Ok(())
}

/// One connection, until it ends or the server stops (then gracefully: the request in
/// progress is answered, then the connection closes).
async fn serve_connection<I>(io: I, app: Router, builder: &http1::Builder, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Upgrades: `/ws` takes the socket over (its own limits, `ws.rs`; the idle timeout stays).
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app)).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
}

/// Counts open connections in `exphub_http_connections`.
struct OpenConnection;

impl OpenConnection {
    fn new() -> Self {
        METRICS.http_connections.set(METRICS.http_connections.get() + 1);
        OpenConnection
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        METRICS.http_connections.set(METRICS.http_connections.get() - 1);
    }
}

/// `accept` failed: out of descriptors (pause, so the loop does not spin while they are
/// gone) or a connection that died in the backlog (go on).
async fn accept_failed(e: io::Error) {
    let exhausted = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM));
    if exhausted {
        if once_per_10s(&LAST_ACCEPT_WARNING) {
            tracing::error!(error = %e, "cannot accept HTTP connections: out of file descriptors");
        }
        tokio::time::sleep(ACCEPT_BACKOFF).await;
    } else {
        tracing::debug!(error = %e, "accept failed");
    }
}

static LAST_ACCEPT_WARNING: AtomicI64 = AtomicI64::new(i64::MIN);
static LAST_CAP_WARNING: AtomicI64 = AtomicI64::new(i64::MIN);

/// True at most once per 10 s per `last` (for log lines that a flood would repeat).
fn once_per_10s(last: &AtomicI64) -> bool {
    let now = crate::hub::now_ms();
    let prev = last.load(Ordering::Relaxed);
    now.saturating_sub(prev) >= 10_000 && last.compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
}

/// The error a connection over the cap gets.
pub fn over_capacity() -> WireError {
    WireError::new(503, ErrorType::InternalServerError, "The server has too many open connections; try again later.")
}

/// A connection over the cap: a 503 (plain HTTP) or nothing (TLS), then closed.
fn refuse(tcp: TcpStream, peer: SocketAddr, answer: bool, refusing: &Arc<Semaphore>) {
    METRICS.http_connections_refused.inc();
    if once_per_10s(&LAST_CAP_WARNING) {
        tracing::warn!(%peer, "HTTP connection cap reached: refusing new connections");
    }
    let Some(permit) = answer.then(|| refusing.clone().try_acquire_owned().ok()).flatten() else {
        return; // dropped: closed at once
    };
    tokio::spawn(async move {
        let _permit = permit;
        let _ = tokio::time::timeout(REFUSE_TIME, answer_503(tcp)).await;
    });
}

async fn answer_503(mut tcp: TcpStream) -> io::Result<()> {
    let e = over_capacity();
    METRICS.error(e.kind);
    let body = protocol::error_body(&e).to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // Read the request's head first (clients take an answer before their request for a
    // broken connection), then answer, then read what else comes until the client closes or
    // pauses: closing a socket with unread input resets it, and the client would see the reset
    // instead of the answer. A silent client is answered after a short pause.
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match tokio::time::timeout(DRAIN_PAUSE, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    tcp.write_all(response.as_bytes()).await?;
    tcp.shutdown().await?;
    while let Ok(Ok(n)) = tokio::time::timeout(DRAIN_PAUSE, tcp.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
    Ok(())
}

/// A socket closed when no byte moved either way for `timeout`.
struct Idle<T> {
    io: T,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<T> Idle<T> {
    fn new(io: T, timeout: Duration) -> Self {
        Self { io, timeout, deadline: Box::pin(tokio::time::sleep(timeout)) }
    }

    /// What the inner socket answered, with the deadline pushed back if bytes moved, or an
    /// error if it is not ready and the deadline has passed.
    fn after<R>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<R>>,
        moved: impl Fn(&R) -> bool,
    ) -> Poll<io::Result<R>> {
        match r {
            Poll::Ready(r) => {
                if r.as_ref().is_ok_and(moved) {
                    let at = Instant::now() + self.timeout;
                    self.deadline.as_mut().reset(at);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "HTTP connection idle"))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Idle<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        let read = buf.filled().len() > before;
        this.after(cx, r, |_| read)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Idle<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_write(cx, data);
        this.after(cx, r, |n| *n > 0)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.after(cx, r, |n| *n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.after(cx, r, |_| false)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
