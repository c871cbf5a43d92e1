//! microseg: zero-trust microsegmentation on VMware NSX distributed firewall, rolled out
//! application by application on a schedule.
//!
//! Component map (see DESIGN.md and the README's layout table):
//! - [`api`]: the custom resources and their validation (pure).
//! - [`schedule`]: the phase state machine and its gates (pure).
//! - [`plan`]: the desired NSX objects for a policy in a phase, and the diff against NSX (pure).
//! - [`nsx`]: the NSX Policy API: wire model, microseg's names in NSX ([`nsx::naming`]: cluster
//!   identity, ids, paths, catch-all ids, monitor tag), NSX's predefined services, error codes,
//!   the HTTPS client.
//! - [`net`]: the IP protocol, one type for rule ports, DFW log lines and flows (pure).
//! - [`nsxsim`]: an NSX Manager simulator for tests, benchmarks and dry runs.
//! - [`app`]: the composition root of `microseg controller`: builds the shared watches, the
//!   controller, the monitor recorder and the listeners, hands each what it needs, and stops them.
//! - [`controller`]: the reconcilers (policy: observe → [`controller::decide`] (pure) → act;
//!   window) on one shared watch per kind, the NSX cache and write batching, leader election.
//! - [`monitor`]: DFW packet-log and Log Insight parsing, attribution and aggregation (pure
//!   parts) and the recorder of `status.monitor`.
//! - [`notify`]: owner notices and their channels.
//! - [`web`]: the health/metrics, ingestion and dashboard listeners.
//! - [`recommend`]: rules from observed flows (pure), [`vrni`] its vRNI client, [`vrnisim`] a
//!   vRNI simulator.
//! - [`cli`]: the `microseg` command line: dispatch on one runtime, each subcommand's flags and
//!   IO shell (`controller`, `plan`, `recommend`), the NSX and kubeconfig flags once.
//! - [`backoff`]: the exponential back-off of every retry loop (NSX calls, notices, monitor
//!   status writes); [`error_text`]: an error with its causes, as the clients report it;
//!   [`secret`]: constant-time comparison of secrets.

pub mod api;
pub mod app;
pub mod backoff;
pub mod cli;
pub mod controller;
pub mod error_text;
pub mod monitor;
pub mod net;
pub mod notify;
pub mod nsx;
pub mod nsxsim;
pub mod plan;
pub mod recommend;
pub mod schedule;
pub mod secret;
pub mod vrni;
pub mod vrnisim;
pub mod web;
