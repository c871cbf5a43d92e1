//! The recommendation as YAML: the policy, validated against the CRD schema, with the
//! evidence, rare entries and notes as comments. Pure.

use super::*;

/// Bytes with a binary unit, and sessions, as far as known.
pub(super) fn volume_text(s: &Stats) -> String {
    let mut parts = Vec::new();
    if s.bytes > 0 {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut v = s.bytes as f64;
        let mut u = 0;
        while v >= 1024.0 && u + 1 < units.len() {
            v /= 1024.0;
            u += 1;
        }
        parts.push(if u == 0 {
            format!("{} B", s.bytes)
        } else {
            format!("{v:.1} {}", units[u])
        });
    }
    if s.sessions > 0 {
        parts.push(plural(s.sessions, "session"));
    }
    if parts.is_empty() {
        "no volume given".into()
    } else {
        parts.join(", ")
    }
}

pub(super) fn peers_stats<'a>(
    kept: &'a Kept,
    dir: Direction,
    peer: &PeerKey,
    service: &Service,
) -> Option<&'a Stats> {
    kept.get(&dir)?.get(peer)?.get(service)
}

pub(super) fn policy(
    app: &Application,
    rules: Vec<PolicyRule>,
    opts: &Options,
) -> SegmentationPolicy {
    let spec = SegmentationPolicySpec {
        application: opts.application.clone(),
        owners: opts.owners.clone(),
        criticality: opts.criticality,
        window: WindowRef {
            name: opts.window.clone(),
        },
        members: app.members(),
        rules,
        catch_all: CatchAll {
            inbound: true,
            outbound: opts.outbound_catch_all,
        },
        after_cleanup: Default::default(),
        nsx: Default::default(),
        suspend: false,
        canary_vms: Vec::new(),
    };
    let mut p = SegmentationPolicy::new(&opts.name, spec);
    p.metadata.namespace = Some(opts.namespace.clone());
    p
}

/// What the rendered comments state besides the policy.
pub(super) struct Facts<'a> {
    pub(super) flows: usize,
    pub(super) ignored: usize,
    pub(super) measure: Measure,
    pub(super) rare_below: u64,
    pub(super) evidence: &'a [(String, Stats)],
    pub(super) notes: &'a [String],
}

pub(super) fn render(
    policy: &SegmentationPolicy,
    rare: &[Rare],
    facts: &Facts<'_>,
    opts: &Options,
) -> Result<String, RecommendError> {
    let Facts {
        flows,
        ignored,
        measure,
        rare_below,
        ..
    } = *facts;
    let spec = serde_yaml::to_string(&policy.spec)
        .map_err(|e| invalid("spec", format!("does not render as YAML: {e}")))?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Recommended by microseg from {flows} flow records ({ignored} touch no member of the application)."
    );
    let _ = writeln!(out, "# Source: {}.", opts.source);
    let _ = writeln!(
        out,
        "# Evidence is counted in {}; entries below {rare_below} are listed at the end as rare. Peers of one /{} network collapse to it from {} addresses.",
        measure.unit(),
        opts.prefix,
        opts.collapse_min
    );
    for n in facts.notes {
        let _ = writeln!(out, "# NOTE: {n}.");
    }
    out.push_str("apiVersion: microseg.io/v1alpha1\nkind: SegmentationPolicy\nmetadata:\n");
    let _ = writeln!(out, "  name: {}", yaml_scalar(&opts.name)?);
    let _ = writeln!(out, "  namespace: {}", yaml_scalar(&opts.namespace)?);
    out.push_str("spec:\n");
    for line in spec.lines() {
        let _ = writeln!(out, "  {line}");
    }
    if !facts.evidence.is_empty() {
        let _ = writeln!(out, "# Evidence per rule, from {}:", opts.source);
        for (name, s) in facts.evidence {
            let seen = s
                .seen
                .as_ref()
                .map(|(a, b)| format!(", first {a}, last {b}"))
                .unwrap_or_default();
            let volume = if s.conversations > 0 && (s.bytes > 0 || s.sessions > 0) {
                format!(
                    "{} ({})",
                    plural(s.conversations, "conversation"),
                    volume_text(s)
                )
            } else if s.conversations > 0 {
                plural(s.conversations, "conversation")
            } else {
                plural(s.count, "flow record")
            };
            let _ = writeln!(
                out,
                "#   {name}: {volume} with {}{seen}",
                plural(s.addresses.len() as u64, "peer address")
            );
        }
    }
    if !rare.is_empty() {
        out.push_str(
            "# Rare flows, not made into rules: add a rule by hand if they are legitimate.\n",
        );
        for r in rare {
            let seen = r
                .stats
                .seen
                .as_ref()
                .map(|(a, b)| format!(", first {a}, last {b}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "#   {:?} {} {} {}: {} ({}{seen})",
                r.direction,
                match r.direction {
                    Direction::Inbound => "from",
                    Direction::Outbound => "to",
                },
                r.peer.label(),
                r.service.label(),
                if r.stats.conversations > 0 {
                    plural(r.stats.conversations, "conversation")
                } else {
                    plural(r.stats.count, "flow")
                },
                r.why
            );
        }
    }
    // The same check `microseg plan` applies: CRD schema and CEL rules.
    let parsed = crate::api::manifest::resources(&out)
        .map_err(|e| invalid("recommended policy", e.to_string()))?;
    if parsed.len() != 1 {
        return Err(invalid(
            "recommended policy",
            format!("rendered {} resources instead of one", parsed.len()),
        ));
    }
    Ok(out)
}

pub(super) fn plural(n: u64, what: &str) -> String {
    match (n, what.ends_with('s')) {
        (1, _) => format!("1 {what}"),
        (_, true) => format!("{n} {what}es"),
        _ => format!("{n} {what}s"),
    }
}

pub(super) fn yaml_scalar(s: &str) -> Result<String, RecommendError> {
    serde_yaml::to_string(s)
        .map(|t| t.trim_end().to_string())
        .map_err(|e| invalid("metadata", e.to_string()))
}
