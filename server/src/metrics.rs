//! Prometheus metrics (`GET /metrics` on the office listener, or the only one): requests by
//! endpoint and status, their latency, waits held open, syncs and their outcomes. Through the
//! `prometheus` crate (the Prometheus project's Rust client); labels are drawn from a fixed
//! set (the documented paths, or `other`), so no client can grow them.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    /// Requests by path and status.
    pub requests: IntCounterVec,
    /// Request latency by path, seconds.
    pub latency: HistogramVec,
    /// Long-polls held open now.
    pub open_waits: IntGauge,
    /// Request bodies refused for lack of room (503 busy).
    pub bodies_refused: IntCounterVec,
    /// Alert deliveries attempted, by channel and result (`crate::notify`).
    pub deliveries: IntCounterVec,
    /// Syncs the office saw through (finished, proven), by how: one request or the stages.
    pub syncs: IntCounterVec,
    /// Errors answered, by the error body's code (a fixed set: `ErrorBody.code`).
    pub errors: IntCounterVec,
    /// MDM commands waiting, by state (pending: not yet handed to the MDM; queued: at the
    /// MDM, not yet answered; not_now: the device deferred them). Read at each scrape.
    pub mdm_queue: IntGaugeVec,
}

/// The process's metrics.
pub static METRICS: LazyLock<Option<Metrics>> = LazyLock::new(|| Metrics::new().ok());

impl Metrics {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("baomi".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "Requests answered, by path and status",
            ),
            &["path", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_seconds", "Time to answer, by path").buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
            ]),
            &["path"],
        )?;
        let open_waits = IntGauge::new("open_waits", "Long-polls held open")?;
        let bodies_refused = IntCounterVec::new(
            Opts::new(
                "bodies_refused_total",
                "Request bodies refused for lack of room",
            ),
            &["scope"],
        )?;
        let deliveries = IntCounterVec::new(
            Opts::new(
                "alert_deliveries_total",
                "Alert deliveries attempted, by channel and result",
            ),
            &["channel", "result"],
        )?;
        let syncs = IntCounterVec::new(
            Opts::new(
                "syncs_total",
                "Syncs finished, by how (one_request, stages)",
            ),
            &["how"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new("errors_total", "Errors answered, by code"),
            &["code"],
        )?;
        let mdm_queue = IntGaugeVec::new(
            Opts::new("mdm_commands", "MDM commands waiting, by state"),
            &["state"],
        )?;
        registry.register(Box::new(syncs.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(mdm_queue.clone()))?;
        registry.register(Box::new(deliveries.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(open_waits.clone()))?;
        registry.register(Box::new(bodies_refused.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            open_waits,
            bodies_refused,
            deliveries,
            syncs,
            errors,
            mdm_queue,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Counts a finished sync.
pub fn sync_finished(how: &'static str) {
    if let Some(m) = METRICS.as_ref() {
        m.syncs.with_label_values(&[how]).inc();
    }
}

/// Counts an error answered.
pub fn error_answered(code: &'static str) {
    if let Some(m) = METRICS.as_ref() {
        m.errors.with_label_values(&[code]).inc();
    }
}

/// The label for `path`: a documented path, or `other`.
pub fn path_label(path: &str) -> &'static str {
    use baomi_core::sync::protocol::path as p;
    p::ALL
        .into_iter()
        .chain(crate::console::OFFICE_API.iter().map(|(_, x)| *x))
        .chain(crate::http::SERVICE_PATHS)
        .find(|x| *x == path)
        .unwrap_or(if path.starts_with("/console") {
            "/console"
        } else {
            "other"
        })
}
