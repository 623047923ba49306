//! The listener: tiny_http worker threads, a body size limit, JSON errors, and TLS through
//! rustls when a certificate is given (plain HTTP is refused on anything but loopback).

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use baomi_core::sync::protocol::MAX_REQUEST_BYTES;

use crate::api::{ApiError, Server};

/// TLS material (PEM).
#[derive(Debug, Clone)]
pub struct Tls {
    /// Certificate chain.
    pub cert_pem: Vec<u8>,
    /// Private key.
    pub key_pem: Vec<u8>,
}

/// A running listener.
pub struct Listener {
    http: Arc<tiny_http::Server>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").finish_non_exhaustive()
    }
}

impl Listener {
    /// Binds `addr` and starts `threads` workers.
    pub fn start(
        server: Arc<Server>,
        addr: SocketAddr,
        tls: Option<Tls>,
        threads: usize,
    ) -> Result<Listener, String> {
        if tls.is_none() && !addr.ip().is_loopback() {
            return Err(format!(
                "refusing plain HTTP on {addr}: give --tls-cert and --tls-key, or listen on loopback behind a TLS proxy"
            ));
        }
        let http = match tls {
            Some(t) => tiny_http::Server::https(
                addr,
                tiny_http::SslConfig {
                    certificate: t.cert_pem,
                    private_key: t.key_pem,
                },
            ),
            None => tiny_http::Server::http(addr),
        }
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let http = Arc::new(http);
        let workers = (0..threads.max(1))
            .map(|_| {
                let http = http.clone();
                let server = server.clone();
                std::thread::spawn(move || {
                    while let Ok(req) = http.recv() {
                        serve_one(&server, req);
                    }
                })
            })
            .collect();
        Ok(Listener { http, workers })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.http.server_addr().to_ip()
    }

    /// Stops accepting and joins the workers.
    pub fn stop(self) {
        self.http.unblock();
        for _ in 1..self.workers.len() {
            self.http.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
    }

    /// Serves until the process ends.
    pub fn join(self) {
        for w in self.workers {
            let _ = w.join();
        }
    }
}

fn serve_one(server: &Server, mut req: tiny_http::Request) {
    let method = req.method().as_str().to_owned();
    let url = req.url().to_owned();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_owned(),
                h.value.as_str().to_owned(),
            )
        })
        .collect();
    let result = read_body(&mut req).and_then(|body| server.handle(&method, &url, &headers, &body));
    let (status, body) = match result {
        Ok(b) => (200, b),
        Err(e) => {
            log::info!("{method} {url}: {} {}", e.status, e.message);
            (e.status, e.body())
        }
    };
    let mut resp = tiny_http::Response::from_data(body).with_status_code(status);
    if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]) {
        resp = resp.with_header(h);
    }
    if let Err(e) = req.respond(resp) {
        log::info!("{method} {url}: client went away: {e}");
    }
}

fn read_body(req: &mut tiny_http::Request) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError {
        status: 413,
        code: "too_large",
        message: format!("request body over {MAX_REQUEST_BYTES} bytes"),
    };
    if req.body_length().is_some_and(|n| n > MAX_REQUEST_BYTES) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    req.as_reader()
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
    if body.len() > MAX_REQUEST_BYTES {
        return Err(too_large());
    }
    Ok(body)
}
