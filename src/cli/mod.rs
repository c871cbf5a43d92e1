//! Command-line interface of the `microseg` binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::api;
use crate::api::{EnforcementWindow, SegmentationPolicy};

pub mod args;
pub mod controller;
pub mod plan;
pub mod recommend;

pub use plan::PlanArgs;
pub use recommend::{FlowFormat, RecommendArgs};

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
    Controller(#[from] Box<controller::StartError>),
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
    /// No NSX client could be built from the flags.
    #[error(transparent)]
    NsxClient(#[from] args::NsxClientError),
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
    Controller(Box<controller::ControllerArgs>),
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

/// Runs a parsed command line on one tokio runtime.
pub fn run(cli: Cli) -> Result<ExitCode, Error> {
    let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Io {
        path: PathBuf::from("tokio runtime"),
        source,
    })?;
    runtime.block_on(dispatch(cli.command))
}

async fn dispatch(command: Command) -> Result<ExitCode, Error> {
    match command {
        Command::Crds { write, root } => {
            if write {
                write_crds(&root)?;
            } else {
                print!("{}", api::crds_yaml()?);
            }
        }
        Command::Plan(args) => return plan::run(&args).await,
        Command::Recommend(args) => return recommend::run(&args).await,
        Command::Controller(args) => args.run().await.map_err(Box::new)?,
        Command::NsxSim(args) => {
            let mut config = args.sim.config()?;
            config.pending_delete = std::time::Duration::from_millis(args.pending_delete_ms);
            crate::nsxsim::run_config(&args.sim, config).await?;
        }
        Command::VrniSim(args) => args.run().await.map_err(|e| Error::Flag {
            flag: "vrni-sim",
            reason: e.to_string(),
        })?,
        Command::ParseLog {
            samples,
            format,
            received_at,
        } => return parse_log(samples, format, received_at.as_deref()),
    }
    Ok(ExitCode::SUCCESS)
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

pub fn read_text(path: &std::path::Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The EnforcementWindows and SegmentationPolicies of a directory (or file) of manifests.
pub fn manifests_of(
    path: &std::path::Path,
) -> Result<(Vec<EnforcementWindow>, Vec<SegmentationPolicy>), Error> {
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
