//! The integration tests, one binary: each former `tests/*.rs` is a module here, and the
//! helpers they share live in `common` (control plane, e2e environment, notification servers)
//! and `nsx_support` (the NSX simulator or a real NSX). The e2e modules share one API server
//! per process (`common::shared()`), each test in its own namespace.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;
mod nsx_support;
mod purity;

mod canary_sim;
mod crds;
mod e2e_abuse;
mod e2e_ahead;
mod e2e_canary;
mod e2e_dashboard;
mod e2e_events;
mod e2e_fleet;
mod e2e_guard;
mod e2e_health;
mod e2e_lifecycle;
mod e2e_monitor;
mod e2e_plan_cluster;
mod e2e_safety;
mod e2e_schema;
mod gitops;
mod helm;
mod monitor_cli;
mod monitor_loginsight;
mod monitor_parse;
mod monitor_roundtrip;
mod notify_render;
mod notify_secrets;
mod notify_smtp;
mod notify_webhook;
mod nsx_cache;
mod nsx_contract;
mod nsx_drift;
mod nsx_faults;
mod nsx_logs;
mod nsx_plan_roundtrip;
mod nsxsim_shapes;
mod plan_cli;
mod recommend;
mod recommend_vrni;
mod schema;
