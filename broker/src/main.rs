//! The `roost` binary: parses the command line, sets up logging, runs the command, and turns
//! errors into a message on stderr and a non-zero exit.

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = roost::cli::Cli::parse();
    let filter = EnvFilter::try_from_env("ROOST_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,rmqtt=warn,rmqtt_net=warn,actix_server=warn,rustls=error"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match roost::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
