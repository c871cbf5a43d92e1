//! microseg: zero-trust microsegmentation on VMware NSX distributed firewall, rolled out
//! application by application on a schedule.
//!
//! Component map (see DESIGN.md):
//! - [`api`]: the custom resources and their validation (pure).
//! - [`schedule`]: the phase state machine and its gates (pure).
//! - [`plan`]: the desired NSX objects for a policy in a phase, and the diff against NSX (pure).
//! - [`nsx`]: the NSX Policy API wire model.
//! - [`nsxsim`]: an NSX Manager simulator for tests, benchmarks and dry runs.
//! - [`monitor`]: DFW packet-log and Log Insight webhook parsing (pure parts) for monitor mode.
//! - [`cli`]: command-line dispatch for the `microseg` binary.

pub mod api;
pub mod cli;
pub mod controller;
pub mod monitor;
pub mod notify;
pub mod nsx;
pub mod nsxsim;
pub mod plan;
pub mod recommend;
pub mod schedule;
pub mod vrni;
pub mod vrnisim;
pub mod web;
