//! Pure decoding of `GET /infra` subtrees and of realized entities.

use serde_json::Value;

use crate::nsx::model::{Group, SecurityPolicy};
use crate::nsx::{DomainTree, Realization};

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

/// One node of a `GET /infra` subtree: its id and its `Child<Type>` wrappers, each object left
/// as the raw JSON text (decoded one at a time: a whole fleet is never held as a `Value`).
#[derive(serde::Deserialize)]
struct RawNode<'a> {
    #[serde(default)]
    id: String,
    #[serde(default, borrow)]
    children: Vec<RawChild<'a>>,
}

/// A `Child<Type>` wrapper with the object under its capitalised key (reference §2.6).
#[derive(serde::Deserialize)]
struct RawChild<'a> {
    #[serde(rename = "Domain", default, borrow)]
    domain: Option<&'a serde_json::value::RawValue>,
    #[serde(rename = "Group", default, borrow)]
    group: Option<&'a serde_json::value::RawValue>,
    #[serde(rename = "SecurityPolicy", default, borrow)]
    policy: Option<&'a serde_json::value::RawValue>,
}

/// Domains, groups and policies (rules moved from `children` into `rules`) of a `GET /infra`
/// subtree. A group or policy that does not decode is named in `undecoded`.
pub fn domain_trees(body: &[u8]) -> Result<Vec<DomainTree>, serde_json::Error> {
    let infra: RawNode<'_> = serde_json::from_slice(body)?;
    let id_of = |raw: &serde_json::value::RawValue| {
        serde_json::from_str::<RawNode<'_>>(raw.get())
            .map(|n| n.id)
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for d in infra.children.iter().filter_map(|c| c.domain) {
        let domain: RawNode<'_> = serde_json::from_str(d.get())?;
        let mut tree = DomainTree {
            domain: domain.id,
            ..DomainTree::default()
        };
        for c in &domain.children {
            if let Some(g) = c.group {
                match serde_json::from_str::<Group>(g.get()) {
                    Ok(g) => tree.groups.push(g),
                    Err(_) => tree.undecoded.push(id_of(g)),
                }
            }
            if let Some(p) = c.policy {
                match serde_json::from_str::<SecurityPolicy>(p.get()) {
                    Ok(mut policy) => {
                        policy.rules.extend(
                            std::mem::take(&mut policy.children)
                                .into_iter()
                                .map(|crate::nsx::model::PolicyChild::ChildRule { rule, .. }| rule),
                        );
                        tree.policies.push(policy);
                    }
                    Err(_) => tree.undecoded.push(id_of(p)),
                }
            }
        }
        out.push(tree);
    }
    Ok(out)
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
        let trees = domain_trees(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(trees.len(), 1);
        let t = &trees[0];
        assert_eq!(t.domain, "default");
        assert_eq!(t.groups.len(), 1);
        assert_eq!(t.groups[0].id, "g1");
        assert_eq!(t.undecoded, ["g2"]);
        assert_eq!(t.policies.len(), 1);
        assert!(t.policies[0].children.is_empty());
        assert_eq!(t.policies[0].rules[0].rule_id, Some(1017));
        assert!(domain_trees(b"{\"children\": 3}").is_err());
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
