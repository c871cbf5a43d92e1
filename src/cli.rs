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
    Ok(ExitCode::SUCCESS)
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
