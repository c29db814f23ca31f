//! `roost deadletter list | replay | delete`, over the admin API.

use anyhow::Result;
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use crate::client::{block_on, query_value, ApiClient};
use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List dead letters, oldest first.
    List {
        /// Only from this source: `sink:<name>` or `pipeline:<name>`.
        #[arg(long)]
        source: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print the entries as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send dead letters back to their sink or pipeline (all of them, or those selected).
    Replay {
        #[arg(long)]
        source: Option<String>,
        /// Only these entries (repeatable).
        #[arg(long = "id")]
        ids: Vec<i64>,
    },
    /// Delete dead letters.
    Delete {
        #[arg(long)]
        source: Option<String>,
        #[arg(long = "id")]
        ids: Vec<i64>,
        /// Delete every dead letter.
        #[arg(long)]
        all: bool,
    },
}

fn query(source: &Option<String>, ids: &[i64], extra: &str) -> String {
    let mut parts = Vec::new();
    if let Some(s) = source {
        parts.push(format!("source={}", query_value(s)));
    }
    if !ids.is_empty() {
        let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
        parts.push(format!("ids={}", ids.join(",")));
    }
    if !extra.is_empty() {
        parts.push(extra.to_owned());
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

pub fn run(command: &DeadLetterCommand, settings: &Settings) -> Result<()> {
    let client = ApiClient::for_settings(settings)?;
    match command {
        DeadLetterCommand::List { source, limit, json } => {
            let doc: Value = block_on(
                client.get(&format!("/deadletters{}", query(source, &[], &format!("limit={limit}")))),
            )??;
            if *json {
                println!("{}", serde_json::to_string_pretty(&doc)?);
                return Ok(());
            }
            let entries = doc["entries"].as_array().cloned().unwrap_or_default();
            println!("{} dead letters stored; showing {}", doc["total"], entries.len());
            for e in entries {
                let what = match (&e["record"], &e["topic"]) {
                    (Value::Object(r), _) => format!(
                        "record {} from {}",
                        r["measurement"].as_str().unwrap_or("?"),
                        r["device"].as_str().unwrap_or("?")
                    ),
                    (_, Value::String(t)) => format!("message on {t}"),
                    _ => String::from("?"),
                };
                println!(
                    "{:>8}  {:<22}  {what}: {}",
                    e["id"],
                    e["source"].as_str().unwrap_or("?"),
                    e["reason"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        DeadLetterCommand::Replay { source, ids } => {
            let path = format!("/deadletters/replay{}", query(source, ids, ""));
            let doc: Value = block_on(client.call(Method::POST, &path, None))??;
            println!("replayed {}", doc["replayed"]);
            for s in doc["skipped"].as_array().into_iter().flatten() {
                println!("skipped {}: {}", s["id"], s["reason"].as_str().unwrap_or(""));
            }
            Ok(())
        }
        DeadLetterCommand::Delete { source, ids, all } => {
            let path = format!("/deadletters{}", query(source, ids, if *all { "all=true" } else { "" }));
            let doc: Value = block_on(client.call(Method::DELETE, &path, None))??;
            println!("deleted {}", doc["deleted"]);
            Ok(())
        }
    }
}
