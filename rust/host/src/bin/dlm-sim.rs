// SPDX-License-Identifier: GPL-2.0

//! `dlm-sim`: runs the deterministic multi-node simulator over many seeds.
//!
//! ```text
//! dlm-sim --seeds 10000 [--start S] [--threads 2] [--break NAME] [--long-partitions]
//! dlm-sim --seed S [--trace] [--nodes N] [--break NAME] [--long-partitions]
//! ```
//!
//! A batch prints every failure with its seed, a line
//! `N seeds (...): F failed, T s`, the counts of what the seeds exercised,
//! and, for batches of at least 1000 seeds, `coverage: ok` or one
//! `FAIL coverage: ...` line per path that no seed took.  The exit code is
//! non-zero on any failure.  `--break NAME` breaks the simulated glue on
//! purpose (see `sim::Break`), to show that the checks catch it.
//! `--long-partitions` lets partitions outlast a close (see
//! `sim::SHORT_PARTITION_MS`): it shows a problem that is still open.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[path = "../../sim/sim.rs"]
mod sim;

/// Below this many seeds a batch is not required to cover every path.
const COVERAGE_MIN_SEEDS: u64 = 1000;

fn usage() -> ExitCode {
    eprintln!(
        "usage: dlm-sim [--seeds COUNT] [--start SEED] [--threads N] [--break NAME] [--long-partitions]\n       dlm-sim --seed SEED [--nodes N] [--trace] [--break NAME] [--long-partitions]"
    );
    let names: Vec<&str> = sim::Break::ALL.iter().map(|(n, _)| *n).collect();
    eprintln!("breaks: {}", names.join(", "));
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut seeds: u64 = 1000;
    let mut start: u64 = 0;
    let mut threads: usize = 2;
    let mut one: Option<u64> = None;
    let mut nodes: Option<usize> = None;
    let mut trace = false;
    let mut brk: Option<sim::Break> = None;
    let mut long_partitions = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--break" {
            match args.next().as_deref().and_then(sim::Break::parse) {
                Some(b) => brk = Some(b),
                None => return usage(),
            }
            continue;
        }
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
            "--long-partitions" => long_partitions = true,
            _ => return usage(),
        }
    }
    let config = |seed: u64| {
        let mut cfg = sim::Config::for_seed(seed);
        if let Some(n) = nodes {
            cfg.nodes = n;
        }
        cfg.brk = brk;
        cfg.long_partitions = long_partitions;
        cfg
    };
    let replay = |seed: u64| {
        format!(
            "cargo run --release --bin dlm-sim -- --seed {seed}{}{}{} --trace",
            nodes.map(|n| format!(" --nodes {n}")).unwrap_or_default(),
            brk.map(|b| format!(" --break {}", b.name()))
                .unwrap_or_default(),
            if long_partitions {
                " --long-partitions"
            } else {
                ""
            }
        )
    };

    if let Some(seed) = one {
        let mut cfg = config(seed);
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
                    match sim::run(config(seed)) {
                        Ok(s) => local.add(&s),
                        Err(f) => {
                            println!("FAIL {f}");
                            println!("replay: {}", replay(f.seed));
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
        "{} seeds ({}..{}), {} nodes, {} threads{}{}: {} failed, {:.1}s",
        seeds,
        start,
        end,
        nodes.map_or("2..32".to_string(), |n| n.to_string()),
        threads,
        brk.map(|b| format!(", broken glue {}", b.name()))
            .unwrap_or_default(),
        if long_partitions {
            ", long partitions"
        } else {
            ""
        },
        nf,
        el
    );
    println!(
        "delivered {} messages ({} bytes on the wire, largest frame {}, {} above 3072 bytes, largest carry-over {}) in {} steps",
        s.messages, s.bytes, s.max_frame, s.big_frames, s.max_carry, s.steps
    );
    println!(
        "faults: {} connection resets, {} partitions, {} slow recoveries, {} frames lost on receive, {} crashes, {} restarts ({} bytes sent to dead peers)",
        s.resets, s.partitions, s.slow_removes, s.rx_lost, s.crashes, s.restarts, s.lost_bytes
    );
    println!(
        "protocol: {} retransmissions, {} duplicates re-acked, {} gaps dropped, {} gap resets, {} stale leftovers, {} leftovers outside a lifetime, {} FINs, {} sessions, {} FIN timeouts, {} version wait timeouts, {} stuck-close resets, {} old lifetimes dropped on a peer's restart, {} ACKs beyond the sender after a forced reset",
        s.retransmits, s.duplicates, s.gaps, s.gap_resets, s.stale, s.leftovers, s.fins,
        s.sessions, s.fin_timeouts, s.version_timeouts, s.stuck_resets, s.peer_restarts,
        s.ack_invalid
    );
    println!(
        "losses: {} messages given up by forced resets, {} lost with crashed nodes; {} back-pressure refusals; max unacked {}, max write queue {} bytes, {} sequenced messages",
        s.abandoned, s.crash_lost, s.backpressure, s.max_unacked, s.max_wq_bytes, s.max_wq_seq
    );
    let mut bad = failed.load(Ordering::Relaxed);
    if seeds >= COVERAGE_MIN_SEEDS {
        let missing = s.missing_coverage();
        if missing.is_empty() {
            println!("coverage: ok");
        } else {
            for m in missing {
                println!("FAIL coverage: no seed exercised {m}");
            }
            bad = true;
        }
    }
    if bad {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
