//! The simulator's own admin API (`/admin/...`): faults, counters, state, VM inventory and
//! packet-log flows. Not part of NSX.

use std::time::Instant;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Resp, Sim, empty, json_response, lock};
use crate::nsxsim::limits::Faults;
use crate::nsxsim::store::{self, Store};

impl Sim {
    pub(super) fn admin(&self, method: &Method, path: &str, body: &[u8]) -> Resp {
        let bad = |msg: String| json_response(StatusCode::BAD_REQUEST, &json!({"error": msg}));
        match (method.as_str(), path.trim_end_matches('/')) {
            ("GET", "/admin/faults") => {
                let f = lock(&self.faults).clone();
                let remaining = lock(&self.outage_until)
                    .map(|t| t.saturating_duration_since(Instant::now()).as_secs_f64())
                    .unwrap_or(0.0);
                let mut v = serde_json::to_value(&f).unwrap_or(Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.insert("outage_remaining_seconds".into(), json!(remaining));
                }
                json_response(StatusCode::OK, &v)
            }
            ("PUT", "/admin/faults") => match serde_json::from_slice::<Faults>(body) {
                Ok(f) => {
                    self.set_faults(f.clone());
                    json_response(
                        StatusCode::OK,
                        &serde_json::to_value(&f).unwrap_or_default(),
                    )
                }
                Err(e) => bad(format!("faults: {e}")),
            },
            ("GET", "/admin/counters") => json_response(
                StatusCode::OK,
                &serde_json::to_value(&*lock(&self.counters)).unwrap_or_default(),
            ),
            ("DELETE", "/admin/counters") | ("POST", "/admin/counters/reset") => {
                lock(&self.counters).clear();
                empty(StatusCode::OK)
            }
            ("GET", "/admin/state") => json_response(
                StatusCode::OK,
                &serde_json::to_value(&*lock(&self.store)).unwrap_or_default(),
            ),
            ("PUT", "/admin/state") => match serde_json::from_slice::<Store>(body) {
                Ok(s) => {
                    *lock(&self.store) = s;
                    empty(StatusCode::OK)
                }
                Err(e) => bad(format!("state: {e}")),
            },
            ("GET", "/admin/vms") => json_response(
                StatusCode::OK,
                &serde_json::to_value(&lock(&self.store).vms).unwrap_or_default(),
            ),
            ("PUT", "/admin/vms") => match serde_json::from_slice::<Vec<store::Vm>>(body) {
                Ok(vms) => {
                    lock(&self.store).vms = vms;
                    empty(StatusCode::OK)
                }
                Err(e) => bad(format!("vms: {e}")),
            },
            ("POST", "/admin/flow") => {
                match serde_json::from_slice::<crate::nsxsim::inventory::Flow>(body) {
                    Ok(flow) => {
                        let lines = crate::nsxsim::inventory::packet_log(&lock(&self.store), &flow);
                        json_response(StatusCode::OK, &json!({"lines": lines}))
                    }
                    Err(e) => bad(format!("flow: {e}")),
                }
            }
            _ => json_response(
                StatusCode::NOT_FOUND,
                &json!({"error": format!("no admin endpoint {method} {path}")}),
            ),
        }
    }
}
