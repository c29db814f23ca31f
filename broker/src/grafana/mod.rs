//! `roost grafana`: Grafana provisioning for the running configuration (docs/grafana.md).
//!
//! - `datasource`: one datasource per sink, secrets as `${ROOST_GRAFANA_...}` references, and
//!   one Prometheus datasource for Roost's own metrics.
//! - `queries`: the queries of a sink's dashboard, per query language.
//! - `dashboard`: a dashboard per sink (measurement, device and field variables; a time series
//!   panel per numeric field; the latest values per device) and the health dashboard.
//!
//! Everything is made from the settings alone, without touching a database: the dashboards
//! list measurements, fields and devices when Grafana loads them.

mod dashboard;
pub mod datasource;
pub mod queries;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;
use thiserror::Error;

use crate::config::Settings;

#[derive(Debug, clap::Args)]
pub struct GrafanaArgs {
    /// The directory to write into (created if missing; Roost's files in it are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Where Grafana will read the dashboards from: the path the dashboard provider names.
    #[arg(long, value_name = "PATH", default_value = "/var/lib/grafana/dashboards/roost")]
    pub dashboards_path: String,
    /// The Prometheus server that scrapes Roost's /metrics, as Grafana reaches it.
    #[arg(long, value_name = "URL", default_value = "http://localhost:9090")]
    pub prometheus_url: String,
    /// Roost's admin API as Prometheus reaches it (HOST:PORT), for the scrape job; default: the
    /// API's listen address (127.0.0.1 for an address that listens on every interface).
    #[arg(long, value_name = "HOST:PORT")]
    pub scrape_target: Option<String>,
}

#[derive(Debug, Error)]
pub enum GrafanaError {
    #[error("sink {sink:?}: {message}")]
    Sink { sink: String, message: String },
}

/// One file to write, relative to the output directory.
#[derive(Debug)]
pub struct OutFile {
    pub path: PathBuf,
    pub text: String,
}

/// The provisioning for `settings`: datasources, the dashboard provider, the dashboards, and
/// a Prometheus scrape job for Roost.
pub fn generate(settings: &Settings, args: &GrafanaArgs) -> Result<Vec<OutFile>, GrafanaError> {
    let mut datasources = Vec::new();
    let mut dashboards = Vec::new();
    for spec in settings.sink_specs() {
        let kind = spec.options.kind();
        let ds = datasource::for_sink(&spec.name, kind, &spec.options.effective(), &settings.data_dir)?;
        dashboards.push((format!("{}.json", ds.uid), dashboard::measurements(&spec.name, kind, &ds)));
        datasources.push(ds);
    }
    let prometheus = datasource::prometheus(&args.prometheus_url);
    dashboards.push(("roost-health.json".into(), dashboard::health(&prometheus)));
    datasources.push(prometheus);

    let mut files = Vec::new();
    let mut text = String::from("# Written by `roost grafana`: Roost's datasources (docs/grafana.md).\n");
    for ds in &datasources {
        for (var, what) in &ds.env {
            let _ = writeln!(text, "# ${{{var}}}: {what}");
        }
    }
    text.push_str(&yaml(&serde_json::json!({
        "apiVersion": 1,
        "datasources": datasources.iter().map(|d| d.entry.clone()).collect::<Vec<_>>(),
    })));
    files.push(OutFile { path: "provisioning/datasources/roost.yaml".into(), text });
    let provider = serde_json::json!({
        "apiVersion": 1,
        "providers": [{
            "name": "roost", "folder": "Roost", "type": "file", "disableDeletion": false,
            "updateIntervalSeconds": 30, "allowUiUpdates": false,
            "options": { "path": args.dashboards_path },
        }],
    });
    let text = format!("# Written by `roost grafana`: Roost's dashboards.\n{}", yaml(&provider));
    files.push(OutFile { path: "provisioning/dashboards/roost.yaml".into(), text });
    for (name, dashboard) in dashboards {
        // A JSON model always serializes.
        let text = serde_json::to_string_pretty(&dashboard).unwrap_or_default() + "\n";
        files.push(OutFile { path: Path::new("dashboards").join(name), text });
    }
    files.push(OutFile { path: "prometheus.yml".into(), text: scrape_config(settings, args) });
    Ok(files)
}

/// A Prometheus scrape job for Roost's `/metrics` (no token needed).
fn scrape_config(settings: &Settings, args: &GrafanaArgs) -> String {
    let target = args.scrape_target.clone().unwrap_or_else(|| {
        let mut addr = settings.api.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        addr.to_string()
    });
    let mut job = serde_json::json!({
        "job_name": "roost",
        "scrape_interval": "15s",
        "static_configs": [{ "targets": [target] }],
    });
    if let Some(tls) = &settings.api.tls {
        job["scheme"] = "https".into();
        if let Some(ca) = &tls.ca {
            job["tls_config"] = serde_json::json!({ "ca_file": ca.display().to_string() });
        }
    }
    format!(
        "# Written by `roost grafana`: add this job to Prometheus's scrape_configs.\n{}",
        yaml(&serde_json::json!({ "scrape_configs": [job] }))
    )
}

/// `value` as block YAML; strings double-quoted (JSON's escapes are YAML's).
pub fn yaml(value: &Value) -> String {
    fn scalar(v: &Value) -> String {
        match v {
            Value::Object(m) if m.is_empty() => "{}".into(),
            Value::Array(a) if a.is_empty() => "[]".into(),
            other => other.to_string(),
        }
    }
    fn nested(v: &Value) -> bool {
        matches!(v, Value::Object(m) if !m.is_empty()) || matches!(v, Value::Array(a) if !a.is_empty())
    }
    fn write(out: &mut String, v: &Value, indent: usize) {
        let pad = " ".repeat(indent);
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if nested(v) {
                        let _ = writeln!(out, "{pad}{k}:");
                        write(out, v, indent + 2);
                    } else {
                        let _ = writeln!(out, "{pad}{k}: {}", scalar(v));
                    }
                }
            }
            Value::Array(a) => {
                for item in a {
                    if nested(item) {
                        // The item's first line goes after the dash, the rest under it.
                        let mut inner = String::new();
                        write(&mut inner, item, indent + 2);
                        let _ = write!(out, "{pad}- {}", &inner[indent + 2..]);
                    } else {
                        let _ = writeln!(out, "{pad}- {}", scalar(item));
                    }
                }
            }
            other => {
                let _ = writeln!(out, "{pad}{}", scalar(other));
            }
        }
    }
    let mut out = String::new();
    write(&mut out, value, 0);
    out
}

/// `roost grafana`: writes the files and says what Grafana needs.
pub fn run(args: &GrafanaArgs, settings: &Settings) -> anyhow::Result<()> {
    let files = generate(settings, args)?;
    for file in &files {
        let path = args.out.join(&file.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, &file.text).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    eprintln!(
        "Grafana: mount {out}/provisioning as /etc/grafana/provisioning and {out}/dashboards at {dash}; \
         set the ROOST_GRAFANA_* variables listed in the datasources file (docs/grafana.md)",
        out = args.out.display(),
        dash = args.dashboards_path
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn yaml_nests_maps_and_lists_and_quotes_strings() {
        let v = json!({"apiVersion": 1, "list": [{"a": "x: y", "b": {"c": true}}, "s"], "e": {}, "f": []});
        assert_eq!(
            yaml(&v),
            "apiVersion: 1\nlist:\n  - a: \"x: y\"\n    b:\n      c: true\n  - \"s\"\ne: {}\nf: []\n"
        );
    }
}
