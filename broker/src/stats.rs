//! Counters shared by the actors, read by the admin API: `/metrics` renders them as Prometheus
//! text and `/api/v1/status` as JSON, so both always agree.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use roost_processors::wasm::CallSummary;
use roost_spool::{Monitor, Recovery};
use serde::Serialize;

use crate::prometheus::{self, Kind};

/// Server-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// MQTT connections open now.
    pub connections: AtomicI64,
    /// PUBLISHes the broker accepted.
    pub messages_in: AtomicU64,
    /// Accepted messages that no pipeline's topic filter matched.
    pub messages_unrouted: AtomicU64,
    /// PUBLISHes refused because Roost was stopping.
    pub messages_refused: AtomicU64,
    /// Retained messages held, and their payload bytes.
    pub retained_messages: AtomicU64,
    pub retained_bytes: AtomicU64,
    /// Retained publishes delivered but not retained: over `[mqtt.retain]`'s limits.
    pub retained_refused: AtomicU64,
    /// Messages for subscribers the broker dropped: a session's queue full, expired, or the
    /// subscriber gone.
    pub mqtt_dropped: AtomicU64,
    /// QoS 2 messages a client sent again after a reconnect, acknowledged and not stored twice.
    pub qos2_resent: AtomicU64,
}

/// One pipeline's counters.
#[derive(Debug)]
pub struct PipelineStats {
    pub name: String,
    pub messages: AtomicU64,
    pub records: AtomicU64,
    pub errors: AtomicU64,
}

/// One sink's counters.
#[derive(Debug)]
pub struct SinkStats {
    pub name: String,
    pub kind: String,
    /// Records handed to the sink.
    pub records_in: AtomicU64,
    pub records_written: AtomicU64,
    /// Records the database refused for good (bad name, bad value).
    pub records_rejected: AtomicU64,
    /// Records that could not be written and were given up on (at a stop deadline, or a
    /// configuration error).
    pub records_failed: AtomicU64,
    pub batches: AtomicU64,
    /// Failed write attempts (each retried or given up on).
    pub write_errors: AtomicU64,
    /// How long successful writes took.
    pub write_latency: Histogram,
    pub last_error: Mutex<Option<String>>,
    /// Records of a replayed batch (after a crash, or a write cut by the network) that the
    /// database already held, and did not store again.
    pub records_already_stored: AtomicU64,
    /// Waiting to retry a failed write.
    pub retrying: AtomicBool,
    /// The sink's spool: backlog, size, age of the oldest entry.
    pub spool: Monitor,
    /// What opening the spool found (damage left by a crash).
    pub recovery: Recovery,
    /// Spool entries whose checksum matched but that could not be read as records (skipped).
    pub spool_undecodable: AtomicU64,
    /// How the sink keeps a batch replayed after a crash from being stored twice.
    pub replay_safety: &'static str,
}

/// A Prometheus histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds, in seconds, ascending; `+Inf` is implied.
    bounds: &'static [f64],
    /// Observations at or under each bound (not cumulative), then over the last one.
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
}

/// Buckets for batch write latency: 1 ms to 10 s.
pub const WRITE_LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: zero(),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let bucket = self.bounds.iter().position(|b| secs <= *b).unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// `(le, cumulative count)` per bucket, `+Inf` last.
    pub fn cumulative(&self) -> Vec<(String, u64)> {
        let mut total = 0;
        let mut out = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Relaxed);
            let le = self.bounds.get(i).map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            out.push((le, total));
        }
        out
    }

    pub fn sum_secs(&self) -> f64 {
        self.sum_micros.load(Relaxed) as f64 / 1e6
    }
}

impl PipelineStats {
    pub fn new(name: &str) -> Self {
        PipelineStats { name: name.into(), messages: zero(), records: zero(), errors: zero() }
    }
}

impl SinkStats {
    pub fn new(
        name: &str,
        kind: &str,
        spool: Monitor,
        recovery: Recovery,
        replay_safety: &'static str,
    ) -> Self {
        SinkStats {
            retrying: AtomicBool::new(false),
            records_already_stored: zero(),
            spool,
            recovery,
            spool_undecodable: zero(),
            replay_safety,
            name: name.into(),
            kind: kind.into(),
            records_in: zero(),
            records_written: zero(),
            records_rejected: zero(),
            records_failed: zero(),
            batches: zero(),
            write_errors: zero(),
            write_latency: Histogram::new(WRITE_LATENCY_BUCKETS),
            last_error: Mutex::new(None),
        }
    }

    /// Records handed to the sink and not yet written, rejected, given up on or dropped from a
    /// full spool.
    pub fn backlog(&self) -> u64 {
        let done = self.records_written.load(Relaxed)
            + self.records_rejected.load(Relaxed)
            + self.records_failed.load(Relaxed)
            + self.records_already_stored.load(Relaxed)
            + self.spool.stats().dropped_weight_total;
        self.records_in.load(Relaxed).saturating_sub(done)
    }

    pub fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }
}

fn zero() -> AtomicU64 {
    AtomicU64::new(0)
}

/// `GET /api/v1/status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub uptime_secs: u64,
    pub listeners: Listeners,
    pub connections: i64,
    pub messages_in: u64,
    pub messages_unrouted: u64,
    pub messages_refused: u64,
    pub pipelines: Vec<PipelineStatus>,
    pub sinks: Vec<SinkStatus>,
    pub dead_letters: DeadLetterStatus,
}

/// Dead-letter counters since start (`GET /api/v1/deadletters` lists the entries).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct DeadLetterStatus {
    pub stored: u64,
    pub dropped: u64,
    pub replayed: u64,
    /// Over its bounds with only records left, which are never evicted.
    #[serde(default)]
    pub over_bounds: bool,
}

impl DeadLetterStatus {
    pub fn of(s: &crate::deadletter::DeadLetterStats) -> Self {
        DeadLetterStatus {
            stored: s.stored.load(Relaxed),
            dropped: s.dropped.load(Relaxed),
            replayed: s.replayed.load(Relaxed),
            over_bounds: s.over_bounds.load(Relaxed),
        }
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Listeners {
    pub mqtt: String,
    pub api: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PipelineStatus {
    pub name: String,
    pub topics: Vec<String>,
    /// The processor it follows (`name`) or pins (`name@version`); none: the JSON mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processor: Option<String>,
    pub sinks: Vec<String>,
    pub messages: u64,
    pub records: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SinkStatus {
    pub name: String,
    pub kind: String,
    pub records_written: u64,
    pub records_rejected: u64,
    pub records_failed: u64,
    pub batches: u64,
    pub write_errors: u64,
    /// Records handed to the sink since Roost started and not yet written (see `spool` for
    /// everything on disk, including what an earlier run left).
    pub backlog: u64,
    pub last_error: Option<String>,
    /// Records of a replayed batch the database already held (not stored twice).
    #[serde(default)]
    pub records_already_stored: u64,
    /// Waiting to retry a failed write.
    #[serde(default)]
    pub retrying: bool,
    #[serde(default)]
    pub replay_safety: String,
    #[serde(default)]
    pub spool: SpoolStatus,
}

/// A sink's spool, as status shows it.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct SpoolStatus {
    /// Entries (each a chunk of one pipeline batch's records) not yet written.
    pub entries: u64,
    pub bytes: u64,
    /// How long the oldest entry has waited, in milliseconds.
    pub oldest_age_ms: Option<u64>,
    /// Whether appends wait for space (policy `block`).
    pub full: bool,
    /// Entries dropped unwritten while full (policy `drop-oldest`), and the records they held.
    pub dropped_total: u64,
    pub dropped_records_total: u64,
    /// Entries lost to damage (found while reading), and bytes found damaged on open.
    pub damaged_total: u64,
    pub damaged_bytes_on_open: u64,
    /// Entries skipped because they could not be read as records.
    pub undecodable_total: u64,
    /// Failed spool writes or syncs (each retried: a full disk).
    pub write_errors_total: u64,
}

impl SpoolStatus {
    pub fn of(s: &SinkStats) -> Self {
        let now = s.spool.stats();
        SpoolStatus {
            entries: now.entries,
            bytes: now.bytes,
            oldest_age_ms: now.oldest_age.map(|d| d.as_millis() as u64),
            full: now.full,
            dropped_total: now.dropped_total,
            dropped_records_total: now.dropped_weight_total,
            damaged_total: now.damaged_total,
            damaged_bytes_on_open: s.recovery.damaged_bytes,
            undecodable_total: s.spool_undecodable.load(Relaxed),
            write_errors_total: now.write_errors_total,
        }
    }
}

impl SinkStatus {
    pub fn of(s: &SinkStats) -> Self {
        SinkStatus {
            name: s.name.clone(),
            kind: s.kind.clone(),
            records_written: s.records_written.load(Relaxed),
            records_rejected: s.records_rejected.load(Relaxed),
            records_failed: s.records_failed.load(Relaxed),
            batches: s.batches.load(Relaxed),
            write_errors: s.write_errors.load(Relaxed),
            backlog: s.backlog(),
            last_error: s.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            retrying: s.retrying.load(Relaxed),
            records_already_stored: s.records_already_stored.load(Relaxed),
            replay_safety: s.replay_safety.into(),
            spool: SpoolStatus::of(s),
        }
    }
}

/// One metric family read from each item of a kind (the server, a pipeline, a sink, a
/// processor version).
struct Metric<T> {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    value: fn(&T) -> f64,
}

impl<T> Metric<T> {
    const fn counter(name: &'static str, help: &'static str, value: fn(&T) -> f64) -> Self {
        Metric { name, kind: Kind::Counter, help, value }
    }

    const fn gauge(name: &'static str, help: &'static str, value: fn(&T) -> f64) -> Self {
        Metric { name, kind: Kind::Gauge, help, value }
    }
}

/// Writes each metric with one sample per item, labelled by `labels(item)`.
fn write_metrics<T>(
    out: &mut String,
    metrics: &[Metric<T>],
    items: &[&T],
    labels: impl Fn(&T) -> Vec<(&'static str, String)>,
) {
    let labels: Vec<Vec<(&str, String)>> = items.iter().map(|item| labels(item)).collect();
    for m in metrics {
        let mut family = prometheus::family(out, m.name, m.kind, m.help);
        for (item, labels) in items.iter().zip(&labels) {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            family.sample(&labels, (m.value)(item));
        }
    }
}

/// What the server-wide families read.
struct Server<'a> {
    stats: &'a Stats,
    dead_letters: &'a DeadLetterStatus,
    uptime: Duration,
}

fn load(c: &AtomicU64) -> f64 {
    c.load(Relaxed) as f64
}

#[rustfmt::skip]
fn server_metrics<'a>() -> [Metric<Server<'a>>; 14] {
    [
        Metric::gauge("roost_uptime_seconds", "Seconds since Roost started.", |s| s.uptime.as_secs_f64()),
        Metric::gauge("roost_mqtt_connections", "Open MQTT connections.", |s| s.stats.connections.load(Relaxed) as f64),
        Metric::counter("roost_messages_in_total", "PUBLISHes accepted by the broker.", |s| load(&s.stats.messages_in)),
        Metric::counter("roost_messages_unrouted_total", "Accepted messages no pipeline matched.", |s| load(&s.stats.messages_unrouted)),
        Metric::gauge("roost_mqtt_retained_messages", "Retained messages held.", |s| load(&s.stats.retained_messages)),
        Metric::gauge("roost_mqtt_retained_bytes", "Payload bytes of the retained messages held.", |s| load(&s.stats.retained_bytes)),
        Metric::counter("roost_mqtt_retained_refused_total", "Retained publishes delivered but not retained (over [mqtt.retain] limits).", |s| load(&s.stats.retained_refused)),
        Metric::counter("roost_mqtt_dropped_total", "Messages for subscribers dropped (a session's queue full, expired, subscriber gone).", |s| load(&s.stats.mqtt_dropped)),
        Metric::counter("roost_mqtt_qos2_resent_total", "QoS 2 messages resent after a reconnect, acknowledged and not stored twice.", |s| load(&s.stats.qos2_resent)),
        Metric::counter("roost_messages_refused_total", "PUBLISHes refused because Roost was stopping.", |s| load(&s.stats.messages_refused)),
        Metric::counter("roost_dead_letters_total", "Dead letters written to the store.", |s| s.dead_letters.stored as f64),
        Metric::counter("roost_dead_letters_dropped_total", "Dead letters lost (message letters evicted past the bounds, or the store failing).", |s| s.dead_letters.dropped as f64),
        Metric::counter("roost_dead_letters_replayed_total", "Dead letters sent back to their sink or pipeline.", |s| s.dead_letters.replayed as f64),
        Metric::gauge("roost_dead_letters_over_bounds", "1 while the store is over its bounds with only records left.", |s| u8::from(s.dead_letters.over_bounds).into()),
    ]
}

#[rustfmt::skip]
const PIPELINE_METRICS: [Metric<PipelineStats>; 3] = [
    Metric::counter("roost_pipeline_messages_total", "Messages a pipeline processed.", |p| load(&p.messages)),
    Metric::counter("roost_pipeline_records_total", "Records a pipeline produced.", |p| load(&p.records)),
    Metric::counter("roost_pipeline_mapping_errors_total", "Messages a pipeline could not map to records.", |p| load(&p.errors)),
];

#[rustfmt::skip]
const SINK_METRICS: [Metric<SinkStats>; 14] = [
    Metric::counter("roost_sink_records_written_total", "Records a sink wrote.", |s| load(&s.records_written)),
    Metric::counter("roost_sink_batches_total", "Batches a sink wrote.", |s| load(&s.batches)),
    Metric::counter("roost_sink_records_rejected_total", "Records a database refused for good.", |s| load(&s.records_rejected)),
    Metric::counter("roost_sink_records_failed_total", "Records given up on without being written.", |s| load(&s.records_failed)),
    Metric::counter("roost_sink_write_errors_total", "Failed write attempts.", |s| load(&s.write_errors)),
    Metric::gauge("roost_sink_backlog_records", "Records handed to a sink since start and not yet written.", |s| s.backlog() as f64),
    Metric::gauge("roost_sink_retrying", "1 while a sink waits to retry a failed write.", |s| f64::from(u8::from(s.retrying.load(Relaxed)))),
    Metric::gauge("roost_sink_spool_entries", "Spool entries waiting to be written.", |s| s.spool.stats().entries as f64),
    Metric::gauge("roost_sink_spool_bytes", "Bytes of a sink's spool on disk.", |s| s.spool.stats().bytes as f64),
    Metric::gauge("roost_sink_spool_oldest_age_seconds", "Age of the oldest spool entry not yet written.", |s| s.spool.stats().oldest_age.map_or(0.0, |d| d.as_secs_f64())),
    Metric::gauge("roost_sink_spool_full", "1 while appends to a sink's spool wait for space.", |s| f64::from(u8::from(s.spool.stats().full))),
    Metric::counter("roost_sink_spool_dropped_total", "Spool entries dropped unwritten while full (drop-oldest).", |s| s.spool.stats().dropped_total as f64),
    Metric::counter("roost_sink_spool_dropped_records_total", "Records in the spool entries dropped unwritten while full (drop-oldest).", |s| s.spool.stats().dropped_weight_total as f64),
    Metric::counter("roost_sink_spool_damaged_total", "Spool entries lost to damage on disk, or unreadable.", |s| s.spool.stats().damaged_total as f64 + load(&s.spool_undecodable)),
];

fn sink_labels(s: &SinkStats) -> Vec<(&'static str, String)> {
    vec![("sink", s.name.clone()), ("kind", s.kind.clone())]
}

/// Renders the counters in the Prometheus text exposition format.
pub fn prometheus(
    stats: &Stats,
    pipelines: &[&PipelineStats],
    sinks: &[&SinkStats],
    dead_letters: &DeadLetterStatus,
    uptime: Duration,
) -> String {
    let mut out = String::with_capacity(4096);
    let server = Server { stats, dead_letters, uptime };
    write_metrics(&mut out, &server_metrics(), &[&server], |_| Vec::new());
    write_metrics(&mut out, &PIPELINE_METRICS, pipelines, |p| vec![("pipeline", p.name.clone())]);
    write_metrics(&mut out, &SINK_METRICS, sinks, sink_labels);
    let mut latency = prometheus::family(
        &mut out,
        "roost_sink_write_duration_seconds",
        Kind::Histogram,
        "How long successful batch writes took.",
    );
    for s in sinks {
        let labels = [("sink", s.name.as_str()), ("kind", s.kind.as_str())];
        for (le, n) in s.write_latency.cumulative() {
            latency.suffixed("_bucket", &[labels[0], labels[1], ("le", le.as_str())], n as f64);
        }
        latency.suffixed("_sum", &labels, s.write_latency.sum_secs());
        latency.suffixed("_count", &labels, s.write_latency.count() as f64);
    }
    out
}

/// Appends a counter family with one label, one sample per `(label value, count)`.
pub fn labelled_counters<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    samples: impl IntoIterator<Item = (&'a str, u64)>,
) {
    let mut family = prometheus::family(out, name, Kind::Counter, help);
    for (value, n) in samples {
        family.sample(&[(label, value)], n as f64);
    }
}

/// One processor version's call statistics.
struct Version<'a> {
    processor: &'a str,
    version: u32,
    calls: &'a CallSummary,
}

#[rustfmt::skip]
fn processor_metrics_list<'a>() -> [Metric<Version<'a>>; 5] {
    [
        Metric::counter("roost_processor_calls_total", "Messages a processor version was called for.", |v| v.calls.calls as f64),
        Metric::counter("roost_processor_errors_total", "Messages a processor version failed (refused, trapped, over a limit, could not start).", |v| v.calls.errors as f64),
        Metric::gauge("roost_processor_failing", "1 while a processor version has failed many messages in a row.", |v| f64::from(u8::from(v.calls.failing))),
        Metric::gauge("roost_processor_call_mean_microseconds", "Mean time of a processor call.", |v| v.calls.mean_us),
        Metric::gauge("roost_processor_call_p99_microseconds", "99th percentile of a processor call's time (bucket bound).", |v| v.calls.p99_us),
    ]
}

/// Per processor version: calls, errors, whether it is failing, mean and p99 call time.
pub fn processor_metrics(out: &mut String, processors: &[roost_processors::wasm::ProcessorInfo]) {
    let versions: Vec<Version> = processors
        .iter()
        .flat_map(|p| {
            p.versions.iter().map(|v| Version {
                processor: &p.name,
                version: v.info.version,
                calls: &v.calls,
            })
        })
        .collect();
    let versions: Vec<&Version> = versions.iter().collect();
    write_metrics(out, &processor_metrics_list(), &versions, |v| {
        vec![("processor", v.processor.to_owned()), ("version", v.version.to_string())]
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_counters_render_one_sample_per_label_value() {
        let mut out = String::new();
        labelled_counters(&mut out, "roost_x_total", "X.", "event", [("a", 1), ("b\"", 2)]);
        assert_eq!(
            out,
            "# HELP roost_x_total X.\n# TYPE roost_x_total counter\nroost_x_total{event=\"a\"} 1\nroost_x_total{event=\"b\\\"\"} 2\n"
        );
    }

    #[test]
    fn prometheus_text_has_labels_and_values() {
        let stats = Stats::default();
        stats.messages_in.store(7, Relaxed);
        let p = PipelineStats::new("default");
        p.errors.store(2, Relaxed);
        let dir = tempfile::tempdir().unwrap();
        let (spool, _reader, recovery) = roost_spool::Spool::open(dir.path(), Default::default()).unwrap();
        let s = SinkStats::new("db\"1", "sqlite", spool.monitor(), recovery, "checkpoint");
        s.records_in.store(10, Relaxed);
        s.records_written.store(4, Relaxed);
        s.write_latency.observe(Duration::from_millis(3));
        s.write_latency.observe(Duration::from_secs(60));
        let dead = DeadLetterStatus { stored: 3, dropped: 0, replayed: 1, over_bounds: false };
        let text = prometheus(&stats, &[&p], &[&s], &dead, Duration::from_secs(1));
        assert!(text.contains("roost_dead_letters_total 3\n"), "{text}");
        assert!(text.contains("roost_messages_in_total 7\n"), "{text}");
        assert!(text.contains("roost_pipeline_mapping_errors_total{pipeline=\"default\"} 2\n"));
        assert!(text.contains("roost_sink_records_written_total{sink=\"db\\\"1\",kind=\"sqlite\"} 4\n"));
        assert!(text.contains("roost_sink_backlog_records{sink=\"db\\\"1\",kind=\"sqlite\"} 6\n"));
        assert!(text.contains("# TYPE roost_sink_write_duration_seconds histogram\n"), "{text}");
        assert!(text.contains("roost_sink_spool_entries{sink=\"db\\\"1\",kind=\"sqlite\"} 0\n"), "{text}");
        let labels = "sink=\"db\\\"1\",kind=\"sqlite\"";
        for (le, n) in [("0.0025", 0), ("0.005", 1), ("10", 1), ("+Inf", 2)] {
            let line = format!("roost_sink_write_duration_seconds_bucket{{{labels},le=\"{le}\"}} {n}\n");
            assert!(text.contains(&line), "missing {line} in {text}");
        }
        assert!(text.contains(&format!("roost_sink_write_duration_seconds_count{{{labels}}} 2\n")));
        assert!(text.contains(&format!("roost_sink_write_duration_seconds_sum{{{labels}}} 60.003\n")));
    }
}
