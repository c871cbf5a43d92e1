use serde_json::json;

use super::*;
use crate::nsx::model::{DomainChild, Group, Infra, InfraChild, SecurityPolicy};

fn identity() -> Identity {
    Identity::new("prod").unwrap()
}

fn tags(ns: &str, name: &str) -> Vec<Tag> {
    identity().owner_tags(ns, name)
}

fn group(id: &str, tags: Vec<Tag>, ip: &str) -> Group {
    serde_json::from_value(json!({"resource_type": "Group", "id": id, "tags": tags,
        "expression": [{"resource_type": "IPAddressExpression", "ip_addresses": [ip]}]}))
    .unwrap()
}

fn policy(id: &str, tags: Vec<Tag>, rule_id: i64) -> SecurityPolicy {
    serde_json::from_value(
        json!({"resource_type": "SecurityPolicy", "id": id, "tags": tags,
        "rules": [{"resource_type": "Rule", "id": "r0", "action": "ALLOW", "rule_id": rule_id,
                   "source_groups": ["ANY"], "destination_groups": ["ANY"], "services": ["ANY"]}]}),
    )
    .unwrap()
}

fn tree(domain: &str, groups: Vec<Group>, policies: Vec<SecurityPolicy>) -> DomainTree {
    DomainTree {
        domain: domain.into(),
        groups,
        policies,
        ..DomainTree::default()
    }
}

const ID: &str = "ms_prod_shop_web";

fn loaded(cache: &NsxCache, trees: &[DomainTree]) -> Vec<(String, String)> {
    let t = cache.begin_refresh();
    cache.apply_refresh(t, trees.to_vec())
}

fn write(domain: &str, children: Vec<DomainChild>) -> Infra {
    Infra {
        resource_type: "Infra".into(),
        children: vec![InfraChild::ChildResourceReference {
            id: domain.into(),
            target_type: "Domain".into(),
            children,
        }],
    }
}

#[test]
fn nothing_is_known_before_the_first_refresh() {
    let cache = NsxCache::new(identity());
    assert_eq!(cache.group("default", ID), None);
    assert_eq!(cache.policy("default", ID), None);
}

#[test]
fn only_objects_this_cluster_owns_are_kept() {
    let cache = NsxCache::new(identity());
    let other = Identity::new("staging").unwrap();
    loaded(
        &cache,
        &[tree(
            "default",
            vec![
                group(ID, tags("shop", "web"), "10.0.0.1"),
                group(
                    "ms_staging_shop_web",
                    other.owner_tags("shop", "web"),
                    "10.0.0.2",
                ),
                group("hand-made", vec![], "10.0.0.3"),
                // This cluster's id, but not this cluster's tags: must be read from NSX.
                group("ms_prod_shop_db", vec![], "10.0.0.4"),
            ],
            vec![policy(ID, tags("shop", "web"), 1001)],
        )],
    );
    assert_eq!(cache.group("default", ID).unwrap().unwrap().id, ID);
    let p = cache.policy("default", ID).unwrap().unwrap();
    assert_eq!(p.rules[0].rule_id, Some(1001));
    assert_eq!(cache.group("default", "ms_prod_shop_db"), None);
    // Absent in a loaded domain: known to be absent.
    assert_eq!(cache.group("default", "ms_prod_shop_new"), Some(None));
    assert_eq!(cache.group("default", "ms_staging_shop_web"), Some(None));
    // A domain the refresh did not see: unknown.
    assert_eq!(cache.group("other", ID), None);
    // Tags of another application on this id: not owned under this id.
    loaded(
        &cache,
        &[tree(
            "default",
            vec![group(ID, tags("shop", "db"), "10.0.0.1")],
            vec![],
        )],
    );
    assert_eq!(cache.group("default", ID), None);
    assert_eq!(cache.policy("default", ID), Some(None));
}

#[test]
fn an_object_that_does_not_decode_is_never_taken_as_absent() {
    let cache = NsxCache::new(identity());
    let mut t = tree("default", vec![], vec![]);
    t.undecoded.push(ID.into());
    loaded(&cache, &[t]);
    assert_eq!(cache.group("default", ID), None);
    assert_eq!(cache.policy("default", ID), None);
}

#[test]
fn a_write_updates_the_entries_and_a_refused_one_makes_them_unknown() {
    let cache = NsxCache::new(identity());
    loaded(&cache, &[tree("default", vec![], vec![])]);
    let g = group(ID, tags("shop", "web"), "10.0.0.1");
    let p = policy(ID, tags("shop", "web"), 0);
    let body = write(
        "default",
        vec![
            DomainChild::ChildGroup {
                id: ID.into(),
                marked_for_delete: false,
                group: g.clone(),
            },
            DomainChild::ChildSecurityPolicy {
                id: ID.into(),
                marked_for_delete: false,
                security_policy: p.clone(),
            },
        ],
    );
    cache.written(&body, true);
    assert_eq!(cache.group("default", ID), Some(Some(g.clone())));
    // The policy is read back (rule ids), then kept.
    assert_eq!(cache.policy("default", ID), None);
    let read = policy(ID, tags("shop", "web"), 1001);
    cache.record_policy("default", ID, Some(&read));
    assert_eq!(cache.policy("default", ID), Some(Some(read)));
    cache.written(&body, false);
    assert_eq!(cache.group("default", ID), None);
    assert_eq!(cache.policy("default", ID), None);
    // A deletion.
    let gone = write(
        "default",
        vec![DomainChild::ChildGroup {
            id: ID.into(),
            marked_for_delete: true,
            group: g,
        }],
    );
    cache.written(&gone, true);
    assert_eq!(cache.group("default", ID), Some(None));
    // The next refresh knows everything again.
    loaded(&cache, &[tree("default", vec![], vec![])]);
    assert_eq!(cache.policy("default", ID), Some(None));
}

#[test]
fn a_refresh_finds_a_drift_made_by_hand() {
    let cache = NsxCache::new(identity());
    let ours = |ip: &str, rule_id| {
        tree(
            "default",
            vec![group(ID, tags("shop", "web"), ip)],
            vec![policy(ID, tags("shop", "web"), rule_id)],
        )
    };
    loaded(&cache, &[ours("10.0.0.1", 1001)]);
    assert!(loaded(&cache, &[ours("10.0.0.1", 1001)]).is_empty());
    let changed = loaded(&cache, &[ours("10.9.9.9", 1001)]);
    assert_eq!(changed, vec![("default".to_string(), ID.to_string())]);
    assert_eq!(
        cache.group("default", ID),
        Some(Some(group(ID, tags("shop", "web"), "10.9.9.9")))
    );
    // Deleted by hand.
    let changed = loaded(&cache, &[tree("default", vec![], vec![])]);
    assert_eq!(changed.len(), 1);
    assert_eq!(cache.group("default", ID), Some(None));
    assert_eq!(cache.policy("default", ID), Some(None));
}

#[test]
fn a_refresh_that_overlaps_a_write_keeps_the_write() {
    let cache = NsxCache::new(identity());
    loaded(&cache, &[tree("default", vec![], vec![])]);
    let ticket = cache.begin_refresh();
    let g = group(ID, tags("shop", "web"), "10.0.0.1");
    cache.record_group("default", ID, Some(&g));
    // The read began before the write: it does not have the group yet.
    cache.apply_refresh(ticket, vec![tree("default", vec![], vec![])]);
    assert_eq!(cache.group("default", ID), Some(Some(g)));
    // A later refresh is authoritative again.
    loaded(&cache, &[tree("default", vec![], vec![])]);
    assert_eq!(cache.group("default", ID), Some(None));
}

/// A write of `live`'s first rule with another action, through children (how a catch-all
/// flip is written); the policy body as `edit` leaves it.
fn flip_of(live: &SecurityPolicy, action: &str, edit: impl FnOnce(&mut SecurityPolicy)) -> Infra {
    let mut rule = live.rules[0].clone();
    rule.rule_id = None;
    rule.action = action.into();
    let mut p = live.clone();
    p.rules = Vec::new();
    p.children = vec![crate::nsx::model::PolicyChild::ChildRule {
        id: "r0".into(),
        marked_for_delete: false,
        rule,
    }];
    edit(&mut p);
    write(
        "default",
        vec![DomainChild::ChildSecurityPolicy {
            id: ID.into(),
            marked_for_delete: false,
            security_policy: p,
        }],
    )
}

fn loaded_at_revision_3(cache: &NsxCache) -> SecurityPolicy {
    let mut live = policy(ID, tags("shop", "web"), 1001);
    live.meta.revision = Some(3);
    loaded(cache, &[tree("default", vec![], vec![live.clone()])]);
    live
}

#[test]
fn a_write_that_creates_no_rule_is_known_at_once_with_the_rule_ids_nsx_gave() {
    let cache = NsxCache::new(identity());
    let live = loaded_at_revision_3(&cache);
    // The catch-all turned to DROP: the same rule, another action, written through children.
    cache.written(&flip_of(&live, "DROP", |_| {}), true);
    let known = cache.policy("default", ID).unwrap().unwrap();
    assert_eq!(known.rules.len(), 1);
    assert_eq!(known.rules[0].rule_id, Some(1001), "the rule id NSX gave");
    assert_eq!(known.rules[0].action, "DROP");
    assert_eq!(known.meta.revision, Some(4));
    // A write that adds a rule is read back from NSX (NSX gives the new rule its id).
    let mut new_rule = live.rules[0].clone();
    new_rule.id = "r9".into();
    new_rule.rule_id = None;
    let added = flip_of(&live, "DROP", |p| {
        p.children.push(crate::nsx::model::PolicyChild::ChildRule {
            id: "r9".into(),
            marked_for_delete: false,
            rule: new_rule,
        })
    });
    cache.written(&added, true);
    assert_eq!(cache.policy("default", ID), None);
}

#[test]
fn in_place_writes_follow_each_other_and_an_unknown_policy_is_always_read_back() {
    // DROP, then back to PASS (a rollback) a moment later: the cache must hold PASS, never the
    // DROP it knew first; and after a refused write the policy is not guessed in place.
    let cache = NsxCache::new(identity());
    let live = loaded_at_revision_3(&cache);
    let flip = |action: &str| flip_of(&live, action, |_| {});
    cache.written(&flip("DROP"), true);
    cache.written(&flip("ALLOW"), true);
    let known = cache.policy("default", ID).unwrap().unwrap();
    assert_eq!(known.rules[0].action, "ALLOW", "the last write wins");
    assert_eq!(known.rules[0].rule_id, Some(1001));
    assert_eq!(known.meta.revision, Some(5), "two writes, two revisions");
    // NSX refused a write: what it holds is unknown, and the next write that succeeds does
    // not make it known by guessing from the entry before the refusal.
    cache.written(&flip("DROP"), false);
    assert_eq!(cache.policy("default", ID), None);
    cache.written(&flip("DROP"), true);
    assert_eq!(
        cache.policy("default", ID),
        None,
        "read back from NSX, not derived from an unknown entry"
    );
}

/// `GET /infra` as NSX answers it (reference §7: wrappers with the object under its capitalised
/// key, rules in `children`), holding `groups` and `policies` in domain `default`.
fn infra_text(groups: &[Group], policies: &[SecurityPolicy]) -> Vec<u8> {
    let mut children: Vec<serde_json::Value> = groups
        .iter()
        .map(|g| json!({"resource_type": "ChildGroup", "id": g.id, "Group": g}))
        .collect();
    children.extend(policies.iter().map(|p| {
        let mut body = serde_json::to_value(p).unwrap();
        let rules = body.as_object_mut().unwrap().remove("rules").unwrap();
        body["children"] = rules
            .as_array()
            .unwrap()
            .iter()
            .map(|r| json!({"resource_type": "ChildRule", "id": r["id"], "Rule": r}))
            .collect();
        json!({"resource_type": "ChildSecurityPolicy", "id": p.id, "SecurityPolicy": body})
    }));
    serde_json::to_vec(
        &json!({"resource_type": "Infra", "id": "infra", "children": [
        {"resource_type": "ChildDomain", "id": "default",
         "Domain": {"resource_type": "Domain", "id": "default", "children": children}}]}),
    )
    .unwrap()
}

/// A refresh through the client's decoder, leaving out what the cache holds.
fn refreshed(cache: &Arc<NsxCache>, text: &[u8]) -> (Vec<(String, String)>, Vec<DomainTree>) {
    let ticket = cache.begin_refresh();
    let trees = crate::nsx::client::domain_trees(text, Some(ticket.held(cache))).unwrap();
    (cache.apply_refresh(ticket, trees.clone()), trees)
}

#[test]
fn a_refresh_does_not_decode_again_what_the_cache_holds_as_nsx_returned_it() {
    let cache = Arc::new(NsxCache::new(identity()));
    let g = group(ID, tags("shop", "web"), "10.0.0.1");
    let p = policy(ID, tags("shop", "web"), 1001);
    let foreign = group("hand-made", vec![], "10.1.1.1");
    let text = infra_text(&[g.clone(), foreign.clone()], std::slice::from_ref(&p));
    let (changed, trees) = refreshed(&cache, &text);
    assert_eq!(changed, vec![("default".to_string(), ID.to_string())]);
    assert_eq!((trees[0].groups.len(), trees[0].policies.len()), (2, 1));
    assert!(trees[0].known.is_empty());
    let named = |trees: &[DomainTree]| -> Vec<(&str, String)> {
        trees[0]
            .known
            .iter()
            .map(|(k, id, _)| (*k, id.clone()))
            .collect()
    };
    // The same answer again: this cluster's two objects are named, not decoded; the foreign
    // group (not held) is decoded again; nothing changed and the entries are as before.
    let (changed, trees) = refreshed(&cache, &text);
    assert!(changed.is_empty(), "{changed:?}");
    assert_eq!(
        named(&trees),
        vec![(GROUP, ID.to_string()), (POLICY, ID.to_string())]
    );
    assert_eq!(trees[0].groups, vec![foreign.clone()]);
    assert!(trees[0].policies.is_empty());
    assert_eq!(cache.group("default", ID), Some(Some(g.clone())));
    assert_eq!(cache.policy("default", ID), Some(Some(p.clone())));
    // A rule changed by hand changes the policy's text: it is decoded and found.
    let drifted = policy(ID, tags("shop", "web"), 1009);
    let text2 = infra_text(&[g.clone(), foreign], std::slice::from_ref(&drifted));
    let (changed, trees) = refreshed(&cache, &text2);
    assert_eq!(changed, vec![("default".to_string(), ID.to_string())]);
    assert_eq!(named(&trees), vec![(GROUP, ID.to_string())]);
    assert_eq!(cache.policy("default", ID), Some(Some(drifted.clone())));
    assert_eq!(cache.group("default", ID), Some(Some(g)));
    // An entry the controller wrote or read itself has no text yet: NSX's answer equal to it
    // is named too (compared once decoded), and its text is known from then on.
    cache.record_policy("default", ID, Some(&drifted));
    assert_eq!(cache.begin_refresh().known.len(), 1);
    let (changed, trees) = refreshed(&cache, &text2);
    assert!(changed.is_empty(), "{changed:?}");
    assert_eq!(
        named(&trees),
        vec![(GROUP, ID.to_string()), (POLICY, ID.to_string())]
    );
    assert_eq!(cache.begin_refresh().known.len(), 2);
    assert_eq!(cache.policy("default", ID), Some(Some(drifted)));
}

#[test]
fn an_entry_written_or_forgotten_since_is_not_taken_from_a_text_left_out() {
    let cache = Arc::new(NsxCache::new(identity()));
    let g = group(ID, tags("shop", "web"), "10.0.0.1");
    let text = infra_text(std::slice::from_ref(&g), &[]);
    refreshed(&cache, &text);
    // Written while NSX was being read: the write is newer than the read.
    let ticket = cache.begin_refresh();
    let trees = crate::nsx::client::domain_trees(&text[..], Some(ticket.held(&cache))).unwrap();
    assert_eq!(trees[0].known.len(), 1);
    let written = group(ID, tags("shop", "web"), "10.0.0.2");
    cache.record_group("default", ID, Some(&written));
    cache.apply_refresh(ticket, trees);
    assert_eq!(cache.group("default", ID), Some(Some(written.clone())));
    assert!(cache.begin_refresh().known.is_empty());
    // The next read decodes the group again (NSX holds the old one: a drift).
    let (changed, _) = refreshed(&cache, &text);
    assert_eq!(changed.len(), 1);
    assert_eq!(cache.group("default", ID), Some(Some(g)));
    // Forgotten (reset) while NSX was being read: what was left out is unknown, read from NSX.
    let ticket = cache.begin_refresh();
    let trees = crate::nsx::client::domain_trees(&text[..], Some(ticket.held(&cache))).unwrap();
    cache.reset();
    cache.apply_refresh(ticket, trees);
    assert_eq!(cache.group("default", ID), None);
}

/// The cache takes NSX's bookkeeping from a read that differs in nothing else, and keeps its
/// own entry untouched when anything else differs (a drift is found, not papered over).
#[test]
fn a_read_that_differs_only_in_bookkeeping_is_adopted_and_any_other_difference_is_not() {
    let mut cached = policy(ID, tags("shop", "web"), 7);
    cached.meta.revision = Some(3);
    cached.rules[0].meta.revision = Some(3);
    let mut read = cached.clone();
    read.meta.revision = Some(4);
    read.meta.last_modified_time = Some(1_764_000_000_000);
    read.rules[0].meta.revision = Some(4);

    let mut drifted = read.clone();
    drifted.rules[0].action = crate::nsx::model::RuleAction::Drop;
    let before = cached.clone();
    assert!(!adopt_policy(&mut cached, &drifted));
    assert_eq!(cached, before, "a refused read leaves the entry as it was");

    assert!(adopt_policy(&mut cached, &read));
    assert_eq!(cached, read);

    let mut g = group(ID, tags("shop", "web"), "10.0.0.1");
    let mut g_read = g.clone();
    g_read.meta.revision = Some(2);
    let mut g_drifted = g_read.clone();
    g_drifted.display_name = Some("by hand".into());
    let g_before = g.clone();
    assert!(!adopt_group(&mut g, &g_drifted));
    assert_eq!(g, g_before);
    assert!(adopt_group(&mut g, &g_read));
    assert_eq!(g, g_read);
}
