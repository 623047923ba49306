//! The console's pages, rendered on the server with maud (every interpolation is escaped: a
//! holder can put any string into an event field). No JavaScript at all: filters are GET
//! forms, charts are SVG drawn here, the Content-Security-Policy forbids scripts outright.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::officers::{AuditEntry, Officer, Role};
use super::views::{
    CustodyRow, DevicePage, FleetRow, Impact, LedgerStatus, RuleHits, ViolationFilter, ViolationRow,
};
use baomi_core::time::Timestamp;

/// The stylesheet (served at `/console/style.css`; inline styles are forbidden by the CSP).
pub const CSS: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1b1f23;background:#f6f8fa}
header{background:#7a1f1f;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}
header a{color:#fff;text-decoration:none}header .who{margin-left:auto}
header form{display:inline}main{padding:16px}
table{border-collapse:collapse;background:#fff;width:100%;margin:8px 0 24px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eaeef2}tr.stale td{background:#fff8c5}tr.alert td{background:#ffebe9}
.bad{color:#a40e26;font-weight:600}.ok{color:#116329}.muted{color:#57606a}
code,pre{font:12px ui-monospace,monospace;white-space:pre-wrap;word-break:break-all}
form.filters{display:flex;gap:8px;flex-wrap:wrap;align-items:end;margin-bottom:8px}
label{display:flex;flex-direction:column;font-size:12px}
textarea{width:100%;height:200px;font:12px ui-monospace,monospace}
.card{background:#fff;border:1px solid #d0d7de;padding:12px;margin-bottom:16px}
.error{background:#ffebe9;border:1px solid #ff8182;padding:8px;margin-bottom:12px}
svg text{font:11px system-ui,sans-serif}
";

fn when(ms: i64) -> String {
    Timestamp(ms).to_rfc3339()
}

fn page(title: &str, who: Option<&Officer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · Baomi console" }
                link rel="stylesheet" href="/console/style.css";
            }
            body {
                header {
                    strong { "Baomi" }
                    @if let Some(o) = who {
                        a href="/console/" { "Fleet" }
                        a href="/console/violations" { "Violations" }
                        a href="/console/custody" { "Custody" }
                        a href="/console/impact" { "Policy impact" }
                        @if o.role == Role::Admin { a href="/console/tokens" { "Enrolment" } }
                        a href="/console/audit" { "Audit log" }
                        span.who {
                            (o.name) " (" (format!("{:?}", o.role).to_lowercase()) ") "
                            form method="post" action="/console/logout" {
                                input type="hidden" name="csrf" value=(o.csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// The login form (a double-submit token stands in for the session's CSRF token).
pub fn login(login_csrf: &str, error: Option<&str>) -> Markup {
    page(
        "Log in",
        None,
        html! {
            @if let Some(e) = error { div.error { (e) } }
            form method="post" action="/console/login" {
                input type="hidden" name="csrf" value=(login_csrf);
                label { "Name" input name="name" autocomplete="username" required; }
                label { "Password" input name="password" type="password" autocomplete="current-password" required; }
                button type="submit" { "Log in" }
            }
        },
    )
}

fn posture_text(p: &Option<serde_json::Value>) -> String {
    let Some(p) = p else { return "—".into() };
    let mut parts = Vec::new();
    if p["camera_disabled"] == true {
        parts.push("camera off".to_owned())
    }
    if p["screen_capture_disabled"] == true {
        parts.push("capture off".to_owned())
    }
    let n = p["blocked_packages"].as_array().map_or(0, Vec::len);
    if n > 0 {
        parts.push(format!("{n} apps blocked"))
    }
    if parts.is_empty() {
        "open".into()
    } else {
        parts.join(", ")
    }
}

/// The fleet.
pub fn fleet(o: &Officer, rows: &[FleetRow], ledger: &LedgerStatus) -> Markup {
    page(
        "Fleet",
        Some(o),
        html! {
            (ledger_card(ledger))
            p.muted { (rows.len()) " devices. Yellow: no check-in for two hours. Red: an alert." }
            table #fleet {
                tr { th { "Device" } th { "Holder" } th { "Clearance" } th { "Policy (installed / published)" } th { "Last check-in" }
                     th { "Desired posture" } th { "Applied" } th { "Enforcement" } th { "Alerts" } th { "Evidence chain" } }
                @for r in rows {
                    @let d = &r.device;
                    tr class=(if d.alert.is_some() || d.fail_closed.is_some() || r.tamper > 0 { "alert" } else if r.stale { "stale" } else { "" }) {
                        td { a href=(format!("/console/device/{}", d.device_id)) { (d.device_id) } }
                        td { (d.holder.clone().or(d.enrolled_for.clone()).unwrap_or_else(|| "unassigned".into())) }
                        td { (r.clearance.clone().unwrap_or_else(|| "—".into())) }
                        td { (d.policy.clone().unwrap_or_else(|| "none".into())) " / " (r.published_version.map_or("—".into(), |v| format!("v{v}"))) }
                        td { (d.last_check_in.map_or("never".into(), when)) }
                        td { (posture_text(&d.posture)) }
                        td {
                            @match d.compliant {
                                Some(true) => span.ok { "compliant" },
                                Some(false) => span.bad { "not applied" },
                                None => span.muted { "no report" },
                            }
                        }
                        td { (r.enforcement_path) }
                        td {
                            @if let Some(a) = &d.alert { div.bad { (a) } }
                            @if let Some(f) = &d.fail_closed { div.bad { "fail-closed: " (f) } }
                            @if d.clock_skew_ms.is_some_and(|s| s.abs() > 300_000) { div { "clock off by " (d.clock_skew_ms.unwrap_or(0) / 1000) " s" } }
                        @if r.tamper > 0 { div.bad { "tamper ×" (r.tamper) } }
                        @if r.clock > 0 { div.bad { "clock ×" (r.clock) } }
                        }
                        td.ledger {
                            @let chain = ledger.report.as_ref().and_then(|x| x.devices.get(&d.device_id));
                            @match chain {
                                Some(c) if c.complete => span.ok { "complete through seq " (c.checkpoint) },
                                Some(_) => {
                                    @for f in ledger.findings_for(&d.device_id) { div.bad { (f) } }
                                    @if ledger.findings_for(&d.device_id).is_empty() { span.bad { "not complete" } }
                                },
                                None => span.muted { "not audited" },
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The evidence ledger's status: the newest auditor's verdict, highlighted when absent or bad.
fn ledger_card(l: &LedgerStatus) -> Markup {
    html! {
        div.card #ledger {
            @match (&l.witness, &l.report) {
                (Some((w, size, at)), Some(r)) if r.clean() => p.ok {
                    "Evidence ledger verified by " (w) " to checkpoint " (size) " at " (when(*at)) ": every phone's chain complete."
                },
                (Some((w, size, at)), Some(r)) => {
                    p.bad { "Evidence ledger: " (r.findings.len()) " finding(s) by " (w) " at checkpoint " (size) ", " (when(*at)) }
                    ul { @for f in &r.findings { li.bad { (f.to_string()) } } }
                },
                _ => p.bad { "The evidence ledger has not been verified by an auditor: run baomi audit --witness." },
            }
        }
    }
}

fn violation_table(rows: &[ViolationRow]) -> Markup {
    html! {
        table #violations {
            tr { th { "Received" } th { "Device" } th { "Holder" } th { "Event" } th { "Rules" } th { "Severity" } th { "Reason" } th { "Evidence" } }
            @for v in rows {
                tr {
                    td { (when(v.received_at)) }
                    td { a href=(format!("/console/device/{}", v.device_id)) { (v.device_id) } }
                    td { (v.holder.clone().unwrap_or_default()) }
                    td { strong { (v.event_type) } br; code { (v.event) } }
                    td { (v.rules.join(", ")) }
                    td { (v.severity) }
                    td { (v.reason) }
                    td { a.evidence href=(format!("/console/evidence?device={}&seq={}", v.device_id, v.seq)) { "export" } }
                }
            }
        }
    }
}

fn hits_chart(h: &RuleHits) -> Markup {
    let max = h
        .rules
        .values()
        .flatten()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let (label_w, bar_w, row_h) = (260, 14, 22);
    let width = label_w + h.days.len() * (bar_w + 2) + 120;
    let height = h.rules.len() * row_h + 20;
    html! {
        svg #rule-hits xmlns="http://www.w3.org/2000/svg" width=(width) height=(height) role="img" aria-label="Hits per rule per day" {
            @for (i, (rule, counts)) in h.rules.iter().enumerate() {
                @let y = 16 + i * row_h;
                @let total: u32 = counts.iter().sum();
                text x="0" y=(y + 12) { (rule) }
                @for (j, c) in counts.iter().enumerate() {
                    @let bh = (*c as usize * (row_h - 6)).div_ceil(max as usize);
                    rect x=(label_w + j * (bar_w + 2)) y=(y + row_h - 6 - bh) width=(bar_w) height=(bh.max(1))
                        fill=(if *c > 0 { "#7a1f1f" } else { "#d0d7de" }) {}
                }
                text x=(label_w + h.days.len() * (bar_w + 2) + 6) y=(y + 12) fill=(if total == 0 { "#57606a" } else { "#1b1f23" }) {
                    (if total == 0 { "never fired".to_owned() } else { total.to_string() })
                }
            }
        }
    }
}

/// The violations timeline with its filters and the per-rule chart.
pub fn violations(
    o: &Officer,
    f: &ViolationFilter,
    rows: &[ViolationRow],
    hits: &RuleHits,
) -> Markup {
    let v = |x: &Option<String>| x.clone().unwrap_or_default();
    page(
        "Violations",
        Some(o),
        html! {
            form.filters #filters method="get" action="/console/violations" {
                label { "Device" input name="device" value=(v(&f.device)); }
                label { "Holder" input name="holder" value=(v(&f.holder)); }
                label { "Rule" input name="rule" value=(v(&f.rule)); }
                label { "Severity" input name="severity" value=(v(&f.severity)); }
                label { "From (RFC 3339)" input name="from" value=(f.from.map(when).unwrap_or_default()); }
                label { "To (RFC 3339)" input name="to" value=(f.to.map(when).unwrap_or_default()); }
                button type="submit" { "Filter" }
            }
            div.card { h2 { "Hits per rule, last 14 days" } (hits_chart(hits)) }
            p.muted { (rows.len()) " violations" }
            (violation_table(rows))
        },
    )
}

/// Custody now, and how fast phones confirmed the camera off.
pub fn custody(o: &Officer, rows: &[CustodyRow]) -> Markup {
    let buckets: [(&str, i64); 6] = [
        ("< 10 s", 10_000),
        ("< 1 min", 60_000),
        ("< 5 min", 300_000),
        ("< 15 min", 900_000),
        ("< 1 h", 3_600_000),
        ("≥ 1 h", i64::MAX),
    ];
    let mut counts = [0usize; 7];
    for r in rows {
        for d in &r.devices {
            match d.confirmed_at {
                Some(t) => {
                    counts[buckets
                        .iter()
                        .position(|(_, lim)| t - r.received_at < *lim)
                        .unwrap_or(5)] += 1
                }
                None => counts[6] += 1,
            }
        }
    }
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    html! {
        (page("Custody", Some(o), html! {
            table #custody {
                tr { th { "Document" } th { "Level" } th { "Holder" } th { "Signed out" } th { "Device" } th { "Camera off confirmed" } }
                @for r in rows {
                    @if r.devices.is_empty() {
                        tr { td { (r.document) } td { (r.classification) } td { (r.holder) } td { (r.signed_out_at) } td.bad { "no device assigned" } td { "—" } }
                    }
                    @for d in &r.devices {
                        tr {
                            td { (r.document) } td { (r.classification) } td { (r.holder) } td { (r.signed_out_at) }
                            td { a href=(format!("/console/device/{}", d.device_id)) { (d.device_id) } }
                            td {
                                @match d.confirmed_at {
                                    Some(t) => span.ok { "yes, after " ((t - r.received_at).max(0) / 1000) " s" },
                                    None => span.bad { "not yet" },
                                }
                            }
                        }
                    }
                }
            }
            div.card {
                h2 { "Time from sign-out to confirmed camera off" }
                svg #confirm-times xmlns="http://www.w3.org/2000/svg" width="520" height="180" role="img" aria-label="Distribution of confirmation times" {
                    @for (i, c) in counts.iter().enumerate() {
                        @let h = c * 120 / max;
                        rect x=(20 + i * 70) y=(140 - h) width="50" height=(h.max(1)) fill=(if i == 6 { "#a40e26" } else { "#7a1f1f" }) {}
                        text x=(20 + i * 70) y="158" { (buckets.get(i).map_or("pending", |b| b.0)) }
                        text x=(35 + i * 70) y=(134 - h) { (c) }
                    }
                }
            }
        }))
    }
}

/// One device.
pub fn device(o: &Officer, p: &DevicePage) -> Markup {
    let d = &p.row.device;
    page(
        &format!("Device {}", d.device_id),
        Some(o),
        html! {
            div.card {
                p { "Holder: " (d.holder.clone().unwrap_or_else(|| "unassigned".into())) " · platform " (d.platform) " · policy " (d.policy.clone().unwrap_or_default())
                    " · enforcement " (p.row.enforcement_path) }
                @if let Some(a) = &d.alert { p.bad { (a) } }
                @if let Some(applied) = &d.applied {
                    h3 { "Applied, setting by setting" }
                    table #applied { tr { th { "Setting" } th { "Desired" } th { "State" } th { "Detail" } }
                        @for s in applied { tr { td { (s.setting) } td { (s.desired) } td { (format!("{:?}", s.state)) } td { (s.detail.clone().unwrap_or_default()) } } } }
                }
            }
            h2 { "Check-ins" }
            table #checkins { tr { th { "When" } th { "Posture" } th { "Fail-closed" } }
                @for (at, posture, fc) in p.check_ins.iter().take(50) { tr { td { (when(*at)) } td { code { (posture) } } td { (fc.clone().unwrap_or_default()) } } } }
            h2 { "Posture changes" }
            table #posture-changes { tr { th { "When" } th { "From" } th { "To" } }
                @for (at, from, to) in &p.posture_changes { tr { td { (when(*at)) } td { code { (from) } } td { code { (to) } } } } }
            h2 { "MDM commands" }
            table #mdm { tr { th { "Created" } th { "Command" } th { "Reason" } th { "Status" } th { "Queued" } th { "Answered" } th { "Last error" } }
                @for c in &p.mdm_commands { tr { td { (when(c.created_at)) } td { (c.kind) } td { (c.reason) } td { (c.status) }
                    td { (c.queued_at.map(when).unwrap_or_default()) } td { (c.answered_at.map(when).unwrap_or_default()) } td { (c.last_error.clone().unwrap_or_default()) } } } }
            h2 { "Violations" }
            (violation_table(&p.violations))
        },
    )
}

/// The impact form, and the preview when there is one.
pub fn impact(o: &Officer, bundle: &str, result: Option<Result<&Impact, &str>>) -> Markup {
    page(
        "Policy impact before publishing",
        Some(o),
        html! {
            p.muted { "Paste a bundle signed offline with " code { "baomi bundle sign" } ", or an unsigned draft policy to preview. Computed by the core engine from what the server knows of each device (assignment, registry custody, platform); zones are the phone's." }
            form method="post" action="/console/impact" {
                input type="hidden" name="csrf" value=(o.csrf);
                textarea #bundle name="bundle" { (bundle) }
                button #preview type="submit" { "Preview impact" }
            }
            @match result {
                Some(Err(e)) => div.error { (e) },
                Some(Ok(i)) => {
                    div.card #impact {
                        p { strong { (i.candidate) } ": " (i.changes.len()) " of " (i.devices) " devices would change." }
                        table #impact-table { tr { th { "Device" } th { "Holder" } th { "Camera" } th { "Capture" } th { "Newly blocked" } th { "Newly unblocked" } }
                            @for c in &i.changes {
                                tr { td { (c.device_id) } td { (c.holder.clone().unwrap_or_default()) }
                                    td { (match c.camera_disabled { Some(true) => "turns off", Some(false) => "turns on", None => "—" }) }
                                    td { (match c.screen_capture_disabled { Some(true) => "turns off", Some(false) => "turns on", None => "—" }) }
                                    td { (c.newly_blocked.join(", ")) } td { (c.newly_unblocked.join(", ")) } }
                            }
                        }
                        @if i.publishable && o.role == Role::Admin {
                            form method="post" action="/console/publish" {
                                input type="hidden" name="csrf" value=(o.csrf);
                                input type="hidden" name="bundle" value=(bundle);
                                button #publish type="submit" { "Publish" }
                            }
                        }
                    }
                },
                None => {},
            }
        },
    )
}

/// Enrolment tokens (admin).
pub fn tokens(o: &Officer, minted: Option<(&str, Option<&str>)>) -> Markup {
    page(
        "Enrolment",
        Some(o),
        html! {
            @if let Some((t, holder)) = minted {
                div.card #minted { "One-time token" @if let Some(h) = holder { " for " (h) } ": " code { (t) } }
            }
            form method="post" action="/console/tokens" {
                input type="hidden" name="csrf" value=(o.csrf);
                label { "Holder (personnel id)" input name="holder"; }
                button type="submit" { "Issue enrolment token" }
            }
        },
    )
}

/// The audit log.
pub fn audit(o: &Officer, rows: &[AuditEntry]) -> Markup {
    page(
        "Audit log",
        Some(o),
        html! {
            table #audit { tr { th { "#" } th { "When" } th { "Officer" } th { "Action" } th { "Detail" } }
                @for a in rows { tr { td { (a.seq) } td { (when(a.at)) } td { (a.officer) } td { (a.action) } td { (a.detail) } } } }
            @if let (Some(last), true) = (rows.last(), rows.len() >= 200) {
                p { a #older href=(format!("/console/audit?before={}", last.seq)) { "Older entries" } }
            }
        },
    )
}

/// A plain message page (errors, refusals).
pub fn message(o: Option<&Officer>, title: &str, text: &str) -> Markup {
    page(
        title,
        o,
        html! { div.error { (text) } p { a href="/console/" { "Back" } } (PreEscaped("")) },
    )
}
