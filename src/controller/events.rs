//! Kubernetes events published off the reconcile path.
//!
//! A reconcile used to wait for each of its events (3–4 per transition, one API call each)
//! while it held one of the controller's slots; when 1,000 applications reach `enforceAt` in the
//! same second, those calls kept the last ones waiting for a slot and their DROP landed late.
//! [`Events`] queues an event and returns: a few workers publish them, each object's events
//! always through the same worker, so they reach the API server in the order they were made.
//! When the queues are full the reconcile waits for room (nothing is dropped).

use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder};
use tokio::sync::mpsc;
use tracing::warn;

/// Workers publishing events at once.
const WORKERS: usize = 8;
/// Events queued per worker before a reconcile waits for room.
const QUEUE: usize = 1024;

/// The event publisher shared by the reconcilers.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
    queues: Vec<mpsc::Sender<(Event, ObjectReference)>>,
}

impl Events {
    /// Starts the workers (on the current tokio runtime); they stop when the last clone is
    /// dropped, after publishing what was queued.
    pub fn spawn(recorder: Recorder) -> Events {
        let queues = (0..WORKERS)
            .map(|_| {
                let (tx, mut rx) = mpsc::channel::<(Event, ObjectReference)>(QUEUE);
                let recorder = recorder.clone();
                tokio::spawn(async move {
                    while let Some((event, reference)) = rx.recv().await {
                        if let Err(e) = recorder.publish(&event, &reference).await {
                            warn!(
                                object = %format!("{}/{}", reference.namespace.as_deref().unwrap_or_default(), reference.name.as_deref().unwrap_or_default()),
                                reason = %event.reason,
                                error = %e,
                                "could not publish event"
                            );
                        }
                    }
                });
                tx
            })
            .collect();
        Events { recorder, queues }
    }

    /// Queues `event` about `reference`; returns once it is queued.
    pub async fn publish(&self, event: Event, reference: ObjectReference) {
        let i = worker_of(&reference);
        if let Err(mpsc::error::SendError((event, reference))) =
            self.queues[i].send((event, reference)).await
        {
            // The worker is gone (runtime shutting down): publish in place.
            if let Err(e) = self.recorder.publish(&event, &reference).await {
                warn!(reason = %event.reason, error = %e, "could not publish event");
            }
        }
    }
}

/// The worker that publishes the events about `reference` (the same for all of them).
fn worker_of(reference: &ObjectReference) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&reference.namespace, &reference.name, &reference.uid).hash(&mut h);
    #[allow(clippy::cast_possible_truncation)]
    let i = (h.finish() % WORKERS as u64) as usize;
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One object's events go to one worker, so they keep their order; objects spread.
    #[test]
    fn an_objects_events_share_one_worker() {
        let r = |name: &str| ObjectReference {
            namespace: Some("a".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        };
        assert_eq!(worker_of(&r("x")), worker_of(&r("x")));
        let spread: std::collections::HashSet<_> = (0..64)
            .map(|i| worker_of(&r(&format!("app-{i}"))))
            .collect();
        assert!(
            spread.len() > WORKERS / 2,
            "objects spread over the workers: {spread:?}"
        );
    }
}
