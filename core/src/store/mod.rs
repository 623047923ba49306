//! The encrypted, tamper-evident violation log and the agent's durable state.
//!
//! Every record is sealed with AES-256-GCM (hardware AES on ARMv8 phones and x86; ring picks
//! the instructions). The associated data binds each record to its device, its sequence number
//! and the previous record's tag, so the GCM tag doubles as the chain MAC: one pass over each
//! record both encrypts and chains it, and a record cannot be edited, swapped, replayed or
//! deleted without [`Store::verify`] naming the first broken link. The chain head and the
//! acknowledgement anchor are HMAC'd with a second HKDF-derived key.
//!
//! Nonces are 96 random bits from the system's CSPRNG for every seal, so nothing in the file
//! (a deleted counter row, a restored older copy) can make the store reuse a (key, nonce)
//! pair. A phone seals far fewer than the 2^32 messages per key for which random GCM nonces
//! are safe (NIST SP 800-38D, 8.3).
//!
//! The head row is MAC'd and written in the same transaction as every record and every piece
//! of sealed state. Besides the chain's newest link it carries a **generation** (bumped on
//! every commit, reported to the server, which alerts when it goes back) and the **state
//! root**, a digest of every sealed state row's tag: a state row copied back from an older copy
//! of the file, deleted, or moved no longer matches the root, and the store refuses to hand
//! out any state ([`ChainError::StateRolledBack`]) so the agent never runs an older policy.
//! Head and anchor are provisioned at creation: a missing one is [`ChainError::Bookkeeping`].
//!
//! Records leave the chain only when the server acknowledges them ([`Store::acknowledge`]);
//! the last [`DELIVERED_KEPT`] acknowledged ones are kept aside, sealed as they were, so that an
//! office restored from an older backup gets them again ([`Store::reinstate`]). Over the size
//! cap the store keeps writing and reports [`Store::over_cap`] so the agent can raise
//! `store_full` instead of dropping evidence (and drops the kept copies first).

pub mod err;
pub mod keys;
pub mod record;
pub mod schema;

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use zeroize::Zeroizing;

pub use err::{ChainError, StoreError};
pub use keys::{HostFileKeyProvider, KeyProvider, KeyProviderError};
pub use record::{PolicyRef, StoredViolation, ViolationRecord};

use keys::{NONCE_LEN, StoreKeys, TAG_LEN};

use crate::suite::Suite;

/// How many acknowledged records the store keeps (sealed) for an office restored from a
/// backup older than its acknowledgement.
pub const DELIVERED_KEPT: u64 = 4096;

/// File name of the database inside the store directory.
pub const DB_FILE: &str = "baomi.db";

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: a committed record survives power loss. The default: violations
    /// are rare and are evidence.
    #[default]
    Full,
    /// `synchronous=NORMAL`: survives a killed process, may lose the last commits on power
    /// loss. For benchmarks and bulk imports.
    Normal,
}

/// Options for [`Store::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Device id to bind records to when the store is created (enrolment may set it); a random
    /// one is generated otherwise. Ignored for an existing store.
    pub device_id: Option<String>,
    /// Size above which [`Store::over_cap`] is raised.
    pub max_bytes: u64,
    /// Commit durability.
    pub durability: Durability,
    /// The cryptographic suite a new store seals and MACs under (issue 24); an existing store
    /// keeps its own (see [`Store::adopt_suite`]).
    pub suite: Suite,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            device_id: None,
            max_bytes: 64 * 1024 * 1024,
            durability: Durability::Full,
            suite: Suite::Intl,
        }
    }
}

/// The MAC'd head row: the chain's newest link, the commit generation and the state root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeadMark {
    link: Link,
    generation: u64,
    state_root: [u8; 32],
}

/// A position in the chain: the newest record's seq and tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Sequence number (0: before the first record).
    pub seq: u64,
    /// GCM tag of that record (zeros before the first).
    pub tag: [u8; TAG_LEN],
}

impl Link {
    const GENESIS: Link = Link {
        seq: 0,
        tag: [0; TAG_LEN],
    };

    /// Hex of the tag, as reported to the server.
    pub fn tag_hex(&self) -> String {
        crate::bundle::keys::hex(&self.tag)
    }
}

/// What a successful [`Store::verify`] walked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records present and authentic.
    pub records: u64,
    /// Last acknowledged (and deleted) seq.
    pub acked_through: u64,
    /// Newest seq.
    pub head: u64,
}

/// The store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    keys: StoreKeys,
    device_id: String,
    head: Link,
    anchor: Link,
    generation: u64,
    /// Tag of every sealed state row, by name: what the head's state root digests.
    state_tags: BTreeMap<String, [u8; TAG_LEN]>,
    /// The state root the head carries. Appends copy it forward as it is, so evidence can be
    /// recorded over rolled-back state without blessing it.
    state_root: [u8; 32],
    /// Why sealed state cannot be trusted, if it cannot (checked at open).
    state_fault: Option<ChainError>,
    rng: SystemRandom,
    /// Random bytes drawn from the OS in blocks, handed out 12 at a time as nonces: one
    /// `getrandom` per 64 seals instead of one per seal. Memory only, never reused.
    nonce_pool: Vec<u8>,
    max_bytes: u64,
    bookkeeping_ok: bool,
    /// Damage to the unacknowledged records found at open (a tail cut off, a row deleted,
    /// a row inserted): the agent salvages what it can read and reports the rest.
    damage: Option<ChainError>,
    /// Held while the store is open: one agent per store (a second open is
    /// [`StoreError::Locked`]). Released when the store is dropped.
    _lock: std::fs::File,
}

/// What [`Store::salvage`] could read of the unacknowledged records.
#[derive(Debug, Clone, PartialEq)]
pub struct Salvage {
    /// Every record that still authenticates, oldest first.
    pub records: Vec<ViolationRecord>,
    /// Seq ranges (inclusive) that could not be read: deleted, edited, swapped, cut off.
    pub lost: Vec<(u64, u64)>,
}

impl Salvage {
    /// How many records were lost.
    pub fn lost_count(&self) -> u64 {
        self.lost.iter().map(|(a, b)| b - a + 1).sum()
    }

    /// The lost ranges as people read them (`4, 7..=9`).
    pub fn lost_ranges(&self) -> String {
        let parts: Vec<String> = self
            .lost
            .iter()
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}..={b}")
                }
            })
            .collect();
        parts.join(", ")
    }
}

/// Name of the lock file beside the database.
pub const LOCK_FILE: &str = "baomi.lock";

/// Largest sequence number: SQLite integers are signed.
pub const MAX_SEQ: u64 = i64::MAX as u64;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("head", &self.head.seq)
            .finish_non_exhaustive()
    }
}

/// One sealed state row: nonce, sealed bytes, tag.
type SealedState = ([u8; NONCE_LEN], Vec<u8>, [u8; TAG_LEN]);

const META_DEVICE: &str = "device_id";
const META_PROVIDER: &str = "key_provider";
const META_WRAPPED: &str = "wrapped_key";
const META_KEY_CHECK: &str = "key_check";
/// The suite the store seals and MACs under (issue 24): `intl` when absent.
const META_SUITE: &str = "suite";
const META_HEAD: &str = "head";
const META_ANCHOR: &str = "anchor";
/// The public chain's link at the anchor ([`crate::sync::ledger`]), written with it.
const META_LEDGER: &str = "ledger";

impl Store {
    /// Opens (or creates) the store in `dir`, unwrapping its data key with `provider`.
    pub fn open(
        dir: &Path,
        provider: &dyn KeyProvider,
        opts: StoreOptions,
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io {
            path: dir.to_owned(),
            reason: e.to_string(),
        })?;
        let lock = lock_dir(dir)?;
        let path = dir.join(DB_FILE);
        let sql = |e| StoreError::sqlite(&path, e);
        check_header(&path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags).map_err(sql)?;
        // Everything that can refuse the file runs read-only, before the first write: a damaged,
        // foreign or newer database, or a wrong key, leaves the file exactly as it was.
        let (tables, version): (i64, i64) = conn
            .query_row("SELECT (SELECT count(*) FROM sqlite_master), (SELECT user_version FROM pragma_user_version)", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(sql)?;
        if version > schema::VERSION {
            return Err(StoreError::NewerSchema {
                found: version,
                supported: schema::VERSION,
            });
        }
        // Version 1 is refused (its nonces could repeat); later ones upgrade in `schema::init`.
        if (1..schema::MIN_UPGRADABLE).contains(&version) {
            return Err(StoreError::UnsupportedSchema {
                found: version,
                supported: schema::VERSION,
            });
        }
        if version == 0 && tables > 0 {
            return Err(StoreError::Corrupt {
                path,
                reason: "a database of another application".into(),
            });
        }
        let unlocked = if version > 0 {
            Some(Self::unlock(&conn, &path, provider)?)
        } else {
            None
        };
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        let sync = match opts.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        match schema::init(&mut conn) {
            Ok(_) => {}
            Err(schema::InitError::Newer(found)) => {
                return Err(StoreError::NewerSchema {
                    found,
                    supported: schema::VERSION,
                });
            }
            Err(schema::InitError::Foreign) => {
                return Err(StoreError::Corrupt {
                    path,
                    reason: "a database of another application".into(),
                });
            }
            Err(schema::InitError::Unsupported(found)) => {
                return Err(StoreError::UnsupportedSchema {
                    found,
                    supported: schema::VERSION,
                });
            }
            Err(schema::InitError::Sql(e)) => return Err(sql(e)),
        }
        let fresh = unlocked.is_none();
        let (keys, device_id) = match unlocked {
            Some(k) => k,
            None => Self::provision(&mut conn, &path, provider, opts.device_id, opts.suite)?,
        };
        let keys_suite = keys.suite;
        let mut store = Store {
            conn,
            path,
            keys,
            device_id,
            head: Link::GENESIS,
            anchor: Link::GENESIS,
            generation: 0,
            state_tags: BTreeMap::new(),
            state_root: state_root(keys_suite, &BTreeMap::new()),
            state_fault: None,
            rng: SystemRandom::new(),
            nonce_pool: Vec::new(),
            max_bytes: opts.max_bytes,
            bookkeeping_ok: true,
            damage: None,
            _lock: lock,
        };
        if fresh {
            // Head and anchor exist from the first moment, so deleting them is detectable.
            store.write_genesis()?;
        }
        store.load_links()?;
        if store.bookkeeping_ok {
            store.damage = store.inspect()?;
        }
        Ok(store)
    }

    /// The cheap checks at open (no decryption): every row lies between the anchor and the
    /// head, the head's row is there with the head's tag, and no seq in between is missing.
    /// Edited or swapped rows in the middle are found when they are read
    /// ([`Store::records_after`]) or by [`Store::verify`].
    fn inspect(&self) -> Result<Option<ChainError>, StoreError> {
        let sql = |e| StoreError::sqlite(&self.path, e);
        let (anchor, head) = (self.anchor.seq, self.head.seq);
        let outside: Option<i64> = self
            .conn
            .query_row(
                "SELECT seq FROM violations WHERE seq <= ?1 OR seq > ?2 LIMIT 1",
                params![to_sql(anchor), to_sql(head)],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        if let Some(seq) = outside {
            return Ok(Some(ChainError::Inserted { seq: from_sql(seq) }));
        }
        if head > anchor && self.tag_at(head)? != Some(self.head.tag) {
            let last: Option<i64> = self
                .conn
                .query_row("SELECT max(seq) FROM violations", [], |r| r.get(0))
                .map_err(sql)?;
            return Ok(Some(match last {
                Some(l) if from_sql(l) == head => ChainError::Unauthentic { seq: head },
                l => ChainError::Truncated {
                    last_present: l.map_or(anchor, from_sql),
                    head,
                },
            }));
        }
        let count: i64 = self
            .conn
            .query_row("SELECT count(*) FROM violations", [], |r| r.get(0))
            .map_err(sql)?;
        if from_sql(count) != head - anchor {
            // Find the first gap: sequence numbers only, nothing decrypted.
            let mut stmt = self
                .conn
                .prepare("SELECT seq FROM violations ORDER BY seq")
                .map_err(sql)?;
            let seqs = stmt.query_map([], |r| r.get::<_, i64>(0)).map_err(sql)?;
            let mut expected = anchor + 1;
            for seq in seqs {
                let seq = from_sql(seq.map_err(sql)?);
                if seq != expected {
                    return Ok(Some(ChainError::Missing {
                        from: expected,
                        to: seq.saturating_sub(1),
                    }));
                }
                expected = seq + 1;
            }
        }
        Ok(None)
    }

    /// Damage to the unacknowledged records found at open, if any (see [`Store::salvage`]).
    pub fn damage(&self) -> Option<&ChainError> {
        self.damage.as_ref()
    }

    /// Reads every unacknowledged record that still authenticates, and names the seqs that do
    /// not (deleted, edited, swapped, cut off the tail). A record whose predecessor is gone is
    /// tried against the tags of the other rows that failed (so a swap costs the swapped
    /// rows, not the rest of the chain). Reads the whole backlog into memory: bounded by the
    /// store's size cap. Changes nothing; [`Store::rewrite`] writes the result.
    pub fn salvage(&self) -> Result<Salvage, StoreError> {
        const MAX_CANDIDATES: usize = 16;
        let sql = |e| StoreError::sqlite(&self.path, e);
        let (anchor, head) = (self.anchor, self.head.seq);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, CAST(nonce AS BLOB), CAST(sealed AS BLOB) FROM violations WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map(params![to_sql(anchor.seq), to_sql(head)], |r| {
                Ok((
                    from_sql(r.get(0)?),
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(sql)?;
        let mut out = Salvage {
            records: Vec::new(),
            lost: Vec::new(),
        };
        let lose = |lost: &mut Vec<(u64, u64)>, from: u64, to: u64| match lost.last_mut() {
            Some((_, end)) if *end + 1 == from => *end = to,
            _ => lost.push((from, to)),
        };
        let mut prev = Some((anchor.seq, anchor.tag));
        let mut failed_tags: Vec<[u8; TAG_LEN]> = Vec::new();
        let mut expected = anchor.seq + 1;
        for row in rows {
            let (seq, nonce, sealed) = row.map_err(sql)?;
            if seq > expected {
                lose(&mut out.lost, expected, seq - 1);
            }
            let mut candidates: Vec<[u8; TAG_LEN]> = Vec::with_capacity(1 + failed_tags.len());
            if let Some((p, t)) = prev
                && p + 1 == seq
            {
                candidates.push(t);
            }
            candidates.extend(failed_tags.iter().rev().take(MAX_CANDIDATES));
            let record = candidates.iter().find_map(|t| {
                keys::open(&self.keys.seal, &nonce, &self.record_aad(seq, t), &sealed)
                    .and_then(|plain| serde_json::from_slice::<ViolationRecord>(&plain).ok())
            });
            let tag = tag_of(&sealed);
            match record {
                Some(r) => out.records.push(r),
                None => {
                    lose(&mut out.lost, seq, seq);
                    if let Some(t) = tag {
                        failed_tags.push(t);
                    }
                }
            }
            prev = tag.map(|t| (seq, t));
            expected = seq + 1;
        }
        if head >= expected {
            lose(&mut out.lost, expected, head);
        }
        Ok(out)
    }

    /// Replaces every unacknowledged row with `records`, sealed anew as one chain after
    /// `anchor` (which becomes the acknowledged anchor), in one transaction; returns their
    /// seqs. Used after damage (the anchor stays) and after a restore the office proved (the
    /// chain continues past what the office holds, so nothing the device recorded since is
    /// lost and no seq is reused).
    pub fn rewrite(
        &mut self,
        anchor: Link,
        records: &[ViolationRecord],
    ) -> Result<Vec<u64>, StoreError> {
        let count = u64::try_from(records.len()).unwrap_or(u64::MAX);
        if anchor
            .seq
            .checked_add(count)
            .is_none_or(|end| end > MAX_SEQ)
        {
            return Err(StoreError::Encode(format!(
                "{count} records after seq {} would pass the largest seq",
                anchor.seq
            )));
        }
        let (head, rows) = self.seal_after(anchor, records)?;
        let generation = self.generation + 1;
        let head_bytes = self.encode_head(&HeadMark {
            link: head,
            generation,
            state_root: self.state_root,
        });
        let anchor_bytes = self.encode_link(META_ANCHOR, &anchor);
        let path = self.path.clone();
        let sql = |e| StoreError::sqlite(&path, e);
        let tx = self.conn.transaction().map_err(sql)?;
        tx.execute("DELETE FROM violations", []).map_err(sql)?;
        // Kept copies past the new anchor belong to a chain that no longer continues here.
        tx.execute("DELETE FROM delivered WHERE seq > ?1", [to_sql(anchor.seq)])
            .map_err(sql)?;
        insert_rows(&tx, &rows).map_err(sql)?;
        put_meta(&tx, META_ANCHOR, &anchor_bytes).map_err(sql)?;
        put_meta(&tx, META_HEAD, &head_bytes).map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.anchor = anchor;
        self.head = head;
        self.generation = generation;
        self.damage = None;
        Ok(rows.into_iter().map(|(s, _, _)| s).collect())
    }

    /// The acknowledged anchor (seq and tag of the last record the office holds).
    pub fn anchor(&self) -> Link {
        self.anchor
    }

    /// Seals `recs` as a chain after `after`: the new head and the rows (seq, nonce, sealed).
    /// Nonces are drawn first, all of them, from the OS.
    #[allow(clippy::type_complexity, reason = "the rows as the INSERT takes them")]
    fn seal_after(
        &mut self,
        after: Link,
        recs: &[ViolationRecord],
    ) -> Result<(Link, Vec<(u64, [u8; NONCE_LEN], Vec<u8>)>), StoreError> {
        let nonces = recs
            .iter()
            .map(|_| self.next_nonce())
            .collect::<Result<Vec<_>, _>>()?;
        let mut head = after;
        let mut rows = Vec::with_capacity(recs.len());
        for (rec, nonce) in recs.iter().zip(nonces) {
            let (seq, buf) = self.seal_record(rec, nonce, &head)?;
            head = Link {
                seq,
                tag: tag_of(&buf).ok_or(StoreError::Crypto("seal"))?,
            };
            rows.push((seq, nonce, buf));
        }
        Ok((head, rows))
    }

    /// Seals one record after `prev`; returns its seq and sealed bytes.
    fn seal_record(
        &self,
        rec: &ViolationRecord,
        nonce: [u8; NONCE_LEN],
        prev: &Link,
    ) -> Result<(u64, Vec<u8>), StoreError> {
        let seq = prev
            .seq
            .checked_add(1)
            .filter(|s| *s <= MAX_SEQ)
            .ok_or_else(|| StoreError::Encode("the chain passed the largest seq".into()))?;
        let mut buf = serde_json::to_vec(rec).map_err(|e| StoreError::Encode(e.to_string()))?;
        let aad = self.record_aad(seq, &prev.tag);
        keys::seal(&self.keys.seal, nonce, &aad, &mut buf).ok_or(StoreError::Crypto("seal"))?;
        Ok((seq, buf))
    }

    fn provision(
        conn: &mut Connection,
        path: &Path,
        provider: &dyn KeyProvider,
        device_id: Option<String>,
        suite: Suite,
    ) -> Result<(StoreKeys, String), StoreError> {
        let keys = StoreKeys::generate(suite).ok_or(StoreError::Random)?;
        let wrapped = provider
            .wrap(keys.data_key.as_slice())
            .map_err(|e| StoreError::KeyProvider(e.to_string()))?;
        let device_id = match device_id {
            Some(d) => d,
            None => random_id()?,
        };
        let check = keys.mac.sign(b"baomi-key-check-v1");
        let tx = conn
            .transaction()
            .map_err(|e| StoreError::sqlite(path, e))?;
        for (name, value) in [
            (META_DEVICE, device_id.as_bytes().to_vec()),
            (META_PROVIDER, provider.key_id().into_bytes()),
            (META_WRAPPED, wrapped),
            (META_KEY_CHECK, check.to_vec()),
            (META_SUITE, suite.as_str().as_bytes().to_vec()),
        ] {
            put_meta(&tx, name, &value).map_err(|e| StoreError::sqlite(path, e))?;
        }
        tx.commit().map_err(|e| StoreError::sqlite(path, e))?;
        Ok((keys, device_id))
    }

    fn unlock(
        conn: &Connection,
        path: &Path,
        provider: &dyn KeyProvider,
    ) -> Result<(StoreKeys, String), StoreError> {
        let get = |name| {
            get_meta(conn, name)
                .map_err(|e| StoreError::sqlite(path, e))?
                .ok_or_else(|| StoreError::Corrupt {
                    path: path.to_owned(),
                    reason: format!("missing `{name}`"),
                })
        };
        let device_id = String::from_utf8(get(META_DEVICE)?).map_err(|_| StoreError::Corrupt {
            path: path.to_owned(),
            reason: "device id is not text".into(),
        })?;
        let wrapped = get(META_WRAPPED)?;
        let raw = Zeroizing::new(provider.unwrap(&wrapped).map_err(|e| match e {
            KeyProviderError::Rejected => StoreError::WrongKey,
            KeyProviderError::Unavailable(m) => StoreError::KeyProvider(m),
        })?);
        let data_key: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::WrongKey)?;
        // The suite the store was created (or re-keyed) under; stores from before issue 24 have
        // none and are `intl`. Changing it only makes the key check below fail.
        let suite = match get_meta(conn, META_SUITE).map_err(|e| StoreError::sqlite(path, e))? {
            None => Suite::Intl,
            Some(raw) => std::str::from_utf8(&raw)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| StoreError::Corrupt {
                    path: path.to_owned(),
                    reason: "unknown cryptographic suite".into(),
                })?,
        };
        let keys =
            StoreKeys::derive(suite, Zeroizing::new(data_key)).ok_or(StoreError::WrongKey)?;
        // Constant-time check that this is the key the store was created with.
        if !keys
            .mac
            .verify(b"baomi-key-check-v1", &get(META_KEY_CHECK)?)
        {
            return Err(StoreError::WrongKey);
        }
        Ok((keys, device_id))
    }

    /// What the head and anchor MACs cover: which link, whose device, and the link itself.
    fn link_message(&self, which: &str, l: &Link) -> Vec<u8> {
        let mut msg = Vec::with_capacity(48);
        msg.extend_from_slice(which.as_bytes());
        msg.extend_from_slice(self.device_id.as_bytes());
        msg.extend_from_slice(&l.seq.to_be_bytes());
        msg.extend_from_slice(&l.tag);
        msg
    }

    fn link_mac(&self, which: &str, l: &Link) -> [u8; 32] {
        self.keys.mac.sign(&self.link_message(which, l))
    }

    fn encode_link(&self, which: &str, l: &Link) -> Vec<u8> {
        let mut v = l.seq.to_be_bytes().to_vec();
        v.extend_from_slice(&l.tag);
        v.extend_from_slice(self.link_mac(which, l).as_ref());
        v
    }

    fn head_message(&self, h: &HeadMark) -> Vec<u8> {
        let mut msg = self.link_message(META_HEAD, &h.link);
        msg.extend_from_slice(&h.generation.to_be_bytes());
        msg.extend_from_slice(&h.state_root);
        msg
    }

    fn encode_head(&self, h: &HeadMark) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + TAG_LEN + 8 + 32 + 32);
        v.extend_from_slice(&h.link.seq.to_be_bytes());
        v.extend_from_slice(&h.link.tag);
        v.extend_from_slice(&h.generation.to_be_bytes());
        v.extend_from_slice(&h.state_root);
        v.extend_from_slice(&self.keys.mac.sign(&self.head_message(h)));
        v
    }

    /// Reads the MAC'd head row; `None` if absent, `Err` if altered.
    fn read_head(&self) -> Result<Option<HeadMark>, ChainError> {
        let raw = get_meta(&self.conn, META_HEAD).ok().flatten();
        let Some(raw) = raw else { return Ok(None) };
        let bad = ChainError::Bookkeeping { which: META_HEAD };
        let (seq, rest) = raw.split_at_checked(8).ok_or(bad.clone())?;
        let (tag, rest) = rest.split_at_checked(TAG_LEN).ok_or(bad.clone())?;
        let (generation, rest) = rest.split_at_checked(8).ok_or(bad.clone())?;
        let (root, mac) = rest.split_at_checked(32).ok_or(bad.clone())?;
        let h = HeadMark {
            link: Link {
                seq: u64::from_be_bytes(seq.try_into().map_err(|_| bad.clone())?),
                tag: tag.try_into().map_err(|_| bad.clone())?,
            },
            generation: u64::from_be_bytes(generation.try_into().map_err(|_| bad.clone())?),
            state_root: root.try_into().map_err(|_| bad.clone())?,
        };
        if !self.keys.mac.verify(&self.head_message(&h), mac) {
            return Err(bad);
        }
        Ok(Some(h))
    }

    fn write_genesis(&mut self) -> Result<(), StoreError> {
        let head = self.encode_head(&HeadMark {
            link: Link::GENESIS,
            generation: 0,
            state_root: self.state_root,
        });
        let anchor = self.encode_link(META_ANCHOR, &Link::GENESIS);
        let sql = |e| StoreError::sqlite(&self.path, e);
        let tx = self.conn.transaction().map_err(sql)?;
        put_meta(&tx, META_HEAD, &head).map_err(sql)?;
        put_meta(&tx, META_ANCHOR, &anchor).map_err(sql)?;
        tx.commit().map_err(sql)
    }

    /// Reads a MAC'd link; `None` if absent, `Err` if altered.
    fn read_link(&self, which: &'static str) -> Result<Option<Link>, ChainError> {
        let raw = get_meta(&self.conn, which).ok().flatten();
        let Some(raw) = raw else { return Ok(None) };
        let bad = ChainError::Bookkeeping { which };
        let (seq, rest) = raw.split_at_checked(8).ok_or(bad.clone())?;
        let (tag, mac) = rest.split_at_checked(TAG_LEN).ok_or(bad.clone())?;
        let l = Link {
            seq: u64::from_be_bytes(seq.try_into().map_err(|_| bad.clone())?),
            tag: tag.try_into().map_err(|_| bad.clone())?,
        };
        if !self.keys.mac.verify(&self.link_message(which, &l), mac) {
            return Err(bad);
        }
        Ok(Some(l))
    }

    /// Loads head, anchor and the state tags. Altered chain bookkeeping does not stop the store
    /// from recording evidence: it continues from the newest authentic-looking row and
    /// [`Store::verify`] reports the damage. Sealed state is another matter: unless the head
    /// authenticates and its state root matches the rows, no state is handed out.
    fn load_links(&mut self) -> Result<(), StoreError> {
        let anchor = self.read_link(META_ANCHOR);
        let head = self.read_head();
        self.bookkeeping_ok = matches!(anchor, Ok(Some(_))) && matches!(head, Ok(Some(_)));
        self.anchor = anchor.ok().flatten().unwrap_or(Link::GENESIS);
        let last: Option<(u64, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT seq, CAST(sealed AS BLOB) FROM violations ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((from_sql(r.get(0)?), r.get(1)?)),
            )
            .optional()
            .map_err(|e| StoreError::sqlite(&self.path, e))?;
        let from_rows = last.and_then(|(seq, sealed)| tag_of(&sealed).map(|tag| Link { seq, tag }));
        self.state_tags = self.read_state_tags()?;
        let head = match head {
            Ok(Some(h)) => {
                if state_root(self.keys.suite, &self.state_tags) != h.state_root {
                    self.state_fault = Some(ChainError::StateRolledBack);
                }
                self.state_root = h.state_root;
                Some(h)
            }
            Ok(None) => {
                self.state_fault = Some(ChainError::Bookkeeping { which: META_HEAD });
                self.state_root = [0; 32];
                None
            }
            Err(e) => {
                self.state_fault = Some(e);
                self.state_root = [0; 32];
                None
            }
        };
        self.generation = head.map_or(0, |h| h.generation);
        // The next seq comes from the MAC'd head, never from the file's largest row: a junk row
        // at 2^63-1 (or at head + 1) must not decide where evidence goes. Rows beyond the head
        // are damage ([`Store::inspect`]).
        self.head = match (head.map(|h| h.link), from_rows) {
            (Some(h), _) => h,
            (None, Some(r)) => r,
            (None, None) => self.anchor,
        };
        Ok(())
    }

    fn read_state_tags(&self) -> Result<BTreeMap<String, [u8; TAG_LEN]>, StoreError> {
        let sql = |e| StoreError::sqlite(&self.path, e);
        let mut stmt = self
            .conn
            .prepare("SELECT name, CAST(sealed AS BLOB) FROM state")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(sql)?;
        let mut tags = BTreeMap::new();
        for row in rows {
            let (name, sealed) = row.map_err(sql)?;
            // A row too short to carry a tag digests as zeros: it cannot match the root.
            tags.insert(name, tag_of(&sealed).unwrap_or([0; TAG_LEN]));
        }
        Ok(tags)
    }

    /// The device id records are bound to.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The newest record's link (what check-in reports as the head of the chain).
    pub fn head(&self) -> Link {
        self.head
    }

    /// The newest acknowledged seq.
    pub fn acked_through(&self) -> u64 {
        self.anchor.seq
    }

    /// Records not yet acknowledged.
    pub fn unacked_count(&self) -> u64 {
        self.head.seq.saturating_sub(self.anchor.seq)
    }

    /// Whether the head or anchor failed authentication (or was missing) at open.
    pub fn bookkeeping_altered(&self) -> bool {
        !self.bookkeeping_ok
    }

    /// The commit generation: bumped by every append and every state write, reported at
    /// check-in so the server sees a store restored from an older copy.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Why sealed state is not trusted, if it is not (rows rolled back, head altered).
    pub fn state_fault(&self) -> Option<&ChainError> {
        self.state_fault.as_ref()
    }

    /// A fresh random nonce: nothing in the file decides it.
    fn next_nonce(&mut self) -> Result<[u8; NONCE_LEN], StoreError> {
        const POOL_NONCES: usize = 64;
        if self.nonce_pool.len() < NONCE_LEN {
            let mut block = vec![0u8; NONCE_LEN * POOL_NONCES];
            self.rng.fill(&mut block).map_err(|_| StoreError::Random)?;
            self.nonce_pool = block;
        }
        let at = self.nonce_pool.len() - NONCE_LEN;
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(&self.nonce_pool[at..]);
        self.nonce_pool.truncate(at);
        Ok(n)
    }

    fn record_aad(&self, seq: u64, prev: &[u8; TAG_LEN]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(32 + self.device_id.len() + TAG_LEN);
        aad.extend_from_slice(b"baomi-violation-v1");
        aad.extend_from_slice(&(self.device_id.len() as u32).to_be_bytes());
        aad.extend_from_slice(self.device_id.as_bytes());
        aad.extend_from_slice(&seq.to_be_bytes());
        aad.extend_from_slice(prev);
        aad
    }

    /// Appends one record; returns its seq.
    pub fn append(&mut self, rec: &ViolationRecord) -> Result<u64, StoreError> {
        let seqs = self.append_batch(std::slice::from_ref(rec))?;
        seqs.last()
            .copied()
            .ok_or(StoreError::Encode("empty batch".into()))
    }

    /// Appends records in one transaction: all or none are committed.
    pub fn append_batch(&mut self, recs: &[ViolationRecord]) -> Result<Vec<u64>, StoreError> {
        let path = self.path.clone();
        let sql = |e| StoreError::sqlite(&path, e);
        // Nonces first: the epoch bump is its own committed transaction.
        let (head, rows) = self.seal_after(self.head, recs)?;
        let generation = self.generation + 1;
        let head_bytes = self.encode_head(&HeadMark {
            link: head,
            generation,
            state_root: self.state_root,
        });
        let inserted_beyond = matches!(self.damage, Some(ChainError::Inserted { .. }));
        let tx = self.conn.transaction().map_err(sql)?;
        if inserted_beyond {
            // Rows nobody committed sit where this record goes: they are not evidence (the
            // damage was reported at open), and must not block recording.
            tx.execute(
                "DELETE FROM violations WHERE seq > ?1",
                [to_sql(self.head.seq)],
            )
            .map_err(sql)?;
        }
        insert_rows(&tx, &rows).map_err(sql)?;
        put_meta(&tx, META_HEAD, &head_bytes).map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.head = head;
        self.generation = generation;
        Ok(rows.into_iter().map(|(s, _, _)| s).collect())
    }

    /// Decrypts up to `limit` records after `after_seq`, oldest first.
    pub fn records_after(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredViolation>, StoreError> {
        let sql = |e| StoreError::sqlite(&self.path, e);
        // Records at or below the anchor were acknowledged and deleted: "after 0" on a store
        // that acknowledged anything means "everything it still has".
        let after_seq = after_seq.max(self.anchor.seq);
        // The previous tag is needed to open the first record.
        let mut prev = if after_seq == self.anchor.seq {
            self.anchor.tag
        } else {
            let sealed: Option<Vec<u8>> = self
                .conn
                .query_row(
                    "SELECT CAST(sealed AS BLOB) FROM violations WHERE seq = ?1",
                    [to_sql(after_seq)],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
            match sealed.as_deref().and_then(tag_of) {
                Some(t) => t,
                None if after_seq == 0 => [0; TAG_LEN],
                None => {
                    return Err(ChainError::Missing {
                        from: after_seq,
                        to: after_seq,
                    }
                    .into());
                }
            }
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, CAST(nonce AS BLOB), CAST(sealed AS BLOB) FROM violations WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map(
                params![to_sql(after_seq), i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    Ok((
                        from_sql(r.get(0)?),
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                    ))
                },
            )
            .map_err(sql)?;
        let mut out = Vec::new();
        let mut expected = after_seq + 1;
        for row in rows {
            let (seq, nonce, sealed) = row.map_err(sql)?;
            if seq != expected {
                return Err(ChainError::Missing {
                    from: expected,
                    to: seq - 1,
                }
                .into());
            }
            let plain = keys::open(
                &self.keys.seal,
                &nonce,
                &self.record_aad(seq, &prev),
                &sealed,
            )
            .ok_or(ChainError::Unauthentic { seq })?;
            let record: ViolationRecord =
                serde_json::from_slice(&plain).map_err(|e| StoreError::BadRecord {
                    seq,
                    reason: e.to_string(),
                })?;
            prev = tag_of(&sealed).ok_or(ChainError::Unauthentic { seq })?;
            out.push(StoredViolation {
                seq,
                tag: prev,
                record,
            });
            expected = seq + 1;
        }
        Ok(out)
    }

    /// The chain tag of the record at `seq`, if it is present.
    pub fn tag_at(&self, seq: u64) -> Result<Option<[u8; TAG_LEN]>, StoreError> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT CAST(sealed AS BLOB) FROM violations WHERE seq = ?1",
                [to_sql(seq)],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| StoreError::sqlite(&self.path, e))?;
        Ok(sealed.as_deref().and_then(tag_of))
    }

    /// Walks the whole chain from the anchor and reports the first broken link.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let sql = |e| StoreError::sqlite(&self.path, e);
        let anchor = self
            .read_link(META_ANCHOR)?
            .ok_or(ChainError::Bookkeeping { which: META_ANCHOR })?;
        let mark = self
            .read_head()?
            .ok_or(ChainError::Bookkeeping { which: META_HEAD })?;
        let head = mark.link;
        let mut stmt = self
            .conn
            .prepare("SELECT seq, CAST(nonce AS BLOB), CAST(sealed AS BLOB) FROM violations ORDER BY seq")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    from_sql(r.get(0)?),
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(sql)?;
        let mut at = anchor;
        let mut count = 0u64;
        for row in rows {
            let (seq, nonce, sealed) = row.map_err(sql)?;
            if seq <= anchor.seq {
                // An acknowledged record that should have been deleted reappeared.
                return Err(ChainError::Unauthentic { seq }.into());
            }
            if seq != at.seq + 1 {
                return Err(ChainError::Missing {
                    from: at.seq + 1,
                    to: seq - 1,
                }
                .into());
            }
            keys::open(
                &self.keys.seal,
                &nonce,
                &self.record_aad(seq, &at.tag),
                &sealed,
            )
            .ok_or(ChainError::Unauthentic { seq })?;
            at = Link {
                seq,
                tag: tag_of(&sealed).ok_or(ChainError::Unauthentic { seq })?,
            };
            count += 1;
        }
        if head.seq > at.seq {
            return Err(ChainError::Truncated {
                last_present: at.seq,
                head: head.seq,
            }
            .into());
        }
        if head != at {
            return Err(ChainError::Bookkeeping { which: META_HEAD }.into());
        }
        if state_root(self.keys.suite, &self.read_state_tags()?) != mark.state_root {
            return Err(ChainError::StateRolledBack.into());
        }
        Ok(VerifyReport {
            records: count,
            acked_through: anchor.seq,
            head: head.seq,
        })
    }

    /// Records the server's acknowledgement of everything up to `through`: those records leave
    /// the chain (the last [`DELIVERED_KEPT`] are kept aside, sealed). Idempotent; an
    /// acknowledgement beyond the head is refused.
    pub fn acknowledge(&mut self, through: u64) -> Result<(), StoreError> {
        self.acknowledge_linked(through, None, &[])
    }

    /// [`Store::acknowledge`], keeping the public chain's link of record `through` in the same
    /// commit (so the next upload continues the chain whatever happens between). `links` are
    /// the public links of the records acknowledged, oldest first, when the caller has them:
    /// kept with each copy so a reinstated chain continues the public chain too.
    pub fn acknowledge_linked(
        &mut self,
        through: u64,
        ledger: Option<[u8; 32]>,
        links: &[[u8; 32]],
    ) -> Result<(), StoreError> {
        if through <= self.anchor.seq {
            return Ok(());
        }
        if through > self.head.seq {
            return Err(StoreError::AckBeyondHead {
                ack: through,
                head: self.head.seq,
            });
        }
        let sql = |e| StoreError::sqlite(&self.path, e);
        let rows: Vec<(u64, Vec<u8>, Vec<u8>)> = {
            let mut st = self
                .conn
                .prepare_cached(
                    "SELECT seq, nonce, CAST(sealed AS BLOB) FROM violations WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
                )
                .map_err(sql)?;
            st.query_map(params![to_sql(self.anchor.seq), to_sql(through)], |r| {
                Ok((from_sql(r.get(0)?), r.get(1)?, r.get(2)?))
            })
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?
        };
        let Some((last_seq, _, last_sealed)) = rows.last() else {
            return Err(ChainError::Missing {
                from: through,
                to: through,
            }
            .into());
        };
        if *last_seq != through {
            return Err(ChainError::Missing {
                from: through,
                to: through,
            }
            .into());
        }
        let anchor = Link {
            seq: through,
            tag: tag_of(last_sealed).ok_or(ChainError::Unauthentic { seq: through })?,
        };
        let anchor_bytes = self.encode_link(META_ANCHOR, &anchor);
        let ledger_bytes = ledger.map(|l| self.encode_ledger(through, &l));
        // Each copy with what precedes it (the tag its seal is bound to, the public link its
        // own link is over), so a chain reinstated from any of them verifies and links.
        let mut prev_tag = self.anchor.tag;
        let mut prev_link = self.ledger_link();
        let mut kept = Vec::with_capacity(rows.len());
        for (i, (seq, nonce, sealed)) in rows.iter().enumerate() {
            kept.push((*seq, nonce, prev_tag, prev_link, sealed));
            prev_tag = tag_of(sealed).unwrap_or_default();
            prev_link = links.get(i).copied();
        }
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO delivered (seq, nonce, prev_tag, prev_link, sealed) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sql)?;
            for (seq, nonce, prev_tag, prev_link, sealed) in kept {
                ins.execute(params![
                    to_sql(seq),
                    nonce,
                    &prev_tag[..],
                    prev_link.as_ref().map(|l| &l[..]),
                    sealed
                ])
                .map_err(sql)?;
            }
        }
        tx.execute(
            "DELETE FROM delivered WHERE seq <= ?1",
            [to_sql(through.saturating_sub(DELIVERED_KEPT))],
        )
        .map_err(sql)?;
        tx.execute("DELETE FROM violations WHERE seq <= ?1", [to_sql(through)])
            .map_err(sql)?;
        put_meta(&tx, META_ANCHOR, &anchor_bytes).map_err(sql)?;
        if let Some(ledger) = &ledger_bytes {
            put_meta(&tx, META_LEDGER, ledger).map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        self.anchor = anchor;
        Ok(())
    }

    /// Puts the acknowledged records after `office_seq` back into the chain, so they are sent
    /// again: the office, restored from a backup older than its acknowledgement, holds this
    /// phone's chain only through `office_seq` (ending in `office_tag`). Returns how many came
    /// back, or `None` when the kept copies do not reach back that far or do not join the
    /// office's record and this store's anchor into one chain (nothing is changed then).
    pub fn reinstate(
        &mut self,
        office_seq: u64,
        office_tag: [u8; TAG_LEN],
    ) -> Result<Option<u64>, StoreError> {
        if office_seq >= self.anchor.seq {
            return Ok(None);
        }
        let sql = |e| StoreError::sqlite(&self.path, e);
        type Kept = (u64, Vec<u8>, Vec<u8>, Option<Vec<u8>>, Vec<u8>);
        let rows: Vec<Kept> = {
            let mut st = self
                .conn
                .prepare_cached(
                    "SELECT seq, nonce, prev_tag, prev_link, CAST(sealed AS BLOB) FROM delivered WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
                )
                .map_err(sql)?;
            st.query_map(params![to_sql(office_seq), to_sql(self.anchor.seq)], |r| {
                Ok((
                    from_sql(r.get(0)?),
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ))
            })
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?
        };
        // One chain: from the office's record, copy by copy, to this store's anchor.
        let mut expected = (office_seq + 1, office_tag);
        for (seq, _, prev_tag, _, sealed) in &rows {
            if *seq != expected.0 || prev_tag.as_slice() != expected.1.as_slice() {
                return Ok(None);
            }
            let Some(tag) = tag_of(sealed) else {
                return Ok(None);
            };
            expected = (seq + 1, tag);
        }
        if expected != (self.anchor.seq + 1, self.anchor.tag) {
            return Ok(None);
        }
        let anchor = Link {
            seq: office_seq,
            tag: office_tag,
        };
        let ledger = rows
            .first()
            .and_then(|r| r.3.as_deref())
            .and_then(|l| <[u8; 32]>::try_from(l).ok());
        let anchor_bytes = self.encode_link(META_ANCHOR, &anchor);
        let ledger_bytes = ledger.map(|l| self.encode_ledger(office_seq, &l));
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut ins = tx
                .prepare_cached("INSERT INTO violations (seq, nonce, sealed) VALUES (?1, ?2, ?3)")
                .map_err(sql)?;
            for (seq, nonce, _, _, sealed) in &rows {
                ins.execute(params![to_sql(*seq), nonce, sealed])
                    .map_err(sql)?;
            }
        }
        tx.execute("DELETE FROM delivered WHERE seq > ?1", [to_sql(office_seq)])
            .map_err(sql)?;
        put_meta(&tx, META_ANCHOR, &anchor_bytes).map_err(sql)?;
        match &ledger_bytes {
            Some(l) => put_meta(&tx, META_LEDGER, l).map_err(sql)?,
            None => {
                tx.execute("DELETE FROM meta WHERE name = ?1", [META_LEDGER])
                    .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        self.anchor = anchor;
        Ok(Some(u64::try_from(rows.len()).unwrap_or(u64::MAX)))
    }

    /// The suite the store seals and MACs under.
    pub fn suite(&self) -> Suite {
        self.keys.suite
    }

    /// Whether the store has never held a record (what [`Store::adopt_suite`] needs).
    pub fn never_recorded(&self) -> bool {
        self.head.seq == 0 && self.anchor == Link::GENESIS
    }

    /// Re-keys a store that has never held a record to `suite` (a phone provisioned with a
    /// trust root of the `sm` suite: the platform opened its store before the root arrived).
    /// The data key stays, still wrapped by the platform keystore; the keys derived from it,
    /// the key check, every state row and the head and anchor MACs move to the new suite in
    /// one transaction, so a crash leaves the store wholly in one suite or the other.
    /// Refused once a record was written: records and their chain stay under the suite they
    /// were sealed in.
    pub fn adopt_suite(&mut self, suite: Suite) -> Result<(), StoreError> {
        if suite == self.keys.suite {
            return Ok(());
        }
        if !self.never_recorded() {
            return Err(StoreError::Encode(format!(
                "the store holds records sealed under the {} suite: it stays in that suite",
                self.keys.suite
            )));
        }
        if let Some(fault) = &self.state_fault {
            return Err(StoreError::Integrity(fault.clone()));
        }
        let mut values = Vec::with_capacity(self.state_tags.len());
        for name in self.state_tags.keys() {
            if let Some(v) = self.get_state(name)? {
                values.push((name.clone(), v));
            }
        }
        let new = StoreKeys::derive(suite, self.keys.data_key.clone()).ok_or(StoreError::Random)?;
        let old = std::mem::replace(&mut self.keys, new);
        let written = self.write_rekeyed(suite, &values);
        if written.is_err() {
            // Nothing was committed: the store is still in the old suite.
            self.keys = old;
        }
        written
    }

    fn write_rekeyed(
        &mut self,
        suite: Suite,
        values: &[(String, Zeroizing<Vec<u8>>)],
    ) -> Result<(), StoreError> {
        let mut tags = BTreeMap::new();
        let mut rows = Vec::with_capacity(values.len());
        for (name, value) in values {
            let (nonce, buf, tag) = self.seal_state(name, value)?;
            tags.insert(name.clone(), tag);
            rows.push((name, nonce, buf));
        }
        let generation = self.generation + 1;
        let root = state_root(suite, &tags);
        let head_bytes = self.encode_head(&HeadMark {
            link: self.head,
            generation,
            state_root: root,
        });
        let anchor_bytes = self.encode_link(META_ANCHOR, &self.anchor);
        let check = self.keys.mac.sign(b"baomi-key-check-v1");
        let sql = |e| StoreError::sqlite(&self.path, e);
        let tx = self.conn.transaction().map_err(sql)?;
        for (name, nonce, buf) in &rows {
            tx.execute(
                "UPDATE state SET nonce = ?2, sealed = ?3 WHERE name = ?1",
                params![name, &nonce[..], buf],
            )
            .map_err(sql)?;
        }
        tx.execute("DELETE FROM meta WHERE name = ?1", [META_LEDGER])
            .map_err(sql)?;
        put_meta(&tx, META_HEAD, &head_bytes).map_err(sql)?;
        put_meta(&tx, META_ANCHOR, &anchor_bytes).map_err(sql)?;
        put_meta(&tx, META_KEY_CHECK, &check).map_err(sql)?;
        put_meta(&tx, META_SUITE, suite.as_str().as_bytes()).map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.state_tags = tags;
        self.state_root = root;
        self.generation = generation;
        Ok(())
    }

    /// Drops the kept copies of acknowledged records (the store is over its cap: evidence the
    /// office does not hold comes first).
    pub fn drop_delivered(&mut self) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM delivered", [])
            .map_err(|e| StoreError::sqlite(&self.path, e))?;
        Ok(())
    }

    /// The public chain's link of the anchor record, if it was kept with this anchor (`None`
    /// after a restore, a salvage or an acknowledgement of records this device did not link:
    /// its chain then continues from [`crate::sync::ledger::GENESIS`]).
    pub fn ledger_link(&self) -> Option<[u8; 32]> {
        let raw = get_meta(&self.conn, META_LEDGER).ok().flatten()?;
        let (seq, rest) = raw.split_at_checked(8)?;
        let (link, mac) = rest.split_at_checked(32)?;
        let seq = u64::from_be_bytes(seq.try_into().ok()?);
        let link: [u8; 32] = link.try_into().ok()?;
        self.keys
            .mac
            .verify(&self.ledger_message(seq, &link), mac)
            .then_some(())?;
        (seq == self.anchor.seq).then_some(link)
    }

    fn ledger_message(&self, seq: u64, link: &[u8; 32]) -> Vec<u8> {
        let mut msg = META_LEDGER.as_bytes().to_vec();
        msg.extend_from_slice(self.device_id.as_bytes());
        msg.extend_from_slice(&seq.to_be_bytes());
        msg.extend_from_slice(link);
        msg
    }

    fn encode_ledger(&self, seq: u64, link: &[u8; 32]) -> Vec<u8> {
        let mut v = seq.to_be_bytes().to_vec();
        v.extend_from_slice(link);
        v.extend_from_slice(&self.keys.mac.sign(&self.ledger_message(seq, link)));
        v
    }

    /// Seals one state row under a fresh nonce: its nonce, sealed bytes and tag
    /// ([`SealedState`]).
    fn seal_state(&mut self, name: &str, value: &[u8]) -> Result<SealedState, StoreError> {
        let nonce = self.next_nonce()?;
        let mut buf = value.to_vec();
        keys::seal(&self.keys.seal, nonce, &self.state_aad(name), &mut buf)
            .ok_or(StoreError::Crypto("seal"))?;
        let tag = tag_of(&buf).ok_or(StoreError::Crypto("seal"))?;
        Ok((nonce, buf, tag))
    }

    /// Stores a named piece of agent state, sealed.
    pub fn put_state(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.put_states(&[(name, value)])
    }

    /// Stores several pieces of agent state in one transaction (one fsync), with the head's
    /// generation and state root moved in the same commit.
    pub fn put_states(&mut self, items: &[(&str, &[u8])]) -> Result<(), StoreError> {
        if let Some(fault) = &self.state_fault {
            // Writing now would bless rows an attacker put back.
            return Err(StoreError::Integrity(fault.clone()));
        }
        let mut tags = self.state_tags.clone();
        let mut rows = Vec::with_capacity(items.len());
        for (name, value) in items {
            let (nonce, buf, tag) = self.seal_state(name, value)?;
            tags.insert((*name).to_owned(), tag);
            rows.push((*name, nonce, buf));
        }
        let generation = self.generation + 1;
        let root = state_root(self.keys.suite, &tags);
        let head_bytes = self.encode_head(&HeadMark {
            link: self.head,
            generation,
            state_root: root,
        });
        let sql = |e| StoreError::sqlite(&self.path, e);
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO state (name, nonce, sealed) VALUES (?1, ?2, ?3)
                     ON CONFLICT(name) DO UPDATE SET nonce = excluded.nonce, sealed = excluded.sealed",
                )
                .map_err(sql)?;
            for (name, nonce, buf) in &rows {
                upsert
                    .execute(params![name, &nonce[..], buf])
                    .map_err(sql)?;
            }
        }
        put_meta(&tx, META_HEAD, &head_bytes).map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.state_tags = tags;
        self.state_root = root;
        self.generation = generation;
        Ok(())
    }

    /// Reads a named piece of agent state. Refused when the state rows do not match the head
    /// (see the module docs): an older policy or trust root is never handed out.
    pub fn get_state(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        if let Some(fault) = &self.state_fault {
            return Err(StoreError::Integrity(fault.clone()));
        }
        let row: Option<(Vec<u8>, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT CAST(nonce AS BLOB), CAST(sealed AS BLOB) FROM state WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| StoreError::sqlite(&self.path, e))?;
        match row {
            None => Ok(None),
            Some((nonce, sealed)) => {
                keys::open(&self.keys.seal, &nonce, &self.state_aad(name), &sealed)
                    .map(Some)
                    .ok_or_else(|| StoreError::Corrupt {
                        path: self.path.clone(),
                        reason: format!("state `{name}` does not authenticate"),
                    })
            }
        }
    }

    fn state_aad(&self, name: &str) -> Vec<u8> {
        let mut aad = b"baomi-state-v2".to_vec();
        aad.extend_from_slice(&(self.device_id.len() as u32).to_be_bytes());
        aad.extend_from_slice(self.device_id.as_bytes());
        aad.extend_from_slice(name.as_bytes());
        aad
    }

    /// Re-wraps the data key under `provider` (keystore key rotation). Records are untouched.
    pub fn rewrap(&mut self, provider: &dyn KeyProvider) -> Result<(), StoreError> {
        let wrapped = provider
            .wrap(self.keys.data_key.as_slice())
            .map_err(|e| StoreError::KeyProvider(e.to_string()))?;
        let sql = |e| StoreError::sqlite(&self.path, e);
        let tx = self.conn.transaction().map_err(sql)?;
        put_meta(&tx, META_WRAPPED, &wrapped).map_err(sql)?;
        put_meta(&tx, META_PROVIDER, provider.key_id().as_bytes()).map_err(sql)?;
        tx.commit().map_err(sql)
    }

    /// Database size in bytes (pages in use).
    pub fn size_bytes(&self) -> Result<u64, StoreError> {
        let sql = |e| StoreError::sqlite(&self.path, e);
        let pragma = |name: &str| -> Result<i64, StoreError> {
            self.conn
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .map_err(sql)
        };
        // Pages in use: freed pages (records acknowledged, copies dropped) are reused.
        let pages = pragma("page_count")?.saturating_sub(pragma("freelist_count")?);
        Ok(from_sql(pages.saturating_mul(pragma("page_size")?)))
    }

    /// Whether the store has grown past its cap (evidence is kept; the agent raises
    /// `store_full`).
    pub fn over_cap(&self) -> Result<bool, StoreError> {
        Ok(self.size_bytes()? > self.max_bytes)
    }

    /// Limits the database to `pages` pages: a test seam for a full disk.
    #[doc(hidden)]
    pub fn set_max_page_count(&self, pages: u64) -> Result<(), StoreError> {
        self.conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
            .map_err(|e| StoreError::sqlite(&self.path, e))
    }
}

/// Sequence numbers are below 2^63; SQLite integers are signed.
fn to_sql(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// A negative value can only come from a tampered file; it maps to 0, which then fails the
/// contiguity checks.
fn from_sql(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// What the head's state root commits to: every state row's name and tag, in name order.
fn state_root(suite: Suite, tags: &BTreeMap<String, [u8; TAG_LEN]>) -> [u8; 32] {
    let mut m = b"baomi-state-root-v2".to_vec();
    for (name, tag) in tags {
        m.extend_from_slice(&(name.len() as u64).to_be_bytes());
        m.extend_from_slice(name.as_bytes());
        m.extend_from_slice(tag);
    }
    suite.digest(&m)
}

/// The last 16 bytes of a sealed blob: its GCM tag, the chain link.
fn tag_of(sealed: &[u8]) -> Option<[u8; TAG_LEN]> {
    let start = sealed.len().checked_sub(TAG_LEN)?;
    sealed.get(start..)?.try_into().ok()
}

/// Inserts sealed rows (seq, nonce, sealed) inside the caller's transaction.
fn insert_rows(
    conn: &Connection,
    rows: &[(u64, [u8; NONCE_LEN], Vec<u8>)],
) -> rusqlite::Result<()> {
    let mut ins =
        conn.prepare_cached("INSERT INTO violations (seq, nonce, sealed) VALUES (?1, ?2, ?3)")?;
    for (seq, nonce, sealed) in rows {
        ins.execute(params![to_sql(*seq), &nonce[..], sealed])?;
    }
    Ok(())
}

// Cached: the head is rewritten on every commit, and re-parsing the statement each time cost
// a single append more than its crypto (measured in benches/store.rs).
fn put_meta(conn: &Connection, name: &str, value: &[u8]) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![name, value])
    .map(|_| ())
}

fn get_meta(conn: &Connection, name: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()
}

fn random_id() -> Result<String, StoreError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| StoreError::Random)?;
    Ok(format!("dev-{}", crate::bundle::keys::hex(&b)))
}

/// Takes the store's lock file (created beside the database) without waiting.
fn lock_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let io = |e: std::io::Error| StoreError::Io {
        path: path.clone(),
        reason: e.to_string(),
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked { path }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// Refuses a file that exists and is not SQLite, before SQLite can touch it.
fn check_header(path: &Path) -> Result<(), StoreError> {
    use std::io::Read;
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(StoreError::Io {
                path: path.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    let mut header = [0u8; 16];
    let n = f.read(&mut header).map_err(|e| StoreError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if n == 0 {
        return Ok(()); // created but never written: SQLite initialises it
    }
    if n < 16 || &header != b"SQLite format 3\0" {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            reason: "not a SQLite database".into(),
        });
    }
    Ok(())
}
