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
    NsxSim(crate::nsxsim::Args),
    /// Show what microseg would write to NSX for a directory of manifests, per phase.
    Plan(PlanArgs),
    /// Parse DFW packet-log lines from stdin: one JSON object per line on stdout, a summary of
    /// unparsed lines on stderr.
    ParseLog {
        /// How many unparsed lines to quote in the summary.
        #[arg(long, default_value_t = 10)]
        samples: usize,
    },
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
            runtime.block_on(crate::nsxsim::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ParseLog { samples } => {
            let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
            crate::monitor::parse_log_cli(stdin.lock(), stdout.lock(), stderr.lock(), samples)
                .map_err(|source| Error::Io {
                    path: PathBuf::from("-"),
                    source,
                })?;
            Ok(ExitCode::SUCCESS)
        }
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
        return Ok(ExitCode::SUCCESS);
    };
    let review = crate::plan::live::review(&windows, &policies, &identity, now, &live);
    print!("\n{}", review.render());
    Ok(ExitCode::from(review.exit_code()))
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
            let creds = match &args.nsx_credentials_dir {
                Some(dir) => Credentials {
                    username_file: Some(dir.join("username")),
                    password_file: Some(dir.join("password")),
                    ..Default::default()
                },
                None => Credentials {
                    username_env: Some("NSX_USERNAME".into()),
                    password_env: Some("NSX_PASSWORD".into()),
                    ..Default::default()
                },
            };
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
