//! The `roost` binary: parses the command line, sets up logging, runs the command, and turns
//! errors into a message on stderr and a non-zero exit.

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = roost::cli::Cli::parse();
    // `roost export` writes its data to stdout and says nothing else unless something fails.
    let default = match cli.command {
        roost::cli::Command::Export(_) => "warn",
        _ => "info,rmqtt=warn,rmqtt_net=warn,actix_server=warn,rustls=error",
    };
    let filter = EnvFilter::try_from_env("ROOST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match roost::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
