//! The `microseg` binary: sets up logging, parses the command line and hands over to the
//! library.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc returns freed memory to the system: the controller's bursts (a batched write, the
/// read-back listing of a wave) leave no lasting high-water mark, as glibc's arenas do.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let json = std::env::var("MICROSEG_LOG_FORMAT").is_ok_and(|f| f == "json");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    no_huge_pages();
    let cli = microseg::cli::Cli::parse();
    match microseg::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// No transparent huge pages for this process. mimalloc asks for them on its arenas, and where
/// the kernel grants them (`madvise` or `always` in `/sys/kernel/mm/transparent_hugepage`) a
/// 2 MiB page stays resident while any of its 4 KiB is in use and memory freed inside it is not
/// returned: at 1,000 applications a third of the controller's resident memory after a wave of
/// flips was huge pages (`scripts/bench-controller.sh` prints it). A kernel that refuses keeps
/// the default, which is only memory.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!(error = %e, "transparent huge pages stay enabled for this process");
    }
}
