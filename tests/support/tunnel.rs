//! Speaking to the proxy by hand: `CONNECT`, then (optionally) TLS with rustls.
//!
//! curl and the SDKs prove that real clients work; these helpers let a test look *inside*
//! the connection — which certificate the client was shown, which ALPN protocol was
//! chosen, what status the CONNECT got — and run clients (like tokio-tungstenite) that
//! have no proxy support of their own. All functions are async; run them with
//! [`crate::support::block_on`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::ca::certs_from_pem_file;

/// The proxy's answer to a CONNECT: status, full response head, and the socket.
pub struct ConnectReply {
    pub status: u16,
    pub head: String,
    pub stream: TcpStream,
}

/// Sends `CONNECT authority` and reads the response head (byte by byte, so nothing that
/// follows the head is consumed).
pub async fn send_connect(proxy: SocketAddr, authority: &str) -> std::io::Result<ConnectReply> {
    let mut stream = TcpStream::connect(proxy).await?;
    stream.set_nodelay(true)?;
    let request = format!(
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: outpost-tests\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let head = read_head(&mut stream).await?;
    let status = parse_status(&head).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad CONNECT response: {head:?}"),
        )
    })?;
    Ok(ConnectReply {
        status,
        head,
        stream,
    })
}

/// Reads an HTTP response head up to and including the blank line.
pub async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed inside response head: {:?}",
                    String::from_utf8_lossy(&head)
                ),
            ));
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "response head too long",
            ));
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Status code from `HTTP/1.1 200 Connection established`.
pub fn parse_status(head: &str) -> Option<u16> {
    head.split_whitespace().nth(1)?.parse().ok()
}

/// A CONNECT that must succeed with 200; returns the raw tunnel.
pub async fn open_tunnel(proxy: SocketAddr, authority: &str) -> TcpStream {
    let reply = send_connect(proxy, authority)
        .await
        .unwrap_or_else(|e| panic!("CONNECT {authority} via {proxy} failed: {e}"));
    assert_eq!(reply.status, 200, "CONNECT {authority}: {}", reply.head);
    reply.stream
}

/// A rustls client config trusting exactly `roots`, offering `alpn` (e.g. `["h2", "http/1.1"]`).
pub fn client_config(
    roots: &[CertificateDer<'static>],
    alpn: &[&str],
) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("add trust anchor");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(crate::support::ring())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// CONNECT `host:port` through the proxy, then a TLS handshake for `host` that trusts only
/// the certificates in `roots_pem`.
pub async fn tls_through_proxy(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    roots_pem: &Path,
    alpn: &[&str],
) -> std::io::Result<TlsStream<TcpStream>> {
    let reply = send_connect(proxy, &format!("{host}:{port}")).await?;
    if reply.status != 200 {
        return Err(std::io::Error::other(format!(
            "CONNECT {host}:{port}: {}",
            reply.head
        )));
    }
    let connector =
        tokio_rustls::TlsConnector::from(client_config(&certs_from_pem_file(roots_pem), alpn));
    let name = ServerName::try_from(host.to_string()).map_err(std::io::Error::other)?;
    connector.connect(name, reply.stream).await
}

/// The certificate chain the server presented on `tls`, leaf first.
pub fn peer_chain(tls: &TlsStream<TcpStream>) -> Vec<CertificateDer<'static>> {
    tls.get_ref()
        .1
        .peer_certificates()
        .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default()
}

/// The ALPN protocol the server chose, as text.
pub fn negotiated_alpn(tls: &TlsStream<TcpStream>) -> Option<String> {
    tls.get_ref()
        .1
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
}
