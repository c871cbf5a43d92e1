//! The client calls only tests make, built on the client's raw policy-API call
//! ([`Client::send_json`]): single-object PUT and PATCH of a group, the `_revision`
//! read-modify-write of a group, and DELETE by policy path.

use microseg::nsx::client::segment;
use microseg::nsx::model::Group;
use microseg::nsx::{Client, Error, NsxApi};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The policy path of a group.
fn group_path(domain: &str, id: &str) -> String {
    format!("/infra/domains/{}/groups/{}", segment(domain), segment(id))
}

/// A write of `body` at `path`; the answer's body decoded, if any.
async fn write<T: Serialize + DeserializeOwned>(
    client: &Client,
    method: Method,
    path: &str,
    body: &T,
) -> Result<Option<T>, Error> {
    let decode = |reason: String| Error::Decode {
        path: path.to_string(),
        reason,
    };
    let value =
        serde_json::to_value(body).map_err(|e| decode(format!("encoding the body: {e}")))?;
    match client.send_json(method, path, Some(&value)).await? {
        Some(answer) => serde_json::from_value(answer)
            .map(Some)
            .map_err(|e| decode(e.to_string())),
        None => Ok(None),
    }
}

/// Test-only calls of [`Client`].
#[allow(async_fn_in_trait)]
pub trait ClientExt {
    /// PUT (create or replace) of a group; carry `meta.revision` from a read to update.
    async fn put_group(&self, domain: &str, group: &Group) -> Result<Group, Error>;
    /// PATCH (create or update) of a group.
    async fn patch_group(&self, domain: &str, group: &Group) -> Result<(), Error>;
    /// Read-modify-write of a group with its `_revision`: on 412 the group is read again and
    /// `change` applied again, up to `max_conflict_retries` times, then `Error::Conflict`.
    /// Creates the group (from `change` applied to `None`) when absent.
    async fn update_group<F>(&self, domain: &str, id: &str, change: F) -> Result<Group, Error>
    where
        F: Fn(Option<Group>) -> Group + Send + Sync;
    /// DELETE of an object by policy path (absent objects are not an error).
    async fn delete(&self, policy_path: &str) -> Result<(), Error>;
}

impl ClientExt for Client {
    async fn put_group(&self, domain: &str, group: &Group) -> Result<Group, Error> {
        let path = group_path(domain, &group.id);
        write(self, Method::PUT, &path, group)
            .await?
            .ok_or_else(|| Error::Decode {
                path,
                reason: "PUT answered without a body".into(),
            })
    }

    async fn patch_group(&self, domain: &str, group: &Group) -> Result<(), Error> {
        let path = group_path(domain, &group.id);
        write(self, Method::PATCH, &path, group).await.map(|_| ())
    }

    async fn update_group<F>(&self, domain: &str, id: &str, change: F) -> Result<Group, Error>
    where
        F: Fn(Option<Group>) -> Group + Send + Sync,
    {
        let path = group_path(domain, id);
        let attempts = self.config().max_conflict_retries + 1;
        for _ in 1..=attempts {
            let current = self.get_group(domain, id).await?;
            let revision = current.as_ref().and_then(|g| g.meta.revision);
            let mut next = change(current);
            next.meta.revision = revision;
            match self.put_group(domain, &next).await {
                Err(Error::Api { status: 412, .. }) => {}
                other => return other,
            }
        }
        Err(Error::Conflict { path, attempts })
    }

    async fn delete(&self, policy_path: &str) -> Result<(), Error> {
        match self.send_json(Method::DELETE, policy_path, None).await {
            Ok(_) | Err(Error::Api { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
