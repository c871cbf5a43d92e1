//! Bad manifests are refused by the generated schema (structure and CEL), each with a message
//! that names the field. The same table runs against the real API server in the e2e suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use kube::CustomResourceExt;
use microseg::api::validate::against_crd;
use microseg::api::{EnforcementWindow, SegmentationPolicy};
use serde_json::{Value, json};

fn window() -> Value {
    json!({
        "apiVersion": "microseg.io/v1alpha1", "kind": "EnforcementWindow",
        "metadata": {"name": "w", "namespace": "shop"},
        "spec": {
            "notifyAt": "2027-02-01T09:00:00Z",
            "monitorFrom": "2027-02-01T09:00:00Z",
            "enforceAt": "2027-02-16T09:00:00Z"
        }
    })
}

fn policy() -> Value {
    json!({
        "apiVersion": "microseg.io/v1alpha1", "kind": "SegmentationPolicy",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "owners": [{"name": "Web team", "email": "web@example.com"}],
            "criticality": "Medium",
            "window": {"name": "w"},
            "members": [{"vmTag": {"tag": "web"}}],
            "rules": [{
                "name": "https", "direction": "Inbound",
                "peers": [{"cidr": "10.0.0.0/8"}],
                "ports": [{"protocol": "TCP", "port": 443}]
            }]
        }
    })
}

/// Sets (or adds) the value at a JSON pointer.
fn set(mut v: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    match v.pointer_mut(parent).unwrap() {
        Value::Object(map) => {
            map.insert(key.to_string(), value);
        }
        Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
        other => panic!("cannot set {pointer} in {other}"),
    }
    v
}

/// (what, manifest, text the refusal must contain)
fn cases() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    let w = window();
    let p = policy();
    vec![
        (
            "monitorFrom before notifyAt",
            set(
                w.clone(),
                "/spec/monitorFrom",
                json!("2027-01-01T00:00:00Z"),
            ),
            "notifyAt",
            "notifyAt must not be after monitorFrom",
        ),
        (
            "enforceAt before monitorFrom",
            set(w.clone(), "/spec/enforceAt", json!("2027-01-31T00:00:00Z")),
            "monitorFrom",
            "monitorFrom must not be after enforceAt",
        ),
        (
            "notice shorter than minimumNotice",
            set(w.clone(), "/spec/enforceAt", json!("2027-02-10T09:00:00Z")),
            "enforceAt",
            "at least minimumNotice",
        ),
        (
            "cleanupAt before enforceAt",
            set(w.clone(), "/spec/cleanupAt", json!("2027-02-02T09:00:00Z")),
            "cleanupAt",
            "cleanupAt must not be before enforceAt",
        ),
        (
            "duration in days",
            set(w.clone(), "/spec/minimumNotice", json!("14d")),
            "spec.minimumNotice",
            "should match",
        ),
        (
            "not a timestamp",
            set(w.clone(), "/spec/notifyAt", json!("next tuesday")),
            "spec.notifyAt",
            "date-time",
        ),
        (
            "timestamp in year 10000",
            set(w.clone(), "/spec/enforceAt", json!("10000-01-01T00:00:00Z")),
            "spec.enforceAt",
            "should match",
        ),
        (
            "timestamp after the last one the controller can represent",
            // 9999-12-31 already fails the local date-time check (jiff cannot hold it); the
            // e2e suite checks the API server refuses it with this message.
            set(
                w.clone(),
                "/spec/enforceAt",
                json!("9999-12-30T22:00:00.5Z"),
            ),
            "enforceAt",
            "must be between 1970-01-01T00:00:00Z and 9999-12-30T22:00:00Z",
        ),
        (
            "timestamp before 1970",
            set(
                set(w.clone(), "/spec/notifyAt", json!("1969-12-31T23:59:59Z")),
                "/spec/monitorFrom",
                json!("1969-12-31T23:59:59Z"),
            ),
            "notifyAt",
            "must be between 1970-01-01T00:00:00Z and 9999-12-30T22:00:00Z",
        ),
        (
            "blackout before 1970",
            set(
                w.clone(),
                "/spec/blackouts",
                json!([{"start": "1960-01-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}]),
            ),
            "start",
            "must be between 1970-01-01T00:00:00Z",
        ),
        (
            "timestamp with more than nine fraction digits",
            set(
                w.clone(),
                "/spec/cleanupAt",
                json!("2027-03-01T09:00:00.1234567891Z"),
            ),
            "spec.cleanupAt",
            "should match",
        ),
        (
            "far-future window with too short a notice",
            set(
                set(
                    set(w.clone(), "/spec/notifyAt", json!("9999-12-20T00:00:00Z")),
                    "/spec/monitorFrom",
                    json!("9999-12-20T00:00:00Z"),
                ),
                "/spec/enforceAt",
                json!("9999-12-30T22:00:00Z"),
            ),
            "enforceAt",
            "at least minimumNotice",
        ),
        (
            "duration overflowing int64 nanoseconds",
            set(w.clone(), "/spec/minimumNotice", json!("99999999999h")),
            "spec.minimumNotice",
            "should match",
        ),
        (
            "duration over ten years",
            set(w.clone(), "/spec/minimumNotice", json!("87601h")),
            "minimumNotice",
            "must be at most 87600h (10 years)",
        ),
        (
            "gate duration over ten years",
            set(w.clone(), "/spec/gates", json!({"quietPeriod": "99999h"})),
            "quietPeriod",
            "must be at most 87600h (10 years)",
        ),
        (
            "duplicate rule names",
            {
                let mut v = p.clone();
                let r = v["spec"]["rules"][0].clone();
                v["spec"]["rules"].as_array_mut().unwrap().push(r);
                v
            },
            "spec.rules[1]",
            "Duplicate value",
        ),
        (
            "bad CIDR",
            set(
                p.clone(),
                "/spec/rules/0/peers/0/cidr",
                json!("10.0.0.0/33"),
            ),
            "cidr",
            "IP address or a CIDR",
        ),
        (
            "port 0",
            set(p.clone(), "/spec/rules/0/ports/0/port", json!(0)),
            "spec.rules[0].ports[0].port",
            "at least 1",
        ),
        (
            "port 70000",
            set(p.clone(), "/spec/rules/0/ports/0/port", json!(70000)),
            "spec.rules[0].ports[0].port",
            "at most 65535",
        ),
        (
            "unknown criticality",
            set(p.clone(), "/spec/criticality", json!("Extreme")),
            "spec.criticality",
            "Unsupported value",
        ),
        (
            "unknown direction",
            set(p.clone(), "/spec/rules/0/direction", json!("Sideways")),
            "spec.rules[0].direction",
            "Unsupported value",
        ),
        (
            "no owners",
            set(p.clone(), "/spec/owners", json!([])),
            "spec.owners",
            "at least 1",
        ),
        (
            "owner nobody can reach",
            set(p.clone(), "/spec/owners/0", json!({"name": "x"})),
            "owners",
            "email or a webhook",
        ),
        (
            "member with two kinds",
            set(
                p.clone(),
                "/spec/members/0",
                json!({"vmTag": {"tag": "a"}, "ipAddress": "10.0.0.1"}),
            ),
            "members",
            "exactly one of vmTag",
        ),
        (
            "port on ICMP",
            set(
                p.clone(),
                "/spec/rules/0/ports/0",
                json!({"protocol": "ICMP", "port": 8}),
            ),
            "ports",
            "only TCP and UDP have ports",
        ),
        (
            "reversed port range",
            set(
                p.clone(),
                "/spec/rules/0/ports/0",
                json!({"protocol": "TCP", "port": 9000, "endPort": 8000}),
            ),
            "ports",
            "endPort",
        ),
        (
            "any with other peers",
            set(
                p.clone(),
                "/spec/rules/0/peers",
                json!([{"any": true}, {"cidr": "10.0.0.0/8"}]),
            ),
            "rules",
            "'any' must be the only peer",
        ),
        (
            "bad rule name",
            set(p.clone(), "/spec/rules/0/name", json!("Allow HTTPS")),
            "spec.rules[0].name",
            "should match",
        ),
        (
            "unknown field",
            set(p.clone(), "/spec/rules/0/protocol", json!("TCP")),
            "spec.rules[0].protocol",
            "unknown field",
        ),
        (
            "bad NSX path",
            set(
                p.clone(),
                "/spec/rules/0/peers/0",
                json!({"nsxGroup": "groups/web"}),
            ),
            "nsxGroup",
            "should match",
        ),
        (
            "too many conditions",
            set(
                p.clone(),
                "/spec/members",
                json!(
                    (0..6)
                        .map(|i| json!({"vmTag": {"tag": format!("t{i}")}}))
                        .collect::<Vec<_>>()
                ),
            ),
            "members",
            "at most 5",
        ),
        (
            "name too long for NSX ids",
            set(p.clone(), "/metadata/name", json!("x".repeat(64))),
            "",
            "at most 63 characters",
        ),
    ]
}

#[test]
fn valid_manifests_pass() {
    assert_eq!(against_crd(&EnforcementWindow::crd(), &window()), vec![]);
    assert_eq!(against_crd(&SegmentationPolicy::crd(), &policy()), vec![]);
}

/// Far-future windows and long durations the controller can represent are accepted: a CEL rule
/// that subtracted the timestamps would overflow int64 nanoseconds (about 292 years).
#[test]
fn windows_at_the_ends_of_the_range_pass() {
    let far = set(window(), "/spec/enforceAt", json!("9999-12-20T00:00:00Z"));
    let last = set(
        set(
            set(
                far.clone(),
                "/spec/cleanupAt",
                json!("9999-12-30T22:00:00Z"),
            ),
            "/spec/minimumNotice",
            json!("87600h"),
        ),
        "/spec/gates",
        json!({"quietPeriod": "72h", "maxLogSilence": "1h30m", "rollback": {"droppedFlows": 1, "period": "0.5s"}}),
    );
    let epoch = set(
        set(window(), "/spec/notifyAt", json!("1970-01-01T00:00:00Z")),
        "/spec/monitorFrom",
        json!("1970-01-01T00:00:00+00:00"),
    );
    for manifest in [far, last, epoch] {
        assert_eq!(
            against_crd(&EnforcementWindow::crd(), &manifest),
            vec![],
            "{manifest}"
        );
        // ... and the controller can read every one of them.
        serde_json::from_value::<EnforcementWindow>(manifest).unwrap();
    }
}

#[test]
fn every_bad_manifest_is_refused_with_a_message_naming_the_field() {
    for (what, manifest, field, text) in cases() {
        let crd = match manifest["kind"].as_str() {
            Some("EnforcementWindow") => EnforcementWindow::crd(),
            _ => SegmentationPolicy::crd(),
        };
        let errors = against_crd(&crd, &manifest);
        assert!(
            errors
                .iter()
                .any(|e| e.field.contains(field) && e.reason.contains(text)),
            "{what}: expected an error on {field:?} containing {text:?}, got {errors:?}"
        );
    }
}
