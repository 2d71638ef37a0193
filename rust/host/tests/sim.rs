// SPDX-License-Identifier: GPL-2.0

//! The simulator inside `cargo test`: a few hundred seeds across 2..32
//! nodes (the full 10,000-seed run is `dlm-sim --seeds 10000`), that they
//! exercise every fault and path they claim to, determinism (which is what
//! makes a printed seed replay its failure), and that every deliberately
//! broken glue (`sim::Break`) is caught.

#[path = "../sim/sim.rs"]
mod sim;

use sim::{Break, Config, Failure, Stats};

fn replay(seed: u64, extra: &str) -> String {
    format!("replay: cargo run --release --bin dlm-sim -- --seed {seed}{extra} --trace")
}

#[test]
fn seeds_across_all_cluster_sizes() {
    let mut total = Stats::default();
    for seed in 0..310u64 {
        match sim::run(Config::for_seed(seed)) {
            Ok(s) => total.add(&s),
            Err(f) => panic!("{f}\n{}", replay(seed, "")),
        }
    }
    // The runs must actually exercise what they claim to.
    assert!(total.messages > 100_000, "{total:?}");
    assert!(total.resets > 1_000, "{total:?}");
    assert!(total.retransmits > 1_000, "{total:?}");
    assert!(total.duplicates > 1_000, "{total:?}");
    assert!(total.fins > 1_000, "{total:?}");
    assert!(total.max_unacked > 256, "{total:?}");
    let missing = total.missing_coverage();
    assert!(
        missing.is_empty(),
        "never exercised: {missing:?}\n{total:?}"
    );
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [7u64, 1234, 99_999, 3] {
        let a = sim::run(Config::for_seed(seed)).expect("seed passes");
        let b = sim::run(Config::for_seed(seed)).expect("seed passes");
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}

#[test]
fn two_node_runs() {
    for seed in 0..200u64 {
        let mut cfg = Config::for_seed(seed);
        cfg.nodes = 2;
        if let Err(f) = sim::run(cfg) {
            panic!("{f}\n{}", replay(seed, " --nodes 2"));
        }
    }
}

/// The first failure of `brk` over `seeds`, and the numbers of the seeds
/// that passed.
fn first_failure(brk: Break, seeds: std::ops::Range<u64>) -> (Option<Failure>, Stats) {
    let mut total = Stats::default();
    for seed in seeds {
        let mut cfg = Config::for_seed(seed);
        cfg.brk = Some(brk);
        match sim::run(cfg) {
            Ok(s) => total.add(&s),
            Err(f) => return (Some(f), total),
        }
    }
    (None, total)
}

/// Every check the simulator claims fails a seed when the glue breaks the
/// rule it guards.
#[test]
fn every_broken_glue_is_caught() {
    let cases: [(Break, &str); 7] = [
        (Break::EarlyReset, "in a reset that was not forced"),
        (Break::AckAhead, "beyond what it sent"),
        (Break::MsgAfterFin, "sequenced message from node"),
        (Break::FinAfterFin, "unexpected state: FinIn"),
        (Break::KeepCrashedPeer, ""),
        (Break::SilentRxLoss, ""),
        (Break::StackCopies, "more than two windows"),
    ];
    for (brk, want) in cases {
        let (f, _) = first_failure(brk, 0..400);
        let f = f.unwrap_or_else(|| panic!("break {} was not caught", brk.name()));
        assert!(
            f.what.contains(want),
            "break {} failed otherwise: {f}",
            brk.name()
        );
    }
}

/// Without the new faults, or with small frames only, the same seeds no
/// longer cover what the batch requires.
#[test]
fn missing_faults_fail_the_coverage_check() {
    let cases: [(Break, &[&str]); 2] = [
        (
            Break::NoFaults,
            &["sequence gaps", "crashes", "FIN timeouts", "partitions"],
        ),
        (
            Break::SmallFrames,
            &["frames above 3072 bytes", "a frame of 4096 bytes"],
        ),
    ];
    for (brk, want) in cases {
        let (f, total) = first_failure(brk, 0..100);
        if let Some(f) = f {
            panic!("break {}: {f}", brk.name());
        }
        let missing = total.missing_coverage();
        for w in want {
            assert!(missing.contains(w), "break {}: {missing:?}", brk.name());
        }
    }
}
