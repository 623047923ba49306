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
