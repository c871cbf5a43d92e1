//! Pure decoding of `GET /infra` subtrees and of realized entities.

use serde_json::Value;

use std::cell::RefCell;
use std::sync::Arc;

use crate::nsx::model::{Group, SecurityPolicy};
use crate::nsx::{DomainTree, Held, Realization, TextDigest, text_digest};

/// Maps realized entities to one state: any `ERROR` fails (with NSX's message), all
/// `REALIZED` is realized, anything else (including no entity yet) is in progress.
pub fn realization_of(entities: &[Value]) -> Realization {
    let state = |e: &Value| {
        e.get("state")
            .and_then(Value::as_str)
            .unwrap_or("UNKNOWN")
            .to_string()
    };
    if let Some(e) = entities.iter().find(|e| state(e) == "ERROR") {
        let msg = [
            "runtime_error",
            "publish_status_error",
            "operational_status_error",
        ]
        .iter()
        .find_map(|k| e.get(*k).and_then(Value::as_str))
        .unwrap_or("realization failed");
        let id = e.get("id").and_then(Value::as_str).unwrap_or("");
        return Realization::Failed(format!("{id}: {msg}"));
    }
    if !entities.is_empty() && entities.iter().all(|e| state(e) == "REALIZED") {
        return Realization::Realized;
    }
    Realization::InProgress
}

/// The type filter of [`NsxApi::infra_tree`].
pub const INFRA_TREE_FILTER: &str = "Type-Domain|Group|SecurityPolicy|Rule";

/// The type filter of [`NsxApi::policy_trees`].
pub const POLICY_TREE_FILTER: &str = "Type-Domain|SecurityPolicy|Rule";

/// The top of a `GET /infra` subtree: its `ChildDomain` wrappers.
#[derive(serde::Deserialize)]
struct InfraNode {
    #[serde(default)]
    children: Vec<InfraChild>,
}

/// A `Child<Type>` wrapper under infra, with the domain under its capitalised key (reference
/// §2.6); other children are skipped.
#[derive(serde::Deserialize)]
struct InfraChild {
    #[serde(rename = "Domain", default)]
    domain: Option<DomainNode>,
}

/// A domain and its children, each decoded as soon as it is read (see [`Entry`]).
#[derive(serde::Deserialize)]
struct DomainNode {
    #[serde(default)]
    id: String,
    #[serde(default)]
    children: Vec<Entry>,
}

/// One child of a domain, decoded the moment its wrapper is read: the object's JSON text is
/// held only for that, never the whole listing's (a fleet's listing is tens of megabytes). What
/// the reader holds ([`HELD`]) keeps only its id and digest.
#[derive(serde::Deserialize)]
#[serde(from = "RawEntry")]
enum Entry {
    Group(Group, TextDigest),
    Policy(SecurityPolicy, TextDigest),
    /// A group the reader holds: its id and the digest of its text.
    KnownGroup(String, TextDigest),
    /// A policy the reader holds: its id and the digest of its text.
    KnownPolicy(String, TextDigest),
    /// A group or policy that does not decode: its id.
    Undecoded(String),
    Other,
}

thread_local! {
    /// What the reader holds, while [`domain_trees`] decodes on this thread (serde's `from`
    /// conversion of [`Entry`] takes no context).
    static HELD: RefCell<Option<Arc<dyn Held>>> = RefCell::default();
}

/// A domain child's wrapper with the object under its capitalised key, as JSON text.
#[derive(serde::Deserialize)]
struct RawEntry {
    #[serde(rename = "Group", default)]
    group: Option<Box<serde_json::value::RawValue>>,
    #[serde(rename = "SecurityPolicy", default)]
    policy: Option<Box<serde_json::value::RawValue>>,
}

impl From<RawEntry> for Entry {
    fn from(raw: RawEntry) -> Entry {
        #[derive(serde::Deserialize)]
        struct Id {
            #[serde(default)]
            id: String,
        }
        let id_of = |raw: &serde_json::value::RawValue| {
            serde_json::from_str::<Id>(raw.get())
                .map(|n| n.id)
                .unwrap_or_default()
        };
        let held = HELD.with(|h| h.borrow().clone());
        let held_text = |digest: &TextDigest| held.as_ref().is_some_and(|h| h.text(digest));
        if let Some(g) = raw.group {
            let digest = text_digest(g.get().as_bytes());
            if held_text(&digest) {
                return Entry::KnownGroup(id_of(&g), digest);
            }
            return match serde_json::from_str::<Group>(g.get()) {
                Ok(g) if held.as_ref().is_some_and(|h| h.group(&g)) => {
                    Entry::KnownGroup(g.id, digest)
                }
                Ok(g) => Entry::Group(g, digest),
                Err(_) => Entry::Undecoded(id_of(&g)),
            };
        }
        if let Some(p) = raw.policy {
            let digest = text_digest(p.get().as_bytes());
            if held_text(&digest) {
                return Entry::KnownPolicy(id_of(&p), digest);
            }
            return match serde_json::from_str::<SecurityPolicy>(p.get()) {
                Ok(mut policy) => {
                    policy.rules.extend(
                        std::mem::take(&mut policy.children)
                            .into_iter()
                            .map(|crate::nsx::model::PolicyChild::ChildRule { rule, .. }| rule),
                    );
                    if held.as_ref().is_some_and(|h| h.policy(&policy)) {
                        Entry::KnownPolicy(policy.id, digest)
                    } else {
                        Entry::Policy(policy, digest)
                    }
                }
                Err(_) => Entry::Undecoded(id_of(&p)),
            };
        }
        Entry::Other
    }
}

fn trees(infra: InfraNode) -> Vec<DomainTree> {
    infra
        .children
        .into_iter()
        .filter_map(|c| c.domain)
        .map(|d| {
            let mut tree = DomainTree {
                domain: d.id,
                ..DomainTree::default()
            };
            for entry in d.children {
                match entry {
                    Entry::Group(g, digest) => {
                        tree.digests.push((GROUP, g.id.clone(), digest));
                        tree.groups.push(g);
                    }
                    Entry::Policy(p, digest) => {
                        tree.digests.push((POLICY, p.id.clone(), digest));
                        tree.policies.push(p);
                    }
                    Entry::KnownGroup(id, digest) => tree.known.push((GROUP, id, digest)),
                    Entry::KnownPolicy(id, digest) => tree.known.push((POLICY, id, digest)),
                    Entry::Undecoded(id) => tree.undecoded.push(id),
                    Entry::Other => {}
                }
            }
            tree
        })
        .collect()
}

/// The kind of a group in [`DomainTree::known`] and [`DomainTree::digests`].
pub const GROUP: &str = "Group";
/// The kind of a security policy in [`DomainTree::known`] and [`DomainTree::digests`].
pub const POLICY: &str = "SecurityPolicy";

/// Domains, groups and policies (rules moved from `children` into `rules`) of a `GET /infra`
/// subtree, read as it arrives: the listing is never held whole. A group or policy that does
/// not decode is named in `undecoded`; one `held` holds is named in `known`, not kept.
pub fn domain_trees(
    body: impl std::io::Read,
    held: Option<Arc<dyn Held>>,
) -> Result<Vec<DomainTree>, serde_json::Error> {
    /// Forgets what the reader holds however the decoding ends.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            HELD.with(|h| *h.borrow_mut() = None);
        }
    }
    HELD.with(|h| *h.borrow_mut() = held);
    let _reset = Reset;
    serde_json::from_reader(std::io::BufReader::with_capacity(64 << 10, body)).map(trees)
}

/// A blocking reader of the chunks an async task sends (the body of an answer as it arrives);
/// an `Err` chunk is the transport's failure, the end of the channel the end of the body.
pub struct ChunkReader {
    chunks: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, String>>,
    current: bytes::Bytes,
}

impl ChunkReader {
    /// Reads what `chunks` brings; to be read outside the async runtime (`spawn_blocking`).
    pub fn new(chunks: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, String>>) -> ChunkReader {
        ChunkReader {
            chunks,
            current: bytes::Bytes::new(),
        }
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(reason)) => return Err(std::io::Error::other(reason)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_tree_is_read_object_by_object_and_what_does_not_decode_is_named() {
        // The shape of GET /infra?filter=Type-Domain|Group|SecurityPolicy|Rule (reference §7,
        // §11a): wrappers with the object under its capitalised key, rules in `children`.
        let body = json!({"resource_type": "Infra", "id": "infra", "children": [
            {"resource_type": "ChildDomain", "id": "default", "marked_for_delete": false,
             "Domain": {"resource_type": "Domain", "id": "default", "children": [
                {"resource_type": "ChildGroup", "id": "g1", "marked_for_delete": false,
                 "Group": {"resource_type": "Group", "id": "g1", "_revision": 0,
                           "expression": [{"resource_type": "IPAddressExpression", "ip_addresses": ["10.0.0.1"]}]}},
                {"resource_type": "ChildGroup", "id": "g2", "marked_for_delete": false,
                 "Group": {"resource_type": "Group", "id": "g2", "expression": "not a list"}},
                {"resource_type": "ChildSecurityPolicy", "id": "p1", "marked_for_delete": false,
                 "SecurityPolicy": {"resource_type": "SecurityPolicy", "id": "p1", "children": [
                    {"resource_type": "ChildRule", "id": "r1", "marked_for_delete": false,
                     "Rule": {"resource_type": "Rule", "id": "r1", "rule_id": 1017, "action": "ALLOW",
                              "source_groups": ["ANY"], "destination_groups": ["ANY"], "services": ["ANY"]}}]}}]}}]});
        let trees = domain_trees(&serde_json::to_vec(&body).unwrap()[..], None).unwrap();
        assert_eq!(trees.len(), 1);
        let t = &trees[0];
        assert_eq!(t.domain, "default");
        assert_eq!(t.groups.len(), 1);
        assert_eq!(t.groups[0].id, "g1");
        assert_eq!(t.undecoded, ["g2"]);
        assert_eq!(t.policies.len(), 1);
        assert!(t.policies[0].children.is_empty());
        assert_eq!(t.policies[0].rules[0].rule_id, Some(1017));
        assert!(domain_trees(&b"{\"children\": 3}"[..], None).is_err());
        // The same body read as it arrives, seven bytes a chunk, decodes the same.
        let text = serde_json::to_vec(&body).unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(text.len());
        for c in text.chunks(7) {
            tx.try_send(Ok(bytes::Bytes::copy_from_slice(c))).unwrap();
        }
        drop(tx);
        assert_eq!(
            domain_trees(ChunkReader::new(rx), None).unwrap(),
            domain_trees(&text[..], None).unwrap()
        );
        // A transport failure mid-body is an IO error, not a decoding one.
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tx.try_send(Ok(bytes::Bytes::copy_from_slice(&text[..40])))
            .unwrap();
        tx.try_send(Err("connection reset".into())).unwrap();
        drop(tx);
        let e = domain_trees(ChunkReader::new(rx), None).unwrap_err();
        assert!(e.is_io(), "{e}");
    }

    #[test]
    fn a_text_whose_digest_is_known_is_named_not_decoded() {
        let g1 = json!({"resource_type": "Group", "id": "g1", "expression": []});
        let p1 = json!({"resource_type": "SecurityPolicy", "id": "p1", "children": []});
        let body = json!({"children": [{"resource_type": "ChildDomain", "id": "d",
            "Domain": {"id": "d", "children": [
                {"resource_type": "ChildGroup", "id": "g1", "Group": g1},
                {"resource_type": "ChildSecurityPolicy", "id": "p1", "SecurityPolicy": p1}]}}]});
        let text = serde_json::to_vec(&body).unwrap();
        let all = domain_trees(&text[..], None).unwrap();
        assert!(all[0].known.is_empty());
        assert_eq!(all[0].digests.len(), 2);
        // The digest is of the object's text as it stands in the answer.
        let (kind, id, digest) = all[0].digests[0].clone();
        assert_eq!((kind, id.as_str()), (GROUP, "g1"));
        assert_eq!(
            digest,
            text_digest(serde_json::to_string(&g1).unwrap().as_bytes())
        );
        /// Holds the text of g1, and p1 as decoded.
        struct Holds(TextDigest, SecurityPolicy);
        impl Held for Holds {
            fn text(&self, digest: &TextDigest) -> bool {
                *digest == self.0
            }
            fn group(&self, _: &Group) -> bool {
                false
            }
            fn policy(&self, p: &SecurityPolicy) -> bool {
                *p == self.1
            }
        }
        let p1_digest = all[0].digests[1].2;
        let held = Holds(digest, all[0].policies[0].clone());
        let some = domain_trees(&text[..], Some(Arc::new(held))).unwrap();
        assert_eq!(
            some[0].known,
            vec![
                (GROUP, "g1".to_string(), digest),
                (POLICY, "p1".to_string(), p1_digest)
            ]
        );
        assert!(some[0].groups.is_empty() && some[0].policies.is_empty());
        // The set is the decoding's only: the next decoding on this thread knows nothing.
        assert_eq!(domain_trees(&text[..], None).unwrap(), all);
    }

    #[test]
    fn realization_states_map() {
        assert_eq!(realization_of(&[]), Realization::InProgress);
        assert_eq!(
            realization_of(&[json!({"state": "REALIZED"}), json!({"state": "UNREALIZED"})]),
            Realization::InProgress
        );
        assert_eq!(
            realization_of(&[json!({"state": "REALIZED"})]),
            Realization::Realized
        );
        assert_eq!(
            realization_of(&[json!({"id": "x", "state": "ERROR", "runtime_error": "boom"})]),
            Realization::Failed("x: boom".into())
        );
    }
}
