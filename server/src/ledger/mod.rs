//! The office's evidence ledger (issue 21): an append-only, verifiable log of everything an
//! inquiry relies on, so that an insider with the database cannot delete, edit, reorder or
//! roll back evidence unseen.
//!
//! * Every stored violation record (with the device's public hash link), every device
//!   checkpoint (signed by the phone), every enrolled device's public key, custody record,
//!   published bundle and trust root, and every entry of the officers' audit log is a **leaf**
//!   ([`Leaf`], canonical JSON) of a Merkle tree as in RFC 6962/9162.
//! * Leaves are written in the transaction that stores what they describe (on SQLite at their
//!   index, on PostgreSQL into a queue) and hashed into the tree by a sequencer in group
//!   commits ([`log::integrate`]); the log's state is signed as a C2SP
//!   `tlog-checkpoint` (signed note) with the office's log key ([`LogKey`]).
//! * Inclusion and consistency proofs are served to anyone who may read the office API;
//!   `baomi audit` ([`audit`]) checks them, every device's chain and what the office shows.
//!
//! The tree arithmetic is `tlog_tiles` (Cloudflare's port of Go's `golang.org/x/mod/sumdb/tlog`)
//! and the notes are `signed_note` (its port of `sumdb/note`); `server/tests/ledger_go.rs` checks
//! both against Go's own packages.

pub mod audit;
pub mod evidence;
pub mod log;

use serde::{Deserialize, Serialize};

pub use tlog_tiles::tlog::Hash;

/// One leaf of the log, in its canonical form (compact JSON, fields in this order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Leaf {
    /// A device enrolled with this public key (base64 Ed25519).
    Device {
        /// Device id.
        device: String,
        /// Its identity key: what its checkpoints verify under.
        public_key: String,
        /// Enrolment time (ms).
        at: i64,
    },
    /// A violation record as the device sent it.
    Record {
        /// Device id.
        device: String,
        /// Its seq in the device's chain.
        seq: u64,
        /// Hex of its public link (`baomi_core::sync::ledger::chain_link`).
        link: String,
        /// Hex SHA-256 of the record's canonical bytes (the stored `record` text).
        digest: String,
        /// When the office received it (ms).
        received_at: i64,
    },
    /// A device's signed checkpoint.
    Checkpoint {
        /// Device id.
        device: String,
        /// Last record covered.
        seq: u64,
        /// Hex link of that record.
        link: String,
        /// The device's signing time (ms).
        at: i64,
        /// Base64 Ed25519 (or SM2) signature by the device.
        signature: String,
        /// Hex hash of the request the device signed it with, for a checkpoint bound to it
        /// (`baomi_core::sync::ledger::bound_checkpoint_message`); absent for one signed apart,
        /// whose leaf bytes are what they always were.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        binding: String,
    },
    /// A registry custody record as received (hex SHA-256 of its envelope).
    Custody {
        /// Registry record id.
        record_id: String,
        /// Hex SHA-256 of the signed envelope.
        digest: String,
    },
    /// A personnel assignment record as received (hex SHA-256 of its envelope).
    Assignment {
        /// Personnel record id.
        record_id: String,
        /// Hex SHA-256 of the signed envelope.
        digest: String,
    },
    /// A published policy bundle.
    Bundle {
        /// Its version.
        version: u64,
        /// Hex SHA-256 of the signed envelope.
        digest: String,
    },
    /// A published trust root.
    TrustRoot {
        /// Its version.
        version: u64,
        /// Hex SHA-256 of the signed envelope.
        digest: String,
    },
    /// Retention: every violation received before `before` was purged from the office's
    /// records (their leaves stay: the log still verifies, and the auditor counts them as
    /// purged, not deleted, if `before` is at least [`MIN_RETENTION_MS`] before `at`).
    Purge {
        /// Cutoff (ms): records received before it.
        before: i64,
        /// When (ms).
        at: i64,
        /// Who ran it.
        by: String,
    },
    /// An entry of the officers' audit log.
    Audit {
        /// When (ms).
        at: i64,
        /// Acting officer (or `cli:USER@HOST`).
        officer: String,
        /// Action.
        action: String,
        /// Detail as stored.
        detail: String,
    },
}

impl Leaf {
    /// The leaf's bytes in the log.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_text().into_bytes()
    }

    /// The leaf's bytes in the log, as the text they are (JSON).
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A name for finding the leaf (`record/DEVICE/SEQ`, `record/DEVICE/SEQ/checkpoint`,
    /// `device/DEVICE`, ...); not part of what is hashed. A device's checkpoint is named after
    /// the record it ends at, so the index by name keeps it beside that record's entry: one
    /// page of that index written by a sync, not two far apart (schema version 11; before,
    /// `checkpoint/DEVICE/SEQ`, renamed at the upgrade).
    pub fn reference(&self) -> String {
        match self {
            Leaf::Device { device, .. } => format!("device/{device}"),
            Leaf::Record { device, seq, .. } => format!("record/{device}/{seq}"),
            Leaf::Checkpoint { device, seq, .. } => format!("record/{device}/{seq}/checkpoint"),
            Leaf::Custody { record_id, .. } => format!("custody/{record_id}"),
            Leaf::Assignment { record_id, .. } => format!("assignment/{record_id}"),
            Leaf::Bundle { version, .. } => format!("bundle/{version}"),
            Leaf::TrustRoot { version, .. } => format!("trust_root/{version}"),
            Leaf::Audit { at, .. } => format!("audit/{at}"),
            Leaf::Purge { at, .. } => format!("purge/{at}"),
        }
    }

    /// Parses a leaf's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a ledger leaf: {e}"))
    }
}

/// The shortest retention the auditor accepts: a purge of records received less than this
/// long before it is a finding (a "retention" that is really a deletion).
pub const MIN_RETENTION_MS: i64 = 180 * 86_400_000;

/// The office's log key: an Ed25519 key in `sumdb/note`'s text forms (`PRIVATE+KEY+name+id+…`
/// and `name+id+…`). Its name is the log's origin line.
pub struct LogKey {
    signer: signed_note::StandardSigner,
    verifier_key: String,
    name: String,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogKey({})", self.verifier_key)
    }
}

impl LogKey {
    /// A new key named `name` (the log's origin, e.g. `ledger.bmj.example.gov.cn`); returns it
    /// and the private key text to store (0600).
    pub fn generate(name: &str) -> Result<(Self, zeroize::Zeroizing<String>), String> {
        use base64::Engine as _;
        if !signed_note::is_key_name_valid(name) {
            return Err(format!(
                "`{name}` is not a valid key name (no spaces or '+')"
            ));
        }
        let mut raw = zeroize::Zeroizing::new([0u8; 33]);
        raw[0] = 0x01;
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw[1..])
            .map_err(|_| "random source failed".to_owned())?;
        let seed: [u8; 32] = raw[1..].try_into().map_err(|_| "seed".to_owned())?;
        let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = [&[0x01u8][..], sk.verifying_key().as_bytes()].concat();
        let id = signed_note::key_id(name, &public);
        let skey = zeroize::Zeroizing::new(format!(
            "PRIVATE+KEY+{name}+{id:08x}+{}",
            base64::engine::general_purpose::STANDARD.encode(raw.as_slice())
        ));
        Ok((Self::from_private(&skey)?, skey))
    }

    /// From the private key text (`PRIVATE+KEY+name+id+base64(0x01 || seed)`).
    pub fn from_private(skey: &str) -> Result<Self, String> {
        use base64::Engine as _;
        let skey = skey.trim();
        let signer =
            signed_note::StandardSigner::new(skey).map_err(|e| format!("not a log key: {e}"))?;
        let name = signed_note::Signer::name(&signer).to_owned();
        // PRIVATE+KEY+name+id+base64: the name has no '+', the base64 may.
        let b64 = skey.splitn(5, '+').nth(4).unwrap_or_default();
        let raw = zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| "not a log key".to_owned())?,
        );
        let seed: [u8; 32] = raw
            .get(1..33)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| "not an Ed25519 log key".to_owned())?;
        let vk = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        let verifier_key = signed_note::new_ed25519_verifier_key(&name, &vk);
        Ok(Self {
            signer,
            verifier_key,
            name,
        })
    }

    /// Reads the private key file.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
        );
        Self::from_private(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The verifier key text auditors pin (`name+id+base64`).
    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// The log's origin.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Signs a checkpoint body as a note.
    pub fn sign(&self, text: &[u8]) -> Result<String, String> {
        let mut note = signed_note::Note::new(text, &[]).map_err(|e| e.to_string())?;
        note.add_sigs(&[&self.signer]).map_err(|e| e.to_string())?;
        String::from_utf8(note.to_bytes()).map_err(|e| e.to_string())
    }
}

/// `GET /v1/office/ledger/leaves`: leaves in index order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafPage {
    /// `(index, leaf text)`.
    pub leaves: Vec<(u64, String)>,
}

/// `GET /v1/office/ledger/proof` and `/consistency`: base64 hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofAnswer {
    /// The proof's hashes, base64.
    pub hashes: Vec<String>,
}

/// One violation as the office stores and shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// Device id.
    pub device: String,
    /// Seq.
    pub seq: u64,
    /// The rules column (what the console lists and filters by).
    pub rules: String,
    /// The record as stored (the bytes the device hashed).
    pub record: String,
    /// Hex public link.
    pub link: String,
}

/// `GET /v1/office/ledger/records`: stored violations by (device, seq).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordPage {
    /// Rows.
    pub records: Vec<StoredRecord>,
}

/// The largest log checkpoint one phone reported carrying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenCheckpoint {
    /// Device id.
    pub device: String,
    /// The note as the phone reported it (unverified: the auditor verifies it).
    pub note: String,
    /// When the office received it (ms).
    pub at: i64,
}

/// `GET /v1/office/ledger/seen`: what the phones carry, by device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenPage {
    /// One per device that reported one, after `after_device`, in device order.
    pub devices: Vec<SeenCheckpoint>,
}

/// A leaf with its inclusion proof, in an evidence package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenLeaf {
    /// Index in the log.
    pub index: u64,
    /// Leaf text.
    pub data: String,
    /// Inclusion proof in the package's checkpoint (base64 hashes).
    pub proof: Vec<String>,
}

/// Evidence of one violation, verifiable offline (`baomi evidence verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// `baomi-evidence-v1`.
    pub format: String,
    /// The log's signed checkpoint (a C2SP signed note).
    pub checkpoint: String,
    /// The device's enrolment leaf (its public key).
    pub device: ProvenLeaf,
    /// The record's leaf.
    pub record: ProvenLeaf,
    /// The record as stored.
    pub content: String,
    /// The link before the record (hex; genesis for a chain's first record).
    pub previous_link: String,
    /// The leaves of the records after it, up to the device checkpoint covering it.
    pub segment: Vec<String>,
    /// The device's signed checkpoint covering the record.
    pub device_checkpoint: ProvenLeaf,
}

/// The format name of [`Evidence`].
pub const EVIDENCE_FORMAT: &str = "baomi-evidence-v1";
