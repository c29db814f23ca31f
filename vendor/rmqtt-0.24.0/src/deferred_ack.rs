//! ROOST PATCH: acknowledgements a publish hook holds back.
//!
//! rmqtt sends a QoS 1 PUBACK (QoS 2 PUBREC) once the publish hooks have returned, and it
//! handles one connection's publishes one at a time. A hook that must wait before the
//! publish may be acknowledged (Roost waits until the message is on disk) would make each
//! connection wait for every message in turn. Instead, the hook calls [`defer`] with what it
//! waits for and returns at once: the session goes on reading the connection's next packets
//! and sends each acknowledgement, in the order the publishes came (MQTT-4.6.0-2), once what
//! was deferred for it has resolved.

use std::cell::RefCell;
use std::future::Future;

use futures::future::BoxFuture;

/// What an acknowledgement waits for: `true` once it may be sent, `false` if the publish
/// could not be accepted after all (the connection is then closed with no acknowledgement).
pub type AckWait = BoxFuture<'static, bool>;

tokio::task_local! {
    static DEFERRED: RefCell<Vec<AckWait>>;
}

/// Holds back the acknowledgement of the publish being handled until `wait` resolves.
/// Returns `wait` when no session takes it (the hook was not called for a QoS 1 or 2
/// publish from a client): the caller must then await it itself.
pub fn defer(wait: AckWait) -> std::result::Result<(), AckWait> {
    let mut wait = Some(wait);
    let _ = DEFERRED.try_with(|d| d.borrow_mut().extend(wait.take()));
    match wait {
        None => Ok(()),
        Some(wait) => Err(wait),
    }
}

/// Runs `handle` (a publish going through its hooks) and returns what the hooks deferred.
pub(crate) async fn collect<F: Future>(handle: F) -> (F::Output, Vec<AckWait>) {
    DEFERRED
        .scope(RefCell::new(Vec::new()), async move {
            let out = handle.await;
            (out, DEFERRED.with(|d| d.take()))
        })
        .await
}
