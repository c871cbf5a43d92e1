//! A panic in one reconcile must not take the controller down. kube-runtime polls every
//! reconcile inside the controller's own stream, so an unwinding panic would end the stream and
//! with it the service of every object, of both kinds. [`catch`] runs a reconcile and turns a
//! panic into [`Error::ReconcilePanicked`]:
//!
//! - logged as an error with the panic message and counted in
//!   `microseg_reconcile_panics{kind}`;
//! - reported on the object: a Warning event `ReconcilePanicked`, and the condition
//!   `Ready=False`, reason `ReconcilePanicked`, written by server-side apply with its own field
//!   manager ([`FIELD_MANAGER`]) that sets only that one condition, so the rest of the status
//!   stays as the `microseg` manager wrote it (and its next status write takes `Ready` back);
//! - retried after [`BACKOFF`] through `Error::retry_after`.
//!
//! The process must unwind on panic for this to work (`panic = "abort"` would defeat it; a test
//! checks Cargo.toml).

use std::any::Any;
use std::fmt::Debug;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{error, warn};

use super::context::Context;
use super::invalid::truncate;
use super::metrics::KindLabel;
use super::{Error, policy, window};
use crate::api::condition::{self, reason, set_condition};
use crate::api::k8s::Condition;
use crate::api::{EnforcementWindow, SegmentationPolicy};

/// Field manager of the `Ready` condition a caught panic writes.
pub const FIELD_MANAGER: &str = "microseg-guard";
/// Wait before reconciling an object whose reconcile panicked.
pub const BACKOFF: Duration = Duration::from_secs(30);

/// A kind whose reconcile is guarded: where its conditions are.
pub trait Guarded:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The status conditions, empty without a status.
    fn conditions(&self) -> &[Condition];
}

impl Guarded for SegmentationPolicy {
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
}

impl Guarded for EnforcementWindow {
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
}

/// The policy reconciler, guarded.
pub async fn reconcile_policy(
    policy: Arc<SegmentationPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    catch(policy, ctx, policy::reconcile).await
}

/// The window reconciler, guarded.
pub async fn reconcile_window(
    window: Arc<EnforcementWindow>,
    ctx: Arc<Context>,
    index: super::shared::WindowIndex,
) -> Result<Action, Error> {
    catch(window, ctx, |w, ctx| window::reconcile(w, ctx, index)).await
}

/// Runs `reconcile`; a panic is reported on the object and becomes
/// [`Error::ReconcilePanicked`].
pub async fn catch<K, F, Fut>(obj: Arc<K>, ctx: Arc<Context>, reconcile: F) -> Result<Action, Error>
where
    K: Guarded,
    F: FnOnce(Arc<K>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Action, Error>>,
{
    let run = {
        let (obj, ctx) = (obj.clone(), ctx.clone());
        async move { reconcile(obj, ctx).await }
    };
    match catch_panic(run).await {
        Ok(result) => result,
        Err(message) => {
            let object = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
            report(obj.as_ref(), &ctx, &object, &message).await;
            Err(Error::ReconcilePanicked { object, message })
        }
    }
}

/// Runs `fut`; a panic becomes `Err(message)`.
pub async fn catch_panic<T>(fut: impl Future<Output = T>) -> Result<T, String> {
    AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|payload| panic_message(payload.as_ref()))
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-text payload".to_string())
}

async fn report<K: Guarded>(obj: &K, ctx: &Context, object: &str, message: &str) {
    let kind = K::kind(&()).into_owned();
    error!(kind = %kind, object = %object, panic = %message,
        "reconcile panicked; the other objects are still served, this one is retried");
    ctx.metrics
        .reconcile_panics
        .get_or_create(&KindLabel { kind: kind.clone() })
        .inc();
    let note = format!(
        "reconcile panicked (a microseg bug; retried in {}s): {message}",
        BACKOFF.as_secs()
    );
    let event = Event {
        type_: EventType::Warning,
        reason: reason::RECONCILE_PANICKED.into(),
        note: Some(truncate(&note)),
        action: "Reconcile".into(),
        secondary: None,
    };
    ctx.events.publish(event, obj.object_ref(&())).await;
    let Some(ns) = obj.namespace() else { return };
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": kind,
        "status": { "conditions": [ready_false(obj, &note, ctx.clock.now())] },
    });
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    if let Err(e) = api
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
    {
        warn!(object = %object, error = %e, "could not set Ready=False after a panic");
    }
}

/// `Ready=False`, reason `ReconcilePanicked`; `lastTransitionTime` moves only if `Ready` was not
/// already False.
fn ready_false<K: Guarded>(obj: &K, message: &str, now: crate::api::k8s::Timestamp) -> Condition {
    let mut conditions: Vec<Condition> = condition::find(obj.conditions(), condition::READY)
        .cloned()
        .into_iter()
        .collect();
    set_condition(
        &mut conditions,
        condition::READY,
        condition::FALSE,
        reason::RECONCILE_PANICKED,
        truncate(message),
        obj.meta().generation,
        now,
    );
    conditions.remove(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_future_becomes_an_error_with_its_message() {
        assert_eq!(catch_panic(async { 7 }).await, Ok(7));
        assert_eq!(
            catch_panic(async { panic!("boom") }).await,
            Err::<(), _>("boom".to_string())
        );
        let n = 42;
        assert_eq!(
            catch_panic(async move { panic!("boom {n}") }).await,
            Err::<(), _>("boom 42".to_string())
        );
        assert_eq!(
            catch_panic(async { std::panic::panic_any(5u8) }).await,
            Err::<(), _>("panic with a non-text payload".to_string())
        );
    }

    #[test]
    fn ready_false_keeps_the_transition_time_when_ready_was_already_false() {
        let mut p: SegmentationPolicy =
            serde_yaml::from_str(include_str!("../../deploy/examples/10-web.yaml")).unwrap();
        p.metadata.generation = Some(4);
        let t0: crate::api::k8s::Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let t1: crate::api::k8s::Timestamp = "2027-01-02T00:00:00Z".parse().unwrap();
        let c = ready_false(&p, "boom", t0);
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            ("Ready", "False", "ReconcilePanicked")
        );
        assert_eq!(c.observed_generation, Some(4));
        p.status = Some(crate::api::SegmentationPolicyStatus {
            conditions: vec![c],
            ..Default::default()
        });
        let again = ready_false(&p, "boom again", t1);
        assert_eq!(again.last_transition_time.0, t0);
        assert_eq!(again.message, "boom again");
    }

    #[test]
    fn panics_unwind_in_every_profile() {
        let manifest = include_str!("../../Cargo.toml");
        assert!(
            !manifest
                .lines()
                .any(|l| l.replace(' ', "").starts_with("panic=\"abort\"")),
            "panic = \"abort\" would let one reconcile take the controller down"
        );
        const { assert!(cfg!(panic = "unwind")) };
    }
}
