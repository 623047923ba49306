//! What the platform provides: one HTTP exchange at a time.

/// A request the core wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// Path below the server's base URL, e.g. `/v1/check-in`.
    pub path: String,
    /// Headers to add (signature headers among them).
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: Vec<u8>,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
}

/// The network failed before a response arrived (offline, refused, TLS, timeout).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transport: {0}")]
pub struct TransportError(pub String);

/// Sends one request to the compliance server and returns its response, whatever the status.
pub trait Transport: Send + Sync {
    /// Sends `req`.
    fn send(&self, req: &HttpRequest) -> Result<HttpResponse, TransportError>;
}
