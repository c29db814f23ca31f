//! The sink conformance suite: one set of cases every sink must pass, run against the real
//! database of each (SQLite file, PostgreSQL 15, TimescaleDB on PGlite, MariaDB, InfluxDB 1.x,
//! VictoriaMetrics, a MongoDB-wire server).
//!
//! Live databases are found through `ROOST_TEST_POSTGRES_URL`, `ROOST_TEST_TIMESCALEDB_URL`,
//! `ROOST_TEST_MYSQL_URL`, `ROOST_TEST_INFLUXDB_URL`, `ROOST_TEST_VICTORIAMETRICS_URL` and
//! `ROOST_TEST_MONGODB_URL`, which `make test` sets (after `scripts/services.sh` starts them). A
//! missing variable fails the test with that message rather than skipping it.

mod backends;
mod cases;
mod proxy;

/// Instantiates the listed cases for one backend, as `<backend>::<case>`.
macro_rules! conformance {
    ($backend:ident, $make:expr, [$($case:ident),* $(,)?]) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = $make.await;
                    cases::$case(&backend).await;
                }
            )*
        }
    };
}

/// The cases every database runs.
macro_rules! all_cases {
    ($backend:ident, $make:expr $(, $extra:ident)*) => {
        conformance!($backend, $make, [
            every_type_round_trips,
            a_field_that_appears_later_adds_a_column,
            type_conflicts_follow_the_schema_policy,
            hostile_identifiers_reject_only_their_record,
            names_that_differ_only_by_case_share_a_column,
            an_empty_batch_writes_nothing,
            a_batch_of_ten_thousand_records,
            a_table_not_created_by_roost_refuses_only_its_records,
            a_measurement_named_like_another_tables_index_gets_its_own_table,
            a_name_held_by_an_index_rejects_only_its_records,
            a_sixty_three_character_measurement_gets_its_table,
            columns_past_max_columns_reject_only_their_records,
            a_replayed_batch_is_stored_once,
            a_replay_after_records_refused_at_write_time_stores_nothing_twice,
            $($extra),*
        ]);
    };
}

// SQLite is a file inside Roost's process: there is no server to restart (the broker's tests
// cover a locked database instead).
all_cases!(sqlite, backends::Sqlite::new(), two_sinks_writing_one_table_concurrently);
all_cases!(
    postgres,
    backends::Postgres::new(backends::PgFlavor::Postgres),
    two_sinks_writing_one_table_concurrently,
    the_database_going_away_between_batches,
    a_cut_mid_write_then_a_replay_stores_each_record_once
);
// PGlite serves one connection at a time, so two sinks cannot write at once; and it exits when a
// connection is reset in the middle of a query, so the cut-mid-write case cannot run on it.
all_cases!(
    timescaledb,
    backends::Postgres::new(backends::PgFlavor::Timescale),
    the_database_going_away_between_batches
);
all_cases!(
    mysql,
    backends::Mysql::new(),
    two_sinks_writing_one_table_concurrently,
    the_database_going_away_between_batches,
    a_cut_mid_write_then_a_replay_stores_each_record_once
);

/// The cases every schemaless database runs. `a_table_not_created_by_roost_...` is left out:
/// without a schema there is no layout a foreign measurement or collection could have.
macro_rules! schemaless_cases {
    ($backend:ident, $make:expr $(, $extra:ident)*) => {
        conformance!($backend, $make, [
            every_type_round_trips,
            a_field_that_appears_later_adds_a_column,
            type_conflicts_follow_the_schema_policy,
            hostile_identifiers_reject_only_their_record,
            names_that_differ_only_by_case_share_a_column,
            an_empty_batch_writes_nothing,
            a_batch_of_ten_thousand_records,
            two_sinks_writing_one_table_concurrently,
            the_database_going_away_between_batches,
            $($extra),*
        ]);
    };
}

// InfluxDB 1.x through the v1 API.
schemaless_cases!(
    influxdb_v1,
    backends::Influx::new(),
    lines_the_server_refuses_are_rejected_and_the_rest_written,
    a_replayed_batch_is_stored_once,
    a_cut_mid_write_then_a_replay_stores_each_record_once
);
// VictoriaMetrics through the v2 API. It answers 204 even for lines it cannot parse (it logs and
// skips them) and has no field types to conflict, so no line is ever refused by the server:
// the partial-write case cannot apply. It keeps every sample of a replayed batch (no
// deduplication by default): the sink says so, and the replay cases cannot apply either.
schemaless_cases!(
    victoriametrics_v2,
    backends::Victoria::new(),
    victoriametrics_keeps_a_replayed_batch_twice_and_says_so
);
schemaless_cases!(
    mongodb,
    backends::Mongo::new(false),
    documents_the_server_refuses_are_rejected_and_the_rest_written,
    a_replayed_batch_is_stored_once,
    a_replay_after_records_refused_at_write_time_stores_nothing_twice,
    a_cut_mid_write_then_a_replay_stores_each_record_once
);
// Time-series collections (emulated by SecantusDB): the same documents, read back the same way.
conformance!(
    mongodb_timeseries,
    backends::Mongo::new(true),
    [every_type_round_trips, a_field_that_appears_later_adds_a_column, a_batch_of_ten_thousand_records,]
);
