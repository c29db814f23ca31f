//! Unit tests of the dead-letter store: round trips, selection, and what the bounds evict.

use roost_core::FieldValue;

use super::*;

fn record(i: i64) -> Record {
    let mut r = Record::new("env", "d1", i);
    r.fields.insert("t".into(), FieldValue::Int(i));
    r
}

fn message(payload: &[u8]) -> Message {
    Message {
        topic: "devices/d1/env".into(),
        client_id: "c1".into(),
        device: "d1".into(),
        payload: payload.to_vec(),
        received_at: 42,
        qos: 1,
        retain: false,
        user_properties: vec![],
    }
}

#[tokio::test]
async fn letters_round_trip_and_are_selected_by_source_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = DeadLetters::open(dir.path(), &DeadLetterSettings::default()).unwrap();
    store.put(Letter::Record { sink: "pg".into(), reason: "type conflict".into(), record: record(1) }).await;
    store
        .put(Letter::Message {
            pipeline: "default".into(),
            reason: "not JSON".into(),
            message: message(b"oops"),
        })
        .await;
    store
        .put(Letter::Message {
            pipeline: "default".into(),
            reason: "binary".into(),
            message: message(&[0xff, 0]),
        })
        .await;
    store.flush().await;
    assert_eq!(store.count().unwrap(), 3);
    assert_eq!(store.stats.stored.load(Relaxed), 3);

    let all = store.list(&Selection::default(), 0, 10).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].source, "sink:pg");
    assert_eq!(all[0].record, Some(record(1)));
    assert_eq!(all[1].payload.as_deref(), Some("oops"));
    assert_eq!(all[2].payload_base64.as_deref(), Some("/wA="));

    let pipeline = Selection { source: Some("pipeline:default".into()), ids: vec![] };
    assert_eq!(store.list(&pipeline, 0, 10).unwrap().len(), 2);
    let letters = store.letters(&Selection { ids: vec![all[1].id], source: None }, 10).unwrap();
    assert_eq!(
        letters,
        [(
            all[1].id,
            Letter::Message {
                pipeline: "default".into(),
                reason: "not JSON".into(),
                message: message(b"oops")
            }
        )]
    );

    assert_eq!(store.delete(&pipeline).unwrap(), 2);
    assert_eq!(store.delete_ids(&[all[0].id]).unwrap(), 1);
    assert_eq!(store.count().unwrap(), 0);
}

fn from(device: &str, payload: &[u8]) -> Letter {
    let mut m = message(payload);
    m.device = device.into();
    Letter::Message { pipeline: "p".into(), reason: "not JSON".into(), message: m }
}

fn kept(store: &DeadLetters) -> Vec<String> {
    let entries = store.list(&Selection::default(), 0, 100).unwrap();
    entries
        .iter()
        .map(|e| match &e.record {
            Some(r) => format!("record {}", r.time),
            None => e.payload.clone().unwrap(),
        })
        .collect()
}

#[tokio::test]
async fn the_oldest_message_letters_are_trimmed_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let settings = DeadLetterSettings { max_entries: 5, ..DeadLetterSettings::default() };
    let store = DeadLetters::open(dir.path(), &settings).unwrap();
    for i in 0..8 {
        store.put(from("d1", format!("m{i}").as_bytes())).await;
    }
    store.flush().await;
    assert_eq!(store.count().unwrap(), 5);
    assert_eq!(store.stats.dropped.load(Relaxed), 3);
    assert_eq!(kept(&store), ["m3", "m4", "m5", "m6", "m7"]);
}

#[tokio::test]
async fn a_flooding_device_loses_its_own_letters_first_and_records_are_never_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let settings = DeadLetterSettings { max_entries: 6, max_bytes: u64::MAX, max_per_device: 3 };
    let store = DeadLetters::open(dir.path(), &settings).unwrap();
    store.put(Letter::Record { sink: "s".into(), reason: "r".into(), record: record(1) }).await;
    store.put(from("quiet", b"q1")).await;
    for i in 0..5 {
        store.put(from("loud", format!("l{i}").as_bytes())).await;
    }
    store.flush().await;
    // The per-device quota: "loud" keeps its newest 3.
    assert_eq!(kept(&store), ["record 1", "q1", "l2", "l3", "l4"]);
    store.put(from("other", b"o1")).await;
    store.put(from("other", b"o2")).await;
    store.flush().await;
    // Past max_entries, the device with the most letters gives up its oldest.
    assert_eq!(kept(&store), ["record 1", "q1", "l3", "l4", "o1", "o2"]);
    assert_eq!(store.stats.dropped.load(Relaxed), 3);

    // Only records over the bounds: kept, flagged, nothing more evicted than messages.
    for i in 2..10 {
        store.put(Letter::Record { sink: "s".into(), reason: "r".into(), record: record(i) }).await;
    }
    store.flush().await;
    assert_eq!(store.count().unwrap(), 9);
    assert_eq!(store.stats.dropped.load(Relaxed), 8);
    assert!(store.stats.over_bounds.load(Relaxed));
    assert_eq!(store.stats.stored.load(Relaxed), 17);
}

#[tokio::test]
async fn the_byte_cap_evicts_messages_too() {
    let dir = tempfile::tempdir().unwrap();
    let settings = DeadLetterSettings { max_bytes: 200, ..DeadLetterSettings::default() };
    let store = DeadLetters::open(dir.path(), &settings).unwrap();
    for i in 0..4 {
        store.put(from("d1", format!("{i}{}", "x".repeat(59)).as_bytes())).await;
    }
    store.flush().await;
    // Each letter is 8 (reason) + 14 (topic) + 60 (payload) = 82 bytes: two fit in 200.
    assert_eq!(store.count().unwrap(), 2);
    assert_eq!(store.stats.dropped.load(Relaxed), 2);
    assert!(kept(&store)[0].starts_with('2'));
}

#[tokio::test]
async fn a_store_from_before_the_bounds_is_counted_by_device_and_size() {
    let dir = tempfile::tempdir().unwrap();
    Connection::open(dir.path().join("deadletter.db"))
        .unwrap()
        .execute_batch(
            "CREATE TABLE dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL,
                 source TEXT NOT NULL, reason TEXT NOT NULL, record TEXT, topic TEXT, client_id TEXT,
                 device TEXT, payload BLOB, received_at INTEGER, qos INTEGER, retain INTEGER);
             INSERT INTO dead_letters (at, source, reason, topic, client_id, device, payload)
                 VALUES (1, 'pipeline:p', 'not JSON', 'devices/d1/env', 'c1', 'd1', x'00');",
        )
        .unwrap();
    let settings = DeadLetterSettings { max_per_device: 1, ..DeadLetterSettings::default() };
    let store = DeadLetters::open(dir.path(), &settings).unwrap();
    store.put(from("d1", b"new")).await;
    store.flush().await;
    assert_eq!(kept(&store), ["new"]);
    let size: i64 = store.lock().query_row("SELECT size FROM dead_letters", [], |r| r.get(0)).unwrap();
    assert_eq!(size, 8 + 14 + 3);
}

#[tokio::test]
async fn entries_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = DeadLetters::open(dir.path(), &DeadLetterSettings::default()).unwrap();
        store.put(Letter::Record { sink: "s".into(), reason: "r".into(), record: record(9) }).await;
        store.flush().await;
    }
    let store = DeadLetters::open(dir.path(), &DeadLetterSettings::default()).unwrap();
    assert_eq!(store.list(&Selection::default(), 0, 10).unwrap()[0].record, Some(record(9)));
}
