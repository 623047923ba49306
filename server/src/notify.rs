//! Alerts out: a new alert, or a batch of critical violations, delivered to the officer
//! without their looking: a signed webhook (JSON, HMAC-SHA256), syslog for a SIEM (RFC 5424
//! over TCP, octet-counted framing per RFC 6587), and e-mail (SMTP, `lettre`).
//!
//! An outbox: the notification is written in the transaction that raised it, one delivery row
//! per configured channel (`alert_channels`, written when `serve` starts), so nothing is lost
//! to a crash or an unreachable receiver. A background task sends what is due, leases a row
//! before sending (several processes share the table), and records the outcome: delivered, or
//! retried after `5 s << attempts` (at most an hour) until [`MAX_ATTEMPTS`], then failed.
//!
//! Bounds: a batch raises at most one critical-violation notification (its count and first
//! record), an alert one on opening (repeats count on the alert); a receiver gets
//! [`TIMEOUT`] per attempt; [`DUE_PER_ROUND`] deliveries are sent per round.

use std::io::Write;
use std::time::Duration;

use base64::Engine as _;
use ring::hmac;
use serde::Serialize;

use crate::api::{ApiError, Server};
use crate::db::{Conn, Value};

/// Attempts before a delivery is given up (about 15 hours of retries).
pub const MAX_ATTEMPTS: i64 = 20;
/// Longest wait between attempts.
pub const MAX_BACKOFF_MS: i64 = 3_600_000;
/// Time a receiver gets per attempt.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries sent per round.
pub const DUE_PER_ROUND: i64 = 100;

/// Where alerts go.
#[derive(Clone, Default)]
pub struct Channels {
    /// POST JSON here, signed with the key (`X-Baomi-Signature`: base64 HMAC-SHA256 of the
    /// body).
    pub webhook: Option<(String, Vec<u8>)>,
    /// A syslog receiver's `host:port` (TCP).
    pub syslog: Option<String>,
    /// E-mail.
    pub smtp: Option<Smtp>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The webhook key is never printed.
        f.debug_struct("Channels")
            .field("webhook", &self.webhook.as_ref().map(|(u, _)| u))
            .field("syslog", &self.syslog)
            .field("smtp", &self.smtp)
            .finish()
    }
}

/// An SMTP relay and the addresses.
#[derive(Debug, Clone)]
pub struct Smtp {
    /// Relay host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// STARTTLS required (off only for a relay on loopback).
    pub starttls: bool,
    /// From.
    pub from: String,
    /// To (one or more).
    pub to: Vec<String>,
}

impl Channels {
    /// The channels' names, for the outbox.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.webhook.is_some() {
            v.push("webhook");
        }
        if self.syslog.is_some() {
            v.push("syslog");
        }
        if self.smtp.is_some() {
            v.push("smtp");
        }
        v
    }
}

/// What is delivered.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Notification {
    /// `alert` or `critical_violations`.
    pub kind: String,
    /// The phone.
    pub device_id: String,
    /// One line for a person.
    pub summary: String,
    /// When it happened at the office (ms).
    pub at: i64,
    /// The details (the alert, or the batch's count and first record).
    pub detail: serde_json::Value,
}

/// Writes `n` to the outbox, one delivery per configured channel, in the caller's
/// transaction.
pub fn enqueue(c: &mut dyn Conn, n: &Notification) -> Result<(), ApiError> {
    let body = serde_json::to_string(n).map_err(|e| ApiError::internal(e.to_string()))?;
    c.execute(
        "INSERT INTO deliveries (channel, body, status, attempts, next_attempt_at, created_at) SELECT channel, $1, 'pending', 0, $2, $2 FROM alert_channels",
        &[body.into(), n.at.into()],
    )?;
    Ok(())
}

/// One delivery as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Its number (a webhook receiver's idempotency key: `X-Baomi-Delivery`).
    pub id: i64,
    /// `webhook`, `syslog` or `smtp`.
    pub channel: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it was delivered (ms).
    pub delivered_at: Option<i64>,
    /// The notification (JSON).
    pub body: String,
}

/// The deliveries, newest first (at most `limit`, bounded to 500).
pub fn deliveries(server: &Server, limit: i64) -> Result<Vec<Delivery>, ApiError> {
    let rows = server.db().tx(|c| {
        Ok(c.query(
            "SELECT id, channel, status, attempts, last_error, delivered_at, body FROM deliveries ORDER BY id DESC LIMIT $1",
            &[limit.clamp(1, 500).into()],
        )?)
    })?;
    Ok(rows
        .iter()
        .map(|r| {
            let t = |i: usize| r.get(i).and_then(Value::text).map(str::to_owned);
            let n = |i: usize| r.get(i).and_then(Value::int);
            Delivery {
                id: n(0).unwrap_or(0),
                channel: t(1).unwrap_or_default(),
                status: t(2).unwrap_or_default(),
                attempts: n(3).unwrap_or(0),
                last_error: t(4),
                delivered_at: n(5),
                body: t(6).unwrap_or_default(),
            }
        })
        .collect())
}

/// Records the channels this process delivers to (replacing what another configuration
/// wrote): notifications from now on get a delivery row for each.
pub fn register_channels(server: &Server, channels: &Channels) -> Result<(), ApiError> {
    server.db().tx(|c| {
        c.execute("DELETE FROM alert_channels", &[])?;
        for name in channels.names() {
            c.execute(
                "INSERT INTO alert_channels (channel) VALUES ($1)",
                &[name.into()],
            )?;
        }
        Ok(())
    })
}

/// The RFC 5424 message for `n` (`<130>1 TIMESTAMP HOST baomi-server - ALERT [SD] BOM MSG`),
/// framed by its octet count (RFC 6587).
pub fn syslog_frame(n: &Notification, id: i64, host: &str) -> Vec<u8> {
    // Facility local0 (16), severity critical (2): PRI 130.
    let sd_value = |v: &str| -> String {
        v.chars()
            .take(200)
            .flat_map(|ch| match ch {
                '"' | '\\' | ']' => vec!['\\', ch],
                ch if ch.is_control() => vec![' '],
                ch => vec![ch],
            })
            .collect()
    };
    let hostname: String = host
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    let msg = format!(
        "<130>1 {} {} baomi-server - {} [baomi@32473 id=\"{id}\" device=\"{}\" kind=\"{}\"] \u{feff}{}",
        baomi_core::time::Timestamp(n.at).to_rfc3339(),
        if hostname.is_empty() { "-" } else { &hostname },
        if n.kind == "alert" {
            "ALERT"
        } else {
            "CRITICAL"
        },
        sd_value(&n.device_id),
        sd_value(&n.kind),
        n.summary.replace(['\n', '\r'], " "),
    );
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg.as_bytes());
    out
}

fn send(channels: &Channels, channel: &str, id: i64, body: &str) -> Result<(), String> {
    let n: Notification = serde_json::from_str(body).map_err(|e| e.to_string())?;
    match channel {
        "webhook" => {
            let (url, key) = channels.webhook.as_ref().ok_or("no webhook configured")?;
            let sig = base64::engine::general_purpose::STANDARD.encode(
                hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), body.as_bytes()).as_ref(),
            );
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(TIMEOUT))
                .build()
                .into();
            let r = agent
                .post(url)
                .header("Content-Type", "application/json")
                .header("X-Baomi-Signature", &sig)
                .header("X-Baomi-Delivery", id.to_string())
                .send(body.as_bytes())
                .map_err(|e| format!("webhook unreachable: {e}"))?;
            match r.status().as_u16() {
                200..=299 => Ok(()),
                s => Err(format!("webhook answered {s}")),
            }
        }
        "syslog" => {
            let addr = channels.syslog.as_ref().ok_or("no syslog configured")?;
            let to = std::net::ToSocketAddrs::to_socket_addrs(addr.as_str())
                .map_err(|e| format!("syslog {addr}: {e}"))?
                .next()
                .ok_or_else(|| format!("syslog {addr}: no address"))?;
            let mut s = std::net::TcpStream::connect_timeout(&to, TIMEOUT)
                .map_err(|e| format!("syslog {addr}: {e}"))?;
            s.set_write_timeout(Some(TIMEOUT))
                .map_err(|e| e.to_string())?;
            let host = hostname();
            s.write_all(&syslog_frame(&n, id, &host))
                .and_then(|()| s.flush())
                .map_err(|e| format!("syslog {addr}: {e}"))
        }
        "smtp" => {
            use lettre::Transport as _;
            let cfg = channels.smtp.as_ref().ok_or("no smtp configured")?;
            let mut m = lettre::Message::builder()
                .from(cfg.from.parse().map_err(|e| format!("from: {e}"))?)
                .subject(format!(
                    "[保密 Baomi] {}",
                    n.summary.chars().take(120).collect::<String>()
                ))
                .header(lettre::message::header::ContentType::TEXT_PLAIN);
            for to in &cfg.to {
                m = m.to(to.parse().map_err(|e| format!("to {to}: {e}"))?);
            }
            let text = format!(
                "{}\n\nphone: {}\nkind: {}\nat: {}\ndelivery: {id}\n\n{}\n",
                n.summary,
                n.device_id,
                n.kind,
                baomi_core::time::Timestamp(n.at).to_rfc3339(),
                serde_json::to_string_pretty(&n.detail).unwrap_or_default()
            );
            let email = m.body(text).map_err(|e| e.to_string())?;
            let builder = if cfg.starttls {
                lettre::SmtpTransport::starttls_relay(&cfg.host).map_err(|e| e.to_string())?
            } else {
                lettre::SmtpTransport::builder_dangerous(&cfg.host)
            };
            builder
                .port(cfg.port)
                .timeout(Some(TIMEOUT))
                .build()
                .send(&email)
                .map(|_| ())
                .map_err(|e| format!("smtp {}:{}: {e}", cfg.host, cfg.port))
        }
        other => Err(format!("unknown channel {other}")),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

impl Server {
    /// Sends the deliveries that are due on this process's channels; the number delivered.
    pub fn deliver_due(&self, channels: &Channels) -> Result<usize, ApiError> {
        let names = channels.names();
        if names.is_empty() {
            return Ok(0);
        }
        let now = self.now().0;
        let due = self.db().tx(|c| {
            Ok(c.query(
                "SELECT id, channel, body, attempts FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY id LIMIT $2",
                &[now.into(), DUE_PER_ROUND.into()],
            )?)
        })?;
        let mut delivered = 0;
        for r in due {
            let id = r.first().and_then(Value::int).unwrap_or(0);
            let channel = r
                .get(1)
                .and_then(Value::text)
                .unwrap_or_default()
                .to_owned();
            let body = r
                .get(2)
                .and_then(Value::text)
                .unwrap_or_default()
                .to_owned();
            let attempts = r.get(3).and_then(Value::int).unwrap_or(0);
            if !names.contains(&channel.as_str()) {
                continue;
            }
            // Leased, so another process does not send it meanwhile.
            let leased = self.db().tx(|c| {
                Ok(c.execute(
                    "UPDATE deliveries SET next_attempt_at = $1 WHERE id = $2 AND status = 'pending' AND next_attempt_at <= $3",
                    &[(now + 60_000).into(), id.into(), now.into()],
                )? == 1)
            })?;
            if !leased {
                continue;
            }
            let result = send(channels, &channel, id, &body);
            let at = self.now().0;
            let attempts = attempts + 1;
            self.db().tx(|c| {
                match &result {
                    Ok(()) => c.execute(
                        "UPDATE deliveries SET status = 'delivered', attempts = $1, delivered_at = $2, last_error = NULL WHERE id = $3",
                        &[attempts.into(), at.into(), id.into()],
                    )?,
                    Err(e) => {
                        let backoff = (5_000i64 << attempts.clamp(0, 20)).min(MAX_BACKOFF_MS);
                        let status = if attempts >= MAX_ATTEMPTS { "failed" } else { "pending" };
                        c.execute(
                            "UPDATE deliveries SET status = $1, attempts = $2, last_error = $3, next_attempt_at = $4 WHERE id = $5",
                            &[status.into(), attempts.into(), e.chars().take(500).collect::<String>().into(), (at + backoff).into(), id.into()],
                        )?
                    }
                };
                Ok(())
            })?;
            if let Some(m) = crate::metrics::METRICS.as_ref() {
                m.deliveries
                    .with_label_values(&[
                        channel.as_str(),
                        if result.is_ok() {
                            "delivered"
                        } else {
                            "failed"
                        },
                    ])
                    .inc();
            }
            match result {
                Ok(()) => delivered += 1,
                Err(e) => {
                    log::warn!("alert delivery {id} over {channel} (attempt {attempts}): {e}")
                }
            }
        }
        Ok(delivered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame is RFC 5424 with RFC 6587 octet counting; structured-data values escape `"`,
    /// `\` and `]` (a device id cannot break out of its parameter).
    #[test]
    fn syslog_frames_are_rfc5424_with_escaped_structured_data() {
        let n = Notification {
            kind: "alert".into(),
            device_id: "dev\"] [evil".into(),
            summary: "clock set back\nsecond line".into(),
            at: 1_796_267_347_000,
            detail: serde_json::json!({}),
        };
        let frame = String::from_utf8(syslog_frame(&n, 7, "office-1")).unwrap_or_default();
        let (len, msg) = frame.split_once(' ').unwrap_or_default();
        assert_eq!(len.parse::<usize>().ok(), Some(msg.len()));
        assert!(msg.starts_with("<130>1 2026-12-03T03:09:07"), "{msg}");
        assert!(msg.contains(" office-1 baomi-server - ALERT [baomi@32473 id=\"7\" device=\"dev\\\"\\] [evil\" kind=\"alert\"] \u{feff}clock set back second line"), "{msg}");
    }
}
