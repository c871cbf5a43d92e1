//! Kubernetes events published off the reconcile path.
//!
//! A reconcile used to wait for each of its events (3–4 per transition, one API call each)
//! while it held one of the controller's slots; when 1,000 applications reach `enforceAt` in the
//! same second, those calls kept the last ones waiting for a slot and their DROP landed late.
//! [`Events`] queues an event and returns: a few workers publish them, each object's events
//! always through the same worker, so they reach the API server in the order they were made.
//! When the queues are full the reconcile waits for room (nothing is dropped).
//!
//! [`Recorder`] publishes `events.k8s.io/v1` Events as client-go's event recorder does: an
//! event repeated (same object, type, reason, action and note) within [`SERIES_TTL`] of the last
//! one updates the first one's `series` (count, last observed time) instead of adding an object.
//! It remembers a hash and the event's name per event, not the whole Event as kube's recorder
//! does (some 7 KB each: 21 MB when 1,000 applications flip, the largest part of the peak).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::warn;

/// How long a repeated event joins the series of the first one (client-go's and kube's 6 min).
pub const SERIES_TTL: SignedDuration = SignedDuration::from_secs(6 * 60);

/// Publishes events for this controller (`reporter`); clones share what was published.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    reporter: Arc<Reporter>,
    seen: Arc<Mutex<Seen>>,
}

/// The events published in the last [`SERIES_TTL`], by key.
#[derive(Default)]
struct Seen {
    events: HashMap<u64, Published>,
    swept: Option<Timestamp>,
}

/// What a repeat needs of an event published before.
#[derive(Clone)]
struct Published {
    name: String,
    count: i32,
    last: Timestamp,
}

impl Seen {
    /// The series a repeat of `key` at `now` continues, if any; forgets what is past the TTL
    /// (a sweep at most every minute).
    fn repeat_of(&mut self, key: u64, now: Timestamp) -> Option<Published> {
        if self
            .swept
            .is_none_or(|t| t + SignedDuration::from_secs(60) <= now)
        {
            self.events.retain(|_, p| p.last + SERIES_TTL > now);
            self.swept = Some(now);
        }
        self.events
            .get(&key)
            .filter(|p| p.last + SERIES_TTL > now)
            .cloned()
    }
}

/// What makes two events the same (client-go's key, the note included).
fn key_of(reporter: &Reporter, ev: &Event, r: &ObjectReference) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let type_ = match ev.type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    };
    (
        type_,
        &ev.action,
        &ev.reason,
        &ev.note,
        &reporter.controller,
        &reporter.instance,
    )
        .hash(&mut h);
    (
        &r.api_version,
        &r.kind,
        &r.namespace,
        &r.name,
        &r.uid,
        &r.field_path,
    )
        .hash(&mut h);
    if let Some(s) = &ev.secondary {
        (&s.api_version, &s.kind, &s.namespace, &s.name, &s.uid).hash(&mut h);
    }
    h.finish()
}

impl Recorder {
    /// A recorder publishing as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Recorder {
        Recorder {
            client,
            reporter: Arc::new(reporter),
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The Event object for the first occurrence of `ev` at `now`.
    fn event(&self, ev: &Event, r: &ObjectReference, now: Timestamp) -> K8sEvent {
        K8sEvent {
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(r.clone()),
            related: ev.secondary.clone(),
            note: ev.note.clone(),
            metadata: ObjectMeta {
                namespace: r.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    r.name.as_deref().unwrap_or(&self.reporter.controller),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            ..Default::default()
        }
    }

    /// Publishes `ev` about `r`: a new Event, or the next count of the series it repeats.
    pub async fn publish(&self, ev: &Event, r: &ObjectReference) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = key_of(&self.reporter, ev, r);
        let ns = r.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), ns);
        let repeat = self.seen().repeat_of(key, now);
        if let Some(p) = repeat {
            let series = EventSeries {
                count: p.count + 1,
                last_observed_time: MicroTime(now),
            };
            let patch = json!({ "series": series });
            match api
                .patch(&p.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.seen().events.insert(
                        key,
                        Published {
                            name: p.name,
                            count: series.count,
                            last: now,
                        },
                    );
                    return Ok(());
                }
                // The first one expired on the API server meanwhile: a new series.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let event = self.event(ev, r, now);
        let name = event.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &event).await?;
        self.seen().events.insert(
            key,
            Published {
                name,
                count: 1,
                last: now,
            },
        );
        Ok(())
    }
}

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

    fn published(name: &str, last: Timestamp) -> Published {
        Published {
            name: name.into(),
            count: 1,
            last,
        }
    }

    /// A repeat within the TTL continues the series; after it, a new event; what is past the
    /// TTL is forgotten.
    #[test]
    fn a_repeat_joins_the_series_within_the_ttl_only() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let mut seen = Seen::default();
        seen.events.insert(1, published("a.1", t0));
        seen.events
            .insert(2, published("b.1", t0 + SignedDuration::from_secs(300)));
        let soon = t0 + SignedDuration::from_secs(200);
        assert_eq!(
            seen.repeat_of(1, soon).map(|p| p.name).as_deref(),
            Some("a.1")
        );
        let late = t0 + SERIES_TTL + SignedDuration::from_secs(1);
        assert!(seen.repeat_of(1, late).is_none());
        assert!(!seen.events.contains_key(&1), "forgotten past the TTL");
        assert!(seen.repeat_of(2, late).is_some(), "b is within its TTL");
    }

    /// Events differing in their note, reason, type or object are different series.
    #[test]
    fn the_key_tells_notes_reasons_and_objects_apart() {
        let reporter = Reporter {
            controller: "microseg".into(),
            instance: None,
        };
        let ev = |reason: &str, note: &str, type_: EventType| Event {
            type_,
            reason: reason.into(),
            note: Some(note.into()),
            action: "Reconcile".into(),
            secondary: None,
        };
        let r = |name: &str| ObjectReference {
            namespace: Some("a".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        };
        let base = key_of(&reporter, &ev("X", "n", EventType::Normal), &r("p"));
        assert_eq!(
            base,
            key_of(&reporter, &ev("X", "n", EventType::Normal), &r("p"))
        );
        for other in [
            key_of(&reporter, &ev("Y", "n", EventType::Normal), &r("p")),
            key_of(&reporter, &ev("X", "m", EventType::Normal), &r("p")),
            key_of(&reporter, &ev("X", "n", EventType::Warning), &r("p")),
            key_of(&reporter, &ev("X", "n", EventType::Normal), &r("q")),
        ] {
            assert_ne!(base, other);
        }
    }

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
