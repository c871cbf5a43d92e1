//! Command-line interface of the `microseg` binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::api;

/// Errors the command line reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Rendering YAML failed.
    #[error("rendering CRD YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// A manifest was refused.
    #[error("{path}: {source}")]
    Manifest {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::api::manifest::ManifestError,
    },
    /// No plan could be made.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// The controller failed to start or stopped with an error.
    #[error(transparent)]
    Controller(#[from] Box<crate::controller::cli::StartError>),
    /// A flag was wrong.
    #[error("{flag}: {reason}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Why.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The NSX simulator failed.
    #[error("nsx-sim: {0}")]
    NsxSim(#[from] crate::nsxsim::Error),
    /// No policy could be recommended.
    #[error("recommend: {0}")]
    Recommend(#[from] crate::recommend::RecommendError),
    /// Reading NSX failed.
    #[error(transparent)]
    Nsx(#[from] Box<crate::nsx::Error>),
    /// A file's content was refused.
    #[error("{path}: {reason}")]
    Content {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// microseg: zero-trust microsegmentation on VMware NSX DFW, on a schedule.
#[derive(Parser, Debug)]
#[command(name = "microseg", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the CustomResourceDefinitions as YAML, or write them to crds/ and the chart.
    Crds {
        /// Write crds/*.yaml and charts/microseg/crds/*.yaml under this repository root.
        #[arg(long)]
        write: bool,
        /// Repository root used with --write.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
    /// Run the controller: reconcile SegmentationPolicies into NSX on schedule.
    Controller(Box<crate::controller::cli::ControllerArgs>),
    /// Run the NSX Manager simulator on a loopback address until interrupted.
    NsxSim(NsxSimArgs),
    /// Run the vRNI API simulator (token auth, flow search, bulk fetch) on a loopback address
    /// until interrupted.
    VrniSim(crate::vrnisim::Args),
    /// Show what microseg would write to NSX for a directory of manifests, per phase; with
    /// --nsx-url or --nsx-snapshot, the difference from NSX now (exit 0: no change, 2: changes,
    /// 1: error).
    Plan(PlanArgs),
    /// Recommend a SegmentationPolicy from observed flows: vRNI's API JSON or UI CSV export, vRNI
    /// itself (--vrni-url), microseg's CSV, DFW packet-log lines, or a policy's unmatched monitor
    /// flows (file or cluster).
    Recommend(Box<RecommendArgs>),
    /// Parse DFW packet-log lines from stdin: one JSON object per line on stdout, a summary of
    /// unparsed lines on stderr. With --format loginsight, read one saved Log Insight webhook
    /// payload instead: one JSON object per message, and what the webhook would answer (exit 0:
    /// delivered, 2: refused).
    ParseLog {
        /// How many unparsed lines to quote in the summary.
        #[arg(long, default_value_t = 10)]
        samples: usize,
        /// What stdin holds.
        #[arg(long, value_enum, default_value_t = LogFormat::Lines)]
        format: LogFormat,
        /// The receipt time given to lines without a timestamp (RFC 3339; default: now).
        #[arg(long)]
        received_at: Option<String>,
    },
}

/// What `microseg parse-log` reads on stdin.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// DFW packet-log lines, one per line, with or without syslog header or timestamp.
    Lines,
    /// One Log Insight / Aria Operations for Logs alert webhook body (JSON).
    Loginsight,
}

/// Arguments of `microseg nsx-sim`: the simulator's flags plus how long deletes stay pending.
#[derive(clap::Args, Debug)]
pub struct NsxSimArgs {
    /// The simulator's flags.
    #[command(flatten)]
    pub sim: crate::nsxsim::Args,
    /// How long a deleted object stays pending (marked for delete: hidden from GET, its path
    /// refused with 400/500045 on re-create), in milliseconds; 0 purges at once.
    #[arg(long, default_value_t = crate::nsxsim::DEFAULT_PENDING_DELETE_MS)]
    pub pending_delete_ms: u64,
}

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
    /// basic, session or certificate (with --nsx-url).
    #[arg(long, value_enum, default_value = "session")]
    pub nsx_auth: crate::controller::cli::NsxAuth,
    /// Directory with `username` and `password` files; else $NSX_USERNAME and $NSX_PASSWORD.
    #[arg(long)]
    pub nsx_credentials_dir: Option<PathBuf>,
    /// PEM client certificate (certificate auth).
    #[arg(long)]
    pub nsx_client_cert: Option<PathBuf>,
    /// PEM client key (certificate auth).
    #[arg(long)]
    pub nsx_client_key: Option<PathBuf>,
    /// PEM bundle of the CAs that sign the NSX Manager's certificate.
    #[arg(long)]
    pub nsx_ca_file: Option<PathBuf>,
    /// Do not verify the NSX Manager's certificate. Insecure: labs only.
    #[arg(long)]
    pub nsx_insecure_skip_tls_verify: bool,
    /// Accept an `http://` --nsx-url (credentials travel in clear text). Insecure: labs and the
    /// simulator only.
    #[arg(long)]
    pub nsx_insecure_allow_http: bool,
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
    /// Kubeconfig file for --from-cluster (default: $KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Directory (or file) of the manifests before the change (e.g. the target branch): the
    /// state the flows are compared with when no NSX state (--nsx-snapshot, --nsx-url) is given.
    #[arg(long)]
    pub base: Option<PathBuf>,
    /// VM inventory (JSON list of {name, ips, tags}, as the simulator's /admin/vms) that gives
    /// names and tags to the flows' addresses (needed for members by VM tag or name).
    #[arg(long)]
    pub inventory: Option<PathBuf>,
}

/// Where `microseg recommend` reads flows.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowFormat {
    /// By file extension: .json, .csv (vRNI's export when its header has "Source IP Address",
    /// else microseg's columns), .yaml/.yml (a policy with status), anything else DFW log.
    Auto,
    /// vRNI / Aria Operations for Networks Flow JSON: one Flow, a list, {results:[...]}, or the
    /// /entities/fetch answer.
    Json,
    /// microseg's CSV columns (source_ip,destination_ip,port,protocol,...; see
    /// src/recommend/input.rs).
    Csv,
    /// vRNI's UI flow export (CSV with display-name headers: "Source IP Address", "Port",
    /// "Bytes (In Bytes)", ...; other columns ignored).
    VrniCsv,
    /// DFW packet-log lines.
    Dfw,
    /// A SegmentationPolicy with status (kubectl get segpol NAME -o yaml): its monitor flows.
    Policy,
}

/// Arguments of `microseg recommend`.
#[derive(clap::Args, Debug)]
pub struct RecommendArgs {
    /// Flow file (see --format).
    #[arg(long, required_unless_present_any = ["from_cluster", "vrni_url"])]
    pub flows: Option<PathBuf>,
    /// Pull the application's flows from vRNI / Aria Operations for Networks, e.g.
    /// https://vrni.example.com: searched by --app-ip, --app-name and --app-tag over --since.
    #[arg(long, conflicts_with_all = ["flows", "from_cluster"])]
    pub vrni_url: Option<String>,
    /// Directory with `username` and `password` files for --vrni-url; else $VRNI_USERNAME and
    /// $VRNI_PASSWORD.
    #[arg(long)]
    pub vrni_credentials_dir: Option<PathBuf>,
    /// Log in as a directory (LDAP) user of this domain; default: a LOCAL user.
    #[arg(long)]
    pub vrni_ldap_domain: Option<String>,
    /// PEM bundle of the CAs that sign vRNI's certificate (default: the system's).
    #[arg(long)]
    pub vrni_ca_file: Option<PathBuf>,
    /// Do not verify vRNI's certificate. Insecure: labs only.
    #[arg(long)]
    pub vrni_insecure_skip_tls_verify: bool,
    /// How far back to read flows from vRNI: 30d, 12h, 90m.
    #[arg(long, default_value = "30d")]
    pub since: String,
    /// Flow ids per search page.
    #[arg(long, default_value_t = 100)]
    pub vrni_page_size: usize,
    /// Least time between two vRNI calls, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub vrni_min_interval_ms: u64,
    /// Format of --flows.
    #[arg(long, value_enum, default_value = "auto")]
    pub format: FlowFormat,
    /// Read the unmatched monitor flows of this SegmentationPolicy (NAMESPACE/NAME) from the
    /// cluster; its name, window, owners, members and rules are the defaults.
    #[arg(long, conflicts_with = "flows")]
    pub from_cluster: Option<String>,
    /// Kubeconfig file for --from-cluster (default: $KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// A VM tag of the application: `scope|tag` or `tag` (repeatable).
    #[arg(long)]
    pub app_tag: Vec<String>,
    /// A VM name of the application; a trailing `*` matches names starting with it (repeatable).
    #[arg(long)]
    pub app_name: Vec<String>,
    /// An IP address or CIDR block of the application (repeatable).
    #[arg(long)]
    pub app_ip: Vec<String>,
    /// VM inventory (JSON list of {name, ips, tags}, as the simulator's /admin/vms) that gives
    /// names and tags to addresses.
    #[arg(long)]
    pub inventory: Option<PathBuf>,
    /// Directory (or file) of the SegmentationPolicies already in Git: peers that belong to them
    /// are named by application.
    #[arg(long)]
    pub policies: Option<PathBuf>,
    /// metadata.name of the recommended policy.
    #[arg(long)]
    pub name: Option<String>,
    /// metadata.namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// spec.application (display name).
    #[arg(long)]
    pub application: Option<String>,
    /// spec.window.name.
    #[arg(long)]
    pub window: Option<String>,
    /// An owner: `Name <email>` or `Name <https://webhook>` (repeatable).
    #[arg(long)]
    pub owner: Vec<String>,
    /// Low, Medium, High or Critical.
    #[arg(long)]
    pub criticality: Option<String>,
    /// Prefix length IPv4 peers collapse to.
    #[arg(long, default_value_t = crate::recommend::DEFAULT_PREFIX)]
    pub prefix: u8,
    /// Addresses of one network (same direction and service) that collapse to it.
    #[arg(long, default_value_t = crate::recommend::DEFAULT_COLLAPSE_MIN)]
    pub collapse_min: usize,
    /// Entries whose evidence is below this are listed as comments instead of rules, counted in
    /// the input's measure (flow records; for vRNI conversations: sessions, else bytes, else
    /// conversations). Default: 3 records or sessions, 1 byte or conversation.
    #[arg(long)]
    pub rare_below: Option<u64>,
    /// Turn on the outbound catch-all (outbound rules only matter with it).
    #[arg(long)]
    pub catch_all_outbound: bool,
    /// Write the YAML here instead of stdout.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Crds { write, root } => {
            if write {
                write_crds(&root)?;
            } else {
                print!("{}", api::crds_yaml()?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(args) => plan(&args),
        Command::Recommend(args) => recommend(&args),
        Command::Controller(args) => {
            let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Io {
                path: PathBuf::from("tokio runtime"),
                source,
            })?;
            runtime.block_on(args.run()).map_err(Box::new)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::NsxSim(args) => {
            let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Io {
                path: PathBuf::from("tokio runtime"),
                source,
            })?;
            let mut config = args.sim.config()?;
            config.pending_delete = std::time::Duration::from_millis(args.pending_delete_ms);
            runtime.block_on(crate::nsxsim::run_config(&args.sim, config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::VrniSim(args) => {
            let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Io {
                path: PathBuf::from("tokio runtime"),
                source,
            })?;
            runtime.block_on(args.run()).map_err(|e| Error::Flag {
                flag: "vrni-sim",
                reason: e.to_string(),
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ParseLog {
            samples,
            format,
            received_at,
        } => parse_log(samples, format, received_at.as_deref()),
    }
}

/// Reads every `.yaml`/`.yml` file of a directory (sorted by name), or one file.
pub fn read_manifests(
    path: &std::path::Path,
) -> Result<Vec<(PathBuf, usize, crate::api::manifest::Resource)>, Error> {
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let mut files = Vec::new();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io(path))? {
            let p = entry.map_err(io(path))?.path();
            if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                files.push(p);
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(io(&file))?;
        let resources =
            crate::api::manifest::resources(&text).map_err(|source| Error::Manifest {
                path: file.clone(),
                source,
            })?;
        out.extend(
            resources
                .into_iter()
                .map(|(line, r)| (file.clone(), line, r)),
        );
    }
    Ok(out)
}

fn parse_log(
    samples: usize,
    format: LogFormat,
    received_at: Option<&str>,
) -> Result<ExitCode, Error> {
    let received = match received_at {
        Some(at) => at.parse().map_err(|e| Error::Flag {
            flag: "--received-at",
            reason: format!("{at:?} is not an RFC 3339 instant: {e}"),
        })?,
        None => k8s_openapi::jiff::Timestamp::now(),
    };
    let io = |source| Error::Io {
        path: PathBuf::from("-"),
        source,
    };
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    match format {
        LogFormat::Lines => {
            crate::monitor::parse_log_cli(
                stdin.lock(),
                stdout.lock(),
                stderr.lock(),
                samples,
                received,
            )
            .map_err(io)?;
            Ok(ExitCode::SUCCESS)
        }
        LogFormat::Loginsight => {
            let summary = crate::monitor::parse_loginsight_cli(
                stdin.lock(),
                stdout.lock(),
                stderr.lock(),
                received,
            )
            .map_err(io)?;
            Ok(if summary.delivered() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
    }
}

fn plan(args: &PlanArgs) -> Result<ExitCode, Error> {
    use crate::api::manifest::Resource;
    let now = match &args.at {
        Some(at) => at.parse().map_err(|e| Error::Flag {
            flag: "--at",
            reason: format!("{at:?} is not an RFC 3339 instant: {e}"),
        })?,
        None => k8s_openapi::jiff::Timestamp::now(),
    };
    let identity = crate::plan::Identity::new(&args.cluster)?;
    let mut windows = Vec::new();
    let mut policies = Vec::new();
    for (_, _, r) in read_manifests(&args.path)? {
        match r {
            Resource::Window(w) => windows.push(*w),
            Resource::Policy(p) => policies.push(*p),
        }
    }
    print!(
        "{}",
        crate::plan::report::render(&windows, &policies, &identity, now)?
    );
    let live = if let Some(path) = &args.nsx_snapshot {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Content {
            path: path.clone(),
            reason: format!("not JSON: {e}"),
        })?;
        crate::plan::live::Live::from_snapshot(&value).map_err(|e| Error::Content {
            path: path.clone(),
            reason: e.to_string(),
        })?
    } else if let Some(url) = &args.nsx_url {
        crate::controller::cli::check_nsx_url(url, args.nsx_insecure_allow_http).map_err(
            |reason| Error::Flag {
                flag: "--nsx-url",
                reason,
            },
        )?;
        let client = nsx_client(args, url)?;
        let domains: std::collections::BTreeSet<String> = policies
            .iter()
            .map(|p| p.spec.nsx.domain.clone())
            .chain([crate::api::DEFAULT_DOMAIN.to_string()])
            .collect();
        let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Io {
            path: PathBuf::from("tokio runtime"),
            source,
        })?;
        runtime
            .block_on(read_live(&client, &domains, &identity))
            .map_err(Box::new)?
    } else {
        let code = impact(args, &windows, &policies, &identity, now, None)?;
        return Ok(ExitCode::from(code));
    };
    let review = crate::plan::live::review(&windows, &policies, &identity, now, &live);
    print!("\n{}", review.render());
    let code = impact(args, &windows, &policies, &identity, now, Some(&live))?;
    Ok(ExitCode::from(review.exit_code().max(code)))
}

fn manifests_of(
    path: &std::path::Path,
) -> Result<
    (
        Vec<crate::api::EnforcementWindow>,
        Vec<crate::api::SegmentationPolicy>,
    ),
    Error,
> {
    use crate::api::manifest::Resource;
    let (mut windows, mut policies) = (Vec::new(), Vec::new());
    for (_, _, r) in read_manifests(path)? {
        match r {
            Resource::Window(w) => windows.push(*w),
            Resource::Policy(p) => policies.push(*p),
        }
    }
    Ok((windows, policies))
}

/// `plan --flows` / `--from-cluster`: the impact of the change on recorded traffic at `now`.
/// Before: NSX as given (`live`), else the manifests of --base, else (with --from-cluster) the
/// cluster's policies, else no microseg rule. After: the same with this cluster's objects
/// replaced by what the manifests would have in NSX at `now`. Returns the exit code (2 when
/// the change newly drops a recorded flow).
fn impact(
    args: &PlanArgs,
    windows: &[crate::api::EnforcementWindow],
    policies: &[crate::api::SegmentationPolicy],
    identity: &crate::plan::Identity,
    now: k8s_openapi::jiff::Timestamp,
    live: Option<&crate::plan::live::Live>,
) -> Result<u8, Error> {
    use crate::plan::impact::{Fleet, compare, phase_at};
    let (mut flows, source, cluster) = if let Some(path) = &args.flows {
        let (flows, _, kind) = read_flow_file(path, args.flows_format)?;
        (flows, format!("{} ({kind})", path.display()), None)
    } else if args.from_cluster {
        let cluster = list_cluster_policies(args.kubeconfig.as_deref())?;
        let mut flows = Vec::new();
        for p in &cluster {
            let text = serde_json::to_string(p).map_err(|e| Error::Flag {
                flag: "--from-cluster",
                reason: e.to_string(),
            })?;
            let key = format!(
                "{}/{}",
                p.metadata.namespace.as_deref().unwrap_or_default(),
                p.metadata.name.as_deref().unwrap_or_default()
            );
            let (_, f) =
                crate::recommend::input::policy_flows(&text).map_err(|e| Error::Content {
                    path: PathBuf::from(&key),
                    reason: e.to_string(),
                })?;
            flows.extend(f);
        }
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
        let inventory: Vec<crate::recommend::InventoryVm> = serde_json::from_str(&read_text(path)?)
            .map_err(|e| Error::Content {
                path: path.clone(),
                reason: format!("not a JSON list of {{name, ips, tags}}: {e}"),
            })?;
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

/// Every SegmentationPolicy in the cluster, with status (`plan --from-cluster`).
fn list_cluster_policies(
    kubeconfig: Option<&std::path::Path>,
) -> Result<Vec<crate::api::SegmentationPolicy>, Error> {
    let cluster = |reason: String| Error::Flag {
        flag: "--from-cluster",
        reason,
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Io {
        path: PathBuf::from("tokio runtime"),
        source,
    })?;
    runtime.block_on(async {
        let config = match kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| cluster(format!("{}: {e}", path.display())))?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| cluster(e.to_string()))?
            }
            None => kube::Config::infer()
                .await
                .map_err(|e| cluster(e.to_string()))?,
        };
        let client = kube::Client::try_from(config).map_err(|e| cluster(e.to_string()))?;
        let api: kube::Api<crate::api::SegmentationPolicy> = kube::Api::all(client);
        let list = api
            .list(&Default::default())
            .await
            .map_err(|e| cluster(format!("listing SegmentationPolicies: {e}")))?;
        Ok(list.items)
    })
}

/// The NSX client of `plan --nsx-url`, built as the controller builds its own.
fn nsx_client(args: &PlanArgs, url: &str) -> Result<crate::nsx::Client, Error> {
    use crate::controller::cli::NsxAuth;
    use crate::nsx::{AuthConfig, Credentials};
    let flag = |flag: &'static str| Error::Flag {
        flag,
        reason: "required with --nsx-auth certificate".into(),
    };
    let auth = match args.nsx_auth {
        NsxAuth::Certificate => AuthConfig::Certificate {
            cert_file: args
                .nsx_client_cert
                .clone()
                .ok_or_else(|| flag("--nsx-client-cert"))?,
            key_file: args
                .nsx_client_key
                .clone()
                .ok_or_else(|| flag("--nsx-client-key"))?,
        },
        mode => {
            let creds = Credentials::from_dir_or_env(args.nsx_credentials_dir.as_deref());
            if mode == NsxAuth::Basic {
                AuthConfig::Basic(creds)
            } else {
                AuthConfig::Session(creds)
            }
        }
    };
    let mut config = crate::nsx::ClientConfig::new(url.to_string(), auth);
    config.ca_bundle = args.nsx_ca_file.clone();
    config.insecure_skip_tls_verify = args.nsx_insecure_skip_tls_verify;
    if args.nsx_insecure_skip_tls_verify {
        eprintln!(
            "warning: --nsx-insecure-skip-tls-verify: the NSX Manager's certificate is NOT verified"
        );
    }
    crate::nsx::Client::new(config).map_err(|e| Error::Nsx(Box::new(e)))
}

/// Reads the groups and security policies of `domains` that matter to the review: every group
/// and policy (to find objects in the way), with the rules of those this cluster may own.
async fn read_live(
    client: &crate::nsx::Client,
    domains: &std::collections::BTreeSet<String>,
    identity: &crate::plan::Identity,
) -> Result<crate::plan::live::Live, crate::nsx::Error> {
    use crate::nsx::NsxApi;
    let mut live = crate::plan::live::Live::default();
    let ours = format!("ms_{}_", identity.cluster());
    for domain in domains {
        for g in client.list_groups(domain).await? {
            live.groups.insert((domain.clone(), g.id.clone()), g);
        }
        for p in client.list_policies(domain).await? {
            let owned = p
                .tags
                .iter()
                .any(|t| t.scope == crate::plan::OWNER_CLUSTER && t.tag == identity.cluster());
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

/// Directories that hold the generated CRDs, relative to the repository root.
pub const CRD_DIRS: [&str; 2] = ["crds", "charts/microseg/crds"];

fn write_crds(root: &std::path::Path) -> Result<(), Error> {
    for dir in CRD_DIRS {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        for crd in api::all_crds() {
            let path = dir.join(api::crd_file_name(&crd));
            std::fs::write(&path, api::crd_yaml(&crd)?).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn read_text(path: &std::path::Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_owner(text: &str) -> Result<crate::api::Owner, Error> {
    let bad = || Error::Flag {
        flag: "--owner",
        reason: format!("{text:?} is not `Name <email>` or `Name <https://webhook>`"),
    };
    let (name, rest) = text.split_once('<').ok_or_else(bad)?;
    let address = rest.strip_suffix('>').ok_or_else(bad)?.trim();
    let name = name.trim();
    if name.is_empty() || address.is_empty() {
        return Err(bad());
    }
    let web = address.starts_with("https://") || address.starts_with("http://");
    Ok(crate::api::Owner {
        name: name.to_string(),
        email: (!web).then(|| address.to_string()),
        webhook: web.then(|| address.to_string()),
    })
}

fn read_cluster_policy(key: &str, kubeconfig: Option<&std::path::Path>) -> Result<String, Error> {
    let (ns, name) = key.split_once('/').ok_or_else(|| Error::Flag {
        flag: "--from-cluster",
        reason: format!("{key:?} is not NAMESPACE/NAME"),
    })?;
    let cluster = |reason: String| Error::Flag {
        flag: "--from-cluster",
        reason,
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Io {
        path: PathBuf::from("tokio runtime"),
        source,
    })?;
    runtime.block_on(async {
        let config = match kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| cluster(format!("{}: {e}", path.display())))?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| cluster(e.to_string()))?
            }
            None => kube::Config::infer()
                .await
                .map_err(|e| cluster(e.to_string()))?,
        };
        let client = kube::Client::try_from(config).map_err(|e| cluster(e.to_string()))?;
        let api: kube::Api<crate::api::SegmentationPolicy> = kube::Api::namespaced(client, ns);
        let policy = api
            .get(name)
            .await
            .map_err(|e| cluster(format!("SegmentationPolicy {ns}/{name}: {e}")))?;
        serde_json::to_string(&policy).map_err(|e| cluster(e.to_string()))
    })
}

fn recommend(args: &RecommendArgs) -> Result<ExitCode, Error> {
    use crate::recommend::{Application, input};
    let content = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |e: crate::recommend::RecommendError| Error::Content {
            path,
            reason: e.to_string(),
        }
    };
    // Flows, and the policy they came from when they are monitor flows.
    let app = application(args)?;
    let (flows, source_policy, source) = if let Some(key) = &args.from_cluster {
        let text = read_cluster_policy(key, args.kubeconfig.as_deref())?;
        let (p, f) = input::policy_flows(&text).map_err(content(std::path::Path::new(key)))?;
        (
            f,
            Some(p),
            format!("monitor flows of SegmentationPolicy {key}"),
        )
    } else if let Some(url) = &args.vrni_url {
        let flows = pull_vrni(url, args, &app)?;
        (flows, None, format!("vRNI API {url}"))
    } else if let Some(path) = &args.flows {
        let (flows, policy, kind) = read_flow_file(path, args.format)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        (flows, policy, format!("file {name} ({kind})"))
    } else {
        return Err(Error::Flag {
            flag: "--flows",
            reason: "give --flows FILE, --vrni-url URL or --from-cluster NAMESPACE/NAME".into(),
        });
    };

    let mut app = app;
    if app.is_empty()
        && let Some(p) = &source_policy
    {
        app = Application::from_members(&p.spec.members);
    }
    recommend_from(args, flows, source_policy, source, app)
}

/// Reads a flow file in one of the formats `recommend` reads: the flows, the policy they came
/// from (monitor flows), and the format's name.
#[allow(clippy::type_complexity)]
fn read_flow_file(
    path: &std::path::Path,
    format: FlowFormat,
) -> Result<
    (
        Vec<crate::recommend::Observation>,
        Option<crate::api::SegmentationPolicy>,
        &'static str,
    ),
    Error,
> {
    use crate::recommend::input;
    let content = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |e: crate::recommend::RecommendError| Error::Content {
            path,
            reason: e.to_string(),
        }
    };
    let text = read_text(path)?;
    let format = match format {
        FlowFormat::Auto => match path.extension().and_then(|e| e.to_str()) {
            Some("json") => FlowFormat::Json,
            Some("csv") if input::is_vrni_csv(&text) => FlowFormat::VrniCsv,
            Some("csv") => FlowFormat::Csv,
            Some("yaml" | "yml") => FlowFormat::Policy,
            _ => FlowFormat::Dfw,
        },
        f => f,
    };
    let (flows, policy, kind) = match format {
        FlowFormat::Json => (
            input::vrni_json(&text).map_err(content(path))?,
            None,
            "vRNI Flow JSON",
        ),
        FlowFormat::Csv => (
            input::csv(&text).map_err(content(path))?,
            None,
            "microseg CSV",
        ),
        FlowFormat::VrniCsv => (
            input::vrni_csv(&text).map_err(content(path))?,
            None,
            "vRNI UI flow export, CSV",
        ),
        FlowFormat::Policy => {
            let (p, f) = input::policy_flows(&text).map_err(content(path))?;
            (f, Some(p), "SegmentationPolicy monitor flows")
        }
        FlowFormat::Dfw | FlowFormat::Auto => {
            let read = input::dfw_log(&text);
            if read.flows.is_empty() {
                let why = match read.unparsed.first() {
                    Some((line, reason)) => format!(
                        "not a flow export: no DFW log line in it ({} lines do not parse; line {line}: {reason}); \
                             give --format json, csv or vrni-csv for exports",
                        read.unparsed.len()
                    ),
                    None => "empty: no flow in it".into(),
                };
                return Err(Error::Content {
                    path: path.to_path_buf(),
                    reason: why,
                });
            }
            if let Some((line, reason)) = read.unparsed.first() {
                eprintln!(
                    "{}: {} lines are not DFW log lines and were skipped (first: line {line}: {reason})",
                    path.display(),
                    read.unparsed.len()
                );
            }
            (read.flows, None, "DFW log")
        }
    };
    if flows.is_empty() && format != FlowFormat::Policy {
        return Err(Error::Content {
            path: path.to_path_buf(),
            reason: "no flow in it".into(),
        });
    }
    Ok((flows, policy, kind))
}

/// Pulls the application's flows from vRNI (`--vrni-url`).
fn pull_vrni(
    url: &str,
    args: &RecommendArgs,
    app: &crate::recommend::Application,
) -> Result<Vec<crate::recommend::Observation>, Error> {
    use crate::vrni;
    let vrni_err = |e: vrni::Error| Error::Content {
        path: PathBuf::from(url),
        reason: e.to_string(),
    };
    let since = vrni::parse_since(&args.since).map_err(|reason| Error::Flag {
        flag: "--since",
        reason,
    })?;
    let domain = match &args.vrni_ldap_domain {
        Some(d) => vrni::Domain::Ldap(d.clone()),
        None => vrni::Domain::Local,
    };
    let credentials =
        vrni::Credentials::load(args.vrni_credentials_dir.as_deref(), domain).map_err(vrni_err)?;
    let mut config = vrni::Config::new(url, credentials);
    config.ca_file = args.vrni_ca_file.clone();
    config.insecure_skip_tls_verify = args.vrni_insecure_skip_tls_verify;
    config.page_size = args.vrni_page_size.max(1);
    config.min_interval = std::time::Duration::from_millis(args.vrni_min_interval_ms);
    let end = jiff::Timestamp::now().as_second();
    let start = end
        - i64::try_from(since.as_secs())
            .unwrap_or(i64::MAX / 2)
            .min(end);
    let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Io {
        path: PathBuf::from("tokio runtime"),
        source,
    })?;
    let (answer, stats) = runtime
        .block_on(vrni::pull(config, app, start, end))
        .map_err(vrni_err)?;
    let flows =
        crate::recommend::input::vrni_json(&answer.to_string()).map_err(|e| Error::Content {
            path: PathBuf::from(url),
            reason: e.to_string(),
        })?;
    eprintln!(
        "vRNI {url}: {} flows in the last {} ({} search pages, {} bulk fetches, {} throttled calls waited out, {} logins)",
        flows.len(),
        args.since,
        stats.pages,
        stats.fetches,
        stats.throttled,
        stats.logins
    );
    if flows.is_empty() {
        return Err(Error::Content {
            path: PathBuf::from(url),
            reason: format!(
                "vRNI has no flow of the application in the last {}: check --app-ip/--app-name/--app-tag",
                args.since
            ),
        });
    }
    Ok(flows)
}

/// The application as the flags describe it.
fn application(args: &RecommendArgs) -> Result<crate::recommend::Application, Error> {
    let mut app = crate::recommend::Application::default();
    for t in &args.app_tag {
        let (scope, tag) = match t.split_once('|') {
            Some((s, t)) => (Some(s.to_string()).filter(|s| !s.is_empty()), t.to_string()),
            None => (None, t.clone()),
        };
        app.tags.push(crate::api::VmTag { scope, tag });
    }
    for n in &args.app_name {
        app.names.push(match n.strip_suffix('*') {
            Some(prefix) => crate::api::VmName {
                equals: None,
                starts_with: Some(prefix.to_string()),
            },
            None => crate::api::VmName {
                equals: Some(n.clone()),
                starts_with: None,
            },
        });
    }
    for ip in &args.app_ip {
        app.networks
            .push(crate::recommend::parse_net(ip).ok_or_else(|| Error::Flag {
                flag: "--app-ip",
                reason: format!("{ip:?} is not an IP address or CIDR block"),
            })?);
    }
    Ok(app)
}

fn recommend_from(
    args: &RecommendArgs,
    flows: Vec<crate::recommend::Observation>,
    source_policy: Option<crate::api::SegmentationPolicy>,
    source: String,
    app: crate::recommend::Application,
) -> Result<ExitCode, Error> {
    use crate::api::manifest::Resource;
    use crate::recommend::Options;

    let inventory = match &args.inventory {
        Some(path) => serde_json::from_str(&read_text(path)?).map_err(|e| Error::Content {
            path: path.clone(),
            reason: format!("not a JSON list of {{name, ips, tags}}: {e}"),
        })?,
        None => Vec::new(),
    };
    let known: Vec<crate::api::SegmentationPolicy> = match &args.policies {
        Some(dir) => read_manifests(dir)?
            .into_iter()
            .filter_map(|(_, _, r)| match r {
                Resource::Policy(p) => Some(*p),
                Resource::Window(_) => None,
            })
            .collect(),
        None => Vec::new(),
    };

    let from = |f: fn(&crate::api::SegmentationPolicy) -> Option<String>| {
        source_policy.as_ref().and_then(f)
    };
    let required = |value: Option<String>, flag: &'static str| {
        value.ok_or_else(|| Error::Flag {
            flag,
            reason: "required (unless the flows come from a policy)".into(),
        })
    };
    let name = required(
        args.name
            .clone()
            .or_else(|| from(|p| p.metadata.name.clone())),
        "--name",
    )?;
    let window = required(
        args.window
            .clone()
            .or_else(|| from(|p| Some(p.spec.window.name.clone()))),
        "--window",
    )?;
    let namespace = args
        .namespace
        .clone()
        .or_else(|| from(|p| p.metadata.namespace.clone()))
        .unwrap_or_else(|| "default".into());
    let mut owners = args
        .owner
        .iter()
        .map(|o| parse_owner(o))
        .collect::<Result<Vec<_>, _>>()?;
    if owners.is_empty()
        && let Some(p) = &source_policy
    {
        owners = p.spec.owners.clone();
    }
    if owners.is_empty() {
        return Err(Error::Flag {
            flag: "--owner",
            reason: "at least one owner is required (`Name <email>`)".into(),
        });
    }
    let mut opts = Options::new(&name, &namespace, &window, owners);
    opts.application = args
        .application
        .clone()
        .or_else(|| from(|p| p.spec.application.clone()));
    opts.criticality = match &args.criticality {
        Some(c) => serde_json::from_value(serde_json::Value::String(c.clone())).map_err(|_| {
            Error::Flag {
                flag: "--criticality",
                reason: format!("{c:?} is not Low, Medium, High or Critical"),
            }
        })?,
        None => source_policy
            .as_ref()
            .map(|p| p.spec.criticality)
            .unwrap_or(crate::api::Criticality::Medium),
    };
    opts.prefix = args.prefix;
    opts.collapse_min = args.collapse_min;
    opts.rare_below = args.rare_below;
    opts.source = source;
    opts.outbound_catch_all = args.catch_all_outbound
        || source_policy
            .as_ref()
            .is_some_and(|p| p.spec.catch_all.outbound);
    if let Some(p) = &source_policy {
        opts.keep_rules = p.spec.rules.clone();
    }
    let r = crate::recommend::recommend(&flows, &app, &inventory, &known, &opts)?;
    match &args.output {
        Some(path) => std::fs::write(path, &r.yaml).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?,
        None => print!("{}", r.yaml),
    }
    eprintln!(
        "{} rules from {} flow records ({} touch no member of the application), evidence in {}, {} rare entries left as comments",
        r.policy.spec.rules.len(),
        r.flows,
        r.ignored,
        r.measure.unit(),
        r.rare.len()
    );
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    Ok(ExitCode::SUCCESS)
}
