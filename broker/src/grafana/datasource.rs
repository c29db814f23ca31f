//! One Grafana datasource per sink, from the sink's effective options: where the database is
//! and who to log in as, with every secret left as a reference to an environment variable
//! (Grafana expands `${VAR}` in provisioning files), and the query language its dashboard uses.

use std::path::Path;

use reqwest::Url;
use serde_json::{json, Map, Value};

use super::queries::Dialect;
use super::GrafanaError;

/// A sink's datasource: its provisioning entry and how its dashboard queries it.
#[derive(Debug, Clone)]
pub struct Datasource {
    pub uid: String,
    /// The plugin id (`type` in provisioning and in every panel's datasource reference).
    pub plugin: &'static str,
    /// The provisioning entry.
    pub entry: Value,
    pub dialect: Dialect,
    /// Environment variables the entry refers to, with what each must hold.
    pub env: Vec<(String, String)>,
}

/// A Grafana uid (at most 40 of `[A-Za-z0-9_-]`) made from `name`.
pub fn uid(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .collect();
    if clean.len() <= 40 {
        return clean;
    }
    let hash =
        name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{}-{:08x}", &clean[..31], hash as u32)
}

/// The environment variable holding `what` for the sink `sink`: `ROOST_GRAFANA_<SINK>_<WHAT>`.
pub fn env_var(sink: &str, what: &str) -> String {
    let sink: String =
        sink.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("ROOST_GRAFANA_{sink}_{what}")
}

fn text<'a>(options: &'a Value, key: &str) -> &'a str {
    options.get(key).and_then(Value::as_str).unwrap_or("")
}

fn entry(name: &str, uid: &str, plugin: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    m.insert("uid".into(), json!(uid));
    m.insert("type".into(), json!(plugin));
    m.insert("access".into(), json!("proxy"));
    m.insert("editable".into(), json!(false));
    m
}

/// The datasource of the sink `name` of `kind` with effective `options`.
pub fn for_sink(
    name: &str,
    kind: &str,
    options: &Value,
    data_dir: &Path,
) -> Result<Datasource, GrafanaError> {
    let uid = uid(&format!("roost-{name}"));
    let bad_url = |e: String| GrafanaError::Sink { sink: name.to_owned(), message: e };
    let mut env = Vec::new();
    let mut password = |url_has_one: bool, m: &mut Map<String, Value>| {
        if url_has_one {
            let var = env_var(name, "PASSWORD");
            m.insert("secureJsonData".into(), json!({ "password": format!("${{{var}}}") }));
            env.push((var, format!("the password of the {kind} sink {name:?}'s database user")));
        }
    };
    let (plugin, entry, dialect) = match kind {
        "sqlite" => {
            let path = Path::new(text(options, "path"));
            let path = std::path::absolute(data_dir.join(path)).unwrap_or_else(|_| data_dir.join(path));
            let plugin = "frser-sqlite-datasource";
            let mut m = entry(name, &uid, plugin);
            m.insert("jsonData".into(), json!({ "path": path.display().to_string() }));
            (plugin, m, Dialect::Sqlite)
        }
        "postgres" | "timescaledb" => {
            let url = Url::parse(text(options, "url")).map_err(|e| bad_url(format!("url: {e}")))?;
            let plugin = "grafana-postgresql-datasource";
            let mut m = entry(name, &uid, plugin);
            let sslmode = url
                .query_pairs()
                .find(|(k, _)| k == "sslmode")
                .map(|(_, v)| if v == "require" { "verify-full".to_owned() } else { v.into_owned() })
                .unwrap_or_else(|| "disable".into());
            m.insert("url".into(), json!(host_port(&url, 5432)));
            m.insert("user".into(), json!(url.username()));
            m.insert(
                "jsonData".into(),
                json!({
                    "database": url.path().trim_start_matches('/'),
                    "sslmode": sslmode,
                    "timescaledb": kind == "timescaledb",
                }),
            );
            password(url.password().is_some(), &mut m);
            let dialect = Dialect::Postgres {
                schema: text(options, "schema").into(),
                prefix: text(options, "table_prefix").into(),
            };
            (plugin, m, dialect)
        }
        "mysql" => {
            let url = Url::parse(text(options, "url")).map_err(|e| bad_url(format!("url: {e}")))?;
            let plugin = "mysql";
            let mut m = entry(name, &uid, plugin);
            m.insert("url".into(), json!(host_port(&url, 3306)));
            m.insert("user".into(), json!(url.username()));
            m.insert("jsonData".into(), json!({ "database": url.path().trim_start_matches('/') }));
            password(url.password().is_some(), &mut m);
            (plugin, m, Dialect::Mysql { prefix: text(options, "table_prefix").into() })
        }
        "influxdb" => {
            let plugin = "influxdb";
            let mut m = entry(name, &uid, plugin);
            m.insert("url".into(), json!(text(options, "url")));
            let v2 = text(options, "api") == "v2";
            let db = if v2 { text(options, "bucket") } else { text(options, "db") };
            let mut data = json!({ "version": "InfluxQL", "dbName": db, "httpMode": "GET" });
            if v2 {
                // InfluxDB 2.x and 3.x answer InfluxQL with a token (on 2.x, the bucket needs
                // a DBRP mapping: docs/grafana.md).
                let var = env_var(name, "TOKEN");
                data["httpHeaderName1"] = json!("Authorization");
                m.insert("secureJsonData".into(), json!({ "httpHeaderValue1": format!("Token ${{{var}}}") }));
                env.push((var, format!("an InfluxDB token that may read the bucket {db:?}")));
            } else if let Some(user) = options.get("username").and_then(Value::as_str) {
                m.insert("user".into(), json!(user));
                password(true, &mut m);
            }
            m.insert("jsonData".into(), data);
            let dialect = Dialect::InfluxQl {
                rp: options.get("rp").and_then(Value::as_str).map(str::to_owned),
                prefix: text(options, "measurement_prefix").into(),
            };
            (plugin, m, dialect)
        }
        "mongodb" => {
            let url = MongoUrl::parse(text(options, "url"))
                .ok_or_else(|| bad_url("url: not a MongoDB URL".into()))?;
            let plugin = "haohanyang-mongodb-datasource";
            let mut m = entry(name, &uid, plugin);
            let mut data = json!({
                "connectionStringScheme": url.scheme,
                "host": url.hosts,
                "database": text(options, "database"),
                "connectionOptions": url.options,
                "authType": if url.user.is_empty() { "none" } else { "username-password" },
            });
            if !url.user.is_empty() {
                data["username"] = json!(url.user);
            }
            m.insert("jsonData".into(), data);
            password(url.has_password, &mut m);
            (plugin, m, Dialect::Mongo)
        }
        other => {
            return Err(GrafanaError::Sink {
                sink: name.to_owned(),
                message: format!("Roost has no Grafana datasource for the sink kind {other:?}"),
            })
        }
    };
    Ok(Datasource { uid, plugin, entry: Value::Object(entry), dialect, env })
}

fn host_port(url: &Url, default: u16) -> String {
    format!("{}:{}", url.host_str().unwrap_or("localhost"), url.port().unwrap_or(default))
}

/// The parts of a MongoDB connection string a datasource needs (several hosts do not fit a
/// URL parser).
struct MongoUrl {
    scheme: &'static str,
    user: String,
    has_password: bool,
    hosts: String,
    options: String,
}

impl MongoUrl {
    fn parse(url: &str) -> Option<MongoUrl> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("mongodb+srv://") {
            ("mongodb+srv", rest)
        } else {
            ("mongodb", url.strip_prefix("mongodb://")?)
        };
        let (authority, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let (auth, hosts) = authority.rsplit_once('@').unwrap_or(("", authority));
        let (user, password) = auth.split_once(':').map_or((auth, None), |(u, p)| (u, Some(p)));
        let user = percent_encoding::percent_decode_str(user).decode_utf8_lossy().into_owned();
        let options = tail.split_once('?').map_or("", |(_, q)| q).to_owned();
        Some(MongoUrl { scheme, user, has_password: password.is_some(), hosts: hosts.to_owned(), options })
    }
}

/// Roost's own metrics, through the Prometheus server that scrapes `/metrics`.
pub fn prometheus(url: &str) -> Datasource {
    let plugin = "prometheus";
    let mut m = entry("roost-metrics", "roost-prometheus", plugin);
    m.insert("url".into(), json!(url));
    m.insert("jsonData".into(), json!({ "timeInterval": "15s" }));
    // The health dashboard's queries are PromQL; this dialect is never used for it.
    Datasource {
        uid: "roost-prometheus".into(),
        plugin,
        entry: Value::Object(m),
        dialect: Dialect::Sqlite,
        env: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_become_environment_references() {
        let options = json!({"url": "postgresql://roost:s3cret@db.example:5433/tele?sslmode=require", "schema": "public", "table_prefix": ""});
        let ds = for_sink("pg main", "postgres", &options, Path::new("/d")).unwrap();
        let text = ds.entry.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(ds.entry["secureJsonData"]["password"], "${ROOST_GRAFANA_PG_MAIN_PASSWORD}");
        assert_eq!(ds.entry["url"], "db.example:5433");
        assert_eq!(ds.entry["jsonData"]["database"], "tele");
        assert_eq!(ds.entry["jsonData"]["sslmode"], "verify-full");
        assert_eq!(ds.env[0].0, "ROOST_GRAFANA_PG_MAIN_PASSWORD");
    }

    #[test]
    fn mongodb_urls_with_several_hosts_and_options() {
        let options =
            json!({"url": "mongodb://ro%40x:pw@a:1,b:2/admin?replicaSet=rs&tls=true", "database": "roost"});
        let ds = for_sink("m", "mongodb", &options, Path::new("/d")).unwrap();
        assert!(!ds.entry.to_string().contains("pw"));
        assert_eq!(ds.entry["jsonData"]["host"], "a:1,b:2");
        assert_eq!(ds.entry["jsonData"]["username"], "ro@x");
        assert_eq!(ds.entry["jsonData"]["connectionOptions"], "replicaSet=rs&tls=true");
    }

    #[test]
    fn influxdb_v2_tokens_and_long_names() {
        let options = json!({"url": "http://i:8086", "api": "v2", "bucket": "b", "token": "tok", "measurement_prefix": ""});
        let ds = for_sink("i", "influxdb", &options, Path::new("/d")).unwrap();
        assert!(!ds.entry.to_string().contains("tok\""));
        assert_eq!(ds.entry["secureJsonData"]["httpHeaderValue1"], "Token ${ROOST_GRAFANA_I_TOKEN}");
        let long = uid(&"x".repeat(60));
        assert_eq!(long.len(), 40);
        assert_ne!(long, uid(&"x".repeat(61)));
    }
}
