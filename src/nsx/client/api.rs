//! [`NsxApi`] over the client's calls.

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::Value;

use super::tree::{INFRA_TREE_FILTER, POLICY_TREE_FILTER, realization_of};
use super::{Body, Client, POLICY_API, segment};
use crate::nsx::model::{Group, Infra, ListResult, SecurityPolicy};
use crate::nsx::{DomainTree, Error, Held, NsxApi, Realization};

impl Client {
    /// `GET /infra` with the subtree of the types `filter` names, as domain trees.
    async fn tree(
        &self,
        filter: &str,
        held: Option<Arc<dyn Held>>,
    ) -> Result<Vec<DomainTree>, Error> {
        let path = format!("{POLICY_API}/infra");
        let query = [("filter", filter.to_string())];
        let _one = self.inner.listings.acquire().await;
        self.get_trees(&path, &query, held).await
    }
}

#[async_trait]
impl NsxApi for Client {
    async fn group_has_members(&self, domain: &str, id: &str) -> Result<bool, Error> {
        let base = format!(
            "/infra/domains/{}/groups/{}/members",
            segment(domain),
            segment(id)
        );
        // A member VM is the common case (tag criteria): one call. The IP addresses (static
        // ones, and the VMs' own, which a VM without tools does not report) only when no VM is.
        if self.has_any(&format!("{base}/virtual-machines")).await? {
            return Ok(true);
        }
        self.has_any(&format!("{base}/ip-addresses")).await
    }

    async fn group_vm_names(&self, domain: &str, id: &str) -> Result<Vec<String>, Error> {
        let vms = self
            .list_values(&format!(
                "/infra/domains/{}/groups/{}/members/virtual-machines",
                segment(domain),
                segment(id)
            ))
            .await?;
        let mut names: Vec<String> = vms
            .iter()
            .filter_map(|v| v.get("display_name").and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn get_group(&self, domain: &str, id: &str) -> Result<Option<Group>, Error> {
        self.get(&format!(
            "/infra/domains/{}/groups/{}",
            segment(domain),
            segment(id)
        ))
        .await
    }

    async fn get_policy(&self, domain: &str, id: &str) -> Result<Option<SecurityPolicy>, Error> {
        self.get(&format!(
            "/infra/domains/{}/security-policies/{}",
            segment(domain),
            segment(id)
        ))
        .await
    }

    async fn list_groups(&self, domain: &str) -> Result<Vec<Group>, Error> {
        self.list(&format!("/infra/domains/{}/groups", segment(domain)))
            .await
    }

    async fn list_policies(&self, domain: &str) -> Result<Vec<SecurityPolicy>, Error> {
        self.list(&format!(
            "/infra/domains/{}/security-policies",
            segment(domain)
        ))
        .await
    }

    async fn infra_tree(&self) -> Result<Vec<DomainTree>, Error> {
        self.tree(INFRA_TREE_FILTER, None).await
    }

    async fn infra_tree_known(&self, held: Arc<dyn Held>) -> Result<Vec<DomainTree>, Error> {
        self.tree(INFRA_TREE_FILTER, Some(held)).await
    }

    async fn policy_trees(&self) -> Result<Vec<DomainTree>, Error> {
        self.tree(POLICY_TREE_FILTER, None).await
    }

    async fn patch_infra(&self, body: &Infra) -> Result<(), Error> {
        let path = format!("{POLICY_API}/infra");
        self.call(Method::PATCH, &path, &[], Self::json("/infra", body)?, true)
            .await
            .map(|_| ())
    }

    async fn realization(&self, intent_path: &str) -> Result<Realization, Error> {
        let path = format!("{POLICY_API}/infra/realized-state/realized-entities");
        let a = self
            .call(
                Method::GET,
                &path,
                &[("intent_path", intent_path.to_string())],
                Body::None,
                true,
            )
            .await?;
        let page: ListResult<Value> = Self::decode(intent_path, &a.body)?;
        Ok(realization_of(&page.results))
    }
}
