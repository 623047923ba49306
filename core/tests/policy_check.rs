//! Policy documents: the baseline passes; each defect is reported with its path and rule id.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use baomi_core::policy::err::PolicyErrorKind;
use baomi_core::policy::{Policy, PolicyErrors};

const BASELINE: &str = include_str!("../../policies/baseline.json");

fn errors_of(doc: &str) -> PolicyErrors {
    Policy::from_json(doc.as_bytes()).unwrap_err()
}

fn with(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(BASELINE).unwrap();
    edit(&mut v);
    v.to_string()
}

#[test]
fn the_baseline_is_valid_and_encodes_the_published_measures() {
    let p = Policy::from_json(BASELINE.as_bytes()).unwrap();
    let ids: Vec<&str> = p.rules.iter().map(|r| r.id.as_str()).collect();
    assert!(ids.contains(&"no-messengers-for-classified-staff"));
    assert!(ids.contains(&"no-capture-during-custody"));
    assert!(ids.contains(&"no-capture-in-secure-zone"));
    assert!(ids.contains(&"no-sharing-into-messengers-during-custody"));
    let m = &p.app_sets["messengers"];
    assert!(m.android.contains(&"com.tencent.mm".to_owned()));
    assert!(m.ios.contains(&"com.tencent.xin".to_owned()));
    assert!(p.sync.fail_closed.camera_disabled);
}

#[test]
fn syntax_errors_give_the_line() {
    let errs = errors_of("{\n  \"format\": 1,\n  \"policy_id\": \n}");
    let e = &errs.0[0];
    assert!(matches!(e.kind(), PolicyErrorKind::Syntax(_)));
    assert_eq!(e.line(), Some(4));
}

#[test]
fn shape_errors_give_the_path_and_the_rule_id() {
    let doc = with(|v| v["rules"][1]["effects"][0] = serde_json::json!("disable_camra"));
    let errs = errors_of(&doc);
    let e = &errs.0[0];
    assert_eq!(e.path(), "rules[1].effects[0]");
    assert_eq!(e.rule(), Some("no-capture-during-custody"));
    assert!(e.to_string().contains("disable_camra"), "{e}");
    assert!(e.line().is_some());

    let doc = with(|v| v["rules"][0]["when"] = serde_json::json!({"clearance_at_least": "secret"}));
    let e = &errors_of(&doc).0[0];
    assert_eq!(e.path(), "rules[0].when.clearance_at_least");
    assert_eq!(e.rule(), Some("no-messengers-for-classified-staff"));

    let doc = with(|v| v["rules"][0]["mode"] = serde_json::json!("observe"));
    assert_eq!(errors_of(&doc).0[0].path(), "rules[0].mode");

    // Unknown fields are errors: a misspelt field must not silently do nothing.
    let doc = with(|v| v["sync"]["fail_closd"] = serde_json::json!({}));
    let e = &errors_of(&doc).0[0];
    assert!(e.to_string().contains("fail_closd"), "{e}");
}

#[test]
fn semantic_errors_are_all_reported_with_paths() {
    let doc = with(|v| {
        v["format"] = serde_json::json!(2);
        v["rules"][0]["effects"][0] = serde_json::json!({"ban_apps": "mesengers"});
        v["rules"][2]["id"] = serde_json::json!("no-capture-during-custody");
        v["rules"][2]["when"] = serde_json::json!({"in_zone": ["vault"]});
        v["rules"][3]["effects"][0]["deny_share_into"]["mime"] = serde_json::json!(["image"]);
        v["rules"][4]["id"] = serde_json::json!("baomi.mine");
        v["zones"]["reading-room"]["geofences"][0]["lat"] = serde_json::json!(95.0);
        v["zones"]["secrets-office"]["wifi_bssids"][0] = serde_json::json!("02:1a:11");
        v["app_sets"]["messengers"]["android"][0] = serde_json::json!("wechat");
        v["sync"]["interval_s"] = serde_json::json!(10);
        v["sync"]["fail_closed"]["ban_app_sets"] = serde_json::json!(["games"]);
    });
    let errs = errors_of(&doc);
    let found: Vec<(String, Option<String>)> = errs
        .iter()
        .map(|e| (e.path().to_owned(), e.rule().map(str::to_owned)))
        .collect();
    let expect = [
        ("format", None),
        ("app_sets.messengers.android[0]", None),
        ("zones.reading-room.geofences[0].lat", None),
        ("zones.secrets-office.wifi_bssids[0]", None),
        (
            "rules[0].effects[0].ban_apps",
            Some("no-messengers-for-classified-staff"),
        ),
        ("rules[2].id", Some("no-capture-during-custody")),
        (
            "rules[2].when.in_zone[0]",
            Some("no-capture-during-custody"),
        ),
        (
            "rules[3].effects[0].deny_share_into.mime[0]",
            Some("no-sharing-into-messengers-during-custody"),
        ),
        ("rules[4].id", Some("baomi.mine")),
        ("sync.interval_s", None),
        ("sync.fail_closed.ban_app_sets[0]", None),
    ];
    for (path, rule) in expect {
        assert!(
            found.contains(&(path.to_owned(), rule.map(str::to_owned))),
            "missing {path} {rule:?} in {found:#?}"
        );
    }
    assert!(
        errs.iter()
            .any(|e| matches!(e.kind(), PolicyErrorKind::UnsupportedFormat(2)))
    );
    assert!(
        errs.iter()
            .any(|e| matches!(e.kind(), PolicyErrorKind::DuplicateRuleId(_)))
    );
    assert!(
        errs.iter()
            .any(|e| matches!(e.kind(), PolicyErrorKind::UnknownZone(z) if z == "vault"))
    );
}

#[test]
fn deeply_nested_conditions_are_refused() {
    let mut cond = serde_json::json!({"clearance_at_least": "core"});
    for _ in 0..20 {
        cond = serde_json::json!({ "not": cond });
    }
    let doc = with(|v| v["rules"][0]["when"] = cond);
    let errs = errors_of(&doc);
    assert!(errs.to_string().contains("nest at most"), "{errs}");
}

// Issue 20, item 4: policy sizes were unbounded; an auditor's draft of one app set of 20,000
// packages and 2,500 rules stalled the office's server for 12-15 s, a 2 MB draft aborted it.
// Every place that accepts a policy (CLI, server, device) parses through here.
#[test]
fn policies_over_the_size_limits_are_refused_with_the_path() {
    let huge = with(|v| {
        let pkgs: Vec<String> = (0..20_000).map(|i| format!("com.example.app{i}")).collect();
        v["app_sets"]["messengers"]["android"] = serde_json::json!(pkgs);
        let rule = v["rules"][0].clone();
        let rules: Vec<serde_json::Value> = (0..2_500)
            .map(|i| {
                let mut r = rule.clone();
                r["id"] = serde_json::json!(format!("rule-{i}"));
                r
            })
            .collect();
        v["rules"] = serde_json::json!(rules);
    });
    let e = errors_of(&huge).to_string();
    assert!(
        e.contains("rules") && e.contains("over the limit of 2000"),
        "{e}"
    );
    assert!(
        e.contains("app_sets") && e.contains("over the limit of 10000"),
        "{e}"
    );
    // Over the byte limit: refused before it is parsed at all.
    let padded = with(|v| {
        v["description"] = serde_json::json!("x".repeat(1024 * 1024));
    });
    let e = errors_of(&padded).to_string();
    assert!(e.contains("over the 1048576-byte limit"), "{e}");
}
