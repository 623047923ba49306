//! Exports: violations, devices, custody and the audit log as CSV or JSON Lines, with the
//! list's filters applied, streamed a page at a time (keyset, [`PAGE`] rows): memory stays
//! flat whatever the size, the HTTP layer sends each chunk as it is made through a bounded
//! channel, and a client that stops reading stops the export.
//!
//! CSV cells a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR first) are
//! written with a leading `'`: a holder's event text must not become a formula on the
//! officer's machine.

use serde::Serialize;

use super::i18n::Tr;
use super::listing::{self, CustodyFilter, FleetFilter, ViolationFilter};
use crate::api::{ApiError, Server};

/// Rows per page read from the database.
pub const PAGE: i64 = 500;

/// What is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// Violations (the violations list's filters).
    Violations,
    /// Devices (the fleet's filters).
    Devices,
    /// Custody spans (the custody list's filters).
    Custody,
    /// The audit log.
    Audit,
}

/// How.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180 CSV with a header row (UTF-8 with a BOM, so spreadsheets read Chinese).
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// An export to run: what, how, and its filters.
#[derive(Debug, Clone)]
pub struct Job {
    /// What.
    pub what: What,
    /// How.
    pub format: Format,
    /// Violations' filters.
    pub violations: ViolationFilter,
    /// Devices' filters.
    pub devices: FleetFilter,
    /// Custody's filters.
    pub custody: CustodyFilter,
}

impl Job {
    /// From `violations.csv`, `devices.jsonl`, ...; `None`: no such export.
    pub fn parse(name: &str) -> Option<(What, Format)> {
        let (what, format) = name.rsplit_once('.')?;
        let what = match what {
            "violations" => What::Violations,
            "devices" => What::Devices,
            "custody" => What::Custody,
            "audit" => What::Audit,
            _ => return None,
        };
        let format = match format {
            "csv" => Format::Csv,
            "jsonl" => Format::Jsonl,
            _ => return None,
        };
        Some((what, format))
    }

    /// Its content type.
    pub fn content_type(&self) -> &'static str {
        match self.format {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Jsonl => "application/jsonl; charset=utf-8",
        }
    }

    /// Its file name.
    pub fn file_name(&self) -> String {
        let what = match self.what {
            What::Violations => "violations",
            What::Devices => "devices",
            What::Custody => "custody",
            What::Audit => "audit",
        };
        let ext = match self.format {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        };
        format!("baomi-{what}.{ext}")
    }
}

/// A CSV cell a spreadsheet will not run.
pub fn cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

/// Writes rows as CSV or JSON Lines into a chunk.
struct Encoder {
    format: Format,
    header_written: bool,
}

impl Encoder {
    fn rows<T: Serialize>(
        &mut self,
        header: &[&str],
        rows: &[(T, Vec<String>)],
    ) -> Result<Vec<u8>, ApiError> {
        let mut out = Vec::with_capacity(rows.len() * 256);
        match self.format {
            Format::Jsonl => {
                for (row, _) in rows {
                    serde_json::to_writer(&mut out, row)
                        .map_err(|e| ApiError::internal(e.to_string()))?;
                    out.push(b'\n');
                }
            }
            Format::Csv => {
                let mut w = csv::WriterBuilder::new().from_writer(&mut out);
                if !self.header_written {
                    self.header_written = true;
                    w.write_record(header)
                        .map_err(|e| ApiError::internal(e.to_string()))?;
                }
                for (_, cells) in rows {
                    w.write_record(cells.iter().map(|c| cell(c)))
                        .map_err(|e| ApiError::internal(e.to_string()))?;
                }
                w.flush().map_err(|e| ApiError::internal(e.to_string()))?;
            }
        }
        Ok(out)
    }
}

/// Sends pages of rows until the last page (`page(after)` gives a page and its next cursor)
/// or until the reader is gone; the rows sent.
fn pump<T: Serialize>(
    enc: &mut Encoder,
    send: &mut dyn FnMut(Vec<u8>) -> bool,
    header: &[&str],
    mut page: impl FnMut(Option<String>) -> Result<(Vec<T>, Option<String>), ApiError>,
    cells: impl Fn(&T) -> Vec<String>,
) -> Result<u64, ApiError> {
    let (mut rows, mut after) = (0u64, None);
    loop {
        let (items, next) = page(after.take())?;
        let chunk: Vec<(&T, Vec<String>)> = items.iter().map(|x| (x, cells(x))).collect();
        rows += chunk.len() as u64;
        if !send(enc.rows(header, &chunk)?) {
            return Ok(rows);
        }
        match next {
            Some(n) => after = Some(n),
            None => return Ok(rows),
        }
    }
}

/// Runs `job`, handing each chunk to `send`; stops when `send` says the reader is gone
/// (returns false). Returns the rows written.
pub fn run(
    server: &Server,
    job: &Job,
    t: &Tr,
    send: &mut dyn FnMut(Vec<u8>) -> bool,
) -> Result<u64, ApiError> {
    let mut enc = Encoder {
        format: job.format,
        header_written: false,
    };
    if job.format == Format::Csv && !send("\u{feff}".as_bytes().to_vec()) {
        return Ok(0);
    }
    let when = |ms: i64| baomi_core::time::Timestamp(ms).to_rfc3339();
    match job.what {
        What::Violations => pump(
            &mut enc,
            send,
            &[
                "device_id",
                "seq",
                "holder",
                "received_at",
                "happened_at",
                "event_type",
                "rules",
                "severity",
                "verdict",
                "reason",
                "event",
            ],
            |after| {
                let mut f = job.violations.clone();
                f.limit = Some(PAGE);
                f.after = after;
                let p = listing::violations(server, &f)?;
                Ok((p.items, p.next))
            },
            |v| {
                vec![
                    v.device_id.clone(),
                    v.seq.to_string(),
                    v.holder.clone().unwrap_or_default(),
                    when(v.received_at),
                    v.at.clone(),
                    v.event_type.clone(),
                    v.rules.join(";"),
                    v.severity.clone(),
                    v.verdict.clone(),
                    v.reason.clone(),
                    v.event.clone(),
                ]
            },
        ),
        What::Devices => pump(
            &mut enc,
            send,
            &[
                "device_id",
                "holder",
                "state",
                "state_name",
                "platform",
                "policy",
                "last_check_in",
                "fail_closed",
                "retired_at",
            ],
            |after| {
                let mut f = job.devices.clone();
                f.limit = Some(PAGE);
                f.after = after;
                let p = listing::fleet_page(server, &f)?;
                Ok((p.items, p.next))
            },
            |d| {
                vec![
                    d.device_id.clone(),
                    d.holder_name().unwrap_or_default().to_owned(),
                    d.state.as_str().to_owned(),
                    t.named("state", d.state.as_str()),
                    d.platform.clone(),
                    d.policy.clone().unwrap_or_default(),
                    d.last_check_in.map(when).unwrap_or_default(),
                    d.fail_closed.clone().unwrap_or_default(),
                    d.retired_at.map(when).unwrap_or_default(),
                ]
            },
        ),
        What::Custody => pump(
            &mut enc,
            send,
            &[
                "holder",
                "document",
                "classification",
                "signed_out_at",
                "returned_at",
                "camera_off",
                "violations_while_out",
            ],
            |after| {
                let mut f = job.custody.clone();
                f.limit = Some(100);
                f.after = after;
                let p = listing::custody_history(server, &f)?;
                Ok((p.items, p.next))
            },
            |s| {
                let confirmations: Vec<String> = s
                    .devices
                    .iter()
                    .map(|d| match d.took_ms(s) {
                        Some(ms) => format!("{}:{}s", d.device_id, ms / 1000),
                        None => format!("{}:unconfirmed", d.device_id),
                    })
                    .collect();
                vec![
                    s.holder.clone(),
                    s.document.clone(),
                    s.classification.clone(),
                    when(s.signed_out_at),
                    s.returned_at.map(when).unwrap_or_default(),
                    confirmations.join(";"),
                    s.violations.to_string(),
                ]
            },
        ),
        What::Audit => pump(
            &mut enc,
            send,
            &["seq", "at", "officer", "action", "detail"],
            |after| {
                let before = after.and_then(|a| a.parse().ok());
                let p = server.audit_page(PAGE, before)?;
                let next = p
                    .last()
                    .filter(|_| p.len() as i64 >= PAGE)
                    .map(|a| a.seq.to_string());
                Ok((p, next))
            },
            |a| {
                vec![
                    a.seq.to_string(),
                    when(a.at),
                    a.officer.clone(),
                    a.action.clone(),
                    a.detail.clone(),
                ]
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A holder's text that a spreadsheet would run is written as text.
    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(
            cell("=HYPERLINK(\"http://x\")"),
            "'=HYPERLINK(\"http://x\")"
        );
        assert_eq!(cell("+1"), "'+1");
        assert_eq!(cell("-1"), "'-1");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("微信"), "微信");
        assert_eq!(
            Job::parse("violations.csv"),
            Some((What::Violations, Format::Csv))
        );
        assert_eq!(
            Job::parse("audit.jsonl"),
            Some((What::Audit, Format::Jsonl))
        );
        assert_eq!(Job::parse("../etc.csv"), None);
    }
}
