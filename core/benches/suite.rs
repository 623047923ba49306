//! The two suites side by side, in the same run (issue 24): SM vs international for each
//! primitive Baomi uses. Ratios matter, not absolute times (these machines are noisy).
//!
//! `cargo bench -p baomi-core --bench suite`

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark setup")]

use baomi_core::bundle::SigningKey;
use baomi_core::suite::Suite;
use baomi_core::suite::sm::{Sm2SecretKey, Sm4, Sm4Gcm, hmac_sm3, sm3};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

/// A message the size of a signed bundle's pre-authentication encoding (~8 KiB) for the
/// signatures, and of a sealed violation record (1 KiB) for the AEADs and hashes.
const SIGNED: usize = 8 * 1024;
const RECORD: usize = 1024;

fn signatures(c: &mut Criterion) {
    let msg = vec![0x42u8; SIGNED];
    let mut g = c.benchmark_group("sign");
    for suite in [Suite::Intl, Suite::Sm] {
        let k = SigningKey::generate_for(suite).unwrap();
        g.bench_function(suite.as_str(), |b| b.iter(|| k.sign(&msg)));
    }
    g.finish();
    let mut g = c.benchmark_group("verify");
    for suite in [Suite::Intl, Suite::Sm] {
        let k = SigningKey::generate_for(suite).unwrap();
        let sig = k.sign(&msg);
        let public = k.public().clone();
        g.bench_function(suite.as_str(), |b| {
            b.iter(|| assert!(public.verify(&msg, &sig)))
        });
    }
    g.finish();
}

fn aeads(c: &mut Criterion) {
    let msg = vec![0x42u8; RECORD];
    let nonce = [7u8; 12];
    let mut g = c.benchmark_group("seal_1KiB");
    g.throughput(Throughput::Bytes(RECORD as u64));
    let aes = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[1u8; 32]).unwrap());
    g.bench_function("intl_aes256gcm", |b| {
        b.iter(|| {
            let mut buf = msg.clone();
            aes.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(b"aad"),
                &mut buf,
            )
            .unwrap();
            buf
        })
    });
    let sm4 = Sm4Gcm::new(&[1u8; 16]).unwrap();
    g.bench_function("sm_sm4gcm", |b| {
        b.iter(|| {
            let mut buf = msg.clone();
            sm4.seal_in_place_append_tag(&nonce, b"aad", &mut buf)
                .unwrap();
            buf
        })
    });
    g.finish();
    let mut g = c.benchmark_group("open_1KiB");
    g.throughput(Throughput::Bytes(RECORD as u64));
    let mut sealed = msg.clone();
    aes.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(b"aad"),
        &mut sealed,
    )
    .unwrap();
    g.bench_function("intl_aes256gcm", |b| {
        b.iter(|| {
            let mut buf = sealed.clone();
            aes.open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(b"aad"),
                &mut buf,
            )
            .unwrap()
            .len()
        })
    });
    let sm_sealed = sm4.seal(&nonce, b"aad", &msg).unwrap();
    g.bench_function("sm_sm4gcm", |b| {
        b.iter(|| {
            let mut buf = sm_sealed.clone();
            sm4.open_in_place(&nonce, b"aad", &mut buf).unwrap().len()
        })
    });
    g.finish();
}

/// Where SM4-GCM's time goes: the key schedule, and a lone block (SWAR) against a full
/// bitsliced pass of 64 (the cipher's cost per pass does not depend on its count of blocks).
fn sm4_blocks(c: &mut Criterion) {
    let key = Sm4::new(&[3u8; 16]);
    let mut g = c.benchmark_group("sm4");
    g.bench_function("key_schedule", |b| b.iter(|| Sm4::new(&[3u8; 16])));
    g.bench_function("1_block", |b| {
        b.iter(|| {
            let mut block = [5u8; 16];
            key.encrypt_block(&mut block);
            block
        })
    });
    g.throughput(Throughput::Bytes(64 * 16));
    g.bench_function("64_blocks", |b| {
        b.iter(|| {
            let mut blocks = [[5u8; 16]; 64];
            key.encrypt_blocks(&mut blocks);
            blocks
        })
    });
    g.finish();
}

fn hashes(c: &mut Criterion) {
    let msg = vec![0x42u8; RECORD];
    let mut g = c.benchmark_group("hash_1KiB");
    g.throughput(Throughput::Bytes(RECORD as u64));
    g.bench_function("intl_sha256", |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA256, &msg))
    });
    g.bench_function("sm_sm3", |b| b.iter(|| sm3(&msg)));
    g.finish();
    let mut g = c.benchmark_group("hmac_1KiB");
    g.throughput(Throughput::Bytes(RECORD as u64));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[3u8; 32]);
    g.bench_function("intl_hmac_sha256", |b| {
        b.iter(|| ring::hmac::sign(&key, &msg))
    });
    g.bench_function("sm_hmac_sm3", |b| {
        b.iter(|| hmac_sm3(&[3u8; 32], &msg).unwrap())
    });
    g.finish();
}

fn key_sealing(c: &mut Criterion) {
    // Sealing a 32-byte batch key to the office: X25519 + HKDF + AES-GCM (today's seal) vs
    // SM2 public-key encryption; opening it with the office's key.
    let mut g = c.benchmark_group("seal_batch_key");
    use baomi_core::sync::seal::{Recipient, seal};
    let office = Recipient::X25519(x25519_public());
    g.bench_function("intl_x25519", |b| {
        b.iter(|| seal(&office, b"aad", &[5u8; 32]).unwrap())
    });
    let sm = Sm2SecretKey::generate();
    let public = sm.public();
    let sm_office = Recipient::Sm2(public.clone());
    g.bench_function("sm_sm2", |b| {
        b.iter(|| seal(&sm_office, b"aad", &[5u8; 32]).unwrap())
    });
    // The first seal to a key builds its table (kept for the last key sealed to): two keys in
    // turn pay that every time, what a process sealing once pays.
    let other = Recipient::Sm2(Sm2SecretKey::generate().public());
    let mut turn = 0u64;
    g.bench_function("sm_sm2_first_to_a_key", |b| {
        b.iter(|| {
            turn += 1;
            let to = if turn.is_multiple_of(2) {
                &sm_office
            } else {
                &other
            };
            seal(to, b"aad", &[5u8; 32]).unwrap()
        })
    });
    g.finish();
    let mut g = c.benchmark_group("open_batch_key");
    let sealed = public.encrypt(&[5u8; 32]).unwrap();
    g.bench_function("sm_sm2", |b| b.iter(|| sm.decrypt(&sealed).unwrap()));
    g.finish();
}

/// What the office verifies to take one upload (issue 21): the request's signature and the
/// batch's device checkpoint signed apart (agents before the one-signature upload), against
/// the one signature that is both (a checkpoint bound to the request). A sync body's size.
fn upload_authentication(c: &mut Criterion) {
    use baomi_core::sync::identity::{DeviceIdentity, verify_request};
    use baomi_core::sync::ledger::{ChainEnd, DeviceCheckpoint};
    use baomi_core::time::Timestamp;
    let body = vec![0x42u8; 4 * 1024];
    let now = Timestamp(1_800_000_000_000);
    let end = ChainEnd {
        seq: 5,
        link: [9; 32],
        at: now,
    };
    let mut g = c.benchmark_group("upload_authentication");
    for suite in [Suite::Intl, Suite::Sm] {
        let id = DeviceIdentity::new("dev-1".into(), SigningKey::generate_for(suite).unwrap());
        let public = id.public().clone();
        let auth = id.sign("POST", "/v1/sync", &body, now).unwrap();
        let apart = DeviceCheckpoint::sign(&id, end.seq, &end.link, end.at);
        g.bench_function(format!("{suite}_apart"), |b| {
            b.iter(|| {
                verify_request(&public, "POST", "/v1/sync", &body, &auth, now).unwrap();
                assert!(apart.verify("dev-1", &public));
            })
        });
        let (bound, _) = id
            .sign_with_checkpoint("POST", "/v1/sync", &body, now, end)
            .unwrap();
        g.bench_function(format!("{suite}_bound"), |b| {
            b.iter(|| {
                verify_request(&public, "POST", "/v1/sync", &body, &bound, now)
                    .unwrap()
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn x25519_public() -> [u8; 32] {
    use ring::agreement::{EphemeralPrivateKey, X25519};
    let rng = ring::rand::SystemRandom::new();
    let k = EphemeralPrivateKey::generate(&X25519, &rng).unwrap();
    k.compute_public_key().unwrap().as_ref().try_into().unwrap()
}

criterion_group!(
    benches,
    signatures,
    aeads,
    sm4_blocks,
    hashes,
    key_sealing,
    upload_authentication
);
criterion_main!(benches);
