//! `roost export` and `GET /api/v1/export`: a sink's records streamed out of its database as CSV,
//! JSON lines, or a zip of one file per measurement with a `manifest.json`.
//!
//! - [`prepare`]: finds the sink in the settings, opens its read side
//!   ([`roost_connectors::export`]), checks the measurements asked for, and refuses what the
//!   output cannot hold (CSV of several measurements without a zip).
//! - [`Export::run`]: streams every measurement's rows, encoded ([`encode`]), into chunks handed
//!   to an [`Output`] (a file, stdout, an HTTP response); memory stays constant: rows are read a
//!   page at a time and the zip is written as a stream (sizes after each file's data).
//! - [`cli`]: the command; [`api`]: the endpoint.

pub mod api;
pub mod cli;
pub mod encode;

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use roost_connectors::export::{self as source, ExportError, Precision, Query, Source};
use roost_connectors::SinkContext;
use serde_json::json;
use thiserror::Error;
use zip::write::SimpleFileOptions;

use crate::config::SinkSpec;

/// Bytes gathered before they are handed to the output.
const CHUNK: usize = 256 * 1024;

/// Encoded rows gathered before they are written on (to the zip's compressor or the chunk).
const BLOCK: usize = 64 * 1024;

/// Rows between two progress reports.
const PROGRESS_EVERY: u64 = 4096;

/// How rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

/// What to export.
#[derive(Debug, Clone)]
pub struct Request {
    /// The `[[sinks]]` entry's name.
    pub sink: String,
    pub query: Query,
    pub format: Format,
    /// A zip of one file per measurement and a manifest, instead of one stream.
    pub zip: bool,
}

/// Why an export cannot start or failed.
#[derive(Debug, Error)]
pub enum Error {
    #[error("no sink named {name:?}; sinks are: {}", known.join(", "))]
    UnknownSink { name: String, known: Vec<String> },
    /// The request cannot be served as asked.
    #[error("{0}")]
    Invalid(String),
    /// The sink's database could not be read (it says which sink kind).
    #[error("{error}")]
    Source { sink: String, error: ExportError },
    #[error("writing the export: {0}")]
    Io(#[from] io::Error),
}

/// An export ready to run: the database answered and the measurements exist.
pub struct Export {
    request: Request,
    kind: &'static str,
    source: Box<dyn Source>,
    measurements: Vec<String>,
}

/// Opens the sink's read side and checks the request against what it holds.
pub async fn prepare(sinks: &[SinkSpec], ctx: &SinkContext, request: Request) -> Result<Export, Error> {
    let Some(spec) = sinks.iter().find(|s| s.name == request.sink) else {
        return Err(Error::UnknownSink {
            name: request.sink.clone(),
            known: sinks.iter().map(|s| s.name.clone()).collect(),
        });
    };
    if let (Some(from), Some(to)) = (request.query.from, request.query.to) {
        if from >= to {
            return Err(Error::Invalid(
                "--from must be before --to (from is inclusive, to exclusive)".into(),
            ));
        }
    }
    let failed = |error| Error::Source { sink: request.sink.clone(), error };
    let mut source = spec.options.open_source(ctx).await.map_err(failed)?;
    let measurements = source::resolve(source.as_mut(), &request.query).await.map_err(failed)?;
    if request.format == Format::Csv && !request.zip && measurements.len() != 1 {
        let names = if measurements.is_empty() { "none".to_owned() } else { measurements.join(", ") };
        return Err(Error::Invalid(format!(
            "CSV holds one measurement and sink {:?} has {} to export ({names}): name one with \
             --measurement, or use --zip (a file per measurement) or --format jsonl",
            request.sink,
            measurements.len()
        )));
    }
    Ok(Export { kind: spec.options.kind(), request, source, measurements })
}

/// Where the export's bytes go, a chunk at a time.
pub trait Output: Send {
    fn send(&mut self, chunk: Vec<u8>) -> impl std::future::Future<Output = io::Result<()>> + Send;
}

/// What was exported.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Each measurement and its row count, in export order.
    pub counts: Vec<(String, u64)>,
}

impl Summary {
    pub fn rows(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }
}

/// Bytes written by the encoders and the zip writer, taken out a chunk at a time.
#[derive(Clone, Default)]
struct Pipe(Arc<Mutex<Vec<u8>>>);

impl Pipe {
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Export {
    /// The measurements that will be exported, in order.
    pub fn measurements(&self) -> &[String] {
        &self.measurements
    }

    /// The file name a download of this export should get.
    pub fn file_name(&self) -> String {
        let ext = if self.request.zip { "zip" } else { self.request.format.name() };
        format!("roost-export-{}.{ext}", safe_name(&self.request.sink))
    }

    /// Streams every measurement into `out`; `progress(measurement, rows so far)` is called now
    /// and then.
    pub async fn run(
        mut self,
        out: &mut impl Output,
        progress: &mut (dyn FnMut(&str, u64) + Send),
    ) -> Result<Summary, Error> {
        let pipe = Pipe::default();
        let mut counts = Vec::new();
        let measurements = std::mem::take(&mut self.measurements);
        if self.request.zip {
            let started = std::time::SystemTime::now();
            let ext = self.request.format.name();
            let mut zip = zip::ZipWriter::new_stream(pipe.clone());
            let options = SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .large_file(true)
                .last_modified_time(zip_time(started));
            let mut files = Vec::new();
            for m in &measurements {
                let file = format!("{}.{ext}", safe_name(m));
                zip.start_file(file.as_str(), options).map_err(zip_error)?;
                let (rows, columns) = self.measurement(m, &mut zip, &pipe, out, progress).await?;
                counts.push((m.clone(), rows));
                files.push(json!({"name": m, "file": file, "rows": rows, "columns": columns}));
            }
            zip.start_file("manifest.json", options).map_err(zip_error)?;
            let manifest = self.manifest(files, counts.iter().map(|(_, n)| n).sum(), started);
            serde_json::to_writer_pretty(&mut zip, &manifest).map_err(io::Error::from)?;
            zip.write_all(b"\n")?;
            zip.finish().map_err(zip_error)?;
        } else {
            let mut w = pipe.clone();
            for m in &measurements {
                let (rows, _) = self.measurement(m, &mut w, &pipe, out, progress).await?;
                counts.push((m.clone(), rows));
            }
        }
        let rest = pipe.take();
        if !rest.is_empty() {
            out.send(rest).await?;
        }
        Ok(Summary { counts })
    }

    /// Writes one measurement's rows to `dest` (which writes to `pipe`); returns the row count
    /// and the CSV columns.
    async fn measurement(
        &mut self,
        m: &str,
        dest: &mut (dyn Write + Send),
        pipe: &Pipe,
        out: &mut impl Output,
        progress: &mut (dyn FnMut(&str, u64) + Send),
    ) -> Result<(u64, Vec<String>), Error> {
        let sink = self.request.sink.clone();
        let failed = |error| Error::Source { sink: sink.clone(), error };
        let precision = self.source.precision();
        let query = self.request.query.clone();
        let mut csv = None;
        let mut columns = Vec::new();
        if self.request.format == Format::Csv {
            columns = self.source.columns(m, &query).await.map_err(failed)?;
            csv = Some(encode::CsvRows::new(&columns, precision, dest)?);
        }
        progress(m, 0);
        let mut rows = self.source.rows(m, &query).await.map_err(failed)?;
        let mut n = 0_u64;
        // Rows are encoded into `buf` and handed to `dest` (the zip's compressor) in blocks:
        // a write per row would go through every layer of the zip writer.
        let mut buf = Vec::with_capacity(BLOCK + 4096);
        while let Some(row) = rows.next().await {
            let row = row.map_err(failed)?;
            match &mut csv {
                Some(csv) => csv.write(&row, &mut buf)?,
                None => encode::jsonl(m, &row, precision, &mut buf)?,
            }
            n += 1;
            if n.is_multiple_of(PROGRESS_EVERY) {
                progress(m, n);
            }
            if buf.len() >= BLOCK {
                dest.write_all(&buf)?;
                buf.clear();
                if pipe.len() >= CHUNK {
                    out.send(pipe.take()).await?;
                }
            }
        }
        dest.write_all(&buf)?;
        progress(m, n);
        let mut names = vec!["time".to_owned(), "device".to_owned()];
        names.extend(columns);
        Ok((n, names))
    }

    fn manifest(
        &self,
        files: Vec<serde_json::Value>,
        rows: u64,
        started: std::time::SystemTime,
    ) -> serde_json::Value {
        let q = &self.request.query;
        let time = |t: Option<i64>| t.map(|t| encode::rfc3339(t, Precision::Nanos));
        let exported_at = started.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        json!({
            "roost_version": env!("CARGO_PKG_VERSION"),
            "exported_at": encode::rfc3339(exported_at, Precision::Millis),
            "query": {
                "sink": self.request.sink,
                "kind": self.kind,
                "measurements": q.measurements,
                "devices": q.devices,
                "from": time(q.from),
                "to": time(q.to),
                "format": self.request.format.name(),
            },
            "time_precision": self.source.precision().name(),
            "measurements": files,
            "rows": rows,
        })
    }
}

fn zip_error(e: zip::result::ZipError) -> Error {
    Error::Io(io::Error::other(e))
}

/// A name safe as a file name: path separators and a leading dot replaced by `_`.
fn safe_name(name: &str) -> String {
    let mut s: String = name.chars().map(|c| if matches!(c, '/' | '\\' | '\0') { '_' } else { c }).collect();
    if s.starts_with('.') || s.is_empty() {
        s.insert(0, '_');
    }
    s
}

/// A zip entry's timestamp (local time in zip's terms; we give UTC).
fn zip_time(t: std::time::SystemTime) -> zip::DateTime {
    let ns = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
    let text = encode::rfc3339(ns, Precision::Millis);
    let n = |r: std::ops::Range<usize>| text[r].parse::<u16>().unwrap_or(0);
    zip::DateTime::from_date_and_time(
        n(0..4),
        n(5..7) as u8,
        n(8..10) as u8,
        n(11..13) as u8,
        n(14..16) as u8,
        n(17..19) as u8,
    )
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe_for_files() {
        assert_eq!(safe_name("env"), "env");
        assert_eq!(safe_name("../x"), "_.._x");
        assert_eq!(safe_name("a/b"), "a_b");
    }
}
