//! The listener: HTTP/1.1 with hyper on a tokio runtime, TLS through tokio-rustls (rustls
//! 0.23, ring), and limits on everything a client controls (plain HTTP is refused on anything
//! but loopback).
//!
//! | what a client controls | limit ([`Limits`]) | answer |
//! |---|---|---|
//! | header bytes (one endless header line included) | `max_header_bytes` (hyper's read buffer) | 431, connection closed |
//! | header count | `max_headers` | 431 |
//! | time to send the headers (slowloris), the TLS handshake | `header_timeout` | connection closed |
//! | body size | [`MAX_REQUEST_BYTES`] (declared or streamed) | 413 JSON |
//! | time to send the body | `body_timeout` | 408 JSON |
//! | open connections | `max_connections` | over it, closed at accept |
//! | open connections from one address | `max_connections_per_peer` | over it, closed at accept |
//! | request bodies held in memory, all clients | `max_body_bytes` (reserved as they arrive, the declared length at once) | over it, 503 JSON |
//! | request bodies held in memory, one address | `max_body_bytes_per_peer` | over it, 503 JSON |
//! | open long-polls (`/v1/wait`) | `max_waits`; one per device, the newest by signed time (an older or replayed one is refused, a newer one ends the one it replaces) | 503 / 401 JSON |
//! | a connection's lifetime (idle keep-alive included) | `connection_lifetime` | closed |
//! | requests doing database work at once (a wait's checks included) | `max_in_flight` | the rest wait |
//!
//! The database is synchronous (rusqlite, and the `postgres` client with its own small
//! runtime), so each request's work runs on tokio's blocking pool (`spawn_blocking`), as the
//! `postgres` crate's authors advise; the async side only moves bytes and enforces limits.
//! [`Listener::stop`] (and SIGTERM / SIGINT in `baomi-server serve`) stops accepting and
//! lets requests in flight finish, for up to `drain_timeout`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use baomi_core::sync::protocol::{MAX_REQUEST_BYTES, MAX_WAIT_MS, path};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Semaphore, watch};

use crate::api::{ApiError, Server};

/// TLS material (PEM).
#[derive(Debug, Clone)]
pub struct Tls {
    /// Certificate chain.
    pub cert_pem: Vec<u8>,
    /// Private key.
    pub key_pem: Vec<u8>,
}

/// Which requests a listener serves. With a listener of its own for the console and the
/// officer API (`baomi-server serve --office-listen`), no device or anonymous peer on the
/// device listener can fill the slots the officers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything (one listener).
    All,
    /// The device protocol, the registry feed and the MDM webhook; not the console.
    Devices,
    /// The console and the officer API only.
    Office,
}

/// What one client may cost the server (see the module table).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of request line and headers (hyper's read buffer; at least 8 KiB).
    pub max_header_bytes: usize,
    /// Number of headers.
    pub max_headers: usize,
    /// Time to complete the TLS handshake and the headers.
    pub header_timeout: Duration,
    /// Time to send the body.
    pub body_timeout: Duration,
    /// Open connections.
    pub max_connections: usize,
    /// A connection's whole life, idle keep-alive included.
    pub connection_lifetime: Duration,
    /// Requests doing database work at once.
    pub max_in_flight: usize,
    /// How long a stop waits for requests in flight.
    pub drain_timeout: Duration,
    /// Open connections from one address.
    pub max_connections_per_peer: usize,
    /// Bytes of request bodies held at once, all clients together.
    pub max_body_bytes: usize,
    /// Bytes of request bodies held at once from one address.
    pub max_body_bytes_per_peer: usize,
    /// Long-polls held open at once.
    pub max_waits: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 4096,
            connection_lifetime: Duration::from_secs(120),
            max_in_flight: 64,
            drain_timeout: Duration::from_secs(10),
            max_connections_per_peer: 256,
            max_body_bytes: 64 * 1024 * 1024,
            max_body_bytes_per_peer: 8 * 1024 * 1024,
            max_waits: 2048,
        }
    }
}

/// A running listener: its own tokio runtime on a thread of its own.
pub struct Listener {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

struct Shared {
    server: Arc<Server>,
    limits: Limits,
    scope: Scope,
    in_flight: Arc<Semaphore>,
    /// The fleet's change counter, for requests held open by `POST /v1/wait`.
    changes: watch::Sender<i64>,
    /// Poke the change poller now (a change came through this process).
    poke: tokio::sync::Notify,
    /// Body bytes held, in KiB permits (`max_body_bytes`).
    body_budget: Arc<Semaphore>,
    /// What each address holds now (connections, body KiB).
    peers: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, PeerUse>>,
    /// The open wait of each device: its signed time and the signal that ends it.
    waits: std::sync::Mutex<std::collections::HashMap<String, (i64, Arc<tokio::sync::Notify>)>>,
}

/// What one address holds.
#[derive(Debug, Default, Clone, Copy)]
struct PeerUse {
    connections: usize,
    body_kib: usize,
}

impl Shared {
    fn with_peer<T>(&self, ip: std::net::IpAddr, f: impl FnOnce(&mut PeerUse) -> T) -> T {
        let mut m = self
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = m.entry(ip).or_default();
        let out = f(e);
        if e.connections == 0 && e.body_kib == 0 {
            m.remove(&ip);
        }
        out
    }
}

/// A connection counted against its address; uncounted on drop.
struct PeerConnection {
    shared: Arc<Shared>,
    ip: std::net::IpAddr,
}

impl Drop for PeerConnection {
    fn drop(&mut self) {
        self.shared
            .with_peer(self.ip, |p| p.connections = p.connections.saturating_sub(1));
    }
}

/// Body bytes reserved for one request (globally and for its address); released on drop.
struct BodyBudget {
    shared: Arc<Shared>,
    ip: std::net::IpAddr,
    kib: usize,
    permits: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl BodyBudget {
    /// Reserves room for `total_bytes` of body in all (grows, never shrinks). Bodies up to
    /// [`SMALL_BODY`] need no reservation (a check-in, a login, a probe): they cost at most
    /// that per connection, so a flood of large bodies never stops the small requests.
    fn reserve(&mut self, total_bytes: u64) -> Result<(), ApiError> {
        if total_bytes <= SMALL_BODY {
            return Ok(());
        }
        let want = usize::try_from(total_bytes.div_ceil(1024)).unwrap_or(usize::MAX);
        if want <= self.kib {
            return Ok(());
        }
        let more = want - self.kib;
        let per_peer = self.shared.limits.max_body_bytes_per_peer / 1024;
        let ok = self.shared.with_peer(self.ip, |p| {
            if p.body_kib.saturating_add(more) > per_peer {
                false
            } else {
                p.body_kib += more;
                true
            }
        });
        if !ok {
            return Err(busy("this address has too many request bodies in flight"));
        }
        let got = u32::try_from(more).ok().and_then(|n| {
            self.shared
                .body_budget
                .clone()
                .try_acquire_many_owned(n)
                .ok()
        });
        let Some(got) = got else {
            self.shared
                .with_peer(self.ip, |p| p.body_kib = p.body_kib.saturating_sub(more));
            return Err(busy("too many request bodies in flight"));
        };
        match &mut self.permits {
            Some(p) => p.merge(got),
            None => self.permits = Some(got),
        }
        self.kib = want;
        Ok(())
    }
}

impl Drop for BodyBudget {
    fn drop(&mut self) {
        let kib = self.kib;
        self.shared
            .with_peer(self.ip, |p| p.body_kib = p.body_kib.saturating_sub(kib));
    }
}

/// Bodies up to this size are not counted against the body budget (bounded by the
/// connection cap instead: 4,096 x 16 KiB).
const SMALL_BODY: u64 = 16 * 1024;

fn busy(m: &str) -> ApiError {
    if let Some(metrics) = crate::metrics::METRICS.as_ref() {
        metrics.bodies_refused.with_label_values(&["busy"]).inc();
    }
    ApiError {
        status: 503,
        code: "busy",
        message: format!("{m}: retry later"),
    }
}

/// How often the change counter is read while devices wait (a change made through another
/// server process, or the office CLI, is seen within this).
const CHANGE_POLL: Duration = Duration::from_millis(250);

impl Listener {
    /// Binds `addr` and serves with `threads` runtime workers and the default [`Limits`].
    pub fn start(
        server: Arc<Server>,
        addr: SocketAddr,
        tls: Option<Tls>,
        threads: usize,
    ) -> Result<Listener, String> {
        Self::start_with(server, addr, tls, threads, Limits::default())
    }

    /// Like [`Listener::start`], with explicit limits.
    pub fn start_with(
        server: Arc<Server>,
        addr: SocketAddr,
        tls: Option<Tls>,
        threads: usize,
        limits: Limits,
    ) -> Result<Listener, String> {
        Self::start_scoped(server, addr, tls, threads, limits, Scope::All)
    }

    /// Like [`Listener::start_with`], serving only `scope`'s requests (others answer 404).
    pub fn start_scoped(
        server: Arc<Server>,
        addr: SocketAddr,
        tls: Option<Tls>,
        threads: usize,
        limits: Limits,
        scope: Scope,
    ) -> Result<Listener, String> {
        if tls.is_none() && !addr.ip().is_loopback() {
            return Err(format!(
                "refusing plain HTTP on {addr}: give --tls-cert and --tls-key, or listen on loopback behind a TLS proxy"
            ));
        }
        let acceptor = tls.as_ref().map(acceptor).transpose()?;
        let std_listener = std::net::TcpListener::bind(addr)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| format!("{addr}: {e}"))?;
        let local = std_listener
            .local_addr()
            .map_err(|e| format!("{addr}: {e}"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("baomi-http")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        let (stop, stopped) = watch::channel(false);
        // Dropped last, outside the runtime: each PostgreSQL connection owns a runtime of its
        // own (`db`), which must not be dropped inside ours.
        let keep = server.clone();
        let shared = Arc::new(Shared {
            server,
            limits,
            scope,
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight.max(1))),
            changes: watch::channel(0).0,
            poke: tokio::sync::Notify::new(),
            body_budget: Arc::new(Semaphore::new((limits.max_body_bytes / 1024).max(1))),
            peers: std::sync::Mutex::new(std::collections::HashMap::new()),
            waits: std::sync::Mutex::new(std::collections::HashMap::new()),
        });
        let thread = std::thread::Builder::new()
            .name("baomi-listener".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => accept_loop(l, acceptor, shared, stopped).await,
                        Err(e) => log::error!("listener: {e}"),
                    }
                });
                // Blocking work still running (a database call) is not waited for forever.
                runtime.shutdown_timeout(limits.drain_timeout);
                drop(keep);
            })
            .map_err(|e| format!("cannot start the listener thread: {e}"))?;
        Ok(Listener {
            addr: local,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }

    /// Stops accepting, lets requests in flight finish (up to the drain timeout), returns.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Serves until SIGTERM or SIGINT, then stops gracefully.
    pub fn run_until_signal(self) -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
            let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
            tokio::select! {
                _ = term.recv() => log::info!("SIGTERM: draining"),
                _ = int.recv() => log::info!("SIGINT: draining"),
            }
            Ok::<(), String>(())
        })?;
        self.stop();
        Ok(())
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn acceptor(tls: &Tls) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("TLS certificate: {e}"))?;
    if certs.is_empty() {
        return Err("TLS certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem).map_err(|e| format!("TLS key: {e}"))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let limits = shared.limits;
    tokio::spawn(poll_changes(shared.clone(), stopped.clone()));
    tokio::spawn(retry_mdm(shared.clone(), stopped.clone()));
    tokio::spawn(sign_ledger(shared.clone(), stopped.clone()));
    tokio::spawn(deliver_alerts(shared.clone(), stopped.clone()));
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            _ = stopped.changed() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => (stream, peer.ip()),
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                log::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            log::warn!("connection limit reached: closing a new connection");
            continue;
        };
        let per_peer = limits.max_connections_per_peer.max(1);
        let admitted = shared.with_peer(peer, |p| {
            if p.connections >= per_peer {
                false
            } else {
                p.connections += 1;
                true
            }
        });
        if !admitted {
            log::warn!("{peer}: {per_peer} connections open: closing a new one");
            continue;
        }
        let counted = PeerConnection {
            shared: shared.clone(),
            ip: peer,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let _counted = counted;
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(s)) => {
                            serve_connection(TokioIo::new(s), shared, watcher, peer).await;
                        }
                        Ok(Err(e)) => log::info!("TLS handshake: {e}"),
                        Err(_) => log::info!("TLS handshake timed out"),
                    }
                }
                None => serve_connection(TokioIo::new(stream), shared, watcher, peer).await,
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        log::warn!("requests still in flight after the drain timeout");
    }
}

/// The evidence ledger's sequencer and signer on a schedule: queued leaves are appended and a
/// checkpoint signed every few seconds (group commit; uploads never wait for it).
async fn sign_ledger(shared: Arc<Shared>, stopped: watch::Receiver<bool>) {
    let job: fn(&Server) -> Result<(), ApiError> = |s| {
        if s.has_log_key() {
            s.ledger_checkpoint().map(|_| ())
        } else {
            s.ledger_integrate().map(|_| ())
        }
    };
    every(
        shared,
        stopped,
        std::time::Duration::from_secs(2),
        "ledger",
        job,
    )
    .await;
}

/// Runs `job` on the blocking pool every `period` until the listener stops, logging what it
/// returns as an error under `what`.
async fn every(
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
    period: std::time::Duration,
    what: &'static str,
    job: fn(&Server) -> Result<(), ApiError>,
) {
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let server = shared.server.clone();
        match tokio::task::spawn_blocking(move || job(&server)).await {
            Ok(Err(e)) => log::warn!("{what}: {}", e.message),
            Err(e) => log::warn!("{what}: {e}"),
            Ok(Ok(())) => {}
        }
    }
}

/// Sends the alert deliveries that are due (`crate::notify`), once a second; nothing when no
/// channel is configured.
async fn deliver_alerts(shared: Arc<Shared>, stopped: watch::Receiver<bool>) {
    if shared.server.channels().names().is_empty() {
        return;
    }
    let job: fn(&Server) -> Result<(), ApiError> = |s| s.deliver_due(s.channels()).map(|_| ());
    every(
        shared,
        stopped,
        std::time::Duration::from_secs(1),
        "alert delivery",
        job,
    )
    .await;
}

/// Hands MDM commands that are due (a failed hand-over's backoff ran out, or another process
/// created them) to the MDM, once a second; nothing when no connector is configured.
async fn retry_mdm(shared: Arc<Shared>, stopped: watch::Receiver<bool>) {
    if shared.server.mdm_config().is_none() {
        return;
    }
    let job: fn(&Server) -> Result<(), ApiError> = |s| s.mdm_dispatch_due().map(|_| ());
    every(
        shared,
        stopped,
        std::time::Duration::from_secs(1),
        "mdm dispatch",
        job,
    )
    .await;
}

/// Reads the change counter while anyone waits (nothing at all while nobody does).
async fn poll_changes(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tokio::time::sleep(CHANGE_POLL) => {}
            _ = shared.poke.notified() => {}
        }
        if shared.changes.receiver_count() == 0 {
            continue;
        }
        let server = shared.server.clone();
        if let Ok(Ok(n)) = tokio::task::spawn_blocking(move || server.change_counter()).await {
            shared.changes.send_if_modified(|cur| {
                let moved = *cur != n;
                *cur = n;
                moved
            });
        }
    }
}

/// `POST /v1/wait`: authenticated like every request, then held until something for this
/// device changed or the wait ran out ("nothing yet", before proxies' idle timeouts).
async fn long_poll(shared: Arc<Shared>, headers: Vec<(String, String)>, body: Bytes) -> Reply {
    // Subscribed before the first check, so a change between the two is not missed.
    let mut changes = shared.changes.subscribe();
    changes.mark_unchanged();
    let server = shared.server.clone();
    let first = {
        // Database work, inside the concurrency limit like every request.
        let Ok(_permit) = shared.in_flight.acquire().await else {
            return error(&ApiError::internal("shutting down"));
        };
        tokio::task::spawn_blocking(move || server.wait_check(&headers, &body)).await
    };
    let check = match first {
        Ok(Ok(c)) if c.pending => return answer(Server::wait_answer(true)),
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return error(&e),
        Err(_) => return error(&ApiError::internal("the request failed")),
    };
    // One open wait per device, the newest by signed time: a captured wait replayed on many
    // connections holds one of them, and a device's newer wait ends its older one.
    let ended = Arc::new(tokio::sync::Notify::new());
    {
        let mut waits = shared
            .waits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match waits.get(&check.device) {
            Some((at, _)) if *at >= check.at => {
                return error(&ApiError::new_pub(
                    401,
                    "replayed",
                    "a wait signed at this time or later is already open for this device",
                ));
            }
            Some((_, older)) => older.notify_one(),
            None if waits.len() >= shared.limits.max_waits => {
                return error(&busy("too many waits open"));
            }
            None => {}
        }
        waits.insert(check.device.clone(), (check.at, ended.clone()));
    }
    let _registered = WaitRegistration {
        shared: shared.clone(),
        device: check.device.clone(),
        signal: ended.clone(),
    };
    shared.poke.notify_one();
    let wait = Duration::from_millis(u64::from(check.req.max_wait_ms.min(MAX_WAIT_MS)));
    let deadline = tokio::time::Instant::now() + wait;
    let (dev, req) = (check.device, Arc::new(check.req));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return answer(Server::wait_answer(false)),
            // A newer wait from the same device took over: this one answers "nothing yet".
            _ = ended.notified() => return answer(Server::wait_answer(false)),
            r = changes.changed() => if r.is_err() { return answer(Server::wait_answer(false)) },
        }
        let server = shared.server.clone();
        let (d, r) = (dev.clone(), req.clone());
        let Ok(_permit) = shared.in_flight.acquire().await else {
            return error(&ApiError::internal("shutting down"));
        };
        match tokio::task::spawn_blocking(move || server.pending_for(&d, &r)).await {
            Ok(Ok(true)) => return answer(Server::wait_answer(true)),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => return error(&e),
            Err(_) => return error(&ApiError::internal("the request failed")),
        }
    }
}

/// A device's open wait, removed from the table when it ends (unless a newer one replaced it).
struct WaitRegistration {
    shared: Arc<Shared>,
    device: String,
    signal: Arc<tokio::sync::Notify>,
}

impl Drop for WaitRegistration {
    fn drop(&mut self) {
        let mut waits = self
            .shared
            .waits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if waits
            .get(&self.device)
            .is_some_and(|(_, s)| Arc::ptr_eq(s, &self.signal))
        {
            waits.remove(&self.device);
        }
    }
}

fn answer(reply: Result<Vec<u8>, ApiError>) -> Reply {
    match reply {
        Ok(b) => json(200, b),
        Err(e) => error(&e),
    }
}

async fn serve_connection<I>(
    io: TokioIo<I>,
    shared: Arc<Shared>,
    watcher: hyper_util::server::graceful::Watcher,
    peer: std::net::IpAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = shared.limits;
    let service = hyper::service::service_fn(move |req| dispatch(shared.clone(), req, peer));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    let conn = watcher.watch(builder.serve_connection(io, service));
    match tokio::time::timeout(limits.connection_lifetime, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::debug!("connection: {e}"),
        Err(_) => log::debug!("connection closed at the end of its lifetime"),
    }
}

/// An answer: its body whole, or streamed (an export) from a bounded channel.
type Reply = Response<BoxBody<Bytes, std::io::Error>>;

fn full(body: impl Into<Bytes>) -> BoxBody<Bytes, std::io::Error> {
    Full::new(body.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// Chunks of an export in flight at once: the memory an export holds is this many chunks of
/// one page each, whatever its size.
const EXPORT_CHUNKS: usize = 4;

/// A body fed by a blocking task through a bounded channel; an `Err` ends the response
/// abnormally (the client sees a broken transfer, not a short file that looks whole).
struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|c| c.map(|r| r.map(hyper::body::Frame::data)))
    }
}

fn json(status: u16, body: Vec<u8>) -> Reply {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(e: &ApiError) -> Reply {
    crate::metrics::error_answered(e.code);
    json(e.status, e.body())
}

/// Bytes of an over-limit body read and thrown away so the client can read the 413.
const DRAIN_CAP: u64 = 2 * MAX_REQUEST_BYTES as u64;

/// The body, up to [`MAX_REQUEST_BYTES`]; past it, discarded up to [`DRAIN_CAP`], then 413.
/// Memory held is the limit at most, whatever the client sends.
async fn read_body(mut body: Incoming, budget: &mut BodyBudget) -> Result<Bytes, ApiError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen += data.len() as u64;
        if seen > DRAIN_CAP {
            return Err(too_large());
        }
        if seen <= MAX_REQUEST_BYTES as u64 {
            // Held only with room reserved for it (all clients, and this address).
            budget.reserve(seen)?;
            buf.extend_from_slice(&data);
        }
    }
    if seen > MAX_REQUEST_BYTES as u64 {
        return Err(too_large());
    }
    Ok(Bytes::from(buf))
}

fn too_large() -> ApiError {
    ApiError {
        status: 413,
        code: "too_large",
        message: format!("request body over {MAX_REQUEST_BYTES} bytes"),
    }
}

/// The console and the officer API: answers carry their own headers (cookies, CSP, redirects).
async fn office(
    shared: Arc<Shared>,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Bytes,
) -> Reply {
    let Ok(permit) = shared.in_flight.clone().acquire_owned().await else {
        return error(&ApiError::internal("shutting down"));
    };
    let server = shared.server.clone();
    let (m, u) = (method.clone(), url.clone());
    let custody = url.starts_with("/v1/office/custody") && method == "POST";
    match tokio::task::spawn_blocking(move || server.handle_office(&m, &u, &headers, &body)).await {
        Ok(r) => {
            if custody && r.status == 200 {
                shared.poke.notify_one();
            }
            let body = match r.export {
                None => {
                    drop(permit);
                    full(r.body)
                }
                // An export: the rows follow the headers, a page at a time, made by a
                // blocking task that holds the request's permit until it ends (the reader
                // went away, or the last page was sent).
                Some((job, tr)) => {
                    let (tx, rx) = tokio::sync::mpsc::channel(EXPORT_CHUNKS);
                    let server = shared.server.clone();
                    tokio::task::spawn_blocking(move || {
                        let _permit = permit;
                        let result =
                            crate::console::export::run(&server, &job, &tr, &mut |chunk| {
                                tx.blocking_send(Ok(Bytes::from(chunk))).is_ok()
                            });
                        if let Err(e) = result {
                            log::error!("export {}: {}", job.file_name(), e.message);
                            let _ = tx.blocking_send(Err(std::io::Error::other(e.message)));
                        }
                    });
                    ChannelBody(rx).boxed()
                }
            };
            let mut resp = Response::new(body);
            *resp.status_mut() =
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            for (k, v) in r.headers {
                if let (Ok(k), Ok(v)) = (
                    hyper::header::HeaderName::try_from(k),
                    hyper::header::HeaderValue::try_from(v),
                ) {
                    resp.headers_mut().append(k, v);
                }
            }
            resp
        }
        Err(e) => {
            log::error!("{method} {url}: the office handler failed: {e}");
            error(&ApiError::internal("the request failed"))
        }
    }
}

/// The service endpoints the listener answers itself (no authentication): liveness and
/// readiness.
pub const SERVICE_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The API description, served at `GET /openapi.json` (kept true by `server/tests/openapi.rs`).
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// Answers one request and counts it (`crate::metrics`).
async fn dispatch(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    peer: std::net::IpAddr,
) -> Result<Reply, Infallible> {
    let label = crate::metrics::path_label(req.uri().path());
    let start = std::time::Instant::now();
    let reply = answer_request(shared, req, peer).await;
    if let (Some(m), Ok(r)) = (crate::metrics::METRICS.as_ref(), &reply) {
        m.requests
            .with_label_values(&[label, r.status().as_str()])
            .inc();
        m.latency
            .with_label_values(&[label])
            .observe(start.elapsed().as_secs_f64());
    }
    reply
}

async fn answer_request(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    peer: std::net::IpAddr,
) -> Result<Reply, Infallible> {
    let (parts, body) = req.into_parts();
    if parts.method == hyper::Method::GET && parts.uri.path() == "/openapi.json" {
        return Ok(json(200, OPENAPI.as_bytes().to_vec()));
    }
    // Liveness (the process answers) and readiness (the database answers, the schema is
    // current), for a service manager or a load balancer; no authentication, no body.
    // Prometheus metrics: the office's side (not on a device-only listener).
    if parts.method == hyper::Method::GET
        && parts.uri.path() == SERVICE_PATHS[2]
        && shared.scope != Scope::Devices
        && let Some(m) = crate::metrics::METRICS.as_ref()
    {
        if let Ok(waits) = shared.waits.lock() {
            m.open_waits
                .set(i64::try_from(waits.len()).unwrap_or(i64::MAX));
        }
        // The MDM queue, read now (a scrape is rare; the count is one indexed query).
        let server = shared.server.clone();
        if let Ok(_permit) = shared.in_flight.acquire().await
            && let Ok(Ok(queue)) =
                tokio::task::spawn_blocking(move || server.mdm_queue_counts()).await
        {
            for (state, n) in queue {
                m.mdm_queue.with_label_values(&[state]).set(n);
            }
        }
        let mut r = Response::new(full(m.render()));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        return Ok(r);
    }
    if parts.method == hyper::Method::GET && parts.uri.path() == SERVICE_PATHS[0] {
        return Ok(json(200, br#"{"status":"ok"}"#.to_vec()));
    }
    if parts.method == hyper::Method::GET && parts.uri.path() == SERVICE_PATHS[1] {
        let server = shared.server.clone();
        let Ok(_permit) = shared.in_flight.acquire().await else {
            return Ok(error(&ApiError::internal("shutting down")));
        };
        return Ok(
            match tokio::task::spawn_blocking(move || server.readiness()).await {
                Ok(Ok(())) => json(200, br#"{"status":"ready"}"#.to_vec()),
                Ok(Err(e)) => error(&e),
                Err(_) => error(&ApiError::internal("the readiness check failed")),
            },
        );
    }
    let method = parts.method.as_str().to_owned();
    let url = parts.uri.to_string();
    let office_path = crate::console::is_office_path(parts.uri.path());
    match (shared.scope, office_path) {
        (Scope::Devices, true) => {
            return Ok(error(&ApiError::new_pub(
                404,
                "not_found",
                "the console and the officer API are served on the office listener",
            )));
        }
        (Scope::Office, false) => {
            return Ok(error(&ApiError::new_pub(
                404,
                "not_found",
                "the device protocol is served on the device listener",
            )));
        }
        _ => {}
    }
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Far over the limit: refuse without reading. Just over it: read and discard the rest (up
    // to `DRAIN_CAP`, within the body timeout) so the client, still sending, can read the 413.
    if declared.is_some_and(|n| n > DRAIN_CAP) {
        return Ok(error(&too_large()));
    }
    // Held until the answer is built: what this request's body costs in memory.
    let mut budget = BodyBudget {
        shared: shared.clone(),
        ip: peer,
        kib: 0,
        permits: None,
    };
    if let Some(n) = declared.filter(|n| *n <= MAX_REQUEST_BYTES as u64)
        && let Err(e) = budget.reserve(n)
    {
        return Ok(error(&e));
    }
    let read = read_body(body, &mut budget);
    let body = match tokio::time::timeout(shared.limits.body_timeout, read).await {
        Err(_) => {
            return Ok(error(&ApiError {
                status: 408,
                code: "timeout",
                message: "the request body did not arrive in time".into(),
            }));
        }
        Ok(Err(e)) => return Ok(error(&e)),
        Ok(Ok(b)) => b,
    };
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter(|(k, _)| k.as_str() != crate::console::PEER_HEADER)
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    // Who is asking, for per-address login throttles; a client cannot set it.
    headers.push((crate::console::PEER_HEADER.to_owned(), peer.to_string()));
    if parts.uri.path() == path::WAIT && method == "POST" {
        return Ok(long_poll(shared, headers, body).await);
    }
    if crate::console::is_office_path(parts.uri.path()) {
        return Ok(office(shared, method, url, headers, body).await);
    }
    let custody_post = parts.uri.path() == path::REGISTRY_CUSTODY;
    let Ok(_permit) = shared.in_flight.acquire().await else {
        return Ok(error(&ApiError::internal("shutting down")));
    };
    let server = shared.server.clone();
    let (m, u) = (method.clone(), url.clone());
    let result = tokio::task::spawn_blocking(move || server.handle(&m, &u, &headers, &body)).await;
    let reply = match result {
        Ok(Ok(b)) => {
            if custody_post {
                // Devices waiting for this holder hear of it now, not at the next poll.
                shared.poke.notify_one();
            }
            json(200, b)
        }
        Ok(Err(e)) => {
            log::info!("{method} {url}: {} {}", e.status, e.message);
            error(&e)
        }
        Err(e) => {
            log::error!("{method} {url}: the handler failed: {e}");
            error(&ApiError::internal(
                "the request failed; nothing was acknowledged",
            ))
        }
    };
    Ok(reply)
}
