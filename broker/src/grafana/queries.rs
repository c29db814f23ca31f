//! The queries behind the measurement dashboards, one set per query language: which
//! measurements exist, which numeric fields a measurement has, which devices wrote to it, a
//! field's mean per device per interval, and each device's latest row.
//!
//! Queries use Grafana's variables (`$measurement`, `$field`, `${device:...}`) and the macros
//! of the datasource they run on (`$__timeFilter`, `$__timeGroupAlias` for PostgreSQL and
//! MySQL; `$timeFilter`, `$__interval` for InfluxQL; the global `$__from`, `$__to` and
//! `$__interval_ms` for SQLite and MongoDB), so one dashboard serves every measurement,
//! including ones that appear after it was made.

use serde_json::{json, Value};

/// What a sink's database is queried with.
#[derive(Debug, Clone)]
pub enum Dialect {
    Sqlite,
    /// PostgreSQL and TimescaleDB: tables in `schema`, names starting with `prefix`.
    Postgres {
        schema: String,
        prefix: String,
    },
    Mysql {
        prefix: String,
    },
    /// InfluxQL (InfluxDB 1.x, and 2.x/3.x through their InfluxQL endpoint): measurements
    /// starting with `prefix`, in retention policy `rp` when set.
    InfluxQl {
        rp: Option<String>,
        prefix: String,
    },
    /// An aggregation pipeline per panel, on the collection `$measurement`, for the community
    /// MongoDB datasource (`haohanyang-mongodb-datasource`: time series as `ts`, `name`, `value`).
    Mongo,
}

/// A variable that lists values from the database.
#[derive(Debug, Clone)]
pub struct VarQuery {
    /// The query, as Grafana stores it in the variable (a string, or the plugin's object).
    pub query: Value,
    /// Whether it must run again when the time range changes (it filters on time).
    pub on_time_range: bool,
}

/// A panel's query: its target, as Grafana stores it in the panel.
pub type Target = Value;

/// The queries of one measurement dashboard.
#[derive(Debug, Clone)]
pub struct Queries {
    /// `None`: the measurement is typed in a text box (MongoDB cannot list collections from
    /// an aggregation).
    pub measurements: Option<VarQuery>,
    pub fields: VarQuery,
    pub devices: VarQuery,
    /// A field's mean per device per `$__interval`: one series per device.
    pub series: Target,
    /// Each selected device's latest row in the range.
    pub latest: Target,
}

/// `'...'`, for a value put inside an SQL string literal.
fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `"..."` for a PostgreSQL or SQLite identifier.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn sql_target(sql: String, format: &str) -> Target {
    json!({ "refId": "A", "editorMode": "code", "rawQuery": true, "format": format, "rawSql": sql })
}

fn var(query: String, on_time_range: bool) -> VarQuery {
    VarQuery { query: Value::String(query), on_time_range }
}

impl Dialect {
    pub fn queries(&self) -> Queries {
        match self {
            Dialect::Sqlite => sqlite(),
            Dialect::Postgres { schema, prefix } => postgres(schema, prefix),
            Dialect::Mysql { prefix } => mysql(prefix),
            Dialect::InfluxQl { rp, prefix } => influxql(rp.as_deref(), prefix),
            Dialect::Mongo => mongo(),
        }
    }
}

fn sqlite() -> Queries {
    let range = "time >= $__from * 1000000 AND time < $__to * 1000000";
    let target = |sql: String, kind: &str| json!({ "refId": "A", "queryType": kind, "queryText": sql, "rawQueryText": sql, "timeColumns": ["time"] });
    Queries {
        measurements: Some(var(
            "SELECT m.name FROM sqlite_master m WHERE m.type = 'table' \
             AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) WHERE cid = 0 AND name = 'time') \
             AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) WHERE cid = 1 AND name = 'device') \
             ORDER BY 1"
                .into(),
            false,
        )),
        fields: var(
            "SELECT name FROM pragma_table_info('$measurement') \
             WHERE cid > 1 AND type IN ('REAL', 'INTEGER') ORDER BY cid"
                .into(),
            false,
        ),
        devices: var(format!("SELECT DISTINCT device FROM \"$measurement\" WHERE {range} ORDER BY 1"), true),
        series: target(
            format!(
                "SELECT (time / 1000000 / $__interval_ms) * $__interval_ms AS time, device, \
                 avg(\"$field\") AS value FROM \"$measurement\" \
                 WHERE {range} AND device IN (${{device:sqlstring}}) GROUP BY 1, 2 ORDER BY 1"
            ),
            "time series",
        ),
        // SQLite takes the bare columns of a max() query from the row holding the max.
        latest: target(
            format!(
                "SELECT datetime(max(time) / 1000000000, 'unixepoch') AS latest, * FROM \"$measurement\" \
                 WHERE {range} AND device IN (${{device:sqlstring}}) GROUP BY device ORDER BY device"
            ),
            "table",
        ),
    }
}

fn postgres(schema: &str, prefix: &str) -> Queries {
    let schema_lit = sql_str(schema);
    let table = format!("{}.\"$measurement\"", quoted(schema));
    let prefix_cond = if prefix.is_empty() {
        String::new()
    } else {
        format!(" AND starts_with(c.table_name, {})", sql_str(prefix))
    };
    let devices = "device IN (${device:sqlstring})";
    Queries {
        measurements: Some(var(
            format!(
                "SELECT c.table_name FROM information_schema.columns c \
                 JOIN information_schema.columns d ON d.table_schema = c.table_schema \
                 AND d.table_name = c.table_name AND d.ordinal_position = 2 AND d.column_name = 'device' \
                 WHERE c.table_schema = {schema_lit} AND c.ordinal_position = 1 AND c.column_name = 'time'\
                 {prefix_cond} ORDER BY 1"
            ),
            false,
        )),
        fields: var(
            format!(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = {schema_lit} \
                 AND table_name = '$measurement' AND ordinal_position > 2 \
                 AND data_type IN ('bigint', 'double precision') ORDER BY ordinal_position"
            ),
            false,
        ),
        devices: var(
            format!("SELECT DISTINCT device FROM {table} WHERE $__timeFilter(time) ORDER BY 1"),
            true,
        ),
        series: sql_target(
            format!(
                "SELECT $__timeGroupAlias(time, $__interval), device AS metric, avg(\"$field\") AS value \
                 FROM {table} WHERE $__timeFilter(time) AND {devices} GROUP BY 1, 2 ORDER BY 1"
            ),
            "time_series",
        ),
        latest: sql_target(
            format!(
                "SELECT DISTINCT ON (device) * FROM {table} WHERE $__timeFilter(time) AND {devices} \
                 ORDER BY device, time DESC"
            ),
            "table",
        ),
    }
}

fn mysql(prefix: &str) -> Queries {
    let prefix_cond = if prefix.is_empty() {
        String::new()
    } else {
        format!(" AND LEFT(c.table_name, {}) = {}", prefix.chars().count(), sql_str(prefix))
    };
    let devices = "device IN (${device:sqlstring})";
    Queries {
        measurements: Some(var(
            format!(
                "SELECT c.table_name AS name FROM information_schema.columns c \
                 JOIN information_schema.columns d ON d.table_schema = c.table_schema \
                 AND d.table_name = c.table_name AND d.ordinal_position = 2 AND d.column_name = 'device' \
                 WHERE c.table_schema = DATABASE() AND c.ordinal_position = 1 AND c.column_name = 'time'\
                 {prefix_cond} ORDER BY 1"
            ),
            false,
        )),
        fields: var(
            "SELECT column_name AS name FROM information_schema.columns WHERE table_schema = DATABASE() \
             AND table_name = '$measurement' AND ordinal_position > 2 \
             AND data_type IN ('bigint', 'double') ORDER BY ordinal_position"
                .into(),
            false,
        ),
        devices: var(
            "SELECT DISTINCT device FROM `$measurement` WHERE $__timeFilter(time) ORDER BY 1".into(),
            true,
        ),
        series: sql_target(
            format!(
                "SELECT $__timeGroupAlias(time, $__interval), device AS metric, avg(`$field`) AS value \
                 FROM `$measurement` WHERE $__timeFilter(time) AND {devices} GROUP BY 1, 2 ORDER BY 1"
            ),
            "time_series",
        ),
        latest: sql_target(
            format!(
                "SELECT t.* FROM `$measurement` t JOIN (SELECT device, max(time) AS time FROM `$measurement` \
                 WHERE $__timeFilter(time) AND {devices} GROUP BY device) l \
                 ON t.device = l.device AND t.time = l.time ORDER BY t.device"
            ),
            "table",
        ),
    }
}

/// `/.../` contents matching `s` literally.
fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\/.^$*+?()[]{}|-".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn influxql(rp: Option<&str>, prefix: &str) -> Queries {
    let from = match rp {
        Some(rp) => format!("{}.\"$measurement\"", quoted(rp)),
        None => "\"$measurement\"".into(),
    };
    let measurements = if prefix.is_empty() {
        "SHOW MEASUREMENTS".to_owned()
    } else {
        format!("SHOW MEASUREMENTS WITH MEASUREMENT =~ /^{}/", regex_escape(prefix))
    };
    let devices = "\"device\" =~ /^${device:regex}$/";
    let target = |q: String, format: &str| json!({ "refId": "A", "rawQuery": true, "query": q, "resultFormat": format, "alias": "$tag_device" });
    Queries {
        measurements: Some(var(measurements, false)),
        fields: var(format!("SHOW FIELD KEYS FROM {from}"), false),
        devices: var(format!("SHOW TAG VALUES FROM {from} WITH KEY = \"device\""), false),
        // A field picked by a regular expression: a string field gives no series instead of
        // an error (InfluxQL's mean() refuses strings by name, skips them in a regex).
        series: target(
            format!(
                "SELECT mean(/^$field$/) FROM {from} WHERE {devices} AND $timeFilter \
                 GROUP BY time($__interval), \"device\" fill(none)"
            ),
            "time_series",
        ),
        latest: target(
            format!("SELECT last(*) FROM {from} WHERE {devices} AND $timeFilter GROUP BY \"device\""),
            "table",
        ),
    }
}

fn mongo() -> Queries {
    let range = r#"{ "$match": { "time": { "$gte": { "$date": { "$numberLong": "$__from" } }, "$lt": { "$date": { "$numberLong": "$__to" } } } } }"#;
    let devices = r#"{ "$match": { "meta.device": { "$in": ${device:json} } } }"#;
    let var = |pipeline: String| VarQuery {
        query: json!({ "refId": "A", "collection": "$measurement", "queryText": pipeline }),
        on_time_range: true,
    };
    let target = |pipeline: String, kind: &str| json!({ "refId": "A", "collection": "$measurement", "queryText": pipeline, "queryType": kind, "queryLanguage": "json" });
    Queries {
        measurements: None,
        // The numeric fields of the range's first thousand documents.
        fields: var(format!(
            r#"[ {range}, {{ "$limit": 1000 }}, {{ "$project": {{ "kv": {{ "$objectToArray": "$$ROOT" }} }} }}, {{ "$unwind": "$kv" }}, {{ "$match": {{ "kv.v": {{ "$type": "number" }} }} }}, {{ "$group": {{ "_id": "$kv.k" }} }}, {{ "$sort": {{ "_id": 1 }} }}, {{ "$project": {{ "_id": 0, "value": "$_id" }} }} ]"#
        )),
        devices: var(format!(
            r#"[ {range}, {{ "$group": {{ "_id": "$meta.device" }} }}, {{ "$sort": {{ "_id": 1 }} }}, {{ "$project": {{ "_id": 0, "value": "$_id" }} }} ]"#
        )),
        series: target(
            format!(
                r#"[ {range}, {devices}, {{ "$group": {{ "_id": {{ "device": "$meta.device", "time": {{ "$subtract": [ {{ "$toLong": "$time" }}, {{ "$mod": [ {{ "$toLong": "$time" }}, $__interval_ms ] }} ] }} }}, "value": {{ "$avg": "$$field" }} }} }}, {{ "$match": {{ "value": {{ "$ne": null }} }} }}, {{ "$project": {{ "_id": 0, "ts": {{ "$toDate": "$_id.time" }}, "name": "$_id.device", "value": 1 }} }}, {{ "$sort": {{ "ts": 1, "name": 1 }} }} ]"#
            ),
            "timeseries",
        ),
        latest: target(
            format!(
                r#"[ {range}, {devices}, {{ "$sort": {{ "time": -1 }} }}, {{ "$group": {{ "_id": "$meta.device", "doc": {{ "$first": "$$ROOT" }} }} }}, {{ "$replaceRoot": {{ "newRoot": "$doc" }} }}, {{ "$project": {{ "_id": 0 }} }}, {{ "$sort": {{ "meta.device": 1 }} }} ]"#
            ),
            "table",
        ),
    }
}
