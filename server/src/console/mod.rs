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

pub mod officers;
pub mod pages;
pub mod views;

use maud::Markup;
use serde::Deserialize;

use crate::admin;
use crate::api::{ApiError, Server};
use officers::{Officer, Role, same_secret};
use views::ViolationFilter;

/// An answer with its own headers (cookies, redirects, content type).
#[derive(Debug, Clone)]
pub struct OfficeReply {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

const SESSION_COOKIE: &str = "baomi_session";
const LOGIN_COOKIE: &str = "baomi_login";
/// The client's address, as the HTTP layer saw it (it removes any such header a client sent).
pub const PEER_HEADER: &str = "x-baomi-peer";
/// Scripts are not allowed at all; styles only from the server; forms post only to it.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The officer API's endpoints (method, path), as documented in docs/openapi.json.
pub const OFFICE_API: [(&str, &str); 21] = [
    ("post", "/v1/office/login"),
    ("post", "/v1/office/logout"),
    ("get", "/v1/office/devices"),
    ("get", "/v1/office/violations"),
    ("get", "/v1/office/custody"),
    ("get", "/v1/office/alerts"),
    ("get", "/v1/office/audit"),
    ("get", "/v1/office/mdm/commands"),
    ("post", "/v1/office/impact"),
    ("post", "/v1/office/tokens"),
    ("post", "/v1/office/bundles"),
    ("post", "/v1/office/trust-roots"),
    ("post", "/v1/office/custody"),
    ("post", crate::api::MDM_EVENTS),
    ("get", "/v1/office/ledger/checkpoint"),
    ("get", "/v1/office/ledger/leaves"),
    ("get", "/v1/office/ledger/proof"),
    ("get", "/v1/office/ledger/consistency"),
    ("get", "/v1/office/ledger/records"),
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

fn filter_from(q: &std::collections::HashMap<String, String>) -> ViolationFilter {
    let s = |k: &str| {
        q.get(k)
            .filter(|v| !v.trim().is_empty())
            .map(|v| v.trim().to_owned())
    };
    let t = |k: &str| {
        s(k).and_then(|v| baomi_core::time::Timestamp::parse(&v).ok())
            .map(|t| t.0)
    };
    ViolationFilter {
        device: s("device"),
        holder: s("holder"),
        rule: s("rule"),
        severity: s("severity"),
        from: t("from"),
        to: t("to"),
    }
}

fn api_error(e: &ApiError) -> OfficeReply {
    OfficeReply {
        status: e.status,
        headers: secure_headers(vec![("Content-Type".into(), "application/json".into())]),
        body: e.body(),
    }
}

#[derive(Deserialize)]
struct Login {
    name: String,
    password: String,
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
                html(
                    e.status,
                    pages::message(who.as_ref(), "Refused", &e.message),
                )
            }
        }
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
            ("GET", "devices") => json(200, &views::fleet(self)?),
            ("GET", "violations") => json(200, &views::violations(self, &filter_from(q))?),
            ("GET", "custody") => json(200, &views::custody(self)?),
            ("GET", "alerts") => json(
                200,
                &views::fleet(self)?
                    .into_iter()
                    .filter(|r| {
                        r.device.alert.is_some()
                            || r.device.fail_closed.is_some()
                            || r.device.compliant == Some(false)
                    })
                    .collect::<Vec<_>>(),
            ),
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
            });
        }
        if path == "/" {
            return Ok(redirect("/console/", &[]));
        }
        if path == "/console/login" {
            return self.console_login(method, headers, body);
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
        Ok(match (method, path) {
            ("GET", "/console/") | ("GET", "/console") => html(
                200,
                pages::fleet(&o, &views::fleet(self)?, &views::ledger_status(self)?),
            ),
            ("GET", "/console/violations") => {
                let filter = filter_from(q);
                let rows = views::violations(self, &filter)?;
                let hits = views::rule_hits(self, &rows, 14)?;
                html(200, pages::violations(&o, &filter, &rows, &hits))
            }
            ("GET", "/console/custody") => html(200, pages::custody(&o, &views::custody(self)?)),
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
                }
            }
            ("GET", p) if p.starts_with("/console/device/") => {
                let id = &p["/console/device/".len()..];
                match views::device_page(self, id)? {
                    Some(page) => html(200, pages::device(&o, &page)),
                    None => html(404, pages::message(Some(&o), "No such device", id)),
                }
            }
            ("GET", "/console/impact") => html(200, pages::impact(&o, "", None)),
            ("POST", "/console/impact") => {
                let bundle = field("bundle");
                match views::impact(self, bundle.as_bytes()) {
                    Ok(i) => {
                        self.audit(&o.name, "impact_preview", &i.candidate)?;
                        html(200, pages::impact(&o, bundle, Some(Ok(&i))))
                    }
                    Err(e) => html(e.status, pages::impact(&o, bundle, Some(Err(&e.message)))),
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
                redirect("/console/", &[])
            }
            ("GET", "/console/tokens") => {
                self.require(&o, Role::Admin, "issuing enrolment tokens")?;
                html(200, pages::tokens(&o, None))
            }
            ("POST", "/console/tokens") => {
                self.require(&o, Role::Admin, "issuing enrolment tokens")?;
                let holder = Some(field("holder").trim()).filter(|h| !h.is_empty());
                let t = admin::new_token_for(self, 24, holder)?;
                self.audit(
                    &o.name,
                    "token_issued",
                    &format!("holder {}", holder.unwrap_or_default()),
                )?;
                html(200, pages::tokens(&o, Some((&t, holder))))
            }
            ("GET", "/console/audit") => {
                let before = field("before").parse::<i64>().ok();
                html(200, pages::audit(&o, &self.audit_page(200, before)?))
            }
            ("POST", "/console/logout") => {
                if let Some(t) = &token {
                    self.officer_logout(t)?;
                }
                self.audit(&o.name, "logout", "")?;
                redirect("/console/login", &[cookie(SESSION_COOKIE, "", 0)])
            }
            _ => html(404, pages::message(Some(&o), "Not found", path)),
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
            let mut r = html(200, pages::login(&t, None));
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
                let mut r = html(e.status, pages::login(&expected, Some(&e.message)));
                if e.status == 429 {
                    r.headers.push(("Retry-After".into(), "900".into()));
                }
                Ok(r)
            }
        }
    }
}
