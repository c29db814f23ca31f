//! `roost deadletter list | replay | delete`, over the admin API.

use anyhow::Result;
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use crate::client::{block_on, ApiClient};
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

/// The entries a command selects: by source, by ids, or (none given) all of them.
fn selection(source: &Option<String>, ids: &[i64]) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if let Some(s) = source {
        query.push(("source", s.clone()));
    }
    if !ids.is_empty() {
        let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
        query.push(("ids", ids.join(",")));
    }
    query
}

pub fn run(command: &DeadLetterCommand, settings: &Settings) -> Result<()> {
    let client = ApiClient::for_settings(settings)?;
    match command {
        DeadLetterCommand::List { source, limit, json } => {
            let mut query = selection(source, &[]);
            query.push(("limit", limit.to_string()));
            let doc: Value = block_on(client.call(Method::GET, "/deadletters", &query, None))??;
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
            let query = selection(source, ids);
            let doc: Value = block_on(client.call(Method::POST, "/deadletters/replay", &query, None))??;
            println!("replayed {}", doc["replayed"]);
            for s in doc["skipped"].as_array().into_iter().flatten() {
                println!("skipped {}: {}", s["id"], s["reason"].as_str().unwrap_or(""));
            }
            Ok(())
        }
        DeadLetterCommand::Delete { source, ids, all } => {
            let mut query = selection(source, ids);
            if *all {
                query.push(("all", "true".into()));
            }
            let doc: Value = block_on(client.call(Method::DELETE, "/deadletters", &query, None))??;
            println!("deleted {}", doc["deleted"]);
            Ok(())
        }
    }
}
