//! One watch per kind for the whole process. Each kind's watch feeds one reflector store that
//! every part reads (the dashboard, ingestion, the leader's controllers), and passes its events
//! on to whoever subscribed: the leader's controllers subscribe for the length of their term, so
//! losing and regaining the lease does not list again.
//!
//! Besides the stores it keeps the [`WindowIndex`] (window → the policies that name it) current
//! from the policy events, so that a window's summary reads its own policies and a window's spec
//! change requeues only them, and a generation that moves whenever a store takes an event
//! ([`Shared::changes`]): what the dashboard's live updates wake on, instead of scanning the
//! stores.
//!
//! kube's `ReflectHandle` is not used for the fan-out: it can only be taken before the watch
//! starts, it does not pass deletions on, and a handle nobody polls (no term running) would hold
//! the watch back once its buffer is full.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Predicate, WatchStreamExt, watcher};

use super::invalid::{OnInvalid, guarded_watcher};
use crate::api::{EnforcementWindow, SegmentationPolicy};

/// Subscribers of one kind of item; an item sent reaches every subscriber still listening.
pub struct Subscribers<T>(Arc<Mutex<Vec<UnboundedSender<T>>>>);

impl<T> Clone for Subscribers<T> {
    fn clone(&self) -> Self {
        Subscribers(self.0.clone())
    }
}

impl<T> Default for Subscribers<T> {
    fn default() -> Self {
        Subscribers(Arc::default())
    }
}

impl<T: Clone> Subscribers<T> {
    /// The items sent from now until the receiver is dropped.
    pub fn subscribe(&self) -> UnboundedReceiver<T> {
        let (tx, rx) = unbounded();
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx);
        rx
    }

    fn send_all(&self, items: impl IntoIterator<Item = T>) {
        let mut subscribers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if subscribers.is_empty() {
            return;
        }
        for item in items {
            subscribers.retain(|tx| tx.unbounded_send(item.clone()).is_ok());
        }
    }
}

/// `(namespace, name)`.
type Key = (String, String);

fn key<K: ResourceExt>(obj: &K) -> Key {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

#[derive(Default)]
struct IndexState {
    /// Window → the names of the policies (in the window's namespace) that name it.
    windows: HashMap<Key, BTreeSet<String>>,
    /// Policy → the window it names.
    policies: HashMap<Key, String>,
}

/// Window → the policies that name it, kept current from the policy events.
#[derive(Clone, Default)]
pub struct WindowIndex(Arc<RwLock<IndexState>>);

impl WindowIndex {
    /// The policies of `store` that name the window `namespace/name`.
    pub fn policies(
        &self,
        store: &Store<SegmentationPolicy>,
        namespace: &str,
        name: &str,
    ) -> Vec<Arc<SegmentationPolicy>> {
        self.refs(namespace, name)
            .iter()
            .filter_map(|r| store.get(r))
            .collect()
    }

    /// References to the policies that name the window `namespace/name`.
    pub fn refs(&self, namespace: &str, name: &str) -> Vec<ObjectRef<SegmentationPolicy>> {
        let state = self.0.read().unwrap_or_else(PoisonError::into_inner);
        state
            .windows
            .get(&(namespace.to_string(), name.to_string()))
            .into_iter()
            .flatten()
            .map(|p| ObjectRef::new(p).within(namespace))
            .collect()
    }

    /// Records that `policy` names `window` (`None`: the policy is gone); returns the windows
    /// whose policies changed.
    fn set(&self, policy: Key, window: Option<String>) -> Vec<Key> {
        let mut state = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let ns = policy.0.clone();
        let old = match &window {
            Some(w) => state.policies.insert(policy.clone(), w.clone()),
            None => state.policies.remove(&policy),
        };
        let mut touched = Vec::new();
        if let Some(old) = old.filter(|o| Some(o) != window.as_ref()) {
            let wkey = (ns.clone(), old);
            if let Some(set) = state.windows.get_mut(&wkey) {
                set.remove(&policy.1);
                if set.is_empty() {
                    state.windows.remove(&wkey);
                }
            }
            touched.push(wkey);
        }
        if let Some(w) = window {
            let wkey = (ns, w);
            state
                .windows
                .entry(wkey.clone())
                .or_default()
                .insert(policy.1);
            touched.push(wkey);
        }
        touched
    }

    /// Rebuilds the index from the whole store (after a relist); returns every window named
    /// before or after.
    fn rebuild(&self, policies: &[Arc<SegmentationPolicy>]) -> Vec<Key> {
        let mut state = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let mut touched: BTreeSet<Key> = state.windows.keys().cloned().collect();
        *state = IndexState::default();
        for p in policies {
            let (ns, name) = key(p.as_ref());
            let window = p.spec.window.name.clone();
            state
                .policies
                .insert((ns.clone(), name.clone()), window.clone());
            state
                .windows
                .entry((ns.clone(), window.clone()))
                .or_default()
                .insert(name);
            touched.insert((ns, window));
        }
        touched.into_iter().collect()
    }
}

/// The process's stores and what their watches pass on.
#[derive(Clone)]
pub struct Shared {
    /// Every SegmentationPolicy (without `managedFields`).
    pub policies: Store<SegmentationPolicy>,
    /// Every EnforcementWindow.
    pub windows: Store<EnforcementWindow>,
    /// Window → its policies.
    pub index: WindowIndex,
    /// Policies created or changed (and all of them after a relist).
    pub applied_policies: Subscribers<Arc<SegmentationPolicy>>,
    /// Windows created or changed (and all of them after a relist).
    pub applied_windows: Subscribers<Arc<EnforcementWindow>>,
    /// Windows whose policies changed, came or went.
    pub touched_windows: Subscribers<ObjectRef<EnforcementWindow>>,
    /// Policies whose window's spec changed (a new generation) or whose window was deleted.
    pub window_spec_changed: Subscribers<ObjectRef<SegmentationPolicy>>,
    /// Both stores hold their first list. (A store's own `wait_until_ready` wakes only the last
    /// of several tasks waiting at once.)
    synced: tokio::sync::watch::Receiver<bool>,
    /// A generation bumped whenever a store takes a policy or window event (see [`changes`]).
    ///
    /// [`changes`]: Shared::changes
    changes: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    /// Starts one watch of each kind on `policies` and `windows` (undecodable objects handled as
    /// `on_invalid` says); `observe` sees every policy event after the store took it.
    pub fn spawn(
        policies: &Api<SegmentationPolicy>,
        windows: &Api<EnforcementWindow>,
        on_invalid: OnInvalid,
        mut observe: impl FnMut(&watcher::Event<SegmentationPolicy>) + Send + 'static,
    ) -> Shared {
        let (policy_store, policy_writer) = reflector::store();
        let (window_store, window_writer) = reflector::store();
        let (synced_tx, synced) = tokio::sync::watch::channel(false);
        tokio::spawn({
            let (p, w) = (policy_store.clone(), window_store.clone());
            async move {
                if p.wait_until_ready().await.is_ok() && w.wait_until_ready().await.is_ok() {
                    let _ = synced_tx.send(true);
                }
            }
        });
        let shared = Shared::new(policy_store, window_store, synced);
        tokio::spawn({
            let shared = shared.clone();
            guarded_watcher(policies, watcher::Config::default(), on_invalid.clone())
                .default_backoff()
                .modify(drop_managed_fields)
                .reflect(policy_writer)
                .for_each(move |event| {
                    if let Ok(event) = &event {
                        observe(event);
                        shared.on_policy(event);
                    }
                    futures::future::ready(())
                })
        });
        tokio::spawn({
            let shared = shared.clone();
            let mut generations = HashMap::new();
            guarded_watcher(windows, watcher::Config::default(), on_invalid)
                .default_backoff()
                .reflect(window_writer)
                .for_each(move |event| {
                    if let Ok(event) = &event {
                        shared.on_window(event, &mut generations);
                    }
                    futures::future::ready(())
                })
        });
        shared
    }

    fn new(
        policies: Store<SegmentationPolicy>,
        windows: Store<EnforcementWindow>,
        synced: tokio::sync::watch::Receiver<bool>,
    ) -> Shared {
        Shared {
            policies,
            windows,
            index: WindowIndex::default(),
            applied_policies: Subscribers::default(),
            applied_windows: Subscribers::default(),
            touched_windows: Subscribers::default(),
            window_spec_changed: Subscribers::default(),
            synced,
            changes: tokio::sync::watch::Sender::new(0),
        }
    }

    /// A cheap change signal for readers that only need to know that the stores changed (the
    /// dashboard's live updates): a generation bumped after either store took a created, changed
    /// or deleted object, or a relist. Many events in a row may wake a receiver once.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Bumps the generation of [`changes`](Shared::changes) when `event` changed a store (the
    /// objects of a relist reach the store all at once with its `InitDone`).
    fn bump<K>(&self, event: &watcher::Event<K>) {
        if !matches!(event, watcher::Event::Init | watcher::Event::InitApply(_)) {
            self.changes.send_modify(|g| *g = g.wrapping_add(1));
        }
    }

    /// Both stores hold their first list.
    pub async fn ready(&self) {
        let mut synced = self.synced.clone();
        // The value is read before the channel's state: once synced, always ready.
        if synced.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    fn on_policy(&self, event: &watcher::Event<SegmentationPolicy>) {
        self.bump(event);
        let touched = match event {
            watcher::Event::Apply(p) => {
                self.applied_policies
                    .send_all(self.policies.get(&ObjectRef::from_obj(p)));
                self.index.set(key(p), Some(p.spec.window.name.clone()))
            }
            watcher::Event::Delete(p) => self.index.set(key(p), None),
            watcher::Event::InitDone => {
                let all = self.policies.state();
                let touched = self.index.rebuild(&all);
                self.applied_policies.send_all(all);
                touched
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => Vec::new(),
        };
        self.touched_windows.send_all(
            touched
                .into_iter()
                .map(|(ns, name)| ObjectRef::new(&name).within(&ns)),
        );
    }

    /// `generations`: the last generation seen of each window, so that only a spec change (or
    /// a deletion) requeues the window's policies; its status changes with every policy.
    fn on_window(
        &self,
        event: &watcher::Event<EnforcementWindow>,
        generations: &mut HashMap<Key, Option<i64>>,
    ) {
        self.bump(event);
        let changed = match event {
            watcher::Event::Apply(w) | watcher::Event::InitApply(w) => {
                if let watcher::Event::Apply(w) = event {
                    self.applied_windows
                        .send_all(self.windows.get(&ObjectRef::from_obj(w)));
                }
                let generation = w.metadata.generation;
                (generations.insert(key(w), generation) != Some(generation)).then_some(w)
            }
            watcher::Event::Delete(w) => {
                generations.remove(&key(w));
                Some(w)
            }
            watcher::Event::InitDone => {
                self.applied_windows.send_all(self.windows.state());
                None
            }
            watcher::Event::Init => None,
        };
        if let Some(w) = changed {
            let (ns, name) = key(w);
            self.window_spec_changed
                .send_all(self.index.refs(&ns, &name));
        }
    }
}

/// Nothing reads `metadata.managedFields`, and at fleet size it is a good part of what the
/// stores of policies hold (kube's reflector memory advice).
fn drop_managed_fields(obj: &mut SegmentationPolicy) {
    obj.managed_fields_mut().clear();
}

/// A policy read with a GET, without its `metadata.managedFields` (decoded as JSON trees, several
/// times the size of the rest of the object's metadata): what a reconcile or a monitor write
/// keeps while it waits holds no more than the store's copy.
pub fn without_managed_fields(mut obj: SegmentationPolicy) -> SegmentationPolicy {
    drop_managed_fields(&mut obj);
    obj
}

/// Passes an object on only when `predicate`'s value for it changed (or it is a new object,
/// by uid), as kube's `predicate_filter` does for a watch of its own.
pub struct ChangeFilter<K: kube::Resource<DynamicType = ()> + 'static, P> {
    predicate: P,
    seen: HashMap<ObjectRef<K>, (Option<String>, u64)>,
    store: Store<K>,
}

impl<K, P> ChangeFilter<K, P>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
    P: Predicate<K>,
{
    /// A filter that has already seen every object of `store` as it is now.
    pub fn seeded(predicate: P, store: Store<K>) -> Self {
        let mut filter = ChangeFilter {
            predicate,
            seen: HashMap::new(),
            store,
        };
        for obj in filter.store.state() {
            filter.changed(&obj);
        }
        filter
    }

    /// Whether `obj` changed since it was last seen.
    pub fn changed(&mut self, obj: &K) -> bool {
        let Some(value) = self.predicate.hash_property(obj) else {
            return true;
        };
        let entry = (obj.meta().uid.clone(), value);
        let r = ObjectRef::from_obj(obj);
        if self.seen.get(&r) == Some(&entry) {
            return false;
        }
        self.seen.insert(r, entry);
        // Deleted objects are not passed on: forget them once they are a good part of the map.
        if self.seen.len() > 2 * self.store.len() + 64 {
            let store = self.store.clone();
            self.seen.retain(|r, _| store.get(r).is_some());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, window: &str) -> Arc<SegmentationPolicy> {
        let text = include_str!("../../deploy/examples/10-web.yaml");
        let mut p: SegmentationPolicy = serde_yaml::from_str(text).unwrap();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("ns".into());
        p.spec.window.name = window.into();
        Arc::new(p)
    }

    fn names(mut refs: Vec<ObjectRef<SegmentationPolicy>>) -> Vec<String> {
        refs.sort_by(|a, b| a.name.cmp(&b.name));
        refs.into_iter().map(|r| r.name).collect()
    }

    #[test]
    fn a_policy_read_with_a_get_is_kept_without_its_managed_fields() {
        // metadata.managedFields as the API server answers a GET after a server-side apply and
        // a status write (ManagedFieldsEntry, Kubernetes API reference).
        let mut p = (*policy("web", "w1")).clone();
        p.metadata.resource_version = Some("4711".into());
        p.metadata.managed_fields = Some(
            serde_json::from_value(serde_json::json!([
                {"manager": "kubectl", "operation": "Apply", "apiVersion": "microseg.io/v1alpha1",
                 "time": "2026-12-01T10:00:00Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:spec": {"f:owners": {}, "f:rules": {}, "f:window": {"f:name": {}}}}},
                {"manager": "microseg-controller", "operation": "Apply",
                 "apiVersion": "microseg.io/v1alpha1", "time": "2026-12-01T10:00:01Z",
                 "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:phase": {}, "f:conditions": {}}}}
            ]))
            .unwrap(),
        );
        let kept = without_managed_fields(p.clone());
        assert!(
            kept.metadata
                .managed_fields
                .as_deref()
                .unwrap_or_default()
                .is_empty()
        );
        // Everything else is as read.
        let mut expected = p;
        expected
            .metadata
            .managed_fields
            .clone_from(&kept.metadata.managed_fields);
        assert_eq!(kept, expected);
        assert_eq!(kept.metadata.resource_version.as_deref(), Some("4711"));
    }

    #[test]
    fn the_window_index_follows_policies_that_come_move_and_go() {
        let index = WindowIndex::default();
        let k = |n: &str| ("ns".to_string(), n.to_string());
        assert_eq!(index.set(k("a"), Some("w1".into())), vec![k("w1")]);
        assert_eq!(index.set(k("b"), Some("w1".into())), vec![k("w1")]);
        assert_eq!(names(index.refs("ns", "w1")), ["a", "b"]);
        // A policy that moves touches both windows.
        assert_eq!(index.set(k("b"), Some("w2".into())), vec![k("w1"), k("w2")]);
        assert_eq!(names(index.refs("ns", "w1")), ["a"]);
        assert_eq!(names(index.refs("ns", "w2")), ["b"]);
        assert_eq!(index.set(k("a"), None), vec![k("w1")]);
        assert!(index.refs("ns", "w1").is_empty());
        assert!(index.refs("other", "w2").is_empty());
        // A relist rebuilds it and touches the windows named before and after.
        let touched = index.rebuild(&[policy("c", "w3")]);
        assert_eq!(touched, vec![k("w2"), k("w3")]);
        assert!(index.refs("ns", "w2").is_empty());
        assert_eq!(names(index.refs("ns", "w3")), ["c"]);
    }

    #[tokio::test]
    async fn subscribers_get_what_is_sent_while_they_listen() {
        let subscribers: Subscribers<u32> = Subscribers::default();
        subscribers.send_all([1]);
        let mut a = subscribers.subscribe();
        let b = subscribers.subscribe();
        drop(b);
        subscribers.send_all([2, 3]);
        assert_eq!(subscribers.0.lock().unwrap().len(), 1);
        drop(subscribers);
        assert_eq!(a.by_ref().collect::<Vec<_>>().await, [2, 3]);
    }

    #[test]
    fn the_change_signal_moves_with_every_event_a_store_takes() {
        let (policies, _) = reflector::store::<SegmentationPolicy>();
        let (windows, _) = reflector::store::<EnforcementWindow>();
        let shared = Shared::new(policies, windows, tokio::sync::watch::channel(true).1);
        let mut changes = shared.changes();
        let start = *changes.borrow_and_update();
        let p = policy("a", "w1").as_ref().clone();
        let w: EnforcementWindow = serde_yaml::from_str(
            "{apiVersion: microseg.io/v1alpha1, kind: EnforcementWindow, metadata: {name: w1, namespace: ns}, spec: {notifyAt: '2027-02-01T09:00:00Z', monitorFrom: '2027-02-01T09:00:00Z', enforceAt: '2027-02-16T09:00:00Z'}}",
        )
        .unwrap();
        let mut generations = HashMap::new();
        // A relist's objects are not in the store before its end.
        shared.on_policy(&watcher::Event::Init);
        shared.on_policy(&watcher::Event::InitApply(p.clone()));
        shared.on_window(&watcher::Event::InitApply(w.clone()), &mut generations);
        assert!(!changes.has_changed().unwrap());
        shared.on_policy(&watcher::Event::InitDone);
        assert!(changes.has_changed().unwrap());
        assert_eq!(*changes.borrow_and_update(), start + 1);
        shared.on_policy(&watcher::Event::Apply(p.clone()));
        shared.on_policy(&watcher::Event::Delete(p));
        shared.on_window(&watcher::Event::Apply(w.clone()), &mut generations);
        shared.on_window(&watcher::Event::Delete(w), &mut generations);
        shared.on_window(&watcher::Event::InitDone, &mut generations);
        assert_eq!(*changes.borrow_and_update(), start + 6);
    }

    #[test]
    fn the_change_filter_passes_new_and_changed_objects_only() {
        let (store, mut writer) = reflector::store::<SegmentationPolicy>();
        let mut seeded = policy("a", "w1").as_ref().clone();
        seeded.metadata.generation = Some(1);
        writer.apply_watcher_event(&watcher::Event::Apply(seeded.clone()));
        let generation = |p: &SegmentationPolicy| p.metadata.generation.map(|g| g as u64);
        let mut filter = ChangeFilter::seeded(generation, store);
        assert!(!filter.changed(&seeded));
        let mut next = seeded.clone();
        next.metadata.generation = Some(2);
        assert!(filter.changed(&next));
        assert!(!filter.changed(&next));
        // Recreated under the same name: a new object.
        next.metadata.uid = Some("other".into());
        assert!(filter.changed(&next));
        let mut b = policy("b", "w1").as_ref().clone();
        b.metadata.generation = Some(1);
        assert!(filter.changed(&b));
    }
}
