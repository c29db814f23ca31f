//! `roost board ...`: the board commands of the CLI, a client of `/api/v1/boards`. Like the other
//! client commands it finds the server through the data directory (`runtime.json` and the admin
//! token). Board names are hostlists everywhere (`esp8266-0[08-11],wipy2-[1,3,7]`).
//!
//! `exec` prints each board's output under `## Executing on 'NAME' ####...` (80 columns) in the
//! order boards finish; every command that acts on boards exits non-zero if any board failed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use roost_core::board::{FsAction, FsEntry};
use serde_json::{json, Value};

use super::api::Event;
use super::ops::BoardResult;
use super::registry::BoardEntry;
use crate::client::{ApiClient, Body, Query};
use crate::config::Settings;
use crate::output::{ago, table};

#[derive(Debug, Subcommand)]
pub enum BoardCommand {
    /// List the boards: name, platform, state, last seen.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Boards that connected but are not approved yet (with boards.require_approval = true).
    Scan {
        #[arg(long)]
        json: bool,
    },
    /// Approve boards found by `scan`.
    Approve { names: String },
    /// Show one board, with its recent requests.
    Show { name: String },
    /// Run code on boards: a shell command on Linux boards, Python on MicroPython boards. The
    /// code is read from stdin unless -c is given.
    Exec {
        names: String,
        /// The code to run (instead of stdin).
        #[arg(short = 'c', long = "code")]
        code: Option<String>,
        /// Seconds the code may run on each board.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Copy a file to boards (to DEST, default: the file's name).
    Upload { names: String, file: PathBuf, dest: Option<String> },
    /// Install a Python package on boards, under `lib/`: a local `.py`, directory, `.whl` or
    /// `.tar.gz`, or a package name (`NAME` or `NAME==VERSION`) resolved from the package index
    /// (`[boards] package_index`). Roost unpacks it; boards receive only its importable files.
    Install { names: String, package: String },
    /// Give a board a new name (its history follows).
    Rename { old: String, new: String },
    /// List a directory on boards.
    Ls {
        names: String,
        #[arg(default_value = "")]
        path: String,
    },
    /// Print a file from boards.
    Cat { names: String, path: String },
    /// Remove a file or an empty directory on boards.
    Rm { names: String, path: String },
    /// Create a directory (and its parents) on boards.
    Mkdir { names: String, path: String },
    /// Restart boards.
    Reset { names: String },
}

/// Runs a board command.
pub fn run(command: &BoardCommand, settings: &Settings) -> Result<()> {
    let client = ApiClient::for_settings(settings)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        match command {
            BoardCommand::List { json } => list(&client, "/boards", *json, false).await,
            BoardCommand::Scan { json } => list(&client, "/boards/scan", *json, true).await,
            BoardCommand::Approve { names } => {
                let v: Value = client.post_json("/boards/approve", &json!({ "boards": names })).await?;
                for b in v["boards"].as_array().into_iter().flatten() {
                    let name = b["board"].as_str().unwrap_or_default();
                    if b["approved"] == true {
                        println!("{name}: approved");
                    } else {
                        println!("{name}: not waiting for approval");
                    }
                }
                Ok(())
            }
            BoardCommand::Show { name } => {
                let v: Value = client.get(&format!("/boards/{name}")).await?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(())
            }
            BoardCommand::Exec { names, code, timeout } => {
                let code = match code {
                    Some(c) => c.clone(),
                    None => {
                        let mut s = String::new();
                        std::io::stdin().read_to_string(&mut s).context("reading the code from stdin")?;
                        s
                    }
                };
                let body = json!({ "boards": names, "code": code, "timeout_ms": timeout.saturating_mul(1000).max(1) });
                let mut failed = Vec::new();
                client
                    .stream("/boards/exec", &[], Body::Json(body), |event| {
                        if let Event::Result(r) = event {
                            print_exec(&r);
                            if !r.ok {
                                failed.push(r.board);
                            }
                        }
                    })
                    .await?;
                summary(&failed)
            }
            BoardCommand::Upload { names, file, dest } => upload(&client, names, file, dest.as_deref()).await,
            BoardCommand::Install { names, package } => install(&client, names, package).await,
            BoardCommand::Rename { old, new } => {
                let v: Value = client.post_json(&format!("/boards/{old}/rename"), &json!({ "new_name": new })).await?;
                let r: BoardResult = serde_json::from_value(v)?;
                if r.ok {
                    println!("renamed '{old}' to '{new}'");
                    Ok(())
                } else {
                    bail!("{}", r.error.unwrap_or_else(|| "rename failed".into()))
                }
            }
            BoardCommand::Ls { names, path } => fs(&client, names, FsAction::Ls, path).await,
            BoardCommand::Cat { names, path } => fs(&client, names, FsAction::Cat, path).await,
            BoardCommand::Rm { names, path } => fs(&client, names, FsAction::Rm, path).await,
            BoardCommand::Mkdir { names, path } => fs(&client, names, FsAction::Mkdir, path).await,
            BoardCommand::Reset { names } => {
                let mut failed = Vec::new();
                client
                    .stream("/boards/reset", &[], Body::Json(json!({ "boards": names })), |e| {
                        if let Event::Result(r) = e {
                            report(&r, "reset");
                            if !r.ok {
                                failed.push(r.board);
                            }
                        }
                    })
                    .await?;
                summary(&failed)
            }
        }
    })
}

/// `## Executing on 'NAME' ` padded with `#` to 80 columns.
pub fn header(name: &str) -> String {
    let mut h = format!("## Executing on '{name}' ");
    while h.chars().count() < 80 {
        h.push('#');
    }
    h
}

fn print_exec(r: &BoardResult) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", header(&r.board));
    for piece in &r.output {
        let _ = out.write_all(piece.data.as_bytes());
    }
    if r.output.last().is_some_and(|p| !p.data.ends_with('\n')) {
        let _ = writeln!(out);
    }
    if !r.ok {
        let why = r.error.clone().unwrap_or_else(|| format!("exit status {}", r.exit_code.unwrap_or(-1)));
        let _ = writeln!(out, "-- {}: {why}", r.state);
    }
    let _ = out.flush();
}

fn report(r: &BoardResult, what: &str) {
    if r.ok {
        println!("{}: {what} ok", r.board);
    } else {
        println!("{}: {what} {}: {}", r.board, r.state, r.error.as_deref().unwrap_or("failed"));
    }
}

fn summary(failed: &[String]) -> Result<()> {
    if failed.is_empty() {
        return Ok(());
    }
    let names = roost_core::hostlist::compress(failed).unwrap_or_else(|_| failed.join(","));
    bail!("{} board(s) failed: {names}", failed.len())
}

async fn list(client: &ApiClient, path: &str, as_json: bool, pending: bool) -> Result<()> {
    let v: Value = client.get(path).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let boards: Vec<BoardEntry> = serde_json::from_value(v["boards"].clone())?;
    if boards.is_empty() {
        println!("{}", if pending { "no boards await approval" } else { "no boards" });
        return Ok(());
    }
    let mut rows = vec![["Name", "Platform", "State", "Last seen", "Version"].map(String::from).to_vec()];
    let now = super::now_ms();
    for b in boards {
        let state = match &b.state_detail {
            Some(d) => format!("{} ({d})", b.state.as_str()),
            None => b.state.as_str().to_owned(),
        };
        rows.push(vec![b.name, b.platform, state, ago(now, b.last_seen_ms), b.client_version]);
    }
    print!("{}", table(&rows));
    Ok(())
}

async fn fs(client: &ApiClient, names: &str, action: FsAction, path: &str) -> Result<()> {
    let body = json!({ "boards": names, "action": action, "path": path });
    let several = roost_core::hostlist::expand(names).map(|n| n.len() > 1).unwrap_or(true);
    let mut failed = Vec::new();
    client
        .stream("/boards/fs", &[], Body::Json(body), |event| {
            let Event::Result(r) = event else { return };
            if several {
                println!("{}", header(&r.board).replacen("Executing on", "Board", 1));
            }
            if !r.ok {
                println!("{}: {}", r.board, r.error.as_deref().unwrap_or("failed"));
                failed.push(r.board);
                return;
            }
            match action {
                FsAction::Ls => {
                    let entries: Vec<FsEntry> =
                        r.value.and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
                    for e in entries {
                        let kind = serde_json::to_value(e.kind).ok();
                        let kind = kind.as_ref().and_then(Value::as_str).unwrap_or("?");
                        let size = e.size.map(|s| s.to_string()).unwrap_or_default();
                        println!("{kind:<5} {size:>10}  {}", e.name);
                    }
                }
                FsAction::Cat => {
                    let mut out = std::io::stdout().lock();
                    for p in &r.output {
                        let _ = out.write_all(p.data.as_bytes());
                    }
                    let _ = out.flush();
                }
                FsAction::Stat => println!("{}", r.value.unwrap_or(Value::Null)),
                FsAction::Rm | FsAction::Mkdir => {}
            }
        })
        .await?;
    summary(&failed)
}

async fn upload(client: &ApiClient, names: &str, file: &Path, dest: Option<&str>) -> Result<()> {
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let dest = match dest {
        Some(d) => d.to_owned(),
        None => file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("{} has no file name; give a destination", file.display()))?,
    };
    let boards = roost_core::hostlist::expand(names)?;
    for b in &boards {
        println!("Copying file to {b}:{dest}");
    }
    let _ = std::io::stdout().flush();
    let query = [("boards", names.to_owned()), ("dest", dest)];
    let mut failed = Vec::new();
    let mut progress = Progress::default();
    client
        .stream("/boards/upload", &query, Body::Bytes(data), |event| progress.show(event, &mut failed))
        .await?;
    summary(&failed)
}

/// Prints upload and install events: progress per board in 10% steps, one line per result.
#[derive(Default)]
struct Progress {
    shown: std::collections::HashMap<String, u64>,
    files: Option<usize>,
}

impl Progress {
    fn show(&mut self, event: Event, failed: &mut Vec<String>) {
        match event {
            Event::Package { package, files, bytes } => {
                println!("Installing {package}: {} file(s), {bytes} bytes", files.len());
                for f in &files {
                    println!("  {f}");
                }
                self.files = Some(files.len());
            }
            Event::Progress { board, offset, total } => {
                let pct = (offset * 100).checked_div(total).unwrap_or(100);
                let step = pct / 10;
                if self.shown.get(&board).is_none_or(|s| step > *s) {
                    self.shown.insert(board.clone(), step);
                    println!("{board}: {pct}% ({offset}/{total} bytes)");
                }
            }
            Event::Result(r) => {
                if r.ok {
                    let resumed = r
                        .resumed_from
                        .filter(|o| *o > 0)
                        .map(|o| format!(", resumed at {o}"))
                        .unwrap_or_default();
                    let files = self.files.map(|n| format!("{n} file(s), ")).unwrap_or_default();
                    println!("{}: done ({files}{} bytes{resumed})", r.board, r.bytes.unwrap_or(0));
                } else {
                    println!("{}: {}: {}", r.board, r.state, r.error.as_deref().unwrap_or("failed"));
                    failed.push(r.board);
                }
            }
            Event::Done { .. } => {}
        }
        let _ = std::io::stdout().flush();
    }
}

/// `install NAMES PACKAGE`: a local file or directory is sent to Roost; anything else is a
/// package name Roost resolves in its package index.
async fn install(client: &ApiClient, names: &str, package: &str) -> Result<()> {
    let boards = roost_core::hostlist::expand(names)?;
    let local = Path::new(package);
    let mut query = vec![("boards", names.to_owned())];
    let payload = if local.is_dir() {
        let name = dir_name(local)?;
        let tar = tar_dir(local).with_context(|| format!("packing {}", local.display()))?;
        query.extend([("kind", "dir".to_owned()), ("name", name)]);
        Body::Bytes(tar)
    } else if local.is_file() {
        let name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("{} has no file name", local.display()))?;
        let kind = if name.ends_with(".py") {
            "py"
        } else if name.ends_with(".whl") {
            "wheel"
        } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            "sdist"
        } else {
            bail!("{}: install takes a .py module, a directory, a .whl or a .tar.gz", local.display());
        };
        let data = std::fs::read(local).with_context(|| format!("reading {}", local.display()))?;
        query.extend([("kind", kind.to_owned()), ("name", name)]);
        Body::Bytes(data)
    } else if package.contains('/') || [".py", ".whl", ".tar.gz", ".tgz"].iter().any(|e| package.ends_with(e))
    {
        bail!("{package}: no such file or directory");
    } else {
        query.push(("package", package.to_owned()));
        Body::Bytes(Vec::new())
    };
    for b in &boards {
        println!("Installing {package} on {b}:lib/");
    }
    let mut failed = Vec::new();
    let mut progress = Progress::default();
    client.stream("/boards/install", &query, payload, |event| progress.show(event, &mut failed)).await?;
    summary(&failed)
}

fn dir_name(dir: &Path) -> Result<String> {
    let canonical = dir.canonicalize().with_context(|| format!("{}", dir.display()))?;
    canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no name to install it under", dir.display()))
}

/// A tar of the files under `dir` (paths relative to it), without caches, compiled files and
/// dot files; symbolic links are refused.
fn tar_dir(dir: &Path) -> Result<Vec<u8>> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            let name_s = name.to_string_lossy();
            if name_s.starts_with('.') || name_s == "__pycache__" || name_s.ends_with(".pyc") {
                continue;
            }
            let kind = e.file_type()?;
            let path = rel.join(&name);
            if kind.is_symlink() {
                bail!("{}: symbolic links are not installed", root.join(&path).display());
            } else if kind.is_dir() {
                walk(root, &path, out)?;
            } else if kind.is_file() {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, Path::new(""), &mut files)?;
    let mut tar = tar::Builder::new(Vec::new());
    for f in files {
        let data = std::fs::read(dir.join(&f))?;
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, &f, data.as_slice())?;
    }
    Ok(tar.into_inner()?)
}

/// Board operations answer with events until `done`.
trait BoardEvents {
    /// Posts a board operation and hands its events to `on_event` until `done`.
    async fn stream(&self, path: &str, query: &Query, body: Body, on_event: impl FnMut(Event)) -> Result<()>;
}

impl BoardEvents for ApiClient {
    async fn stream(
        &self,
        path: &str,
        query: &Query,
        body: Body,
        mut on_event: impl FnMut(Event),
    ) -> Result<()> {
        let finished = self
            .post_ndjson(path, query, body, |event: Event| {
                if matches!(event, Event::Done { .. }) {
                    return false;
                }
                on_event(event);
                true
            })
            .await?;
        if !finished {
            bail!("roost closed the connection before every board finished");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_padded_to_80_columns() {
        let h = header("b-1");
        assert_eq!(h.len(), 80);
        assert!(h.starts_with("## Executing on 'b-1' ###"));
        let long = header(&"x".repeat(90));
        assert!(long.ends_with("' "), "a name too long for 80 columns is not padded");
    }
}
