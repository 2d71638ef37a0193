// SPDX-License-Identifier: GPL-2.0

//! Sans-IO core of the DLM comms layer: the DLM 3.2 wire codec, the stream
//! framer, per-peer version negotiation, the reliable (seq/ack) layer and the
//! DLM_FIN close state machine; and the integer syntax of the configfs
//! attributes (`text`).
//!
//! Everything below this module uses only `core`: no allocation, no `std`, no
//! `unsafe`.  The same files are compiled into the kernel crate (rust/) and
//! into the host crate (rust/host) that runs the property tests, the
//! simulator and the fuzzer.

pub mod fin;
pub mod framer;
pub mod peer;
pub mod ratelimit;
pub mod reliable;
pub mod seq;
pub mod text;
pub mod version;
pub mod wire;
