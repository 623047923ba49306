//! Issue 24: the ShangMi primitives against their standards' worked examples. SM3: GB/T
//! 32905-2016 Annex A (both messages). SM4: GB/T 32907-2016 Annex A (one block, and the same
//! block encrypted 1,000,000 times). SM4-GCM: RFC 8998 Appendix A.1. SM2: GB/T 32918.5-2017
//! Annex A (the recommended curve): the signature of "message digest" under ID
//! 1234567812345678 verifies, and the ciphertext of "encryption standard" opens. (GB/T
//! 32918.2 and .4's own annexes use a test curve, not the recommended one every
//! implementation ships; part 5 repeats them on the recommended curve.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use baomi_core::suite::sm::{
    DEFAULT_ID, Sm2PublicKey, Sm2SecretKey, Sm4Gcm, hkdf_sm3, hmac_sm3, hmac_sm3_verify, sm3,
};

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn sm3_matches_gb_t_32905_annex_a() {
    assert_eq!(
        sm3(b"abc").to_vec(),
        unhex("66c7f0f4 62eeedd9 d1f2d46b dc10e4e2 4167c487 5cf2f7a2 297da02b 8f4ba8e0")
    );
    assert_eq!(
        sm3("abcd".repeat(16).as_bytes()).to_vec(),
        unhex("debe9ff9 2275b8a1 38604889 c18e5a4d 6fdb70e5 387e5765 293dcba3 9c0c5732")
    );
}

#[test]
fn sm4_matches_gb_t_32907_annex_a() {
    let key: [u8; 16] = unhex("0123456789abcdeffedcba9876543210")
        .try_into()
        .unwrap();
    let cipher = baomi_core::suite::sm::Sm4::new(&key);
    let mut block = key;
    cipher.encrypt_block(&mut block);
    assert_eq!(block.to_vec(), unhex("681edf34d206965e86b3e94f536e4246"));
    let mut block = key;
    for _ in 0..1_000_000 {
        cipher.encrypt_block(&mut block);
    }
    assert_eq!(block.to_vec(), unhex("595298c7c6fd271f0402f804c33d3f66"));
}

#[test]
fn sm4_gcm_matches_rfc_8998() {
    let gcm = Sm4Gcm::new(&unhex("0123456789ABCDEFFEDCBA9876543210")).unwrap();
    let nonce: [u8; 12] = unhex("00001234567800000000ABCD").try_into().unwrap();
    let aad = unhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2");
    let pt = unhex(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD
         EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA",
    );
    let sealed = gcm.seal(&nonce, &aad, &pt).unwrap();
    let expected = unhex(
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735
         D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D
         83DE3541E4C2B58177E065A9BF7B62EC",
    );
    assert_eq!(sealed, expected);
    assert_eq!(gcm.open(&nonce, &aad, &sealed).unwrap().as_slice(), pt);
    // One bit off anywhere: refused.
    let mut bad = sealed.clone();
    bad[0] ^= 1;
    assert!(gcm.open(&nonce, &aad, &bad).is_err());
    assert!(gcm.open(&nonce, b"other aad", &sealed).is_err());
}

const D: &str = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8";
const P: &str = "04 09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020
                    CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13";

#[test]
fn sm2_matches_gb_t_32918_5_annex_a() {
    let d = Sm2SecretKey::from_bytes(&unhex(D)).unwrap();
    assert_eq!(d.public().to_bytes(), unhex(P));
    let p = Sm2PublicKey::from_bytes(&unhex(P)).unwrap();
    let sig = unhex(
        "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
         B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA",
    );
    assert!(p.verify(DEFAULT_ID, b"message digest", &sig));
    assert!(!p.verify(DEFAULT_ID, b"message digesT", &sig));
    assert!(!p.verify("ALICE123@YAHOO.COM", b"message digest", &sig));
    // Ours verify, and not under another ID.
    let ours = d.sign(DEFAULT_ID, b"message digest").unwrap();
    assert!(p.verify(DEFAULT_ID, b"message digest", &ours));
    assert!(!p.verify("1234567812345679", b"message digest", &ours));
    // The annex's ciphertext of "encryption standard" (C1 || C3 || C2).
    let ct = unhex(
        "04 04EBFC718E8D1798620432268E77FEB6415E2EDE0E073C0F4F640ECD2E149A73
            E858F9D81E5430A57B36DAAB8F950A3C64E6EE6A63094D99283AFF767E124DF0
         59983C18F809E262923C53AEC295D30383B54E39D609D160AFCB1908D0BD8766
         21886CA989CA9C7D58087307CA93092D651EFA",
    );
    assert_eq!(d.decrypt(&ct).unwrap().as_slice(), b"encryption standard");
    // Without the 04 prefix (GmSSL, sm-crypto), too; altered, refused.
    assert_eq!(
        d.decrypt(&ct[1..]).unwrap().as_slice(),
        b"encryption standard"
    );
    let mut bad = ct.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert!(d.decrypt(&bad).is_err());
    // Ours round-trip, and only to the right key.
    let sealed = p.encrypt(b"a batch key, 32 bytes long......").unwrap();
    assert_eq!(
        d.decrypt(&sealed).unwrap().as_slice(),
        b"a batch key, 32 bytes long......"
    );
    assert!(Sm2SecretKey::generate().decrypt(&sealed).is_err());
}

#[test]
fn hmac_and_hkdf_over_sm3_behave() {
    // HMAC-SM3 is checked against sm-crypto in CI (interop/sm); here its contract.
    let tag = hmac_sm3(b"key", b"data").unwrap();
    assert!(hmac_sm3_verify(b"key", b"data", &tag));
    assert!(!hmac_sm3_verify(b"key", b"datA", &tag));
    assert!(!hmac_sm3_verify(b"key", b"data", &tag[..31]));
    let (mut a, mut b) = ([0u8; 48], [0u8; 48]);
    hkdf_sm3(b"salt", b"ikm", b"baomi store v1", &mut a).unwrap();
    hkdf_sm3(b"salt", b"ikm", b"baomi store v2", &mut b).unwrap();
    assert_ne!(a, b);
}
