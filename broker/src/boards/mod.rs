//! The board command service: Roost's side of the board protocol (`docs/board-protocol.md`).
//!
//! The broker hands it, in-process, every allowed PUBLISH on `roost/boards/{name}/status` and
//! `.../reply` (and a board's last will), and every disconnect; board topics never reach the
//! telemetry pipelines. It keeps the [`registry`] of boards, publishes requests on
//! `roost/boards/{name}/cmd` through a [`CmdPublisher`] the broker provides (in-process, no
//! network client), and tracks every request through queued -> sent -> running -> succeeded |
//! failed | timed out with a deadline. A board that is offline, or goes offline while a request
//! runs, fails that request at once with an error naming it. Each board runs at most
//! `boards.max_concurrent_per_board` requests at a time (the others wait, queued); boards run in
//! parallel.
//!
//! - [`acl`]: who may publish and subscribe under `roost/boards/` (pure rules, used by the hooks).
//! - `settings`: `[boards]` ([`BoardSettings`]).
//! - `service`: the [`BoardService`]'s state, its registry views and bookkeeping.
//! - `inbound`: what the broker hands it (statuses, replies, last wills, disconnects).
//! - `call`: one request to one board, published through a [`CmdPublisher`] (`publisher`).
//! - `counters`: [`BoardCounters`].
//! - [`registry`]: the board registry and its file.
//! - [`ops`]: execute, upload, fs, rename and reset, each for one board, as the API runs them.
//! - [`install`]: packages (local or from a package index) unpacked into the files for `lib/`.
//! - [`api`]: the `/api/v1/boards/...` endpoints.
//! - [`cli`]: `roost board ...`.
//!
//! Replies are trusted only as far as the protocol allows: a reply must come on the `reply`
//! topic of the board its request was sent to (the broker's ACL already ties that topic to the
//! board's client id) and carry a request id Roost issued and has not finished; anything else is
//! dropped and counted ([`BoardCounters`]).

pub mod acl;
pub mod api;
mod call;
pub mod cli;
mod counters;
mod inbound;
pub mod install;
pub mod ops;
mod publisher;
pub mod registry;
mod service;
mod settings;

pub use counters::BoardCounters;
pub use publisher::{CmdPublisher, PublishError};
pub use service::{now_ms, BoardService, InflightView};
pub use settings::BoardSettings;
