//! Deletes stay pending until purged (reference §3), and a failed transaction undoes them.

use super::*;

fn pending_ctx(now_ms: i64) -> Ctx {
    Ctx {
        now_ms,
        pending_delete_ms: 1000,
        ..ctx()
    }
}

#[test]
fn a_deleted_group_or_policy_stays_pending_and_blocks_its_path_until_purged() {
    // §3: kept with marked_for_delete until purged, hidden, re-create → 400/500045.
    let mut s = Store::new();
    let c = pending_ctx(10_000);
    s.transact(
        vec![
            group_op("g", three_part_group()),
            policy_op("p"),
            rule_op("p", "r", "ANY"),
        ],
        &c,
    )
    .unwrap();
    let rule_id = rule(&s, "r")["rule_id"].clone();
    s.transact(
        vec![
            Op::DeleteGroup {
                domain: "default".into(),
                id: "g".into(),
            },
            Op::DeletePolicy {
                domain: "default".into(),
                id: "p".into(),
            },
        ],
        &c,
    )
    .unwrap();
    assert!(!s.group_exists("/infra/domains/default/groups/g"));
    let gpath = group_path("default", "g");
    let pending = s.pending_object(&gpath, 10_500).unwrap();
    assert_eq!(pending["marked_for_delete"], json!(true));
    let ppath = policy_path("default", "p");
    assert_eq!(
        s.pending_object(&ppath, 10_500).unwrap()["rules"][0]["marked_for_delete"],
        json!(true)
    );
    assert!(
        s.pending_object(&rule_path("default", "p", "r"), 10_500)
            .is_some()
    );
    assert_eq!(
        s.pending_children("/infra/domains/default", "Group", 10_500)
            .len(),
        1
    );
    // Re-create within the pending time: refused, nothing written.
    for op in [group_op("g", json!({})), policy_op("p")] {
        let err = s.transact(vec![op], &pending_ctx(10_999)).unwrap_err();
        assert_eq!(err.status.as_u16(), 400);
        assert_eq!(err.body.error_code, codes::PENDING_DELETE);
        assert!(
            err.body.error_message.contains("marked for deletion"),
            "{}",
            err.body.error_message
        );
    }
    assert!(!s.group_exists(&gpath));
    // Once the time is up: purged, and the paths are free.
    assert!(s.pending_object(&gpath, 11_000).is_none());
    s.transact(
        vec![
            group_op("g", json!({})),
            policy_op("p"),
            rule_op("p", "r", "ANY"),
        ],
        &pending_ctx(11_000),
    )
    .unwrap();
    assert!(s.pending.is_empty());
    assert_ne!(
        rule(&s, "r")["rule_id"],
        rule_id,
        "rule ids are never reused"
    );
}

#[test]
fn a_rule_deleted_from_a_live_policy_shows_pending_but_frees_its_path() {
    let mut s = Store::new();
    let c = pending_ctx(10_000);
    s.transact(vec![policy_op("p"), rule_op("p", "r", "ANY")], &c)
        .unwrap();
    let rule_id = rule(&s, "r")["rule_id"].clone();
    s.transact(
        vec![Op::DeleteRule {
            domain: "default".into(),
            policy: "p".into(),
            id: "r".into(),
        }],
        &c,
    )
    .unwrap();
    let rpath = rule_path("default", "p", "r");
    assert!(s.pending_object(&rpath, 10_001).is_some());
    s.transact(vec![rule_op("p", "r", "ANY")], &pending_ctx(10_001))
        .unwrap();
    assert!(s.pending_object(&rpath, 10_001).is_none());
    assert_ne!(rule(&s, "r")["rule_id"], rule_id);
}

#[test]
fn pending_deletes_can_be_off_and_are_rolled_back_with_a_failed_transaction() {
    let mut s = Store::new();
    s.transact(vec![group_op("g", json!({}))], &ctx()).unwrap();
    // 0: purged at once (fast tests).
    s.transact(
        vec![Op::DeleteGroup {
            domain: "default".into(),
            id: "g".into(),
        }],
        &ctx(),
    )
    .unwrap();
    assert!(s.pending.is_empty());
    s.transact(vec![group_op("g", json!({}))], &ctx()).unwrap();
    // A delete in a transaction that fails leaves no pending trace.
    let err = s
        .transact(
            vec![
                Op::DeleteGroup {
                    domain: "default".into(),
                    id: "g".into(),
                },
                rule_op("missing-policy", "r", "ANY"),
            ],
            &pending_ctx(1),
        )
        .unwrap_err();
    assert_eq!(err.status.as_u16(), 404);
    assert!(s.pending.is_empty());
    assert!(s.group_exists(&group_path("default", "g")));
}
