//! Shared by the server benchmarks: a fleet of simulated phones (raw identities, no agent)
//! enrolled through the real HTTP endpoint.

use baomi_core::bundle::SigningKey;
use baomi_core::sync::http::HttpTransport;
use baomi_core::sync::identity::{DeviceIdentity, enroll_message};
use baomi_core::sync::protocol::{EnrollRequest, PROTOCOL_VERSION, path};
use baomi_core::sync::{HttpRequest, Transport};
use baomi_core::time::Timestamp;
use baomi_server::{Server, admin};

/// Posts `body` to `p` (signed by `id` when given); asserts a 200 and returns the body.
pub fn post(t: &HttpTransport, id: Option<&DeviceIdentity>, p: &str, body: Vec<u8>) -> Vec<u8> {
    send(t, &request_at(id, p, body, Timestamp::now()))
}

/// The POST of `body` to `p`, signed by `id` when given, at `at` (a device's request times
/// strictly increase; sent within the server's window).
pub fn request_at(
    id: Option<&DeviceIdentity>,
    p: &str,
    body: Vec<u8>,
    at: Timestamp,
) -> HttpRequest {
    let headers = match id {
        Some(id) => id.sign("POST", p, &body, at).unwrap().headers(),
        None => vec![],
    };
    post_request(p, headers, body)
}

/// A request carrying a batch, as today's agent signs it: its signature is also the batch's
/// device checkpoint over `end`.
#[allow(dead_code, reason = "not every bench uploads")]
pub fn request_with_checkpoint(
    id: &DeviceIdentity,
    p: &str,
    body: Vec<u8>,
    at: Timestamp,
    end: baomi_core::sync::ledger::ChainEnd,
) -> HttpRequest {
    let (auth, _) = id.sign_with_checkpoint("POST", p, &body, at, end).unwrap();
    post_request(p, auth.headers(), body)
}

/// A POST of `body` to `p` with `headers`.
fn post_request(p: &str, headers: Vec<(String, String)>, body: Vec<u8>) -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        path: p.into(),
        headers,
        body,
    }
}

/// Sends `req`; asserts a 200 and returns the body.
pub fn send(t: &HttpTransport, req: &HttpRequest) -> Vec<u8> {
    let r = t.send(req).unwrap();
    assert_eq!(
        r.status,
        200,
        "{}: {}",
        req.path,
        String::from_utf8_lossy(&r.body)
    );
    r.body
}

/// `n` phones named `{prefix}-0000`.., each enrolled with its own one-time token.
#[allow(dead_code, reason = "not every bench enrols an intl fleet")]
pub fn enroll_fleet(server: &Server, base: &str, prefix: &str, n: usize) -> Vec<DeviceIdentity> {
    enroll_fleet_of(baomi_core::suite::Suite::Intl, server, base, prefix, n)
}

/// [`enroll_fleet`] with device keys of `suite`.
#[allow(dead_code, reason = "not every bench enrols an sm fleet")]
pub fn enroll_fleet_of(
    suite: baomi_core::suite::Suite,
    server: &Server,
    base: &str,
    prefix: &str,
    n: usize,
) -> Vec<DeviceIdentity> {
    let t = HttpTransport::new(base);
    let devices: Vec<DeviceIdentity> = (0..n)
        .map(|i| {
            DeviceIdentity::new(
                format!("{prefix}-{i:04}"),
                SigningKey::generate_for(suite).unwrap(),
            )
        })
        .collect();
    for d in &devices {
        let token = admin::new_token(server, 1).unwrap();
        let req = EnrollRequest {
            protocol: PROTOCOL_VERSION,
            token: token.clone(),
            device_id: d.device_id().into(),
            public_key: d.public().to_base64(),
            proof: {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .encode(d.key().sign(&enroll_message(&token, d.device_id())))
            },
            platform: "android".into(),
            agent_version: "bench".into(),
        };
        post(&t, None, path::ENROLL, serde_json::to_vec(&req).unwrap());
    }
    devices
}
