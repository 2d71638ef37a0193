#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""dlm-rs benchmark: the stock C comms layer and ours, alternated on the same VMs.

    python3 scripts/cluster/bench.py --ours build/kmod/dlm.ko [--kdir TREE]
        [--nodes 2,3] [--rounds 5] [--null] [--quick] [--out DIR] [--doc]

For each cluster size it boots one cluster whose guests carry both dlm.ko
files, then runs 2 x ROUNDS rounds, stock, ours, stock, ours, ...: before
each round every node leaves its lockspaces, unloads dlm.ko (dlm-controller
teardown, dlm-module unload) and loads the other one (the `cycles` scenario's
path).  Every round measures every figure (Documentation/benchmarks.rst).
It prints min/median/max per figure and layer, the ours/stock ratio of the
medians and the spread of the ratios of neighbouring rounds, writes
results.json, table.txt and ratios.png into DIR (build/bench), and with
--doc puts the table and the plot into Documentation/.  --null runs the
stock module in both slots (the null experiment: what ratio noise alone
gives).  The whole run holds /tmp/dlmrs-vm.lock (--no-vm-lock if the caller
holds it).
"""

import argparse
import fcntl
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import cluster as C  # noqa: E402
import initramfs  # noqa: E402

VM_LOCK = "/tmp/dlmrs-vm.lock"
DEBIAN_PYTHON = "/usr/bin/python3"
ULS = "bu"              # user lockspace (dlmt)
KLS = "bk"              # kernel lockspace (dlmbench.ko)
# The kernel lockspace's LVB: messages that carry it are 88 + 3920 = 4008
# bytes, 4024 on the wire with the 3.2 header; the largest a DLM message may
# be is 4080 (4096 less that header), and an RCOM_LOCK of recovery carries
# the LVB after 156 bytes of its own, so 3920 is the largest multiple of 8
# with which recovery still works.
LVBLEN = 3920
MSG_HDR = 88            # struct dlm_message
CTL = "/sys/kernel/debug/dlmbench/ctl"
# What the rounds inject: hub resets, and the memory figure's 100 % drop
# between two nodes (a partition of that pair while the conversions queue).
FAULTS = ("reset", "loss", "partition")

# key, label, unit, better: "hi" or "lo"
FIGURES = [
    ("torture", "torture, increments/s", "hi"),
    ("ulk64", "lock+unlock/s, 64 user lockers/node (dlmt)", "hi"),
    ("lk1", "lock+unlock/s, 1 locker/node", "hi"),
    ("lk1_p50", "  1 locker: p50 latency, us", "lo"),
    ("lk1_p99", "  1 locker: p99 latency, us", "lo"),
    ("lk8", "lock+unlock/s, 8 lockers/node", "hi"),
    ("lk8_p50", "  8 lockers: p50 latency, us", "lo"),
    ("lk8_p99", "  8 lockers: p99 latency, us", "lo"),
    ("lk64", "lock+unlock/s, 64 lockers/node", "hi"),
    ("lk64_p50", "  64 lockers: p50 latency, us", "lo"),
    ("lk64_p99", "  64 lockers: p99 latency, us", "lo"),
    ("cpu1", "guest CPU us per lock+unlock, 1 locker", "lo"),
    ("cpu64", "guest CPU us per lock+unlock, 64 lockers", "lo"),
    ("hcpu64", "host CPU us per lock+unlock, 64 lockers", "lo"),
    ("msg_s", "comms: messages/s, small (88-94 B)", "hi"),
    ("wire_s", "  small: wire bytes per message", "lo"),
    ("mbs_s", "  small: DLM payload MB/s", "hi"),
    ("msg_l", "comms: messages/s, half of them 4008 B", "hi"),
    ("mbs_l", "  large: DLM payload MB/s", "hi"),
    ("tcp", "raw TCP stream node 1 -> 2, MB/s (ceiling)", "hi"),
    ("reset", "reset -> next delivery, ms", "lo"),
    ("mem_s", "memory per in-flight message, 88 B, bytes", "lo"),
    ("mem_l", "memory per in-flight message, 4008 B, bytes", "lo"),
    ("burst_s", "1M-request burst: peak memory, sender, MiB", "lo"),
    ("burst_m", "1M-request burst: peak memory, master, MiB", "lo"),
    ("burst_r", "1M-request burst: requests/s", "hi"),
]
# Figures measured in TSC cycles, converted to microseconds with the rate
# measured against the host's clock over the whole run (run_cluster).
CYCLE_FIGURES = ("lk1_p50", "lk1_p99", "lk8_p50", "lk8_p99", "lk64_p50", "lk64_p99")
# Rates measured per TSC cycle, converted to per second with the same rate:
# the guests' jiffies clock loses ticks when the host does not run the vCPU
# (2 % in the first runs), the TSC does not.
PER_CYCLE_FIGURES = ("torture", "ulk64", "lk1", "lk8", "lk64", "msg_s", "mbs_s", "msg_l",
                     "mbs_l")


def schedule(rounds, null=False):
    """The layers of the 2 x rounds rounds in the order they run: stock,
    ours, stock, ours, ... so that every pair of neighbouring rounds sees
    both layers under the same host load.  With null, both slots are stock
    (the second labelled stock' in the table, "ours" in the rows)."""
    return [("stock", "ours")[r % 2] for r in range(2 * rounds)]


def pair_ratios(rows, n, key):
    """Ratios ours/stock of the rounds that ran next to each other (round k
    of each layer), for figure key on n nodes."""
    by_round = {}
    for r in rows:
        if r["nodes"] == n and key in r["v"]:
            by_round.setdefault(r["round"], {})[r["layer"]] = r["v"][key]
    return [rd["ours"] / rd["stock"] for _, rd in sorted(by_round.items())
            if "stock" in rd and "ours" in rd and rd["stock"]]


def ratio_of_medians(stock, ours):
    """ours/stock of the medians, or None when either side is empty or the
    stock median is 0."""
    if not stock or not ours:
        return None
    m = statistics.median(stock)
    return statistics.median(ours) / m if m else None


def cycles_to_us(rows, hz):
    """Convert the CYCLE_FIGURES of rows (and reset_all) from TSC cycles to
    microseconds in place; hz: cycles per second."""
    for r in rows:
        v = r["v"]
        for k in CYCLE_FIGURES:
            if k in v:
                v[k] = v[k] * 1e6 / hz
        for k in PER_CYCLE_FIGURES:
            if k in v:
                v[k] = v[k] * hz
        if "reset_all" in v:
            v["reset_all"] = [x * 1e3 / hz for x in v["reset_all"]]     # ms
            v["reset"] = med(v["reset_all"])

LABEL = {k: l for k, l, _ in FIGURES}
BETTER = {k: b for k, _, b in FIGURES}


class BenchError(Exception):
    pass


def med(v):
    return statistics.median(v) if v else None


# --- guest helpers ------------------------------------------------------------

def kv(text, prefix):
    """key=value pairs of the last line of text starting with prefix."""
    lines = [l for l in text.splitlines() if l.startswith(prefix)]
    if not lines:
        raise BenchError("no %r line in %r" % (prefix, text[-600:]))
    return dict(re.findall(r"(\w+)=(\S*)", lines[-1]))


def mod(cl, i, line, timeout=120):
    """Run one dlmbench command on node i; its result as a dict."""
    r = cl.node(i).run("echo '%s' > %s; rc=$?; cat %s; exit $rc" % (line, CTL, CTL),
                       timeout=timeout, check=False)
    if r.rc != 0:
        raise BenchError("node %d: dlmbench %r failed (rc %d): %s %s" %
                         (i, line, r.rc, r.out.strip(), r.err.strip()))
    return kv(r.out, line.split()[0])


STAT = "head -1 /proc/stat; cat /sys/class/net/eth0/statistics/tx_bytes"


def parse_stat(lines):
    """(busy, total) jiffies of the cpu line, and eth0 tx bytes."""
    f = [int(x) for x in lines[0].split()[1:]]
    idle = f[3] + f[4]
    return sum(f[:8]) - idle, sum(f[:8]), int(lines[1])


def timed(cl, ids, script, timeout):
    """Run script(i) on every node at once between two STAT readings taken by
    the same guest command, so the CPU and byte counts cover just it.
    Returns {node: (stdout, busy_jiffies, wire_bytes)}."""
    res = cl.on(ids, lambda i: "%s; echo ==; %s; echo ==; %s" % (STAT, script(i), STAT),
                timeout=timeout)
    out = {}
    for i, r in res.items():
        parts = r.out.split("==\n")
        if len(parts) != 3:
            raise BenchError("node %d: unexpected output %r" % (i, r.out[-400:]))
        b0, _, w0 = parse_stat(parts[0].split("\n"))
        b1, _, w1 = parse_stat(parts[2].split("\n"))
        out[i] = (parts[1], b1 - b0, w1 - w0)
    return out


def host_cpu_ns(cl):
    """CPU time of every QEMU process so far (all threads), ns."""
    total = 0
    for node in cl.nodes.values():
        pid = node.proc.pid
        for t in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass
    return total


def used_kb(cl, i, samples=3):
    r = cl.node(i).run("for k in %s; do awk '/MemTotal/ {t=$2} /MemFree/ {f=$2} END "
                       "{print t-f}' /proc/meminfo; usleep 100000; done" %
                       " ".join(str(x) for x in range(samples)))
    return med([int(x) for x in r.out.split()])


def clock_sample(cl, i):
    """One `dlmbu clock` on node i: {"host": host time, "err": its
    uncertainty (half the agent's round trip), "mono": guest CLOCK_MONOTONIC
    s, "tsc": guest TSC, "step": CLOCK_MONOTONIC step ns, "cs": clocksource}."""
    h0 = time.monotonic()
    r = cl.node(i).run("dlmbu clock")
    h1 = time.monotonic()
    d = kv(r.out, "clock")
    return {"host": (h0 + h1) / 2, "err": (h1 - h0) / 2, "mono": int(d["mono_ns"]) / 1e9,
            "tsc": int(d["tsc"]), "step": int(d["step_ns"]), "cs": d["clocksource"]}


def clock_rates(c0, c1):
    """From two clock samples of one node: (guest CLOCK_MONOTONIC / host
    elapsed, TSC cycles per host second, relative uncertainty)."""
    dh = c1["host"] - c0["host"]
    return ((c1["mono"] - c0["mono"]) / dh, (c1["tsc"] - c0["tsc"]) / dh,
            (c0["err"] + c1["err"]) / dh)


def check_clocks(rates):
    """rates: {node: (mono rate, tsc hz, uncertainty)}.  Problems that make
    the run's timing unusable: TSCs that disagree by more than 1 % (every
    rate and latency is converted with the common rate), or a
    CLOCK_MONOTONIC off the host's by more than 10 % (a miscalibrated
    clock; it only bounds the figures' windows, but it would make them
    wrong by that much.  Its jiffies lose about 2 % under TCG load.)"""
    bad = []
    hz = [t for _, t, _ in rates.values()]
    for i, (m, t, e) in sorted(rates.items()):
        if abs(m - 1) > 0.1 + e:
            bad.append("node %d: CLOCK_MONOTONIC runs at %.4f x the host's" % (i, m))
        if t <= 0 or abs(t / statistics.median(hz) - 1) > 0.01 + e:
            bad.append("node %d: TSC at %.1f MHz, the others at %.1f" % (
                i, t / 1e6, statistics.median(hz) / 1e6))
    return bad


def nxt(ids, i):
    return ids[(ids.index(i) + 1) % len(ids)]


# --- one round -----------------------------------------------------------------

class Round:
    def __init__(self, cl, ids, args, say, number=1):
        self.cl, self.ids, self.a, self.say = cl, ids, args, say
        self.number = number
        self.errors = []
        # The figures between one pair of nodes (raw TCP, memory, burst)
        # say nothing more on a larger cluster: only on the sizes named.
        self.pair = len(ids) in args.pair_sizes
        self.v = {}

    def run(self):
        cl, ids = self.cl, self.ids
        cl.join(ULS, ids)
        members = " ".join(str(i) for i in ids)
        cl.on(ids, lambda i: "dlm-controller members %s '%s' && echo 'join %s %s %d' > %s && "
              "cat %s" % (KLS, members, KLS, C.CLUSTER_NAME, LVBLEN, CTL, CTL), timeout=120)
        steps = [("torture", self.torture)]
        if self.a.user_lockers:
            steps.append(("ulk64", lambda: self.user_lockers(64)))
        steps += [("lk%d" % k, lambda k=k: self.lockers(k)) for k in (1, 8, 64)]
        steps += [("msg_l", lambda: self.messages(True)), ("reset", self.resets)]
        if self.pair:
            steps += [("tcp", self.tcp), ("mem_s", lambda: self.memory(False)),
                      ("mem_l", lambda: self.memory(True))]
            if self.a.burst and self.number <= self.a.burst_rounds:
                steps.append(("burst", self.burst))
        took = []
        for name, fn in steps:
            t0 = time.monotonic()
            try:
                fn()
            except (BenchError, C.CommandFailed, C.CommandTimeout) as e:
                # One figure failed: say so, clean up what it may have left
                # and go on with the others (the run still fails).
                self.errors.append("%s: %s" % (name, e))
                self.say("  FAILED %s: %s" % (name, e))
                self.cleanup()
            took.append("%s %.0f" % (name, time.monotonic() - t0))
        t0 = time.monotonic()
        self.leave()
        self.say("  seconds: %s, leave %.0f" % (", ".join(took), time.monotonic() - t0))
        return self.v

    def cleanup(self):
        self.cl.hub.cmd("clear")
        self.cl.on(self.ids, "echo release > %s; kill $(cat /tmp/h*.pid /tmp/mw.pid "
                   "2>/dev/null) 2>/dev/null; true" % CTL, timeout=180, check=False)

    def leave(self):
        cl, ids = self.cl, self.ids
        left = list(ids)
        for i in reversed(ids):
            left.remove(i)
            cl.leave(KLS, i, left, "echo leave > %s && cat %s" % (CTL, CTL))
        left = list(ids)
        for i in reversed(ids):
            left.remove(i)
            cl.leave(ULS, i, left)

    def torture(self):
        cl, ids, secs = self.cl, self.ids, self.a.secs
        release = cl.anchor(ids[0], ULS, "counter")
        v0 = int(cl.node(ids[0]).run("dlmt lvb %s counter" % ULS).kv("lvb")["value"])
        res = cl.on(ids, lambda i: "dlmbu tsc; torture-loop %s counter %d 20 b%d "
                    "--timeout 60; dlmbu tsc" % (ULS, secs, i), timeout=secs + 120)
        total, rate = 0, 0.0
        for i, r in res.items():
            n = int(r.kv("torture-loop")["total"])
            t0, t1 = (int(x) for x in re.findall(r"^tsc=(\d+)$", r.out, re.M))
            total += n
            rate += n / max(t1 - t0, 1)     # per cycle
        v = int(cl.node(ids[-1]).run("dlmt lvb %s counter" % ULS).kv("lvb")["value"])
        release()
        if v != v0 + total:
            raise BenchError("torture: LVB counter %d, expected %d" % (v, v0 + total))
        self.v["torture"] = rate

    def user_lockers(self, k):
        """The main job's figure: dlmt bench, k threads per node, each with
        its own open /dev/dlm_bu, on 64 resources mastered on the next node."""
        cl, ids, secs = self.cl, self.ids, self.a.secs
        pre = {i: "u%d.%d." % (i, k) for i in ids}
        for i in ids:
            cl.node(nxt(ids, i)).run(
                "dlmt hold %s --prefix %s --count 64 --mode NL > /tmp/h%d.out 2>&1 & "
                "echo $! > /tmp/h%d.pid; i=0; while ! grep -q ready=1 /tmp/h%d.out; do "
                "i=$((i+1)); [ $i -lt 900 ] || { cat /tmp/h%d.out; exit 1; }; usleep 50000; "
                "done" % (ULS, pre[i], i, i, i, i), timeout=120)
        res = timed(cl, ids, lambda i: "dlmbu tsc; dlmt bench %s --prefix %s --count 64 "
                    "--lockers %d --secs %d; dlmbu tsc" % (ULS, pre[i], k, secs),
                    timeout=secs + 120)
        rate = 0
        for i, (out, _, _) in res.items():
            t0, t1 = (int(x) for x in re.findall(r"^tsc=(\d+)$", out, re.M))
            rate += int(kv(out, "bench")["ops"]) / max(t1 - t0, 1)   # per cycle
        for i in ids:
            cl.node(nxt(ids, i)).run("kill $(cat /tmp/h%d.pid); wait; true" % i)
        self.v["ulk%d" % k] = rate

    def lockers(self, k):
        """k kernel threads per node (dlmbench bench, kernel lockspace, no
        LVB) lock EX and unlock 64 resources mastered on the next node: four
        small messages per operation.  Latencies in TSC cycles (converted at
        the end of the run), CPU from the guests' /proc/stat, wire bytes from
        eth0.  The 64-locker figure is also the small-message figure."""
        cl, ids, secs = self.cl, self.ids, self.a.secs
        pre = {i: "k%d.%d." % (i, k) for i in ids}
        for i in ids:
            mod(cl, nxt(ids, i), "hold %s 64 64 NL" % pre[i])
        h0 = host_cpu_ns(cl)
        res = timed(cl, ids, lambda i: "echo 'bench %s 64 %d %d EX' > %s; cat %s" % (
            pre[i], k, secs, CTL, CTL), timeout=secs + 120)
        h1 = host_cpu_ns(cl)
        ops = rate = busy = wire = 0
        p50, p99 = [], []
        for i, (out, b, w) in res.items():
            d = kv(out, "bench")
            if d["err"] != "0":
                raise BenchError("node %d: dlmbench bench failed: %s" % (i, out))
            ops += int(d["ops"])
            rate += int(d["ops"]) / max(int(d["cycles"]), 1)    # per cycle
            p50.append(int(d["p50_cyc"]))
            p99.append(int(d["p99_cyc"]))
            busy += b
            wire += w
        for i in ids:
            mod(cl, nxt(ids, i), "release")
        self.v["lk%d" % k] = rate
        self.v["lk%d_p50" % k] = statistics.mean(p50)
        self.v["lk%d_p99" % k] = statistics.mean(p99)
        # /proc/stat counts USER_HZ (100) ticks: 10000 us each.
        if k in (1, 64):
            self.v["cpu%d" % k] = busy * 10000.0 / max(ops, 1)
        if k == 64:
            self.v["hcpu64"] = (h1 - h0) / 1000.0 / max(ops, 1)
            name = len(pre[ids[0]]) + 2
            self.v["msg_s"] = 4 * rate
            self.v["wire_s"] = wire / max(4 * ops, 1)
            # Only the request carries the resource name.
            self.v["mbs_s"] = rate * (4 * MSG_HDR + name) / 1e6

    def messages(self, large):
        """Lock+unlock from 16 kernel threads per node on 64 resources
        mastered on the next node: four messages per operation (request,
        reply, unlock, unlock reply); with VALBLK the reply and the unlock
        carry the 3920-byte LVB.  (The small figure comes from lockers(64).)"""
        cl, ids, secs = self.cl, self.ids, self.a.secs
        tag = "l" if large else "s"
        pre = {i: "k%s%d." % (tag, i) for i in ids}
        for i in ids:
            mod(cl, nxt(ids, i), "hold %s 64 64 NL" % pre[i])
        res = timed(cl, ids, lambda i: "echo 'bench %s 64 16 %d EX%s' > %s; cat %s" % (
            pre[i], secs, " valblk" if large else "", CTL, CTL), timeout=secs + 120)
        ops = rate = wire = 0
        for i, (out, _, w) in res.items():
            d = kv(out, "bench")
            if d["err"] != "0":
                raise BenchError("node %d: dlmbench bench failed: %s" % (i, out))
            ops += int(d["ops"])
            rate += int(d["ops"]) / max(int(d["cycles"]), 1)    # per cycle
            wire += w
        for i in ids:
            mod(cl, nxt(ids, i), "release")
        name = len(pre[ids[0]]) + 2
        if large:
            self.v["msg_l"] = 4 * rate
            self.v["mbs_l"] = rate * (4 * MSG_HDR + name + 2 * LVBLEN) / 1e6
        else:
            self.v["msg_s"] = 4 * rate
            self.v["wire_s"] = wire / max(4 * ops, 1)

    def tcp(self):
        cl, ids = self.cl, self.ids
        a, b = ids[0], ids[1]
        p = cl.node(b).start("dlmbu tcprecv --port 5001 --timeout 60", timeout=90)
        cl.node(a).run("dlmbu tcpsend --to 192.0.2.%d --port 5001 --secs 3" % b, timeout=90)
        d = kv(p.wait().out, "tcprecv bytes")
        self.v["tcp"] = float(d["bytes_per_sec"]) / 1e6

    def resets(self):
        """Node a waits for the hub's RST from node b (packet socket), then
        at once locks and unlocks a resource mastered on b; the time from
        the RST's reception to the grant is recorded.  The grant is the
        first DLM message delivered to a's lock manager after the reset,
        through the detection of the dead connection, a new one, the
        request's delivery to b and the reply's back; one clock (a's TSC)."""
        cl, ids, n = self.cl, self.ids, self.a.resets
        a, b = ids[0], ids[1]
        mod(cl, b, "hold rr 1 1 NL")
        mod(cl, a, "op rr0 NL")    # a learns the master: a request, not a lookup
        prog = "/tmp/rst.progress"
        # The previous round's file would let the loop below run ahead.
        cl.node(a).run("rm -f %s" % prog)
        p = cl.node(a).start("dlmbu rstwait --peer 192.0.2.%d --count %d --res rr0 "
                             "--progress %s --timeout 60" % (b, n, prog), timeout=60 * n)
        cl.node(a).run("i=0; while [ ! -e %s ]; do i=$((i+1)); [ $i -lt 200 ] || exit 1; "
                       "usleep 50000; done" % prog)
        for k in range(1, n + 1):
            for _ in range(50):
                if int(cl.hub.cmd("reset %d %d" % (a, b)).split("killed=")[1]) > 0:
                    break
                time.sleep(0.2)
            else:
                raise BenchError("reset %d: the hub knows no connection between %d and %d"
                                 % (k, a, b))
            deadline = time.monotonic() + 60
            while True:
                r = cl.node(a).run("grep -c ^rst %s || true" % prog)
                if int(r.out.strip() or 0) >= k:
                    break
                if time.monotonic() > deadline:
                    raise BenchError("reset %d: no delivery within 60 s" % k)
                time.sleep(0.1)
            time.sleep(0.3)
        d = kv(p.wait().out, "rstwait")
        mod(cl, b, "release")
        # TSC cycles from the RST's reception (dlmbu) to the grant (the
        # module); converted to ms at the end of the run (cycles_to_us).
        self.v["reset_all"] = [int(x) for x in d["cyc"].split(",")]
        self.v["reset"] = med(self.v["reset_all"])

    def memory(self, large):
        """Node a holds N NL locks (VALBLK for large) on 50 resources mastered
        on b; the hub drops every frame between a and b; a converts every
        lock to CR, i.e. queues N convert messages that cannot leave; the
        growth of a's used memory (MemTotal - MemFree) over N is the memory
        per in-flight message: the comms layer's queue, its per-message
        state, and what TCP holds (the same for both)."""
        cl, ids, hub = self.cl, self.ids, self.cl.hub
        a, b = ids[0], ids[1]
        n = self.a.mem_large if large else self.a.mem_small
        mod(cl, b, "hold mm 50 50 NL")
        mod(cl, a, "hold mm %d 50 NL%s" % (n, " valblk" if large else ""), timeout=300)
        u0 = used_kb(cl, a)
        hub.cmd("drop 100 %d %d" % (a, b))
        try:
            mod(cl, a, "convert CR nowait", timeout=300)
            time.sleep(1)
            u1 = used_kb(cl, a)
        finally:
            hub.cmd("drop 0 %d %d" % (a, b))
        mod(cl, a, "wait 120", timeout=180)
        mod(cl, a, "release", timeout=300)
        mod(cl, b, "release")
        self.v["mem_l" if large else "mem_s"] = (u1 - u0) * 1024.0 / n

    def burst(self):
        cl, ids = self.cl, self.ids
        a, b = ids[0], ids[1]
        mod(cl, b, "hold bb 1000 1000 NL", timeout=300)
        watch = {i: cl.node(i).start("dlmbu memwatch --interval-ms 20 > /tmp/mw.out & "
                                     "echo $! > /tmp/mw.pid; wait", timeout=3600)
                 for i in ids}
        cl.on(ids, "i=0; while ! grep -q started /tmp/mw.out 2>/dev/null; do i=$((i+1)); "
              "[ $i -lt 200 ] || exit 1; usleep 50000; done")
        d = mod(cl, a, "burst bb 1000 %d" % self.a.burst, timeout=3000)
        cl.on(ids, "kill $(cat /tmp/mw.pid)")
        peak = {}
        for i, p in watch.items():
            p.wait(check=False)
            w = kv(cl.node(i).run("cat /tmp/mw.out").out, "memwatch base_kb")
            peak[i] = (int(w["peak_kb"]) - int(w["base_kb"])) / 1024.0
        mod(cl, b, "release", timeout=300)
        self.v["burst_s"] = peak[a]
        self.v["burst_m"] = peak[b]
        self.v["burst_r"] = float(d["per_sec"])


# --- the run -------------------------------------------------------------------

def swap(cl, ids, flavour, say):
    """Leave nothing behind and load the other dlm.ko on every node."""
    t0 = time.monotonic()
    cl.on(ids, "rmmod dlmbench 2>/dev/null; dlm-controller teardown && dlm-module unload && "
          "echo %s > /run/dlm/flavour && dlm-module load && dlm-controller setup && "
          "insmod /lib/modules/extra/dlmbench.ko" % flavour, timeout=180)
    say("  loaded the %s dlm.ko on %s (%.1f s)" % (flavour, ids, time.monotonic() - t0))


def run_cluster(args, n, ours, say):
    """Boot n nodes and run 2 x rounds rounds; [{"layer", "round", figures}]."""
    initrd = os.path.join(args.out, "initramfs-%d.cpio.gz" % n)
    initramfs.build(args.kdir, initrd, ours, extra=[
        ("lib/modules/extra/dlmbench.ko", os.path.join(args.tools, "dlmbench.ko"), 0o644),
        ("sbin/dlmbu", os.path.join(args.tools, "dlmbu"), 0o755)])
    rows = []
    with C.Cluster(args.kdir, n=n, dlm=[ours] * n, name="bench%d" % n, log=say,
                   initrd=initrd, mem=args.mem) as cl:
        ids = cl.alive()
        info = cl.node(ids[0]).run(
            "uname -r; cat /sys/devices/system/clocksource/clocksource0/current_clocksource; "
            "dmesg | grep -m1 -i 'tsc.*MHz' || true")
        say("guest kernel %s" % " / ".join(info.out.strip().splitlines()))
        rows_info = {"guest": info.out.strip().splitlines()}
        # The in-kernel clocks' resolution, as the module sees it.
        cl.node(ids[0]).run("insmod /lib/modules/extra/dlmbench.ko 2>/dev/null; true")
        kc = mod(cl, ids[0], "clock", timeout=60)
        rows_info["kclock"] = kc
        say("guest clocks: ktime_get_ns step %s ns, local_clock step %s ns, "
            "get_cycles step %s cycles" % (kc["ktime_step_ns"], kc["local_clock_step_ns"],
                                            kc["cycles_step"]))
        clock0 = {i: clock_sample(cl, i) for i in ids}
        err, errs = None, []
        try:
            for r, layer in enumerate(schedule(args.rounds)):
                # Every round loads its module afresh, the first one too (the
                # guests boot with ours), so no round inherits another's state.
                swap(cl, ids, "stock" if layer == "stock" else "alt", say)
                t0 = time.monotonic()
                say("%d nodes, round %d of %d: %s" % (n, r + 1, 2 * args.rounds,
                                                     layer if not args.null else
                                                     ("stock", "stock (alt slot)")[r % 2]))
                rd = Round(cl, ids, args, say, r // 2 + 1)
                try:
                    v = rd.run()
                finally:
                    # The figures that failed, also when the round ends early.
                    errs += ["%d nodes, round %d (%s): %s" % (n, r + 1, layer, e)
                             for e in rd.errors]
                say("  " + "  ".join("%s=%s" % (k, fmt(v[k])) for k, _, _ in FIGURES
                                     if k in v) + "  (%.0f s)" % (time.monotonic() - t0))
                rows.append({"nodes": n, "layer": layer, "round": r // 2 + 1, "v": v})
        except (BenchError, C.ClusterError) as e:
            # Keep the rounds done so far; the run still fails.
            errs.append("%d nodes, round %d: %s" % (n, len(rows) + 1, e))
            say("FAILED: " + errs[-1])
            cl.diagnose("bench", "bench-diag")
        err = "; ".join(errs) or None
        # Every rate above is timed by the guests' CLOCK_MONOTONIC (jiffies
        # on these kernels: fine over seconds), every latency by their TSC:
        # both must agree with the host's clock over the whole run, and the
        # TSC's rate converts cycles to time.
        rates = {}
        for i in ids:
            try:
                c1 = clock_sample(cl, i)
            except C.ClusterError as e:
                # No calibration: the cycle figures cannot be converted.
                for row in rows:
                    for k in CYCLE_FIGURES + ("reset", "reset_all"):
                        row["v"].pop(k, None)
                return rows, rows_info, "%s; no clock calibration: %s" % (err, e)
            rates[i] = clock_rates(clock0[i], c1)
            say("node %d: clocksource %s, CLOCK_MONOTONIC step %d ns, rate %.4f x host; "
                "TSC %.2f MHz (+-%.3f %%) over %.0f s" % (
                    i, c1["cs"], c1["step"], rates[i][0], rates[i][1] / 1e6,
                    rates[i][2] * 100, c1["host"] - clock0[i]["host"]))
        bad = check_clocks(rates)
        if bad:
            err = (err + "; " if err else "") + "the guest clocks are not usable for " \
                "timing: %s" % "; ".join(bad)
        hz = statistics.median(t for _, t, _ in rates.values())
        cycles_to_us(rows, hz)
        rows_info["clock"] = {"clocksource": c1["cs"], "mono_step_ns": c1["step"],
                              "tsc_hz": hz, "rates": rates}
        bad = cl.console_problems(faults=FAULTS)
        for i in ids:
            cl.node(i).quit()
        if bad:
            err = (err + "; " if err else "") + "console reports: %s" % bad
    return rows, rows_info, err


def fmt(x):
    if x is None:
        return "-"
    if isinstance(x, list):
        return "[%d]" % len(x)
    a = abs(x)
    if a >= 100:
        return "%.0f" % x
    if a >= 10:
        return "%.1f" % x
    if a >= 1:
        return "%.2f" % x
    return "%.3g" % x


def summarize(rows, n):
    """{figure: {"stock": [..], "ours": [..], "pairs": [ratios]}} for n nodes."""
    out = {}
    for k, _, _ in FIGURES:
        d = {"stock": [], "ours": [], "pairs": pair_ratios(rows, n, k)}
        for r in rows:
            if r["nodes"] != n or k not in r["v"]:
                continue
            if k == "reset":
                # Every reset of every round is one sample.
                d[r["layer"]] += r["v"]["reset_all"]
            else:
                d[r["layer"]].append(r["v"][k])
        if d["stock"] or d["ours"]:
            d["ratio"] = ratio_of_medians(d["stock"], d["ours"])
            out[k] = d
    return out


def table(rows, sizes, null):
    b = "stock'" if null else "ours"
    lines = []
    for n in sizes:
        s = summarize(rows, n)
        if not s:
            continue
        lines.append("%d nodes" % n)
        lines.append("%-48s %-24s %-24s %7s  %s" % (
            "", "stock min/median/max", "%s min/median/max" % b, "%s/st" % b[:4],
            "round pairs"))
        for k, label, better in FIGURES:
            if k not in s:
                continue
            d = s[k]

            def mmm(v):
                return "%s/%s/%s" % (fmt(min(v)), fmt(med(v)), fmt(max(v))) if v else "-"
            ratio = d["ratio"]
            pr = "%.2f-%.2f" % (min(d["pairs"]), max(d["pairs"])) if d["pairs"] else ""
            lines.append("%-48s %-24s %-24s %7s  %s" % (
                label + (" (+)" if better == "hi" else " (-)"), mmm(d["stock"]),
                mmm(d["ours"]), "%.2f" % ratio if ratio else "-", pr))
        lines.append("")
    return "\n".join(lines)


def plot(rows, sizes, path, null, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        # Debian's python3-matplotlib is for Debian's python3; the python3
        # on PATH may be another one (pyenv).
        if os.path.realpath(sys.executable) != os.path.realpath(DEBIAN_PYTHON) and \
                os.access(DEBIAN_PYTHON, os.X_OK):
            tmp = path + ".json"
            with open(tmp, "w") as f:
                json.dump({"rows": rows, "sizes": sizes, "null": null, "title": title}, f)
            r = subprocess.run([DEBIAN_PYTHON, os.path.abspath(__file__), "--plot-from", tmp,
                                "--out", path])
            os.unlink(tmp)
            return r.returncode == 0
        print("bench: python3-matplotlib is not installed (scripts/setup.sh); no plot",
              file=sys.stderr)
        return False
    keys = [k for k, _, _ in FIGURES]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(keys) + 1.5))
    h = 0.8 / max(len(sizes), 1)
    colors = ["#4477aa", "#ee6677", "#228833"]
    for j, n in enumerate(sizes):
        s = summarize(rows, n)
        ys, xs, lo, hi = [], [], [], []
        for y, k in enumerate(keys):
            d = s.get(k)
            if not d or d["ratio"] is None:
                continue
            r = d["ratio"]
            ys.append(y + (j - (len(sizes) - 1) / 2) * h)
            xs.append(r)
            pr = d["pairs"] or [r]
            lo.append(max(r - min(pr), 0))
            hi.append(max(max(pr) - r, 0))
        ax.barh(ys, xs, height=h, color=colors[j % 3], label="%d nodes" % n,
                xerr=[lo, hi], error_kw={"elinewidth": 0.8, "capsize": 2})
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(keys)))
    ax.set_yticklabels([LABEL[k].strip() + (" (+)" if BETTER[k] == "hi" else " (-)")
                        for k in keys], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("%s / stock, medians (whiskers: range of neighbouring-round ratios);"
                  " (+) higher is better, (-) lower" % ("stock'" if null else "ours"),
                  fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1) if m else ""
    except OSError:
        pass
    return "%s, %d host cores, %s" % (cpu, os.cpu_count() or 0, platform.release())


def ancestor_holds_lock(path=VM_LOCK):
    """Whether a process above us is `flock PATH ...` (which holds the lock
    for us: taking it again on a new file description would wait forever)."""
    pid = os.getppid()
    while pid > 1:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
            with open("/proc/%d/stat" % pid) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if argv and os.path.basename(argv[0].decode(errors="replace")) == "flock" and \
                path.encode() in argv:
            return True
        pid = ppid
    return False


def vm_lock(args):
    if args.no_vm_lock or ancestor_holds_lock():
        return None
    f = open(VM_LOCK, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print("bench: waiting for %s (another QEMU run holds it; if it is yours, pass "
              "--no-vm-lock)" % VM_LOCK, flush=True)
        fcntl.flock(f, fcntl.LOCK_EX)
    return f


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ours", help="our dlm.ko (default build/kmod/dlm.ko)")
    ap.add_argument("--kdir", help="kernel tree (default: scripts/kernel.sh)")
    ap.add_argument("--tools", help="dir with dlmbench.ko and dlmbu (default build/dlmbench)")
    ap.add_argument("--nodes", default="2,3", help="cluster sizes, e.g. 2,3")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per layer")
    ap.add_argument("--secs", type=int, default=3, help="seconds per throughput figure")
    ap.add_argument("--resets", type=int, default=4,
                    help="resets per round (4 x 5 rounds = 20 per layer and size)")
    ap.add_argument("--no-user-lockers", dest="user_lockers", action="store_false",
                    help="skip the dlmt (user-space) 64-locker figure")
    ap.add_argument("--mem-small", type=int, default=5000)
    ap.add_argument("--mem-large", type=int, default=2000)
    ap.add_argument("--burst", type=int, default=1000000,
                    help="requests of the burst (0: none)")
    ap.add_argument("--burst-rounds", type=int, default=1,
                    help="the burst runs in the first N rounds of each layer")
    ap.add_argument("--mem", type=int, default=768, help="guest memory, MiB")
    ap.add_argument("--pair-sizes", default="2",
                    help="cluster sizes that also run the figures between one pair of "
                    "nodes: raw TCP, memory per message, the burst")
    ap.add_argument("--null", action="store_true",
                    help="stock in both slots (null experiment)")
    ap.add_argument("--out", default=os.path.join(C.BUILD, "bench"))
    ap.add_argument("--doc", action="store_true",
                    help="write the table and plot into Documentation/")
    ap.add_argument("--no-vm-lock", action="store_true")
    ap.add_argument("--plot-from", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plot_from:
        # Internal: plot() run by Debian's python3 (see there).
        with open(args.plot_from) as f:
            d = json.load(f)
        return 0 if plot(d["rows"], d["sizes"], args.out, d["null"], d["title"]) else 1
    args.kdir = args.kdir or C.default_kdir()
    args.tools = args.tools or os.path.join(C.BUILD, "dlmbench")
    sizes = [int(x) for x in args.nodes.split(",")]
    args.pair_sizes = [int(x) for x in args.pair_sizes.split(",") if x]
    ours = args.ours or os.path.join(C.BUILD, "kmod", "dlm.ko")
    if args.null:
        stage = initramfs.stage_modules(args.kdir)
        rel = initramfs.kernel_release(args.kdir)
        ours = os.path.join(stage, "lib/modules", rel, "kernel/fs/dlm/dlm.ko")
    if not os.path.isfile(ours):
        ap.error("no dlm.ko at %s" % ours)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.monotonic()

    def say(msg):
        print("[%5.0fs] %s" % (time.monotonic() - t0, msg), flush=True)

    lock = vm_lock(args)
    cmdline = " ".join(sys.argv)
    if os.environ.get("BENCH_COMMAND"):
        cmdline = "%s (%s)" % (os.environ["BENCH_COMMAND"], cmdline)
    say("bench: %s; stock vs %s, %d rounds each, %s nodes, %d s per figure" % (
        args.kdir, ours, args.rounds, args.nodes, args.secs))
    rows, infos, errors = [], {}, []
    try:
        for n in sizes:
            try:
                r, info, err = run_cluster(args, n, ours, say)
            except (BenchError, C.ClusterError) as e:
                r, info, err = [], None, "%d nodes: %s" % (n, e)
            rows += r
            if info:
                infos[n] = info
            if err:
                errors.append(err)
    finally:
        if lock:
            lock.close()
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    info = next(iter(infos.values()), {})
    ck = info.get("clock", {})
    kc = info.get("kclock", {})
    head = ("%s, kernel %s, %s; %d rounds per layer (stock, ours, stock, ...) on the same "
            "VMs, %d s per figure; %s%.0f min" % (
                stamp, initramfs.kernel_release(args.kdir), machine(), args.rounds, args.secs,
                "null experiment (stock in both slots); " if args.null else "",
                (time.monotonic() - t0) / 60))
    clock = ("guest clocks: clocksource %s (CLOCK_MONOTONIC step %s ns; in the kernel "
             "ktime_get_ns step %s ns, local_clock step %s ns); rates and latencies are "
             "timed by the TSC (get_cycles/rdtsc, step %s cycles), %.1f MHz as measured "
             "against the host's clock over the run" % (
                 ck.get("clocksource", "?"), ck.get("mono_step_ns", "?"),
                 kc.get("ktime_step_ns", "?"), kc.get("local_clock_step_ns", "?"),
                 kc.get("cycles_step", "?"), ck.get("tsc_hz", 0) / 1e6))
    text = (head + "\n" + clock + "\ncommand: " + cmdline + "\n\n" +
            table(rows, sizes, args.null) +
            "".join("FAILED: %s\n" % e for e in errors))
    print(text)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"head": head, "command": cmdline, "rows": rows, "null": args.null,
                   "sizes": sizes}, f, indent=1)
    with open(os.path.join(args.out, "table.txt"), "w") as f:
        f.write(text)
    png = os.path.join(args.out, "ratios.png")
    ok = plot(rows, sizes, png, args.null, head.split(";")[0])
    say("wrote %s%s" % (os.path.join(args.out, "table.txt"), " and " + png if ok else ""))
    if args.doc:
        write_doc(text, png if ok else None, args.null)
    return 1 if errors else 0


def write_doc(text, png, null, doc=None):
    """Put the table between the ".. bench-main-start/-end" (or -null-)
    markers of benchmarks.rst (appended if missing), the plot next to it."""
    doc = doc or os.path.join(TOP, "Documentation", "benchmarks.rst")
    tag = "null" if null else "main"
    start, end = ".. bench-%s-start" % tag, ".. bench-%s-end" % tag
    with open(doc) as f:
        s = f.read()
    block = "%s\n\n::\n\n%s\n\n%s" % (start, "\n".join("    " + l if l else ""
                                                       for l in text.splitlines()), end)
    if start in s and end in s:
        s = s[:s.index(start)] + block + s[s.index(end) + len(end):]
    else:
        s = s.rstrip("\n") + "\n\n" + block + "\n"
    with open(doc, "w") as f:
        f.write(s)
    if png:
        shutil.copy(png, os.path.join(os.path.dirname(doc), "bench-%s.png" % tag))


if __name__ == "__main__":
    sys.exit(main())
