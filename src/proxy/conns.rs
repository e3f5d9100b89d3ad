//! Every client connection the proxy holds, so that no local process can
//! hold it all.
//!
//! Words: a connection is *busy* while a request on it is in flight (its
//! response not yet finished) or a WebSocket session runs on it; it is
//! *idle* otherwise. Its idle time counts from the last byte either way
//! (bytes are seen by [`Tracked`], which wraps the accepted socket, so TLS
//! and tunnels are counted) until it is *serving*: an intercepted
//! connection past its TLS handshake, whose idle time counts from its last
//! request's end. Bytes that are not requests (HTTP/2 pings and their
//! answers, settings, a head that never completes) do not keep it open.
//!
//! - A connection idle for `limits.idle_timeout` is closed: one that never
//!   sends its first request, a partial HTTP/2 preface, a keep-alive
//!   connection nobody uses.
//! - At `limits.max_connections`, a new connection closes the longest-idle
//!   one to make room; with none idle, the new one is refused. So a flood of
//!   silent connections cannot keep out a client that sends requests.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

/// One client connection. It leaves the registry when its socket closes
/// (the last [`Tracked`] of it is dropped).
pub struct Conn {
    id: u64,
    registry: Weak<Mutex<HashMap<u64, Arc<Conn>>>>,
    /// Milliseconds since the registry's start, at the last byte.
    last_active: AtomicU64,
    busy: AtomicUsize,
    /// Serving requests: bytes no longer count as activity.
    serving: AtomicBool,
    /// Cancelled to close the connection.
    pub closed: CancellationToken,
    /// Cancelled once its socket is closed (its [`Tracked`] dropped).
    pub released: CancellationToken,
    epoch: Instant,
}

impl Conn {
    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_active.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self, now_ms: u64) -> Option<Duration> {
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = self.last_active.load(Ordering::Relaxed);
        Some(Duration::from_millis(now_ms.saturating_sub(last)))
    }

    /// From now on only requests count as activity (from now: the TLS
    /// handshake just finished).
    pub fn serving(&self) {
        self.touch();
        self.serving.store(true, Ordering::Relaxed);
    }

    /// A byte went by: activity unless the connection is serving.
    fn saw_bytes(&self) {
        if !self.serving.load(Ordering::Relaxed) {
            self.touch();
        }
    }

    /// Busy until the returned guard is dropped.
    pub fn busy(self: &Arc<Conn>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }
}

/// Keeps its connection busy (not idle) while it lives.
pub struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

/// The registry.
pub struct Conns {
    max: usize,
    idle_timeout: Duration,
    epoch: Instant,
    next: AtomicU64,
    open: Arc<Mutex<HashMap<u64, Arc<Conn>>>>,
}

impl Conns {
    /// A registry of at most `max` connections, closing idle ones after
    /// `idle_timeout`.
    pub fn new(max: usize, idle_timeout: Duration) -> Conns {
        Conns {
            max,
            idle_timeout,
            epoch: Instant::now(),
            next: AtomicU64::new(0),
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Admit a new connection: room is made by closing the longest-idle one
    /// when the registry is full (returned second, so the caller can wait
    /// for its socket to close before accepting more); `None` when every
    /// one is busy.
    pub fn admit(&self) -> Option<(Arc<Conn>, Option<Arc<Conn>>)> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mut evicted = None;
        if open.len() >= self.max {
            let now = self.epoch.elapsed().as_millis() as u64;
            let victim = open
                .values()
                // The longest idle; of equals, the oldest.
                .filter_map(|c| c.idle_for(now).map(|idle| (idle, std::cmp::Reverse(c.id))))
                .max()
                .map(|(_, id)| id.0)?;
            if let Some(conn) = open.remove(&victim) {
                tracing::debug!("connection cap reached: closing the longest-idle connection");
                conn.closed.cancel();
                evicted = Some(conn);
            }
        }
        let conn = Arc::new(Conn {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            registry: Arc::downgrade(&self.open),
            last_active: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            busy: AtomicUsize::new(0),
            serving: AtomicBool::new(false),
            closed: CancellationToken::new(),
            released: CancellationToken::new(),
            epoch: self.epoch,
        });
        open.insert(conn.id, conn.clone());
        Some((conn, evicted))
    }

    /// Close every connection idle longer than the timeout.
    pub fn sweep(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|_, conn| {
            let expired = conn
                .idle_for(now)
                .is_some_and(|idle| idle > self.idle_timeout);
            if expired {
                conn.closed.cancel();
            }
            !expired
        });
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How often [`sweep`](Self::sweep) should run: a tenth of the timeout,
    /// between 100 ms and 1 s.
    pub fn sweep_every(&self) -> Duration {
        (self.idle_timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }
}

/// An I/O stream that marks its connection active on every byte.
pub struct Tracked<S> {
    inner: S,
    // Dropped after `inner` (fields drop in order): the socket is closed
    // by the time the connection is released.
    conn: Release,
}

impl<S> Tracked<S> {
    /// `inner`, counted as `conn`'s bytes.
    pub fn new(inner: S, conn: Arc<Conn>) -> Tracked<S> {
        Tracked {
            inner,
            conn: Release(conn),
        }
    }
}

/// Takes its connection out of the registry, and says it is released, when
/// dropped.
struct Release(Arc<Conn>);

impl Drop for Release {
    fn drop(&mut self) {
        // The socket is closed: the connection no longer counts.
        if let Some(registry) = self.0.registry.upgrade() {
            registry
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&self.0.id);
        }
        self.0.released.cancel();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.0.saw_bytes();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.0.saw_bytes();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // TLS hands over several records at once: one writev, not one
        // write per record.
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.0.saw_bytes();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// `body`, holding `busy` until it is dropped (its last frame sent, or the
/// client gone).
pub fn busy_body(body: super::ProxyBody, busy: Busy) -> super::ProxyBody {
    use http_body_util::BodyExt;
    body.map_frame(move |frame| {
        let _held = &busy;
        frame
    })
    .boxed()
}

/// Resolves when the registry closes `client` (never, for none).
pub async fn closed(client: Option<Arc<Conn>>) {
    match client {
        Some(client) => client.closed.cancelled().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_registry_closes_the_longest_idle_connection_and_spares_busy_ones() {
        let conns = Conns::new(3, Duration::from_secs(60));
        let first = conns.admit().unwrap().0;
        std::thread::sleep(Duration::from_millis(5));
        let second = conns.admit().unwrap().0;
        std::thread::sleep(Duration::from_millis(5));
        let third = conns.admit().unwrap().0;
        let _busy = first.busy();
        // Full: the new one closes the longest idle that is not busy.
        let (fourth, evicted) = conns.admit().unwrap();
        assert_eq!(
            evicted.map(|c| c.id),
            Some(second.id),
            "the evicted one is returned"
        );
        assert!(!first.closed.is_cancelled(), "busy connections stay");
        assert!(second.closed.is_cancelled());
        assert!(!third.closed.is_cancelled());
        assert_eq!(conns.len(), 3);
        let _all_busy = (third.busy(), fourth.busy());
        assert!(conns.admit().is_none(), "every connection busy: refused");
    }

    #[test]
    fn a_connection_is_released_only_after_its_socket_is_dropped() {
        struct Socket(Arc<Conn>, Arc<AtomicBool>);
        impl Drop for Socket {
            fn drop(&mut self) {
                // Still counted while the socket closes.
                self.1
                    .store(!self.0.released.is_cancelled(), Ordering::SeqCst);
            }
        }
        let conns = Conns::new(3, Duration::from_secs(60));
        let conn = conns.admit().unwrap().0;
        let closed_first = Arc::new(AtomicBool::new(false));
        let tracked = Tracked::new(Socket(conn.clone(), closed_first.clone()), conn.clone());
        assert_eq!(conns.len(), 1);
        drop(tracked);
        assert!(
            closed_first.load(Ordering::SeqCst),
            "socket closed before the release"
        );
        assert!(conn.released.is_cancelled());
        assert!(conns.is_empty());
    }

    /// A byte every 15 ms for 60 ms, through `tracked`, sweeping after each.
    async fn trickle(
        conns: &Conns,
        far: &mut tokio::io::DuplexStream,
        tracked: &mut Tracked<tokio::io::DuplexStream>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(15)).await;
            far.write_all(b"x").await.unwrap();
            let mut byte = [0u8; 1];
            tracked.read_exact(&mut byte).await.unwrap();
            conns.sweep();
        }
    }

    #[tokio::test]
    async fn a_connection_leaves_when_its_socket_closes_and_bytes_count_as_activity() {
        let conns = Conns::new(10, Duration::from_millis(30));
        let conn = conns.admit().unwrap().0;
        let (near, mut far) = tokio::io::duplex(64);
        let mut tracked = Tracked::new(near, conn.clone());
        trickle(&conns, &mut far, &mut tracked).await;
        assert!(!conn.closed.is_cancelled(), "bytes kept it active");
        assert_eq!(conns.len(), 1);
        drop(tracked);
        assert!(conns.is_empty());
    }

    #[tokio::test]
    async fn a_serving_connection_is_kept_open_by_requests_not_bytes() {
        let conns = Conns::new(10, Duration::from_millis(40));
        let conn = conns.admit().unwrap().0;
        let (near, mut far) = tokio::io::duplex(64);
        let mut tracked = Tracked::new(near, conn.clone());
        conn.serving();
        // A request from start to end of the gaps: busy, then active.
        let busy = conn.busy();
        tokio::time::sleep(Duration::from_millis(60)).await;
        conns.sweep();
        assert!(!conn.closed.is_cancelled(), "busy");
        drop(busy);
        conns.sweep();
        assert!(!conn.closed.is_cancelled(), "a request just ended");
        // Pings and their answers: bytes, but no request.
        trickle(&conns, &mut far, &mut tracked).await;
        assert!(conn.closed.is_cancelled(), "bytes alone kept it open");
    }

    #[test]
    fn idle_connections_are_swept_after_the_timeout() {
        let conns = Conns::new(10, Duration::from_millis(20));
        let idle = conns.admit().unwrap().0;
        let working = conns.admit().unwrap().0;
        let guard = working.busy();
        std::thread::sleep(Duration::from_millis(40));
        conns.sweep();
        assert!(idle.closed.is_cancelled());
        assert!(!working.closed.is_cancelled());
        drop(guard);
        std::thread::sleep(Duration::from_millis(40));
        conns.sweep();
        assert!(working.closed.is_cancelled());
        assert!(conns.is_empty());
    }
}
