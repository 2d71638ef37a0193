// SPDX-License-Identifier: GPL-2.0

//! Kernel glue of the Rust DLM comms layer.
//!
//! * `ffi`, `sync`, `srcu`, `sock`, `page`: thin wrappers; all `unsafe` that touches C lives there (plus
//!   the `exports` entry points, which convert C arguments).
//! * `node`: per-peer state (connection, write queue, reliable-layer state) and its locks.
//! * `lowcomms`: sockets, workers, callbacks.
//! * `midcomms`: the protocol (versions, seq/ack, retransmit, FIN) and the send API.
//! * `exports`: the C ABI of midcomms.h/lowcomms.h.
//! * `config`: the dlm configfs tree and the `dlm_config` tunables (config.c); `configfs` is
//!   its wrapper of the C configfs API, `config_exports` the C ABI of config.h.

mod config;
mod config_exports;
pub(crate) mod configfs;
mod exports;
mod ffi;
pub(crate) mod log;
mod lowcomms;
mod midcomms;
mod node;
mod page;
mod queue;
mod sock;
mod srcu;
pub(crate) mod sync;
