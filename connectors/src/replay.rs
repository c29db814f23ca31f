//! Replays for the typed SQL sinks (postgres, mysql): writing a batch at its position in the
//! sink's spool ([`crate::Position`]), so that the same batch written again after a crash is
//! not stored twice.
//!
//! Why a replay never duplicates: every row of the batch and the stream's checkpoint
//! ([`crate::CHECKPOINT_TABLE`]) go in one transaction, on both paths of [`sql::write_batch`]
//! (the batch path, and the record-by-record fallback, which uses a savepoint per record
//! instead of committing each). Either the process dies before the commit (nothing of the batch
//! is stored, the replay writes it) or after (the checkpoint is stored, the replay is skipped).
//! The DDL that [`sql::prepare`] runs outside the transaction is idempotent.

use roost_core::Record;

use crate::sql::{self, BatchWriter, Checkpoint, DbError};
use crate::{Position, SinkError, WriteOutcome};

/// What the typed SQL sinks answer to [`crate::Sink::replay_safety`].
pub const SAFETY: &str = "checkpoint";

/// [`sql::write_batch`] at a position: nothing is written for a `seq` at or below the
/// stream's stored checkpoint (a replay of a batch that was committed), and the batch's
/// checkpoint is committed with its rows.
pub(crate) async fn write_batch_at<W: BatchWriter>(
    w: &mut W,
    batch: &[Record],
    kind: &str,
    position: &Position,
) -> Result<WriteOutcome, SinkError> {
    let checkpoint = Checkpoint::of(position)?;
    let stored = w.committed(checkpoint.stream).await.map_err(|e| failed(kind, &e))?;
    if stored.is_some_and(|s| s >= checkpoint.seq) {
        tracing::debug!(
            sink = kind,
            stream = checkpoint.stream,
            seq = checkpoint.seq,
            "batch already written"
        );
        return Ok(WriteOutcome::default());
    }
    sql::write_batch(w, batch, kind, Some(checkpoint)).await
}

/// The stream's stored checkpoint ([`crate::Sink::committed`]).
pub(crate) async fn committed<W: BatchWriter>(
    w: &mut W,
    kind: &str,
    stream: &str,
) -> Result<Option<u64>, SinkError> {
    let seq = w.committed(stream).await.map_err(|e| failed(kind, &e))?;
    // Stored by write_batch_at from a u64.
    Ok(seq.map(|s| s as u64))
}

/// A driver error as a [`SinkError`]: retry later, or a problem the operator must fix (no
/// permission to create the checkpoint table).
fn failed(kind: &str, e: &impl DbError) -> SinkError {
    let message = format!("{kind} sink: {}", e.describe());
    if e.is_transient() {
        SinkError::Unavailable(message)
    } else {
        SinkError::Config(message)
    }
}
