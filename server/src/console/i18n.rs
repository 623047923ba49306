//! The console's languages: Simplified Chinese first, English second, through Project Fluent
//! (`fluent-bundle`; the messages are `server/locales/{zh-CN,en}/console.ftl`), and times in
//! the office's time zone (Beijing by default; `jiff` with its bundled tz database), written
//! as people write them (`2026-12-03 11:09`).
//!
//! What the policy itself names is shown by its names: apps by the display names its app sets
//! carry (微信, not `com.tencent.mm`), rules with their descriptions; levels by their Chinese
//! names (秘密, 机密, 绝密).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use unic_langid::LanguageIdentifier;

use baomi_core::policy::ValidPolicy;

/// A console language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// 简体中文 (the default).
    #[default]
    ZhCn,
    /// English.
    En,
}

impl Lang {
    /// From a tag (`zh-CN`, `zh`, `en`, `en-GB`, ...); `None`: not one of ours.
    pub fn parse(tag: &str) -> Option<Self> {
        let tag = tag.trim().to_ascii_lowercase();
        if tag == "zh" || tag.starts_with("zh-") {
            Some(Lang::ZhCn)
        } else if tag == "en" || tag.starts_with("en-") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// Its BCP 47 tag (`<html lang>`).
    pub fn tag(self) -> &'static str {
        match self {
            Lang::ZhCn => "zh-CN",
            Lang::En => "en",
        }
    }

    /// The other one (the language switch).
    pub fn other(self) -> Self {
        match self {
            Lang::ZhCn => Lang::En,
            Lang::En => Lang::ZhCn,
        }
    }
}

const ZH_CN: &str = include_str!("../../locales/zh-CN/console.ftl");
const EN: &str = include_str!("../../locales/en/console.ftl");

fn bundle(tag: &str, ftl: &'static str) -> FluentBundle<FluentResource> {
    let id: LanguageIdentifier = tag.parse().unwrap_or_default();
    let mut b = FluentBundle::new_concurrent(vec![id]);
    // The pages are HTML escaped by maud; Unicode isolation marks would show in copied text.
    b.set_use_isolating(false);
    let resource = FluentResource::try_new(ftl.to_owned()).unwrap_or_else(|(r, errors)| {
        log::error!("console messages {tag}: {errors:?}");
        r
    });
    if let Err(errors) = b.add_resource(resource) {
        log::error!("console messages {tag}: {errors:?}");
    }
    b
}

static BUNDLES: LazyLock<[FluentBundle<FluentResource>; 2]> =
    LazyLock::new(|| [bundle("zh-CN", ZH_CN), bundle("en", EN)]);

/// The message ids a language defines (a test holds both languages to the same set).
pub fn message_ids(lang: Lang) -> Vec<String> {
    let ftl = match lang {
        Lang::ZhCn => ZH_CN,
        Lang::En => EN,
    };
    ftl.lines()
        .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_alphabetic()))
        .filter_map(|l| l.split_once('=').map(|(id, _)| id.trim().to_owned()))
        .collect()
}

/// What the published policy names: apps' display names and rules' descriptions.
#[derive(Debug, Clone, Default)]
pub struct PolicyNames {
    /// Package or bundle id -> display name.
    pub apps: BTreeMap<String, String>,
    /// Rule id -> description.
    pub rules: BTreeMap<String, String>,
    /// Rule ids of the policy, in its order.
    pub rule_ids: Vec<String>,
}

impl PolicyNames {
    /// From a policy.
    pub fn of(p: &ValidPolicy) -> Self {
        let mut apps = BTreeMap::new();
        for set in p.app_sets.values() {
            for (id, name) in &set.names {
                apps.insert(id.clone(), name.clone());
            }
        }
        Self {
            apps,
            rules: p
                .rules
                .iter()
                .filter(|r| !r.description.is_empty())
                .map(|r| (r.id.clone(), r.description.clone()))
                .collect(),
            rule_ids: p.rules.iter().map(|r| r.id.clone()).collect(),
        }
    }
}

/// Translates for one request: the language, the office's time zone, the policy's names.
#[derive(Debug, Clone)]
pub struct Tr {
    /// The language.
    pub lang: Lang,
    tz: jiff::tz::TimeZone,
    names: Arc<PolicyNames>,
}

/// The office's locale settings (`serve --console-language`, `--console-timezone`).
#[derive(Debug, Clone)]
pub struct Locale {
    /// The default language (an officer can switch; a cookie remembers it).
    pub lang: Lang,
    /// The time zone times are shown in.
    pub tz: jiff::tz::TimeZone,
    /// Its IANA name.
    pub tz_name: String,
}

impl Default for Locale {
    fn default() -> Self {
        Self {
            lang: Lang::ZhCn,
            tz: beijing(),
            tz_name: "Asia/Shanghai".into(),
        }
    }
}

fn beijing() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get("Asia/Shanghai")
        .unwrap_or_else(|_| jiff::tz::TimeZone::fixed(jiff::tz::offset(8)))
}

impl Locale {
    /// From the settings' text; a clear error for an unknown language or zone.
    pub fn new(lang: &str, tz: &str) -> Result<Self, String> {
        Ok(Self {
            lang: Lang::parse(lang)
                .ok_or_else(|| format!("console language `{lang}`: zh-CN or en"))?,
            tz: jiff::tz::TimeZone::get(tz)
                .map_err(|e| format!("console time zone `{tz}`: {e}"))?,
            tz_name: tz.to_owned(),
        })
    }
}

impl Tr {
    /// For `lang` in the office's locale, with the published policy's names.
    pub fn new(lang: Lang, locale: &Locale, names: Arc<PolicyNames>) -> Self {
        Self {
            lang,
            tz: locale.tz.clone(),
            names,
        }
    }

    fn bundle(&self) -> &'static FluentBundle<FluentResource> {
        &BUNDLES[match self.lang {
            Lang::ZhCn => 0,
            Lang::En => 1,
        }]
    }

    /// Message `id`; the id itself when it is missing (logged).
    pub fn t(&self, id: &str) -> String {
        self.format(id, None)
    }

    /// Message `id` with its arguments.
    pub fn t_with(&self, id: &str, args: &[(&str, FluentValue<'_>)]) -> String {
        let mut a = FluentArgs::new();
        for (k, v) in args {
            a.set(*k, v.clone());
        }
        self.format(id, Some(&a))
    }

    fn format(&self, id: &str, args: Option<&FluentArgs<'_>>) -> String {
        let b = self.bundle();
        let Some(pattern) = b.get_message(id).and_then(|m| m.value()) else {
            log::warn!("console message {id} missing in {}", self.lang.tag());
            return id.to_owned();
        };
        let mut errors = Vec::new();
        b.format_pattern(pattern, args, &mut errors).into_owned()
    }

    /// A time (ms) as people write it, in the office's zone: `2026-12-03 11:09:07`.
    pub fn when(&self, ms: i64) -> String {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| {
                t.to_zoned_datetime(self.tz.clone())
                    .strftime("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_else(|_| ms.to_string())
    }

    /// A day (ms) as a date input's value: `2026-12-03`.
    pub fn date(&self, ms: i64) -> String {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| {
                t.to_zoned_datetime(self.tz.clone())
                    .strftime("%Y-%m-%d")
                    .to_string()
            })
            .unwrap_or_default()
    }

    /// The start (`end == false`) or the last millisecond (`end`) of a date input's day in
    /// the office's zone; `None`: not a date.
    pub fn day_bound(&self, date: &str, end: bool) -> Option<i64> {
        let d: jiff::civil::Date = date.trim().parse().ok()?;
        let start = d.to_zoned_datetime(self.tz.clone()).ok()?;
        let ms = if end {
            start.tomorrow().ok()?.timestamp().as_millisecond() - 1
        } else {
            start.timestamp().as_millisecond()
        };
        Some(ms)
    }

    /// A duration (ms) in words: `42 秒`, `3 分钟`, `2 小时`.
    pub fn took(&self, ms: i64) -> String {
        let s = ms.max(0) / 1000;
        let (id, n) = if s < 120 {
            ("duration-seconds", s)
        } else if s < 7200 {
            ("duration-minutes", s / 60)
        } else {
            ("duration-hours", s / 3600)
        };
        self.t_with(id, &[("n", FluentValue::from(n))])
    }

    /// A classification or clearance by its name in this language (秘密, 机密, 绝密, ...);
    /// an unknown name as it is.
    pub fn level(&self, name: &str) -> String {
        if name.is_empty() {
            return "—".into();
        }
        let id = format!("level-{}", name.replace('_', "-"));
        let s = self.t(&id);
        if s == id { name.to_owned() } else { s }
    }

    /// An app by the display name the policy gives it, else its package or bundle id.
    pub fn app(&self, id: &str) -> String {
        match self.names.apps.get(id) {
            Some(n) => format!("{n} ({id})"),
            None => id.to_owned(),
        }
    }

    /// A rule's description in the policy, when it has one.
    pub fn rule_description(&self, id: &str) -> Option<&str> {
        self.names.rules.get(id).map(String::as_str)
    }

    /// The policy's rule ids (the rule filter's choices).
    pub fn rule_ids(&self) -> &[String] {
        &self.names.rule_ids
    }

    /// A name from a closed set (`state-alert`, `severity-high`, `kind-tamper`, ...): the
    /// message `{prefix}-{name}`, or the name itself.
    pub fn named(&self, prefix: &str, name: &str) -> String {
        let id = format!("{prefix}-{}", name.replace('_', "-"));
        let s = self.t(&id);
        if s == id { name.to_owned() } else { s }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;

    fn tr(lang: Lang) -> Tr {
        Tr::new(lang, &Locale::default(), Arc::default())
    }

    /// Both languages define the same messages: a page never shows a bare id in one of them.
    #[test]
    fn both_languages_define_the_same_messages() {
        let mut zh = message_ids(Lang::ZhCn);
        let mut en = message_ids(Lang::En);
        zh.sort();
        en.sort();
        assert!(zh.len() > 50, "{}", zh.len());
        assert_eq!(zh, en);
        for id in &zh {
            assert_ne!(tr(Lang::ZhCn).t(id), *id, "{id} does not format");
        }
    }

    #[test]
    fn beijing_time_as_people_write_it() {
        // 2026-12-03T03:09:07Z is 11:09 in Beijing.
        let ms = 1_796_267_347_000;
        assert_eq!(tr(Lang::ZhCn).when(ms), "2026-12-03 11:09:07");
        assert_eq!(tr(Lang::ZhCn).date(ms), "2026-12-03");
        let start = tr(Lang::ZhCn).day_bound("2026-12-03", false).unwrap();
        assert_eq!(tr(Lang::ZhCn).when(start), "2026-12-03 00:00:00");
        let end = tr(Lang::ZhCn).day_bound("2026-12-03", true).unwrap();
        assert_eq!(end - start, 86_400_000 - 1);
        assert_eq!(tr(Lang::ZhCn).day_bound("not a date", false), None);
    }

    #[test]
    fn levels_have_their_chinese_names() {
        let t = tr(Lang::ZhCn);
        assert_eq!(t.level("secret"), "秘密");
        assert_eq!(t.level("highly_secret"), "机密");
        assert_eq!(t.level("top_secret"), "绝密");
        assert_eq!(tr(Lang::En).level("top_secret"), "Top secret");
        assert_eq!(t.level("unheard_of"), "unheard_of");
    }
}
