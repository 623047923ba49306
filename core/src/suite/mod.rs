//! Cryptographic suites (issue 24). `intl` is today's (Ed25519, X25519, AES-256-GCM, SHA-256,
//! HMAC-SHA256 through ring) and stays the default; `sm` is the ShangMi suite a Chinese
//! government office is assessed for (GB/T 39786-2021): SM2 (GB/T 32918) signatures and
//! public-key encryption, SM3 (GB/T 32905) hashing and HMAC, SM4 (GB/T 32907) in GCM mode
//! (RFC 8998). The office picks one when it creates its trust root; every signed object
//! follows it and a mixed configuration is refused.

use serde::{Deserialize, Serialize};

pub mod sm;

/// A cryptographic suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Suite {
    /// Ed25519, X25519, AES-256-GCM, SHA-256, HMAC-SHA256 (ring).
    #[default]
    Intl,
    /// SM2 with SM3, SM2 public-key encryption, SM4-GCM, SM3, HMAC-SM3 (RustCrypto).
    Sm,
}

impl Suite {
    /// Its name in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Intl => "intl",
            Self::Sm => "sm",
        }
    }

    /// Whether it is the default (written files leave the default out).
    pub fn is_default(&self) -> bool {
        *self == Self::Intl
    }
}

impl std::fmt::Display for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Suite {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "intl" => Ok(Self::Intl),
            "sm" => Ok(Self::Sm),
            other => Err(format!("unknown suite `{other}` (intl or sm)")),
        }
    }
}

/// Length of every digest and MAC tag of both suites (SHA-256/SM3, HMAC-SHA256/HMAC-SM3).
pub const DIGEST_LEN: usize = 32;

impl Suite {
    /// The suite's hash: SHA-256 (`intl`) or SM3 (`sm`).
    pub fn digest(self, data: &[u8]) -> [u8; DIGEST_LEN] {
        match self {
            Self::Intl => {
                let mut out = [0u8; DIGEST_LEN];
                out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
                out
            }
            Self::Sm => sm::sm3(data),
        }
    }

    /// The suite's MAC: HMAC-SHA256 (`intl`) or HMAC-SM3 (`sm`). `None` only if the MAC
    /// cannot be keyed (unreachable: HMAC takes any key length); never a tag under another key.
    pub fn mac(self, key: &[u8], data: &[u8]) -> Option<[u8; DIGEST_LEN]> {
        match self {
            Self::Intl => {
                let tag =
                    ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), data);
                let mut out = [0u8; DIGEST_LEN];
                out.copy_from_slice(tag.as_ref());
                Some(out)
            }
            Self::Sm => sm::hmac_sm3(key, data),
        }
    }

    /// Checks a MAC tag in constant time.
    pub fn mac_verify(self, key: &[u8], data: &[u8], tag: &[u8]) -> bool {
        match self {
            Self::Intl => ring::hmac::verify(
                &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
                data,
                tag,
            )
            .is_ok(),
            Self::Sm => sm::hmac_sm3_verify(key, data, tag),
        }
    }

    /// HKDF (RFC 5869) over the suite's MAC: fills `out` (at most 255 × 32 bytes).
    pub fn hkdf(self, salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) -> Option<()> {
        match self {
            Self::Intl => {
                struct Len(usize);
                impl ring::hkdf::KeyType for Len {
                    fn len(&self) -> usize {
                        self.0
                    }
                }
                let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, salt).extract(ikm);
                let info = [info];
                prk.expand(&info, Len(out.len())).ok()?.fill(out).ok()
            }
            Self::Sm => sm::hkdf_sm3(salt, ikm, info, out).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_suite_hashes_macs_and_derives_with_its_own_algorithms() {
        // SHA-256("abc") and SM3("abc") (GB/T 32905 example 1).
        assert!(
            crate::bundle::keys::hex(&Suite::Intl.digest(b"abc")).starts_with("ba7816bf8f01cfea")
        );
        assert!(
            crate::bundle::keys::hex(&Suite::Sm.digest(b"abc")).starts_with("66c7f0f462eeedd9")
        );
        for s in [Suite::Intl, Suite::Sm] {
            let tag = s.mac(b"k", b"m").unwrap();
            assert!(s.mac_verify(b"k", b"m", &tag));
            assert!(!s.mac_verify(b"k2", b"m", &tag));
            assert!(!s.mac_verify(b"k", b"m", &tag[..31]));
            let mut a = [0u8; 48];
            s.hkdf(b"salt", b"ikm", b"info", &mut a).unwrap();
            assert_ne!(a, [0u8; 48]);
        }
        assert_ne!(Suite::Intl.mac(b"k", b"m"), Suite::Sm.mac(b"k", b"m"));
        // HKDF-SHA256: RFC 5869 test case 1 (the store's and the upload sealing's KDF).
        let salt: Vec<u8> = (0u8..=0x0c).collect();
        let info: Vec<u8> = (0xf0u8..=0xf9).collect();
        let mut okm = [0u8; 42];
        Suite::Intl
            .hkdf(&salt, &[0x0b; 22], &info, &mut okm)
            .unwrap();
        assert_eq!(
            crate::bundle::keys::hex(&okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }
}
