//! Contract tests of the NSX client against the simulator (default) or a real NSX Manager
//! (`NSX_URL` + `NSX_USERNAME`/`NSX_PASSWORD`; then only objects under a random test prefix are
//! touched and removed). Tests that need simulator-only controls (faults, short session
//! timeouts, counters) return early on a real manager.

#![allow(clippy::panic)]

use crate::nsx_support;

use std::time::Duration;

use microseg::nsx::client::segment;
use microseg::nsx::model::{DomainChild, PolicyChild, Rule};
use microseg::nsx::{Client, Error, NsxApi, Realization};
use microseg::nsxsim::{self, Faults, LimitConfig, OutageMode};
use nsx_support::*;
use reqwest::Method;
use serde_json::{Value, json};

fn code(e: &Error) -> (u16, i64, String) {
    match e {
        Error::Api { status, error, .. } => {
            (*status, error.error_code, error.error_message.clone())
        }
        other => panic!("expected an NSX API error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_read_update_with_and_without_revision() {
    let t = Target::new().await;
    let id = t.id("crud");
    let created = t
        .client
        .put_group(&t.domain, &group(&id, vec!["10.1.0.0/16"]))
        .await
        .unwrap();
    assert_eq!(created.meta.revision, Some(0));
    assert_eq!(
        created.meta.path.as_deref(),
        Some(t.group_path("crud").as_str())
    );

    let read = t.client.get_group(&t.domain, &id).await.unwrap().unwrap();
    assert_eq!(read.expression, created.expression);
    assert_eq!(read.tags, owner_tags(&id));

    // PUT of an existing object without _revision: 400 / 500127.
    let err = t
        .client
        .put_group(&t.domain, &group(&id, vec!["10.2.0.0/16"]))
        .await
        .unwrap_err();
    let (status, nsx_code, msg) = code(&err);
    assert_eq!((status, nsx_code), (400, 500127), "{msg}");
    assert!(msg.contains("already exists"), "{msg}");

    // Stale revision: 412.
    let mut stale = group(&id, vec!["10.3.0.0/16"]);
    stale.meta.revision = Some(7);
    let err = t.client.put_group(&t.domain, &stale).await.unwrap_err();
    assert_eq!(code(&err).0, 412);
    assert!(code(&err).2.contains("Fetch the latest copy"));

    // Right revision, echoing every read-only field of the GET: accepted.
    let mut right = read.clone();
    right.display_name = Some("renamed".into());
    let updated = t.client.put_group(&t.domain, &right).await.unwrap();
    assert_eq!(updated.meta.revision, Some(1));
    assert_eq!(updated.display_name.as_deref(), Some("renamed"));

    // Read-modify-write helper.
    let g = t
        .client
        .update_group(&t.domain, &id, |g| {
            let mut g = g.expect("exists");
            g.description = Some("described".into());
            g
        })
        .await
        .unwrap();
    assert_eq!(g.meta.revision, Some(2));
    assert_eq!(g.description.as_deref(), Some("described"));

    // Absent objects read as None.
    assert!(!t.group_exists(&t.id("absent")).await);
    assert!(!t.policy_exists(&t.id("absent")).await);
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_revision_retries_then_reports_conflict() {
    let t = Target::new().await;
    let id = t.id("conflict");
    t.client
        .put_group(&t.domain, &group(&id, vec![]))
        .await
        .unwrap();
    // Every attempt re-reads, then another writer bumps the revision before our PUT lands.
    // A second client with its own connection pool, driven from another thread.
    let other = Client::new(t.config.clone()).unwrap();
    let domain = t.domain.clone();
    let rounds = std::sync::atomic::AtomicU32::new(0);
    let err = t
        .client
        .update_group(&t.domain, &id, |g| {
            rounds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut g = g.expect("exists");
            let other = other.clone();
            let domain = domain.clone();
            let id = g.id.clone();
            // Concurrent writer: a PATCH that bumps the revision.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(other.patch_group(&domain, &group(&id, vec!["10.9.9.9"])))
                    .unwrap();
            })
            .join()
            .unwrap();
            g.description = Some("mine".into());
            g
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict { attempts: 4, .. }),
        "{err:?}"
    );
    assert_eq!(rounds.load(std::sync::atomic::Ordering::SeqCst), 4);
    assert_eq!(err.category(), "NsxConflict");
    t.cleanup().await;
}

#[tokio::test]
async fn paging_follows_the_cursor_across_pages() {
    let t = Target::with(nsxsim::Config::default(), |c| c.page_size = 7).await;
    t.put_empty_groups((0..25).map(|i| t.id(&format!("page-{i:02}"))))
        .await;
    let mut ids: Vec<String> = t
        .client
        .list_groups(&t.domain)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .filter(|id| id.starts_with(&t.prefix))
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 25);
    assert_eq!(ids[0], t.id("page-00"));
    if let Some(sim) = &t.sim {
        // 25 items in pages of 7: four pages, the last without a cursor.
        let c = sim.counters();
        assert_eq!(c["GET /infra/domains/{d}/groups"].ok(), 4);
        let last = t
            .client
            .send_json(
                Method::GET,
                "/infra/domains/default/groups?page_size=7&cursor=21",
                None,
            )
            .await;
        // The query string is part of the path here, so the simulator sees the cursor.
        let last = last.unwrap().unwrap();
        assert_eq!(last["result_count"], 25);
        assert!(last.get("cursor").is_none());
        assert_eq!(last["results"].as_array().unwrap().len(), 4);
    }
    t.cleanup().await;
}

#[tokio::test]
async fn hierarchical_create_and_delete() {
    let t = Target::new().await;
    let app = t.id("app");
    t.client
        .patch_infra(&application(&t.domain, &app, 3))
        .await
        .unwrap();
    let p = t.client.get_policy(&t.domain, &app).await.unwrap().unwrap();
    assert_eq!(p.rules.len(), 3);
    assert_eq!(p.meta.revision, Some(0));
    let ids: Vec<i64> = p.rules.iter().map(|r| r.rule_id.unwrap()).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), 3);
    if t.sim.is_some() {
        assert!(ids.iter().all(|n| *n >= 1002), "{ids:?}");
    }
    // Rules come back in sequence order with their inline services and tags.
    assert_eq!(p.rules[0].id, format!("{app}-r0"));
    assert_eq!(
        p.rules[0].tag.as_deref(),
        Some(format!("{app}-r0").as_str())
    );
    assert!(t.group_exists(&app).await);
    assert!(matches!(
        t.client
            .realization(&format!(
                "/infra/domains/{}/security-policies/{app}",
                t.domain
            ))
            .await
            .unwrap(),
        Realization::Realized | Realization::InProgress
    ));

    // Delete one rule through the H-API.
    let mut del = policy(&app, Some(&t.group_path("app")), vec![]);
    del.children = vec![PolicyChild::ChildRule {
        id: format!("{app}-r1"),
        marked_for_delete: true,
        rule: minimal_rule(&format!("{app}-r1")),
    }];
    t.client
        .patch_infra(&infra(
            &t.domain,
            vec![DomainChild::ChildSecurityPolicy {
                id: app.clone(),
                marked_for_delete: false,
                security_policy: del,
            }],
        ))
        .await
        .unwrap();
    let p = t.client.get_policy(&t.domain, &app).await.unwrap().unwrap();
    assert_eq!(p.rules.len(), 2);

    // Delete the policy and its group in one call (order inside the call does not matter).
    t.client
        .patch_infra(&infra(
            &t.domain,
            vec![
                DomainChild::ChildGroup {
                    id: app.clone(),
                    marked_for_delete: true,
                    group: group(&app, vec![]),
                },
                DomainChild::ChildSecurityPolicy {
                    id: app.clone(),
                    marked_for_delete: true,
                    security_policy: policy(&app, None, vec![]),
                },
            ],
        ))
        .await
        .unwrap();
    assert!(!t.policy_exists(&app).await);
    assert!(!t.group_exists(&app).await);
    t.cleanup().await;
}

fn minimal_rule(id: &str) -> Rule {
    let mut r = rule(id, 0, "ANY", "ANY", "1");
    r.service_entries.clear();
    r
}

#[tokio::test]
async fn rule_ids_are_stable_across_updates_and_never_reused() {
    let t = Target::new().await;
    let app = t.id("stable");
    t.client
        .patch_infra(&application(&t.domain, &app, 3))
        .await
        .unwrap();
    let before = t.client.rule_ids(&t.domain, &app).await.unwrap();
    assert_eq!(before.len(), 3);

    // Change r0's port, drop r2, add r3: r0 and r1 keep their ids, r3 gets a new one.
    let gpath = t.group_path("stable");
    let mut changed = rule(&format!("{app}-r0"), 10, "10.0.0.0/8", &gpath, "9443");
    changed.logged = false;
    let body = infra(
        &t.domain,
        vec![DomainChild::ChildSecurityPolicy {
            id: app.clone(),
            marked_for_delete: false,
            security_policy: {
                let mut p = policy(
                    &app,
                    Some(&gpath),
                    vec![
                        changed,
                        rule(&format!("{app}-r3"), 15, "10.0.0.0/8", &gpath, "22"),
                    ],
                );
                p.children.push(PolicyChild::ChildRule {
                    id: format!("{app}-r2"),
                    marked_for_delete: true,
                    rule: minimal_rule(&format!("{app}-r2")),
                });
                p
            },
        }],
    );
    t.client.patch_infra(&body).await.unwrap();
    let after = t.client.rule_ids(&t.domain, &app).await.unwrap();
    assert_eq!(after[&format!("{app}-r0")], before[&format!("{app}-r0")]);
    assert_eq!(after[&format!("{app}-r1")], before[&format!("{app}-r1")]);
    assert!(!after.contains_key(&format!("{app}-r2")));
    let new = after[&format!("{app}-r3")];
    assert!(!before.values().any(|v| *v == new), "rule id {new} reused");
    let p = t.client.get_policy(&t.domain, &app).await.unwrap().unwrap();
    let r0 = p
        .rules
        .iter()
        .find(|r| r.id == format!("{app}-r0"))
        .unwrap();
    assert_eq!(r0.meta.revision, Some(1));
    assert!(!r0.logged);
    // Rules are returned in sequence-number order.
    let seqs: Vec<i64> = p.rules.iter().map(|r| r.sequence_number.unwrap()).collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    assert_eq!(seqs, sorted);

    // A rule deleted and created again gets a fresh id (simulator decision).
    if t.sim.is_some() {
        let again = infra(
            &t.domain,
            vec![DomainChild::ChildSecurityPolicy {
                id: app.clone(),
                marked_for_delete: false,
                security_policy: policy(
                    &app,
                    Some(&gpath),
                    vec![rule(&format!("{app}-r2"), 30, "10.0.0.0/8", &gpath, "80")],
                ),
            }],
        );
        t.client.patch_infra(&again).await.unwrap();
        let ids = t.client.rule_ids(&t.domain, &app).await.unwrap();
        assert_ne!(ids[&format!("{app}-r2")], before[&format!("{app}-r2")]);
    }
    t.cleanup().await;
}

/// A raw H-API body with one group and one policy whose single rule is `rule`.
fn raw_app(t: &Target, group: Value, rule: Value) -> Value {
    let gid = group["id"].as_str().unwrap_or("g").to_string();
    let pid = t.id("vpol");
    json!({"resource_type": "Infra", "children": [{
    "resource_type": "ChildResourceReference", "id": t.domain, "target_type": "Domain",
    "children": [
        {"resource_type": "ChildGroup", "id": gid, "Group": group},
        {"resource_type": "ChildSecurityPolicy", "id": pid, "SecurityPolicy": {
            "resource_type": "SecurityPolicy", "id": pid, "category": "Application",
            "children": [{"resource_type": "ChildRule", "id": rule["id"], "Rule": rule}]}}
    ]}]})
}

fn ok_group(t: &Target) -> Value {
    json!({"resource_type": "Group", "id": t.id("vgrp"),
           "expression": [{"resource_type": "IPAddressExpression", "ip_addresses": ["10.0.0.1"]}]})
}

fn ok_rule(t: &Target) -> Value {
    json!({"resource_type": "Rule", "id": "r1", "action": "ALLOW", "direction": "IN",
           "source_groups": ["ANY"], "destination_groups": [t.group_path("vgrp")],
           "services": ["/infra/services/HTTPS"], "sequence_number": 10})
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

#[tokio::test]
async fn validation_errors_have_nsx_codes_and_reject_the_whole_call() {
    let t = Target::new().await;
    for case in invalid_bodies(&t) {
        assert_rejected_whole(&t, case).await;
    }
    // The valid body goes through; duplicate sequence numbers are accepted (as on NSX).
    let mut rule2 = ok_rule(&t);
    rule2["id"] = json!("r2");
    let mut body = raw_app(&t, ok_group(&t), ok_rule(&t));
    body["children"][0]["children"][1]["SecurityPolicy"]["children"]
        .as_array_mut()
        .unwrap()
        .push(json!({"resource_type": "ChildRule", "id": "r2", "Rule": rule2}));
    t.client
        .send_json(Method::PATCH, "/infra", Some(&body))
        .await
        .unwrap();
    let p = t
        .client
        .get_policy(&t.domain, &t.id("vpol"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.rules.len(), 2);

    // A group still referenced cannot be deleted (400, NSX's message).
    let err = t.client.delete(&t.group_path("vgrp")).await.unwrap_err();
    let (status, _, msg) = code(&err);
    assert_eq!(status, 400);
    assert!(msg.contains("being referenced by other objects"), "{msg}");
    assert!(t.group_exists(&t.id("vgrp")).await);

    // Default services are read-only.
    if t.sim.is_some() {
        let err = t.client.delete("/infra/services/HTTPS").await.unwrap_err();
        assert_eq!(code(&err).0, 400);
        assert!(
            t.client
                .send_json(Method::GET, "/infra/services/SSH", None)
                .await
                .unwrap()
                .is_some()
        );
    }
    t.cleanup().await;
}

/// An invalid call: (name, group, rule, expected code on the simulator, message fragment).
type Invalid = (&'static str, Value, Value, i64, &'static str);

/// One group and one rule per validation NSX does, each with one thing wrong.
fn invalid_bodies(t: &Target) -> Vec<Invalid> {
    let long = |n: usize| "x".repeat(n);
    let ips = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| format!("10.{}.{}.1", i / 250, i % 250))
            .collect()
    };
    let cond = json!({"resource_type": "Condition", "member_type": "VirtualMachine", "key": "Tag", "operator": "EQUALS", "value": "a|b"});
    let or = json!({"resource_type": "ConjunctionOperator", "conjunction_operator": "OR"});
    let tags31: Vec<Value> = (0..31)
        .map(|i| json!({"scope": "s", "tag": format!("t{i}")}))
        .collect();
    let l4 = |ports: Vec<&str>| json!([{"resource_type": "L4PortSetServiceEntry", "id": "e", "l4_protocol": "TCP", "destination_ports": ports}]);
    // (name, group, rule, expected code on the simulator, message fragment)
    vec![
        (
            "unknown group in a rule",
            ok_group(t),
            with(
                ok_rule(t),
                "source_groups",
                json!([t.group_path("missing")]),
            ),
            500012,
            "is invalid",
        ),
        (
            "unknown service in a rule",
            ok_group(t),
            with(ok_rule(t), "services", json!(["/infra/services/nope"])),
            500012,
            "is invalid",
        ),
        (
            "slash in an id",
            with(ok_group(t), "id", json!("a/b")),
            ok_rule(t),
            255,
            "invalid characters",
        ),
        (
            "ampersand in an id",
            ok_group(t),
            with(ok_rule(t), "id", json!("a&b")),
            255,
            "invalid characters",
        ),
        (
            "id longer than 255",
            ok_group(t),
            with(ok_rule(t), "id", json!(long(256))),
            255,
            "maximum is 255",
        ),
        (
            "display_name longer than 255",
            with(ok_group(t), "display_name", json!(long(256))),
            ok_rule(t),
            255,
            "display_name",
        ),
        (
            "description longer than 1024",
            with(ok_group(t), "description", json!(long(1025))),
            ok_rule(t),
            255,
            "description",
        ),
        (
            "tag scope longer than 128",
            with(
                ok_group(t),
                "tags",
                json!([{"scope": long(129), "tag": "x"}]),
            ),
            ok_rule(t),
            255,
            "scope",
        ),
        (
            "tag longer than 256",
            with(
                ok_group(t),
                "tags",
                json!([{"scope": "s", "tag": long(257)}]),
            ),
            ok_rule(t),
            255,
            "longer than 256",
        ),
        (
            "more than 30 tags",
            with(ok_group(t), "tags", json!(tags31)),
            ok_rule(t),
            255,
            "maximum is 30",
        ),
        (
            "port 0",
            ok_group(t),
            with(ok_rule(t), "service_entries", l4(vec!["0"])),
            255,
            "1-65535",
        ),
        (
            "port 65536",
            ok_group(t),
            with(ok_rule(t), "service_entries", l4(vec!["65536"])),
            255,
            "1-65535",
        ),
        (
            "reversed port range",
            ok_group(t),
            with(ok_rule(t), "service_entries", l4(vec!["90-80"])),
            255,
            "reversed",
        ),
        (
            "more than 15 port values",
            ok_group(t),
            with(
                ok_rule(t),
                "service_entries",
                l4(vec![
                    "1-2", "3-4", "5-6", "7-8", "9-10", "11-12", "13-14", "15-16",
                ]),
            ),
            255,
            "maximum is 15",
        ),
        (
            "ANY not alone",
            ok_group(t),
            with(ok_rule(t), "source_groups", json!(["ANY", "10.0.0.1"])),
            255,
            "ANY must be the only",
        ),
        (
            "more than 128 sources",
            ok_group(t),
            with(ok_rule(t), "source_groups", json!(ips(129))),
            255,
            "maximum is 128",
        ),
        (
            "expression of even length",
            with(ok_group(t), "expression", json!([cond, or])),
            ok_rule(t),
            255,
            "even number",
        ),
        (
            "conjunction at an even index",
            with(ok_group(t), "expression", json!([or, cond, or])),
            ok_rule(t),
            255,
            "misplaced",
        ),
        (
            "more than 5 conditions",
            with(
                ok_group(t),
                "expression",
                json!([cond, or, cond, or, cond, or, cond, or, cond, or, cond]),
            ),
            ok_rule(t),
            255,
            "maximum is 5",
        ),
        (
            "more than 500 addresses",
            with(
                ok_group(t),
                "expression",
                json!([{"resource_type": "IPAddressExpression", "ip_addresses": ips(501)}]),
            ),
            ok_rule(t),
            255,
            "maximum is 500",
        ),
        (
            "mixed IPv4 and IPv6",
            with(
                ok_group(t),
                "expression",
                json!([{"resource_type": "IPAddressExpression", "ip_addresses": ["10.0.0.1", "fd00::1"]}]),
            ),
            ok_rule(t),
            255,
            "mixes IPv4 and IPv6",
        ),
        (
            "unknown property",
            with(ok_group(t), "colour", json!("blue")),
            ok_rule(t),
            287,
            "property colour is unrecognized",
        ),
    ]
}

/// NSX refuses the call with 400 (on the simulator, with the expected code and message), and
/// writes nothing of it: the valid group of the same call is not created.
async fn assert_rejected_whole(t: &Target, (name, g, r, sim_code, fragment): Invalid) {
    let body = raw_app(t, g, r);
    let err = t
        .client
        .send_json(Method::PATCH, "/infra", Some(&body))
        .await
        .expect_err(name);
    let (status, nsx_code, _) = code(&err);
    assert_eq!(status, 400, "{name}: {err}");
    if t.sim.is_some() {
        let Error::Api { error, .. } = &err else {
            unreachable!()
        };
        let all: Vec<&microseg::nsx::model::ApiError> = std::iter::once(error)
            .chain(error.related_errors.iter())
            .collect();
        assert!(
            all.iter()
                .any(|e| e.error_code == sim_code && e.error_message.contains(fragment)),
            "{name}: expected {sim_code} with {fragment:?}, got {nsx_code}: {err}"
        );
    }
    // Atomic: the valid group of the same call was not created.
    assert!(
        !t.group_exists(&t.id("vgrp")).await,
        "{name}: partial write"
    );
    assert!(!t.policy_exists(&t.id("vpol")).await);
}

#[tokio::test]
async fn rate_limit_429_is_paced_and_retried() {
    if real_nsx() {
        return;
    }
    let cfg = nsxsim::Config {
        limits: LimitConfig {
            rate: 20,
            client_concurrency: 40,
            global_concurrency: 199,
        },
        ..nsxsim::Config::default()
    };
    // The client is (mis)configured above the manager's limit: 429s must be absorbed.
    let t = Target::with(cfg, |c| {
        c.pacing.rate = 200.0;
        c.pacing.concurrency = 10;
        c.pacing.max_busy_retries = 60;
        c.pacing.backoff_max = Duration::from_millis(500);
    })
    .await;
    let calls = (0..60).map(|_| t.client.get_group(&t.domain, "nothing"));
    for r in futures::future::join_all(calls).await {
        assert!(r.unwrap().is_none());
    }
    let c = t.sim().counters();
    let gets = &c["GET /infra/domains/{d}/groups/{id}"];
    assert!(
        gets.by_status.get("429").copied().unwrap_or(0) > 0,
        "{gets:?}"
    );
    assert_eq!(gets.by_status["404"], 60);
    assert!(t.client.pacer().current_rate() < 200.0);
    assert!(t.client.metrics().count("GET", "4xx") >= 60);
}

#[tokio::test]
async fn service_unavailable_is_retried_and_outage_reports_busy() {
    if real_nsx() {
        return;
    }
    // A call fails only after 7 straight 503s: 0.2^7 per call, so the 20 writes below all
    // succeed except once in ~4,000 runs (3 retries at 30 % failed one run in ~6).
    let t = Target::with(nsxsim::Config::default(), |c| {
        c.pacing.max_busy_retries = 6;
    })
    .await;
    t.sim().set_faults(Faults {
        error_503_fraction: 0.2,
        ..Faults::default()
    });
    for i in 0..20 {
        let id = t.id(&format!("u{i}"));
        t.client
            .patch_group(&t.domain, &group(&id, vec![]))
            .await
            .unwrap();
    }
    let c = t.sim().counters();
    let patches = &c["PATCH /infra/domains/{d}/groups/{id}"];
    assert_eq!(patches.ok(), 20, "{patches:?}");
    assert!(
        patches.by_status.get("503").copied().unwrap_or(0) > 0,
        "{patches:?}"
    );

    t.sim().set_faults(Faults {
        outage_seconds: 30.0,
        ..Faults::default()
    });
    let err = t.client.get_group(&t.domain, "x").await.unwrap_err();
    assert!(matches!(err, Error::Busy { status: 503, .. }), "{err:?}");
    assert_eq!(err.category(), "NsxBusy");
    assert!(err.retry_after().is_some());
}

#[tokio::test]
async fn connection_resets_are_retried_only_for_idempotent_calls() {
    if real_nsx() {
        return;
    }
    let t = Target::with(nsxsim::Config::default(), |c| {
        c.pacing.max_transport_retries = 5
    })
    .await;
    t.sim().set_faults(Faults {
        outage_seconds: 30.0,
        outage_mode: OutageMode::Reset,
        ..Faults::default()
    });
    let err = t.client.get_group(&t.domain, "x").await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    let err = t
        .client
        .put_group(&t.domain, &group(&t.id("p"), vec![]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    let c = t.sim().counters();
    // GET: one try plus five retries; PUT: one try only.
    assert_eq!(
        c["GET /infra/domains/{d}/groups/{id}"].by_status["reset"],
        6
    );
    assert_eq!(
        c["PUT /infra/domains/{d}/groups/{id}"].by_status["reset"],
        1
    );

    t.sim().set_faults(Faults {
        reset_fraction: 0.2,
        ..Faults::default()
    });
    for _ in 0..20 {
        assert!(t.client.get_group(&t.domain, "x").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn session_expiry_is_renewed_and_bad_xsrf_refused() {
    if real_nsx() {
        return;
    }
    let cfg = nsxsim::Config {
        session_timeout: Duration::from_millis(300),
        ..nsxsim::Config::default()
    };
    let sim = nsxsim::spawn(cfg).await.unwrap();
    let (client, _creds) = admin_client(&sim, true);
    assert!(client.get_group("default", "x").await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The session expired on the manager: the client logs in again and the call succeeds.
    assert!(client.get_group("default", "x").await.unwrap().is_none());
    let c = sim.counters();
    assert_eq!(c["POST /api/session/create"].ok(), 2);
    assert_eq!(c["GET /infra/domains/{d}/groups/{id}"].by_status["403"], 1);
    client.logout().await.unwrap();

    // A bad XSRF token on a live session: 403 / 98.
    let http = reqwest::Client::new();
    let login = http
        .post(format!("{}/api/session/create", sim.url))
        .form(&[
            ("j_username", "admin"),
            ("j_password", nsxsim::DEFAULT_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let resp = http
        .get(format!(
            "{}/policy/api/v1/infra/domains/default/groups",
            sim.url
        ))
        .header("Cookie", cookie)
        .header("X-XSRF-TOKEN", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error_code"], 98);

    // Wrong password: a typed auth error naming the user only.
    let bad = credential_files("not-the-password");
    let client = Client::new(sim_client_config(&sim.url, &bad, true)).unwrap();
    let err = client.list_groups("default").await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert!(!err.to_string().contains("not-the-password"));
    let client = Client::new(sim_client_config(&sim.url, &bad, false)).unwrap();
    assert!(matches!(
        client.list_groups("default").await.unwrap_err(),
        Error::Auth { .. }
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn realization_is_reported_with_delay_and_errors() {
    let Some(t) = Target::simulated().await else {
        return;
    };
    t.sim().set_faults(Faults {
        realization_delay_ms: 400,
        ..Faults::default()
    });
    let app = t.id("real");
    t.client
        .patch_infra(&application(&t.domain, &app, 2))
        .await
        .unwrap();
    let path = format!("/infra/domains/{}/security-policies/{app}", t.domain);
    assert_eq!(
        t.client.realization(&path).await.unwrap(),
        Realization::InProgress
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        t.client.realization(&path).await.unwrap(),
        Realization::Realized
    );
    let mut faults = Faults::default();
    faults
        .realization_errors
        .insert(path.clone(), "DFW host preparation failed".into());
    t.sim().set_faults(faults);
    match t.client.realization(&path).await.unwrap() {
        Realization::Failed(msg) => assert!(msg.contains("DFW host preparation failed"), "{msg}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    let err = t
        .client
        .realization("/infra/domains/default/security-policies/none")
        .await
        .unwrap_err();
    assert_eq!(code(&err).0, 404);
}

#[tokio::test]
async fn tls_is_verified_against_the_named_ca_bundle() {
    if real_nsx() {
        return;
    }
    let cfg = nsxsim::Config {
        tls: true,
        ..nsxsim::Config::default()
    };
    let sim = nsxsim::spawn(cfg).await.unwrap();
    assert!(sim.url.starts_with("https://127.0.0.1:"));
    let creds = credential_files(nsxsim::DEFAULT_PASSWORD);
    let ca = creds.0.with_file_name("ca.pem");
    std::fs::write(&ca, sim.ca_pem.as_ref().unwrap()).unwrap();

    let mut verified = sim_client_config(&sim.url, &creds, true);
    verified.ca_bundle = Some(ca.clone());
    let client = Client::new(verified).unwrap();
    assert!(client.get_group("default", "x").await.unwrap().is_none());

    // Without the CA the manager's certificate is refused.
    let client = Client::new(sim_client_config(&sim.url, &creds, false)).unwrap();
    let err = client.get_group("default", "x").await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");

    // The insecure flag skips verification.
    let mut insecure = sim_client_config(&sim.url, &creds, false);
    insecure.insecure_skip_tls_verify = true;
    assert!(
        Client::new(insecure)
            .unwrap()
            .get_group("default", "x")
            .await
            .unwrap()
            .is_none()
    );

    // Principal identity: a client certificate, no password.
    let (cert, key) = sim.issue_client_cert("microseg-pi").unwrap();
    let cert_file = ca.with_file_name("client.pem");
    let key_file = ca.with_file_name("client.key");
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let mut pi = microseg::nsx::ClientConfig::new(
        sim.url.clone(),
        microseg::nsx::AuthConfig::Certificate {
            cert_file,
            key_file,
        },
    );
    pi.ca_bundle = Some(ca);
    let pi_ca = pi.ca_bundle.clone();
    let client = Client::new(pi).unwrap();
    client
        .patch_group("default", &group("pi-group", vec![]))
        .await
        .unwrap();
    let g = client
        .get_group("default", "pi-group")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        g.meta.path.as_deref(),
        Some("/infra/domains/default/groups/pi-group")
    );
    assert_eq!(
        sim.state().domains["default"].groups["pi-group"]["_create_user"],
        "microseg-pi"
    );
    assert_eq!(g.meta.protection.as_deref(), Some("NOT_PROTECTED"));

    // What a principal identity created is protected from other users...
    let mut admin_cfg = sim_client_config(&sim.url, &creds, true);
    admin_cfg.ca_bundle = pi_ca.clone();
    let admin = Client::new(admin_cfg.clone()).unwrap();
    let seen = admin
        .get_group("default", "pi-group")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.meta.protection.as_deref(), Some("REQUIRE_OVERRIDE"));
    let err = admin
        .patch_group("default", &group("pi-group", vec!["10.7.7.7"]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Api { status: 403, .. }), "{err:?}");
    // ...unless the superuser says X-Allow-Overwrite.
    admin_cfg.allow_overwrite = true;
    Client::new(admin_cfg)
        .unwrap()
        .patch_group("default", &group("pi-group", vec!["10.7.7.7"]))
        .await
        .unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn state_dump_loads_into_a_new_simulator_and_counters_reset() {
    let Some(t) = Target::simulated().await else {
        return;
    };
    let app = t.id("snap");
    t.client
        .patch_infra(&application(&t.domain, &app, 4))
        .await
        .unwrap();
    let before = t.client.get_policy(&t.domain, &app).await.unwrap().unwrap();

    // Dump through the admin API, start a new simulator from it.
    let http = reqwest::Client::new();
    let dump = http
        .get(format!("{}/admin/state", t.sim().url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let path = t.creds.as_ref().unwrap().0.with_file_name("state.json");
    std::fs::write(&path, &dump).unwrap();
    let args = nsxsim::Args {
        listen: "127.0.0.1:0".parse().unwrap(),
        plain_http: true,
        ca_out: None,
        user: "admin".into(),
        password_file: Some(t.creds.as_ref().unwrap().1.clone()),
        rate_limit: 100,
        client_concurrency: 40,
        global_concurrency: 199,
        session_timeout_secs: 1800,
        latency_ms: 0,
        error_503_fraction: 0.0,
        error_429_fraction: 0.0,
        reset_fraction: 0.0,
        outage_seconds: 0.0,
        realization_delay_ms: 0,
        state: Some(path),
        vms: None,
    };
    let sim2 = nsxsim::spawn(args.config().unwrap()).await.unwrap();
    let client2 = Client::new(sim_client_config(
        &sim2.url,
        t.creds.as_ref().unwrap(),
        false,
    ))
    .unwrap();
    let after = client2.get_policy(&t.domain, &app).await.unwrap().unwrap();
    assert_eq!(before, after);
    // Rule ids continue after the loaded ones.
    client2
        .patch_infra(&application(&t.domain, &t.id("next"), 1))
        .await
        .unwrap();
    let ids = client2.rule_ids(&t.domain, &t.id("next")).await.unwrap();
    let max_before = before.rules.iter().filter_map(|r| r.rule_id).max().unwrap();
    assert!(ids.values().all(|n| *n > max_before));

    // Counters by method and path pattern, over HTTP, and their reset.
    let counters = admin_get(&format!("{}/admin/counters", sim2.url)).await;
    assert_eq!(counters["PATCH /infra"]["by_status"]["200"], 1);
    assert_eq!(
        counters["GET /infra/domains/{d}/security-policies/{id}"]["total"],
        2
    );
    http.delete(format!("{}/admin/counters", sim2.url))
        .send()
        .await
        .unwrap();
    assert!(sim2.counters().is_empty());

    // Faults over HTTP.
    let resp = http
        .put(format!("{}/admin/faults", sim2.url))
        .json(&json!({"latency_ms": 5, "error_503_fraction": 0.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let f = admin_get(&format!("{}/admin/faults", sim2.url)).await;
    assert_eq!(f["latency_ms"], 5);
    sim2.shutdown().await;
}

#[tokio::test]
async fn ids_with_reserved_characters_are_encoded_in_paths() {
    let t = Target::new().await;
    let id = t.id("with space+plus");
    t.client
        .patch_group(&t.domain, &group(&id, vec![]))
        .await
        .unwrap();
    let g = t.client.get_group(&t.domain, &id).await.unwrap().unwrap();
    assert_eq!(g.id, id);
    t.client
        .delete(&format!(
            "/infra/domains/{}/groups/{}",
            t.domain,
            segment(&id)
        ))
        .await
        .unwrap();
    assert!(!t.group_exists(&id).await);
}

#[tokio::test]
async fn effective_members_and_flow_logs_follow_the_policies() {
    let Some(t) = Target::simulated().await else {
        return;
    };
    let http = reqwest::Client::new();
    let vms = json!([
        {"name": "web-01", "ips": ["10.10.20.5"], "tags": [{"scope": "app", "tag": t.id("web")}]},
        {"name": "client-01", "ips": ["10.10.30.7"], "tags": []}
    ]);
    http.put(format!("{}/admin/vms", t.sim().url))
        .json(&vms)
        .send()
        .await
        .unwrap();
    let web = t.id("web");
    let gpath = t.group_path("web");
    let mut allow = rule(&format!("{web}-https"), 10, "ANY", &gpath, "443");
    allow.tag = Some("web-allow-https".into());
    let mut catch_all = rule(&format!("{web}-catch-all"), 1000, "ANY", &gpath, "1");
    catch_all.service_entries.clear();
    catch_all.action = "DROP".into();
    catch_all.tag = Some("microseg-monitor".into());
    let body = infra(
        &t.domain,
        vec![
            DomainChild::ChildGroup {
                id: web.clone(),
                marked_for_delete: false,
                group: group(&web, vec![]),
            },
            DomainChild::ChildSecurityPolicy {
                id: web.clone(),
                marked_for_delete: false,
                security_policy: policy(&web, Some(&gpath), vec![allow, catch_all]),
            },
        ],
    );
    t.client.patch_infra(&body).await.unwrap();
    let ids = t.client.rule_ids(&t.domain, &web).await.unwrap();

    // Whether a group has members (the check before a DROP): one listing of one item when a
    // VM is a member; the IP addresses only when none is; an empty group has none.
    let http_counters =
        |url: String| async move { admin_get(&format!("{url}/admin/counters")).await };
    http.delete(format!("{}/admin/counters", t.sim().url))
        .send()
        .await
        .unwrap();
    assert!(t.client.group_has_members(&t.domain, &web).await.unwrap());
    let counters = http_counters(t.sim().url.clone()).await;
    assert_eq!(
        counters["GET /infra/domains/{d}/groups/{id}/members/virtual-machines"]["total"], 1,
        "{counters}"
    );
    assert!(
        counters
            .get("GET /infra/domains/{d}/groups/{id}/members/ip-addresses")
            .is_none(),
        "{counters}"
    );
    let statics = t.id("statics");
    let empty = t.id("empty");
    for (id, ips) in [(&statics, vec!["10.99.0.0/24"]), (&empty, vec![])] {
        t.client
            .put_group(&t.domain, &group(id, ips))
            .await
            .unwrap();
    }
    assert!(
        t.client
            .group_has_members(&t.domain, &statics)
            .await
            .unwrap(),
        "static addresses are members"
    );
    assert!(!t.client.group_has_members(&t.domain, &empty).await.unwrap());
    let missing = t
        .client
        .group_has_members(&t.domain, &t.id("missing"))
        .await
        .unwrap_err();
    assert_eq!(code(&missing).0, 404);

    let members = t
        .client
        .send_json(
            Method::GET,
            &format!("/infra/domains/default/groups/{web}/members/virtual-machines"),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(members["result_count"], 1);
    assert_eq!(members["results"][0]["display_name"], "web-01");

    let lines = flow_lines(&t.sim().url, "10.10.30.7", "10.10.20.5", 443).await;
    let line = &lines[0];
    let https_id = ids[&format!("{web}-https")];
    assert!(line.contains(&format!("INET match PASS {https_id} IN 60 TCP 10.10.30.7/49152->10.10.20.5/443 S web-allow-https")), "{line}");
    let lines = flow_lines(&t.sim().url, "10.10.30.7", "10.10.20.5", 3389).await;
    let line = &lines[0];
    let drop_id = ids[&format!("{web}-catch-all")];
    assert!(
        line.ends_with(&format!(
            "match DROP {drop_id} IN 60 TCP 10.10.30.7/49152->10.10.20.5/3389 S microseg-monitor"
        )),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limits_answer_429_per_client_and_503_globally() {
    if real_nsx() {
        return;
    }
    let sim = nsxsim::spawn(nsxsim::Config {
        limits: LimitConfig {
            rate: 0,
            client_concurrency: 2,
            global_concurrency: 4,
        },
        faults: Faults {
            latency_ms: 300,
            ..Faults::default()
        },
        users: [
            ("admin".to_string(), nsxsim::DEFAULT_PASSWORD.to_string()),
            ("auditor".to_string(), nsxsim::DEFAULT_PASSWORD.to_string()),
        ]
        .into(),
        ..nsxsim::Config::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let get = |user: &'static str| {
        let http = http.clone();
        let url = format!("{}/policy/api/v1/infra/domains/default/groups", sim.url);
        async move {
            let r = http
                .get(url)
                .basic_auth(user, Some(nsxsim::DEFAULT_PASSWORD))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    // Three at once from one user: two run (300 ms each), the third is refused with 429.
    let answers = futures::future::join_all((0..3).map(|_| get("admin"))).await;
    let refused: Vec<&(u16, String)> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(refused.len(), 1, "{answers:?}");
    assert!(
        refused[0]
            .1
            .contains("Client 'admin' exceeded concurrency limit of 2.")
    );
    assert_eq!(answers.iter().filter(|(s, _)| *s == 200).count(), 2);

    // Past the global limit (all users together): 503.
    let answers = futures::future::join_all(
        (0..6).map(|i| get(if i % 2 == 0 { "admin" } else { "auditor" })),
    )
    .await;
    assert!(answers.iter().any(|(s, _)| *s == 503), "{answers:?}");
    assert!(
        answers.iter().filter(|(s, _)| *s == 200).count() <= 4,
        "{answers:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn request_rate_limit_message_and_retry_after() {
    if real_nsx() {
        return;
    }
    let sim = nsxsim::spawn(nsxsim::Config {
        limits: LimitConfig {
            rate: 3,
            client_concurrency: 40,
            global_concurrency: 199,
        },
        faults: Faults {
            retry_after_seconds: Some(1),
            ..Faults::default()
        },
        ..nsxsim::Config::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = http
            .get(format!("{}/policy/api/v1/infra/services", sim.url))
            .basic_auth("admin", Some(nsxsim::DEFAULT_PASSWORD))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "1");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["httpStatus"], "TOO_MANY_REQUESTS");
            assert_eq!(
                body["error_message"],
                "Client 'admin' exceeded request rate of 3 per second."
            );
        }
    }
    assert_eq!(statuses, vec![200, 200, 200, 429]);

    // The client waits for Retry-After and then succeeds.
    let (client, _creds) = admin_client(&sim, false);
    let start = std::time::Instant::now();
    let services: Vec<Value> = client.list("/infra/services").await.unwrap();
    assert!(services.iter().any(|s| s["id"] == "HTTPS"));
    assert!(start.elapsed() >= Duration::from_millis(900));
    sim.shutdown().await;
}

#[tokio::test]
async fn paging_stops_on_result_count_when_the_last_page_has_a_cursor() {
    if real_nsx() {
        return;
    }
    let t = Target::with(nsxsim::Config::default(), |c| c.page_size = 4).await;
    t.sim().set_faults(Faults {
        cursor_on_last_page: true,
        latency_ms: 1,
        ..Faults::default()
    });
    t.put_empty_groups((0..10).map(|i| t.id(&format!("lp-{i}"))))
        .await;
    assert_eq!(t.client.list_groups(&t.domain).await.unwrap().len(), 10);
    assert_eq!(t.sim().counters()["GET /infra/domains/{d}/groups"].total, 3);
}

#[tokio::test]
async fn concurrent_transaction_refusals_are_retried_for_hierarchical_writes() {
    let Some(t) = Target::simulated().await else {
        return;
    };
    t.sim().set_faults(Faults {
        atomic_conflict_fraction: 0.4,
        ..Faults::default()
    });
    for i in 0..15 {
        t.client
            .patch_infra(&application(&t.domain, &t.id(&format!("tx{i}")), 1))
            .await
            .unwrap();
    }
    let c = t.sim().counters();
    assert_eq!(c["PATCH /infra"].ok(), 15);
    assert!(c["PATCH /infra"].by_status.get("400").copied().unwrap_or(0) > 0);
    // A non-transient 400 is not retried.
    t.sim().set_faults(Faults::default());
    t.sim().reset_counters();
    let bad = serde_json::json!({"resource_type": "Infra", "colour": "blue"});
    assert!(
        t.client
            .send_json(Method::PATCH, "/infra", Some(&bad))
            .await
            .is_err()
    );
    assert_eq!(t.sim().counters()["PATCH /infra"].total, 1);
}
