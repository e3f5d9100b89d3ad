//! Raw TCP peers for hostile-peer tests: connections that send a prefix of a request (or
//! nothing) and then stall, built with [`RawPeers`].

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A builder for `count` connections to one address that each send `prefix` and stall.
pub struct RawPeers {
    addr: SocketAddr,
    count: usize,
    prefix: Vec<u8>,
}

impl RawPeers {
    /// Peers of `addr` (one, sending nothing, until told otherwise).
    pub fn to(addr: SocketAddr) -> RawPeers {
        RawPeers {
            addr,
            count: 1,
            prefix: Vec::new(),
        }
    }

    /// How many connections to open.
    pub fn count(mut self, count: usize) -> RawPeers {
        self.count = count;
        self
    }

    /// What each sends before it stalls.
    pub fn sending(mut self, prefix: &[u8]) -> RawPeers {
        self.prefix = prefix.to_vec();
        self
    }

    /// Open them all (a connection the peer refuses outright is left out).
    pub fn open(self) -> Vec<TcpStream> {
        (0..self.count)
            .filter_map(|_| {
                let mut stream = TcpStream::connect(self.addr).ok()?;
                if !self.prefix.is_empty() {
                    stream.write_all(&self.prefix).ok()?;
                }
                Some(stream)
            })
            .collect()
    }
}

/// Whether the far end closed `stream` (EOF or reset) within `limit`; bytes it sent first
/// are read and ignored.
pub fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream
            .set_read_timeout(Some(left.min(Duration::from_millis(200))))
            .expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return true,
        }
    }
}
