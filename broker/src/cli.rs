//! The `roost` command line: `serve`, `status`, `stop`, `config check`, `export` (in
//! `export::cli`), `grafana` (in `grafana`), `processor ...` (in `processors::cli`), `board ...`
//! (in `boards::cli`) and `device ...` (in `devices::cli`). Client commands find the running
//! server through the data directory (its token and `runtime.json`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::config::{Overrides, Settings};
use crate::datadir;
use crate::output::{human_bytes, human_duration, table};
use crate::stats::Status;

#[derive(Debug, Parser)]
#[command(name = "roost", version, about = "Roost: telemetry and commands for fleets of small devices")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// A TOML config file (layered over the built-in defaults, under ROOST__* variables).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data directory (setting data_dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: embedded MQTT broker, pipelines, sinks and the admin API.
    Serve {
        /// The MQTT listen address (setting mqtt.listen).
        #[arg(long, value_name = "ADDR")]
        mqtt_listen: Option<String>,
        /// The admin API listen address (setting api.listen).
        #[arg(long, value_name = "ADDR")]
        api_listen: Option<String>,
    },
    /// Show the running server's listeners and counters.
    Status {
        /// Print the status document as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop the running server (SIGTERM) and wait until it has flushed and exited.
    Stop {
        /// Seconds to wait for it to exit.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Dead letters: what could not be written or mapped (list, replay, delete).
    Deadletter {
        #[command(subcommand)]
        command: crate::deadletter::cli::DeadLetterCommand,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Processors: upload WebAssembly modules, list, show, test, roll back, delete.
    Processor {
        #[command(subcommand)]
        command: crate::processors::cli::ProcessorCommand,
    },
    /// Boards: list, run code, upload files, rename (names are hostlists: `b-[1-3],lab.pi4`).
    Board {
        #[command(subcommand)]
        command: crate::boards::cli::BoardCommand,
    },
    /// Devices and their MQTT credentials: add, list, show, rotate, revoke.
    Device {
        #[command(subcommand)]
        command: crate::devices::cli::DeviceCommand,
    },
    /// Grafana provisioning for this configuration: datasources, dashboards, a scrape job.
    Grafana(crate::grafana::GrafanaArgs),
    /// Export a sink's records as CSV, JSON lines or a zip, reading its database directly.
    Export(crate::export::cli::ExportArgs),
    /// Certificates for TLS: a private CA and server certificate, device certificates.
    Tls {
        #[command(subcommand)]
        command: crate::tls::TlsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective settings, secrets masked.
    Check,
}

impl Cli {
    fn settings(&self, overrides: Overrides) -> Result<Settings> {
        let overrides = Overrides { data_dir: self.global.data_dir.clone(), ..overrides };
        Ok(Settings::load(self.global.config.as_deref(), &overrides)?)
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Serve { mqtt_listen, api_listen } => {
            let settings = cli.settings(Overrides {
                mqtt_listen: mqtt_listen.clone(),
                api_listen: api_listen.clone(),
                ..Overrides::default()
            })?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(crate::server::serve(settings, stop_signal()))
        }
        Command::Status { json } => {
            let settings = cli.settings(Overrides::default())?;
            let status = fetch_status(&settings)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render_status(&status));
            }
            Ok(())
        }
        Command::Stop { timeout } => {
            let settings = cli.settings(Overrides::default())?;
            stop(&settings.data_dir, Duration::from_secs(*timeout))
        }
        Command::Deadletter { command } => {
            let settings = cli.settings(Overrides::default())?;
            crate::deadletter::cli::run(command, &settings)
        }
        Command::Config { command: ConfigCommand::Check } => {
            let settings = cli.settings(Overrides::default())?;
            println!("# configuration is valid; effective settings (secrets masked):");
            print!("{}", settings.redacted());
            Ok(())
        }
        Command::Processor { command } => {
            let settings = cli.settings(Overrides::default())?;
            crate::processors::cli::run(command, &settings)
        }
        Command::Board { command } => {
            let settings = cli.settings(Overrides::default())?;
            crate::boards::cli::run(command, &settings)
        }
        Command::Device { command } => {
            let settings = cli.settings(Overrides::default())?;
            crate::devices::cli::run(command, &settings)
        }
        Command::Grafana(args) => {
            let settings = cli.settings(Overrides::default())?;
            crate::grafana::run(args, &settings)
        }
        Command::Export(args) => {
            let settings = cli.settings(Overrides::default())?;
            crate::export::cli::run(args, &settings)
        }
        Command::Tls { command } => crate::tls::run(command),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; stop roost with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

fn fetch_status(settings: &Settings) -> Result<Status> {
    let client = crate::client::ApiClient::for_settings(settings)?;
    crate::client::block_on(client.get("/status"))?
}

/// The status as the table `roost status` prints.
pub fn render_status(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "roost {}  pid {}  up {}", s.version, s.pid, human_duration(s.uptime_secs));
    let _ = writeln!(out, "mqtt {}  api {}", s.listeners.mqtt, s.listeners.api);
    let _ = writeln!(
        out,
        "connections {}  messages in {}  unrouted {}  refused {}",
        s.connections, s.messages_in, s.messages_unrouted, s.messages_refused
    );
    let d = &s.dead_letters;
    let _ = writeln!(out, "dead letters stored {}  dropped {}  replayed {}", d.stored, d.dropped, d.replayed);
    let mut rows = vec![vec![
        "PIPELINE".into(),
        "TOPICS".into(),
        "PROCESSOR".into(),
        "MESSAGES".into(),
        "RECORDS".into(),
        "ERRORS".into(),
        "SINKS".into(),
    ]];
    for p in &s.pipelines {
        rows.push(vec![
            p.name.clone(),
            p.topics.join(","),
            p.processor.clone().unwrap_or_else(|| "json mapping".into()),
            p.messages.to_string(),
            p.records.to_string(),
            p.errors.to_string(),
            p.sinks.join(","),
        ]);
    }
    out.push('\n');
    out.push_str(&table(&rows));
    let mut rows = vec![[
        "SINK",
        "KIND",
        "WRITTEN",
        "BATCHES",
        "REJECTED",
        "FAILED",
        "SPOOL",
        "OLDEST",
        "STATE",
        "LAST ERROR",
    ]
    .map(String::from)
    .to_vec()];
    for k in &s.sinks {
        let spool = &k.spool;
        let state = if spool.full {
            "full"
        } else if k.retrying {
            "retrying"
        } else {
            "ok"
        };
        rows.push(vec![
            k.name.clone(),
            k.kind.clone(),
            k.records_written.to_string(),
            k.batches.to_string(),
            k.records_rejected.to_string(),
            k.records_failed.to_string(),
            format!("{} entries, {}", spool.entries, human_bytes(spool.bytes)),
            spool.oldest_age_ms.map_or_else(|| "-".into(), |ms| human_duration(ms / 1000)),
            state.into(),
            k.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    out.push('\n');
    out.push_str(&table(&rows));
    out
}

fn stop(data_dir: &Path, timeout: Duration) -> Result<()> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let Some(pid) = datadir::running_pid(data_dir) else {
        bail!(
            "roost is not running with data directory {} (no live pid in {})",
            data_dir.display(),
            datadir::PID_FILE
        );
    };
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM)
        .with_context(|| format!("signalling roost (pid {pid})"))?;
    eprintln!("stopping roost (pid {pid})...");
    let until = Instant::now() + timeout;
    while datadir::process_alive(pid) {
        if Instant::now() >= until {
            bail!(
                "roost (pid {pid}) is still running after {}s; it may still be flushing",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("roost (pid {pid}) stopped");
    Ok(())
}
