//! Issue 24: Baomi's ShangMi primitives against two independent implementations, both ways:
//! GmSSL for Python (`gmssl`, PyPI) and sm-crypto (npm). Each verifies Baomi's SM2 signatures
//! over the exact bytes a real policy bundle and a real custody record are signed over (DSSE's
//! PAE), refuses them over altered bytes, and opens a batch key Baomi sealed to the office's
//! SM2 key; Baomi verifies theirs and opens theirs; SM3, HMAC-SM3 (sm-crypto) and SM4 agree.
//! The peers are `interop/sm/*`; `.ci/run` installs them (`interop/sm/requirements.txt`,
//! `npm install --prefix interop/sm`). Under CI a missing peer fails the test; elsewhere it
//! is skipped with a message.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use baomi_core::bundle::envelope::{CUSTODY_RECORD_TYPE, POLICY_BUNDLE_TYPE, signed_message};
use baomi_core::bundle::keys::hex;
use baomi_core::bundle::{SigningKey, sign_bundle};
use baomi_core::level::Classification;
use baomi_core::policy::Policy;
use baomi_core::suite::sm::{DEFAULT_ID, Sm2SecretKey, Sm4Gcm, hmac_sm3, sm3};
use baomi_core::sync::custody::{CustodyAction, CustodyRecordDoc, sign_custody_record};
use baomi_core::time::Timestamp;
use base64::Engine as _;
use serde_json::{Value, json};

const BASELINE: &str = include_str!("../../policies/baseline.json");

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The bytes an envelope's signatures cover.
fn pae_of(envelope_json: &str) -> Vec<u8> {
    let v: Value = serde_json::from_str(envelope_json).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(v["payload"].as_str().unwrap())
        .unwrap();
    signed_message(v["payloadType"].as_str().unwrap(), &payload)
}

/// What the peers are asked, and the key that signed and can open it.
fn request(key: &Sm2SecretKey) -> Value {
    let now = Timestamp::now();
    let intl = SigningKey::generate().unwrap();
    let bundle = sign_bundle(
        &Policy::from_json(BASELINE.as_bytes()).unwrap(),
        1,
        now,
        now.plus_seconds(86_400),
        &[&intl],
    )
    .unwrap()
    .to_json();
    let custody = sign_custody_record(
        &CustodyRecordDoc {
            record_id: "r-1".into(),
            holder: "zhang.wei".into(),
            document: "MIMI-2026-042".into(),
            classification: Classification::Secret,
            action: CustodyAction::SignOut,
            at: now,
        },
        &[&intl],
    )
    .unwrap()
    .to_json();
    let messages = [pae_of(&bundle), pae_of(&custody)];
    assert!(messages[0].starts_with(
        format!("DSSEv1 {} {POLICY_BUNDLE_TYPE}", POLICY_BUNDLE_TYPE.len()).as_bytes()
    ));
    assert!(messages[1].starts_with(
        format!("DSSEv1 {} {CUSTODY_RECORD_TYPE}", CUSTODY_RECORD_TYPE.len()).as_bytes()
    ));
    let batch_key = [0x5Au8; 32];
    json!({
        "private_key": hex(&key.to_bytes()),
        "public_key": hex(&key.public().to_bytes()),
        "signed": messages.iter().map(|m| json!({
            "message": hex(m),
            "signature": hex(&key.sign(DEFAULT_ID, m).unwrap()),
        })).collect::<Vec<_>>(),
        "batch_key": hex(&batch_key),
        "sealed": hex(&key.public().encrypt(&batch_key).unwrap()),
        "data": hex(b"Baomi: an SM4 block and more, for SM3 and HMAC-SM3."),
        "sm4_key": "0123456789abcdeffedcba9876543210",
        "sm4_blocks": hex(&sm4_blocks()),
        "hmac_key": hex(b"an office's MAC key"),
    })
}

/// Runs a peer; `None` when it is not installed here (CI treats that as a failure).
fn run_peer(program: &str, script: &str, req: &Value, env: &[(&str, &str)]) -> Option<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop/sm");
    let child = Command::new(program)
        .arg(dir.join(script))
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return missing(&format!("{program}: {e}")),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No module named") || err.contains("Cannot find module") {
            return missing(&err);
        }
        panic!("{script} failed: {err}");
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn missing(why: &str) -> Option<Value> {
    assert!(
        std::env::var_os("CI").is_none(),
        "an interop peer is missing under CI: {why}"
    );
    eprintln!(
        "skipped: {why} (pip install -r interop/sm/requirements.txt; npm install --prefix interop/sm)"
    );
    None
}

/// What every peer must agree on, both ways.
fn check(peer: &Value, req: &Value, key: &Sm2SecretKey) {
    let name = peer["implementation"].as_str().unwrap();
    assert_eq!(peer["verifies_ours"], json!([true, true]), "{name}");
    assert_eq!(peer["verifies_altered"], json!([false, false]), "{name}");
    assert_eq!(peer["opens_ours"], req["batch_key"], "{name}");
    let public = key.public();
    for (sig, signed) in peer["their_signatures"]
        .as_array()
        .unwrap()
        .iter()
        .zip(req["signed"].as_array().unwrap())
    {
        let msg = unhex(signed["message"].as_str().unwrap());
        let sig = unhex(sig.as_str().unwrap());
        assert!(public.verify(DEFAULT_ID, &msg, &sig), "{name}'s signature");
        assert!(!public.verify(DEFAULT_ID, &[&msg[..], b"x"].concat(), &sig));
    }
    let theirs = unhex(peer["their_sealed"].as_str().unwrap());
    assert_eq!(
        hex(&key.decrypt(&theirs).unwrap()),
        req["batch_key"].as_str().unwrap(),
        "{name}'s sealed key"
    );
    let data = unhex(req["data"].as_str().unwrap());
    assert_eq!(
        peer["sm3"].as_str().unwrap(),
        hex(&sm3(&data)),
        "{name}: SM3"
    );
    if let Some(mac) = peer["hmac_sm3"].as_str() {
        let key = unhex(req["hmac_key"].as_str().unwrap());
        assert_eq!(
            mac,
            hex(&hmac_sm3(&key, &data).unwrap()),
            "{name}: HMAC-SM3"
        );
    }
    // SM4: one block, as the peers' ECB mode gives it (GCM's counter blocks are this block
    // cipher; the mode itself is checked against RFC 8998 in sm_vectors.rs).
    let gcm_key = unhex(req["sm4_key"].as_str().unwrap());
    assert!(Sm4Gcm::new(&gcm_key).is_ok());
    let cipher = baomi_core::suite::sm::Sm4::new(&gcm_key.clone().try_into().unwrap());
    let mut block: [u8; 16] = data[..16].try_into().unwrap();
    cipher.encrypt_block(&mut block);
    assert_eq!(
        peer["sm4_block"].as_str().unwrap(),
        hex(&block),
        "{name}: SM4"
    );
    // Many blocks: a bitsliced pass of 64 and a remainder two at a time.
    let mut blocks: Vec<[u8; 16]> = sm4_blocks().as_chunks::<16>().0.to_vec();
    cipher.encrypt_blocks(&mut blocks);
    assert_eq!(
        peer["sm4_blocks"].as_str().unwrap(),
        hex(blocks.as_flattened()),
        "{name}: SM4, {} blocks",
        blocks.len()
    );
}

/// 70 blocks for the peers' ECB: one bitsliced pass and six blocks after it.
fn sm4_blocks() -> Vec<u8> {
    (0..70 * 16).map(|i| (i * 7 + 1) as u8).collect()
}

#[test]
fn gmssl_and_baomi_agree_both_ways() {
    let key = Sm2SecretKey::generate();
    let req = request(&key);
    if let Some(peer) = run_peer("python3", "gmssl_peer.py", &req, &[]) {
        check(&peer, &req, &key);
    }
}

#[test]
fn sm_crypto_and_baomi_agree_both_ways() {
    let key = Sm2SecretKey::generate();
    let req = request(&key);
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop/sm/node_modules");
    let modules = modules.to_string_lossy().into_owned();
    if let Some(peer) = run_peer(
        "node",
        "sm_crypto_peer.js",
        &req,
        &[("NODE_PATH", &modules)],
    ) {
        check(&peer, &req, &key);
    }
}
