//! A real nginx (Debian's package) serving a directory over TLS on a
//! loopback port, with a leaf from a [`TestCa`]: the static server a
//! security team publishes policy bundles on.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ca::TestCa;

/// Where Debian installs nginx.
const NGINX: &str = "/usr/sbin/nginx";

/// A running nginx; stopped on drop.
pub struct Nginx {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Nginx {
    /// Serve a fresh directory ([`Nginx::root`]) as `https://<name>:<port>/`.
    pub fn start(ca: &TestCa, name: &str) -> Nginx {
        let dir = tempfile::Builder::new()
            .prefix("outpost-nginx-")
            .tempdir()
            .expect("tempdir");
        let issued = ca.issue(&[name]);
        std::fs::write(
            dir.path().join("cert.pem"),
            format!("{}{}", issued.cert_pem, ca.cert_pem()),
        )
        .expect("write cert");
        std::fs::write(dir.path().join("key.pem"), &issued.key_pem).expect("write key");
        std::fs::create_dir_all(dir.path().join("root")).expect("root dir");
        let port = free_port();
        let mut nginx = Nginx {
            dir,
            port,
            child: None,
        };
        nginx.spawn();
        nginx
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {pid};\nerror_log {err} info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {access} combined;\n  client_body_temp_path {tmp}/body;\n\
               proxy_temp_path {tmp}/proxy;\n  fastcgi_temp_path {tmp}/fcgi;\n\
               uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n\
               types {{ application/json json; }}\n\
               server {{\n    listen 127.0.0.1:{port} ssl;\n\
                 ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
                 root {root};\n    etag on;\n  }}\n}}\n",
            pid = d.join("nginx.pid").display(),
            err = d.join("error.log").display(),
            access = d.join("access.log").display(),
            tmp = d.display(),
            port = self.port,
            cert = d.join("cert.pem").display(),
            key = d.join("key.pem").display(),
            root = d.join("root").display(),
        );
        std::fs::write(d.join("nginx.conf"), conf).expect("write nginx.conf");
        let child = Command::new(NGINX)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .arg("-p")
            .arg(d)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {NGINX} (apt install nginx-light): {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {}: {}",
                self.port,
                std::fs::read_to_string(d.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The directory it serves.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Publish `bytes` as `/name`, atomically (as a deploy would).
    pub fn publish(&self, name: &str, bytes: &[u8]) {
        let tmp = self.root().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).expect("write bundle");
        std::fs::rename(&tmp, self.root().join(name)).expect("publish bundle");
    }

    /// The status codes of the requests for `path` so far, from the access log.
    pub fn statuses(&self, path: &str) -> Vec<u16> {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        let needle = format!("\"GET {path} ");
        log.lines()
            .filter(|l| l.contains(&needle))
            .filter_map(|l| l.split("\" ").nth(1)?.split(' ').next()?.parse().ok())
            .collect()
    }

    /// Stop serving (the port is closed).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: the master stops its workers (a SIGKILL would leave
            // them serving).
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Serve again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The config dir (for debugging output).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
