//! The console's pages, rendered on the server with maud (every interpolation is escaped: a
//! holder can put any string into an event field). No JavaScript at all: filters are GET
//! forms, charts are SVG drawn here, the Content-Security-Policy forbids scripts outright.
//! Every word comes from the Fluent messages (`i18n`), in the officer's language.

use fluent_bundle::FluentValue;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::i18n::Tr;
use super::listing::{
    CustodyFilter, CustodySpan, FleetFilter, FleetSort, Page, RuleHits, Summary, TimeField,
    ViolationFilter, ViolationRow,
};
use super::officers::{AuditEntry, Officer, Role};
use super::views::{DevicePage, FleetRow, Impact, LedgerStatus};
use crate::alerts::{Alert, Kind};
use crate::fleet::PhoneState;

/// The stylesheet (served at `/console/style.css`; inline styles are forbidden by the CSP).
pub const CSS: &str = "
body{font:14px/1.5 system-ui,\"PingFang SC\",\"Noto Sans CJK SC\",\"Microsoft YaHei\",sans-serif;margin:0;color:#1b1f23;background:#f6f8fa}
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
nav.pages{margin:8px 0}nav.pages a{margin-right:16px}
.summary td.n{text-align:right}.summary a{text-decoration:none}
.desc{color:#57606a;font-size:12px}
form.inline{display:inline-flex;gap:4px}
";

fn n(v: i64) -> FluentValue<'static> {
    FluentValue::from(v)
}

fn s(v: &str) -> FluentValue<'static> {
    FluentValue::from(v.to_owned())
}

/// `path?k=v&...` with the values escaped, empty ones left out.
fn link(path: &str, params: &[(&str, String)]) -> String {
    let q: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| {
            format!(
                "{k}={}",
                form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            )
        })
        .collect();
    if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", q.join("&"))
    }
}

fn page(t: &Tr, title: &str, who: Option<&Officer>, here: &str, body: Markup) -> Markup {
    let nav = [
        ("/console/", "nav-summary"),
        ("/console/fleet", "nav-fleet"),
        ("/console/violations", "nav-violations"),
        ("/console/alerts", "nav-alerts"),
        ("/console/custody", "nav-custody"),
        ("/console/impact", "nav-impact"),
    ];
    html! {
        (DOCTYPE)
        html lang=(t.lang.tag()) {
            head {
                meta charset="utf-8";
                title { (title) " · " (t.t("console-name")) }
                link rel="stylesheet" href="/console/style.css";
            }
            body {
                header {
                    strong { (t.t("console-name")) }
                    @if let Some(o) = who {
                        @for (href, id) in nav {
                            a href=(href) aria-current=[(href == here).then_some("page")] { (t.t(id)) }
                        }
                        @if o.role == Role::Admin { a href="/console/tokens" { (t.t("nav-enrolment")) } }
                        a href="/console/audit" { (t.t("nav-audit")) }
                    }
                    span.who {
                        a #lang href=(link("/console/lang", &[("to", t.lang.other().tag().to_owned()), ("back", here.to_owned())])) lang=(t.lang.other().tag()) { (t.t("switch-language")) }
                        @if let Some(o) = who {
                            " · " (o.name) " (" (t.t(if o.role == Role::Admin { "role-admin" } else { "role-auditor" })) ") "
                            form method="post" action="/console/logout" {
                                input type="hidden" name="csrf" value=(o.csrf);
                                button type="submit" { (t.t("log-out")) }
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
pub fn login(t: &Tr, login_csrf: &str, error: Option<&str>) -> Markup {
    page(
        t,
        &t.t("login-title"),
        None,
        "/console/login",
        html! {
            @if let Some(e) = error { div.error { (e) } }
            form method="post" action="/console/login" {
                input type="hidden" name="csrf" value=(login_csrf);
                label { (t.t("login-name")) input name="name" autocomplete="username" required; }
                label { (t.t("login-password")) input name="password" type="password" autocomplete="current-password" required; }
                button type="submit" { (t.t("login-submit")) }
            }
        },
    )
}

fn posture_text(t: &Tr, p: &Option<serde_json::Value>) -> String {
    let Some(p) = p else { return "—".into() };
    let mut parts = Vec::new();
    if p["camera_disabled"] == true {
        parts.push(t.t("posture-camera-off"))
    }
    if p["screen_capture_disabled"] == true {
        parts.push(t.t("posture-capture-off"))
    }
    let count = p["blocked_packages"].as_array().map_or(0, Vec::len);
    if count > 0 {
        parts.push(t.t_with("posture-apps-blocked", &[("n", n(count as i64))]))
    }
    if parts.is_empty() {
        t.t("posture-open")
    } else {
        parts.join(", ")
    }
}

fn state_badge(t: &Tr, st: PhoneState) -> Markup {
    let class = match st {
        PhoneState::Compliant => "ok",
        PhoneState::NoReport | PhoneState::Retired => "muted",
        _ => "bad",
    };
    html! { span class=(class) data-state=(st.as_str()) { (t.named("state", st.as_str())) } }
}

fn holder_text(t: &Tr, d: &crate::admin::DeviceRow) -> String {
    match (&d.holder, &d.enrolled_for) {
        (Some(h), _) => h.clone(),
        (None, Some(e)) => t.t_with("holder-from-token", &[("holder", s(e))]),
        (None, None) => t.t("unassigned"),
    }
}

fn pager(t: &Tr, path: &str, params: &[(&str, String)], next: &Option<String>) -> Markup {
    let without_after: Vec<(&str, String)> = params
        .iter()
        .filter(|(k, _)| *k != "after")
        .cloned()
        .collect();
    let next_link = next.as_ref().map(|c| {
        let mut p = without_after.clone();
        p.push(("after", c.clone()));
        link(path, &p)
    });
    html! {
        nav.pages {
            @if params.iter().any(|(k, v)| *k == "after" && !v.is_empty()) {
                a #first-page href=(link(path, &without_after)) { (t.t("first-page")) }
            }
            @if let Some(href) = next_link {
                a #next-page href=(href) { (t.t("next-page")) }
            }
        }
    }
}

/// The summary: phones by state with the top reasons, each a link to the filtered list.
pub fn summary(t: &Tr, o: &Officer, sm: &Summary, ledger: &LedgerStatus) -> Markup {
    let reasons = |title: &str, rs: &[super::listing::Reason], what: &dyn Fn(&str) -> String| {
        html! {
            div.card {
                h2 { (t.t(title)) }
                @if rs.is_empty() { p.muted { (t.t("summary-none")) } }
                ul { @for r in rs { li { a href=(r.link) { (what(&r.what)) } " · " (r.count) } } }
            }
        }
    };
    page(
        t,
        &t.t("summary-title"),
        Some(o),
        "/console/",
        html! {
            (ledger_card(t, ledger))
            p { (t.t_with("summary-phones", &[("n", n(sm.phones))])) " · "
                @match sm.published { Some(v) => (t.t_with("summary-published", &[("v", n(v))])), None => (t.t("summary-none-published")) }
                @if let (Some(v), Some(suite)) = (sm.trust_root_version, sm.suite) {
                    " · " span #suite data-suite=(suite.as_str()) { (t.t_with("summary-trust-root", &[("v", n(i64::try_from(v).unwrap_or(i64::MAX))), ("suite", s(&t.t(&format!("suite-{}", suite.as_str()))))])) }
                } }
            table.summary #states {
                tr { th { (t.t("summary-state")) } th { (t.t("summary-count")) } }
                @for (st, count) in &sm.states {
                    tr { td { a href=(link("/console/fleet", &[("state", st.as_str().to_owned())])) { (state_badge(t, *st)) } } td.n data-state=(st.as_str()) { (count) } }
                }
            }
            (reasons("summary-alerts", &sm.alerts, &|k| t.named("kind", k)))
            (reasons("summary-fail-closed", &sm.fail_closed, &|r| r.to_owned()))
            (reasons("summary-outdated", &sm.outdated, &|v| t.t_with("summary-outdated-version", &[("v", s(v))])))
            (reasons("summary-rules", &sm.rules, &|r| match t.rule_description(r) { Some(d) => format!("{r} — {d}"), None => r.to_owned() }))
        },
    )
}

/// The fleet: one page, filtered and sorted in SQL.
pub fn fleet(
    t: &Tr,
    o: &Officer,
    f: &FleetFilter,
    p: &Page<FleetRow>,
    ledger: &LedgerStatus,
) -> Markup {
    let params = vec![
        ("q", f.q.clone().unwrap_or_default()),
        (
            "state",
            f.state.map(|x| x.as_str().to_owned()).unwrap_or_default(),
        ),
        (
            "sort",
            if f.sort == FleetSort::Device {
                String::new()
            } else {
                f.sort.as_str().to_owned()
            },
        ),
        ("after", f.after.clone().unwrap_or_default()),
    ];
    page(
        t,
        &t.t("fleet-title"),
        Some(o),
        "/console/fleet",
        html! {
            (ledger_card(t, ledger))
            form.filters #filters method="get" action="/console/fleet" {
                label { (t.t("fleet-search")) input name="q" value=(f.q.clone().unwrap_or_default()); }
                label { (t.t("fleet-state"))
                    select name="state" {
                        option value="" { (t.t("any")) }
                        @for st in PhoneState::ALL { option value=(st.as_str()) selected[f.state == Some(st)] { (t.named("state", st.as_str())) } }
                    }
                }
                label { (t.t("fleet-sort"))
                    select name="sort" {
                        @for (v, id) in [(FleetSort::Device, "sort-device"), (FleetSort::Holder, "sort-holder"), (FleetSort::CheckIn, "sort-check-in")] {
                            option value=(v.as_str()) selected[f.sort == v] { (t.t(id)) }
                        }
                    }
                }
                button #filter type="submit" { (t.t("filter-submit")) }
            }
            p.muted #count { (t.t_with("fleet-count", &[("n", n(p.total))])) }
            table #fleet {
                tr { th { (t.t("col-device")) } th { (t.t("col-holder")) } th { (t.t("col-clearance")) } th { (t.t("col-policy")) } th { (t.t("col-last-check-in")) }
                     th { (t.t("col-posture")) } th { (t.t("col-state")) } th { (t.t("col-enforcement")) } th { (t.t("col-chain")) } }
                @for r in &p.items {
                    @let d = &r.device;
                    @let class = match d.state { PhoneState::Alert | PhoneState::FailClosed | PhoneState::NotApplied => "alert", PhoneState::Stale => "stale", _ => "" };
                    tr class=(class) data-device=(d.device_id) {
                        td { a href=(format!("/console/device/{}", d.device_id)) { (d.device_id) } }
                        td.holder { (holder_text(t, d)) }
                        td { (r.clearance.as_deref().map_or("—".into(), |c| t.level(c))) }
                        td { (d.policy.clone().unwrap_or_else(|| t.t("none"))) " / " (r.published_version.map_or("—".into(), |v| format!("v{v}"))) }
                        td { (d.last_check_in.map_or(t.t("never"), |x| t.when(x))) }
                        td { (posture_text(t, &d.posture)) }
                        td.state {
                            (state_badge(t, d.state))
                            @if let Some(f) = &d.fail_closed { div.bad { (f) } }
                            @if d.clock_skew_ms.is_some_and(|x| x.abs() > 300_000) { div { (t.t_with("clock-off", &[("s", n(d.clock_skew_ms.unwrap_or(0) / 1000))])) } }
                        }
                        td { (match r.enforcement_path.as_str() { "unknown" => t.t("enforcement-unknown"), "degraded" => t.t("enforcement-degraded"), e => e.to_owned() }) }
                        td.ledger {
                            @let chain = ledger.report.as_ref().and_then(|x| x.devices.get(&d.device_id));
                            @match chain {
                                Some(c) if c.complete => span.ok { (t.t_with("chain-complete", &[("seq", n(c.checkpoint as i64))])) },
                                Some(_) => {
                                    @for f in ledger.findings_for(&d.device_id) { div.bad { (f) } }
                                    @if ledger.findings_for(&d.device_id).is_empty() { span.bad { (t.t("chain-incomplete")) } }
                                },
                                None => span.muted { (t.t("chain-not-audited")) },
                            }
                        }
                    }
                }
            }
            (pager(t, "/console/fleet", &params, &p.next))
        },
    )
}

/// The evidence ledger's status: the newest auditor's verdict, highlighted when absent or bad.
fn ledger_card(t: &Tr, l: &LedgerStatus) -> Markup {
    html! {
        div.card #ledger {
            @match (&l.witness, &l.report) {
                (Some((w, size, at)), Some(r)) if r.clean() => p.ok {
                    (t.t_with("ledger-verified", &[("witness", s(w)), ("size", n(*size as i64)), ("at", s(&t.when(*at)))]))
                },
                (Some((w, size, at)), Some(r)) => {
                    p.bad { (t.t_with("ledger-findings", &[("n", n(r.findings.len() as i64)), ("witness", s(w)), ("size", n(*size as i64)), ("at", s(&t.when(*at)))])) }
                    ul { @for f in &r.findings { li.bad { (f.to_string()) } } }
                },
                _ => p.bad { (t.t("ledger-unverified")) },
            }
        }
    }
}

fn rule_cell(t: &Tr, rules: &[String]) -> Markup {
    html! {
        @for r in rules {
            div { a href=(link("/console/violations", &[("rule", r.clone())])) { (r) }
                @if let Some(d) = t.rule_description(r) { div.desc { (d) } } }
        }
    }
}

fn event_text(t: &Tr, v: &ViolationRow) -> String {
    // Apps by the names the policy gives them.
    let e: serde_json::Value = serde_json::from_str(&v.event).unwrap_or_default();
    match e["package"].as_str().or(e["bundle_id"].as_str()) {
        Some(pkg) => t.app(pkg),
        None => String::new(),
    }
}

fn violation_table(t: &Tr, rows: &[ViolationRow]) -> Markup {
    html! {
        table #violations {
            tr { th { (t.t("col-received")) } th { (t.t("col-happened")) } th { (t.t("col-device")) } th { (t.t("col-holder")) } th { (t.t("col-event")) } th { (t.t("col-rules")) } th { (t.t("col-severity")) } th { (t.t("col-reason")) } th { (t.t("col-evidence")) } }
            @for v in rows {
                tr data-seq=(v.seq) {
                    td { (t.when(v.received_at)) }
                    td { (t.when(v.at_ms)) }
                    td { a href=(format!("/console/device/{}", v.device_id)) { (v.device_id) } }
                    td { (v.holder.clone().unwrap_or_default()) }
                    td { strong { (v.event_type) } " " (event_text(t, v)) br; code { (v.event) } }
                    td { (rule_cell(t, &v.rules)) }
                    td data-severity=(v.severity) { (t.named("severity", if v.severity.is_empty() { "none" } else { &v.severity })) }
                    td { (v.reason) }
                    td { a.evidence href=(format!("/console/evidence?device={}&seq={}", v.device_id, v.seq)) { (t.t("export-evidence")) } }
                }
            }
        }
    }
}

fn hits_chart(t: &Tr, h: &RuleHits) -> Markup {
    let max = h
        .rules
        .values()
        .flatten()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let (label_w, bar_w, row_h) = (300, 14, 22);
    let width = label_w + h.days.len() * (bar_w + 2) + 120;
    let height = h.rules.len() * row_h + 20;
    html! {
        svg #rule-hits xmlns="http://www.w3.org/2000/svg" width=(width) height=(height) role="img" aria-label=(t.t("hits-title")) {
            @for (i, (rule, counts)) in h.rules.iter().enumerate() {
                @let y = 16 + i * row_h;
                @let total: i64 = counts.iter().sum();
                text x="0" y=(y + 12) { title { (t.rule_description(rule).unwrap_or_default()) } (rule) }
                @for (j, c) in counts.iter().enumerate() {
                    @let bh = (*c as usize * (row_h - 6)).div_ceil(max as usize);
                    rect x=(label_w + j * (bar_w + 2)) y=(y + row_h - 6 - bh) width=(bar_w) height=(bh.max(1))
                        fill=(if *c > 0 { "#7a1f1f" } else { "#d0d7de" }) {
                        title { (h.days.get(j).map(|d| t.date(*d)).unwrap_or_default()) ": " (c) }
                    }
                }
                text.total x=(label_w + h.days.len() * (bar_w + 2) + 6) y=(y + 12) fill=(if total == 0 { "#57606a" } else { "#1b1f23" }) {
                    (if total == 0 { t.t("hits-never") } else { total.to_string() })
                }
            }
        }
    }
}

/// The query parameters that reproduce `f` (for paging links and exports).
pub fn violation_params(t: &Tr, f: &ViolationFilter) -> Vec<(&'static str, String)> {
    let v = |x: &Option<String>| x.clone().unwrap_or_default();
    vec![
        ("device", v(&f.device)),
        ("holder", v(&f.holder)),
        ("rule", v(&f.rule)),
        ("severity", v(&f.severity)),
        ("verdict", v(&f.verdict)),
        (
            "time",
            if f.time == TimeField::Event {
                "event".into()
            } else {
                String::new()
            },
        ),
        ("from", f.from.map(|x| t.date(x)).unwrap_or_default()),
        ("to", f.to.map(|x| t.date(x)).unwrap_or_default()),
        ("after", v(&f.after)),
    ]
}

/// The violations timeline with its filters and the per-rule chart.
pub fn violations(
    t: &Tr,
    o: &Officer,
    f: &ViolationFilter,
    p: &Page<ViolationRow>,
    hits: &RuleHits,
) -> Markup {
    let v = |x: &Option<String>| x.clone().unwrap_or_default();
    let params = violation_params(t, f);
    let export: Vec<(&str, String)> = params
        .iter()
        .filter(|(k, _)| *k != "after")
        .cloned()
        .collect();
    page(
        t,
        &t.t("violations-title"),
        Some(o),
        "/console/violations",
        html! {
            form.filters #filters method="get" action="/console/violations" {
                label { (t.t("f-device")) input name="device" value=(v(&f.device)); }
                label { (t.t("f-holder")) input name="holder" value=(v(&f.holder)); }
                label { (t.t("f-rule"))
                    select name="rule" {
                        option value="" { (t.t("any")) }
                        @for r in t.rule_ids() { option value=(r) selected[f.rule.as_deref() == Some(r.as_str())] { (r) } }
                        @for r in baomi_core::rules::ALL { option value=(r.0) selected[f.rule.as_deref() == Some(r.0)] { (r.0) } }
                    }
                }
                label { (t.t("f-severity"))
                    select name="severity" {
                        option value="" { (t.t("any")) }
                        @for x in ["critical", "high", "medium", "low", "none"] { option value=(x) selected[f.severity.as_deref() == Some(x)] { (t.named("severity", x)) } }
                    }
                }
                label { (t.t("f-verdict"))
                    select name="verdict" {
                        option value="" { (t.t("any")) }
                        @for x in ["deny", "warn", "allow"] { option value=(x) selected[f.verdict.as_deref() == Some(x)] { (t.named("verdict", x)) } }
                    }
                }
                label { (t.t("f-time"))
                    select name="time" {
                        option value="received" selected[f.time == TimeField::Received] { (t.t("time-received")) }
                        option value="event" selected[f.time == TimeField::Event] { (t.t("time-event")) }
                    }
                }
                label { (t.t("f-from")) input type="date" name="from" value=(f.from.map(|x| t.date(x)).unwrap_or_default()); }
                label { (t.t("f-to")) input type="date" name="to" value=(f.to.map(|x| t.date(x)).unwrap_or_default()); }
                button #filter type="submit" { (t.t("filter-submit")) }
            }
            div.card { h2 { (t.t("hits-title")) } (hits_chart(t, hits)) }
            p #count {
                (if p.total_exact { t.t_with("violations-count", &[("n", n(p.total))]) } else { t.t_with("violations-more-than", &[("n", n(p.total))]) })
                " · " a #export-csv href=(link("/v1/office/export/violations.csv", &export)) { (t.t("export-csv")) }
                " · " a #export-jsonl href=(link("/v1/office/export/violations.jsonl", &export)) { (t.t("export-jsonl")) }
            }
            (violation_table(t, &p.items))
            (pager(t, "/console/violations", &params, &p.next))
        },
    )
}

fn alert_table(t: &Tr, o: &Officer, rows: &[Alert], back: &str) -> Markup {
    html! {
        table #alerts {
            tr { th { "#" } th { (t.t("col-device")) } th { (t.t("col-kind")) } th { (t.t("col-detail")) } th { (t.t("col-opened")) } th { (t.t("col-occurrences")) } th { (t.t("col-state")) } th { (t.t("col-note")) } th {} }
            @for a in rows {
                tr data-alert=(a.id) data-state=(a.state) {
                    td { (a.id) }
                    td { a href=(format!("/console/device/{}", a.device_id)) { (a.device_id) } }
                    td { (t.named("kind", &a.kind)) }
                    td { (a.detail) }
                    td { (t.when(a.opened_at)) }
                    td { (a.occurrences) }
                    td.state { (t.named("alert-state", &a.state)) }
                    td { @if let Some(nt) = &a.note { (nt) " — " (a.updated_by.clone().unwrap_or_default()) ", " (t.when(a.updated_at)) } }
                    td {
                        @if a.state != "resolved" {
                            form.inline method="post" action=(format!("/console/alerts/{}", a.id)) {
                                input type="hidden" name="csrf" value=(o.csrf);
                                input type="hidden" name="back" value=(back);
                                input name="note" placeholder=(t.t("alert-note")) required;
                                @if a.state == "open" { button name="to" value="acknowledged" type="submit" { (t.t("alert-acknowledge")) } }
                                button name="to" value="resolved" type="submit" { (t.t("alert-resolve")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The alerts: unresolved by default, each acknowledged or resolved with a note.
pub fn alerts(
    t: &Tr,
    o: &Officer,
    state: &str,
    kind: Option<&str>,
    rows: &[Alert],
    next: Option<i64>,
) -> Markup {
    page(
        t,
        &t.t("alerts-title"),
        Some(o),
        "/console/alerts",
        html! {
            form.filters #filters method="get" action="/console/alerts" {
                label { (t.t("col-state"))
                    select name="state" {
                        @for (v, label) in [("", t.t("alerts-unresolved")), ("open", t.t("alert-state-open")), ("acknowledged", t.t("alert-state-acknowledged")), ("resolved", t.t("alert-state-resolved")), ("all", t.t("alerts-all"))] {
                            option value=(v) selected[state == v] { (label) }
                        }
                    }
                }
                label { (t.t("col-kind"))
                    select name="kind" {
                        option value="" { (t.t("any")) }
                        @for k in Kind::ALL { option value=(k.as_str()) selected[kind == Some(k.as_str())] { (t.named("kind", k.as_str())) } }
                    }
                }
                button #filter type="submit" { (t.t("filter-submit")) }
            }
            @if rows.is_empty() { p.muted #none { (t.t("alerts-none")) } }
            (alert_table(t, o, rows, "/console/alerts"))
            @if let Some(b) = next {
                nav.pages { a #next-page href=(link("/console/alerts", &[("state", state.to_owned()), ("kind", kind.unwrap_or_default().to_owned()), ("before", b.to_string())])) { (t.t("next-page")) } }
            }
        },
    )
}

/// Custody history: every sign-out with its return, how long the camera took to go off, and
/// the violations meanwhile.
pub fn custody(t: &Tr, o: &Officer, f: &CustodyFilter, p: &Page<CustodySpan>) -> Markup {
    let buckets: [(&str, i64); 6] = [
        ("< 10 s", 10_000),
        ("< 1 min", 60_000),
        ("< 5 min", 300_000),
        ("< 15 min", 900_000),
        ("< 1 h", 3_600_000),
        ("≥ 1 h", i64::MAX),
    ];
    let mut counts = [0usize; 7];
    for r in &p.items {
        for d in &r.devices {
            match d.took_ms(r) {
                Some(ms) => counts[buckets.iter().position(|(_, lim)| ms < *lim).unwrap_or(5)] += 1,
                None => counts[6] += 1,
            }
        }
    }
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let params = vec![
        ("holder", f.holder.clone().unwrap_or_default()),
        ("document", f.document.clone().unwrap_or_default()),
        ("open", if f.open { "1".into() } else { String::new() }),
        ("after", f.after.clone().unwrap_or_default()),
    ];
    page(
        t,
        &t.t("custody-title"),
        Some(o),
        "/console/custody",
        html! {
            form.filters #filters method="get" action="/console/custody" {
                label { (t.t("f-holder")) input name="holder" value=(f.holder.clone().unwrap_or_default()); }
                label { (t.t("f-document")) input name="document" value=(f.document.clone().unwrap_or_default()); }
                label { (t.t("custody-open-only")) input type="checkbox" name="open" value="1" checked[f.open]; }
                button #filter type="submit" { (t.t("filter-submit")) }
            }
            p.muted #count { (t.t_with("custody-count", &[("n", n(p.total))])) }
            table #custody {
                tr { th { (t.t("col-document")) } th { (t.t("col-level")) } th { (t.t("col-holder")) } th { (t.t("col-signed-out")) } th { (t.t("col-returned")) } th { (t.t("col-device")) } th { (t.t("col-camera-off")) } th { (t.t("col-violations-during")) } }
                @for r in &p.items {
                    @let rows = r.devices.len().max(1);
                    @for i in 0..rows {
                        tr data-document=(r.document) {
                            td { (r.document) } td { (t.level(&r.classification)) } td { (r.holder) } td { (t.when(r.signed_out_at)) }
                            td.returned { @match r.returned_at { Some(x) => (t.when(x)), None => span.bad { (t.t("still-out")) } } }
                            @match r.devices.get(i) {
                                Some(d) => {
                                    td { a href=(format!("/console/device/{}", d.device_id)) { (d.device_id) } }
                                    td.camera { @match d.took_ms(r) {
                                        Some(ms) => span.ok { (t.t_with("camera-off-after", &[("took", s(&t.took(ms)))])) },
                                        None => span.bad { (t.t("camera-not-confirmed")) },
                                    } }
                                },
                                None => { td.bad { (t.t("no-device-assigned")) } td { "—" } },
                            }
                            td.during { a href=(r.violations_link) { (r.violations) } }
                        }
                    }
                }
            }
            (pager(t, "/console/custody", &params, &p.next))
            div.card {
                h2 { (t.t("custody-chart-title")) }
                svg #confirm-times xmlns="http://www.w3.org/2000/svg" width="520" height="180" role="img" aria-label=(t.t("custody-chart-title")) {
                    @for (i, c) in counts.iter().enumerate() {
                        @let h = c * 120 / max;
                        rect x=(20 + i * 70) y=(140 - h) width="50" height=(h.max(1)) fill=(if i == 6 { "#a40e26" } else { "#7a1f1f" }) {}
                        text x=(20 + i * 70) y="158" { (buckets.get(i).map_or(t.t("custody-pending"), |b| b.0.to_owned())) }
                        text x=(35 + i * 70) y=(134 - h) { (c) }
                    }
                }
            }
        },
    )
}

/// One device.
pub fn device(t: &Tr, o: &Officer, p: &DevicePage) -> Markup {
    let d = &p.row.device;
    let back = format!("/console/device/{}", d.device_id);
    page(
        t,
        &t.t_with("device-title", &[("id", s(&d.device_id))]),
        Some(o),
        "/console/fleet",
        html! {
            div.card #device {
                p {
                    (t.t("device-holder")) ": " span #holder { (holder_text(t, d)) } " · "
                    (t.t("device-state")) ": " span #state { (state_badge(t, d.state)) } " · "
                    (t.t("device-platform")) ": " (d.platform) " · "
                    (t.t("device-policy")) ": " (d.policy.clone().unwrap_or_else(|| t.t("none"))) " · "
                    (t.t("device-enforcement")) ": " (p.row.enforcement_path)
                }
                p #log-carried {
                    @match p.log_carried {
                        Some((size, at)) => (t.t_with("device-log-carried", &[("size", n(size)), ("at", s(&t.when(at)))])),
                        None => span.muted { (t.t("device-log-none")) },
                    }
                }
                @if let Some(f) = &d.fail_closed { p.bad { (t.named("state", "fail_closed")) ": " (f) } }
                @if let Some(applied) = &d.applied {
                    h3 { (t.t("applied-title")) }
                    table #applied { tr { th { (t.t("col-setting")) } th { (t.t("col-desired")) } th { (t.t("col-state")) } th { (t.t("col-detail-short")) } }
                        @for x in applied { tr { td { (x.setting) } td { (x.desired) } td { (format!("{:?}", x.state)) } td { (x.detail.clone().unwrap_or_default()) } } } }
                }
            }
            h2 { (t.t("device-alerts")) }
            (alert_table(t, o, &p.alerts, &back))
            h2 { (t.t("checkins-title")) }
            table #checkins { tr { th { (t.t("col-when")) } th { (t.t("col-posture")) } th { (t.t("col-fail-closed")) } }
                @for (at, posture, fc) in p.check_ins.iter().take(50) { tr { td { (t.when(*at)) } td { code { (posture) } } td { (fc.clone().unwrap_or_default()) } } } }
            h2 { (t.t("posture-changes-title")) }
            table #posture-changes { tr { th { (t.t("col-when")) } th { (t.t("col-from")) } th { (t.t("col-to")) } }
                @for (at, from, to) in &p.posture_changes { tr { td { (t.when(*at)) } td { code { (from) } } td { code { (to) } } } } }
            h2 { (t.t("mdm-title")) }
            table #mdm { tr { th { (t.t("col-created")) } th { (t.t("col-command")) } th { (t.t("col-reason")) } th { (t.t("col-status")) } th { (t.t("col-queued")) } th { (t.t("col-answered")) } th { (t.t("col-last-error")) } }
                @for c in &p.mdm_commands { tr { td { (t.when(c.created_at)) } td { (c.kind) } td { (c.reason) } td { (c.status) }
                    td { (c.queued_at.map(|x| t.when(x)).unwrap_or_default()) } td { (c.answered_at.map(|x| t.when(x)).unwrap_or_default()) } td { (c.last_error.clone().unwrap_or_default()) } } } }
            h2 { (t.t("device-violations")) }
            p { a href=(link("/console/violations", &[("device", d.device_id.clone())])) { (t.t_with("violations-count", &[("n", n(p.violations.total))])) } }
            (violation_table(t, &p.violations.items))
        },
    )
}

/// The impact form, and the preview when there is one.
pub fn impact(t: &Tr, o: &Officer, bundle: &str, result: Option<Result<&Impact, &str>>) -> Markup {
    let change = |x: Option<bool>| match x {
        Some(true) => t.t("turns-off"),
        Some(false) => t.t("turns-on"),
        None => "—".into(),
    };
    page(
        t,
        &t.t("impact-title"),
        Some(o),
        "/console/impact",
        html! {
            p.muted { (t.t("impact-help")) }
            form method="post" action="/console/impact" {
                input type="hidden" name="csrf" value=(o.csrf);
                textarea #bundle name="bundle" { (bundle) }
                button #preview type="submit" { (t.t("impact-preview")) }
            }
            @match result {
                Some(Err(e)) => div.error { (e) },
                Some(Ok(i)) => {
                    div.card #impact {
                        p { (t.t_with("impact-summary", &[("candidate", s(&i.candidate)), ("n", n(i.changes.len() as i64)), ("total", n(i.devices as i64))])) }
                        table #impact-table { tr { th { (t.t("col-device")) } th { (t.t("col-holder")) } th { (t.t("col-camera")) } th { (t.t("col-capture")) } th { (t.t("col-newly-blocked")) } th { (t.t("col-newly-unblocked")) } }
                            @for c in &i.changes {
                                tr { td { (c.device_id) } td { (c.holder.clone().unwrap_or_default()) }
                                    td { (change(c.camera_disabled)) }
                                    td { (change(c.screen_capture_disabled)) }
                                    td { (c.newly_blocked.iter().map(|a| t.app(a)).collect::<Vec<_>>().join(", ")) }
                                    td { (c.newly_unblocked.iter().map(|a| t.app(a)).collect::<Vec<_>>().join(", ")) } }
                            }
                        }
                        @if i.publishable && o.role == Role::Admin {
                            form method="post" action="/console/publish" {
                                input type="hidden" name="csrf" value=(o.csrf);
                                input type="hidden" name="bundle" value=(bundle);
                                button #publish type="submit" { (t.t("publish")) }
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
/// A minted token and what the enrolment page shows with it: the Android provisioning payload
/// and its QR code (or why there is none).
pub struct Minted<'a> {
    /// The one-time token.
    pub token: &'a str,
    /// The holder it is bound to.
    pub holder: Option<&'a str>,
    /// The provisioning payload (pretty JSON).
    pub payload: Option<String>,
    /// Its QR code (SVG), or why it could not be drawn.
    pub qr: Result<String, String>,
    /// Server options still to set for a working payload.
    pub missing: Vec<&'static str>,
}

/// The enrolment page: mint a token for a holder; with it, the phone's provisioning QR code.
pub fn tokens(t: &Tr, o: &Officer, minted: Option<&Minted<'_>>) -> Markup {
    page(
        t,
        &t.t("enrolment-title"),
        Some(o),
        "/console/tokens",
        html! {
            @if let Some(m) = minted {
                div.card #minted { (t.t("token-minted")) @if let Some(h) = m.holder { " " (t.t_with("token-for", &[("holder", s(h))])) } ": " code { (m.token) } }
                section #provisioning {
                    h2 { (t.t("provision-title")) }
                    p { (t.t("provision-help")) }
                    @if !m.missing.is_empty() {
                        div.error #provision-missing { (t.t_with("provision-missing", &[("flags", s(&m.missing.join(", ")))])) }
                    }
                    @match &m.qr {
                        Ok(svg) => { div #qr { (PreEscaped(svg)) } }
                        Err(e) => { div.error #qr-error { (t.t_with("provision-too-long", &[("reason", s(e))])) } }
                    }
                    @if let Some(p) = &m.payload {
                        details { summary { (t.t("provision-payload")) } pre #payload { (p) } }
                    }
                }
            }
            form method="post" action="/console/tokens" {
                input type="hidden" name="csrf" value=(o.csrf);
                label { (t.t("token-holder-label")) input name="holder"; }
                button type="submit" { (t.t("token-issue")) }
            }
        },
    )
}

/// The audit log.
pub fn audit(t: &Tr, o: &Officer, rows: &[AuditEntry]) -> Markup {
    page(
        t,
        &t.t("audit-title"),
        Some(o),
        "/console/audit",
        html! {
            table #audit { tr { th { (t.t("col-seq")) } th { (t.t("col-when")) } th { (t.t("col-officer")) } th { (t.t("col-action")) } th { (t.t("col-detail")) } }
                @for a in rows { tr { td { (a.seq) } td { (t.when(a.at)) } td { (a.officer) } td { (a.action) } td { (a.detail) } } } }
            @if let (Some(last), true) = (rows.last(), rows.len() >= 200) {
                p { a #older href=(format!("/console/audit?before={}", last.seq)) { (t.t("audit-older")) } }
            }
        },
    )
}

/// A plain message page (errors, refusals).
pub fn message(t: &Tr, o: Option<&Officer>, title: &str, text: &str) -> Markup {
    page(
        t,
        title,
        o,
        "",
        html! { div.error { (text) } p { a href="/console/" { (t.t("back")) } } (PreEscaped("")) },
    )
}
