//! What only the platform has, as foreign traits, and their adapters to the core's traits.

use std::sync::Arc;

use baomi_core::store::{KeyProvider, KeyProviderError};
use baomi_core::sync::{HttpRequest, HttpResponse, Transport, TransportError};
use baomi_core::time::Timestamp;

use crate::types::{BaomiError, HttpHeader, HttpReply};

/// The platform's key store: Android Keystore (an AES-GCM key, StrongBox when present), iOS
/// Keychain / Secure Enclave. It wraps the store's data key; the wrapping key never leaves it.
#[uniffi::export(foreign)]
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    /// Stable id of the wrapping key, e.g. `android-keystore:baomi-kek-1`.
    fn key_id(&self) -> Result<String, BaomiError>;
    /// Wraps a 32-byte data key.
    fn wrap(&self, data_key: Vec<u8>) -> Result<Vec<u8>, BaomiError>;
    /// Unwraps what `wrap` produced. Throw `Refused` when the key does not open it.
    fn unwrap(&self, wrapped: Vec<u8>) -> Result<Vec<u8>, BaomiError>;
}

/// The platform's HTTP client (OkHttp, URLSession) bound to the compliance server's base URL.
/// It returns every status; it throws only when no answer came back.
#[uniffi::export(foreign)]
pub trait HttpClient: Send + Sync + std::fmt::Debug {
    /// `POST base + path` with `headers` and `body`.
    fn post(
        &self,
        path: String,
        headers: Vec<HttpHeader>,
        body: Vec<u8>,
    ) -> Result<HttpReply, BaomiError>;
}

/// The platform's wall clock (so tests and the JVM can drive time).
#[uniffi::export(foreign)]
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> Result<i64, BaomiError>;
}

/// The system clock, for platforms that have nothing better to offer.
#[derive(Debug, Default, uniffi::Object)]
pub struct SystemClock;

#[uniffi::export]
impl SystemClock {
    /// A system clock.
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::new(Self)
    }
}

#[uniffi::export]
impl Clock for SystemClock {
    fn now_ms(&self) -> Result<i64, BaomiError> {
        Ok(Timestamp::now().0)
    }
}

pub(crate) struct KeyStoreProvider(pub Arc<dyn KeyStore>);

impl KeyProvider for KeyStoreProvider {
    fn key_id(&self) -> String {
        self.0.key_id().unwrap_or_else(|_| "unknown".into())
    }
    fn wrap(&self, data_key: &[u8]) -> Result<Vec<u8>, KeyProviderError> {
        self.0
            .wrap(data_key.to_vec())
            .map_err(|e| KeyProviderError::Unavailable(e.to_string()))
    }
    fn unwrap(&self, wrapped: &[u8]) -> Result<Vec<u8>, KeyProviderError> {
        self.0.unwrap(wrapped.to_vec()).map_err(|e| match e {
            BaomiError::Refused { .. } => KeyProviderError::Rejected,
            other => KeyProviderError::Unavailable(other.to_string()),
        })
    }
}

pub(crate) struct HttpTransportAdapter(pub Arc<dyn HttpClient>);

impl Transport for HttpTransportAdapter {
    fn send(&self, req: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let headers = req
            .headers
            .iter()
            .map(|(name, value)| HttpHeader {
                name: name.clone(),
                value: value.clone(),
            })
            .collect();
        self.0
            .post(req.path.clone(), headers, req.body.clone())
            .map(|r| HttpResponse {
                status: r.status,
                body: r.body,
            })
            .map_err(|e| TransportError(e.to_string()))
    }
}
