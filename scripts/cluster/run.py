#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""dlm-rs main job: boot a 3-node QEMU cluster and run lock traffic across it.

    python3 scripts/cluster/run.py [--nodes N] [--dlm SPEC] [--kdir TREE]
                                   [--stack controld|static]
                                   [--torture-secs S] [--bench-secs S]

Boots the nodes under Debian's corosync and dlm_controld (--stack static:
the harness's static controller instead), joins a lockspace on all of them,
runs the LVB torture on every node at once (exactness checked), then the
lock benchmark with 1, 8 and 64 lockers per node on every node at once,
prints progress and numbers, leaves the lockspace node by node (dlm_controld
takes the others through each change; with the static stack the host orders
two-phase membership changes), stops corosync and dlm_controld and the VMs.
Exit status non-zero on any failure.
"""

import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster as C  # noqa: E402

LS = "main"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--dlm", help="per-node dlm.ko: stock or a path, comma-separated")
    ap.add_argument("--kdir", help="kernel tree (default: scripts/kernel.sh)")
    ap.add_argument("--stack", choices=C.STACKS, default="controld",
                    help="membership: corosync + dlm_controld in the guests (controld, "
                    "the default) or the harness's static controller (static)")
    ap.add_argument("--protocol", choices=C.PROTOCOLS, default="tcp",
                    help="the DLM's transport (dlm.conf protocol= under controld, configfs "
                    "cluster/protocol under the static controller)")
    ap.add_argument("--networks", type=int, choices=(1, 2), default=1,
                    help="network segments per guest (2: a second NIC, both addresses "
                    "in every comm)")
    ap.add_argument("--torture-secs", type=int, default=20)
    ap.add_argument("--bench-secs", type=int, default=8)
    ap.add_argument("--bench-count", type=int, default=64,
                    help="resources per node for bench")
    args = ap.parse_args()
    if not 2 <= args.nodes <= 3:
        ap.error("--nodes must be 2 or 3")
    kdir = args.kdir or C.default_kdir()
    dlm = C.parse_dlm(args.dlm, args.nodes)
    t0 = time.monotonic()

    def say(msg):
        print("[%5.0fs] %s" % (time.monotonic() - t0, msg), flush=True)

    say("booting %d nodes (dlm %s) from %s" % (args.nodes, ",".join(dlm), kdir))
    if args.stack == "controld":
        say("membership: corosync (knet over UDP, votequorum) and dlm_controld (fencing "
            "disabled) in every guest")
    else:
        say("membership: the harness's static controller, changes ordered by the host")
    if args.protocol != "tcp" or args.networks != 1:
        say("transport: %s on %d network(s)" % (args.protocol.upper(), args.networks))
    with C.Cluster(kdir, n=args.nodes, dlm=dlm, name="main", log=say,
                   stack=args.stack, protocol=args.protocol, networks=args.networks) as cl:
        ids = cl.alive()
        cl.join(LS, ids)
        if args.stack == "controld":
            out = cl.node(ids[0]).run("dlm_tool ls").out
            m = re.search(r"^members\s+([\d ]+)$", out, re.M)
            say("dlm_controld on node %d: lockspace %s members %s" %
                (ids[0], LS, m.group(1).strip() if m else "unknown"))
            if not m or sorted(int(x) for x in m.group(1).split()) != ids:
                say("FAILED: dlm_controld does not have every node in %s: %s" % (LS, out))
                return 1
        say("lockspace %s joined on nodes %s" % (LS, ids))

        release = cl.anchor(1, LS, "counter")
        v0 = int(cl.node(1).run("dlmt lvb %s counter" % LS).kv("lvb")["value"])
        say("torture: every node increments the LVB counter of one resource "
            "under EX for %d s" % args.torture_secs)
        pend = {i: cl.node(i).start("torture-loop %s counter %d 20 m%d" %
                                    (LS, args.torture_secs, i),
                                    timeout=args.torture_secs + 240) for i in ids}
        totals = {}
        secs = 1
        for i, p in pend.items():
            kv = p.wait().kv("torture-loop")
            totals[i] = int(kv["total"])
            secs = max(secs, int(kv["secs"]))
            say("  node %d: %d increments" % (i, totals[i]))
        v = int(cl.node(ids[-1]).run("dlmt lvb %s counter" % LS).kv("lvb")["value"])
        s = sum(totals.values())
        say("torture: %d increments in %d s = %.1f ops/s across %d nodes; counter %d "
            "(expected %d): %s" % (s, secs, s / secs, len(ids), v, v0 + s,
                                   "exact" if v == v0 + s else "WRONG"))
        if v != v0 + s:
            say("FAILED: LVB counter is not exact")
            return 1

        release()
        for lockers in (1, 8, 64):
            # Node i benchmarks resources b<i>.<lockers>.*, which the next
            # node locks first (an NL hold), so they are mastered remotely.
            pre = {i: "b%d.%d." % (i, lockers) for i in ids}
            holder = {i: ids[(k + 1) % len(ids)] for k, i in enumerate(ids)}
            for i in ids:
                h = holder[i]
                cl.node(h).run(
                    "dlmt hold %s --prefix %s --count %d --mode NL > /tmp/h%d.out 2>&1 & "
                    "echo $! > /tmp/h%d.pid; i=0; while ! grep -q ready=1 /tmp/h%d.out; do "
                    "i=$((i+1)); [ $i -lt 900 ] || { cat /tmp/h%d.out; exit 1; }; usleep 100000; "
                    "done" % (LS, pre[i], args.bench_count, i, i, i, i), timeout=120)
            say("bench: %d locker(s) per node, %d resources per node mastered on the next "
                "node, %d s" % (lockers, args.bench_count, args.bench_secs))
            res = cl.on(ids, lambda i: "dlmt bench %s --prefix %s --count %d --lockers %d "
                        "--secs %d" % (LS, pre[i], args.bench_count, lockers, args.bench_secs),
                        timeout=args.bench_secs + 180)
            tot = 0.0
            for i, r in sorted(res.items()):
                kv = r.kv("bench")
                tot += float(kv.get("ops_per_sec", 0))
                say("  node %d: ops/s %s p50 %s us p99 %s us max %s us" % (
                    i, kv.get("ops_per_sec"), kv.get("p50_us"), kv.get("p99_us"),
                    kv.get("max_us")))
            say("  total %.0f ops/s" % tot)
            for i in ids:
                cl.node(holder[i]).run("kill $(cat /tmp/h%d.pid); wait; true" % i)

        # Leave node by node, with a membership change on the rest each time.
        left = list(ids)
        for i in reversed(ids):
            left.remove(i)
            cl.leave(LS, i, left)
            say("node %d left %s" % (i, LS))
        if args.stack == "controld":
            # Every node leaves the cluster cleanly: dlm_controld, then corosync.
            for i in reversed(ids):
                cl.node(i).run("cluster-stack stop", timeout=120)
            say("corosync and dlm_controld stopped on nodes %s" % ids)
        bad = cl.console_problems()
        for i in ids:
            cl.node(i).quit()
        say("nodes stopped; logs in %s" % cl.dir)
        if bad:
            say("FAILED: console reports: %s" % bad)
            return 1
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
