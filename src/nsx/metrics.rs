//! Prometheus metrics of the NSX client: calls by method and status class, and call duration.
//! Labels are bounded (method, `2xx`/`3xx`/`4xx`/`5xx`/`error`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// `2xx`, `4xx`, ... or `error` (no answer).
    pub code_class: String,
}

/// The client's metrics; clones share the series.
#[derive(Clone, Debug)]
pub struct NsxMetrics {
    /// `nsx_requests_total{method,code_class}`.
    pub requests: Family<RequestLabels, Counter>,
    /// `nsx_request_duration_seconds`.
    pub duration: Histogram,
}

impl Default for NsxMetrics {
    fn default() -> Self {
        NsxMetrics {
            requests: Family::default(),
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
        }
    }
}

impl NsxMetrics {
    /// Registers the series (names get the registry's prefix, e.g. `microseg_`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "nsx_requests",
            "NSX API calls by method and status class",
            self.requests.clone(),
        );
        registry.register(
            "nsx_request_duration_seconds",
            "NSX API call duration",
            self.duration.clone(),
        );
    }

    /// Counts one call; `status` is `None` when no answer came.
    pub fn record(&self, method: &str, status: Option<u16>, seconds: f64) {
        let code_class = match status {
            Some(s) => format!("{}xx", s / 100),
            None => "error".to_string(),
        };
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                code_class,
            })
            .inc();
        self.duration.observe(seconds);
    }

    /// Calls counted for a method and class.
    pub fn count(&self, method: &str, code_class: &str) -> u64 {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                code_class: code_class.to_string(),
            })
            .get()
    }
}
