//! `roost serve`: wires the actors downstream first (sinks with their spools, then pipelines,
//! then the broker's ingest), serves until a stop signal, then shuts down in order: stop
//! accepting MQTT connections, disconnect clients, close ingest, let the pipelines drain into the
//! spools, let the sinks drain their spools, stop the API. What a publisher got a PUBACK for is
//! in a sink's spool on disk; after a clean stop it is in the database. If the sinks cannot
//! drain within `shutdown_timeout_secs`, Roost says how much is left in the spools (written at
//! the next start) and exits non-zero.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use roost_connectors::SinkContext;
use roost_processors::JsonMapping;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::api::{self, ApiState, PipelineInfo};
use crate::boards::api::BoardsApi;
use crate::boards::BoardService;
use crate::config::Settings;
use crate::datadir;
use crate::deadletter::api::{DeadLetterApi, Replay, Targets};
use crate::deadletter::DeadLetters;
use crate::devices::api::DevicesApi;
use crate::devices::Devices;
use crate::export::api::ExportApi;
use crate::ingest::Ingest;
use crate::mqtt::{Broker, ListenerConfig, TlsListenerConfig};
use crate::pipeline::{PipelineActor, Stage};
use crate::processors::api::ProcessorsApi;
use crate::processors::Processors;
use crate::sink::{settings as spool_settings, SinkActor, SinkParams};
use crate::stats::{SinkStatus, Stats};

/// Runs the server until `stop` resolves, then shuts down cleanly.
pub async fn serve(settings: Settings, stop: impl Future<Output = ()>) -> Result<()> {
    let started = Instant::now();
    let data_dir = settings.data_dir.clone();
    datadir::ensure(&data_dir)?;
    let _pid = datadir::write_pid(&data_dir)?;
    let (token, created) = datadir::admin_token(&data_dir)?;
    if created {
        info!(path = %data_dir.join(datadir::TOKEN_FILE).display(), "wrote a new admin token");
    }

    let dead_letters = DeadLetters::open(&data_dir, &settings.deadletter)?;
    let mut replay = Targets::default();
    let stats = Arc::new(Stats::default());
    let actors = TaskTracker::new();
    let stop_intake = CancellationToken::new();
    let give_up = CancellationToken::new();

    // Sinks first, so every pipeline sends to a live mailbox.
    let ctx = SinkContext { data_dir: data_dir.clone() };
    let mut sink_handles = Vec::new();
    let mut sink_stats = Vec::new();
    for spec in settings.sink_specs() {
        let kind = spec.options.kind();
        let sink = spec
            .options
            .open(&ctx)
            .await
            .with_context(|| format!("opening sink {:?} ({kind})", spec.name))?;
        let spool_dir = spool_settings::dir(&data_dir, &spec.name);
        let stream = spool_settings::stream(&spool_dir, &spec.name).with_context(|| {
            format!("reading the spool id of sink {:?} in {}", spec.name, spool_dir.display())
        })?;
        let spool = roost_spool::Spool::open(&spool_dir, settings.spool.config()).with_context(|| {
            format!("opening the spool of sink {:?} in {}", spec.name, spool_dir.display())
        })?;
        let recovery = spool.2.clone();
        if recovery.damaged_bytes > 0 {
            warn!(sink = %spec.name, torn_tail_bytes = recovery.torn_tail_bytes, damaged_bytes = recovery.damaged_bytes,
                  lost_entries = recovery.lost_entries, "the sink's spool was damaged (a crash or a disk fault): the good entries are kept, the rest is counted");
        }
        let params = SinkParams {
            stream,
            batch_size: spec.batch_size,
            linger: Duration::from_millis(spec.linger_ms),
            give_up: give_up.clone(),
            dead_letters: dead_letters.clone(),
        };
        let (actor, handle) = SinkActor::new(&spec.name, sink, spool, params);
        sink_stats.push(actor.stats());
        sink_handles.push(handle);
        actors.spawn(actor.run());
        info!(sink = %spec.name, kind, batch_size = spec.batch_size, linger_ms = spec.linger_ms,
              spool_entries = recovery.entries, "sink ready");
    }

    // Then processors and pipelines.
    let pipelines = settings.pipeline_specs();
    let processors = Arc::new(Processors::open(&data_dir, &settings.processors, &pipelines)?);
    let mut routes = Vec::new();
    let mut pipeline_info = Vec::new();
    for p in pipelines {
        let sinks: Vec<_> = sink_handles.iter().filter(|h| p.sinks.contains(&h.name)).cloned().collect();
        if sinks.is_empty() {
            warn!(pipeline = %p.name, "pipeline has no sinks: its records are counted and dropped");
        }
        let stage = match processors.pool(&p.name)? {
            Some(pool) => Stage::Pool(pool),
            None => Stage::Inline(Box::new(JsonMapping::default())),
        };
        let (actor, tx) =
            PipelineActor::new(&p.name, stage, sinks, stop_intake.clone(), dead_letters.clone());
        replay.pipelines.insert(p.name.clone(), tx.clone());
        pipeline_info.push(PipelineInfo {
            stats: actor.stats(),
            topics: p.topics.clone(),
            sinks: p.sinks.clone(),
        });
        routes.push((p.topics.clone(), tx));
        actors.spawn(actor.run());
        let processor = p.processor.as_ref().map_or("json mapping", |r| r.name());
        info!(pipeline = %p.name, topics = ?p.topics, sinks = ?p.sinks, processor, "pipeline ready");
    }
    // The pipelines and the replay targets hold the only sink senders now: when the pipelines
    // finish and the replay targets are closed, the sinks flush and stop.
    replay.sinks = sink_handles.iter().map(|h| (h.name.clone(), h.clone())).collect();
    drop(sink_handles);
    actors.close();

    // The device registry: the broker's authenticate hook checks credentials against it.
    let devices = Devices::open(&data_dir)?;

    // The board service: its registry, fed by the broker's hooks, driven by the API.
    let max_payload = (settings.mqtt.max_packet_size as usize).saturating_sub(512);
    let boards = BoardService::start(settings.boards.clone(), &data_dir, max_payload)?;

    // The admin API: its core, and each feature with its routes and state.
    let replay = Arc::new(Replay::new(replay));
    let state = Arc::new(ApiState {
        token,
        started,
        mqtt_addr: OnceLock::new(),
        api_addr: OnceLock::new(),
        stats: stats.clone(),
        pipelines: pipeline_info,
        sinks: sink_stats.clone(),
        features: vec![
            Arc::new(DeadLetterApi { dead_letters: dead_letters.clone(), replay: replay.clone() }),
            Arc::new(BoardsApi(boards.clone())),
            Arc::new(ProcessorsApi(processors)),
            Arc::new(DevicesApi(devices.clone())),
            Arc::new(ExportApi {
                sinks: settings.sink_specs().to_vec(),
                ctx: ctx.clone(),
                runtime: tokio::runtime::Handle::current(),
            }),
        ],
    });
    let api_tls = match &settings.api.tls {
        None => None,
        Some(t) => Some(
            crate::tls::server_config(&t.cert, &t.key)
                .context("cannot set up HTTPS (settings api.tls.cert and api.tls.key)")?,
        ),
    };
    let (api_addr, api) = api::start(settings.api.listen, api_tls, state.clone())
        .map_err(|e| anyhow!("cannot listen on {} (setting api.listen): {e}", settings.api.listen))?;
    info!(addr = %api_addr, "admin api listening");

    // Then the broker, whose hooks feed the pipelines.
    if settings.mqtt.allow_anonymous == Some(true) && !settings.mqtt.listen.ip().is_loopback() {
        warn!(listen = %settings.mqtt.listen, "mqtt.allow_anonymous = true on a non-loopback listener: anyone who can reach it can publish");
    }
    let ingest = Arc::new(Ingest::new(routes, stats.clone()));
    let broker = Broker::start(
        ListenerConfig {
            listen: settings.mqtt.listen,
            allow_anonymous: settings.mqtt.anonymous_allowed(),
            max_packet_size: settings.mqtt.max_packet_size,
            max_inflight: settings.mqtt.max_inflight,
            max_connections: settings.mqtt.max_connections,
            client_id_rule: settings.mqtt.client_id_rule,
            tls: settings.mqtt.tls.as_ref().map(|t| TlsListenerConfig {
                listen: t.listen,
                cert: t.cert.clone(),
                key: t.key.clone(),
                client_ca: t.client_ca.clone(),
                allow_anonymous: settings.mqtt.tls_anonymous_allowed(),
                ws_listen: t.ws_listen,
            }),
            device_rate: settings.mqtt.device_rate,
            max_connections_per_device: settings.mqtt.max_connections_per_device,
            refused_publish: settings.mqtt.refused_publish,
            acl: settings.acl.clone(),
            ws_listen: settings.mqtt.ws_listen,
            topic_aliases: settings.mqtt.topic_aliases,
            retain: settings.mqtt.retain.clone(),
            session_expiry: Duration::from_secs(settings.mqtt.sessions.expiry_secs),
            max_queued: settings.mqtt.sessions.max_queued,
            session_checkpoint: match settings.mqtt.sessions.checkpoint_secs {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
            state_dir: datadir::broker_dir(&data_dir)?,
        },
        ingest,
        stats.clone(),
        boards.clone(),
        devices.clone(),
    )
    .await?;
    let _ = state.mqtt_addr.set(broker.local_addr());
    datadir::write_runtime(
        &data_dir,
        &datadir::Runtime {
            pid: std::process::id(),
            mqtt: broker.local_addr().to_string(),
            api: api_addr.to_string(),
            api_tls: settings.api.tls.is_some(),
            mqtts: broker.tls_addr().map(|a| a.to_string()),
        },
    )?;
    info!(mqtt = %broker.local_addr(), api = %api_addr, data_dir = %data_dir.display(), "roost ready");

    stop.await;

    // Shutdown, in order, within the deadline.
    let deadline = Instant::now() + Duration::from_secs(settings.shutdown_timeout_secs);
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let failed = || sink_stats.iter().map(|s| s.records_failed.load(Relaxed)).sum::<u64>();
    let failed_before = failed();
    info!(
        timeout_secs = settings.shutdown_timeout_secs,
        "stopping: closing mqtt listener and disconnecting clients"
    );
    broker.stop(remaining().min(Duration::from_secs(5))).await;
    stop_intake.cancel();
    replay.close();
    info!("draining pipelines and flushing sinks");
    let drained = tokio::time::timeout(remaining(), actors.wait()).await.is_ok();
    if !drained {
        give_up.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), actors.wait()).await;
    }
    api.stop(true).await;
    dead_letters.flush().await;
    drop(broker);
    boards.flush();

    let failed_now = failed() - failed_before;
    let left: u64 = sink_stats.iter().map(|s| s.spool.stats().entries).sum();
    if !drained || left > 0 || failed_now > 0 {
        for s in &sink_stats {
            let entries = s.spool.stats().entries;
            if entries > 0 {
                error!(sink = %s.name, spool_entries = entries, records = s.backlog(),
                       last_error = ?SinkStatus::of(s).last_error, "sink did not catch up before stop");
            }
        }
        bail!(
            "stopped before the sinks caught up (shutdown_timeout_secs = {}): {left} spool entries \
             ({} records of this run) are not written yet and stay in {}, written when Roost starts again; \
             {failed_now} records could never be written and are in the dead-letter store",
            settings.shutdown_timeout_secs,
            sink_stats.iter().map(|s| s.backlog()).sum::<u64>(),
            data_dir.join("spool").display(),
        );
    }
    info!(
        messages = stats.messages_in.load(Relaxed),
        written = sink_stats.iter().map(|s| s.records_written.load(Relaxed)).sum::<u64>(),
        "roost stopped cleanly"
    );
    Ok(())
}
