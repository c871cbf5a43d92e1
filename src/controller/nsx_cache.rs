//! What NSX holds for this cluster's applications, so that a reconcile reads it without calling
//! NSX (issue #22). [`CachedNsx`] wraps the NSX client: reconciles keep calling `get_group` and
//! `get_policy`, and those are answered from memory.
//!
//! - **Loaded** from one `GET /infra?filter=Type-Domain|Group|SecurityPolicy|Rule` at start and
//!   at every resync ([`refresh`]): only the groups and policies this cluster owns
//!   (`nsx::naming::Identity::owns` on their ownership tags, under the id the plan gives them) are kept.
//! - **Kept current** from the controller's own writes: after a successful `patch_infra`, a
//!   written group is kept as written, a deleted object is absent, and a written policy is read
//!   back from NSX at its next `get_policy` (for NSX's rule ids); a failed write leaves its
//!   objects unknown (read from NSX) until the next refresh.
//! - **A drift made by hand** shows at the next refresh: the entry then holds what NSX holds, and
//!   the reconcile of that application (triggered by the refresh) corrects it.
//! - **A miss** (domain not loaded, an id this cluster would use held by an object it does not
//!   own or cannot decode, an object after a failed write) is a GET, whose answer is kept. In a
//!   loaded domain, an id with no entry is absent from NSX.
//!
//! A refresh that overlaps a write keeps the written entry: the read may predate the write.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::nsx::model::{DomainChild, Group, Infra, InfraChild, SecurityPolicy, Tag};
use crate::nsx::naming::{Identity, OWNER_NAME, OWNER_NAMESPACE};
use crate::nsx::{DomainTree, Error, Held, NsxApi, Realization, TextDigest};

/// (domain, kind, id); kind is `Group` or `SecurityPolicy`.
pub type Key = (String, &'static str, String);

const GROUP: &str = "Group";
const POLICY: &str = "SecurityPolicy";

#[derive(Clone, Debug, PartialEq)]
enum Entry {
    Group(Box<Group>),
    Policy(Box<SecurityPolicy>),
}

#[derive(Default)]
struct Inner {
    /// Domains whose content is known.
    loaded: BTreeSet<String>,
    /// Owned objects.
    live: HashMap<Key, Entry>,
    /// Objects that must be read from NSX (foreign, undecodable, written policy, failed write).
    unknown: HashSet<Key>,
    /// Write sequence number of the objects the controller wrote or read itself.
    written: HashMap<Key, u64>,
    /// Groups kept as written, not yet seen as NSX returns them (NSX adds defaults and
    /// read-only fields: the first refresh after the write is no drift).
    as_written: HashSet<Key>,
    /// The digest of the text NSX returned for each entry as the last refresh decoded it: the
    /// next refresh does not decode that text again.
    digests: HashMap<Key, TextDigest>,
    /// Last sequence number handed out.
    seq: u64,
}

/// The NSX state cache.
pub struct NsxCache {
    identity: Identity,
    inner: Mutex<Inner>,
}

/// A refresh in progress: remembers which writes it may not overwrite, and the digests of the
/// texts the cache holds (NSX's read leaves them out).
#[derive(Clone, Debug)]
pub struct RefreshTicket {
    seq: u64,
    known: HashSet<TextDigest>,
}

impl RefreshTicket {
    /// What the cache holds, for NSX's read to leave out: the texts it decoded last time, and
    /// any object equal to its entry (one it wrote since, as NSX now returns it).
    pub fn held(&self, cache: &Arc<NsxCache>) -> Arc<dyn Held> {
        Arc::new(Holding {
            cache: cache.clone(),
            known: self.known.clone(),
        })
    }
}

/// [`Held`] by the cache as a refresh began.
struct Holding {
    cache: Arc<NsxCache>,
    known: HashSet<TextDigest>,
}

impl Holding {
    /// Whether a loaded domain holds `kind`/`id` as `is` (ids are this cluster's own, so the
    /// domain, which the listing may name after its children, is not needed).
    ///
    /// `adopt` compares the entry with what was read and, when they differ only in NSX's
    /// bookkeeping, takes it from the read: after its own write the cache holds the object as
    /// written, with the revision and modification time NSX had before; without this, the first
    /// refresh after a wave would decode every object the wave wrote again and hold that copy
    /// beside the cache's until the refresh ends.
    fn holds(&self, kind: &'static str, id: &str, adopt: impl Fn(&mut Entry) -> bool) -> bool {
        let mut inner = self.cache.lock();
        let Inner {
            loaded,
            unknown,
            live,
            ..
        } = &mut *inner;
        loaded.iter().any(|d| {
            let k = key(d, kind, id);
            !unknown.contains(&k) && live.get_mut(&k).is_some_and(&adopt)
        })
    }
}

/// `prev` with the top-level fields `written` sets (what a PATCH of it leaves in NSX, rules
/// aside); `None` if either does not serialize.
fn patched(prev: &SecurityPolicy, written: &SecurityPolicy) -> Option<SecurityPolicy> {
    let serde_json::Value::Object(mut base) = serde_json::to_value(prev).ok()? else {
        return None;
    };
    let serde_json::Value::Object(set) = serde_json::to_value(written).ok()? else {
        return None;
    };
    base.extend(set);
    serde_json::from_value(serde_json::Value::Object(base)).ok()
}

/// NSX's bookkeeping of an object: what changes on every write whatever was written
/// (revision, last modification time).
type Bookkeeping = (Option<i64>, Option<i64>);

/// Puts `to` into `meta`'s bookkeeping; returns what it held.
fn swap_bookkeeping(meta: &mut crate::nsx::model::Meta, to: Bookkeeping) -> Bookkeeping {
    let was = (meta.revision, meta.last_modified_time);
    (meta.revision, meta.last_modified_time) = to;
    was
}

fn bookkeeping(meta: &crate::nsx::model::Meta) -> Bookkeeping {
    (meta.revision, meta.last_modified_time)
}

/// Whether `cached` is `read` but for NSX's bookkeeping; if so, `cached` takes it from `read`
/// (compared in place: the fleet's refresh checks every policy it holds).
fn adopt_group(cached: &mut Group, read: &Group) -> bool {
    let was = swap_bookkeeping(&mut cached.meta, bookkeeping(&read.meta));
    let same = *cached == *read;
    if !same {
        swap_bookkeeping(&mut cached.meta, was);
    }
    same
}

/// As [`adopt_group`], for a policy and each of its rules.
fn adopt_policy(cached: &mut SecurityPolicy, read: &SecurityPolicy) -> bool {
    if cached.rules.len() != read.rules.len() {
        return false;
    }
    let was = swap_bookkeeping(&mut cached.meta, bookkeeping(&read.meta));
    let rules_were: Vec<Bookkeeping> = cached
        .rules
        .iter_mut()
        .zip(&read.rules)
        .map(|(c, r)| swap_bookkeeping(&mut c.meta, bookkeeping(&r.meta)))
        .collect();
    let same = *cached == *read;
    if !same {
        swap_bookkeeping(&mut cached.meta, was);
        for (c, w) in cached.rules.iter_mut().zip(rules_were) {
            swap_bookkeeping(&mut c.meta, w);
        }
    }
    same
}

impl Held for Holding {
    fn text(&self, digest: &TextDigest) -> bool {
        self.known.contains(digest)
    }

    fn group(&self, g: &Group) -> bool {
        self.holds(GROUP, &g.id, |e| match e {
            Entry::Group(c) => adopt_group(c, g),
            Entry::Policy(_) => false,
        })
    }

    fn policy(&self, p: &SecurityPolicy) -> bool {
        self.holds(POLICY, &p.id, |e| match e {
            Entry::Policy(c) => adopt_policy(c, p),
            Entry::Group(_) => false,
        })
    }
}

fn key(domain: &str, kind: &'static str, id: &str) -> Key {
    (domain.to_string(), kind, id.to_string())
}

impl NsxCache {
    /// An empty cache (nothing loaded: every lookup is a miss until the first refresh).
    pub fn new(identity: Identity) -> NsxCache {
        NsxCache {
            identity,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lookup(&self, k: &Key) -> Option<Option<Entry>> {
        let inner = self.lock();
        if !inner.loaded.contains(&k.0) || inner.unknown.contains(k) {
            return None;
        }
        Some(inner.live.get(k).cloned())
    }

    /// The group as NSX holds it (`Some(None)`: absent), or `None` when the cache cannot say.
    pub fn group(&self, domain: &str, id: &str) -> Option<Option<Group>> {
        self.lookup(&key(domain, GROUP, id)).map(|e| match e {
            Some(Entry::Group(g)) => Some(*g),
            _ => None,
        })
    }

    /// The policy with its rules as NSX holds it (`Some(None)`: absent), or `None` when the
    /// cache cannot say.
    pub fn policy(&self, domain: &str, id: &str) -> Option<Option<SecurityPolicy>> {
        self.lookup(&key(domain, POLICY, id)).map(|e| match e {
            Some(Entry::Policy(p)) => Some(*p),
            _ => None,
        })
    }

    fn set(&self, k: Key, entry: Option<Entry>, known: bool) {
        let mut inner = self.lock();
        inner.as_written.remove(&k);
        inner.digests.remove(&k);
        inner.seq += 1;
        let seq = inner.seq;
        inner.written.insert(k.clone(), seq);
        match entry {
            Some(e) => inner.live.insert(k.clone(), e),
            None => inner.live.remove(&k),
        };
        if known {
            inner.unknown.remove(&k);
        } else {
            inner.unknown.insert(k);
        }
    }

    /// Keeps a group as read from NSX or written.
    pub fn record_group(&self, domain: &str, id: &str, group: Option<&Group>) {
        let e = group.map(|g| Entry::Group(Box::new(g.clone())));
        self.set(key(domain, GROUP, id), e, true);
    }

    /// Keeps a policy as read from NSX.
    pub fn record_policy(&self, domain: &str, id: &str, policy: Option<&SecurityPolicy>) {
        let e = policy.map(|p| Entry::Policy(Box::new(p.clone())));
        self.set(key(domain, POLICY, id), e, true);
    }

    /// Updates the cache after `body` was written (`ok`) or refused (`!ok`): a written group is
    /// kept as written, a deleted object is absent, a written policy and every object of a
    /// refused write are read from NSX next time.
    pub fn written(&self, body: &Infra, ok: bool) {
        for InfraChild::ChildResourceReference {
            id: domain,
            children,
            ..
        } in &body.children
        {
            for c in children {
                match c {
                    DomainChild::ChildGroup {
                        id,
                        marked_for_delete,
                        group,
                    } => {
                        let k = key(domain, GROUP, id);
                        match (ok, marked_for_delete) {
                            (false, _) => self.set(k, None, false),
                            (true, true) => self.set(k, None, true),
                            (true, false) => {
                                self.set(
                                    k.clone(),
                                    Some(Entry::Group(Box::new(group.clone()))),
                                    true,
                                );
                                self.lock().as_written.insert(k);
                            }
                        }
                    }
                    DomainChild::ChildSecurityPolicy {
                        id,
                        marked_for_delete,
                        security_policy,
                    } => {
                        let k = key(domain, POLICY, id);
                        let known = match (ok, marked_for_delete) {
                            (true, false) => self.updated_in_place(&k, security_policy),
                            _ => None,
                        };
                        match known {
                            Some(p) => {
                                self.set(k.clone(), Some(Entry::Policy(Box::new(p))), true);
                                self.lock().as_written.insert(k);
                            }
                            None => self.set(k, None, ok && *marked_for_delete),
                        }
                    }
                }
            }
        }
    }

    /// The policy after a write that creates no rule (e.g. a catch-all turned to DROP): the
    /// cached policy with the written fields and rules, each rule keeping the `rule_id` NSX gave
    /// it (a rule id never changes), rules the write does not name kept (PATCH semantics), the
    /// revision one up. `None` when the write creates a rule or the policy is not known: it is
    /// read back from NSX.
    fn updated_in_place(&self, k: &Key, written: &SecurityPolicy) -> Option<SecurityPolicy> {
        let prev = {
            let inner = self.lock();
            if inner.unknown.contains(k) {
                return None;
            }
            match inner.live.get(k) {
                Some(Entry::Policy(p)) => (**p).clone(),
                _ => return None,
            }
        };
        let mut changes: HashMap<&str, Option<&crate::nsx::model::Rule>> = HashMap::new();
        for crate::nsx::model::PolicyChild::ChildRule {
            id,
            marked_for_delete,
            rule,
        } in &written.children
        {
            changes.insert(id.as_str(), (!marked_for_delete).then_some(rule));
        }
        for r in &written.rules {
            changes.insert(r.id.as_str(), Some(r));
        }
        let known: HashSet<&str> = prev
            .rules
            .iter()
            .filter(|r| r.rule_id.is_some())
            .map(|r| r.id.as_str())
            .collect();
        if changes
            .iter()
            .any(|(id, r)| r.is_some() && !known.contains(id))
        {
            return None;
        }
        // PATCH semantics: a field the write leaves out keeps its value (e.g. the
        // `sequence_number` NSX filled in); the rules are merged below.
        let mut next = patched(&prev, written)?;
        next.children = Vec::new();
        next.rules = prev
            .rules
            .iter()
            .filter_map(|old| match changes.get(old.id.as_str()) {
                None => Some(old.clone()),
                Some(None) => None,
                Some(Some(new)) => {
                    let mut r = (*new).clone();
                    r.rule_id = old.rule_id;
                    r.meta = old.meta.clone();
                    r.meta.revision = old.meta.revision.map(|v| v + 1);
                    Some(r)
                }
            })
            .collect();
        next.meta = prev.meta.clone();
        next.meta.revision = prev.meta.revision.map(|v| v + 1);
        Some(next)
    }

    /// Forgets everything (nothing loaded).
    pub fn reset(&self) {
        let mut inner = self.lock();
        let seq = inner.seq;
        *inner = Inner {
            seq,
            ..Inner::default()
        };
    }

    /// Call before reading NSX for a refresh.
    pub fn begin_refresh(&self) -> RefreshTicket {
        let inner = self.lock();
        let known = inner
            .digests
            .iter()
            .filter(|(k, _)| inner.live.contains_key(*k) && !inner.unknown.contains(*k))
            .map(|(_, d)| *d)
            .collect();
        RefreshTicket {
            seq: inner.seq,
            known,
        }
    }

    /// Replaces the content with what NSX returned (read after `ticket` was taken). Objects
    /// written or read since are kept. Returns the `(domain, id)` of the applications whose
    /// objects changed (drift, or new to the cache). The objects move from `trees` into the
    /// cache (at fleet size a copy is tens of megabytes beside the old content and the listing);
    /// an object NSX's read left out as known keeps its entry.
    pub fn apply_refresh(
        &self,
        ticket: RefreshTicket,
        trees: Vec<DomainTree>,
    ) -> Vec<(String, String)> {
        let mut live: HashMap<Key, Entry> = HashMap::new();
        let mut unknown: HashSet<Key> = HashSet::new();
        let mut digests: HashMap<Key, TextDigest> = HashMap::new();
        let mut same: Vec<(Key, TextDigest)> = Vec::new();
        let domains: BTreeSet<String> = trees.iter().map(|t| t.domain.clone()).collect();
        for t in trees {
            let mut read: HashMap<(&str, String), TextDigest> = t
                .digests
                .into_iter()
                .map(|(kind, id, d)| ((kind, id), d))
                .collect();
            let mut digest_of = |k: &Key| {
                if let Some(d) = read.remove(&(k.1, k.2.clone())) {
                    digests.insert(k.clone(), d);
                }
            };
            same.extend(
                t.known
                    .iter()
                    .map(|(kind, id, d)| (key(&t.domain, kind, id), *d)),
            );
            for g in t.groups {
                let k = key(&t.domain, GROUP, &g.id);
                match self.owner(&g.tags, &g.id) {
                    Some(true) => {
                        digest_of(&k);
                        live.insert(k, Entry::Group(Box::new(g)));
                    }
                    Some(false) => {}
                    None => {
                        unknown.insert(k);
                    }
                }
            }
            for p in t.policies {
                let k = key(&t.domain, POLICY, &p.id);
                match self.owner(&p.tags, &p.id) {
                    Some(true) => {
                        digest_of(&k);
                        live.insert(k, Entry::Policy(Box::new(p)));
                    }
                    Some(false) => {}
                    None => {
                        unknown.insert(k);
                    }
                }
            }
            for id in &t.undecoded {
                unknown.insert(key(&t.domain, GROUP, id));
                unknown.insert(key(&t.domain, POLICY, id));
            }
        }
        for k in &unknown {
            live.remove(k);
            digests.remove(k);
        }
        let mut inner = self.lock();
        // Objects written or read while NSX was being read: newer than the read.
        let recent: HashSet<Key> = inner
            .written
            .iter()
            .filter(|(_, s)| **s > ticket.seq)
            .map(|(k, _)| k.clone())
            .collect();
        // Objects read as the cache holds them keep their entry (moved, not copied) with the
        // digest of the text read; one the cache no longer holds (reset meanwhile) is read from
        // NSX. (The entry of one written since the read began was compared before that write:
        // the write is kept, below.)
        let mut unchanged: HashSet<Key> = HashSet::new();
        for (k, d) in same {
            if recent.contains(&k) {
                continue;
            }
            match inner.live.remove(&k) {
                Some(e) if !inner.unknown.contains(&k) => {
                    live.insert(k.clone(), e);
                    digests.insert(k.clone(), d);
                    unchanged.insert(k);
                }
                e => {
                    if let Some(e) = e {
                        inner.live.insert(k.clone(), e);
                    }
                    unknown.insert(k);
                }
            }
        }
        for k in recent {
            live.remove(&k);
            unknown.remove(&k);
            digests.remove(&k);
            unchanged.remove(&k);
            if let Some(e) = inner.live.get(&k) {
                live.insert(k.clone(), e.clone());
            }
            if inner.unknown.contains(&k) {
                unknown.insert(k);
            }
        }
        let mut changed: BTreeSet<(String, String)> = live
            .iter()
            .filter(|(k, e)| {
                !unchanged.contains(*k)
                    && inner.live.get(*k) != Some(*e)
                    && !inner.as_written.contains(*k)
            })
            .chain(inner.live.iter().filter(|(k, _)| !live.contains_key(*k)))
            .map(|((d, _, id), _)| (d.clone(), id.clone()))
            .collect();
        changed.extend(
            unknown
                .iter()
                .filter(|k| !inner.unknown.contains(*k))
                .map(|(d, _, id)| (d.clone(), id.clone())),
        );
        inner.loaded = domains;
        inner.live = live;
        inner.unknown = unknown;
        inner.digests = digests;
        inner.written.retain(|_, s| *s > ticket.seq);
        let Inner {
            written,
            as_written,
            ..
        } = &mut *inner;
        as_written.retain(|k| written.contains_key(k));
        changed.into_iter().collect()
    }

    /// `Some(true)` when this cluster owns the object under the id its plan gives it,
    /// `Some(false)` when the object is not this cluster's business (another id space), `None`
    /// when it holds an id of this cluster without being owned under it (read it from NSX).
    fn owner(&self, tags: &[Tag], id: &str) -> Option<bool> {
        let tag = |scope: &str| {
            tags.iter()
                .find(|t| t.scope == scope)
                .map(|t| t.tag.as_str())
        };
        if let (Some(ns), Some(name)) = (tag(OWNER_NAMESPACE), tag(OWNER_NAME))
            && self.identity.owns(tags, ns, name)
            && self.identity.object_id(ns, name) == id
        {
            return Some(true);
        }
        let ours = format!("ms_{}_", self.identity.cluster());
        (!id.starts_with(&ours)).then_some(false)
    }
}

/// Reads NSX into the cache. Returns the `(domain, id)` of the applications whose objects
/// changed.
pub async fn refresh(
    cache: &Arc<NsxCache>,
    nsx: &dyn NsxApi,
) -> Result<Vec<(String, String)>, Error> {
    let ticket = cache.begin_refresh();
    let trees = nsx.infra_tree_known(ticket.held(cache)).await?;
    Ok(cache.apply_refresh(ticket, trees))
}

/// The NSX client with reads of groups and policies served by an [`NsxCache`].
pub struct CachedNsx {
    inner: Arc<dyn NsxApi>,
    cache: Arc<NsxCache>,
}

impl CachedNsx {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn NsxApi>, cache: Arc<NsxCache>) -> CachedNsx {
        CachedNsx { inner, cache }
    }
}

#[async_trait]
impl NsxApi for CachedNsx {
    async fn get_group(&self, domain: &str, id: &str) -> Result<Option<Group>, Error> {
        if let Some(g) = self.cache.group(domain, id) {
            return Ok(g);
        }
        let g = self.inner.get_group(domain, id).await?;
        self.cache.record_group(domain, id, g.as_ref());
        Ok(g)
    }

    async fn get_policy(&self, domain: &str, id: &str) -> Result<Option<SecurityPolicy>, Error> {
        if let Some(p) = self.cache.policy(domain, id) {
            return Ok(p);
        }
        let p = self.inner.get_policy(domain, id).await?;
        self.cache.record_policy(domain, id, p.as_ref());
        Ok(p)
    }

    async fn list_groups(&self, domain: &str) -> Result<Vec<Group>, Error> {
        self.inner.list_groups(domain).await
    }

    async fn list_policies(&self, domain: &str) -> Result<Vec<SecurityPolicy>, Error> {
        self.inner.list_policies(domain).await
    }

    async fn infra_tree(&self) -> Result<Vec<DomainTree>, Error> {
        self.inner.infra_tree().await
    }

    async fn infra_tree_known(&self, held: Arc<dyn Held>) -> Result<Vec<DomainTree>, Error> {
        self.inner.infra_tree_known(held).await
    }

    async fn policy_trees(&self) -> Result<Vec<DomainTree>, Error> {
        self.inner.policy_trees().await
    }

    async fn patch_infra(&self, body: &Infra) -> Result<(), Error> {
        let r = self.inner.patch_infra(body).await;
        self.cache.written(body, r.is_ok());
        r
    }

    async fn patch_infra_relaxed(&self, body: &Infra) -> Result<(), Error> {
        let r = self.inner.patch_infra_relaxed(body).await;
        self.cache.written(body, r.is_ok());
        r
    }

    async fn group_has_members(&self, domain: &str, id: &str) -> Result<bool, Error> {
        self.inner.group_has_members(domain, id).await
    }

    async fn group_vm_names(&self, domain: &str, id: &str) -> Result<Vec<String>, Error> {
        self.inner.group_vm_names(domain, id).await
    }

    async fn realization(&self, intent_path: &str) -> Result<Realization, Error> {
        self.inner.realization(intent_path).await
    }
}

#[cfg(test)]
mod tests;
