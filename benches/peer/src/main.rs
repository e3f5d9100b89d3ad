//! A no-op MITM proxy on hudsucker, for the proxy bench: it intercepts every
//! CONNECT with its own CA and forwards each request unchanged.
//!
//!   outpost-bench-peer UPSTREAM_ADDR UPSTREAM_CA_PEM CA_OUT_DIR
//!
//! Every upstream name is dialled at UPSTREAM_ADDR (the bench's fake
//! provider) with TCP_NODELAY, and verified against UPSTREAM_CA_PEM; client
//! sockets get TCP_NODELAY too. It
//! writes its CA to CA_OUT_DIR/ca.pem, then prints `listening on ADDR`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hudsucker::certificate_authority::RcgenAuthority;
use hudsucker::hyper::Uri;
use hudsucker::rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use hudsucker::Proxy;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;

/// Dials the one upstream address for every URI, with TCP_NODELAY.
#[derive(Clone)]
struct Fixed(SocketAddr);

impl tower_service::Service<Uri> for Fixed {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let addr = self.0;
        Box::pin(async move {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            Ok(TokioIo::new(tcp))
        })
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, upstream, upstream_ca, ca_out] = &args[..] else {
        eprintln!("usage: outpost-bench-peer UPSTREAM_ADDR UPSTREAM_CA_PEM CA_OUT_DIR");
        std::process::exit(2);
    };
    let upstream: SocketAddr = upstream.parse().expect("upstream address");
    let provider = rustls::crypto::ring::default_provider();

    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("CA certificate");
    std::fs::write(format!("{ca_out}/ca.pem"), cert.pem()).expect("write CA");
    let issuer = Issuer::from_ca_cert_pem(&cert.pem(), key).expect("issuer");
    let ca = RcgenAuthority::new(issuer, 1_000, provider.clone());

    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(upstream_ca).expect("upstream CA") {
        roots.add(der.expect("certificate")).expect("root");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let http = Fixed(upstream);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);

    // Accepted sockets inherit TCP_NODELAY from the listening one (Linux),
    // so the peer does not pay Nagle's delay where Outpost does not.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_nodelay(true).expect("nodelay");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind");
    let listener = socket.listen(1024).expect("listen");
    println!("listening on {}", listener.local_addr().expect("address"));
    let proxy = Proxy::builder()
        .with_listener(listener)
        .with_ca(ca)
        .with_http_connector(https)
        .build()
        .expect("proxy");
    proxy.start().await.expect("proxy ran");
}
