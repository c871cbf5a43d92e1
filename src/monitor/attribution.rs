//! The attribution index of ingestion, kept current from the watch of the policies.
//!
//! Ingestion attributes every DFW line to an application through an [`Index`] of rule ids and
//! monitor tags. Rebuilding it for every batch costs every rule of every policy (and two SHA-256
//! per policy); instead [`LiveIndex::observe`] follows the policy watch and touches the index only
//! when an application's rule ids appear, change or go (a `status.monitor` write, the usual
//! event, leaves it alone). A batch takes a snapshot ([`LiveIndex::snapshot`]: one `Arc` clone)
//! and never waits for an update; an update made while snapshots are out copies the index once.
//!
//! No IO here: the events come from the controller's watch.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use kube::ResourceExt;
use kube::runtime::watcher::Event;

use super::aggregate::{Index, PolicyKey};
use crate::api::SegmentationPolicy;
use crate::nsx::naming::Identity;

/// The index and, during a re-list of the watch, the one being rebuilt.
#[derive(Default)]
struct State {
    current: Arc<Index>,
    relist: Option<Index>,
}

/// The attribution index shared by the watch (writer) and the ingestion batches (readers);
/// cheap to clone.
#[derive(Clone)]
pub struct LiveIndex {
    identity: Identity,
    state: Arc<RwLock<State>>,
    /// The first list of the watch is in the index. Before it, an empty index would call every
    /// line unattributed and an acknowledged batch would be lost: ingestion waits for this.
    ready: Arc<tokio::sync::watch::Sender<bool>>,
}

/// What a policy contributes to the index: its key, rule ids and NSX object id.
fn entry(
    identity: &Identity,
    p: &SegmentationPolicy,
) -> (PolicyKey, BTreeMap<String, i64>, String) {
    let namespace = p.namespace().unwrap_or_default();
    let name = p.name_any();
    let object_id = identity.object_id(&namespace, &name);
    let ids = p
        .status
        .as_ref()
        .and_then(|s| s.nsx.as_ref())
        .map(|n| n.rule_ids.clone())
        .unwrap_or_default();
    (PolicyKey { namespace, name }, ids, object_id)
}

/// Adds every policy to `ix` (the whole index at once: a full rebuild).
pub fn add_all<'a>(
    ix: &mut Index,
    identity: &Identity,
    policies: impl IntoIterator<Item = &'a SegmentationPolicy>,
) {
    for p in policies {
        let (key, ids, object_id) = entry(identity, p);
        ix.add(key, &ids, &object_id);
    }
}

impl LiveIndex {
    /// An empty index; `identity` names the NSX objects (for the monitor tags).
    pub fn new(identity: Identity) -> Self {
        LiveIndex {
            identity,
            state: Arc::default(),
            ready: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    /// Whether the first list of the watch is in the index.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the first list of the watch is in the index.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        // The sender lives in `self`: this cannot fail while we wait.
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// The index now. A later update does not change it.
    pub fn snapshot(&self) -> Arc<Index> {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .current
            .clone()
    }

    /// Follows one event of the policy watch.
    pub fn observe(&self, event: &Event<SegmentationPolicy>) {
        match event {
            Event::Apply(p) => {
                let (key, ids, object_id) = entry(&self.identity, p);
                if self.snapshot().has(&key, &ids, &object_id) {
                    return;
                }
                let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
                Arc::make_mut(&mut s.current).set(key, &ids, &object_id);
            }
            Event::Delete(p) => {
                let key = PolicyKey {
                    namespace: p.namespace().unwrap_or_default(),
                    name: p.name_any(),
                };
                if !self.snapshot().contains(&key) {
                    return;
                }
                let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
                Arc::make_mut(&mut s.current).remove(&key);
            }
            Event::Init => {
                let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
                s.relist = Some(Index::default());
            }
            Event::InitApply(p) => {
                let (key, ids, object_id) = entry(&self.identity, p);
                let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
                s.relist
                    .get_or_insert_with(Index::default)
                    .set(key, &ids, &object_id);
            }
            Event::InitDone => {
                let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
                if let Some(ix) = s.relist.take() {
                    s.current = Arc::new(ix);
                }
                drop(s);
                self.ready.send_replace(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{NsxStatus, SegmentationPolicyStatus};
    use crate::nsx::naming::{CATCHALL_IN, CATCHALL_OUT};

    fn identity() -> Identity {
        Identity::new("c1").unwrap()
    }

    fn policy(name: &str, ids: &[(&str, i64)]) -> SegmentationPolicy {
        let mut p: SegmentationPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "microseg.io/v1alpha1",
            "kind": "SegmentationPolicy",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {
                "owners": [{"name": "Team", "email": "team@example.com"}],
                "criticality": "Low",
                "window": {"name": "wave"},
                "members": [{"vmTag": {"scope": "app", "tag": name}}],
                "catchAll": {"inbound": true, "outbound": true}
            }
        }))
        .unwrap();
        p.status = Some(SegmentationPolicyStatus {
            nsx: Some(NsxStatus {
                rule_ids: ids.iter().map(|(n, id)| (n.to_string(), *id)).collect(),
                ..Default::default()
            }),
            ..Default::default()
        });
        p
    }

    fn owner(ix: &Index, rule_id: u32) -> Option<String> {
        ix.attribute(rule_id, None).map(|a| a.policy.name.clone())
    }

    /// The live index answers as a full rebuild from the same policies would, after any
    /// sequence of watch events.
    #[test]
    fn watch_events_keep_the_index_equal_to_a_rebuild() {
        let live = LiveIndex::new(identity());
        let web = policy(
            "web",
            &[(CATCHALL_IN, 11), (CATCHALL_OUT, 12), ("https", 13)],
        );
        let db = policy("db", &[(CATCHALL_IN, 21)]);
        for e in [
            Event::Init,
            Event::InitApply(web.clone()),
            Event::InitApply(db.clone()),
        ] {
            live.observe(&e);
        }
        assert_eq!(owner(&live.snapshot(), 11), None, "not before InitDone");
        assert!(
            !live.is_ready(),
            "not ready before the first list is complete"
        );
        live.observe(&Event::InitDone);
        assert!(live.is_ready());
        let before = live.snapshot();
        assert_eq!(owner(&before, 13).as_deref(), Some("web"));
        assert_eq!(owner(&before, 21).as_deref(), Some("db"));

        // New rule ids for db (the old one goes), web deleted, a new application.
        let db2 = policy("db", &[(CATCHALL_IN, 31), ("sql", 32)]);
        let api = policy("api", &[(CATCHALL_OUT, 41)]);
        live.observe(&Event::Apply(db2.clone()));
        live.observe(&Event::Delete(web.clone()));
        live.observe(&Event::Apply(api.clone()));
        let after = live.snapshot();
        let mut rebuilt = Index::default();
        add_all(&mut rebuilt, &identity(), [&db2, &api]);
        for id in [11, 12, 13, 21, 31, 32, 41, 99] {
            assert_eq!(
                after.attribute(id, None),
                rebuilt.attribute(id, None),
                "rule {id}"
            );
        }
        assert_eq!((after.rules(), after.policies()), (3, 2));
        let tag = crate::nsx::naming::monitor_tag(
            &identity().object_id("shop", "web"),
            crate::api::Direction::Inbound,
        );
        assert!(after.attribute(7, Some(&tag)).is_none(), "web's tags went");
        let tag = crate::nsx::naming::monitor_tag(
            &identity().object_id("shop", "api"),
            crate::api::Direction::Inbound,
        );
        assert_eq!(
            after
                .attribute(7, Some(&tag))
                .map(|a| a.policy.name.as_str()),
            Some("api")
        );

        // A snapshot taken earlier is unchanged; an event that changes no rule id is a no-op.
        assert_eq!(owner(&before, 13).as_deref(), Some("web"));
        live.observe(&Event::Apply(api));
        assert!(Arc::ptr_eq(&after, &live.snapshot()));

        // A re-list replaces everything: what it does not list is gone.
        for e in [Event::Init, Event::InitApply(db2), Event::InitDone] {
            live.observe(&e);
        }
        let relisted = live.snapshot();
        assert_eq!(owner(&relisted, 41), None);
        assert_eq!(owner(&relisted, 32).as_deref(), Some("db"));
    }
}
