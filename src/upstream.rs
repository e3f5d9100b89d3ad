//! Outpost's side of the wire towards providers and tunnelled hosts.
//!
//! [`Connector`] dials a host: `[upstream.resolve]` overrides the address
//! (like curl `--resolve`), otherwise the system resolver; `TCP_NODELAY` is
//! always on (small SSE events would otherwise stall on Nagle × delayed ACK);
//! TLS is always verified, against the system roots plus `extra_ca_files`,
//! under the *host name* even when the address was overridden.
//!
//! [`Upstream`] is the pooled hyper-util client over that connector, used for
//! every intercepted request. It speaks HTTP/1.1 (ALPN `http/1.1` only),
//! one pooled connection per call in flight: over one multiplexed HTTP/2
//! connection every call's frames went through that connection's task, and
//! the hand-offs between it and the calls' tasks cost more than the TLS
//! sessions saved (the proxy bench: at concurrency 8, 0.29–0.37 of a no-op
//! MITM's throughput over HTTP/2, 0.46 over HTTP/1.1). Clients still speak
//! HTTP/2 to Outpost. Tunnels and WebSocket bridges use the connector
//! directly.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::combinators::BoxBody;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::{normalize_host, UpstreamConfig};

/// Errors of any body or service in the proxy.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The request body type sent upstream.
pub type UpstreamBody = BoxBody<Bytes, BoxError>;

/// Why the upstream trust store could not be built (a configuration error).
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// An `extra_ca_files` entry is unreadable or holds no certificate.
    #[error("`upstream.extra_ca_files`: {path}: {message}")]
    ExtraCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Neither the system nor the config provided a single root.
    #[error("no trusted root certificates: the system store is empty and `upstream.extra_ca_files` is unset")]
    NoRoots,
}

/// Why a connection to an upstream host failed. Always names the host.
#[derive(Debug, thiserror::Error)]
#[error("{host}: {kind}")]
pub struct ConnectError {
    /// The host Outpost tried to reach.
    pub host: String,
    /// What went wrong.
    pub kind: ConnectErrorKind,
}

/// The stage a connection failed at.
#[derive(Debug, thiserror::Error)]
pub enum ConnectErrorKind {
    /// DNS failed.
    #[error("cannot resolve host: {0}")]
    Resolve(io::Error),
    /// The resolver returned nothing.
    #[error("host resolves to no address")]
    NoAddress,
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address tried last.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// TCP + TLS did not finish in time.
    #[error("no connection within {0:?}")]
    Timeout(Duration),
    /// The TLS handshake failed (including certificate verification).
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    /// The URI has no usable host.
    #[error("request has no host")]
    NoHost,
    /// Every address the host resolves to is on this machine.
    #[error(
        "resolves to {0}, an address on this machine (loopback, link-local or the cloud \
         metadata service): Outpost does not connect there unless [upstream] \
         danger_allow_destinations lists it"
    )]
    Local(SocketAddr),
}

impl ConnectError {
    fn new(host: &str, kind: ConnectErrorKind) -> ConnectError {
        ConnectError {
            host: host.to_string(),
            kind,
        }
    }

    /// Whether this was a timeout (504) rather than a failure (502).
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, ConnectErrorKind::Timeout(_))
    }

    /// Whether the destination is refused (403) rather than unreachable.
    pub fn is_forbidden(&self) -> bool {
        matches!(self.kind, ConnectErrorKind::Local(_))
    }
}

struct ConnectorInner {
    resolve: HashMap<String, SocketAddr>,
    allow_local: Vec<String>,
    /// Refuse destinations on this machine (off for endpoints the config names).
    guard_local: bool,
    /// ALPN `http/1.1` only (see the module docs; WebSocket upgrades need
    /// it too).
    tls: Arc<ClientConfig>,
    connect_timeout: Duration,
}

/// Dials upstream hosts (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Connector {
    inner: Arc<ConnectorInner>,
}

impl Connector {
    /// Build from configuration: loads the system roots and `extra_ca_files`.
    pub fn from_config(config: &UpstreamConfig) -> Result<Connector, TrustError> {
        let roots = trust_roots(&config.extra_ca_files)?;
        Ok(Connector::with_roots(config, roots))
    }

    /// Build with an explicit root store (tests, embedders).
    pub fn with_roots(config: &UpstreamConfig, roots: rustls::RootCertStore) -> Connector {
        let roots = Arc::new(roots);
        let client_config = |alpn: &[&[u8]]| {
            // Safe defaults cannot fail with the ring provider's suites.
            let mut c = ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap_or_else(|e| unreachable!("ring supports TLS 1.2 and 1.3: {e}"))
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Arc::new(c)
        };
        Connector {
            inner: Arc::new(ConnectorInner {
                resolve: config.resolve.clone(),
                allow_local: config.allow_local.clone(),
                guard_local: true,
                tls: client_config(&[b"http/1.1"]),
                connect_timeout: config.connect_timeout,
            }),
        }
    }

    /// TCP to `host:port` (no TLS), within the connect timeout.
    pub async fn connect_tcp(&self, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
        let limit = self.inner.connect_timeout;
        tokio::time::timeout(limit, self.dial(host, port))
            .await
            .map_err(|_| ConnectError::new(host, ConnectErrorKind::Timeout(limit)))?
    }

    /// TCP + verified TLS to `host:port`, within the connect timeout.
    pub async fn connect_tls(
        &self,
        host: &str,
        port: u16,
    ) -> Result<TlsStream<TcpStream>, ConnectError> {
        let limit = self.inner.connect_timeout;
        let work = async {
            let tcp = self.dial(host, port).await?;
            let name = ServerName::try_from(host.to_string())
                .map_err(|_| ConnectError::new(host, ConnectErrorKind::NoHost))?;
            TlsConnector::from(self.inner.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| ConnectError::new(host, ConnectErrorKind::Tls(e)))
        };
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| ConnectError::new(host, ConnectErrorKind::Timeout(limit)))?
    }

    /// Connect for a URI: TLS for `https`, plain TCP for `http`.
    pub async fn connect_uri(&self, uri: &Uri) -> Result<UpstreamIo, ConnectError> {
        let host = uri
            .host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .ok_or_else(|| ConnectError::new("(none)", ConnectErrorKind::NoHost))?;
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let stream = if https {
            Stream::Tls(Box::new(self.connect_tls(host, port).await?))
        } else {
            Stream::Plain(self.connect_tcp(host, port).await?)
        };
        Ok(UpstreamIo(TokioIo::new(stream)))
    }

    async fn dial(&self, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
        let addrs: Vec<SocketAddr> = match self.inner.resolve.get(&normalize_host(host)) {
            // Configured by whoever wrote the agent's config: trusted as is.
            Some(addr) => vec![*addr],
            None => {
                let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
                    .await
                    .map_err(|e| ConnectError::new(host, ConnectErrorKind::Resolve(e)))?
                    .collect();
                // Checked on the addresses, not the name: a name that resolves
                // to this machine (or rebinds to it) is refused all the same.
                let allowed: Vec<SocketAddr> = resolved
                    .iter()
                    .copied()
                    .filter(|addr| {
                        !self.inner.guard_local
                            || !is_local(addr.ip())
                            || self.allows_local(host, *addr)
                    })
                    .collect();
                match (allowed.is_empty(), resolved.first()) {
                    (true, Some(first)) => {
                        return Err(ConnectError::new(host, ConnectErrorKind::Local(*first)))
                    }
                    _ => allowed,
                }
            }
        };
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    // Small SSE events must not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(source) => last = Some(ConnectErrorKind::Connect { addr, source }),
            }
        }
        Err(ConnectError::new(
            host,
            last.unwrap_or(ConnectErrorKind::NoAddress),
        ))
    }
}

impl Connector {
    /// This connector for an endpoint the agent's own config names (the
    /// audit collector): destinations on this machine are not refused.
    pub fn for_configured_endpoint(&self) -> Connector {
        let inner = &self.inner;
        Connector {
            inner: Arc::new(ConnectorInner {
                resolve: inner.resolve.clone(),
                allow_local: inner.allow_local.clone(),
                guard_local: false,
                tls: inner.tls.clone(),
                connect_timeout: inner.connect_timeout,
            }),
        }
    }

    /// Whether `danger_allow_destinations` lets `host` (as `addr`) be reached.
    fn allows_local(&self, host: &str, addr: SocketAddr) -> bool {
        let host = normalize_host(host);
        let ip = addr.ip().to_string();
        self.inner.allow_local.iter().any(|allowed| {
            let (name, port) = match allowed.rsplit_once(':') {
                Some((name, port)) if !name.ends_with(':') && port.parse::<u16>().is_ok() => (
                    name.trim_start_matches('[').trim_end_matches(']'),
                    port.parse::<u16>().ok(),
                ),
                _ => (allowed.as_str(), None),
            };
            (name == host || name == ip) && port.is_none_or(|p| p == addr.port())
        })
    }
}

/// Addresses on this machine or its link: loopback, unspecified, link-local
/// (169.254.0.0/16, fe80::/10, where cloud metadata services live) and AWS's
/// IPv6 metadata address `fd00:ec2::254`; IPv4-mapped forms too.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6 == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

/// System roots plus `extra`.
pub fn trust_roots(extra: &[PathBuf]) -> Result<rustls::RootCertStore, TrustError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for err in &native.errors {
        tracing::warn!("system trust store: {err}");
    }
    let (_added, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!("ignored {ignored} unparsable system root certificates");
    }
    for path in extra {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TrustError::ExtraCa {
                path: path.clone(),
                message: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TrustError::ExtraCa {
                path: path.clone(),
                message: "no PEM certificate in file".into(),
            });
        }
        for cert in certs {
            roots.add(cert).map_err(|e| TrustError::ExtraCa {
                path: path.clone(),
                message: e.to_string(),
            })?;
        }
    }
    if roots.is_empty() {
        return Err(TrustError::NoRoots);
    }
    Ok(roots)
}

impl tower_service::Service<Uri> for Connector {
    type Response = UpstreamIo;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamIo, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect_uri(&uri).await })
    }
}

/// A plain or TLS upstream stream.
pub enum Stream {
    /// `http://` upstreams.
    Plain(TcpStream),
    /// `https://` upstreams.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// An upstream connection as hyper sees it (always HTTP/1.1).
pub struct UpstreamIo(TokioIo<Stream>);

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl Write for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl UpstreamIo {
    /// The underlying stream (for WebSocket bridging after an upgrade).
    pub fn into_inner(self) -> Stream {
        self.0.into_inner()
    }
}

/// The pooled client for intercepted and plain-HTTP requests: one pool per
/// connection worker, so that a call and its upstream connection run on
/// the same thread ([`crate::proxy::workers`]).
#[derive(Clone)]
pub struct Upstream {
    clients: Arc<[Client<Connector, UpstreamBody>]>,
    connector: Connector,
    response_timeout: Duration,
    body_idle_timeout: Duration,
}

impl Upstream {
    /// `pools` pooled clients over `connector`.
    pub fn new(connector: Connector, config: &UpstreamConfig, pools: usize) -> Upstream {
        let clients = (0..pools.max(1))
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(config.idle_timeout)
                    .pool_max_idle_per_host(64)
                    .build(connector.clone())
            })
            .collect();
        Upstream {
            clients,
            connector,
            response_timeout: config.response_timeout,
            body_idle_timeout: config.body_idle_timeout,
        }
    }

    /// Longest silence allowed inside a response body.
    pub fn body_idle_timeout(&self) -> Duration {
        self.body_idle_timeout
    }

    /// The connector, for tunnels and WebSocket bridges.
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// How long to wait for response headers.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// Send one request; the response body streams.
    pub async fn send(
        &self,
        request: http::Request<UpstreamBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        let pool = &self.clients[crate::proxy::workers::current() % self.clients.len()];
        pool.request(request).await
    }
}

/// An error and its sources, `: `-joined (hyper's own message is terse).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_on_this_machine_are_local() {
        for local in [
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "169.254.169.254",
            "::1",
            "::",
            "fe80::1",
            "febf::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_local(local.parse().unwrap()), "{local}");
        }
        for remote in [
            "8.8.8.8",
            "10.0.0.1",
            "192.168.1.1",
            "2606:4700::1",
            "fec0::1",
            "fd00::1",
        ] {
            assert!(!is_local(remote.parse().unwrap()), "{remote}");
        }
    }

    #[test]
    fn listed_destinations_match_by_name_or_address_and_port() {
        let config = UpstreamConfig {
            extra_ca_files: Vec::new(),
            resolve: HashMap::new(),
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            body_idle_timeout: Duration::from_secs(1),
            allow_local: vec![
                "localhost".into(),
                "127.0.0.1:11434".into(),
                "[::1]:8080".into(),
            ],
        };
        let connector = Connector::with_roots(&config, rustls::RootCertStore::empty());
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(connector.allows_local("localhost", at("127.0.0.1:22")));
        assert!(connector.allows_local("LocalHost", at("[::1]:22")));
        assert!(connector.allows_local("127.0.0.1", at("127.0.0.1:11434")));
        assert!(!connector.allows_local("127.0.0.1", at("127.0.0.1:22")));
        assert!(connector.allows_local("::1", at("[::1]:8080")));
        assert!(!connector.allows_local("::1", at("[::1]:22")));
        assert!(!connector.allows_local("rebind.example", at("127.0.0.1:22")));
    }
}
