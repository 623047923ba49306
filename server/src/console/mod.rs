//! The security officer's console and API, served by `baomi-server` itself.
//!
//! - `officers`: accounts (argon2id), sessions, failed-login limits, the audit log.
//! - `views`: what is shown, computed once for the pages and the JSON API.
//! - `pages`: server-rendered HTML (maud, escaped everywhere, no JavaScript).
//! - this module: routing for `/console/...` (cookie session, CSRF token on every form) and
//!   `/v1/office/...` (bearer token), roles, and the audit of every office action.
//!
//! Why server-rendered pages: one binary to deploy and audit, nothing to build with npm, and
//! a Content-Security-Policy that forbids scripts entirely (`script-src` is not even allowed),
//! which is the strongest answer to holder-controlled strings in events.

pub mod export;
pub mod i18n;
pub mod listing;
pub mod officers;
pub mod pages;
pub mod views;

use maud::Markup;
use serde::Deserialize;

use crate::admin;
use crate::alerts;
use crate::api::{ApiError, Server};
use crate::fleet::PhoneState;
use listing::ViolationFilter;
use officers::{Officer, Role, same_secret};

/// An answer with its own headers (cookies, redirects, content type).
#[derive(Debug, Clone)]
pub struct OfficeReply {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// An export to stream after the headers (the body is empty then): the HTTP layer runs
    /// it ([`export::run`]) a page at a time.
    pub export: Option<(export::Job, i18n::Tr)>,
}

const SESSION_COOKIE: &str = "baomi_session";
const LOGIN_COOKIE: &str = "baomi_login";
/// The officer's language (`zh-CN` or `en`), when they switched from the default.
const LANG_COOKIE: &str = "baomi_lang";
/// The client's address, as the HTTP layer saw it (it removes any such header a client sent).
pub const PEER_HEADER: &str = "x-baomi-peer";
/// Scripts are not allowed at all; styles only from the server; forms post only to it.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The officer API's endpoints (method, path), as documented in docs/openapi.json.
pub const OFFICE_API: [(&str, &str); 27] = [
    ("post", "/v1/office/login"),
    ("post", "/v1/office/logout"),
    ("get", "/v1/office/devices"),
    ("get", "/v1/office/violations"),
    ("get", "/v1/office/custody"),
    ("get", "/v1/office/alerts"),
    ("post", "/v1/office/alerts/{id}/acknowledge"),
    ("post", "/v1/office/alerts/{id}/resolve"),
    ("get", "/v1/office/summary"),
    ("get", "/v1/office/export/{name}"),
    ("get", "/v1/office/audit"),
    ("get", "/v1/office/mdm/commands"),
    ("post", "/v1/office/impact"),
    ("post", "/v1/office/tokens"),
    ("post", "/v1/office/bundles"),
    ("post", "/v1/office/trust-roots"),
    ("post", "/v1/office/custody"),
    ("post", "/v1/office/assignments"),
    ("post", crate::api::MDM_EVENTS),
    ("get", "/v1/office/ledger/checkpoint"),
    ("get", "/v1/office/ledger/leaves"),
    ("get", "/v1/office/ledger/proof"),
    ("get", "/v1/office/ledger/consistency"),
    ("get", "/v1/office/ledger/records"),
    ("get", "/v1/office/ledger/seen"),
    ("get", "/v1/office/ledger/evidence"),
    ("post", "/v1/office/ledger/witness"),
];

/// Whether `path` belongs to the console or the officer API.
pub fn is_office_path(path: &str) -> bool {
    path == "/" || path.starts_with("/console") || path.starts_with("/v1/office/")
}

fn secure_headers(mut h: Vec<(String, String)>) -> Vec<(String, String)> {
    for (k, v) in [
        ("Content-Security-Policy", CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),
        ("X-Frame-Options", "DENY"),
    ] {
        h.push((k.into(), v.into()));
    }
    h
}

fn html(status: u16, m: Markup) -> OfficeReply {
    OfficeReply {
        status,
        headers: secure_headers(vec![(
            "Content-Type".into(),
            "text/html; charset=utf-8".into(),
        )]),
        body: m.into_string().into_bytes(),
        export: None,
    }
}

/// A witness's cosigned checkpoint and its audit report (`baomi audit --witness`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WitnessPost {
    witness: String,
    note: String,
    report: String,
}

/// An optional non-negative number from the query.
fn number(q: &std::collections::HashMap<String, String>, k: &str) -> Result<Option<u64>, ApiError> {
    q.get(k)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("{k} must be a non-negative number")))
        })
        .transpose()
}

/// A required non-negative number from the query.
fn required(q: &std::collections::HashMap<String, String>, k: &str) -> Result<u64, ApiError> {
    number(q, k)?.ok_or_else(|| ApiError::bad_request(format!("{k} is required")))
}

fn json<T: serde::Serialize>(status: u16, v: &T) -> OfficeReply {
    OfficeReply {
        status,
        headers: secure_headers(vec![("Content-Type".into(), "application/json".into())]),
        body: serde_json::to_vec(v).unwrap_or_default(),
        export: None,
    }
}

fn redirect(to: &str, cookies: &[String]) -> OfficeReply {
    let mut h = secure_headers(vec![("Location".into(), to.into())]);
    for c in cookies {
        h.push(("Set-Cookie".into(), c.clone()));
    }
    OfficeReply {
        status: 303,
        headers: h,
        body: Vec::new(),
        export: None,
    }
}

fn cookie(name: &str, value: &str, max_age: i64) -> String {
    format!("{name}={value}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}")
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn read_cookie(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn form(body: &[u8]) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

type Query = std::collections::HashMap<String, String>;

/// A query parameter, trimmed, without NUL characters (PostgreSQL's text cannot hold them);
/// `None` when absent or blank.
fn param(q: &Query, k: &str) -> Option<String> {
    q.get(k)
        .map(|v| v.replace('\0', ""))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn limit_of(q: &Query) -> Result<Option<i64>, ApiError> {
    param(q, "limit")
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| ApiError::bad_request("limit must be a number"))
        })
        .transpose()
}

/// A day bound from a date input (`2026-12-03`, in the office's zone), an RFC 3339 time, or
/// milliseconds (`from_ms`/`to_ms`, the console's own links).
fn time_bound(q: &Query, k: &str, t: &i18n::Tr, end: bool) -> Result<Option<i64>, ApiError> {
    if let Some(ms) = param(q, &format!("{k}_ms")) {
        return ms
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{k}_ms must be a number")));
    }
    let Some(v) = param(q, k) else {
        return Ok(None);
    };
    if let Some(ms) = t.day_bound(&v, end) {
        return Ok(Some(ms));
    }
    baomi_core::time::Timestamp::parse(&v)
        .map(|x| Some(x.0))
        .map_err(|_| ApiError::bad_request(format!("{k}: a date (2026-12-03) or an RFC 3339 time")))
}

/// The choices a closed-set filter takes.
fn choice(q: &Query, k: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
    match param(q, k) {
        Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v)),
        Some(v) => Err(ApiError::bad_request(format!(
            "{k} `{v}`: one of {}",
            allowed.join(", ")
        ))),
        None => Ok(None),
    }
}

fn violation_filter(q: &Query, t: &i18n::Tr) -> Result<ViolationFilter, ApiError> {
    Ok(ViolationFilter {
        device: param(q, "device"),
        device_exact: None,
        holder: param(q, "holder"),
        rule: param(q, "rule"),
        severity: choice(
            q,
            "severity",
            &["low", "medium", "high", "critical", "none"],
        )?,
        verdict: choice(q, "verdict", &["allow", "deny", "warn"])?,
        time: match choice(q, "time", &["received", "event"])?.as_deref() {
            Some("event") => listing::TimeField::Event,
            _ => listing::TimeField::Received,
        },
        from: time_bound(q, "from", t, false)?,
        to: time_bound(q, "to", t, true)?,
        after: param(q, "after"),
        limit: limit_of(q)?,
    })
}

fn fleet_filter(q: &Query) -> Result<listing::FleetFilter, ApiError> {
    Ok(listing::FleetFilter {
        q: param(q, "q"),
        state: param(q, "state")
            .map(|s| {
                PhoneState::parse(&s).ok_or_else(|| {
                    ApiError::bad_request(format!("state `{s}` is not a phone state"))
                })
            })
            .transpose()?,
        sort: param(q, "sort")
            .map(|s| {
                listing::FleetSort::parse(&s)
                    .ok_or_else(|| ApiError::bad_request("sort: device, holder or check_in"))
            })
            .transpose()?
            .unwrap_or_default(),
        after: param(q, "after"),
        limit: limit_of(q)?,
    })
}

fn custody_filter(q: &Query) -> Result<listing::CustodyFilter, ApiError> {
    Ok(listing::CustodyFilter {
        holder: param(q, "holder"),
        document: param(q, "document"),
        open: param(q, "open").is_some_and(|v| v == "1" || v == "true"),
        after: param(q, "after"),
        limit: limit_of(q)?,
    })
}

/// The alert filter of a query: `state` (open, acknowledged, resolved, all; default
/// unresolved), `kind`, `device`, `before` (keyset), `limit`.
fn alert_filter(q: &Query) -> Result<(alerts::Filter, Option<String>), ApiError> {
    let state = param(q, "state");
    let kind = param(q, "kind");
    if let Some(k) = &kind
        && !alerts::Kind::ALL.iter().any(|x| x.as_str() == k)
    {
        return Err(ApiError::bad_request(format!(
            "kind `{k}` is not an alert kind"
        )));
    }
    Ok((
        alerts::Filter {
            all: state.as_deref() == Some("all"),
            state: match state.as_deref() {
                None | Some("all") => None,
                Some(s) => Some(alerts::State::parse(s).ok_or_else(|| {
                    ApiError::bad_request("state: open, acknowledged, resolved or all")
                })?),
            },
            kind: kind.clone(),
            device: param(q, "device"),
            before: param(q, "before")
                .map(|b| {
                    b.parse()
                        .map_err(|_| ApiError::bad_request("before must be a number"))
                })
                .transpose()?,
            limit: limit_of(q)?.unwrap_or(listing::DEFAULT_PAGE),
        },
        kind,
    ))
}

fn api_error(e: &ApiError) -> OfficeReply {
    OfficeReply {
        status: e.status,
        headers: secure_headers(vec![("Content-Type".into(), "application/json".into())]),
        body: e.body(),
        export: None,
    }
}

#[derive(Deserialize)]
struct Login {
    name: String,
    password: String,
}

#[derive(Deserialize)]
struct AlertNote {
    note: String,
}

#[derive(Deserialize, Default)]
struct TokenRequest {
    #[serde(default)]
    holder: Option<String>,
    #[serde(default)]
    valid_hours: Option<i64>,
}

impl Server {
    /// Serves `/`, `/console/...` and `/v1/office/...`.
    pub fn handle_office(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> OfficeReply {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let q = form(query.as_bytes());
        if let Some(rest) = path.strip_prefix("/v1/office/") {
            return match self.office_api(method, rest, &q, headers, body) {
                Ok(r) => r,
                Err(e) => api_error(&e),
            };
        }
        match self.console(method, path, &q, headers, body) {
            Ok(r) => r,
            Err(e) => {
                let who = read_cookie(headers, SESSION_COOKIE)
                    .and_then(|t| self.officer_session(&t).ok().flatten());
                let t = self.tr(headers);
                html(
                    e.status,
                    pages::message(&t, who.as_ref(), &t.t("refused-title"), &e.message),
                )
            }
        }
    }

    /// The translator for a request: the officer's language (cookie) or the office's default,
    /// with the published policy's names.
    fn tr(&self, headers: &[(String, String)]) -> i18n::Tr {
        let lang = read_cookie(headers, LANG_COOKIE)
            .and_then(|l| i18n::Lang::parse(&l))
            .unwrap_or(self.locale().lang);
        let names = self
            .db()
            .tx(|c| self.newest_policy(c))
            .ok()
            .flatten()
            .map(|(_, p)| i18n::PolicyNames::of(&p))
            .unwrap_or_default();
        i18n::Tr::new(lang, self.locale(), std::sync::Arc::new(names))
    }

    /// Acknowledges or resolves an alert, in the audit log with the officer's note.
    fn alert_transition(
        &self,
        o: &Officer,
        id: i64,
        to: alerts::State,
        note: &str,
    ) -> Result<alerts::Alert, ApiError> {
        let now = self.now().0;
        let a = self
            .db()
            .tx(|c| alerts::transition(c, id, to, &o.name, note, now))?;
        let action = match to {
            alerts::State::Resolved => "alert_resolved",
            _ => "alert_acknowledged",
        };
        self.audit(
            &o.name,
            action,
            &format!(
                "#{id} {} {}: {}",
                a.device_id,
                a.kind,
                a.note.clone().unwrap_or_default()
            ),
        )?;
        Ok(a)
    }

    /// An export's answer: the headers now, the rows streamed by the HTTP layer. Logged.
    fn export_reply(
        &self,
        o: &Officer,
        name: &str,
        q: &Query,
        t: &i18n::Tr,
    ) -> Result<OfficeReply, ApiError> {
        let (what, format) = export::Job::parse(name)
            .ok_or_else(|| ApiError::new_pub(404, "not_found", format!("no export {name}")))?;
        let job = export::Job {
            what,
            format,
            violations: violation_filter(q, t)?,
            devices: fleet_filter(q)?,
            custody: custody_filter(q)?,
        };
        let filters: Vec<String> = {
            let mut v: Vec<String> = q
                .iter()
                .filter(|(k, v)| k.as_str() != "after" && !v.trim().is_empty())
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            v.sort();
            v
        };
        self.audit(
            &o.name,
            "exported",
            &format!("{name} {}", filters.join("&")),
        )?;
        Ok(OfficeReply {
            status: 200,
            headers: secure_headers(vec![
                ("Content-Type".into(), job.content_type().into()),
                (
                    "Content-Disposition".into(),
                    format!("attachment; filename=\"{}\"", job.file_name()),
                ),
            ]),
            body: Vec::new(),
            export: Some((job, t.clone())),
        })
    }

    fn require(&self, o: &Officer, role: Role, what: &str) -> Result<(), ApiError> {
        if role == Role::Admin && o.role != Role::Admin {
            let _ = self.audit(&o.name, "refused", &format!("{what}: needs the admin role"));
            return Err(ApiError::forbidden(format!("{what} needs the admin role")));
        }
        Ok(())
    }

    fn office_api(
        &self,
        method: &str,
        rest: &str,
        q: &std::collections::HashMap<String, String>,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<OfficeReply, ApiError> {
        if (method, rest) == ("POST", "login") {
            let l: Login = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("malformed login: {e}")))?;
            let (token, o) =
                self.officer_login_from(&l.name, &l.password, header(headers, PEER_HEADER))?;
            return Ok(json(
                200,
                &serde_json::json!({ "token": token, "officer": o.name, "role": o.role }),
            ));
        }
        let token = header(headers, "authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let o = match token {
            Some(t) => self.officer_session(t)?,
            None => None,
        }
        .ok_or_else(|| {
            ApiError::unauthorized(
                "log in: POST /v1/office/login, then Authorization: Bearer TOKEN",
            )
        })?;
        Ok(match (method, rest) {
            ("POST", "logout") => {
                if let Some(t) = token {
                    self.officer_logout(t)?;
                }
                json(200, &serde_json::json!({ "ok": true }))
            }
            ("GET", "summary") => json(200, &listing::summary(self)?),
            ("GET", "devices") => json(200, &views::fleet_page(self, &fleet_filter(q)?)?),
            ("GET", "violations") => {
                let t = self.tr(headers);
                json(200, &listing::violations(self, &violation_filter(q, &t)?)?)
            }
            ("GET", "custody") => json(200, &listing::custody_history(self, &custody_filter(q)?)?),
            ("GET", "alerts") => {
                let (f, _) = alert_filter(q)?;
                json(200, &self.db().tx(|c| alerts::list(c, &f))?)
            }
            ("POST", p) if p.starts_with("alerts/") => {
                let (id, to) = p["alerts/".len()..]
                    .split_once('/')
                    .and_then(|(id, action)| {
                        let to = match action {
                            "acknowledge" => alerts::State::Acknowledged,
                            "resolve" => alerts::State::Resolved,
                            _ => return None,
                        };
                        Some((id.parse::<i64>().ok()?, to))
                    })
                    .ok_or_else(|| {
                        ApiError::new_pub(
                            404,
                            "not_found",
                            format!("no office endpoint {method} /v1/office/{rest}"),
                        )
                    })?;
                let r: AlertNote = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("malformed body: {e}")))?;
                json(200, &self.alert_transition(&o, id, to, &r.note)?)
            }
            ("GET", p) if p.starts_with("export/") => {
                let t = self.tr(headers);
                return self.export_reply(&o, &p["export/".len()..], q, &t);
            }
            ("GET", "audit") => {
                let num = |k: &str| -> Result<Option<i64>, ApiError> {
                    q.get(k)
                        .map(|v| {
                            v.parse::<i64>()
                                .map_err(|_| ApiError::bad_request(format!("{k} must be a number")))
                        })
                        .transpose()
                };
                let limit = num("limit")?.unwrap_or(200);
                json(200, &self.audit_page(limit, num("before")?)?)
            }
            ("GET", "ledger/checkpoint") => OfficeReply {
                status: 200,
                headers: secure_headers(vec![(
                    "Content-Type".into(),
                    "text/plain; charset=utf-8".into(),
                )]),
                body: self.ledger_checkpoint()?.into_bytes(),
                export: None,
            },
            ("GET", "ledger/leaves") => json(
                200,
                &self.ledger_leaves(
                    number(q, "start")?.unwrap_or(0),
                    number(q, "limit")?.unwrap_or(1000),
                )?,
            ),
            ("GET", "ledger/proof") => json(
                200,
                &self.ledger_inclusion(required(q, "leaf")?, required(q, "size")?)?,
            ),
            ("GET", "ledger/consistency") => json(
                200,
                &self.ledger_consistency(required(q, "from")?, required(q, "to")?)?,
            ),
            ("GET", "ledger/records") => json(
                200,
                &self.ledger_records(
                    q.get("after_device").map_or("", String::as_str),
                    i64::try_from(number(q, "after_seq")?.unwrap_or(0)).unwrap_or(i64::MAX),
                    i64::try_from(number(q, "limit")?.unwrap_or(1000)).unwrap_or(1000),
                )?,
            ),
            ("GET", "ledger/seen") => json(
                200,
                &self.ledger_seen(
                    q.get("after_device").map_or("", String::as_str),
                    i64::try_from(number(q, "limit")?.unwrap_or(1000)).unwrap_or(1000),
                )?,
            ),
            ("GET", "ledger/evidence") => {
                let device = q
                    .get("device")
                    .ok_or_else(|| ApiError::bad_request("device is required"))?;
                let seq = required(q, "seq")?;
                let e = self.ledger_evidence(device, seq)?;
                self.audit(&o.name, "evidence_exported", &format!("{device}/{seq}"))?;
                json(200, &e)
            }
            ("POST", "ledger/witness") => {
                let w: WitnessPost = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("malformed witness report: {e}")))?;
                self.ledger_witness(&w.witness, &w.note, &w.report)?;
                self.audit(&o.name, "ledger_witnessed", &w.witness)?;
                json(200, &serde_json::json!({ "ok": true }))
            }
            ("GET", "mdm/commands") => json(
                200,
                &self.mdm_commands(q.get("device").map(String::as_str))?,
            ),
            ("POST", "impact") => {
                let i = views::impact(self, body)?;
                self.audit(&o.name, "impact_preview", &i.candidate)?;
                json(200, &i)
            }
            ("POST", "tokens") => {
                self.require(&o, Role::Admin, "issuing enrolment tokens")?;
                let r: TokenRequest = if body.is_empty() {
                    TokenRequest::default()
                } else {
                    serde_json::from_slice(body)
                        .map_err(|e| ApiError::bad_request(e.to_string()))?
                };
                let t = admin::new_token_for(
                    self,
                    r.valid_hours.unwrap_or(24).clamp(1, 24 * 30),
                    r.holder.as_deref(),
                )?;
                self.audit(
                    &o.name,
                    "token_issued",
                    &format!("holder {}", r.holder.unwrap_or_default()),
                )?;
                json(200, &serde_json::json!({ "token": t }))
            }
            ("POST", "bundles") => {
                self.require(&o, Role::Admin, "publishing bundles")?;
                let s = self.publish_bundle(body)?;
                self.audit(
                    &o.name,
                    "bundle_published",
                    &format!("{}@{} {}", s.id, s.version, s.digest),
                )?;
                json(200, &s)
            }
            ("POST", "trust-roots") => {
                self.require(&o, Role::Admin, "publishing trust roots")?;
                let v = self.publish_trust_root(body)?;
                self.audit(&o.name, "trust_root_published", &format!("v{v}"))?;
                json(200, &serde_json::json!({ "version": v }))
            }
            ("POST", "assignments") => {
                self.require(&o, Role::Admin, "posting assignments")?;
                let (c, doc) = self.accept_assignment(body)?;
                self.audit(
                    &o.name,
                    "assignment_posted",
                    &format!(
                        "{} -> {} [{}] feed position {c}",
                        doc.device, doc.holder, doc.record_id
                    ),
                )?;
                json(200, &serde_json::json!({ "cursor": c }))
            }
            ("POST", "custody") => {
                self.require(&o, Role::Admin, "posting custody")?;
                let c = self.accept_custody(body)?;
                self.audit(&o.name, "custody_posted", &format!("feed position {c}"))?;
                json(200, &serde_json::json!({ "cursor": c }))
            }
            _ => {
                return Err(ApiError::new_pub(
                    404,
                    "not_found",
                    format!("no office endpoint {method} /v1/office/{rest}"),
                ));
            }
        })
    }

    fn console(
        &self,
        method: &str,
        path: &str,
        q: &std::collections::HashMap<String, String>,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<OfficeReply, ApiError> {
        if path == "/console/style.css" {
            return Ok(OfficeReply {
                status: 200,
                headers: secure_headers(vec![("Content-Type".into(), "text/css".into())]),
                body: pages::CSS.as_bytes().to_vec(),
                export: None,
            });
        }
        if path == "/" {
            return Ok(redirect("/console/", &[]));
        }
        if path == "/console/login" {
            return self.console_login(method, headers, body);
        }
        if (method, path) == ("GET", "/console/lang") {
            // Only a path of the console itself to go back to (no open redirect).
            let back = param(q, "back")
                .filter(|b| b.starts_with("/console/") && !b.contains("//") && !b.contains('\\'))
                .unwrap_or_else(|| "/console/".into());
            let lang = param(q, "to")
                .and_then(|l| i18n::Lang::parse(&l))
                .unwrap_or_default();
            return Ok(redirect(
                &back,
                &[cookie(LANG_COOKIE, lang.tag(), 365 * 24 * 3600)],
            ));
        }
        let token = read_cookie(headers, SESSION_COOKIE);
        let Some(o) = token
            .as_deref()
            .map(|t| self.officer_session(t))
            .transpose()?
            .flatten()
        else {
            return Ok(redirect("/console/login", &[]));
        };
        let f = if method == "POST" {
            form(body)
        } else {
            Default::default()
        };
        if method == "POST" {
            // Every form carries the session's CSRF token; SameSite=Strict is the second lock.
            let ok = f.get("csrf").is_some_and(|c| same_secret(c, &o.csrf));
            if !ok {
                let _ = self.audit(
                    &o.name,
                    "refused",
                    &format!("{path}: form without its CSRF token"),
                );
                return Err(ApiError::forbidden(
                    "the form's CSRF token is missing or wrong: reload the page",
                ));
            }
        }
        let field = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
        let t = self.tr(headers);
        Ok(match (method, path) {
            ("GET", "/console/") | ("GET", "/console") => html(
                200,
                pages::summary(
                    &t,
                    &o,
                    &listing::summary(self)?,
                    &views::ledger_status(self)?,
                ),
            ),
            ("GET", "/console/fleet") => {
                let f = fleet_filter(q)?;
                let p = views::fleet_page(self, &f)?;
                html(
                    200,
                    pages::fleet(&t, &o, &f, &p, &views::ledger_status(self)?),
                )
            }
            ("GET", "/console/violations") => {
                let filter = violation_filter(q, &t)?;
                let rows = listing::violations(self, &filter)?;
                let hits = listing::rule_hits(self, 14)?;
                html(200, pages::violations(&t, &o, &filter, &rows, &hits))
            }
            ("GET", "/console/alerts") => {
                let (f, kind) = alert_filter(q)?;
                let rows = self.db().tx(|c| alerts::list(c, &f))?;
                let next = (rows.len() as i64 >= f.limit.clamp(1, alerts::MAX_PAGE))
                    .then(|| rows.last().map(|a| a.id))
                    .flatten();
                let state = param(q, "state").unwrap_or_default();
                html(
                    200,
                    pages::alerts(&t, &o, &state, kind.as_deref(), &rows, next),
                )
            }
            ("POST", p) if p.starts_with("/console/alerts/") => {
                let id = p["/console/alerts/".len()..]
                    .parse::<i64>()
                    .map_err(|_| ApiError::bad_request("no such alert"))?;
                let to = match field("to") {
                    "acknowledged" => alerts::State::Acknowledged,
                    "resolved" => alerts::State::Resolved,
                    _ => return Err(ApiError::bad_request("to: acknowledged or resolved")),
                };
                self.alert_transition(&o, id, to, field("note"))?;
                let back = field("back");
                redirect(
                    if back.starts_with("/console/") && !back.contains("//") {
                        back
                    } else {
                        "/console/alerts"
                    },
                    &[],
                )
            }
            ("GET", "/console/custody") => {
                let f = custody_filter(q)?;
                html(
                    200,
                    pages::custody(&t, &o, &f, &listing::custody_history(self, &f)?),
                )
            }
            ("GET", p) if p.starts_with("/console/export/") => {
                return self.export_reply(&o, &p["/console/export/".len()..], q, &t);
            }
            ("GET", "/console/evidence") => {
                let device = q.get("device").map(String::as_str).unwrap_or_default();
                let seq = q
                    .get("seq")
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| ApiError::bad_request("seq must be a number"))?;
                let e = self.ledger_evidence(device, seq)?;
                self.audit(&o.name, "evidence_exported", &format!("{device}/{seq}"))?;
                let name: String = format!("evidence-{device}-{seq}.json")
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
                    .collect();
                OfficeReply {
                    status: 200,
                    headers: secure_headers(vec![
                        ("Content-Type".into(), "application/json".into()),
                        (
                            "Content-Disposition".into(),
                            format!("attachment; filename=\"{name}\""),
                        ),
                    ]),
                    body: serde_json::to_vec_pretty(&e).unwrap_or_default(),
                    export: None,
                }
            }
            ("GET", p) if p.starts_with("/console/device/") => {
                let id = &p["/console/device/".len()..];
                match views::device_page(self, id)? {
                    Some(page) => html(200, pages::device(&t, &o, &page)),
                    None => html(404, pages::message(&t, Some(&o), "404", id)),
                }
            }
            ("GET", "/console/impact") => html(200, pages::impact(&t, &o, "", None)),
            ("POST", "/console/impact") => {
                let bundle = field("bundle");
                match views::impact(self, bundle.as_bytes()) {
                    Ok(i) => {
                        self.audit(&o.name, "impact_preview", &i.candidate)?;
                        html(200, pages::impact(&t, &o, bundle, Some(Ok(&i))))
                    }
                    Err(e) => html(
                        e.status,
                        pages::impact(&t, &o, bundle, Some(Err(&e.message))),
                    ),
                }
            }
            ("POST", "/console/publish") => {
                self.require(&o, Role::Admin, "publishing bundles")?;
                let s = self.publish_bundle(field("bundle").as_bytes())?;
                self.audit(
                    &o.name,
                    "bundle_published",
                    &format!("{}@{} {}", s.id, s.version, s.digest),
                )?;
                redirect("/console/fleet", &[])
            }
            ("GET", "/console/tokens") => {
                self.require(&o, Role::Admin, "issuing enrolment tokens")?;
                html(200, pages::tokens(&t, &o, None))
            }
            ("POST", "/console/tokens") => {
                self.require(&o, Role::Admin, "issuing enrolment tokens")?;
                let holder = Some(field("holder").trim()).filter(|h| !h.is_empty());
                let token = admin::new_token_for(self, 24, holder)?;
                self.audit(
                    &o.name,
                    "token_issued",
                    &format!("holder {}", holder.unwrap_or_default()),
                )?;
                let provisioning = self.provisioning();
                let root = self
                    .trust_root()?
                    .map(|r| String::from_utf8_lossy(r.envelope_bytes()).into_owned());
                let payload = root.map(|r| provisioning.payload(&r, &token));
                let qr = match &payload {
                    Some(p) => crate::provisioning::qr_svg(&p.to_string()),
                    None => Err("publish a trust root first".to_owned()),
                };
                let minted = pages::Minted {
                    token: &token,
                    holder,
                    payload: payload
                        .as_ref()
                        .and_then(|p| serde_json::to_string_pretty(p).ok()),
                    qr,
                    missing: provisioning.missing(),
                };
                html(200, pages::tokens(&t, &o, Some(&minted)))
            }
            ("GET", "/console/audit") => {
                let before = field("before").parse::<i64>().ok();
                html(200, pages::audit(&t, &o, &self.audit_page(200, before)?))
            }
            ("POST", "/console/logout") => {
                if let Some(t) = &token {
                    self.officer_logout(t)?;
                }
                self.audit(&o.name, "logout", "")?;
                redirect("/console/login", &[cookie(SESSION_COOKIE, "", 0)])
            }
            _ => html(404, pages::message(&t, Some(&o), "404", path)),
        })
    }

    fn console_login(
        &self,
        method: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<OfficeReply, ApiError> {
        if method == "GET" {
            let t = officers::random_token(24)?;
            let mut r = html(200, pages::login(&self.tr(headers), &t, None));
            r.headers
                .push(("Set-Cookie".into(), cookie(LOGIN_COOKIE, &t, 3600)));
            return Ok(r);
        }
        let f = form(body);
        let expected = read_cookie(headers, LOGIN_COOKIE).unwrap_or_default();
        let sent = f.get("csrf").cloned().unwrap_or_default();
        if expected.is_empty() || !same_secret(&expected, &sent) {
            return Err(ApiError::forbidden(
                "the login form's CSRF token is missing or wrong: reload the page",
            ));
        }
        let name = f.get("name").cloned().unwrap_or_default();
        match self.officer_login_from(
            &name,
            f.get("password").map(String::as_str).unwrap_or_default(),
            header(headers, PEER_HEADER),
        ) {
            Ok((token, _)) => Ok(redirect(
                "/console/",
                &[
                    cookie(SESSION_COOKIE, &token, officers::SESSION_MS / 1000),
                    cookie(LOGIN_COOKIE, "", 0),
                ],
            )),
            Err(e) => {
                let mut r = html(
                    e.status,
                    pages::login(&self.tr(headers), &expected, Some(&e.message)),
                );
                if e.status == 429 {
                    r.headers.push(("Retry-After".into(), "900".into()));
                }
                Ok(r)
            }
        }
    }
}
