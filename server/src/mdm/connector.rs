//! Where MDM commands go: the generic interface and its two implementations, NanoMDM's command
//! API and a signed webhook (for any other MDM behind a small adapter).

use std::time::Duration;

use base64::Engine as _;
use ring::hmac;

/// Why a command was not handed to the MDM (retried with backoff; nothing is lost).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConnectorError(pub String);

/// An MDM that can queue a command for a device.
pub trait MdmConnector: Send + Sync {
    /// Short name for logs and the command list.
    fn name(&self) -> &'static str;
    /// Queues `command` (an MDM command plist with its `CommandUUID`) for the enrolment `mdm_id`.
    /// Queuing a command whose UUID the MDM already holds counts as success (a retry after a
    /// crash between queuing and recording it).
    fn enqueue(
        &self,
        mdm_id: &str,
        command_uuid: &str,
        command: &[u8],
    ) -> Result<(), ConnectorError>;
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// NanoMDM's command API: `PUT /v1/enqueue/{id}?nopush=…` with HTTP Basic `nanomdm:KEY`.
pub struct NanoMdm {
    base: String,
    auth: String,
    push: bool,
    agent: ureq::Agent,
}

impl NanoMdm {
    /// `base` like `http://127.0.0.1:9000`; `api_key` is NanoMDM's `-api` key. With `push`
    /// false, commands are queued without an APNs push (tests; MDMs that push themselves).
    pub fn new(base: &str, api_key: &str, push: bool) -> Self {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("nanomdm:{api_key}"));
        Self {
            base: base.trim_end_matches('/').to_owned(),
            auth: format!("Basic {auth}"),
            push,
            agent: agent(Duration::from_secs(5)),
        }
    }
}

impl MdmConnector for NanoMdm {
    fn name(&self) -> &'static str {
        "nanomdm"
    }

    fn enqueue(
        &self,
        mdm_id: &str,
        command_uuid: &str,
        command: &[u8],
    ) -> Result<(), ConnectorError> {
        if mdm_id.is_empty()
            || !mdm_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ':')
        {
            return Err(ConnectorError(format!(
                "enrolment id {mdm_id:?} is not a UDID"
            )));
        }
        let nopush = if self.push { "" } else { "?nopush=1" };
        let url = format!("{}/v1/enqueue/{mdm_id}{nopush}", self.base);
        let mut resp = self
            .agent
            .put(&url)
            .header("Authorization", &self.auth)
            .header("Content-Type", "application/xml")
            .send(command)
            .map_err(|e| ConnectorError(format!("nanomdm unreachable: {e}")))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_vec()
            .unwrap_or_default();
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let command_error = answer.get("command_error").and_then(|v| v.as_str());
        match (status, command_error) {
            (200, None) => Ok(()),
            // Queued, but the APNs push failed: the device gets it at its next poll.
            (500, None) if answer.get("push_error").is_some() => {
                log::warn!(
                    "nanomdm queued {command_uuid} but did not push: {}",
                    answer["push_error"]
                );
                Ok(())
            }
            (_, Some(e)) if e.contains("already exists") => Ok(()),
            (401, _) => Err(ConnectorError("nanomdm refused the API key (401)".into())),
            (s, e) => Err(ConnectorError(format!(
                "nanomdm answered {s}: {}",
                e.unwrap_or(&String::from_utf8_lossy(&body[..body.len().min(200)]))
            ))),
        }
    }
}

/// Any other MDM: a JSON POST signed with HMAC-SHA256 (`X-Baomi-Signature: base64`), body
/// `{"mdm_id", "command_uuid", "command" (base64 plist)}`; a 2xx answer means queued.
pub struct SignedWebhook {
    url: String,
    key: hmac::Key,
    agent: ureq::Agent,
}

impl SignedWebhook {
    /// Posts to `url`, signing with `key`.
    pub fn new(url: &str, key: &[u8]) -> Self {
        Self {
            url: url.to_owned(),
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            agent: agent(Duration::from_secs(5)),
        }
    }
}

impl MdmConnector for SignedWebhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn enqueue(
        &self,
        mdm_id: &str,
        command_uuid: &str,
        command: &[u8],
    ) -> Result<(), ConnectorError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = serde_json::to_vec(&serde_json::json!({
            "mdm_id": mdm_id,
            "command_uuid": command_uuid,
            "command": b64.encode(command),
        }))
        .map_err(|e| ConnectorError(e.to_string()))?;
        let sig = b64.encode(hmac::sign(&self.key, &body).as_ref());
        let resp = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("X-Baomi-Signature", &sig)
            .send(&body[..])
            .map_err(|e| ConnectorError(format!("webhook unreachable: {e}")))?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            s => Err(ConnectorError(format!("webhook answered {s}"))),
        }
    }
}

/// Checks NanoMDM's `X-Hmac-Signature` (base64 HMAC-SHA256 of the body) in constant time.
pub fn verify_event_signature(key: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(sig) = header.and_then(|h| {
        base64::engine::general_purpose::STANDARD
            .decode(h.trim())
            .ok()
    }) else {
        return false;
    };
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, key), body, &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The second connector: an HMAC-signed POST the receiving MDM adapter can verify.
    #[test]
    fn the_signed_webhook_posts_a_command_its_receiver_can_verify() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/mdm/commands", listener.local_addr().unwrap());
        let receiver = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = Vec::new();
            loop {
                let n = s.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some(i) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if got.len() >= i + 4 + len {
                        s.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                            .unwrap();
                        return (text[..i].to_owned(), got[i + 4..].to_vec());
                    }
                }
            }
        });
        let hook = SignedWebhook::new(&url, b"shared-secret");
        hook.enqueue("UDID-1", "CMD-1", b"<plist/>").unwrap();
        let (head, body) = receiver.join().unwrap();
        let sig = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("x-baomi-signature: ")
                    .or_else(|| l.strip_prefix("X-Baomi-Signature: "))
            })
            .unwrap()
            .to_owned();
        let b64 = base64::engine::general_purpose::STANDARD;
        assert!(
            hmac::verify(
                &hmac::Key::new(hmac::HMAC_SHA256, b"shared-secret"),
                &body,
                &b64.decode(sig).unwrap()
            )
            .is_ok()
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["mdm_id"], "UDID-1");
        assert_eq!(
            b64.decode(v["command"].as_str().unwrap()).unwrap(),
            b"<plist/>"
        );
        // A receiver that is down is a typed error (retried by the ledger), not a panic.
        let down = SignedWebhook::new("http://127.0.0.1:9/none", b"k");
        assert!(
            down.enqueue("U", "C", b"x")
                .unwrap_err()
                .0
                .contains("unreachable")
        );
        assert!(
            NanoMdm::new("http://127.0.0.1:9", "k", false)
                .enqueue("../etc", "C", b"x")
                .is_err(),
            "ids are checked"
        );
        assert!(!verify_event_signature(b"k", b"{}", Some("not base64!")));
        assert!(!verify_event_signature(b"k", b"{}", None));
    }
}
