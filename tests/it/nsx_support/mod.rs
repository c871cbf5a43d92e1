//! Shared helpers of the NSX client tests: a target that is a fresh simulator on 127.0.0.1 by
//! default, or a real NSX Manager when `NSX_URL` is set (credentials from `NSX_USERNAME` /
//! `NSX_PASSWORD`, CA bundle from `NSX_CA_BUNDLE`, `NSX_INSECURE_SKIP_TLS_VERIFY=true` for
//! labs). On a real manager every object is named under a random test prefix and removed at
//! the end.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod client_ext;
#[allow(unused_imports)]
pub use client_ext::ClientExt;

use std::path::PathBuf;
use std::time::Duration;

use microseg::nsx::model::{
    DomainChild, Expression, Group, Infra, InfraChild, Meta, PolicyChild, Rule, SecurityPolicy,
    ServiceEntry, Tag,
};
use microseg::nsx::{AuthConfig, Client, ClientConfig, Credentials, NsxApi, PacingConfig};
use microseg::nsxsim::{self, Running};

/// Where the tests run.
pub struct Target {
    /// The client under test.
    pub client: Client,
    /// The simulator, when not against a real manager.
    pub sim: Option<Running>,
    /// Prefix of every object id the test creates.
    pub prefix: String,
    /// Domain.
    pub domain: String,
    /// Credential files of the simulator (user, password).
    pub creds: Option<CredentialFiles>,
    /// The client's configuration (to build a second, independent client).
    pub config: ClientConfig,
}

fn random_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Credential files in a temporary directory: the user name file, the password file, and the
/// directory itself (tests put a CA bundle or a state file beside them), removed on drop.
pub struct CredentialFiles(pub PathBuf, pub PathBuf, tempfile::TempDir);

/// Writes the simulator's admin credentials to two temporary files.
pub fn credential_files(password: &str) -> CredentialFiles {
    let dir = tempfile::Builder::new()
        .prefix("microseg-nsx-test-")
        .tempdir()
        .expect("temp dir");
    let user = dir.path().join("username");
    let pass = dir.path().join("password");
    std::fs::write(&user, "admin\n").expect("write user");
    std::fs::write(&pass, format!("{password}\n")).expect("write password");
    CredentialFiles(user, pass, dir)
}

/// A client of the simulator as its admin (session authentication when `session`, else basic),
/// and the credential files it reads (keep them while the client is in use).
pub fn admin_client(sim: &Running, session: bool) -> (Client, CredentialFiles) {
    let creds = credential_files(nsxsim::DEFAULT_PASSWORD);
    let client = Client::new(sim_client_config(&sim.url, &creds, session)).expect("client");
    (client, creds)
}

/// Creates the NSX groups that `manifests` name by path (they exist before microseg runs).
pub async fn put_external_groups(client: &Client, manifests: &str) {
    let paths: std::collections::BTreeSet<&str> = manifests
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .filter(|w| w.starts_with("/infra/domains/") && w.contains("/groups/"))
        .collect();
    for path in paths {
        let (domain, id) = path
            .trim_start_matches("/infra/domains/")
            .split_once("/groups/")
            .unwrap();
        client
            .patch_group(domain, &group(id, vec!["10.99.0.0/24"]))
            .await
            .unwrap();
    }
}

/// What NSX holds of one application: its group and its policy.
pub async fn live_state(client: &Client, domain: &str, id: &str) -> microseg::plan::LiveState {
    microseg::plan::LiveState {
        group: client.get_group(domain, id).await.unwrap(),
        policy: client.get_policy(domain, id).await.unwrap(),
    }
}

/// The JSON answer of a GET on the simulator's admin API (`url` in full).
pub async fn admin_get(url: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The DFW log lines the simulator at `sim_url` writes for one TCP flow, as its rules decide
/// (`POST /admin/flow`).
pub async fn flow_lines(sim_url: &str, src: &str, dst: &str, port: u16) -> Vec<String> {
    let v: serde_json::Value = reqwest::Client::new()
        .post(format!("{sim_url}/admin/flow"))
        .json(
            &serde_json::json!({"src_ip": src, "dst_ip": dst, "protocol": "TCP", "dst_port": port}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

/// True when the tests run against a real NSX Manager.
pub fn real_nsx() -> bool {
    std::env::var("NSX_URL").is_ok_and(|u| !u.is_empty())
}

/// A client config for the simulator at `url`.
pub fn sim_client_config(url: &str, creds: &CredentialFiles, session: bool) -> ClientConfig {
    let c = Credentials::files(&creds.0, &creds.1);
    let auth = if session {
        AuthConfig::Session(c)
    } else {
        AuthConfig::Basic(c)
    };
    let mut cfg = ClientConfig::new(url, auth);
    cfg.pacing = PacingConfig {
        rate: 200.0,
        concurrency: 20,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(200),
        ..PacingConfig::default()
    };
    cfg.request_timeout = Duration::from_secs(10);
    cfg
}

impl Target {
    /// The simulator (default) or the real manager of `NSX_URL`.
    pub async fn new() -> Target {
        Self::with(nsxsim::Config::default(), |_| {}).await
    }

    /// Like [`Target::new`], with a simulator config and client tweaks.
    pub async fn with(sim_config: nsxsim::Config, tweak: impl FnOnce(&mut ClientConfig)) -> Target {
        if real_nsx() {
            let url = std::env::var("NSX_URL").expect("NSX_URL");
            let mut cfg = ClientConfig::new(
                url,
                AuthConfig::Session(Credentials::env("NSX_USERNAME", "NSX_PASSWORD")),
            );
            cfg.ca_bundle = std::env::var("NSX_CA_BUNDLE").ok().map(PathBuf::from);
            cfg.insecure_skip_tls_verify =
                std::env::var("NSX_INSECURE_SKIP_TLS_VERIFY").is_ok_and(|v| v == "true");
            tweak(&mut cfg);
            return Target {
                client: Client::new(cfg.clone()).expect("client"),
                config: cfg,
                sim: None,
                prefix: format!("microseg-test-{}-", random_suffix()),
                domain: "default".into(),
                creds: None,
            };
        }
        let password = sim_config
            .users
            .get("admin")
            .cloned()
            .unwrap_or_else(|| nsxsim::DEFAULT_PASSWORD.to_string());
        let sim = nsxsim::spawn(sim_config).await.expect("simulator");
        let creds = credential_files(&password);
        let mut cfg = sim_client_config(&sim.url, &creds, false);
        tweak(&mut cfg);
        Target {
            client: Client::new(cfg.clone()).expect("client"),
            config: cfg,
            sim: Some(sim),
            prefix: format!("t{}-", random_suffix()),
            domain: "default".into(),
            creds: Some(creds),
        }
    }

    /// A fresh simulator target; `None` on a real manager (for tests of simulator-only
    /// controls, which then return early).
    pub async fn simulated() -> Option<Target> {
        if real_nsx() {
            return None;
        }
        Some(Self::new().await)
    }

    /// Creates one empty group per id, in one hierarchical call.
    pub async fn put_empty_groups(&self, ids: impl IntoIterator<Item = String>) {
        let children = ids
            .into_iter()
            .map(|id| DomainChild::ChildGroup {
                id: id.clone(),
                marked_for_delete: false,
                group: group(&id, vec![]),
            })
            .collect();
        self.client
            .patch_infra(&infra(&self.domain, children))
            .await
            .unwrap();
    }

    /// Whether NSX holds the group `id`.
    pub async fn group_exists(&self, id: &str) -> bool {
        self.client
            .get_group(&self.domain, id)
            .await
            .unwrap()
            .is_some()
    }

    /// Whether NSX holds the security policy `id`.
    pub async fn policy_exists(&self, id: &str) -> bool {
        self.client
            .get_policy(&self.domain, id)
            .await
            .unwrap()
            .is_some()
    }

    /// The simulator; tests that need it return early on a real manager.
    pub fn sim(&self) -> &Running {
        self.sim.as_ref().expect("simulator target")
    }

    /// An id under the test prefix.
    pub fn id(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A group path of this test.
    pub fn group_path(&self, name: &str) -> String {
        format!("/infra/domains/{}/groups/{}", self.domain, self.id(name))
    }

    /// Removes everything under the prefix: policies first, then groups.
    pub async fn cleanup(&self) {
        let policies = self
            .client
            .list_policies(&self.domain)
            .await
            .unwrap_or_default();
        let groups = self
            .client
            .list_groups(&self.domain)
            .await
            .unwrap_or_default();
        let mut children = Vec::new();
        for p in policies
            .into_iter()
            .filter(|p| p.id.starts_with(&self.prefix))
        {
            children.push(DomainChild::ChildSecurityPolicy {
                id: p.id.clone(),
                marked_for_delete: true,
                security_policy: policy(&p.id, None, vec![]),
            });
        }
        for g in groups
            .into_iter()
            .filter(|g| g.id.starts_with(&self.prefix))
        {
            children.push(DomainChild::ChildGroup {
                id: g.id.clone(),
                marked_for_delete: true,
                group: group(&g.id, vec![]),
            });
        }
        if !children.is_empty() {
            let _ = self
                .client
                .patch_infra(&infra(&self.domain, children))
                .await;
        }
    }
}

/// Ownership tags as microseg writes them.
pub fn owner_tags(name: &str) -> Vec<Tag> {
    vec![
        Tag::new("microseg.io/cluster", "test"),
        Tag::new("microseg.io/namespace", "default"),
        Tag::new("microseg.io/name", name),
        Tag::new("microseg.io/managed-by", "microseg"),
    ]
}

/// A group with a VM tag condition OR the given IP addresses.
pub fn group(id: &str, ips: Vec<&str>) -> Group {
    let mut expression = vec![Expression::Condition {
        member_type: "VirtualMachine".into(),
        key: "Tag".into(),
        operator: "EQUALS".into(),
        value: format!("app|{id}"),
        scope_operator: None,
        exclude: None,
    }];
    if !ips.is_empty() {
        expression.push(Expression::ConjunctionOperator {
            conjunction_operator: "OR".into(),
        });
        expression.push(Expression::IpAddressExpression {
            ip_addresses: ips.into_iter().map(String::from).collect(),
        });
    }
    Group {
        resource_type: "Group".into(),
        id: id.into(),
        display_name: Some(id.into()),
        description: None,
        tags: owner_tags(id),
        expression,
        meta: Meta::default(),
    }
}

/// An inbound TCP allow rule from `src` to `dst` on `port`.
pub fn rule(id: &str, seq: i64, src: &str, dst: &str, port: &str) -> Rule {
    Rule {
        resource_type: "Rule".into(),
        id: id.into(),
        display_name: Some(id.into()),
        action: "ALLOW".into(),
        source_groups: vec![src.into()],
        sources_excluded: false,
        destination_groups: vec![dst.into()],
        destinations_excluded: false,
        services: vec!["ANY".into()],
        profiles: vec![],
        service_entries: vec![ServiceEntry::L4PortSetServiceEntry {
            id: format!("tcp-{}", port.replace('-', "_")),
            l4_protocol: "TCP".into(),
            source_ports: vec![],
            destination_ports: vec![port.into()],
        }],
        scope: vec![],
        direction: "IN".into(),
        ip_protocol: Some("IPV4_IPV6".into()),
        logged: true,
        disabled: false,
        sequence_number: Some(seq),
        tag: Some(id.to_string()),
        notes: None,
        tags: vec![],
        rule_id: None,
        meta: Meta::default(),
    }
}

/// A policy scoped to `scope` (a group path) with rules as H-API children.
pub fn policy(id: &str, scope: Option<&str>, rules: Vec<Rule>) -> SecurityPolicy {
    SecurityPolicy {
        resource_type: "SecurityPolicy".into(),
        id: id.into(),
        display_name: Some(id.into()),
        description: None,
        tags: owner_tags(id),
        category: Some("Application".into()),
        sequence_number: Some(100),
        scope: scope.map(|s| vec![s.to_string()]).unwrap_or_default(),
        stateful: Some(true),
        tcp_strict: None,
        rules: vec![],
        children: rules
            .into_iter()
            .map(|r| PolicyChild::ChildRule {
                id: r.id.clone(),
                marked_for_delete: false,
                rule: r,
            })
            .collect(),
        meta: Meta::default(),
    }
}

/// An Infra body with one domain reference.
pub fn infra(domain: &str, children: Vec<DomainChild>) -> Infra {
    Infra {
        resource_type: "Infra".into(),
        children: vec![InfraChild::ChildResourceReference {
            id: domain.into(),
            target_type: "Domain".into(),
            children,
        }],
    }
}

/// One application as the plan writes it: its group and its policy with `rules` rules.
pub fn application(t_domain: &str, app: &str, rules: usize) -> Infra {
    let gpath = format!("/infra/domains/{t_domain}/groups/{app}");
    let rules = (0..rules)
        .map(|i| {
            rule(
                &format!("{app}-r{i}"),
                (i as i64 + 1) * 10,
                "10.0.0.0/8",
                &gpath,
                &format!("{}", 8000 + i),
            )
        })
        .collect();
    infra(
        t_domain,
        vec![
            DomainChild::ChildGroup {
                id: app.into(),
                marked_for_delete: false,
                group: group(app, vec!["192.168.10.0/24"]),
            },
            DomainChild::ChildSecurityPolicy {
                id: app.into(),
                marked_for_delete: false,
                security_policy: policy(app, Some(&gpath), rules),
            },
        ],
    )
}
