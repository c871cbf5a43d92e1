//! The controller's HTTP side: health, readiness and metrics (`health`).

pub mod dashboard;
pub mod health;
