//! `vswitchd`: the switch daemon.
//!
//! Parses arguments, loads and validates the configuration, starts the control loop and the
//! workers (see [`vswitch::control::daemon`]), and nothing else.
//!
//! ```text
//! vswitchd --config /etc/vswitch/vswitchd.toml         run
//! vswitchd --config FILE --check                        validate the file and exit
//! ```
//!
//! Signals: SIGTERM or SIGINT stop the switch cleanly (every XDP program detached, interfaces
//! left as found); SIGHUP reloads the configuration file, applying port changes live and
//! refusing an invalid file whole (the running configuration stays).
//!
//! Exit codes: 0 stopped cleanly (or `--check` passed); 1 a worker failed while running;
//! 2 bad command line; 3 invalid configuration; 4 set-up failed (an interface or core named in
//! the configuration is missing, AF_XDP refused, not root).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing::error;
use vswitch::control::config::Config;
use vswitch::control::daemon::{Daemon, DaemonError};

#[derive(Parser, Debug)]
#[command(name = "vswitchd", version, about = "Userspace poll-mode virtual switch daemon")]
struct Args {
    /// Configuration file (TOML).
    #[arg(long, short, default_value = "/etc/vswitch/vswitchd.toml")]
    config: PathBuf,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
    /// Log format.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    /// Log filter (tracing-subscriber syntax); RUST_LOG overrides it.
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if args.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn run(args: &Args) -> Result<(), DaemonError> {
    let cfg = Config::load(&args.config)?;
    if args.check {
        println!(
            "{}: valid ({} ports, {} workers)",
            args.config.display(),
            cfg.ports.len(),
            cfg.workers.len()
        );
        return Ok(());
    }
    let path = args.config.clone();
    match cfg.batch_size() {
        32 => Daemon::<32>::start(cfg, path)?.run(),
        64 => Daemon::<64>::start(cfg, path)?.run(),
        128 => Daemon::<128>::start(cfg, path)?.run(),
        _ => Daemon::<256>::start(cfg, path)?.run(),
    }
}
