//! `roost device add | list | show | rotate | revoke`, over the admin API.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};

use super::DeviceInfo;
use crate::client::{block_on, ApiClient};
use crate::config::Settings;
use crate::output::{ago, table};

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register a device; prints its secret once (the MQTT password; the username is the name).
    Add { name: String },
    /// List the devices.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one device.
    Show { name: String },
    /// Give a device a new secret (printed once) and disconnect it.
    Rotate { name: String },
    /// Revoke a device's credentials and disconnect it.
    Revoke { name: String },
}

fn print_secret(v: &Value) {
    let (name, secret) = (v["name"].as_str().unwrap_or_default(), v["secret"].as_str().unwrap_or_default());
    println!("device {name}: connect with username {name:?}, client id {name:?} and this password.");
    println!("It is shown only now; `roost device rotate {name}` makes a new one.\n");
    println!("{secret}");
}

fn when(now: u64, ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".into(), |ms| ago(now, ms as u64))
}

pub fn run(command: &DeviceCommand, settings: &Settings) -> Result<()> {
    let client = ApiClient::for_settings(settings)?;
    let now = (roost_core::envelope::now_ns() / 1_000_000) as u64;
    block_on(async {
        match command {
            DeviceCommand::Add { name } => {
                print_secret(&client.post_json("/devices", &json!({ "name": name })).await?)
            }
            DeviceCommand::Rotate { name } => {
                print_secret(&client.post_json(&format!("/devices/{name}/rotate"), &json!({})).await?)
            }
            DeviceCommand::Revoke { name } => {
                let _: Value = client.post_json(&format!("/devices/{name}/revoke"), &json!({})).await?;
                println!("device {name}: revoked and disconnected");
            }
            DeviceCommand::Show { name } => {
                let d: DeviceInfo = client.get(&format!("/devices/{name}")).await?;
                println!("{}", serde_json::to_string_pretty(&d)?);
            }
            DeviceCommand::List { json } => {
                let v: Value = client.get("/devices").await?;
                if *json {
                    println!("{}", serde_json::to_string_pretty(&v["devices"])?);
                    return Ok(());
                }
                let devices: Vec<DeviceInfo> = serde_json::from_value(v["devices"].clone())?;
                let mut rows = vec![["DEVICE", "CREATED", "ROTATED", "REVOKED"].map(String::from).to_vec()];
                for d in devices {
                    rows.push(vec![
                        d.name,
                        when(now, Some(d.created_ms)),
                        when(now, d.rotated_ms),
                        when(now, d.revoked_ms),
                    ]);
                }
                print!("{}", table(&rows));
            }
        }
        Ok(())
    })?
}
