//! The controller's event recorder on a real API server: a repeated event becomes one Event
//! whose `series` counts the repeats (what `kubectl describe` shows as "x3 over …"), a
//! different note is an Event of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use crate::common;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Reporter};
use microseg::controller::events::Recorder;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_event_counts_in_one_series_and_another_note_is_its_own_event() {
    let cp = common::shared();
    let ns = cp.namespace("events");
    cp.kubectl_ok(&["create", "configmap", "subject", "-n", &ns]);
    let uid = cp.kubectl_ok(&[
        "get",
        "configmap",
        "subject",
        "-n",
        &ns,
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let recorder = Recorder::new(
        cp.client().await,
        Reporter {
            controller: "microseg.io".into(),
            instance: Some("replica-a".into()),
        },
    );
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        namespace: Some(ns.clone()),
        name: Some("subject".into()),
        uid: Some(uid),
        ..Default::default()
    };
    let event = |note: &str| Event {
        type_: EventType::Warning,
        reason: "NsxUnreachable".into(),
        note: Some(note.into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    for _ in 0..3 {
        recorder
            .publish(&event("NSX did not answer"), &reference)
            .await
            .unwrap();
    }
    recorder
        .publish(&event("NSX answered 503"), &reference)
        .await
        .unwrap();

    let out = cp.kubectl_ok(&["get", "events.events.k8s.io", "-n", &ns, "-o", "json"]);
    let items: Value = serde_json::from_str(&out).unwrap();
    let mut seen: Vec<(String, i64, String)> = items["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["note"].as_str().unwrap_or_default().to_string(),
                e["series"]["count"].as_i64().unwrap_or(1),
                e["reportingInstance"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("NSX answered 503".to_string(), 1, "replica-a".to_string()),
            ("NSX did not answer".to_string(), 3, "replica-a".to_string()),
        ],
        "{items:#}"
    );
}
