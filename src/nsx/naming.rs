//! How microseg names what it owns in NSX: the cluster [`Identity`] in every object id and
//! ownership tag, object paths, the catch-all rule ids (canary ones too) and the monitor tag a
//! catch-all prints in DFW logs. Shared by the plan (which writes the names) and the monitor and
//! web ingestion (which read them back from logs). Pure: no IO.

use sha2::{Digest, Sha256};

use super::model::Tag;
use crate::api::Direction;

/// Tag scope naming the cluster that owns an NSX object.
pub const OWNER_CLUSTER: &str = "microseg.io/cluster";
/// Tag scope naming the owning namespace.
pub const OWNER_NAMESPACE: &str = "microseg.io/namespace";
/// Tag scope naming the owning SegmentationPolicy.
pub const OWNER_NAME: &str = "microseg.io/name";
/// Tag scope marking objects managed by microseg.
pub const MANAGED_BY: &str = "microseg.io/managed-by";
/// Value of the managed-by tag.
pub const MANAGED_BY_VALUE: &str = "microseg";
/// Id of the inbound catch-all rule.
pub const CATCHALL_IN: &str = "catchall_in";
/// Id of the outbound catch-all rule.
pub const CATCHALL_OUT: &str = "catchall_out";
/// Id of the inbound canary DROP catch-all.
pub const CATCHALL_IN_CANARY: &str = "catchall_in_canary";
/// Id of the outbound canary DROP catch-all.
pub const CATCHALL_OUT_CANARY: &str = "catchall_out_canary";

/// A cluster identity that is not 1–32 characters of `a-z`, `0-9` and `-`.
#[derive(thiserror::Error, Clone, Debug, PartialEq, Eq)]
#[error("cluster identity: {}", self.reason())]
pub struct InvalidIdentity(String);

impl InvalidIdentity {
    /// Why, without the field name.
    pub fn reason(&self) -> String {
        format!("{:?} must be 1-32 characters of a-z, 0-9 and '-'", self.0)
    }
}

/// Which cluster this controller is; part of every NSX id and ownership tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    cluster: String,
}

impl Identity {
    /// A cluster identity: 1–32 characters of `a-z`, `0-9` and `-`.
    pub fn new(cluster: &str) -> Result<Identity, InvalidIdentity> {
        let ok = !cluster.is_empty()
            && cluster.len() <= 32
            && cluster
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(InvalidIdentity(cluster.to_string()));
        }
        Ok(Identity {
            cluster: cluster.to_string(),
        })
    }

    /// The cluster name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The NSX id of a policy's group and security policy.
    pub fn object_id(&self, namespace: &str, name: &str) -> String {
        format!("ms_{}_{}_{}", self.cluster, namespace, name)
    }

    /// The ownership tags of a policy's objects.
    pub fn owner_tags(&self, namespace: &str, name: &str) -> Vec<Tag> {
        vec![
            Tag::new(OWNER_CLUSTER, &self.cluster),
            Tag::new(OWNER_NAMESPACE, namespace),
            Tag::new(OWNER_NAME, name),
            Tag::new(MANAGED_BY, MANAGED_BY_VALUE),
        ]
    }

    /// True when `tags` say this cluster's policy `namespace/name` owns the object.
    pub fn owns(&self, tags: &[Tag], namespace: &str, name: &str) -> bool {
        self.owner_tags(namespace, name)
            .iter()
            .all(|want| tags.contains(want))
    }
}

/// Policy path of a group.
pub fn group_path(domain: &str, id: &str) -> String {
    format!("/infra/domains/{domain}/groups/{id}")
}

/// Policy path of a security policy.
pub fn policy_path(domain: &str, id: &str) -> String {
    format!("/infra/domains/{domain}/security-policies/{id}")
}

/// The tag written on a catch-all rule, printed in DFW logs: `ms-<hash>-in|out` (≤ 32 chars).
pub fn monitor_tag(object_id: &str, direction: Direction) -> String {
    let digest = Sha256::digest(object_id.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let dir = match direction {
        Direction::Inbound => "in",
        Direction::Outbound => "out",
    };
    format!("ms-{hex}-{dir}")
}
