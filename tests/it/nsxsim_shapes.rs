//! The simulator answers GET with what a real NSX Manager returns, not with an echo of the write
//! (issue #21; `reference/nsx-policy-api.md` §11a), and deletes like one (§3): written through
//! the hierarchical API (§7), read back over plain HTTP. Each expected shape names its source.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use crate::nsx_support;

use std::time::Duration;

use microseg::nsx::{Client, NsxApi};
use microseg::nsxsim::{self, Running};
use reqwest::StatusCode;
use serde_json::{Value, json};

const DOMAIN_PATH: &str = "/infra/domains/default";

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(sim: &Running) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: format!("{}/policy/api/v1", sim.url),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth("admin", Some(nsxsim::DEFAULT_PASSWORD));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
        };
        (status, value)
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn patch_infra(&self, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::PATCH, "/infra", Some(body))
            .await
    }
}

/// An H-API body with domain children (§7: groups and policies hang under a domain reference).
fn infra(children: Vec<Value>) -> Value {
    json!({"resource_type": "Infra", "children": [{
        "resource_type": "ChildResourceReference", "id": "default", "target_type": "Domain",
        "children": children}]})
}

fn child_group(id: &str, expression: Value) -> Value {
    json!({"resource_type": "ChildGroup", "id": id,
           "Group": {"resource_type": "Group", "id": id, "expression": expression}})
}

fn child_policy(id: &str, policy: Value, rules: Vec<Value>) -> Value {
    let mut p = policy;
    p["resource_type"] = json!("SecurityPolicy");
    p["id"] = json!(id);
    p["children"] = json!(
        rules
            .into_iter()
            .map(|r| json!({"resource_type": "ChildRule", "id": r["id"], "Rule": r}))
            .collect::<Vec<_>>()
    );
    json!({"resource_type": "ChildSecurityPolicy", "id": id, "SecurityPolicy": p})
}

/// Condition + ConjunctionOperator + IPAddressExpression, as in the §7 example.
fn web_expression() -> Value {
    json!([
        {"resource_type": "Condition", "member_type": "VirtualMachine", "key": "Tag",
         "operator": "EQUALS", "value": "tier|web"},
        {"resource_type": "ConjunctionOperator", "conjunction_operator": "OR"},
        {"resource_type": "IPAddressExpression", "ip_addresses": ["10.10.20.0/24"]}
    ])
}

#[tokio::test]
async fn a_rule_with_inline_entries_reads_back_like_a_real_manager() {
    let sim = nsxsim::spawn(nsxsim::Config::default()).await.unwrap();
    let api = Api::new(&sim);
    let web = format!("{DOMAIN_PATH}/groups/web");
    let body = infra(vec![
        child_group("web", web_expression()),
        child_policy(
            "web-policy",
            json!({"category": "Application", "sequence_number": 10}),
            vec![
                // Inline entries and no `services` at all; one entry without id, one with an
                // id and a display name.
                json!({"resource_type": "Rule", "id": "https", "action": "ALLOW",
                       "source_groups": ["ANY"], "destination_groups": [web],
                       "service_entries": [
                           {"resource_type": "L4PortSetServiceEntry", "l4_protocol": "TCP",
                            "source_ports": [], "destination_ports": ["443"]},
                           {"resource_type": "L4PortSetServiceEntry", "id": "tcp-8443",
                            "display_name": "app port", "l4_protocol": "TCP",
                            "source_ports": [], "destination_ports": ["8443"]}]}),
                // Inline entries beside `services: []` (what microseg's plan writes).
                json!({"resource_type": "Rule", "id": "ssh", "action": "ALLOW",
                       "sequence_number": 20, "source_groups": ["10.0.0.10/32"],
                       "destination_groups": [web], "services": [],
                       "service_entries": [{"resource_type": "L4PortSetServiceEntry",
                           "id": "tcp-22", "l4_protocol": "TCP", "destination_ports": ["22"]}]}),
            ],
        ),
    ]);
    let (status, err) = api.patch_infra(&body).await;
    assert_eq!(status, 200, "{err}");

    let policy = api
        .get(&format!("{DOMAIN_PATH}/security-policies/web-policy"))
        .await;
    // §11a "SecurityPolicy defaults" (NSX-T 3.2 dump) and §2.2 internal_sequence_number
    // (Application, sequence 10 → 13000010).
    for (k, want) in [
        ("scope", json!(["ANY"])),
        ("stateful", json!(true)),
        ("tcp_strict", json!(true)),
        ("locked", json!(false)),
        ("lock_modified_time", json!(0)),
        ("logging_enabled", json!(false)),
        ("is_default", json!(false)),
        ("sequence_number", json!(10)),
        ("internal_sequence_number", json!(13_000_010)),
        ("category", json!("Application")),
    ] {
        assert_eq!(policy[k], want, "policy {k}");
    }

    let rules = policy["rules"].as_array().unwrap();
    let https = rules.iter().find(|r| r["id"] == "https").unwrap();
    // §11a "Services beside inline entries": no service paths read back as ["ANY"], entries
    // kept.
    assert_eq!(https["services"], json!(["ANY"]));
    let entries = https["service_entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for e in entries {
        // §11a: entries gain marked_for_delete / overridden / _protection, have no path, and
        // lose display_name (NSX-T ≤ 3.2).
        assert_eq!(e["marked_for_delete"], json!(false), "{e}");
        assert_eq!(e["overridden"], json!(false), "{e}");
        assert_eq!(e["_protection"], json!("NOT_PROTECTED"), "{e}");
        assert!(e.get("path").is_none(), "{e}");
        assert!(e.get("display_name").is_none(), "{e}");
    }
    // §11a: an entry written without id reads back without one; a given id is kept.
    assert!(entries[0].get("id").is_none(), "{}", entries[0]);
    assert_eq!(entries[1]["id"], json!("tcp-8443"));
    let ssh = rules.iter().find(|r| r["id"] == "ssh").unwrap();
    assert_eq!(
        ssh["services"],
        json!(["ANY"]),
        "services: [] beside entries"
    );
    assert_eq!(ssh["service_entries"][0]["id"], json!("tcp-22"));

    // §11a "Rule defaults" (obs) and read-only fields, with 4.x's realization_id, owner_id,
    // origin_site_id, remote_path.
    for (k, want) in [
        ("display_name", json!("https")),
        ("scope", json!(["ANY"])),
        ("profiles", json!(["ANY"])),
        ("ip_protocol", json!("IPV4_IPV6")),
        ("direction", json!("IN_OUT")),
        ("logged", json!(false)),
        ("disabled", json!(false)),
        ("sources_excluded", json!(false)),
        ("destinations_excluded", json!(false)),
        ("sequence_number", json!(0)),
        ("is_default", json!(false)),
        ("marked_for_delete", json!(false)),
        ("overridden", json!(false)),
        ("remote_path", json!("")),
        ("relative_path", json!("https")),
        (
            "parent_path",
            json!(format!("{DOMAIN_PATH}/security-policies/web-policy")),
        ),
        ("_revision", json!(0)),
    ] {
        assert_eq!(https[k], want, "rule {k}");
    }
    for present in [
        "rule_id",
        "unique_id",
        "realization_id",
        "owner_id",
        "origin_site_id",
        "_create_time",
        "_create_user",
        "_last_modified_time",
        "_last_modified_user",
        "_system_owned",
        "_protection",
    ] {
        assert!(https.get(present).is_some(), "rule {present} missing");
    }
    // §11a: tag, notes, description absent when not written (not "").
    for absent in ["tag", "notes", "description"] {
        assert!(
            https.get(absent).is_none(),
            "rule {absent}: {}",
            https[absent]
        );
    }
    // The rule read on its own has the same shape.
    let alone = api
        .get(&format!(
            "{DOMAIN_PATH}/security-policies/web-policy/rules/https"
        ))
        .await;
    assert_eq!(&alone, https);

    // §2 (error 287 note): everything the GET returned is accepted when written back.
    let (status, err) = api
        .send(
            reqwest::Method::PATCH,
            &format!("{DOMAIN_PATH}/security-policies/web-policy"),
            Some(&policy),
        )
        .await;
    assert_eq!(status, 200, "{err}");
    let again = api
        .get(&format!("{DOMAIN_PATH}/security-policies/web-policy"))
        .await;
    let rule_ids = |p: &Value| {
        p["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["id"].clone(), r["rule_id"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(rule_ids(&again), rule_ids(&policy), "rule ids are stable");
    sim.shutdown().await;
}

#[tokio::test]
async fn group_expressions_get_ids_and_paths_that_stay_across_patches() {
    let sim = nsxsim::spawn(nsxsim::Config::default()).await.unwrap();
    let api = Api::new(&sim);
    let body = infra(vec![child_group("web", web_expression())]);
    let gpath = format!("{DOMAIN_PATH}/groups/web");

    let (status, err) = api.patch_infra(&body).await;
    assert_eq!(status, 200, "{err}");
    let first = api.get(&gpath).await;
    // §11a "Group expressions" / §2.4: every element gains id (UUID), path under the group by
    // kind, relative_path, parent_path, marked_for_delete, overridden, _protection; order and
    // values kept; a Condition gains scope_operator EQUALS.
    let items = first["expression"].as_array().unwrap();
    let expected = [
        ("Condition", "condition-expressions"),
        ("ConjunctionOperator", "conjunction-expressions"),
        ("IPAddressExpression", "ip-address-expressions"),
    ];
    assert_eq!(items.len(), expected.len());
    for (e, (kind, segment)) in items.iter().zip(expected) {
        assert_eq!(e["resource_type"], json!(kind), "order kept");
        let id = e["id"].as_str().unwrap();
        assert_eq!(id.len(), 36, "a UUID: {id}");
        assert_eq!(e["path"], json!(format!("{gpath}/{segment}/{id}")));
        assert_eq!(e["relative_path"], json!(id));
        assert_eq!(e["parent_path"], json!(gpath));
        assert_eq!(e["marked_for_delete"], json!(false));
        assert_eq!(e["overridden"], json!(false));
        assert!(e["_protection"].is_string());
    }
    assert_eq!(items[0]["scope_operator"], json!("EQUALS"));
    assert_eq!(items[0]["value"], json!("tier|web"), "scope|tag verbatim");
    assert_eq!(items[2]["ip_addresses"], json!(["10.10.20.0/24"]));
    // §11a: the group gains extended_expression: [] and reference: false.
    assert_eq!(first["extended_expression"], json!([]));
    assert_eq!(first["reference"], json!(false));

    // The same expression PATCHed again: the same ids; two GETs are identical.
    let (status, err) = api.patch_infra(&body).await;
    assert_eq!(status, 200, "{err}");
    let second = api.get(&gpath).await;
    let third = api.get(&gpath).await;
    assert_eq!(second, third, "repeated GETs are identical");
    assert_eq!(second["expression"], first["expression"]);
    assert_eq!(second["_revision"], json!(1));

    // The GET echoed back (§2: RO fields accepted): still the same ids.
    let (status, err) = api
        .send(reqwest::Method::PATCH, &gpath, Some(&second))
        .await;
    assert_eq!(status, 200, "{err}");
    assert_eq!(api.get(&gpath).await["expression"], first["expression"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_deleted_object_is_pending_and_its_path_refused_until_purged() {
    let pending = Duration::from_millis(600);
    let sim = nsxsim::spawn(nsxsim::Config {
        pending_delete: pending,
        ..nsxsim::Config::default()
    })
    .await
    .unwrap();
    let api = Api::new(&sim);
    let gpath = format!("{DOMAIN_PATH}/groups/web");
    let ppath = format!("{DOMAIN_PATH}/security-policies/web-policy");
    let policy = || {
        child_policy(
            "web-policy",
            json!({"category": "Application"}),
            vec![json!({"resource_type": "Rule", "id": "r", "action": "DROP"})],
        )
    };
    let create = infra(vec![child_group("web", web_expression()), policy()]);
    let (status, err) = api.patch_infra(&create).await;
    assert_eq!(status, 200, "{err}");

    // §3/§7: the policy deleted through the H-API, the group through REST DELETE.
    let mut del = policy();
    del["marked_for_delete"] = json!(true);
    let (status, err) = api.patch_infra(&infra(vec![del])).await;
    assert_eq!(status, 200, "{err}");
    let (status, _) = api.send(reqwest::Method::DELETE, &gpath, None).await;
    assert_eq!(status, 200);
    let deleted_at = std::time::Instant::now();

    // §3: hidden from GET and lists meanwhile …
    let (status, _) = api.send(reqwest::Method::GET, &gpath, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND.as_u16());
    let list = api.get(&format!("{DOMAIN_PATH}/groups")).await;
    assert!(
        !list["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["id"] == "web")
    );
    // … unless include_mark_for_delete_objects=true (§1 list params).
    let shown = api
        .get(&format!("{gpath}?include_mark_for_delete_objects=true"))
        .await;
    assert_eq!(shown["marked_for_delete"], json!(true));
    let listed = api
        .get(&format!(
            "{DOMAIN_PATH}/security-policies?include_mark_for_delete_objects=true"
        ))
        .await;
    assert!(
        listed["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "web-policy" && p["marked_for_delete"] == json!(true))
    );

    // §3/§4: re-creating the same path while pending → 400 with error_code 500045.
    let (status, err) = api.patch_infra(&create).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error_code"], json!(500045), "{err}");
    assert_eq!(err["httpStatus"], json!("BAD_REQUEST"));
    assert!(
        err["error_message"]
            .as_str()
            .unwrap()
            .contains("marked for deletion"),
        "{err}"
    );
    // Atomic (§7): nothing of the refused call was written.
    let (status, _) = api.send(reqwest::Method::GET, &ppath, None).await;
    assert_eq!(status, 404);

    // The controller's client sees a pending delete it retries after a short back-off.
    let creds = nsx_support::credential_files(nsxsim::DEFAULT_PASSWORD);
    let client = Client::new(nsx_support::sim_client_config(&sim.url, &creds, false)).unwrap();
    let typed: microseg::nsx::model::Infra =
        serde_json::from_value(infra(vec![child_group("web", web_expression())])).unwrap();
    // (A client that waits the pending delete out by itself would succeed here instead.)
    if let Err(e) = client.patch_infra(&typed).await {
        assert_eq!(e.nsx_code(), Some(500045), "{e}");
        assert_eq!(e.category(), "NsxPendingDelete");
        assert!(e.retry_after().is_some_and(|d| d <= Duration::from_secs(5)));
    }

    // After the pending time: purged, and the same write succeeds.
    tokio::time::sleep(pending.saturating_sub(deleted_at.elapsed()) + Duration::from_millis(50))
        .await;
    let (status, err) = api.patch_infra(&create).await;
    assert_eq!(status, 200, "{err}");
    let policy = api.get(&ppath).await;
    assert_eq!(policy["_revision"], json!(0), "a new object");
    assert_eq!(policy["marked_for_delete"], json!(false));
    sim.shutdown().await;
}

#[tokio::test]
async fn the_default_rule_can_be_set_to_drop_but_not_deleted() {
    // §11a / §8: the default layer-3 rule's action and logging are user-editable; default
    // objects cannot be deleted.
    let sim = nsxsim::spawn(nsxsim::Config::default()).await.unwrap();
    let api = Api::new(&sim);
    let path =
        format!("{DOMAIN_PATH}/security-policies/default-layer3-section/rules/default-layer3-rule");
    let (status, err) = api
        .send(
            reqwest::Method::PATCH,
            &path,
            Some(&json!({"action": "DROP", "logged": true})),
        )
        .await;
    assert_eq!(status, 200, "{err}");
    let rule = api.get(&path).await;
    assert_eq!(rule["action"], json!("DROP"));
    assert_eq!(rule["logged"], json!(true));
    assert_eq!(rule["sequence_number"], json!(2_147_483_647));
    assert_eq!(rule["is_default"], json!(true));
    let (status, err) = api
        .send(
            reqwest::Method::PATCH,
            &path,
            Some(&json!({"destination_groups": ["10.0.0.0/8"]})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    let (status, _) = api.send(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 400);
    // Through the client's own read: it still parses.
    let creds = nsx_support::credential_files(nsxsim::DEFAULT_PASSWORD);
    let client = Client::new(nsx_support::sim_client_config(&sim.url, &creds, false)).unwrap();
    let p = client
        .get_policy("default", "default-layer3-section")
        .await
        .unwrap()
        .unwrap();
    assert!(
        p.rules
            .iter()
            .any(|r| r.id == "default-layer3-rule" && r.action == "DROP")
    );
    sim.shutdown().await;
}

#[test]
fn the_default_pending_time_is_a_realization_cycle() {
    assert_eq!(
        nsxsim::Config::default().pending_delete,
        nsxsim::DEFAULT_PENDING_DELETE
    );
    assert!(nsxsim::DEFAULT_PENDING_DELETE <= Duration::from_secs(3));
}
