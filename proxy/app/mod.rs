//! The `ddlgate` command: running the proxy (with signals and reload), and
//! the `demo` and `lint` subcommands.

mod catalog;
mod demo;
mod demo_load;
mod lint;
mod run;

use std::process::ExitCode;

use clap::Parser;

use crate::config::cli::{Cli, Command};

/// Exit code for configuration problems.
pub const EXIT_CONFIG: u8 = 2;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Demo { listen }) => demo::run(&listen),
        Some(Command::Lint(args)) => lint::run(cli.proxy.config.as_deref(), args),
        None => run::run(cli.proxy),
    }
}

fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
}
