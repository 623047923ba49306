//! Wire messages of the sync protocol, version 1 (docs/sync-protocol.md). Shared by the device
//! client and the reference server so the two cannot drift.
//!
//! Every body is JSON. Every request but enrolment is signed ([`super::identity`]).

use serde::{Deserialize, Serialize};

use crate::posture::Posture;
use crate::time::Timestamp;

/// Protocol version spoken by this build (2: answers carry the office's proofs, see
/// [`super::proof`]).
pub const PROTOCOL_VERSION: u32 = 2;

/// Paths.
pub mod path {
    /// Enrolment (one-time token).
    pub const ENROLL: &str = "/v1/enroll";
    /// Stage 1.
    pub const CHECK_IN: &str = "/v1/check-in";
    /// Stage 2.
    pub const UPLOAD: &str = "/v1/upload";
    /// Stage 3.
    pub const DOWNLOAD: &str = "/v1/download";
    /// Stage 4.
    pub const FINISH: &str = "/v1/finish";
    /// Stages 1, 2 and 4 in one request, when nothing waits for the device.
    pub const SYNC: &str = "/v1/sync";
    /// The document registry posts signed custody records here.
    pub const REGISTRY_CUSTODY: &str = "/v1/registry/custody";
    /// Long-poll: answered as soon as something for this device changed.
    pub const WAIT: &str = "/v1/wait";
    /// Every endpoint, for tests, fuzzers and the API description.
    pub const ALL: [&str; 8] = [
        ENROLL,
        CHECK_IN,
        UPLOAD,
        DOWNLOAD,
        FINISH,
        SYNC,
        WAIT,
        REGISTRY_CUSTODY,
    ];
}

/// Most records one upload batch carries.
pub const MAX_BATCH_RECORDS: usize = 100;
/// Largest request body the server reads.
pub const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;

/// `POST /v1/enroll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// Protocol version.
    pub protocol: u32,
    /// One-time token printed by `baomi-server token new`.
    pub token: String,
    /// The id the device's store binds its records to.
    pub device_id: String,
    /// Base64 raw Ed25519 public key of the device identity.
    pub public_key: String,
    /// Signature by that key over `enroll-v1\n{token}\n{device_id}`: proof of possession.
    pub proof: String,
    /// `android` or `ios`.
    pub platform: String,
    /// Agent build.
    pub agent_version: String,
}

/// Answer to enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// The enrolled id (echoed).
    pub device_id: String,
    /// Server time.
    pub server_time: Timestamp,
}

/// Installed policy, as the device reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyState {
    /// Policy id.
    pub id: String,
    /// Bundle version.
    pub version: u64,
    /// Hex SHA-256 of the installed bundle's payload: the server sees drift.
    pub digest: String,
}

/// The device's view of its violation chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainState {
    /// Newest seq the server acknowledged (as the device remembers it).
    pub acked_through: u64,
    /// Newest seq recorded.
    pub head_seq: u64,
    /// Hex tag of the newest record (the chain head).
    pub head_tag: String,
    /// The store's commit generation: it only grows, so a store restored from an older copy
    /// reports less than the server saw before.
    #[serde(default)]
    pub generation: u64,
}

/// Stage 1: `POST /v1/check-in`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckIn {
    /// Protocol version.
    pub protocol: u32,
    /// Device id (must match the signing identity).
    pub device_id: String,
    /// Agent build.
    pub agent_version: String,
    /// Installed policy, if any.
    pub policy: Option<PolicyState>,
    /// Installed trust root version.
    pub trust_root_version: u64,
    /// Hex SHA-256 of the installed trust root's signed payload: the office alerts on a root it
    /// never published (a thief's rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_root_digest: Option<String>,
    /// Posture the core currently wants.
    pub posture: Posture,
    /// What the platform reported it applied, setting by setting (absent before the first
    /// report, and from agents older than the report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<crate::posture::AppliedPosture>,
    /// Why the device is failing closed, if it is.
    pub fail_closed: Option<String>,
    /// Violation chain.
    pub chain: ChainState,
    /// Device clock at the request.
    pub device_time: Timestamp,
    /// Custody feed position already applied.
    pub custody_cursor: u64,
    /// A fresh session key sealed to the office's upload key: the server proves its check-in
    /// and finish answers with it ([`super::proof`]).
    pub session: super::seal::SealedBox,
    /// The office log's largest checkpoint this phone was shown (a signed note, at most
    /// [`super::ledger::MAX_LOG_NOTE`] bytes): the office keeps it for its auditor. Absent
    /// before the first, and from agents older than the ledger's gossip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_checkpoint: Option<String>,
}

/// What the server has that the device does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckInResponse {
    /// Server clock.
    pub server_time: Timestamp,
    /// Newest seq the server has durably stored for this device.
    pub acked_through: u64,
    /// Hex chain tag of that record as the device uploaded it ("" for none): the device
    /// deletes only the records it actually sent.
    #[serde(default)]
    pub acked_tag: String,
    /// Newest published bundle for this fleet, if it differs from the device's.
    pub bundle: Option<PolicyState>,
    /// Newest trust root version the server has.
    pub trust_root_version: u64,
    /// Custody records are waiting after the device's cursor.
    pub custody_pending: bool,
    /// The office retired this device: it stops syncing (its records stay at the office).
    /// Part of the proven answer, so no relay can retire a phone. Absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retired: bool,
    /// The office log's newest signed checkpoint (a C2SP signed note), which the phone
    /// carries ([`super::schedule::SyncState::carry_log_checkpoint`]). Part of the proven
    /// answer. Absent from an office without a log key or before its first checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_checkpoint: Option<String>,
    /// HMAC under the session key over this answer with `proof` empty ([`super::proof`]).
    #[serde(default)]
    pub proof: String,
}

impl CheckInResponse {
    /// The canonical bytes the proof covers: this answer with `proof` empty.
    pub fn proof_bytes(&self) -> Vec<u8> {
        let mut c = self.clone();
        c.proof.clear();
        serde_json::to_vec(&c).unwrap_or_default()
    }
}

/// Stage 2: `POST /v1/upload`. `sealed` opens (for the office only) to an [`UploadBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    /// Device id.
    pub device_id: String,
    /// First seq in the batch.
    pub first_seq: u64,
    /// Last seq in the batch.
    pub last_seq: u64,
    /// The records, sealed to the office's upload key ([`super::seal`]).
    pub sealed: super::seal::SealedBox,
}

/// `POST /v1/sync`: the usual sync in one request. A device whose unacknowledged records
/// fit in one batch sends its check-in, that batch and the finish it will send if the server
/// has nothing for it; the server does all three in one transaction, and finishes only if no
/// newer bundle, trust root or custody record waits. Otherwise the answer carries the
/// check-in and the receipt, and the device goes on with download and `/v1/finish` under the
/// same session key. A server without this path answers 404 and the device runs the stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// Stage 1.
    pub check_in: CheckIn,
    /// Stage 2: the whole backlog (absent when there is none).
    pub upload: Option<Upload>,
    /// Stage 4, as it stands if nothing is delivered.
    pub finish: Finish,
}

/// Answer to `POST /v1/sync`. Proofs are computed over the whole request body: the check-in
/// answer's as at stage 1, the receipt as at stage 2, the finish's as at stage 4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// Stage 1's answer (acknowledgement as it was before the upload).
    pub check_in: CheckInResponse,
    /// Stage 2's answer, when a batch was sent.
    pub upload: Option<UploadResponse>,
    /// Present when the server finished the sync: nothing waits for the device.
    pub finish: Option<FinishResponse>,
}

/// What a sealed upload opens to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadBatch {
    /// Base64 of a random key for this batch's receipt ([`super::proof`]).
    pub receipt_key: String,
    /// The records, in seq order.
    pub records: Vec<UploadedRecord>,
    /// The device's signed checkpoint over the last record's public link ([`super::ledger`]).
    #[serde(default)]
    pub checkpoint: Option<super::ledger::DeviceCheckpoint>,
}

/// One record inside an upload batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadedRecord {
    /// Seq.
    pub seq: u64,
    /// Hex chain tag of the record in the device's store.
    pub tag: String,
    /// Record (as decrypted from the device store).
    pub record: crate::store::ViolationRecord,
    /// Hex of the record's public link ([`super::ledger::chain_link`]).
    #[serde(default)]
    pub link: String,
}

/// The server's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadResponse {
    /// Highest contiguous seq durably stored.
    pub acked_through: u64,
    /// HMAC under the batch's receipt key over device, seq range and last tag: proof that the
    /// office stored this batch. The device deletes the batch on it, and on nothing else.
    #[serde(default)]
    pub receipt: String,
}

/// Stage 3: `POST /v1/download`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadRequest {
    /// Device id.
    pub device_id: String,
    /// Trust root version installed.
    pub trust_root_version: u64,
    /// Bundle version installed (0 if none).
    pub policy_version: u64,
    /// Custody records after this position.
    pub custody_after: u64,
}

/// Newer signed material. The device verifies all of it as if it came from anywhere else,
/// and takes the answer as a whole only with the office's proof: a relay that drops one item
/// (a custody sign-out, a bundle, a rotation) breaks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadResponse {
    /// Trust roots newer than the device's, oldest first (each rotation verifies against the
    /// previous).
    pub trust_roots: Vec<String>,
    /// The newest bundle, if newer than the device's.
    pub bundle: Option<String>,
    /// Custody records, in feed order.
    pub custody: Vec<CustodyFeedEntry>,
    /// More custody records wait after the last one here (the download is paged): the
    /// device downloads again.
    #[serde(default)]
    pub custody_more: bool,
    /// HMAC under the sync's session key over this answer with `proof` empty
    /// ([`super::proof`]).
    #[serde(default)]
    pub proof: String,
}

impl DownloadResponse {
    /// The canonical bytes the proof covers: this answer with `proof` empty.
    pub fn proof_bytes(&self) -> Vec<u8> {
        let mut c = self.clone();
        c.proof.clear();
        serde_json::to_vec(&c).unwrap_or_default()
    }
}

/// One signed custody record and its feed position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodyFeedEntry {
    /// Feed position (strictly increasing).
    pub cursor: u64,
    /// The registry's signed envelope.
    pub envelope: String,
}

/// Stage 4: `POST /v1/finish`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finish {
    /// Device id.
    pub device_id: String,
    /// Posture after the sync (what the platform was asked to apply).
    pub posture: Posture,
    /// Installed policy.
    pub policy: Option<PolicyState>,
    /// Chain after the sync.
    pub chain: ChainState,
    /// Custody feed position after the sync.
    pub custody_cursor: u64,
}

/// Answer to stage 4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishResponse {
    /// HMAC under the session key over the finish request: the office saw the sync through.
    #[serde(default)]
    pub proof: String,
}

/// Longest a server holds a wait open: under the idle timeouts of common load balancers and
/// proxies (30-60 s), so "nothing yet" comes back before one of them cuts the connection.
pub const MAX_WAIT_MS: u32 = 25_000;

/// `POST /v1/wait`: what the device has; the server answers when it has something newer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitRequest {
    /// Device id.
    pub device_id: String,
    /// Trust root version installed.
    pub trust_root_version: u64,
    /// Bundle version installed (0 if none).
    pub policy_version: u64,
    /// Custody feed position applied.
    pub custody_after: u64,
    /// How long to hold the request at most (capped at [`MAX_WAIT_MS`]).
    pub max_wait_ms: u32,
}

/// Answer to a wait. Only a hint to sync now: everything it points at is fetched and verified
/// by a normal sync, so a relay that lies here can only cause or delay a sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitResponse {
    /// Something newer is waiting: sync now.
    pub changed: bool,
}

/// Every 4xx/5xx body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code (`unauthorized`, `replayed`, `stale`, `forbidden`, `bad_request`,
    /// `too_large`, `not_found`, `conflict`, `internal`).
    pub error: String,
    /// For a human.
    pub message: String,
}
