//! `roost processor upload | list | show | test | rollback | delete`, over the admin API.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{block_on, ApiClient, Body};
use crate::config::Settings;
use crate::output::table;

#[derive(Debug, Subcommand)]
pub enum ProcessorCommand {
    /// Upload a .wasm processor as the next version and make it active (after checking it).
    Upload {
        name: String,
        file: PathBuf,
        /// Sample messages to run before accepting it: a JSON array of {"topic", "payload"}.
        #[arg(long, value_name = "FILE.json")]
        samples: Option<PathBuf>,
    },
    /// List processors and their active versions.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a processor's versions with their call statistics.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Run sample messages through a stored version, or through a file without storing it.
    Test {
        name: String,
        #[arg(long, value_name = "FILE.json")]
        samples: PathBuf,
        /// Test this .wasm file instead of a stored version.
        #[arg(long, value_name = "FILE.wasm", conflicts_with = "version")]
        file: Option<PathBuf>,
        /// The stored version to test (default: the active one).
        #[arg(long)]
        version: Option<u32>,
    },
    /// Make an earlier version active again (default: the one before the active one).
    Rollback {
        name: String,
        #[arg(long, value_name = "VERSION")]
        to: Option<u32>,
    },
    /// Delete every version of a processor (refused while a pipeline names it).
    Delete { name: String },
}

fn read(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// A `multipart/form-data` body with a `module` and a `samples` part.
fn multipart(module: Vec<u8>, samples: Vec<u8>) -> Body {
    let boundary = format!("roost-{}", hex::encode(rand::random::<[u8; 12]>()));
    let mut body = Vec::with_capacity(module.len() + samples.len() + 512);
    for (name, content_type, bytes) in
        [("module", "application/wasm", module), ("samples", "application/json", samples)]
    {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n\
                 Content-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Body::Typed(format!("multipart/form-data; boundary={boundary}"), body)
}

fn print_results(results: &Value) {
    for r in results.as_array().into_iter().flatten() {
        let topic = r["topic"].as_str().unwrap_or("?");
        match (&r["records"], &r["error"]) {
            (Value::Array(records), _) => {
                println!("{topic}: {} record(s)", records.len());
                for rec in records {
                    println!("  {rec}");
                }
            }
            (_, Value::String(e)) => println!("{topic}: FAILED: {e}"),
            _ => println!("{topic}: ?"),
        }
    }
}

pub fn run(command: &ProcessorCommand, settings: &Settings) -> Result<()> {
    let client = ApiClient::for_settings(settings)?;
    match command {
        ProcessorCommand::Upload { name, file, samples } => {
            let module = read(file)?;
            let body = match samples {
                Some(s) => multipart(module, read(s)?),
                None => Body::Bytes(module),
            };
            let doc: Value =
                block_on(client.send_body(Method::PUT, &format!("/processors/{name}"), &[], body))??;
            println!(
                "uploaded {name} version {} ({} bytes, sha256 {}); it is active",
                doc["version"],
                doc["size"],
                doc["sha256"].as_str().unwrap_or("?")
            );
            print_results(&doc["samples"]);
            Ok(())
        }
        ProcessorCommand::List { json } => {
            let doc: Value = block_on(client.get("/processors"))??;
            if *json {
                println!("{}", serde_json::to_string_pretty(&doc)?);
                return Ok(());
            }
            let mut rows = vec![vec!["NAME".into(), "ACTIVE".into(), "VERSIONS".into(), "PIPELINES".into()]];
            for p in doc["processors"].as_array().into_iter().flatten() {
                let pipelines: Vec<&str> =
                    p["pipelines"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                rows.push(vec![
                    p["name"].as_str().unwrap_or("?").into(),
                    p["active"].to_string(),
                    p["versions"].as_array().map_or(0, Vec::len).to_string(),
                    pipelines.join(","),
                ]);
            }
            print!("{}", table(&rows));
            Ok(())
        }
        ProcessorCommand::Show { name, json } => {
            let doc: Value = block_on(client.get(&format!("/processors/{name}")))??;
            if *json {
                println!("{}", serde_json::to_string_pretty(&doc)?);
                return Ok(());
            }
            let mut rows = vec![[
                "VERSION", "ACTIVE", "SIZE", "UPLOADED", "CALLS", "ERRORS", "MEAN µs", "P99 µs", "SHA256",
            ]
            .map(String::from)
            .to_vec()];
            for v in doc["versions"].as_array().into_iter().flatten() {
                let failing = if v["failing"] == json!(true) { " (failing)" } else { "" };
                rows.push(vec![
                    v["version"].to_string(),
                    format!("{}{failing}", if v["active"] == json!(true) { "*" } else { "" }),
                    v["size"].to_string(),
                    v["uploaded_at"].as_str().unwrap_or("?").into(),
                    v["calls"].to_string(),
                    v["errors"].to_string(),
                    format!("{:.1}", v["mean_us"].as_f64().unwrap_or(0.0)),
                    format!("{:.1}", v["p99_us"].as_f64().unwrap_or(0.0)),
                    v["sha256"].as_str().unwrap_or("?").chars().take(16).collect(),
                ]);
            }
            print!("{}", table(&rows));
            Ok(())
        }
        ProcessorCommand::Test { name, samples, file, version } => {
            let samples = read(samples)?;
            let path = format!("/processors/{name}/test");
            let doc: Value = match file {
                Some(f) => {
                    block_on(client.send_body(Method::POST, &path, &[], multipart(read(f)?, samples)))??
                }
                None => {
                    let samples: Value =
                        serde_json::from_slice(&samples).context("the samples file is not JSON")?;
                    block_on(client.post_json(&path, &json!({"samples": samples, "version": version})))??
                }
            };
            print_results(&doc["results"]);
            if doc["ok"] != json!(true) {
                anyhow::bail!("some samples failed");
            }
            Ok(())
        }
        ProcessorCommand::Rollback { name, to } => {
            let doc: Value = block_on(
                client.post_json(&format!("/processors/{name}/rollback"), &json!({ "version": to })),
            )??;
            println!("{name}: version {} is active", doc["active"]);
            Ok(())
        }
        ProcessorCommand::Delete { name } => {
            let _: Value = block_on(client.call(Method::DELETE, &format!("/processors/{name}"), &[], None))??;
            println!("deleted {name} (every version)");
            Ok(())
        }
    }
}
