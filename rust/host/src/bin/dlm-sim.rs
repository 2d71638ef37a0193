// SPDX-License-Identifier: GPL-2.0

//! `dlm-sim`: runs the deterministic multi-node simulator over many seeds.
//!
//! ```text
//! dlm-sim --seeds 10000 [--start S] [--threads 2]   # a batch; failures print their seed
//! dlm-sim --seed S [--trace] [--nodes N]            # replay one seed
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[path = "../../sim/sim.rs"]
mod sim;

fn usage() -> ExitCode {
    eprintln!("usage: dlm-sim [--seeds COUNT] [--start SEED] [--threads N] | --seed SEED [--nodes N] [--trace]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut seeds: u64 = 1000;
    let mut start: u64 = 0;
    let mut threads: usize = 2;
    let mut one: Option<u64> = None;
    let mut nodes: Option<usize> = None;
    let mut trace = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().and_then(|v| v.parse::<u64>().ok());
        match a.as_str() {
            "--seeds" => match val() {
                Some(v) => seeds = v,
                None => return usage(),
            },
            "--start" => match val() {
                Some(v) => start = v,
                None => return usage(),
            },
            "--threads" => match val() {
                Some(v) if v > 0 => threads = v as usize,
                _ => return usage(),
            },
            "--seed" => match val() {
                Some(v) => one = Some(v),
                None => return usage(),
            },
            "--nodes" => match val() {
                Some(v) if (2..=32).contains(&v) => nodes = Some(v as usize),
                _ => return usage(),
            },
            "--trace" => trace = true,
            _ => return usage(),
        }
    }

    if let Some(seed) = one {
        let mut cfg = sim::Config::for_seed(seed);
        if let Some(n) = nodes {
            cfg.nodes = n;
        }
        cfg.trace = trace;
        let t = Instant::now();
        return match sim::run(cfg) {
            Ok(s) => {
                println!(
                    "seed {seed}: ok in {:.3}s: {s:?}",
                    t.elapsed().as_secs_f64()
                );
                ExitCode::SUCCESS
            }
            Err(f) => {
                println!("FAIL {f}");
                ExitCode::FAILURE
            }
        };
    }

    let next = AtomicU64::new(start);
    let end = start + seeds;
    let failed = AtomicBool::new(false);
    let failures: Mutex<Vec<sim::Failure>> = Mutex::new(Vec::new());
    let total: Mutex<sim::Stats> = Mutex::new(sim::Stats::default());
    let t = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| {
                let mut local = sim::Stats::default();
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let mut cfg = sim::Config::for_seed(seed);
                    if let Some(n) = nodes {
                        cfg.nodes = n;
                    }
                    match sim::run(cfg) {
                        Ok(s) => local.add(&s),
                        Err(f) => {
                            println!("FAIL {f}");
                            println!(
                                "replay: cargo run --release --bin dlm-sim -- --seed {}{}",
                                f.seed,
                                nodes.map(|n| format!(" --nodes {n}")).unwrap_or_default()
                            );
                            failed.store(true, Ordering::Relaxed);
                            failures.lock().unwrap().push(f);
                        }
                    }
                }
                total.lock().unwrap().add(&local);
            });
        }
    });
    let el = t.elapsed().as_secs_f64();
    let s = total.into_inner().unwrap();
    let nf = failures.into_inner().unwrap().len();
    println!(
        "{} seeds ({}..{}), 2..32 nodes, {} threads: {} failed, {:.1}s",
        seeds, start, end, threads, nf, el
    );
    println!(
        "delivered {} messages ({} bytes on the wire) in {} steps; {} connection resets, {} retransmissions, {} duplicates re-acked, {} gaps dropped, {} FINs, {} sessions, {} timeouts, {} stuck resets, {} abandoned, {} back-pressure refusals; max unacked {}, max write queue {} bytes",
        s.messages, s.bytes, s.steps, s.resets, s.retransmits, s.duplicates, s.gaps, s.fins, s.sessions,
        s.timeouts, s.stuck_resets, s.abandoned, s.backpressure, s.max_unacked, s.max_wq_bytes
    );
    if failed.load(Ordering::Relaxed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
