#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
# Host-side CLI checks for dlmt: exit codes and message routing.  They
# need no DLM; the "not joined" checks use a lockspace name that cannot
# exist and a device directory under /tmp.
set -u
BIN=${1:-./dlmt}
fails=0
n=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# expect RC CMD...: run, compare the exit code
expect() {
	want=$1; shift
	n=$((n + 1))
	"$BIN" "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ "$rc" -ne "$want" ]; then
		echo "FAIL: dlmt $* -> rc $rc, want $want" >&2
		sed 's/^/  stderr: /' "$tmp/err" >&2
		fails=$((fails + 1))
		return 1
	fi
	return 0
}

# usage errors: rc 2, nothing on stdout, a message on stderr
for args in "" "frob" "join" "join a/b" "torture t --res R" \
	"torture t --iters 3" "torture t --res R --iters x" \
	"bench t --prefix p --count 4 --lockers 2" \
	"bench t --prefix p --count 4 --lockers 2 --secs 1 --mode CW" \
	"hold t --prefix p --count 3" "hold t --mode EX" \
	"lvb t" "addr 1" "addr 1 300.1.1.1" "leave t --iters 3" \
	"join t --timeout 0"; do
	# shellcheck disable=SC2086
	if expect 2 $args; then
		if [ -s "$tmp/out" ] || ! [ -s "$tmp/err" ]; then
			echo "FAIL: dlmt $args: usage error must use stderr only" >&2
			fails=$((fails + 1))
		fi
	fi
done

expect 0 help && grep -q '^usage: dlmt' "$tmp/out" || {
	echo "FAIL: help text" >&2; fails=$((fails + 1)); }
expect 0 selftest && grep -qx 'selftest ok=1' "$tmp/out" || {
	echo "FAIL: selftest line" >&2; fails=$((fails + 1)); }

# runtime errors: rc 1, message on stderr, no result line
for args in "torture dlmt-no-such-ls --res R --iters 1" \
	"lvb dlmt-no-such-ls R" \
	"hold dlmt-no-such-ls --res R --mode NL" \
	"bench dlmt-no-such-ls --prefix p --count 2 --lockers 2 --secs 1" \
	"leave dlmt-no-such-ls" \
	"addr 1 192.0.2.1 --configfs $tmp/nonexistent"; do
	# shellcheck disable=SC2086
	if expect 1 $args --dev "$tmp"; then
		if [ -s "$tmp/out" ] || ! grep -q "^dlmt " "$tmp/err"; then
			echo "FAIL: dlmt $args: error must be on stderr only" >&2
			fails=$((fails + 1))
		fi
	fi
done

echo "cli-test: $n run, $fails failed"
[ "$fails" -eq 0 ]
