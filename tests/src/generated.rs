//! A generated policy of any size, and the same policy in Cedar, for the benchmarks (and for
//! tests that want a large policy). With `rules = 1000`: 200 app sets of 5 apps, 100 zones.
//!
//! Rule `r` (zones and sets picked round-robin):
//! - `r % 4 == 0`: ban a set for clearance >= general inside a zone;
//! - `r % 4 == 1`: camera and screen capture off inside a zone during custody of secret+;
//! - `r % 4 == 2`: deny sharing images into a set during any custody inside a zone;
//! - `r % 4 == 3`: ban a set for clearance >= important inside either of two zones.

use std::fmt::Write as _;

use serde_json::{Value, json};

/// The beacon UUID every generated zone shares (zones differ by major).
pub const GENERATED_BEACON_UUID: &str = "5a4bcfce-174e-4bac-a814-092e77f6b7e5";

/// Sizes derived from the rule count.
pub fn shape(rules: usize) -> (usize, usize) {
    ((rules / 5).max(1), (rules / 10).max(1))
}

/// Package `j` of set `i`.
pub fn package(set: usize, j: usize) -> String {
    format!("cn.gen.s{set}.a{j}")
}

/// The generated policy document (JSON).
pub fn policy_json(rules: usize) -> String {
    let (sets, zones) = shape(rules);
    let mut app_sets = serde_json::Map::new();
    for i in 0..sets {
        app_sets.insert(
            format!("set-{i}"),
            json!({
                "android": (0..5).map(|j| package(i, j)).collect::<Vec<_>>(),
                "ios": (0..5).map(|j| format!("cn.gen.s{i}.ios{j}")).collect::<Vec<_>>(),
            }),
        );
    }
    let mut zone_map = serde_json::Map::new();
    for k in 0..zones {
        zone_map.insert(
            format!("zone-{k}"),
            json!({
                "beacons": [{"uuid": GENERATED_BEACON_UUID, "major": 1000 + k, "timeout_s": 30, "min_rssi": -90}],
                "wifi_bssids": [format!("02:00:00:00:{:02x}:{:02x}", k / 256, k % 256)],
                "nfc_check_in": [format!("gen:zone-{k}:in")],
                "nfc_check_out": [format!("gen:zone-{k}:out")],
            }),
        );
    }
    let rule_list: Vec<Value> = (0..rules)
        .map(|r| {
            let set = format!("set-{}", r % sets);
            let zone = format!("zone-{}", r % zones);
            let (when, effects) = match r % 4 {
                0 => (
                    json!({"all": [{"clearance_at_least": "general"}, {"in_zone": [zone]}]}),
                    json!([{"ban_apps": set}]),
                ),
                1 => (
                    json!({"all": [{"in_zone": [zone]}, {"custody_at_least": "secret"}]}),
                    json!(["disable_camera", "disable_screen_capture"]),
                ),
                2 => (
                    json!({"all": [{"custody_at_least": "work_secret"}, {"in_zone": [zone]}]}),
                    json!([{"deny_share_into": {"app_set": set, "mime": ["image/*"]}}]),
                ),
                _ => (
                    json!({"all": [{"clearance_at_least": "important"},
                                    {"any": [{"in_zone": [zone]}, {"in_zone": [format!("zone-{}", (r + 1) % zones)]}]}]}),
                    json!([{"ban_apps": set}]),
                ),
            };
            json!({"id": format!("rule-{r}"), "severity": "high", "when": when, "effects": effects})
        })
        .collect();
    json!({
        "format": 1,
        "policy_id": format!("generated-{rules}"),
        "description": format!("generated: {rules} rules, {sets} app sets, {zones} zones"),
        "app_sets": app_sets,
        "zones": zone_map,
        "rules": rule_list,
        "sync": {"interval_s": 900, "max_offline_s": 259200,
                 "fail_closed": {"camera_disabled": true, "screen_capture_disabled": true, "ban_app_sets": []}},
    })
    .to_string()
}

/// The same rules as Cedar policies over `User` (clearance 0-3), `App` in `AppSet`, actions
/// `launch`, `capture`, `share`, and a context `{zones: Set<String>, custody: Long}`.
pub fn cedar_policies(rules: usize) -> String {
    let (sets, zones) = shape(rules);
    let mut out = String::from("permit(principal, action, resource);\n");
    for r in 0..rules {
        let set = format!("AppSet::\"set-{}\"", r % sets);
        let zone = format!("\"zone-{}\"", r % zones);
        let _ = match r % 4 {
            0 => writeln!(
                out,
                "forbid(principal, action == Action::\"launch\", resource in {set}) when {{ principal.clearance >= 1 && context.zones.contains({zone}) }};"
            ),
            1 => writeln!(
                out,
                "forbid(principal, action == Action::\"capture\", resource) when {{ context.zones.contains({zone}) && context.custody >= 2 }};"
            ),
            2 => writeln!(
                out,
                "forbid(principal, action == Action::\"share\", resource in {set}) when {{ context.custody >= 1 && context.zones.contains({zone}) }};"
            ),
            _ => writeln!(
                out,
                "forbid(principal, action == Action::\"launch\", resource in {set}) when {{ principal.clearance >= 2 && (context.zones.contains({zone}) || context.zones.contains(\"zone-{}\")) }};",
                (r + 1) % zones
            ),
        };
    }
    out
}

/// Entities for [`cedar_policies`]: the holder and every app with its set.
pub fn cedar_entities(rules: usize, clearance: i64) -> String {
    let (sets, _) = shape(rules);
    let mut v = vec![
        json!({"uid": {"type": "User", "id": "holder"}, "attrs": {"clearance": clearance}, "parents": []}),
    ];
    for i in 0..sets {
        v.push(json!({"uid": {"type": "AppSet", "id": format!("set-{i}")}, "attrs": {}, "parents": []}));
        for j in 0..5 {
            v.push(
                json!({"uid": {"type": "App", "id": package(i, j)}, "attrs": {},
                          "parents": [{"type": "AppSet", "id": format!("set-{i}")}]}),
            );
        }
    }
    Value::Array(v).to_string()
}

/// The baseline's enforcing rules in Cedar (the monitor-only rule records, it never denies).
pub const CEDAR_BASELINE: &str = r#"
permit(principal, action, resource);
forbid(principal, action == Action::"launch", resource in AppSet::"messengers") when { principal.clearance >= 1 };
forbid(principal, action == Action::"capture", resource) when { context.custody >= 2 };
forbid(principal, action == Action::"capture", resource) when { context.zones != [] };
forbid(principal, action == Action::"share", resource in AppSet::"messengers") when { context.custody >= 1 };
"#;

/// Entities for [`CEDAR_BASELINE`].
pub fn cedar_baseline_entities(clearance: i64) -> String {
    let mut v = vec![
        json!({"uid": {"type": "User", "id": "holder"}, "attrs": {"clearance": clearance}, "parents": []}),
        json!({"uid": {"type": "AppSet", "id": "messengers"}, "attrs": {}, "parents": []}),
    ];
    for p in [
        "com.tencent.mm",
        "com.tencent.wework",
        "com.tencent.mobileqq",
        "com.alibaba.android.rimet",
        "com.sina.weibo",
        "com.android.calculator2",
    ] {
        let parents = if p == "com.android.calculator2" {
            json!([])
        } else {
            json!([{"type": "AppSet", "id": "messengers"}])
        };
        v.push(json!({"uid": {"type": "App", "id": p}, "attrs": {}, "parents": parents}));
    }
    Value::Array(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_policies_validate_at_every_size() {
        for n in [1, 10, 100, 1000] {
            let p = baomi_core::Policy::from_json(policy_json(n).as_bytes()).unwrap();
            p.validate().unwrap();
            assert_eq!(p.rules.len(), n);
        }
        let (sets, zones) = shape(1000);
        assert_eq!((sets, zones), (200, 100));
    }
}
