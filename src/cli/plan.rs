//! `microseg plan`: what microseg would write to NSX for a directory of manifests, the
//! difference from NSX now, and the impact of the change on recorded traffic. The pure parts
//! are in [`crate::plan`]; this module reads the files, NSX and the cluster.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use k8s_openapi::jiff::Timestamp;

use super::args::{KubeArgs, NsxArgs};
use super::recommend::{FlowFormat, read_flow_file};
use super::{Error, manifests_of, read_text};
use crate::api::{EnforcementWindow, SegmentationPolicy};
use crate::nsx::naming::Identity;
use crate::plan::live::Live;

/// Arguments of `microseg plan`.
#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// Directory (or file) of manifests: EnforcementWindows and SegmentationPolicies.
    #[arg(short = 'f', long = "filename")]
    pub path: PathBuf,
    /// Cluster identity used in NSX ids and ownership tags.
    #[arg(long, env = "MICROSEG_CLUSTER", default_value = "default")]
    pub cluster: String,
    /// Instant to plan for (RFC 3339); default now.
    #[arg(long)]
    pub at: Option<String>,
    /// Compare with this NSX Manager, e.g. https://nsx.example.com: exit 0 when NSX already
    /// holds what microseg would write now, 2 when it differs, 1 on error.
    #[arg(long, conflicts_with = "nsx_snapshot")]
    pub nsx_url: Option<String>,
    /// Compare with a simulator state dump (JSON, as `GET /admin/state` returns it) instead of a
    /// manager.
    #[arg(long)]
    pub nsx_snapshot: Option<PathBuf>,
    /// How to authenticate to --nsx-url and trust it.
    #[command(flatten)]
    pub nsx: NsxArgs,
    /// Recorded flows (the formats `recommend` reads: vRNI JSON or CSV, microseg CSV, DFW lines,
    /// a policy with its status.monitor): report per application the flows the change newly
    /// drops, newly allows and leaves as they were at --at (exit 2 when it newly drops one).
    #[arg(long, conflicts_with = "from_cluster")]
    pub flows: Option<PathBuf>,
    /// Format of --flows.
    #[arg(long, value_enum, default_value = "auto")]
    pub flows_format: FlowFormat,
    /// Take the recorded flows from the cluster: every SegmentationPolicy's status.monitor flows.
    /// Without --base or an NSX state, the cluster's policies are the state before the change.
    #[arg(long)]
    pub from_cluster: bool,
    /// The cluster of --from-cluster.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Directory (or file) of the manifests before the change (e.g. the target branch): the
    /// state the flows are compared with when no NSX state (--nsx-snapshot, --nsx-url) is given.
    #[arg(long)]
    pub base: Option<PathBuf>,
    /// VM inventory (JSON list of {name, ips, tags}, as the simulator's /admin/vms) that gives
    /// names and tags to the flows' addresses (needed for members by VM tag or name).
    #[arg(long)]
    pub inventory: Option<PathBuf>,
}

/// Runs `microseg plan`: the report per phase, then the review against NSX when an NSX state
/// is given, then the impact on recorded flows when flows are given. Exit 2 when NSX differs
/// or a recorded flow is newly dropped.
pub async fn run(args: &PlanArgs) -> Result<ExitCode, Error> {
    let now = match &args.at {
        Some(at) => at.parse().map_err(|e| Error::Flag {
            flag: "--at",
            reason: format!("{at:?} is not an RFC 3339 instant: {e}"),
        })?,
        None => Timestamp::now(),
    };
    let identity = Identity::new(&args.cluster).map_err(crate::plan::PlanError::from)?;
    let (windows, policies) = manifests_of(&args.path)?;
    print!(
        "{}",
        crate::plan::report::render(&windows, &policies, &identity, now)?
    );
    let Some(live) = live(args, &policies, &identity).await? else {
        let code = impact(args, &windows, &policies, &identity, now, None).await?;
        return Ok(ExitCode::from(code));
    };
    let review = crate::plan::live::review(&windows, &policies, &identity, now, &live);
    print!("\n{}", review.render());
    let code = impact(args, &windows, &policies, &identity, now, Some(&live)).await?;
    Ok(ExitCode::from(review.exit_code().max(code)))
}

/// What NSX holds: from `--nsx-snapshot`, else read from `--nsx-url`, else `None`.
async fn live(
    args: &PlanArgs,
    policies: &[SegmentationPolicy],
    identity: &Identity,
) -> Result<Option<Live>, Error> {
    if let Some(path) = &args.nsx_snapshot {
        let value: serde_json::Value =
            serde_json::from_str(&read_text(path)?).map_err(|e| Error::Content {
                path: path.clone(),
                reason: format!("not JSON: {e}"),
            })?;
        let live = Live::from_snapshot(&value).map_err(|e| Error::Content {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        return Ok(Some(live));
    }
    let Some(url) = &args.nsx_url else {
        return Ok(None);
    };
    let client = args
        .nsx
        .client(url, Default::default(), Default::default())?;
    let domains: BTreeSet<String> = policies
        .iter()
        .map(|p| p.spec.nsx.domain.clone())
        .chain([crate::api::DEFAULT_DOMAIN.to_string()])
        .collect();
    let live = read_live(&client, &domains, identity)
        .await
        .map_err(Box::new)?;
    Ok(Some(live))
}

/// `plan --flows` / `--from-cluster`: the impact of the change on recorded traffic at `now`.
/// Before: NSX as given (`live`), else the manifests of --base, else (with --from-cluster) the
/// cluster's policies, else no microseg rule. After: the same with this cluster's objects
/// replaced by what the manifests would have in NSX at `now`. Returns the exit code (2 when
/// the change newly drops a recorded flow).
async fn impact(
    args: &PlanArgs,
    windows: &[EnforcementWindow],
    policies: &[SegmentationPolicy],
    identity: &Identity,
    now: Timestamp,
    live: Option<&Live>,
) -> Result<u8, Error> {
    use crate::plan::impact::{Fleet, compare, phase_at};
    let (mut flows, source, cluster) = if let Some(path) = &args.flows {
        let (flows, _, kind) = read_flow_file(path, args.flows_format)?;
        (flows, format!("{} ({kind})", path.display()), None)
    } else if args.from_cluster {
        let cluster = list_cluster_policies(&args.kube).await?;
        let flows = cluster_flows(&cluster)?;
        (
            flows,
            format!(
                "monitor flows of {} SegmentationPolicies in the cluster",
                cluster.len()
            ),
            Some(cluster),
        )
    } else {
        return Ok(0);
    };
    if let Some(path) = &args.inventory {
        let inventory = super::recommend::read_inventory(path)?;
        for f in &mut flows {
            crate::recommend::enrich(&mut f.src, &inventory);
            crate::recommend::enrich(&mut f.dst, &inventory);
        }
    }
    let (before, before_label) = match (live, &args.base, &cluster) {
        (Some(live), _, _) => (Fleet::from_live(live), "what NSX holds now".to_string()),
        (None, Some(base), _) => {
            let (w, p) = manifests_of(base)?;
            (
                Fleet::default().with_desired(&p, identity, phase_at(&w, now))?,
                format!("the manifests of {}", base.display()),
            )
        }
        (None, None, Some(cluster)) => (
            Fleet::default().with_desired(cluster, identity, phase_at(windows, now))?,
            "the cluster's SegmentationPolicies".to_string(),
        ),
        (None, None, None) => (Fleet::default(), "no microseg rule".to_string()),
    };
    let after =
        before
            .without_owned(identity)
            .with_desired(policies, identity, phase_at(windows, now))?;
    let report = compare(&before, &after, &flows);
    print!(
        "\nImpact on recorded traffic at {now}: flows from {source}, before: {before_label}\n{}",
        report.render()
    );
    Ok(report.exit_code())
}

/// The monitor flows of every policy in `cluster`.
fn cluster_flows(
    cluster: &[SegmentationPolicy],
) -> Result<Vec<crate::recommend::Observation>, Error> {
    let mut flows = Vec::new();
    for p in cluster {
        let text = serde_json::to_string(p).map_err(|e| Error::Flag {
            flag: "--from-cluster",
            reason: e.to_string(),
        })?;
        let key = format!(
            "{}/{}",
            p.metadata.namespace.as_deref().unwrap_or_default(),
            p.metadata.name.as_deref().unwrap_or_default()
        );
        let (_, f) = crate::recommend::input::policy_flows(&text).map_err(|e| Error::Content {
            path: PathBuf::from(&key),
            reason: e.to_string(),
        })?;
        flows.extend(f);
    }
    Ok(flows)
}

/// Every SegmentationPolicy in the cluster, with status (`plan --from-cluster`).
async fn list_cluster_policies(kube: &KubeArgs) -> Result<Vec<SegmentationPolicy>, Error> {
    let cluster = |reason: String| Error::Flag {
        flag: "--from-cluster",
        reason,
    };
    let client = kube.client().await.map_err(cluster)?;
    let api: kube::Api<SegmentationPolicy> = kube::Api::all(client);
    let list = api
        .list(&Default::default())
        .await
        .map_err(|e| cluster(format!("listing SegmentationPolicies: {e}")))?;
    Ok(list.items)
}

/// Reads the groups and security policies of `domains` that matter to the review: every group
/// and policy (to find objects in the way), with the rules of those this cluster may own.
async fn read_live(
    client: &crate::nsx::Client,
    domains: &BTreeSet<String>,
    identity: &Identity,
) -> Result<Live, crate::nsx::Error> {
    use crate::nsx::NsxApi;
    let mut live = Live::default();
    let ours = format!("ms_{}_", identity.cluster());
    for domain in domains {
        for g in client.list_groups(domain).await? {
            live.groups.insert((domain.clone(), g.id.clone()), g);
        }
        for p in client.list_policies(domain).await? {
            let owned = p.tags.iter().any(|t| {
                t.scope == crate::nsx::naming::OWNER_CLUSTER && t.tag == identity.cluster()
            });
            let policy = if owned || p.id.starts_with(&ours) {
                client.get_policy(domain, &p.id).await?.unwrap_or(p)
            } else {
                p
            };
            live.policies
                .insert((domain.clone(), policy.id.clone()), policy);
        }
    }
    Ok(live)
}
