//! Prometheus metrics of the controller (`microseg_*`). Every label set is bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label: an error category (PascalCase, from `Error::category`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabel {
    /// Category.
    pub category: String,
}

/// Label: a kind (`SegmentationPolicy`, `EnforcementWindow`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Kind.
    pub kind: String,
}

/// Label: a phase.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    /// Phase name.
    pub phase: String,
}

/// Controller metrics.
#[derive(Clone)]
pub struct Metrics {
    /// Reconciles run.
    pub reconciles: Counter,
    /// Reconcile errors by category.
    pub reconcile_errors: Family<CategoryLabel, Counter>,
    /// Reconcile duration.
    pub reconcile_duration: Histogram,
    /// Policies per phase.
    pub policies: Family<PhaseLabel, Gauge>,
    /// Seconds between a transition's scheduled instant and the reconcile that made it.
    pub transition_lateness: Family<PhaseLabel, Histogram>,
    /// NSX writes (H-API calls) made.
    pub nsx_writes: Counter,
    /// Drift found in NSX and corrected.
    pub drift_corrected: Counter,
    /// Notices delivered, by kind.
    pub notices: Family<PhaseLabel, Counter>,
    /// Notices that gave way to a scheduled instant (no send permit before its lead), by kind.
    pub notices_deferred: Family<PhaseLabel, Counter>,
    /// Objects that cannot be decoded (skipped until fixed), by kind.
    pub invalid_objects: Family<KindLabel, Gauge>,
    /// Reconciles that panicked (caught; the other objects are still served), by kind.
    pub reconcile_panics: Family<KindLabel, Counter>,
}

impl Metrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            reconciles: Counter::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            policies: Family::default(),
            transition_lateness: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 2.0, 16))
            }),
            nsx_writes: Counter::default(),
            drift_corrected: Counter::default(),
            notices: Family::default(),
            notices_deferred: Family::default(),
            invalid_objects: Family::default(),
            reconcile_panics: Family::default(),
        };
        registry.register("microseg_reconcile", "Reconciles run", m.reconciles.clone());
        registry.register(
            "microseg_reconcile_errors",
            "Reconcile errors by category",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "microseg_reconcile_duration_seconds",
            "Reconcile duration",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "microseg_policies",
            "Policies per phase",
            m.policies.clone(),
        );
        registry.register(
            "microseg_transition_lateness_seconds",
            "Seconds between a transition's scheduled instant and when the controller made it",
            m.transition_lateness.clone(),
        );
        registry.register(
            "microseg_nsx_writes",
            "NSX hierarchical writes",
            m.nsx_writes.clone(),
        );
        registry.register(
            "microseg_drift_corrected",
            "NSX drift found and corrected",
            m.drift_corrected.clone(),
        );
        registry.register(
            "microseg_notices",
            "Owner notices delivered, by kind",
            m.notices.clone(),
        );
        registry.register(
            "microseg_notices_deferred",
            "Owner notices not sent because no send permit came before the lead of a scheduled instant, by kind",
            m.notices_deferred.clone(),
        );
        registry.register(
            "microseg_invalid_objects",
            "Objects that cannot be decoded and are skipped until fixed, by kind",
            m.invalid_objects.clone(),
        );
        registry.register(
            "microseg_reconcile_panics",
            "Reconciles that panicked (caught and retried; other objects are still served), by kind",
            m.reconcile_panics.clone(),
        );
        m
    }
}
