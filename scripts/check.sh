#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# dlm-rs test entry: `make check` runs this, and .ci/run runs `make check`.
#
#   scripts/check.sh [--only STAGE[,STAGE...]]
#
# Stages: setup kernel host harness tools module cluster debug.  The cluster
# stage runs the suite on the stock C layer, on our dlm.ko on every node, and on
# the two mixed clusters (1 ours + 2 stock, 2 ours + 1 stock); the debug stage
# builds the debug kernel flavour and runs the cycles scenario on it.  Every
# stage runs even when an earlier one failed (unless it needs what failed); the
# last line is
# "check: N passed, M failed" with the tests of every stage added up, and the
# exit code is non-zero when anything failed.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export PATH="$HOME/.cargo/bin:$PATH"
logdir="$top/build/check"
mkdir -p "$logdir"

only=""
if [ "${1:-}" = "--only" ]; then only=",$2,"; fi
want() { [ -z "$only" ] || [[ "$only" == *",$1,"* ]]; }

passed=0
failed=0
failures=()
t0=$(date +%s)

note() { printf '[check %4ds] %s\n' $(($(date +%s) - t0)) "$*"; }
fail() { failed=$((failed + 1)); failures+=("$1"); note "FAIL: $1"; }

# Run a command, keep its output in a log (and on stdout), return its status.
run() {
	local name=$1
	shift
	note "$name: $*"
	"$@" 2>&1 | tee "$logdir/$name.log"
	return "${PIPESTATUS[0]}"
}

# Add the "test result: ... N passed; M failed" lines of cargo test.
count_cargo() {
	local p f
	p=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$1" | awk '{s+=$4} END {print s+0}')
	f=$(grep -Eo '[0-9]+ failed;' "$1" | awk '{s+=$1} END {print s+0}')
	passed=$((passed + p))
	failed=$((failed + f))
}

# The "N passed, M failed" closing line of our own runners.
count_plain() {
	local line
	line=$(grep -E '^([A-Za-z-]+: )?[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
	if [ -z "$line" ]; then
		return 1
	fi
	passed=$((passed + $(sed -E 's/^([A-Za-z-]+: )?([0-9]+) passed.*/\2/' <<<"$line")))
	failed=$((failed + $(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")))
}

kdir=""
if want setup; then
	run setup bash scripts/setup.sh && passed=$((passed + 1)) || fail "setup"
fi
if want kernel || want module || want cluster; then
	if kdir=$(bash scripts/kernel.sh 2> >(tee "$logdir/kernel.log" >&2)); then
		note "kernel: $kdir"
		want kernel && passed=$((passed + 1))
	else
		kdir=""
		fail "kernel build"
	fi
fi

if want host; then
	(cd rust/host && cargo fmt --check) >"$logdir/host-fmt.log" 2>&1 && passed=$((passed + 1)) ||
		{ cat "$logdir/host-fmt.log"; fail "rustfmt (rust/host, rust/proto)"; }
	rustfmt --edition 2021 --check rust/dlm_comms.rs rust/comms/*.rs >"$logdir/kernel-fmt.log" 2>&1 &&
		passed=$((passed + 1)) || { cat "$logdir/kernel-fmt.log"; fail "rustfmt (rust/comms, the kernel crate)"; }
	(cd rust/host && cargo clippy -q --release --all-targets -- -D warnings) >"$logdir/host-clippy.log" 2>&1 &&
		passed=$((passed + 1)) || { cat "$logdir/host-clippy.log"; fail "clippy (rust/host, rust/proto)"; }
	run host-test bash -c 'cd rust/host && cargo test --release 2>&1'
	rc=$?
	count_cargo "$logdir/host-test.log"
	[ $rc -eq 0 ] || fail "cargo test (rust/host)"
	# The fuzz target for a bounded time (new inputs kept in build/fuzz); a
	# crash fails, and the run must report its closing "Done N runs" line.
	if command -v cargo-fuzz >/dev/null; then
		mkdir -p build/fuzz/framer_codec
		run fuzz bash -c 'cd rust/host/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O framer_codec \
			../../../build/fuzz/framer_codec corpus/framer_codec -- -max_total_time=60 -max_len=20000 2>&1'
		rc=$?
		if [ $rc -eq 0 ] && grep -Eq '^Done [0-9]+ runs in' "$logdir/fuzz.log"; then
			passed=$((passed + 1))
		else
			fail "fuzz (framer_codec, 60 s)"
		fi
	else
		fail "fuzz: cargo-fuzz missing (scripts/setup.sh installs it)"
	fi
	if [ -f rust/host/src/bin/dlm-sim.rs ] || [ -d rust/host/src/bin/dlm-sim ]; then
		# One test: 10,000 seeds across 2..32 nodes, none may fail, and
		# together they must exercise every fault and path ("coverage: ok").
		run simulator bash -c 'cd rust/host && cargo run -q --release --bin dlm-sim -- --seeds 10000'
		rc=$?
		if [ $rc -eq 0 ] && grep -Eq '^10000 seeds .*: 0 failed' "$logdir/simulator.log" &&
			grep -q '^coverage: ok' "$logdir/simulator.log"; then
			passed=$((passed + 1))
		else
			fail "simulator (10000 seeds)"
		fi
	else
		fail "simulator (rust/host/src/bin/dlm-sim.rs) missing"
	fi
fi

if want harness; then
	# The hub's tests (scripts/tests) and the cluster runner's (scripts/cluster).
	for dir in scripts/tests scripts/cluster; do
		name=harness-unit-$(basename "$dir")
		run "$name" python3 -m unittest discover -v -s "$dir" -p 'test_*.py'
		rc=$?
		p=$(grep -Eo '^Ran [0-9]+ test' "$logdir/$name.log" | awk '{print $2}')
		if [ $rc -eq 0 ] && [ -n "$p" ] && [ "$p" -gt 0 ]; then
			passed=$((passed + p))
		else
			fail "harness unit tests ($dir)"
		fi
	done
fi

if want tools || want cluster; then
	run tools make -C tools/dlmt || fail "tools/dlmt build"
	if want tools; then
		run tools-check make -C tools/dlmt check && passed=$((passed + 1)) || fail "tools/dlmt self-tests"
	fi
fi

ours=""
if want module || want cluster; then
	if [ -n "$kdir" ]; then
		# One build, checked by clippy on the way: any warning fails the stage.
		make -s module-clean
		if run module make -s modules CLIPPY=1 KDIR="$kdir"; then
			ours="$top/build/kmod/dlm.ko"
			if grep -Eq '^(warning|error)(\[|:)' "$logdir/module.log"; then
				fail "dlm.ko build has warnings (make CLIPPY=1)"
			else
				want module && passed=$((passed + 1))
			fi
		else
			fail "dlm.ko build"
		fi
	else
		fail "dlm.ko build (no kernel)"
	fi
fi

# suite NAME DLM-SPEC: one run of the cluster suite.
suite() {
	local name=$1 dlm=$2 rc
	run "$name" python3 scripts/cluster/suite.py --kdir "$kdir" --dlm "$dlm"
	rc=$?
	count_plain "$logdir/$name.log" || fail "$name: suite printed no result line"
	[ $rc -eq 0 ] || fail "$name"
}

if want cluster; then
	if [ -z "$kdir" ]; then
		fail "cluster suite (no kernel)"
	else
		suite cluster-stock stock
		if [ -n "$ours" ]; then
			suite cluster-ours "$ours"
			suite cluster-mixed-1 "$ours,stock,stock"
			suite cluster-mixed-2 "$ours,$ours,stock"
		else
			fail "cluster suites with our dlm.ko (not built)"
		fi
	fi
fi

# The debug flavour (KASAN, lockdep, kmemleak; built with clang, cached like the
# base tree): 20 cycles of insmod, join, traffic, leave, rmmod with our dlm.ko
# on every node, no leak and no warning.
if want debug; then
	if dkdir=$(FLAVOUR=debug bash scripts/kernel.sh 2> >(tee "$logdir/kernel-debug.log" >&2)); then
		note "debug kernel: $dkdir"
		passed=$((passed + 1))
		if run module-debug make -s modules KDIR="$dkdir" DLMRS_KMOD="$top/build/kmod-debug"; then
			run cycles-debug python3 scripts/cluster/suite.py --kdir "$dkdir" \
				--dlm "$top/build/kmod-debug/dlm.ko" --only cycles --cycles 20 --require-kmemleak
			rc=$?
			count_plain "$logdir/cycles-debug.log" || fail "cycles-debug: suite printed no result line"
			[ $rc -eq 0 ] || fail "cycles on the debug flavour"
		else
			fail "dlm.ko build for the debug flavour"
		fi
	else
		fail "debug kernel build"
	fi
fi

note "done in $(($(date +%s) - t0)) s; logs in $logdir"
for f in "${failures[@]}"; do note "failed: $f"; done
echo "check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
