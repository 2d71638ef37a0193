// SPDX-License-Identifier: GPL-2.0

//! Host build of the sans-IO protocol core.  The kernel crate compiles the
//! very same files from `rust/proto/`.

#![no_std]
#![forbid(unsafe_code)]

#[path = "../../proto/mod.rs"]
pub mod proto;
