// SPDX-License-Identifier: GPL-2.0

//! The simulator inside `cargo test`: a few hundred seeds across 2..32
//! nodes (the full 10,000-seed run is `dlm-sim --seeds 10000`), and
//! determinism, which is what makes a printed seed replay its failure.

#[path = "../sim/sim.rs"]
mod sim;

#[test]
fn seeds_across_all_cluster_sizes() {
    let mut total = sim::Stats::default();
    for seed in 0..310u64 {
        match sim::run(sim::Config::for_seed(seed)) {
            Ok(s) => total.add(&s),
            Err(f) => {
                panic!("{f}\nreplay: cargo run --release --bin dlm-sim -- --seed {seed} --trace")
            }
        }
    }
    // The runs must actually exercise what they claim to.
    assert!(total.messages > 100_000, "{total:?}");
    assert!(total.resets > 1_000, "{total:?}");
    assert!(total.retransmits > 1_000, "{total:?}");
    assert!(total.duplicates > 1_000, "{total:?}");
    assert!(total.fins > 1_000, "{total:?}");
    assert!(total.backpressure > 0, "{total:?}");
    assert!(total.max_unacked > 256, "{total:?}");
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [7u64, 1234, 99_999] {
        let a = sim::run(sim::Config::for_seed(seed)).expect("seed passes");
        let b = sim::run(sim::Config::for_seed(seed)).expect("seed passes");
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}

#[test]
fn two_node_runs() {
    for seed in 0..200u64 {
        let mut cfg = sim::Config::for_seed(seed);
        cfg.nodes = 2;
        if let Err(f) = sim::run(cfg) {
            panic!(
                "{f}\nreplay: cargo run --release --bin dlm-sim -- --seed {seed} --nodes 2 --trace"
            );
        }
    }
}
