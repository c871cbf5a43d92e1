//! Contract tests for working against a real NSX Manager (issue #21), against the simulator by
//! default and against a real manager when `NSX_URL` is set (see `tests/nsx_support`):
//! - every object kind microseg writes (groups with tag, name, address and path expressions;
//!   policies with L4, ICMP and service-path rules, catch-alls in each phase) is written, read
//!   back and planned again: no change, so a resync writes nothing;
//! - one out-of-band edit per field that changes what a rule or group does
//!   (`sources_excluded`, `destinations_excluded`, `profiles`, rule `scope`, policy `scope`,
//!   `tcp_strict`, a condition's `scope_operator`): the plan names the field, and the one
//!   hierarchical write it makes corrects it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use crate::nsx_support;

use std::collections::BTreeSet;

use microseg::api::manifest::{Resource, resources};
use microseg::api::{Phase, SegmentationPolicy};
use microseg::nsx::naming::Identity;
use microseg::nsx::{Client, NsxApi};
use microseg::plan::report::peer_groups;
use microseg::plan::{self, Context, LiveState};
use nsx_support::{ClientExt, Target, group, real_nsx};
use serde_json::{Value, json};

fn examples() -> Vec<SegmentationPolicy> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        for (_, r) in resources(&std::fs::read_to_string(&f).unwrap()).unwrap() {
            if let Resource::Policy(p) = r {
                out.push(*p);
            }
        }
    }
    out
}

struct Fleet {
    identity: Identity,
    policies: Vec<SegmentationPolicy>,
}

impl Fleet {
    fn new() -> Fleet {
        // A cluster identity of our own, so a real manager's other objects are never touched.
        let cluster = format!("ct{:06x}", rand::random::<u32>() & 0xff_ffff);
        Fleet {
            identity: Identity::new(&cluster).unwrap(),
            policies: examples(),
        }
    }

    fn id(&self, p: &SegmentationPolicy) -> String {
        self.identity.object_id(
            p.metadata.namespace.as_deref().unwrap(),
            p.metadata.name.as_deref().unwrap(),
        )
    }

    fn named(&self, name: &str) -> &SegmentationPolicy {
        self.policies
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .unwrap()
    }

    async fn live(&self, client: &Client, p: &SegmentationPolicy) -> LiveState {
        let id = self.id(p);
        LiveState {
            group: client.get_group(&p.spec.nsx.domain, &id).await.unwrap(),
            policy: client.get_policy(&p.spec.nsx.domain, &id).await.unwrap(),
        }
    }

    /// The change that converges `p` to `phase` given what NSX holds now.
    async fn change(&self, client: &Client, p: &SegmentationPolicy, phase: Phase) -> plan::Change {
        let live = self.live(client, p).await;
        let peers = peer_groups(&self.policies, &self.identity);
        let seq = live.rule_sequence();
        let cx = Context {
            identity: &self.identity,
            peers: &peers,
            previous_sequence: &seq,
        };
        let d = plan::desired(p, phase, &cx).unwrap();
        let (ns, name) = (
            p.metadata.namespace.as_deref().unwrap(),
            p.metadata.name.as_deref().unwrap(),
        );
        plan::diff(&d, &live, &self.identity, ns, name).unwrap()
    }

    async fn converge(
        &self,
        client: &Client,
        p: &SegmentationPolicy,
        phase: Phase,
    ) -> plan::Change {
        let change = self.change(client, p, phase).await;
        if let Some(body) = &change.patch {
            client.patch_infra(body).await.unwrap();
        }
        change
    }

    async fn remove(&self, client: &Client) {
        for p in &self.policies {
            let live = self.live(client, p).await;
            if let Some(body) = plan::removal(&live, &p.spec.nsx.domain) {
                let _ = client.patch_infra(&body).await;
            }
        }
    }
}

/// The NSX groups the examples name by path, as they exist before microseg runs.
async fn external_groups(client: &Client) {
    client
        .patch_group(
            "default",
            &group("monitoring-servers", vec!["10.50.0.0/24"]),
        )
        .await
        .unwrap();
}

/// A plain REST client for out-of-band edits, as someone in the NSX UI would make them.
struct Rest {
    http: reqwest::Client,
    base: String,
    user: String,
    password: String,
}

impl Rest {
    fn new(t: &Target) -> Rest {
        if real_nsx() {
            let mut b = reqwest::Client::builder();
            if std::env::var("NSX_INSECURE_SKIP_TLS_VERIFY").is_ok_and(|v| v == "true") {
                b = b.danger_accept_invalid_certs(true);
            }
            if let Ok(ca) = std::env::var("NSX_CA_BUNDLE") {
                let pem = std::fs::read(ca).unwrap();
                b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
            }
            return Rest {
                http: b.build().unwrap(),
                base: std::env::var("NSX_URL").unwrap(),
                user: std::env::var("NSX_USERNAME").unwrap(),
                password: std::env::var("NSX_PASSWORD").unwrap(),
            };
        }
        Rest {
            http: reqwest::Client::new(),
            base: t.sim().url.clone(),
            user: "admin".into(),
            password: microseg::nsxsim::DEFAULT_PASSWORD.into(),
        }
    }

    async fn get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}/policy/api/v1{path}", self.base))
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    /// GETs the object, applies `edit`, PATCHes it back (read-only fields included, as a
    /// client that edits what it read does).
    async fn edit(&self, path: &str, edit: impl FnOnce(&mut Value)) {
        let mut body = self.get(path).await;
        edit(&mut body);
        let resp = self
            .http
            .patch(format!("{}/policy/api/v1{path}", self.base))
            .basic_auth(&self.user, Some(&self.password))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "PATCH {path}: {status} {text}");
    }
}

#[tokio::test]
async fn every_object_microseg_writes_reads_back_as_no_change_in_every_phase() {
    let t = Target::new().await;
    let fleet = Fleet::new();
    external_groups(&t.client).await;
    // Groups first (rules name peer applications), then every phase in order.
    for p in &fleet.policies {
        fleet.converge(&t.client, p, Phase::Pending).await;
    }
    for phase in [Phase::Monitoring, Phase::Enforcing, Phase::Completed] {
        for p in &fleet.policies {
            let wrote = fleet.converge(&t.client, p, phase).await;
            assert!(
                !wrote.is_empty() || phase == Phase::Completed,
                "{phase}: nothing written"
            );
            let again = fleet.change(&t.client, p, phase).await;
            assert!(
                again.is_empty(),
                "{} in {phase}: NSX read back as a change: {again}",
                p.metadata.name.as_deref().unwrap()
            );
        }
    }
    // The shapes a real manager returns are what the comparison tolerated (simulator only:
    // a real manager returns what it returns).
    if !real_nsx() {
        let app = fleet.named("app");
        let live = fleet.live(&t.client, app).await;
        let rule = live
            .policy
            .unwrap()
            .rules
            .into_iter()
            .find(|r| r.id == "monitoring-agents")
            .unwrap();
        assert_eq!(rule.services, vec!["ANY"], "ANY beside inline entries");
        assert!(!rule.service_entries.is_empty());
    }
    fleet.remove(&t.client).await;
}

#[tokio::test]
async fn an_out_of_band_edit_that_changes_what_a_rule_does_is_named_and_corrected() {
    let t = Target::new().await;
    let fleet = Fleet::new();
    let rest = Rest::new(&t);
    external_groups(&t.client).await;
    for p in &fleet.policies {
        fleet.converge(&t.client, p, Phase::Pending).await;
    }
    for p in &fleet.policies {
        fleet.converge(&t.client, p, Phase::Monitoring).await;
    }
    let web = fleet.named("web");
    let web_policy = format!("/infra/domains/default/security-policies/{}", fleet.id(web));
    let web_group = format!("/infra/domains/default/groups/{}", fleet.id(web));
    let rule = |id: &str| format!("{web_policy}/rules/{id}");

    type Edit = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(&str, String, Edit, &str)> = vec![
        (
            "sources_excluded",
            rule("https-from-anywhere"),
            Box::new(|v: &mut Value| v["sources_excluded"] = json!(true)),
            "rule https-from-anywhere (sources_excluded)",
        ),
        (
            "destinations_excluded",
            rule("ssh-from-bastion"),
            Box::new(|v: &mut Value| v["destinations_excluded"] = json!(true)),
            "rule ssh-from-bastion (destinations_excluded)",
        ),
        (
            "profiles",
            rule("https-from-anywhere"),
            Box::new(|v: &mut Value| v["profiles"] = json!(["/infra/context-profiles/HTTP"])),
            "rule https-from-anywhere (profiles)",
        ),
        (
            "rule scope",
            rule("to-app"),
            Box::new(|v: &mut Value| v["scope"] = json!(["ANY"])),
            "rule to-app (scope)",
        ),
        (
            "policy tcp_strict",
            web_policy.clone(),
            Box::new(|v: &mut Value| v["tcp_strict"] = json!(false)),
            "(tcp_strict)",
        ),
        (
            "policy scope",
            web_policy.clone(),
            Box::new(|v: &mut Value| v["scope"] = json!(["ANY"])),
            "(scope)",
        ),
        (
            "condition scope_operator",
            web_group.clone(),
            Box::new(|v: &mut Value| v["expression"][0]["scope_operator"] = json!("NOTEQUALS")),
            "(expression)",
        ),
    ];
    for (what, path, edit, named) in cases {
        rest.edit(&path, edit).await;
        let change = fleet.change(&t.client, web, Phase::Monitoring).await;
        let summary = change.summary.join("; ");
        assert!(
            summary.contains(named),
            "{what}: the plan must name the field ({named}); got: {summary}"
        );
        let body = change.patch.expect("a correcting write");
        t.client.patch_infra(&body).await.unwrap();
        let after = fleet.change(&t.client, web, Phase::Monitoring).await;
        assert!(after.is_empty(), "{what}: not corrected: {after}");
    }
    // The corrected fields read back as microseg wrote them.
    let r = rest.get(&rule("https-from-anywhere")).await;
    assert_eq!(r["sources_excluded"], json!(false));
    let profiles: BTreeSet<String> = r["profiles"]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    assert!(
        profiles.iter().all(|p| p.eq_ignore_ascii_case("ANY")),
        "{profiles:?}"
    );
    let g = rest.get(&web_group).await;
    assert_ne!(g["expression"][0]["scope_operator"], json!("NOTEQUALS"));
    let p = rest.get(&web_policy).await;
    assert_ne!(p["tcp_strict"], json!(false));
    fleet.remove(&t.client).await;
}
