//! Objects the controller cannot decode. A watch typed on `K` fails as a whole when one object
//! does not deserialize (a list is all or nothing), so one bad object would stop the controller
//! serving every other object of its kind. [`guarded_watcher`] watches `DeserializeGuard<K>`
//! instead: decodable objects pass on as `K`; an undecodable one is skipped until it decodes
//! again, and reported by name once per `resourceVersion` as [`OnInvalid`] says: a warning log,
//! the `microseg_invalid_objects{kind}` gauge, a Warning event `InvalidObject` on the object.
//!
//! There is one guarded watch per kind in a process (`shared`): it logs and counts a bad object in
//! every replica, and gets it one event from the replica that leads ([`LeaderEvents`]; a replica
//! that starts to lead publishes for the objects undecodable at that moment). What it does not do: a store that held a valid version of an object that
//! later stops decoding keeps that version until the next relist, and an object that cannot be
//! decoded cannot be reconciled, finalizer included.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::events::Recorder;
use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::watcher::{self, Event, watcher};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use super::metrics::KindLabel;
use crate::api::condition::reason;
use crate::api::k8s::ObjectReference;

/// Longest event note the API server takes (1 kB), with room to spare.
const NOTE_MAX_BYTES: usize = 1000;

/// What a guarded watch does, besides skipping, with an object it cannot decode.
#[derive(Clone, Default)]
pub struct OnInvalid {
    warn: bool,
    gauge: Option<Family<KindLabel, Gauge>>,
    recorder: Option<Recorder>,
    leader: Option<LeaderEvents>,
}

impl OnInvalid {
    /// Skip quietly (a debug log): for the watches of a kind that another watch reports.
    pub fn skip() -> Self {
        OnInvalid::default()
    }

    /// Log a warning and keep `microseg_invalid_objects{kind}` at the number of undecodable
    /// objects this watch sees.
    pub fn warn_and_count(mut self, gauge: Family<KindLabel, Gauge>) -> Self {
        self.warn = true;
        self.gauge = Some(gauge);
        self
    }

    /// Publish a Warning event `InvalidObject` on the object.
    pub fn publish_with(mut self, recorder: Recorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Publish a Warning event `InvalidObject` on the object while `leader` leads.
    pub fn publish_while_leading(mut self, leader: LeaderEvents) -> Self {
        self.leader = Some(leader);
        self
    }
}

/// The InvalidObject events of a replica that publishes only while it leads: the objects
/// undecodable now, by kind and `namespace/name`, each with its event.
#[derive(Clone)]
pub struct LeaderEvents {
    recorder: Recorder,
    leading: Arc<AtomicBool>,
    current: Arc<Mutex<HashMap<String, (ObjectReference, String)>>>,
}

/// This replica leads until it is dropped.
pub struct Term(LeaderEvents);

impl Drop for Term {
    fn drop(&mut self) {
        self.0.leading.store(false, Ordering::SeqCst);
    }
}

impl LeaderEvents {
    /// Nothing published until [`LeaderEvents::lead`].
    pub fn new(recorder: Recorder) -> Self {
        LeaderEvents {
            recorder,
            leading: Arc::default(),
            current: Arc::default(),
        }
    }

    /// This replica leads from now until the term is dropped: publishes for the objects that
    /// cannot be decoded now, then for each new one.
    pub fn lead(&self) -> Term {
        self.leading.store(true, Ordering::SeqCst);
        let current: Vec<_> = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, (r, e))| (k.clone(), r.clone(), e.clone()))
            .collect();
        for (key, reference, note) in current {
            publish(self.recorder.clone(), key, reference, note);
        }
        Term(self.clone())
    }

    fn record(&self, key: String, reference: ObjectReference, note: String) {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), (reference.clone(), note.clone()));
        if self.leading.load(Ordering::SeqCst) {
            publish(self.recorder.clone(), key, reference, note);
        }
    }

    fn forget(&self, key: &str) {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    fn keep(&self, kind: &str, keys: &HashMap<String, String>) {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k, _| {
                k.split_once(' ')
                    .is_none_or(|(kd, key)| kd != kind || keys.contains_key(key))
            });
    }
}

fn publish(recorder: Recorder, key: String, reference: ObjectReference, note: String) {
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: reason::INVALID_OBJECT.into(),
        note: Some(note),
        action: "Decode".into(),
        secondary: None,
    };
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &reference).await {
            warn!(object = %key, error = %e, "could not publish event");
        }
    });
}

/// A watch of `api`'s objects that skips (and reports) the ones that cannot be decoded.
pub fn guarded_watcher<K>(
    api: &Api<K>,
    config: watcher::Config,
    on_invalid: OnInvalid,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + use<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let client = api.clone().into_client();
    let guarded: Api<DeserializeGuard<K>> = match api.namespace() {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    guard(watcher(guarded, config), on_invalid)
}

/// Passes the decodable objects of a `DeserializeGuard` watch on and reports the others.
pub fn guard<K, S>(
    events: S,
    on_invalid: OnInvalid,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Send,
    S: Stream<Item = Result<Event<DeserializeGuard<K>>, watcher::Error>> + Send,
{
    let mut tracker = Tracker::new(K::kind(&()).into_owned(), on_invalid);
    events.filter_map(move |event| futures::future::ready(tracker.handle(event)))
}

/// `namespace/name`.
fn key(meta: &crate::api::k8s::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// The undecodable objects of one watch, by `namespace/name`, with the `resourceVersion`
/// reported.
struct Tracker {
    kind: String,
    on_invalid: OnInvalid,
    gauge: Option<Gauge>,
    invalid: HashMap<String, String>,
    /// While a relist runs: the undecodable objects it returned so far.
    relisting: Option<HashMap<String, String>>,
}

impl Tracker {
    fn new(kind: String, on_invalid: OnInvalid) -> Self {
        let gauge = on_invalid
            .gauge
            .as_ref()
            .map(|f| f.get_or_create(&KindLabel { kind: kind.clone() }).clone());
        Tracker {
            kind,
            on_invalid,
            gauge,
            invalid: HashMap::new(),
            relisting: None,
        }
    }

    fn handle<K: Resource>(
        &mut self,
        event: Result<Event<DeserializeGuard<K>>, watcher::Error>,
    ) -> Option<Result<Event<K>, watcher::Error>> {
        let event = match event {
            Ok(e) => e,
            Err(e) => return Some(Err(e)),
        };
        let passed = match event {
            Event::Init => {
                self.relisting = Some(HashMap::new());
                Event::Init
            }
            Event::InitApply(DeserializeGuard(Ok(k))) => Event::InitApply(k),
            Event::InitApply(DeserializeGuard(Err(bad))) => {
                self.invalid(bad, true);
                return None;
            }
            Event::InitDone => {
                if let Some(listed) = self.relisting.take() {
                    if let Some(leader) = &self.on_invalid.leader {
                        leader.keep(&self.kind, &listed);
                    }
                    self.invalid = listed;
                    self.count();
                }
                Event::InitDone
            }
            Event::Apply(DeserializeGuard(Ok(k))) => {
                self.valid(&key(k.meta()));
                Event::Apply(k)
            }
            Event::Apply(DeserializeGuard(Err(bad))) => {
                self.invalid(bad, false);
                return None;
            }
            Event::Delete(DeserializeGuard(Ok(k))) => {
                self.gone(&key(k.meta()));
                Event::Delete(k)
            }
            Event::Delete(DeserializeGuard(Err(bad))) => {
                let key = key(&bad.metadata);
                debug!(kind = %self.kind, object = %key, "undecodable object deleted");
                self.gone(&key);
                return None;
            }
        };
        Some(Ok(passed))
    }

    fn count(&self) {
        if let Some(g) = &self.gauge {
            g.set(i64::try_from(self.invalid.len()).unwrap_or(i64::MAX));
        }
    }

    /// An object decoded: if it did not before, say so.
    fn valid(&mut self, key: &str) {
        if let Some(leader) = &self.on_invalid.leader {
            leader.forget(&format!("{} {key}", self.kind));
        }
        if self.invalid.remove(key).is_some() {
            if self.on_invalid.warn {
                info!(kind = %self.kind, object = %key, "object decodes again");
            }
            self.count();
        }
    }

    fn gone(&mut self, key: &str) {
        if let Some(listed) = self.relisting.as_mut() {
            listed.remove(key);
        }
        if let Some(leader) = &self.on_invalid.leader {
            leader.forget(&format!("{} {key}", self.kind));
        }
        if self.invalid.remove(key).is_some() {
            self.count();
        }
    }

    fn invalid(&mut self, bad: InvalidObject, relisting: bool) {
        let key = key(&bad.metadata);
        let version = bad.metadata.resource_version.clone().unwrap_or_default();
        let known = self.invalid.get(&key) == Some(&version);
        match self.relisting.as_mut().filter(|_| relisting) {
            Some(listed) => {
                listed.insert(key.clone(), version);
            }
            None => {
                self.invalid.insert(key.clone(), version);
                self.count();
            }
        }
        if known {
            return;
        }
        if self.on_invalid.warn {
            warn!(kind = %self.kind, object = %key, error = %bad.error,
                "cannot decode object: skipped until it is fixed");
        } else {
            debug!(kind = %self.kind, object = %key, error = %bad.error,
                "cannot decode object: skipped");
        }
        if self.on_invalid.recorder.is_none() && self.on_invalid.leader.is_none() {
            return;
        }
        let reference = ObjectReference {
            api_version: Some(format!("{}/{}", crate::api::GROUP, crate::api::VERSION)),
            kind: Some(self.kind.clone()),
            name: bad.metadata.name.clone(),
            namespace: bad.metadata.namespace.clone(),
            uid: bad.metadata.uid.clone(),
            resource_version: bad.metadata.resource_version.clone(),
            field_path: None,
        };
        let note = truncate(&format!(
            "microseg cannot read this object and skips it until it is fixed: {}",
            bad.error
        ));
        if let Some(leader) = &self.on_invalid.leader {
            leader.record(
                format!("{} {key}", self.kind),
                reference.clone(),
                note.clone(),
            );
        }
        if let Some(recorder) = self.on_invalid.recorder.clone() {
            publish(recorder, key, reference, note);
        }
    }
}

/// At most [`NOTE_MAX_BYTES`] bytes of `s`, cut at a character boundary.
pub fn truncate(s: &str) -> String {
    let mut end = s.len().min(NOTE_MAX_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests;
