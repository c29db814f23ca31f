//! `roost-board`: the board agent for Linux boards. It holds one outbound MQTT connection to
//! Roost and speaks the board protocol (`docs/board-protocol.md`): it runs `execute` code with a
//! configured interpreter (`sh -c` by default) and streams the output back, receives uploads
//! into its root directory (verified chunk by chunk and as a whole, renamed into place only
//! when complete, resumable), answers `fs` requests, takes a new name, and restarts on `reset`.
//!
//! - [`agent`]: the connection, reconnects, status and the request worker.
//! - [`files`]: paths confined to the root directory, the `fs` actions and the upload rules.
//!
//! The binary (`src/main.rs`) reads its settings from flags or `ROOST_BOARD_*` variables.

pub mod agent;
pub mod files;
pub mod tls;

pub use agent::{run, AgentConfig, AgentError, Exit};
pub use tls::AgentTls;
