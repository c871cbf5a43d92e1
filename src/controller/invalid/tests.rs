use futures::StreamExt;
use kube::runtime::reflector;
use serde_json::json;

use kube::ResourceExt;

use super::*;
use crate::api::EnforcementWindow;

fn window(name: &str, version: &str, minimum_notice: &str) -> DeserializeGuard<EnforcementWindow> {
    serde_json::from_value(json!({
        "apiVersion": "microseg.io/v1alpha1", "kind": "EnforcementWindow",
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": version},
        "spec": {
            "notifyAt": "2027-02-01T09:00:00Z",
            "monitorFrom": "2027-02-01T09:00:00Z",
            "enforceAt": "2027-02-16T09:00:00Z",
            "minimumNotice": minimum_notice,
        }
    }))
    .unwrap()
}

fn good(name: &str, version: &str) -> DeserializeGuard<EnforcementWindow> {
    window(name, version, "336h")
}

/// `14d` passed an older, looser schema; Rust refuses it.
fn bad(name: &str, version: &str) -> DeserializeGuard<EnforcementWindow> {
    let w = window(name, version, "14d");
    assert!(w.0.is_err());
    w
}

fn gauge(family: &Family<KindLabel, Gauge>) -> i64 {
    family
        .get_or_create(&KindLabel {
            kind: "EnforcementWindow".into(),
        })
        .get()
}

fn names(e: &Option<Result<Event<EnforcementWindow>, watcher::Error>>) -> String {
    match e {
        None => "skipped".into(),
        Some(Err(_)) => "error".into(),
        Some(Ok(Event::Init)) => "Init".into(),
        Some(Ok(Event::InitDone)) => "InitDone".into(),
        Some(Ok(Event::InitApply(w))) => format!("InitApply {}", w.name_any()),
        Some(Ok(Event::Apply(w))) => format!("Apply {}", w.name_any()),
        Some(Ok(Event::Delete(w))) => format!("Delete {}", w.name_any()),
    }
}

#[test]
fn undecodable_objects_are_skipped_and_counted_while_the_others_pass() {
    let family = Family::<KindLabel, Gauge>::default();
    let mut t = Tracker::new(
        "EnforcementWindow".into(),
        OnInvalid::skip().warn_and_count(family.clone()),
    );
    let steps: Vec<(Event<DeserializeGuard<EnforcementWindow>>, &str, i64)> = vec![
        (Event::Init, "Init", 0),
        (Event::InitApply(good("a", "1")), "InitApply a", 0),
        (Event::InitApply(bad("b", "2")), "skipped", 0),
        (Event::InitApply(bad("c", "3")), "skipped", 0),
        // The gauge moves when the listing is complete.
        (Event::InitDone, "InitDone", 2),
        // A new bad version is counted once.
        (Event::Apply(bad("b", "4")), "skipped", 2),
        // Fixed: it passes again and leaves the count.
        (Event::Apply(good("b", "5")), "Apply b", 1),
        // Deleting an object that never decoded.
        (Event::Delete(bad("c", "6")), "skipped", 0),
        // A decodable delete of an object the stores never held.
        (Event::Delete(good("z", "7")), "Delete z", 0),
        (Event::Apply(bad("d", "8")), "skipped", 1),
        // A relist that no longer returns d resets the count.
        (Event::Init, "Init", 1),
        (Event::InitApply(good("a", "1")), "InitApply a", 1),
        (Event::InitDone, "InitDone", 0),
    ];
    for (i, (event, expected, count)) in steps.into_iter().enumerate() {
        let out = t.handle(Ok(event));
        assert_eq!(names(&out), expected, "step {i}");
        assert_eq!(gauge(&family), count, "step {i}");
    }
    let err = t.handle::<EnforcementWindow>(Err(watcher::Error::NoResourceVersion));
    assert_eq!(names(&err), "error", "watch errors pass through");
}

#[test]
fn each_version_of_an_undecodable_object_is_reported_once() {
    let mut t = Tracker::new("EnforcementWindow".into(), OnInvalid::skip());
    t.handle(Ok(Event::Apply(bad("b", "2"))));
    assert_eq!(t.invalid.get("shop/b").map(String::as_str), Some("2"));
    // A relist returning the same version finds it known (no second report) and keeps it.
    t.handle(Ok(Event::<DeserializeGuard<EnforcementWindow>>::Init));
    t.handle(Ok(Event::InitApply(bad("b", "2"))));
    t.handle(Ok(Event::<DeserializeGuard<EnforcementWindow>>::InitDone));
    assert_eq!(t.invalid.len(), 1);
    t.handle(Ok(Event::Delete(good("b", "3"))));
    assert!(t.invalid.is_empty());
}

#[tokio::test]
async fn a_store_behind_the_guard_holds_every_decodable_object() {
    let (store, writer) = reflector::store::<EnforcementWindow>();
    let events = futures::stream::iter(vec![
        Ok(Event::Init),
        Ok(Event::InitApply(good("a", "1"))),
        Ok(Event::InitApply(bad("b", "2"))),
        Ok(Event::InitApply(good("c", "3"))),
        Ok(Event::InitDone),
        Ok(Event::Apply(bad("a", "4"))),
        Ok(Event::Delete(good("b", "5"))),
        Ok(Event::Apply(good("d", "6"))),
    ]);
    let passed: Vec<_> = reflector::reflector(writer, guard(events, OnInvalid::skip()))
        .collect()
        .await;
    assert!(passed.iter().all(Result::is_ok));
    let mut names: Vec<String> = store.state().iter().map(|w| w.name_any()).collect();
    names.sort();
    // a keeps its last decodable version until the next relist; b never entered.
    assert_eq!(names, ["a", "c", "d"]);
    assert_eq!(
        store
            .state()
            .iter()
            .find(|w| w.name_any() == "a")
            .and_then(|w| w.metadata.resource_version.clone())
            .as_deref(),
        Some("1")
    );
}

#[test]
fn notes_are_cut_at_a_character_boundary() {
    let long = "é".repeat(NOTE_MAX_BYTES);
    let cut = truncate(&long);
    assert!(cut.len() <= NOTE_MAX_BYTES);
    assert!(cut.chars().all(|c| c == 'é'));
    assert_eq!(truncate("short"), "short");
}
