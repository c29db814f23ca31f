//! The dashboards, as Grafana's JSON model (schema 39, Grafana 10.4 and later): one per sink
//! for its measurements, and Roost's health from its own metrics.

use serde_json::{json, Value};

use super::datasource::Datasource;
use super::queries::VarQuery;

fn ds_ref(ds: &Datasource) -> Value {
    json!({ "type": ds.plugin, "uid": ds.uid })
}

fn dashboard(uid: &str, title: &str, variables: Vec<Value>, panels: Vec<Value>) -> Value {
    json!({
        "uid": uid,
        "title": title,
        "tags": ["roost"],
        "schemaVersion": 39,
        "editable": true,
        "time": { "from": "now-6h", "to": "now" },
        "refresh": "30s",
        "templating": { "list": variables },
        "panels": panels,
    })
}

/// A query variable: `multi` ones start with every value selected.
fn query_var(ds: &Datasource, name: &str, label: &str, q: &VarQuery, multi: bool) -> Value {
    let current = if multi { json!({ "text": ["All"], "value": ["$__all"] }) } else { json!({}) };
    json!({
        "name": name,
        "label": label,
        "type": "query",
        "datasource": ds_ref(ds),
        "query": q.query,
        // 1: when the dashboard loads; 2: also when the time range changes.
        "refresh": if q.on_time_range { 2 } else { 1 },
        "multi": multi,
        "includeAll": multi,
        "current": current,
        "sort": 1,
        "options": [],
        "regex": "",
        "hide": 0,
    })
}

fn panel(kind: &str, title: &str, ds: &Datasource, targets: Vec<Value>, grid: [u32; 4]) -> Value {
    let [x, y, w, h] = grid;
    let targets: Vec<Value> = targets
        .into_iter()
        .map(|mut t| {
            t["datasource"] = ds_ref(ds);
            t
        })
        .collect();
    json!({
        "type": kind,
        "title": title,
        "datasource": ds_ref(ds),
        "gridPos": { "x": x, "y": y, "w": w, "h": h },
        "targets": targets,
        "fieldConfig": { "defaults": {}, "overrides": [] },
        "options": {},
    })
}

/// The measurements of one sink: pick a measurement and devices; a time series panel per
/// numeric field (one series per device), and each device's latest row.
pub fn measurements(sink: &str, kind: &str, ds: &Datasource) -> Value {
    let q = ds.dialect.queries();
    let measurement = match &q.measurements {
        Some(var) => query_var(ds, "measurement", "Measurement", var, false),
        None => json!({
            "name": "measurement", "label": "Measurement (collection)", "type": "textbox",
            "query": "", "current": { "text": "", "value": "" }, "hide": 0,
        }),
    };
    let variables = vec![
        measurement,
        query_var(ds, "device", "Device", &q.devices, true),
        query_var(ds, "field", "Field", &q.fields, true),
    ];
    let mut series = panel("timeseries", "$field", ds, vec![q.series], [0, 0, 12, 8]);
    series["repeat"] = json!("field");
    series["repeatDirection"] = json!("h");
    series["maxPerRow"] = json!(2);
    let latest = panel("table", "Latest values per device", ds, vec![q.latest], [0, 8, 24, 8]);
    dashboard(&ds.uid, &format!("Roost: {sink} ({kind})"), variables, vec![series, latest])
}

/// One health panel: a PromQL expression, legend, unit.
struct Health {
    title: &'static str,
    expr: &'static str,
    legend: &'static str,
    unit: &'static str,
}

/// Every query of the health dashboard filters on the `instance` label, so one dashboard
/// serves several Roost servers scraped by one Prometheus.
const HEALTH: &[Health] = &[
    Health {
        title: "Messages in",
        expr: r#"sum(rate(roost_messages_in_total{instance=~"$instance"}[$__rate_interval]))"#,
        legend: "messages/s",
        unit: "short",
    },
    Health {
        title: "MQTT connections",
        expr: r#"sum by (instance) (roost_mqtt_connections{instance=~"$instance"})"#,
        legend: "{{instance}}",
        unit: "short",
    },
    Health {
        title: "Records per pipeline",
        expr: r#"sum by (pipeline) (rate(roost_pipeline_records_total{instance=~"$instance"}[$__rate_interval]))"#,
        legend: "{{pipeline}}",
        unit: "short",
    },
    Health {
        title: "Mapping errors per pipeline",
        expr: r#"sum by (pipeline) (rate(roost_pipeline_mapping_errors_total{instance=~"$instance"}[$__rate_interval]))"#,
        legend: "{{pipeline}}",
        unit: "short",
    },
    Health {
        title: "Records written per sink",
        expr: r#"sum by (sink) (rate(roost_sink_records_written_total{instance=~"$instance"}[$__rate_interval]))"#,
        legend: "{{sink}}",
        unit: "short",
    },
    Health {
        title: "Backlog per sink",
        expr: r#"sum by (sink) (roost_sink_backlog_records{instance=~"$instance"})"#,
        legend: "{{sink}}",
        unit: "short",
    },
    Health {
        title: "Spool on disk per sink",
        expr: r#"sum by (sink) (roost_sink_spool_bytes{instance=~"$instance"})"#,
        legend: "{{sink}}",
        unit: "bytes",
    },
    Health {
        title: "Write errors and rejected records per sink",
        expr: r#"sum by (sink) (rate(roost_sink_write_errors_total{instance=~"$instance"}[$__rate_interval]) + rate(roost_sink_records_rejected_total{instance=~"$instance"}[$__rate_interval]))"#,
        legend: "{{sink}}",
        unit: "short",
    },
    Health {
        title: "Dead letters",
        expr: r#"sum(rate(roost_dead_letters_total{instance=~"$instance"}[$__rate_interval]))"#,
        legend: "stored/s",
        unit: "short",
    },
    Health {
        title: "Processor errors",
        expr: r#"sum by (processor) (rate(roost_processor_errors_total{instance=~"$instance"}[$__rate_interval]))"#,
        legend: "{{processor}}",
        unit: "short",
    },
    Health {
        title: "Boards by state",
        expr: r#"sum by (state) (roost_boards{instance=~"$instance"})"#,
        legend: "{{state}}",
        unit: "short",
    },
];

/// Roost's health from its `/metrics`, through Prometheus.
pub fn health(ds: &Datasource) -> Value {
    let instance = json!({
        "name": "instance", "label": "Roost", "type": "query", "datasource": ds_ref(ds),
        "query": { "query": "label_values(roost_uptime_seconds, instance)", "refId": "A" },
        "definition": "label_values(roost_uptime_seconds, instance)",
        "refresh": 2, "multi": true, "includeAll": true, "allValue": ".*",
        "current": { "text": ["All"], "value": ["$__all"] }, "sort": 1, "options": [], "hide": 0,
    });
    let panels = HEALTH
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let target = json!({ "refId": "A", "expr": h.expr, "legendFormat": h.legend, "range": true });
            let grid = [(i as u32 % 2) * 12, (i as u32 / 2) * 8, 12, 8];
            let mut p = panel("timeseries", h.title, ds, vec![target], grid);
            p["fieldConfig"]["defaults"]["unit"] = json!(h.unit);
            p
        })
        .collect();
    dashboard("roost-health", "Roost: health", vec![instance], panels)
}
