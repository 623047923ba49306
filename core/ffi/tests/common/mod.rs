//! What more than one FFI test builds: a key store that wraps nothing (the host has no
//! keystore; the platform's wrap is tested on the JVM and in Python).

use std::sync::Mutex;

use baomi_ffi::BaomiError;
use baomi_ffi::platform::KeyStore;

/// Keeps the data key as it is given.
#[derive(Debug)]
pub struct Keys(pub Mutex<Vec<u8>>);

impl KeyStore for Keys {
    fn key_id(&self) -> Result<String, BaomiError> {
        Ok("test".into())
    }
    fn wrap(&self, k: Vec<u8>) -> Result<Vec<u8>, BaomiError> {
        if let Ok(mut g) = self.0.lock() {
            *g = k.clone();
        }
        Ok(k)
    }
    fn unwrap(&self, w: Vec<u8>) -> Result<Vec<u8>, BaomiError> {
        Ok(w)
    }
}
