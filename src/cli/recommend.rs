//! `microseg recommend`: the IO shell around the pure recommender. It reads the flows (a file,
//! vRNI or the cluster), the inventory and the policies in Git, turns the flags into
//! [`Options`], and writes the YAML. Everything it decides is in the pure [`crate::recommend`]
//! (which the purity test covers whole).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::api::SegmentationPolicy;
use crate::api::manifest::Resource;
use crate::cli::Error;
use crate::cli::args::KubeArgs;
use crate::recommend::{Application, InventoryVm, Observation, Options, RecommendError, input};

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
    /// The cluster of --from-cluster.
    #[command(flatten)]
    pub kube: KubeArgs,
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

/// Flows, the policy they came from (monitor flows), and a description of their source.
type Flows = (Vec<Observation>, Option<SegmentationPolicy>, String);

/// Runs `microseg recommend`: reads the flows, recommends, writes the YAML (stdout or
/// `--output`) and a summary on stderr.
pub async fn run(args: &RecommendArgs) -> Result<ExitCode, Error> {
    let app = application(args)?;
    let (flows, source_policy, source) = flows(args, &app).await?;
    let app = match &source_policy {
        Some(p) if app.is_empty() => Application::from_members(&p.spec.members),
        _ => app,
    };
    let inventory = match &args.inventory {
        Some(path) => read_inventory(path)?,
        None => Vec::new(),
    };
    let known: Vec<SegmentationPolicy> = match &args.policies {
        Some(dir) => crate::cli::read_manifests(dir)?
            .into_iter()
            .filter_map(|(_, _, r)| match r {
                Resource::Policy(p) => Some(*p),
                Resource::Window(_) => None,
            })
            .collect(),
        None => Vec::new(),
    };
    let opts = options(args, source_policy.as_ref(), source)?;
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

/// The flows the flags name: the cluster's policy, vRNI, or a file.
async fn flows(args: &RecommendArgs, app: &Application) -> Result<Flows, Error> {
    if let Some(key) = &args.from_cluster {
        let text = read_cluster_policy(key, &args.kube).await?;
        let (p, f) = input::policy_flows(&text).map_err(content(Path::new(key)))?;
        Ok((
            f,
            Some(p),
            format!("monitor flows of SegmentationPolicy {key}"),
        ))
    } else if let Some(url) = &args.vrni_url {
        let flows = pull_vrni(url, args, app).await?;
        Ok((flows, None, format!("vRNI API {url}")))
    } else if let Some(path) = &args.flows {
        let (flows, policy, kind) = read_flow_file(path, args.format)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Ok((flows, policy, format!("file {name} ({kind})")))
    } else {
        Err(Error::Flag {
            flag: "--flows",
            reason: "give --flows FILE, --vrni-url URL or --from-cluster NAMESPACE/NAME".into(),
        })
    }
}

/// A content error of the file (or source) at `path`.
fn content(path: &Path) -> impl Fn(RecommendError) -> Error + use<> {
    let path = path.to_path_buf();
    move |e| Error::Content {
        path: path.clone(),
        reason: e.to_string(),
    }
}

/// Reads a VM inventory: a JSON list of `{name, ips, tags}`.
pub fn read_inventory(path: &Path) -> Result<Vec<InventoryVm>, Error> {
    serde_json::from_str(&crate::cli::read_text(path)?).map_err(|e| Error::Content {
        path: path.to_path_buf(),
        reason: format!("not a JSON list of {{name, ips, tags}}: {e}"),
    })
}

/// Reads a flow file in one of the formats `recommend` reads: the flows, the policy they came
/// from (monitor flows), and the format's name.
pub fn read_flow_file(
    path: &Path,
    format: FlowFormat,
) -> Result<(Vec<Observation>, Option<SegmentationPolicy>, &'static str), Error> {
    let text = crate::cli::read_text(path)?;
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
        FlowFormat::Dfw | FlowFormat::Auto => (dfw_flows(path, &text)?, None, "DFW log"),
    };
    if flows.is_empty() && format != FlowFormat::Policy {
        return Err(Error::Content {
            path: path.to_path_buf(),
            reason: "no flow in it".into(),
        });
    }
    Ok((flows, policy, kind))
}

/// The flows of a DFW log file; an error when no line parses, a note on stderr when some do
/// not.
fn dfw_flows(path: &Path, text: &str) -> Result<Vec<Observation>, Error> {
    let read = input::dfw_log(text);
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
    Ok(read.flows)
}

/// The policy `NAMESPACE/NAME` from the cluster, as JSON (`recommend --from-cluster`).
async fn read_cluster_policy(key: &str, kube: &KubeArgs) -> Result<String, Error> {
    let cluster = |reason: String| Error::Flag {
        flag: "--from-cluster",
        reason,
    };
    let (ns, name) = key
        .split_once('/')
        .ok_or_else(|| cluster(format!("{key:?} is not NAMESPACE/NAME")))?;
    let client = kube.client().await.map_err(cluster)?;
    let api: kube::Api<SegmentationPolicy> = kube::Api::namespaced(client, ns);
    let policy = api
        .get(name)
        .await
        .map_err(|e| cluster(format!("SegmentationPolicy {ns}/{name}: {e}")))?;
    serde_json::to_string(&policy).map_err(|e| cluster(e.to_string()))
}

/// Pulls the application's flows from vRNI (`--vrni-url`).
async fn pull_vrni(
    url: &str,
    args: &RecommendArgs,
    app: &Application,
) -> Result<Vec<Observation>, Error> {
    use crate::vrni;
    let at_url = |reason: String| Error::Content {
        path: PathBuf::from(url),
        reason,
    };
    let since = vrni::parse_since(&args.since).map_err(|reason| Error::Flag {
        flag: "--since",
        reason,
    })?;
    let domain = match &args.vrni_ldap_domain {
        Some(d) => vrni::Domain::Ldap(d.clone()),
        None => vrni::Domain::Local,
    };
    let credentials = vrni::Credentials::load(args.vrni_credentials_dir.as_deref(), domain)
        .map_err(|e| at_url(e.to_string()))?;
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
    let (answer, stats) = vrni::pull(config, app, start, end)
        .await
        .map_err(|e| at_url(e.to_string()))?;
    let flows = input::vrni_json(&answer.to_string()).map_err(|e| at_url(e.to_string()))?;
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
        return Err(at_url(format!(
            "vRNI has no flow of the application in the last {}: check --app-ip/--app-name/--app-tag",
            args.since
        )));
    }
    Ok(flows)
}

/// The application as the flags describe it.
fn application(args: &RecommendArgs) -> Result<Application, Error> {
    let mut app = Application::default();
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

/// The recommender's options: the flags, else what the source policy says, else defaults.
fn options(
    args: &RecommendArgs,
    source_policy: Option<&SegmentationPolicy>,
    source: String,
) -> Result<Options, Error> {
    let from = |f: fn(&SegmentationPolicy) -> Option<String>| source_policy.and_then(f);
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
    let mut opts = Options::new(&name, &namespace, &window, owners(args, source_policy)?);
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
            .map(|p| p.spec.criticality)
            .unwrap_or(crate::api::Criticality::Medium),
    };
    opts.prefix = args.prefix;
    opts.collapse_min = args.collapse_min;
    opts.rare_below = args.rare_below;
    opts.source = source;
    opts.outbound_catch_all =
        args.catch_all_outbound || source_policy.is_some_and(|p| p.spec.catch_all.outbound);
    if let Some(p) = source_policy {
        opts.keep_rules = p.spec.rules.clone();
    }
    Ok(opts)
}

/// The owners: `--owner` flags, else the source policy's; at least one.
fn owners(
    args: &RecommendArgs,
    source_policy: Option<&SegmentationPolicy>,
) -> Result<Vec<crate::api::Owner>, Error> {
    let mut owners = args
        .owner
        .iter()
        .map(|o| parse_owner(o))
        .collect::<Result<Vec<_>, _>>()?;
    if owners.is_empty()
        && let Some(p) = source_policy
    {
        owners = p.spec.owners.clone();
    }
    if owners.is_empty() {
        return Err(Error::Flag {
            flag: "--owner",
            reason: "at least one owner is required (`Name <email>`)".into(),
        });
    }
    Ok(owners)
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
