//! The server's request decoding up to the handlers: the first byte picks the endpoint, the
//! next the header set, the rest is the body. An in-memory SQLite server with a published
//! trust root; nothing may panic and every failure is a JSON error.
#![no_main]

use std::sync::OnceLock;

use baomi_core::sync::protocol::path;
use baomi_core::time::Timestamp;
use baomi_server::Server;
use baomi_server::db::Db;
use libfuzzer_sys::fuzz_target;

fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let s = Server::new(
            Db::open("sqlite::memory:", 1).expect("db"),
            None,
            Timestamp::now,
        )
        .expect("server");
        let root = baomi_fuzz::trust_root();
        s.publish_trust_root(root.envelope_bytes()).expect("root");
        s
    })
}

/// Every endpoint, and two that are not.
const ODD: [&str; 2] = ["/v1/../etc", ""];

fuzz_target!(|data: &[u8]| {
    let (Some(&p), Some(&h), body) = (data.first(), data.get(1), data.get(2..).unwrap_or_default())
    else {
        return;
    };
    let i = p as usize % (path::ALL.len() + ODD.len());
    let path = match path::ALL.get(i) {
        Some(p) => *p,
        None => ODD[i - path::ALL.len()],
    };
    let headers: Vec<(String, String)> = match h % 3 {
        0 => vec![],
        1 => vec![
            ("baomi-device".into(), "dev-1".into()),
            ("baomi-timestamp".into(), Timestamp::now().0.to_string()),
            ("baomi-nonce".into(), "0".repeat(32)),
            ("baomi-signature".into(), "AAAA".into()),
        ],
        _ => vec![(
            "baomi-timestamp".into(),
            String::from_utf8_lossy(body).into_owned(),
        )],
    };
    let method = if h & 0x80 == 0 { "POST" } else { "GET" };
    if let Err(e) = server().handle(method, path, &headers, body) {
        assert!(serde_json::from_slice::<serde_json::Value>(&e.body()).is_ok());
    }
});
