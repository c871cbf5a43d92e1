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
    /// Run the NSX Manager simulator on a loopback address until interrupted.
    NsxSim(crate::nsxsim::Args),
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
        Command::NsxSim(args) => {
            let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Io {
                path: PathBuf::from("tokio runtime"),
                source,
            })?;
            runtime.block_on(crate::nsxsim::run(args))?;
            Ok(ExitCode::SUCCESS)
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
