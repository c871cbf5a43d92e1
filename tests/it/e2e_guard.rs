//! No single object takes the brakes away, on a real kube-apiserver: a reconcile that panics is
//! reported on its object (Ready=False with reason ReconcilePanicked, a Warning event) without
//! touching the rest of its status, and an object the controller cannot decode is skipped and
//! reported while the others of its kind are still served.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, CustomResourceExt, ResourceExt};
use microseg::api::k8s::CustomResourceDefinition;
use microseg::api::{EnforcementWindow, SegmentationPolicy};
use microseg::controller::events::Recorder;
use microseg::controller::guard;
use microseg::controller::invalid::{OnInvalid, guarded_watcher};
use microseg::controller::metrics::{KindLabel, Metrics};
use microseg::controller::{Context, Error, Settings, SystemClock};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

/// A controller context; NSX is never called (the reconciles under test do not get that far).
fn context(client: &Client, dir: &std::path::Path) -> Arc<Context> {
    let (user, password) = (dir.join("nsx-user"), dir.join("nsx-password"));
    std::fs::write(&user, "admin").unwrap();
    std::fs::write(&password, "unused").unwrap();
    let nsx = microseg::nsx::Client::new(microseg::nsx::ClientConfig::new(
        "https://127.0.0.1:9",
        microseg::nsx::AuthConfig::Basic(microseg::nsx::Credentials::files(user, password)),
    ))
    .unwrap();
    Arc::new(Context {
        client: client.clone(),
        nsx: Arc::new(nsx),
        notifier: None,
        events: microseg::controller::events::Events::spawn(recorder(client)),
        identity: microseg::nsx::naming::Identity::new("e2e").unwrap(),
        policies: reflector::store().0,
        windows: reflector::store().0,
        metrics: Arc::new(Metrics::register(&mut Registry::default())),
        clock: Arc::new(SystemClock),
        settings: Settings::default(),
        members: Default::default(),
        status_writes: Default::default(),
        notice_sends: Default::default(),
        statuses: Default::default(),
        ahead: Default::default(),
    })
}

fn recorder(client: &Client) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: "microseg".into(),
            instance: None,
        },
    )
}

/// Polls `check` until it returns `Some`, for at most 30 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn warning_events(client: &Client, ns: &str, name: &str, reason: &str) -> Vec<KubeEvent> {
    let events: Api<KubeEvent> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect()
}

fn condition<'a>(p: &'a SegmentationPolicy, type_: &str) -> &'a microseg::api::k8s::Condition {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", p.status))
}

fn status_condition(type_: &str, status: &str, reason: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": "as the controller wrote it",
           "lastTransitionTime": "2027-01-01T00:00:00Z", "observedGeneration": 1})
}

#[tokio::test]
async fn a_panicking_reconcile_is_reported_on_its_object_and_the_rest_of_the_status_kept() {
    let cp = common::shared();
    let ns = cp.namespace("guard");
    let client = cp.client().await;
    let api: Api<SegmentationPolicy> = Api::namespaced(client.clone(), &ns);
    let manifest = json!({
        "apiVersion": "microseg.io/v1alpha1", "kind": "SegmentationPolicy",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "owners": [{"name": "Web team", "email": "web@example.com"}],
            "criticality": "Medium",
            "window": {"name": "w"},
            "members": [{"vmTag": {"tag": "web"}}],
        }
    });
    api.create(
        &PostParams::default(),
        &serde_json::from_value(manifest).unwrap(),
    )
    .await
    .unwrap();
    // The status the controller's own field manager wrote.
    let main = |ready: &str| {
        json!({
            "apiVersion": "microseg.io/v1alpha1", "kind": "SegmentationPolicy",
            "status": {"phase": "Monitoring", "conditions": [
                status_condition("Ready", ready, "AsExpected"),
                status_condition("Synced", "True", "InSync"),
            ]}
        })
    };
    api.patch_status(
        "web",
        &PatchParams::apply("microseg").force(),
        &Patch::Apply(main("True")),
    )
    .await
    .unwrap();
    let policy = Arc::new(api.get("web").await.unwrap());
    let ctx = context(&client, cp.dir());

    // A reconcile that does not panic is passed through untouched.
    let ok = guard::catch(policy.clone(), ctx.clone(), |_, _| async {
        Ok(Action::await_change())
    })
    .await;
    assert_eq!(ok.unwrap(), Action::await_change());

    let result = guard::catch(policy.clone(), ctx.clone(), |_, _| async {
        panic!("index out of bounds: the len is 0 but the index is 3")
    })
    .await;
    let err = result.expect_err("the panic became an error");
    assert!(
        matches!(&err, Error::ReconcilePanicked { object, message }
            if *object == format!("{ns}/web") && message.contains("index out of bounds")),
        "{err:?}"
    );
    assert_eq!(err.category(), "ReconcilePanicked");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(
        ctx.metrics
            .reconcile_panics
            .get_or_create(&KindLabel {
                kind: "SegmentationPolicy".into()
            })
            .get(),
        1
    );

    let after = api.get("web").await.unwrap();
    let ready = condition(&after, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ReconcilePanicked")
    );
    assert!(ready.message.contains("index out of bounds"), "{ready:?}");
    // Only Ready moved: what the main field manager owns is still there.
    assert_eq!(condition(&after, "Synced").status, "True");
    assert_eq!(
        after
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .map(|p| p.to_string()),
        Some("Monitoring".to_string())
    );
    let managers: Vec<String> = after
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.iter().any(|m| m == guard::FIELD_MANAGER),
        "{managers:?}"
    );

    let events = eventually("the ReconcilePanicked event", || {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            let e = warning_events(&client, &ns, "web", "ReconcilePanicked").await;
            (!e.is_empty()).then_some(e)
        }
    })
    .await;
    assert!(
        events[0]
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("index out of bounds"),
        "{events:?}"
    );

    // The controller's next status write takes Ready back.
    api.patch_status(
        "web",
        &PatchParams::apply("microseg").force(),
        &Patch::Apply(main("True")),
    )
    .await
    .unwrap();
    let healed = api.get("web").await.unwrap();
    assert_eq!(condition(&healed, "Ready").status, "True");
    assert_eq!(condition(&healed, "Ready").reason, "AsExpected");
}

/// A merge patch setting the window CRD's versions (a merge patch replaces the whole list).
fn window_versions(relaxed: bool) -> Value {
    let mut crd = serde_json::to_value(EnforcementWindow::crd()).unwrap();
    if relaxed {
        // `postEnforcementMonitoring` unchecked, as an older schema might have left it: the only
        // way to store an object the controller cannot decode.
        let field = crd
            .pointer_mut("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/postEnforcementMonitoring")
            .and_then(Value::as_object_mut)
            .unwrap();
        field.remove("pattern");
        field.remove("x-kubernetes-validations");
    }
    json!({"spec": {"versions": crd["spec"]["versions"]}})
}

#[tokio::test]
async fn an_undecodable_window_is_skipped_and_reported_while_the_others_are_served() {
    // Its own API server: the test relaxes the window CRD's schema, which the schema tests and
    // every controller on the shared server would see.
    let cp = common::ControlPlane::start();
    cp.install_crds();
    let ns = cp.namespace("invalid");
    let client = cp.client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "enforcementwindows.microseg.io",
        &PatchParams::default(),
        &Patch::Merge(window_versions(true)),
    )
    .await
    .unwrap();

    let windows: Api<EnforcementWindow> = Api::namespaced(client.clone(), &ns);
    let window = |name: &str, post: &str| {
        json!({
            "apiVersion": "microseg.io/v1alpha1", "kind": "EnforcementWindow",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "notifyAt": "2027-02-01T09:00:00Z",
                "monitorFrom": "2027-02-01T09:00:00Z",
                "enforceAt": "2027-02-16T09:00:00Z",
                "postEnforcementMonitoring": post,
            }
        })
    };
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::erase::<EnforcementWindow>(&()),
    );
    // The API server takes the relaxed schema a moment after the update.
    eventually("the relaxed schema", || {
        let raw = raw.clone();
        let bad = window("bad", "14d");
        async move {
            raw.patch("bad", &PatchParams::apply("e2e-guard"), &Patch::Apply(bad))
                .await
                .ok()
        }
    })
    .await;
    raw.patch(
        "good",
        &PatchParams::apply("e2e-guard"),
        &Patch::Apply(window("good", "336h")),
    )
    .await
    .unwrap();
    // The premise: a typed list fails as a whole.
    assert!(windows.list(&ListParams::default()).await.is_err());

    let metrics = Metrics::register(&mut Registry::default());
    let (store, writer) = reflector::store();
    let on_invalid = OnInvalid::skip()
        .warn_and_count(metrics.invalid_objects.clone())
        .publish_with(recorder(&client));
    let watch = tokio::spawn(
        guarded_watcher(&windows, watcher::Config::default(), on_invalid)
            .default_backoff()
            .reflect(writer)
            .for_each(|_| futures::future::ready(())),
    );
    let invalid = || {
        metrics
            .invalid_objects
            .get_or_create(&KindLabel {
                kind: "EnforcementWindow".into(),
            })
            .get()
    };
    eventually("the good window in the store", || {
        let found = store.get(&reflector::ObjectRef::new("good").within(&ns));
        let n = invalid();
        async move { (found.is_some() && n == 1).then_some(()) }
    })
    .await;
    assert!(
        store
            .get(&reflector::ObjectRef::new("bad").within(&ns))
            .is_none()
    );
    let events = eventually("the InvalidObject event", || {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            let e = warning_events(&client, &ns, "bad", "InvalidObject").await;
            (!e.is_empty()).then_some(e)
        }
    })
    .await;
    let note = events[0].note.clone().unwrap_or_default();
    assert!(
        note.contains("14d"),
        "the note names the decode error: {note}"
    );

    // Fixed: it is served again and no longer counted.
    raw.patch(
        "bad",
        &PatchParams::apply("e2e-guard"),
        &Patch::Apply(window("bad", "24h")),
    )
    .await
    .unwrap();
    eventually("the fixed window in the store", || {
        let found = store.get(&reflector::ObjectRef::new("bad").within(&ns));
        let n = invalid();
        async move { (found.is_some() && n == 0).then_some(()) }
    })
    .await;
    watch.abort();

    crds.patch(
        "enforcementwindows.microseg.io",
        &PatchParams::default(),
        &Patch::Merge(window_versions(false)),
    )
    .await
    .unwrap();
    assert!(
        windows
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .all(|w| w.name_any() == "good" || w.name_any() == "bad")
    );
}
