//! The `roost-board` binary: flags (or `ROOST_BOARD_*` variables) to an [`AgentConfig`], logs to
//! stderr, runs the agent until SIGTERM/SIGINT, and on a `reset` request restarts itself (a new
//! process image, the same arguments) or, with `--reset-exits`, exits with status 75 for a
//! supervisor to restart it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use roost_board::{AgentConfig, AgentTls, Exit};
use tracing_subscriber::EnvFilter;

/// The exit status after a reset with `--reset-exits` (EX_TEMPFAIL: "try again").
const RESET_EXIT: u8 = 75;

#[derive(Debug, Parser)]
#[command(
    name = "roost-board",
    version,
    about = "Roost board agent: runs code and receives files from Roost"
)]
struct Args {
    /// The board name (also its MQTT client id): ASCII letters, digits, '-', '_', '.'.
    #[arg(long, env = "ROOST_BOARD_NAME")]
    name: String,
    /// Roost's MQTT address, HOST:PORT.
    #[arg(long, env = "ROOST_BOARD_SERVER", default_value = "127.0.0.1:1883")]
    server: String,
    /// The directory every board path is relative to (created if missing).
    #[arg(long, env = "ROOST_BOARD_ROOT", default_value = ".")]
    root: PathBuf,
    /// The interpreter `exec` code is given to, split on whitespace; the code is its last argument.
    #[arg(long, env = "ROOST_BOARD_INTERPRETER", default_value = "sh -c")]
    interpreter: String,
    /// The largest upload accepted, in bytes.
    #[arg(long, env = "ROOST_BOARD_MAX_UPLOAD_BYTES")]
    max_upload_bytes: Option<u64>,
    /// The largest command message accepted, in bytes (announced to Roost, which sizes upload
    /// chunks to fit).
    #[arg(long, env = "ROOST_BOARD_MAX_PAYLOAD")]
    max_payload: Option<u64>,
    /// MQTT username (for a listener that requires credentials).
    #[arg(long, env = "ROOST_BOARD_USERNAME")]
    username: Option<String>,
    /// MQTT password.
    #[arg(long, env = "ROOST_BOARD_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Connect over TLS, trusting the CA in this PEM file (`roost tls init` writes ca.pem);
    /// --server then names Roost's TLS listener (`mqtt.tls.listen`).
    #[arg(long, env = "ROOST_BOARD_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// With --ca-file: the board's certificate (PEM), for a listener that asks for client
    /// certificates (its common name is the board's name; `roost tls device NAME`).
    #[arg(long, env = "ROOST_BOARD_CERT_FILE", requires = "key_file", requires = "ca_file")]
    cert_file: Option<PathBuf>,
    /// The board certificate's private key (PEM).
    #[arg(long, env = "ROOST_BOARD_KEY_FILE", requires = "cert_file")]
    key_file: Option<PathBuf>,
    /// MQTT keepalive, in seconds.
    #[arg(long, env = "ROOST_BOARD_KEEPALIVE", default_value_t = 10)]
    keepalive: u64,
    /// Where a rename is remembered across restarts (default: none, a rename lasts until the
    /// agent restarts).
    #[arg(long, env = "ROOST_BOARD_STATE_FILE")]
    state_file: Option<PathBuf>,
    /// On `reset`, exit with status 75 instead of restarting in place.
    #[arg(long, env = "ROOST_BOARD_RESET_EXITS")]
    reset_exits: bool,
}

fn main() -> std::process::ExitCode {
    let filter = EnvFilter::try_from_env("ROOST_BOARD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match run() {
        Ok(Some(code)) => std::process::ExitCode::from(code),
        Ok(None) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<Option<u8>> {
    let args = Args::parse();
    let (host, port) = args
        .server
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_owned(), p.parse::<u16>().ok()?)))
        .with_context(|| format!("--server {:?} is not HOST:PORT", args.server))?;
    let interpreter: Vec<String> = args.interpreter.split_whitespace().map(String::from).collect();
    if interpreter.is_empty() {
        bail!("--interpreter is empty");
    }
    let mut cfg = AgentConfig::new(&args.name, &host, port, args.root.clone());
    cfg.interpreter = interpreter;
    cfg.max_upload_bytes = args.max_upload_bytes;
    cfg.max_payload = args.max_payload;
    cfg.username = args.username.clone();
    cfg.password = args.password.clone();
    cfg.keep_alive = Duration::from_secs(args.keepalive.max(1));
    cfg.state_file = args.state_file.clone();
    cfg.tls = args
        .ca_file
        .clone()
        .map(|ca| AgentTls { ca, client: args.cert_file.clone().zip(args.key_file.clone()) });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let exit = runtime.block_on(roost_board::run(cfg, stop_signal()))?;
    drop(runtime);
    match exit {
        Exit::Stopped => Ok(None),
        Exit::Reset if args.reset_exits => Ok(Some(RESET_EXIT)),
        Exit::Reset => {
            use std::os::unix::process::CommandExt;
            tracing::info!("reset: restarting");
            let exe = std::env::current_exe().context("finding the agent's own executable")?;
            let err = std::process::Command::new(exe).args(std::env::args_os().skip(1)).exec();
            Err(err).context("restarting the agent")
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
