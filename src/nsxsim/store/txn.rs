//! Atomic writes: every operation of a transaction is applied with an undo journal, the
//! references of the result are checked, and on any error everything is rolled back.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::objects::*;
use super::*;
use crate::nsx::codes;
use crate::nsxsim::errors::Fail;

/// One entry of the undo journal: what a key held before the transaction changed it.
enum Undo {
    Group(String, String, Option<Obj>),
    Policy(String, String, Option<PolicyState>),
    /// A policy's own fields before an update, and the rules the update dropped (its rules are
    /// journaled one by one, so a large policy is not copied for a one-rule change).
    PolicyHead(String, String, Obj, Vec<(String, Obj)>),
    /// One rule of a policy.
    Rule(String, String, String, Option<Obj>),
    Service(String, Option<ServiceState>),
    Domain(String, Option<DomainState>),
    NextRuleId(i64),
    Protected(String, Option<String>),
    Pending(String, Option<Pending>),
}

/// A transaction in progress: who writes, the undo journal, and what the reference check
/// looks at afterwards.
struct Txn<'a> {
    ctx: &'a Ctx,
    journal: Vec<Undo>,
    touched_policies: BTreeSet<(String, String)>,
    touched_groups: BTreeSet<(String, String)>,
    deleted: BTreeSet<String>,
}

/// Puts back what `key` held (`None`: it was absent).
fn restore<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, previous: Option<V>) {
    match previous {
        Some(v) => {
            map.insert(key, v);
        }
        None => {
            map.remove(&key);
        }
    }
}

impl Store {
    /// Applies `ops` atomically.
    pub fn transact(&mut self, ops: Vec<Op>, ctx: &Ctx) -> Result<(), Fail> {
        // Deletions whose time is up are complete (purged; nothing to undo).
        self.pending.retain(|_, p| p.until_ms > ctx.now_ms);
        let mut tx = Txn {
            ctx,
            journal: Vec::new(),
            touched_policies: BTreeSet::new(),
            touched_groups: BTreeSet::new(),
            deleted: BTreeSet::new(),
        };
        let mut result = ops.into_iter().try_for_each(|op| self.step(op, &mut tx));
        if result.is_ok() {
            let errs = self.check_references(&tx.touched_policies, &tx.touched_groups, &tx.deleted);
            if let Some(f) = Fail::from_errors(errs) {
                result = Err(f);
            }
        }
        if result.is_err() {
            self.rollback(tx.journal);
        }
        result
    }

    /// One operation: ownership and pending-delete checks, then the write.
    fn step(&mut self, op: Op, tx: &mut Txn<'_>) -> Result<(), Fail> {
        let target = self.target(&op);
        let deleting = matches!(
            op,
            Op::DeleteGroup { .. }
                | Op::DeletePolicy { .. }
                | Op::DeleteRule { .. }
                | Op::DeleteService { .. }
        );
        if let Some((path, true)) = &target {
            self.guard(path, tx.ctx)?;
        }
        // A rule deleted from a policy that stays goes with the policy's next section update
        // and does not block its path; a group, policy or service does until purged.
        if let Some((path, false)) = &target
            && !deleting
            && !matches!(op, Op::Rule { .. })
            && self.pending.contains_key(path)
        {
            return Err(pending_delete(path));
        }
        if let Some((path, exists)) = target {
            self.track(path, !exists && !deleting, deleting && exists, tx);
        }
        self.apply(op, tx)
    }

    fn rollback(&mut self, journal: Vec<Undo>) {
        for undo in journal.into_iter().rev() {
            match undo {
                Undo::Group(d, id, prev) => {
                    if let Some(dom) = self.domains.get_mut(&d) {
                        restore(&mut dom.groups, id, prev);
                    }
                }
                Undo::Policy(d, id, prev) => {
                    if let Some(dom) = self.domains.get_mut(&d) {
                        restore(&mut dom.policies, id, prev);
                    }
                }
                Undo::PolicyHead(d, id, policy, dropped) => {
                    if let Some(ps) = self
                        .domains
                        .get_mut(&d)
                        .and_then(|dom| dom.policies.get_mut(&id))
                    {
                        ps.policy = policy;
                        ps.rules.extend(dropped);
                    }
                }
                Undo::Rule(d, p, id, prev) => {
                    if let Some(ps) = self
                        .domains
                        .get_mut(&d)
                        .and_then(|dom| dom.policies.get_mut(&p))
                    {
                        restore(&mut ps.rules, id, prev);
                    }
                }
                Undo::Service(id, prev) => restore(&mut self.services, id, prev),
                Undo::Domain(id, prev) => restore(&mut self.domains, id, prev),
                Undo::NextRuleId(n) => self.next_rule_id = n,
                Undo::Protected(path, prev) => restore(&mut self.protected, path, prev),
                Undo::Pending(path, prev) => restore(&mut self.pending, path, prev),
            }
        }
    }

    /// Keeps a deleted object as pending for `ctx.pending_delete_ms` (journaled).
    fn mark_pending(&mut self, path: String, mut object: Value, tx: &mut Txn<'_>) {
        let ctx = tx.ctx;
        if ctx.pending_delete_ms <= 0 {
            return;
        }
        mark_deleted(&mut object);
        tx.journal.push(Undo::Pending(
            path.clone(),
            self.pending.get(&path).cloned(),
        ));
        self.pending.insert(
            path,
            Pending {
                until_ms: ctx.now_ms.saturating_add(ctx.pending_delete_ms),
                object,
            },
        );
    }

    fn domain_mut(&mut self, d: &str) -> Result<&mut DomainState, Fail> {
        self.domains
            .get_mut(d)
            .ok_or_else(|| Fail::not_found(&format!("/infra/domains/{d}")))
    }

    /// Refuses a change to an object another principal identity created, unless the request
    /// says `X-Allow-Overwrite: true` (403 assumed: the reference leaves the status open).
    fn guard(&self, path: &str, ctx: &Ctx) -> Result<(), Fail> {
        match self.protected.get(path) {
            Some(owner) if *owner != ctx.user && !ctx.allow_overwrite => Err(Fail::forbidden(
                codes::PROTECTED,
                format!(
                    "The object path=[{path}] is owned by principal identity {owner} and is protected; set X-Allow-Overwrite: true to modify it."
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Records who owns a created object, or forgets a deleted one (journaled).
    fn track(&mut self, path: String, created: bool, deleted: bool, tx: &mut Txn<'_>) {
        let owner = tx.ctx.principal.then(|| tx.ctx.user.clone());
        let change = match owner {
            Some(user) if created => Some(Some(user)),
            _ if deleted && self.protected.contains_key(&path) => Some(None),
            _ => None,
        };
        if let Some(next) = change {
            let prev = self.protected.get(&path).cloned();
            tx.journal.push(Undo::Protected(path.clone(), prev));
            restore(&mut self.protected, path, next);
        }
    }

    /// The path an operation writes, and whether the object exists before it.
    fn target(&self, op: &Op) -> Option<(String, bool)> {
        let dom = |d: &str| self.domains.get(d);
        Some(match op {
            Op::Domain { .. } => return None,
            Op::Group { domain, id, .. } | Op::DeleteGroup { domain, id } => (
                group_path(domain, id),
                dom(domain).is_some_and(|x| x.groups.contains_key(id)),
            ),
            Op::Policy { domain, id, .. } | Op::DeletePolicy { domain, id } => (
                policy_path(domain, id),
                dom(domain).is_some_and(|x| x.policies.contains_key(id)),
            ),
            Op::Rule {
                domain, policy, id, ..
            }
            | Op::DeleteRule { domain, policy, id } => (
                rule_path(domain, policy, id),
                dom(domain)
                    .and_then(|x| x.policies.get(policy))
                    .is_some_and(|p| p.rules.contains_key(id)),
            ),
            Op::Service { id, .. } | Op::DeleteService { id } => {
                (service_path(id), self.services.contains_key(id))
            }
        })
    }

    fn apply(&mut self, op: Op, tx: &mut Txn<'_>) -> Result<(), Fail> {
        match op {
            Op::Domain { id } => {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    self.domains.entry(id.clone())
                {
                    tx.journal.push(Undo::Domain(id.clone(), None));
                    let domain = stamp(
                        Obj::new(),
                        None,
                        "Domain",
                        &id,
                        format!("/infra/domains/{id}"),
                        "/infra",
                        tx.ctx,
                    );
                    slot.insert(DomainState {
                        domain,
                        ..DomainState::default()
                    });
                }
                Ok(())
            }
            Op::Group {
                domain,
                id,
                body,
                rev,
                mode,
            } => {
                let path = group_path(&domain, &id);
                let dom = self.domain_mut(&domain)?;
                let prev = dom.groups.get(&id).cloned();
                check_rev(&path, prev.as_ref(), rev)?;
                let obj = group_defaults(merged(prev.as_ref(), body, mode), &path);
                let parent = format!("/infra/domains/{domain}");
                let obj = stamp(obj, prev.as_ref(), "Group", &id, path, &parent, tx.ctx);
                dom.groups.insert(id.clone(), obj);
                tx.journal
                    .push(Undo::Group(domain.clone(), id.clone(), prev));
                tx.touched_groups.insert((domain, id));
                Ok(())
            }
            Op::DeleteGroup { domain, id } => {
                let Some(dom) = self.domains.get_mut(&domain) else {
                    return Ok(());
                };
                if let Some(prev) = dom.groups.remove(&id) {
                    let view = Self::group_view(&prev);
                    tx.journal
                        .push(Undo::Group(domain.clone(), id.clone(), Some(prev)));
                    let path = group_path(&domain, &id);
                    tx.deleted.insert(path.clone());
                    self.mark_pending(path, view, tx);
                }
                Ok(())
            }
            Op::Policy {
                domain,
                id,
                body,
                rev,
                mode,
                replace_rules,
            } => self.apply_policy((domain, id), body, (rev, mode), replace_rules, tx),
            Op::DeletePolicy { domain, id } => self.delete_policy(domain, id, tx),
            Op::Rule {
                domain,
                policy,
                id,
                body,
                rev,
            } => self.apply_rule((domain, policy, id), body, rev, tx),
            Op::DeleteRule { domain, policy, id } => self.delete_rule(domain, policy, id, tx),
            Op::Service {
                id,
                body,
                entries,
                rev,
                mode,
            } => self.apply_service(id, body, entries, (rev, mode), tx),
            Op::DeleteService { id } => {
                if let Some(prev) = self.services.get(&id) {
                    if is_system(&prev.service) {
                        return Err(read_only(&service_path(&id)));
                    }
                    let prev = self.services.remove(&id);
                    if let Some(ss) = &prev {
                        self.mark_pending(service_path(&id), Self::service_view(ss), tx);
                    }
                    tx.journal.push(Undo::Service(id.clone(), prev));
                    tx.deleted.insert(service_path(&id));
                }
                Ok(())
            }
        }
    }

    fn apply_policy(
        &mut self,
        (domain, id): (String, String),
        body: Obj,
        (rev, mode): (RevCheck, Mode),
        replace_rules: Option<BTreeSet<String>>,
        tx: &mut Txn<'_>,
    ) -> Result<(), Fail> {
        let path = policy_path(&domain, &id);
        let dom = self.domain_mut(&domain)?;
        let prev = dom.policies.get(&id).map(|p| p.policy.clone());
        if let Some(p) = &prev
            && is_system(p)
        {
            return Err(read_only(&path));
        }
        check_rev(&path, prev.as_ref(), rev)?;
        let obj = policy_defaults(merged(prev.as_ref(), body, mode));
        let policy = stamp(
            obj,
            prev.as_ref(),
            "SecurityPolicy",
            &id,
            path,
            &format!("/infra/domains/{domain}"),
            tx.ctx,
        );
        match (dom.policies.get_mut(&id), prev) {
            (Some(ps), Some(before)) => {
                ps.policy = policy;
                let dropped: Vec<(String, Obj)> = match replace_rules {
                    Some(keep) => {
                        let gone: Vec<String> = ps
                            .rules
                            .keys()
                            .filter(|rid| !keep.contains(*rid))
                            .cloned()
                            .collect();
                        gone.into_iter()
                            .filter_map(|rid| ps.rules.remove_entry(&rid))
                            .collect()
                    }
                    None => Vec::new(),
                };
                tx.journal.push(Undo::PolicyHead(
                    domain.clone(),
                    id.clone(),
                    before,
                    dropped,
                ));
            }
            _ => {
                dom.policies.insert(
                    id.clone(),
                    PolicyState {
                        policy,
                        rules: BTreeMap::new(),
                    },
                );
                tx.journal
                    .push(Undo::Policy(domain.clone(), id.clone(), None));
            }
        }
        tx.touched_policies.insert((domain, id));
        Ok(())
    }

    fn delete_policy(&mut self, domain: String, id: String, tx: &mut Txn<'_>) -> Result<(), Fail> {
        let path = policy_path(&domain, &id);
        let Some(dom) = self.domains.get_mut(&domain) else {
            return Ok(());
        };
        let Some(prev) = dom.policies.get(&id) else {
            return Ok(());
        };
        if is_system(&prev.policy) {
            return Err(read_only(&path));
        }
        let prev = dom.policies.remove(&id);
        if let Some(ps) = &prev {
            for (rid, r) in &ps.rules {
                let view = Value::Object(Self::rule_view(r));
                self.mark_pending(rule_path(&domain, &id, rid), view, tx);
            }
            self.mark_pending(path, Self::policy_view(ps, true), tx);
        }
        tx.journal.push(Undo::Policy(domain, id, prev));
        Ok(())
    }

    fn apply_rule(
        &mut self,
        (domain, policy, id): (String, String, String),
        body: Obj,
        rev: RevCheck,
        tx: &mut Txn<'_>,
    ) -> Result<(), Fail> {
        let path = rule_path(&domain, &policy, &id);
        let ppath = policy_path(&domain, &policy);
        let next = self.next_rule_id;
        let dom = self.domain_mut(&domain)?;
        let Some(ps) = dom.policies.get_mut(&policy) else {
            return Err(Fail::not_found(&ppath));
        };
        if is_system(&ps.policy) && !ps.rules.contains_key(&id) {
            return Err(read_only(&ppath));
        }
        let prev = ps.rules.get(&id).cloned();
        let mut body = body;
        if let Some(p) = &prev
            && is_system(p)
        {
            let editable = p
                .get("rule_id")
                .and_then(Value::as_i64)
                .is_some_and(|n| EDITABLE_DEFAULT_RULES.contains(&n));
            if !editable {
                return Err(read_only(&path));
            }
            body = default_rule_edit(p, body, &path)?;
        }
        check_rev(&path, prev.as_ref(), rev)?;
        let layer2 = ps.policy.get("category").and_then(Value::as_str) == Some("Ethernet");
        let mut obj = stamp(
            rule_defaults(body, layer2),
            prev.as_ref(),
            "Rule",
            &id,
            path,
            &ppath,
            tx.ctx,
        );
        let rule_id = match prev.as_ref().and_then(|p| p.get("rule_id")) {
            Some(n) => n.clone(),
            None => json!(next),
        };
        if let Some(p) = &prev {
            for k in ["is_default", "_system_owned"] {
                if let Some(val) = p.get(k) {
                    obj.insert(k.into(), val.clone());
                }
            }
        }
        obj.insert("rule_id".into(), rule_id);
        let rpath = obj
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        ps.rules.insert(id.clone(), obj);
        tx.journal
            .push(Undo::Rule(domain.clone(), policy.clone(), id, prev.clone()));
        if prev.is_none() {
            tx.journal.push(Undo::NextRuleId(next));
            self.next_rule_id = next + 1;
            // A pending delete of the same rule is superseded by the new rule.
            if let Some(old) = self.pending.remove(&rpath) {
                tx.journal.push(Undo::Pending(rpath, Some(old)));
            }
        }
        tx.touched_policies.insert((domain, policy));
        Ok(())
    }

    fn delete_rule(
        &mut self,
        domain: String,
        policy: String,
        id: String,
        tx: &mut Txn<'_>,
    ) -> Result<(), Fail> {
        let ppath = policy_path(&domain, &policy);
        let Some(ps) = self
            .domains
            .get_mut(&domain)
            .and_then(|dom| dom.policies.get_mut(&policy))
        else {
            return Ok(());
        };
        let Some(r) = ps.rules.get(&id) else {
            return Ok(());
        };
        if is_system(r) {
            return Err(read_only(&format!("{ppath}/rules/{id}")));
        }
        let view = Value::Object(Self::rule_view(r));
        let before = ps.rules.remove(&id);
        tx.journal.push(Undo::Rule(
            domain.clone(),
            policy.clone(),
            id.clone(),
            before,
        ));
        self.mark_pending(rule_path(&domain, &policy, &id), view, tx);
        Ok(())
    }

    fn apply_service(
        &mut self,
        id: String,
        body: Obj,
        entries: Vec<(String, Obj)>,
        (rev, mode): (RevCheck, Mode),
        tx: &mut Txn<'_>,
    ) -> Result<(), Fail> {
        let path = service_path(&id);
        let prev = self.services.get(&id).cloned();
        if let Some(p) = &prev
            && is_system(&p.service)
        {
            return Err(read_only(&path));
        }
        check_rev(&path, prev.as_ref().map(|p| &p.service), rev)?;
        let obj = merged(prev.as_ref().map(|p| &p.service), body, mode);
        let service = stamp(
            obj,
            prev.as_ref().map(|p| &p.service),
            "Service",
            &id,
            path.clone(),
            "/infra",
            tx.ctx,
        );
        let mut all = match (&prev, mode) {
            (Some(p), Mode::Merge) => p.entries.clone(),
            _ => BTreeMap::new(),
        };
        for (eid, e) in entries {
            let kind = e
                .get("resource_type")
                .and_then(Value::as_str)
                .unwrap_or("L4PortSetServiceEntry")
                .to_string();
            let old = prev.as_ref().and_then(|p| p.entries.get(&eid));
            let stamped = stamp(
                e,
                old,
                &kind,
                &eid,
                format!("{path}/service-entries/{eid}"),
                &path,
                tx.ctx,
            );
            all.insert(eid, stamped);
        }
        self.services.insert(
            id.clone(),
            ServiceState {
                service,
                entries: all,
            },
        );
        tx.journal.push(Undo::Service(id, prev));
        Ok(())
    }
}
