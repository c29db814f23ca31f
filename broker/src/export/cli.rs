//! `roost export`: reads the sink's options from the same configuration `roost serve` uses,
//! connects to its database directly (the server need not run) and writes the export to stdout,
//! `--out FILE` or `--zip FILE`. A file is written under a temporary name and renamed when
//! complete, so a failed export leaves no half file. A progress line on stderr when stderr is
//! a terminal; nothing otherwise.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use roost_connectors::export::Query;
use roost_connectors::SinkContext;

use super::{encode, prepare, Format, Output, Request};
use crate::config::Settings;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The `[[sinks]]` entry to read (may be left out when only one sink is configured).
    #[arg(long, value_name = "NAME")]
    pub sink: Option<String>,
    /// A measurement to export (repeat for several; default: all of them).
    #[arg(long = "measurement", value_name = "M")]
    pub measurements: Vec<String>,
    /// Only this device's records (repeat for several).
    #[arg(long = "device", value_name = "D")]
    pub devices: Vec<String>,
    /// Records at or after this time: RFC 3339 (2026-01-01T12:00:00Z), a date, or Unix seconds.
    #[arg(long, value_name = "T")]
    pub from: Option<String>,
    /// Records before this time (same forms as --from).
    #[arg(long, value_name = "T")]
    pub to: Option<String>,
    /// csv (one measurement per file: time,device,<columns>) or jsonl (one JSON object per line).
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
    /// Write a zip holding one file per measurement and manifest.json.
    #[arg(long, value_name = "FILE", conflicts_with = "out")]
    pub zip: Option<PathBuf>,
    /// Write to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs `roost export`.
pub fn run(args: &ExportArgs, settings: &Settings) -> Result<()> {
    let sinks = settings.sink_specs();
    let sink = match (&args.sink, sinks) {
        (Some(name), _) => name.clone(),
        (None, [only]) => only.name.clone(),
        (None, _) => {
            let names: Vec<&str> = sinks.iter().map(|s| s.name.as_str()).collect();
            bail!("name the sink to export with --sink; sinks are: {}", names.join(", "))
        }
    };
    let time = |flag: &str, t: &Option<String>| -> Result<Option<i64>> {
        t.as_deref().map(encode::parse_time).transpose().map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
    };
    let query = Query {
        measurements: args.measurements.clone(),
        devices: args.devices.clone(),
        from: time("from", &args.from)?,
        to: time("to", &args.to)?,
    };
    let request = Request { sink: sink.clone(), query, format: args.format, zip: args.zip.is_some() };
    let ctx = SinkContext { data_dir: settings.data_dir.clone() };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let started = Instant::now();
    let target = args.zip.as_deref().or(args.out.as_deref());
    let summary = runtime.block_on(async {
        let export = prepare(settings.sink_specs(), &ctx, request).await?;
        let mut progress = Progress::new(export.measurements().len());
        let mut report = |m: &str, n: u64| progress.update(m, n);
        match target {
            Some(path) => {
                let mut file = PartialFile::create(path)?;
                let summary = export.run(&mut file, &mut report).await?;
                file.finish()?;
                Ok::<_, anyhow::Error>(summary)
            }
            None => Ok(export.run(&mut Stdout(std::io::stdout()), &mut report).await?),
        }
    });
    let summary = summary.with_context(|| format!("export of sink {sink:?} failed"))?;
    if std::io::stderr().is_terminal() {
        let where_to = target.map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
        eprintln!(
            "exported {} rows of {} measurement(s) to {where_to} in {:.1}s",
            summary.rows(),
            summary.counts.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

struct Stdout(std::io::Stdout);

impl Output for Stdout {
    async fn send(&mut self, chunk: Vec<u8>) -> std::io::Result<()> {
        let mut out = self.0.lock();
        out.write_all(&chunk)?;
        out.flush()
    }
}

/// A file written as `<name>.partial` and renamed to its name when complete; removed if it
/// is dropped unfinished.
struct PartialFile {
    file: Option<std::fs::File>,
    partial: PathBuf,
    path: PathBuf,
}

impl PartialFile {
    fn create(path: &Path) -> Result<PartialFile> {
        let mut name = path.file_name().context("--out/--zip must name a file")?.to_owned();
        name.push(".partial");
        let partial = path.with_file_name(name);
        let file =
            std::fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
        Ok(PartialFile { file: Some(file), partial, path: path.to_owned() })
    }

    fn finish(mut self) -> Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all().with_context(|| format!("writing {}", self.partial.display()))?;
        }
        std::fs::rename(&self.partial, &self.path)
            .with_context(|| format!("renaming {} to {}", self.partial.display(), self.path.display()))
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

impl Output for PartialFile {
    async fn send(&mut self, chunk: Vec<u8>) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(&chunk),
            None => Err(std::io::Error::other("file already finished")),
        }
    }
}

/// A spinner with the measurement and its row count, on a terminal only.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    done: usize,
    current: String,
}

impl Progress {
    fn new(total: usize) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} {msg} {human_pos} rows ({per_sec}, {elapsed})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress { bar, total, done: 0, current: String::new() }
    }

    fn update(&mut self, measurement: &str, rows: u64) {
        let Some(bar) = &self.bar else { return };
        if measurement != self.current {
            self.current = measurement.to_owned();
            self.done += 1;
            bar.reset();
            bar.set_message(format!("[{}/{}] {measurement}:", self.done, self.total));
        }
        bar.set_position(rows);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
