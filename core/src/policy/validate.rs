//! Semantic checks over a parsed policy. Collects every problem instead of stopping at the
//! first, so one `baomi policy check` run shows the officer the whole list.
//!
//! JSON paths are built lazily ([`At`]): a valid 1,000-rule policy is checked without a single
//! path string being formatted (bundle verification at every start depends on it).

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use super::err::{PolicyError, PolicyErrorKind};
use super::model::*;
use super::{FORMAT, MAX_APP_IDS, MAX_APP_NAME_CHARS, MAX_CONDITION_DEPTH, MAX_RULES, MAX_ZONES};

/// Prefix reserved for rules the agent itself reports (`baomi.tamper`, `baomi.fail_closed`).
pub const RESERVED_RULE_PREFIX: &str = "baomi.";

pub(super) fn validate(p: &Policy) -> Vec<PolicyError> {
    let mut v = Validator {
        errors: Vec::new(),
        policy: p,
    };
    v.document();
    v.errors
}

/// One step of a JSON path.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// A JSON path, as a chain of borrowed steps: formatted only when an error needs it.
#[derive(Clone, Copy)]
struct At<'a> {
    parent: Option<&'a At<'a>>,
    seg: Seg<'a>,
}

impl<'a> At<'a> {
    const fn root(key: &'a str) -> Self {
        Self {
            parent: None,
            seg: Seg::Key(key),
        }
    }
    fn key(&'a self, key: &'a str) -> At<'a> {
        At {
            parent: Some(self),
            seg: Seg::Key(key),
        }
    }
    fn idx(&'a self, i: usize) -> At<'a> {
        At {
            parent: Some(self),
            seg: Seg::Index(i),
        }
    }
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = self.parent {
            p.fmt(f)?;
        }
        match (self.seg, self.parent.is_some()) {
            (Seg::Key(k), true) => write!(f, ".{k}"),
            (Seg::Key(k), false) => f.write_str(k),
            (Seg::Index(i), _) => write!(f, "[{i}]"),
        }
    }
}

struct Validator<'p> {
    errors: Vec<PolicyError>,
    policy: &'p Policy,
}

impl Validator<'_> {
    fn push(&mut self, e: PolicyError) {
        self.errors.push(e);
    }

    fn invalid(&mut self, at: &At<'_>, rule: Option<&str>, msg: impl Into<String>) {
        self.push(PolicyError::invalid(at.to_string(), rule, msg));
    }

    fn document(&mut self) {
        let p = self.policy;
        if p.format != FORMAT {
            self.push(PolicyError::new(
                "format",
                None,
                PolicyErrorKind::UnsupportedFormat(p.format),
            ));
        }
        if !is_id(&p.policy_id) {
            self.invalid(&At::root("policy_id"), None, id_rule_text(&p.policy_id));
        }
        // Sizes first: every device compiles what it is sent, and the office's preview
        // compiles drafts (a 20,000-package, 2,500-rule draft stalled the server).
        let ids: usize = p
            .app_sets
            .values()
            .map(|s| s.android.len() + s.ios.len())
            .sum();
        for (key, n, max) in [
            ("rules", p.rules.len(), MAX_RULES),
            ("app_sets", ids, MAX_APP_IDS),
            ("zones", p.zones.len(), MAX_ZONES),
        ] {
            if n > max {
                self.invalid(
                    &At::root(key),
                    None,
                    format!("{n} entries, over the limit of {max}"),
                );
            }
        }
        let sets = At::root("app_sets");
        for (name, set) in &p.app_sets {
            self.app_set(&sets.key(name), name, set);
        }
        let zones = At::root("zones");
        for (name, zone) in &p.zones {
            self.zone(&zones.key(name), name, zone);
        }
        let rules = At::root("rules");
        let mut seen = HashSet::new();
        for (i, rule) in p.rules.iter().enumerate() {
            let at = rules.idx(i);
            if !seen.insert(rule.id.as_str()) {
                self.push(PolicyError::new(
                    at.key("id").to_string(),
                    Some(&rule.id),
                    PolicyErrorKind::DuplicateRuleId(rule.id.clone()),
                ));
            }
            self.rule(&at, rule);
        }
        self.sync(&p.sync);
        self.holders();
    }

    fn app_set(&mut self, at: &At<'_>, name: &str, set: &AppSet) {
        if !is_id(name) {
            self.invalid(at, None, id_rule_text(name));
        }
        if set.android.is_empty() && set.ios.is_empty() {
            self.invalid(at, None, "an app set needs at least one android or ios id");
        }
        for (i, pkg) in set.android.iter().enumerate() {
            if !is_app_id(pkg) {
                self.invalid(
                    &at.key("android").idx(i),
                    None,
                    format!("`{pkg}` is not an Android package name (e.g. `com.tencent.mm`)"),
                );
            }
        }
        for (i, id) in set.ios.iter().enumerate() {
            if !is_app_id(id) {
                self.invalid(
                    &at.key("ios").idx(i),
                    None,
                    format!("`{id}` is not an iOS bundle id (e.g. `com.tencent.xin`)"),
                );
            }
        }
        for (id, display) in &set.names {
            if !set.android.contains(id) && !set.ios.contains(id) {
                self.invalid(
                    &at.key("names").key(id),
                    None,
                    format!("`{id}` is named but not in this set's android or ios ids"),
                );
            }
            if display.trim().is_empty() || display.chars().count() > MAX_APP_NAME_CHARS {
                self.invalid(
                    &at.key("names").key(id),
                    None,
                    format!("a display name has 1 to {MAX_APP_NAME_CHARS} characters"),
                );
            }
        }
    }

    fn zone(&mut self, at: &At<'_>, name: &str, z: &Zone) {
        if !is_id(name) {
            self.invalid(at, None, id_rule_text(name));
        }
        if z.beacons.is_empty()
            && z.geofences.is_empty()
            && z.wifi_bssids.is_empty()
            && z.nfc_check_in.is_empty()
        {
            self.invalid(
                at,
                None,
                "a zone needs at least one signal (beacon, geofence, wifi_bssid or nfc_check_in)",
            );
        }
        let beacons = at.key("beacons");
        for (i, b) in z.beacons.iter().enumerate() {
            let bat = beacons.idx(i);
            if parse_uuid(&b.uuid).is_none() {
                self.invalid(
                    &bat.key("uuid"),
                    None,
                    format!("`{}` is not a UUID (8-4-4-4-12 hex)", b.uuid),
                );
            }
            if b.timeout_s == 0 || b.timeout_s > 3600 {
                self.invalid(
                    &bat.key("timeout_s"),
                    None,
                    "must be between 1 and 3600 seconds",
                );
            }
        }
        let geofences = at.key("geofences");
        for (i, g) in z.geofences.iter().enumerate() {
            let gat = geofences.idx(i);
            if !(g.lat.is_finite() && (-90.0..=90.0).contains(&g.lat)) {
                self.invalid(&gat.key("lat"), None, "latitude must be between -90 and 90");
            }
            if !(g.lon.is_finite() && (-180.0..=180.0).contains(&g.lon)) {
                self.invalid(
                    &gat.key("lon"),
                    None,
                    "longitude must be between -180 and 180",
                );
            }
            if !(g.radius_m.is_finite() && g.radius_m > 0.0 && g.radius_m <= 50_000.0) {
                self.invalid(
                    &gat.key("radius_m"),
                    None,
                    "radius must be between 0 and 50000 metres",
                );
            }
        }
        let bssids = at.key("wifi_bssids");
        for (i, b) in z.wifi_bssids.iter().enumerate() {
            if parse_bssid(b).is_none() {
                self.invalid(
                    &bssids.idx(i),
                    None,
                    format!("`{b}` is not a BSSID (aa:bb:cc:dd:ee:ff)"),
                );
            }
        }
        for (field, tags) in [
            ("nfc_check_in", &z.nfc_check_in),
            ("nfc_check_out", &z.nfc_check_out),
        ] {
            let fat = at.key(field);
            for (i, t) in tags.iter().enumerate() {
                if t.is_empty() || t.len() > 128 {
                    self.invalid(
                        &fat.idx(i),
                        None,
                        "an NFC tag id must be 1 to 128 characters",
                    );
                }
            }
        }
    }

    fn rule(&mut self, at: &At<'_>, r: &Rule) {
        let id = Some(r.id.as_str());
        if !is_id(&r.id) {
            self.invalid(&at.key("id"), id, id_rule_text(&r.id));
        } else if r.id.starts_with(RESERVED_RULE_PREFIX) {
            self.invalid(
                &at.key("id"),
                id,
                format!("ids starting with `{RESERVED_RULE_PREFIX}` are reserved for the agent"),
            );
        }
        let effects = at.key("effects");
        if r.effects.is_empty() {
            self.invalid(&effects, id, "a rule needs at least one effect");
        }
        if let Some(c) = &r.when {
            self.condition(&at.key("when"), id, c, 1);
        }
        for (j, e) in r.effects.iter().enumerate() {
            let eat = effects.idx(j);
            match e {
                Effect::BanApps(set) => self.app_set_ref(&eat.key("ban_apps"), id, set),
                Effect::DenyShareInto(s) => {
                    let dat = eat.key("deny_share_into");
                    self.app_set_ref(&dat.key("app_set"), id, &s.app_set);
                    let mime = dat.key("mime");
                    for (k, m) in s.mime.iter().enumerate() {
                        if !is_mime_pattern(m) {
                            self.invalid(
                                &mime.idx(k),
                                id,
                                format!("`{m}` is not a MIME pattern (`image/*`, `application/pdf`, `*/*`)"),
                            );
                        }
                    }
                }
                Effect::DisableCamera | Effect::DisableScreenCapture => {}
            }
        }
    }

    fn condition(&mut self, at: &At<'_>, rule: Option<&str>, c: &Condition, depth: usize) {
        if depth > MAX_CONDITION_DEPTH {
            self.invalid(
                at,
                rule,
                format!("conditions may nest at most {MAX_CONDITION_DEPTH} deep"),
            );
            return;
        }
        match c {
            Condition::ClearanceAtLeast(_)
            | Condition::CustodyAtLeast(_)
            | Condition::InAnyZone(_) => {}
            Condition::InZone(zones) => {
                let zat = at.key("in_zone");
                if zones.is_empty() {
                    self.invalid(&zat, rule, "list at least one zone (or use `in_any_zone`)");
                }
                for (i, z) in zones.iter().enumerate() {
                    if !self.policy.zones.contains_key(z) {
                        self.push(PolicyError::new(
                            zat.idx(i).to_string(),
                            rule,
                            PolicyErrorKind::UnknownZone(z.clone()),
                        ));
                    }
                }
            }
            Condition::TimeWindow(w) => {
                let wat = at.key("time_window");
                if w.days.is_empty() {
                    self.invalid(&wat.key("days"), rule, "list at least one day");
                }
                for (field, v) in [("from", &w.from), ("to", &w.to)] {
                    if parse_hhmm(v).is_none() {
                        self.invalid(
                            &wat.key(field),
                            rule,
                            format!("`{v}` is not a time `HH:MM`"),
                        );
                    }
                }
                if w.from == w.to {
                    self.invalid(
                        &wat,
                        rule,
                        "`from` and `to` are equal: the window would be empty",
                    );
                }
                if !(-14 * 60..=14 * 60).contains(&w.utc_offset_minutes) {
                    self.invalid(
                        &wat.key("utc_offset_minutes"),
                        rule,
                        "offset must be within ±840 minutes",
                    );
                }
            }
            Condition::All(cs) | Condition::Any(cs) => {
                let key = if matches!(c, Condition::All(_)) {
                    "all"
                } else {
                    "any"
                };
                let list = at.key(key);
                for (i, sub) in cs.iter().enumerate() {
                    self.condition(&list.idx(i), rule, sub, depth + 1);
                }
            }
            Condition::Not(sub) => self.condition(&at.key("not"), rule, sub, depth + 1),
        }
    }

    fn app_set_ref(&mut self, at: &At<'_>, rule: Option<&str>, name: &str) {
        if !self.policy.app_sets.contains_key(name) {
            self.push(PolicyError::new(
                at.to_string(),
                rule,
                PolicyErrorKind::UnknownAppSet(name.to_owned()),
            ));
        }
    }

    fn sync(&mut self, s: &SyncSettings) {
        let at = At::root("sync");
        if s.interval_s < 60 {
            self.invalid(&at.key("interval_s"), None, "must be at least 60 seconds");
        }
        if s.max_offline_s < s.interval_s {
            self.invalid(
                &at.key("max_offline_s"),
                None,
                "must be at least `interval_s`",
            );
        }
        let fc = at.key("fail_closed");
        let sets = fc.key("ban_app_sets");
        for (i, set) in s.fail_closed.ban_app_sets.iter().enumerate() {
            self.app_set_ref(&sets.idx(i), None, set);
        }
    }

    fn holders(&mut self) {
        let at = At::root("holders");
        let mut devices = BTreeSet::new();
        for (i, h) in self.policy.holders.iter().enumerate() {
            let hat = at.idx(i);
            if h.holder.is_empty() {
                self.invalid(&hat.key("holder"), None, "holder id must not be empty");
            }
            let dat = hat.key("devices");
            if h.devices.is_empty() {
                self.invalid(&dat, None, "list at least one device id");
            }
            for (j, d) in h.devices.iter().enumerate() {
                if !devices.insert(d.as_str()) {
                    self.invalid(
                        &dat.idx(j),
                        None,
                        format!("device `{d}` is assigned to more than one holder"),
                    );
                }
            }
        }
    }
}

fn id_rule_text(v: &str) -> String {
    format!("`{v}` is not a valid id: use 1 to 128 of a-z A-Z 0-9 . _ -")
}

/// Ids of policies, rules, app sets and zones.
pub(crate) fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Android package names and iOS bundle ids share this shape: dotted segments.
fn is_app_id(s: &str) -> bool {
    s.len() <= 255
        && s.contains('.')
        && s.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        })
}

fn is_mime_pattern(s: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.' | b'_'))
    };
    match s.split_once('/') {
        Some(("*", "*")) => true,
        Some((ty, "*")) => token(ty),
        Some((ty, sub)) => token(ty) && token(sub),
        None => false,
    }
}

/// A beacon UUID in canonical 8-4-4-4-12 form, as a number (case-insensitive).
pub(crate) fn parse_uuid(s: &str) -> Option<u128> {
    let groups: Vec<&str> = s.split('-').collect();
    if groups.iter().map(|g| g.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12] {
        return None;
    }
    let hex: String = groups.concat();
    u128::from_str_radix(&hex, 16).ok()
}

/// `aa:bb:cc:dd:ee:ff` (either case, `-` also accepted) as a number.
pub(crate) fn parse_bssid(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 || parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    u64::from_str_radix(&parts.concat(), 16).ok()
}

/// `HH:MM` as minutes since midnight.
pub(crate) fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// Whether `mime` matches `pattern` (`type/*`, `*/*` or exact), ignoring case and parameters.
pub(crate) fn mime_matches(pattern: &str, mime: &str) -> bool {
    let mime = mime.split(';').next().unwrap_or("").trim();
    match pattern.split_once('/') {
        Some(("*", "*")) => true,
        Some((ty, "*")) => mime
            .split_once('/')
            .is_some_and(|(mt, _)| mt.eq_ignore_ascii_case(ty)),
        _ => pattern.eq_ignore_ascii_case(mime),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_format_like_the_json_they_point_at() {
        let rules = At::root("rules");
        let r = rules.idx(2);
        let when = r.key("when");
        let all = when.key("all");
        let a0 = all.idx(0);
        assert_eq!(
            a0.key("in_zone").idx(1).to_string(),
            "rules[2].when.all[0].in_zone[1]"
        );
        assert_eq!(
            At::root("sync").key("interval_s").to_string(),
            "sync.interval_s"
        );
    }

    #[test]
    fn signal_parsers_accept_canonical_forms_only() {
        assert_eq!(parse_bssid("AA:bb:cc:00:11:22"), Some(0xaabbcc001122));
        assert_eq!(parse_bssid("aa-bb-cc-00-11-22"), Some(0xaabbcc001122));
        assert_eq!(parse_bssid("aabbcc001122"), None);
        assert_eq!(parse_bssid("aa:bb:cc:00:11"), None);
        assert!(parse_uuid("f7826da6-4fa2-4e98-8024-bc5b71e0893e").is_some());
        assert!(parse_uuid("f7826da64fa24e988024bc5b71e0893e").is_none());
        assert_eq!(parse_hhmm("08:30"), Some(510));
        assert_eq!(parse_hhmm("24:00"), None);
        assert_eq!(parse_hhmm("8:30"), None);
    }

    #[test]
    fn mime_patterns_match_by_type_and_ignore_parameters() {
        assert!(mime_matches("image/*", "image/jpeg"));
        assert!(mime_matches("image/*", "IMAGE/PNG"));
        assert!(!mime_matches("image/*", "text/plain"));
        assert!(mime_matches("*/*", "text/plain"));
        assert!(mime_matches("application/pdf", "application/pdf; name=x"));
        assert!(!is_mime_pattern("image"));
        assert!(is_mime_pattern("image/*"));
    }

    #[test]
    fn ids_and_app_ids() {
        assert!(is_id("no-messengers.v2"));
        assert!(!is_id("has space"));
        assert!(!is_id(""));
        assert!(is_app_id("com.tencent.mm"));
        assert!(is_app_id("com.laiwang.DingTalk"));
        assert!(!is_app_id("wechat"));
        assert!(!is_app_id("com..mm"));
    }
}
