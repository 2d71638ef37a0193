#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""dlm-rs cluster suite: DLM and GFS2 scenarios on a 3-node QEMU cluster.

    python3 scripts/cluster/suite.py [--only NAME[,NAME]] [--dlm SPEC] [--kdir TREE]

Each scenario boots a fresh cluster, is bounded by a host-side timeout, and
asserts outcomes (exact LVB counters, file contents, fsck, clean consoles).
The last line is "N passed, M failed"; the exit status is non-zero if
anything failed.  See Documentation/testing.rst.
"""

import argparse
import hashlib
import os
import re
import struct
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster as C  # noqa: E402
from scenario import (  # noqa: E402
    BATCH, LS, RES, Ctx, Failed, anchor, check, check_versions, dmesg_count, lvb_value,
    master_of, start_torture, summarize_diag, take_leaks, tcp_opens, torture_total,
    torture_totals, watched_totals)


def sc_join(cl, ctx):
    ids = cl.alive()
    cl.join(LS, ids)
    ctx.say("3 nodes joined lockspace %s" % LS)
    anchor(cl, ctx)
    pend = {i: start_torture(cl, i, 15, "j%d" % i) for i in ids}
    totals = torture_totals(pend)
    s = sum(t for t, _ in totals.values())
    secs = max(d for _, d in totals.values())
    v = lvb_value(cl, 2)
    ctx.say("torture: per node %s, sum %d, LVB read on node 2: %d" %
            ({i: t for i, (t, _) in totals.items()}, s, v))
    check(s > 0, "no increments")
    check(v == s, "LVB counter %d != sum of increments %d" % (v, s))
    ctx.numbers["torture_ops_per_sec"] = round(s / max(secs, 1), 1)
    ctx.numbers["increments"] = s
    check_versions(cl, ids)



def sc_resets(cl, ctx):
    ids = cl.alive()
    cl.join(LS, ids)
    anchor(cl, ctx)
    opens0 = tcp_opens(cl, ids)
    conn0 = dmesg_count(cl, ids, "got connection from")
    hub0 = cl.hub.stats()
    # Phase 1: the hub kills every port-21064 connection every 200 ms.
    secs = ctx.args.resets_secs
    cl.hub.cmd("reset-every 200")
    ctx.say("hub: reset-every 200 ms for %d s while 3 nodes torture" % secs)
    pend = {i: start_torture(cl, i, secs, "r%d" % i) for i in ids}
    try:
        totals = watched_totals(cl, ctx, pend, "hub resets")
    except Failed as e:
        st = cl.hub.stats()
        raise Failed("%s [before and during the stall the hub reset %d connections]" % (
            e, int(st["resets"]) - int(hub0["resets"])))
    finally:
        cl.hub.cmd("reset-stop")
    hub1 = cl.hub.stats()
    resets = int(hub1["resets"]) - int(hub0["resets"])
    rst = int(hub1["rst_frames"]) - int(hub0["rst_frames"])
    opens1 = tcp_opens(cl, ids)
    conn1 = dmesg_count(cl, ids, "got connection from")
    s1 = sum(t for t, _ in totals.values())
    v1 = lvb_value(cl, 3)
    ctx.say("phase 1: increments %s sum %d, LVB %d; hub resets=%d rst_frames=%d; "
            "new TCP connections %d, accepted by dlm %d" %
            ({i: t for i, (t, _) in totals.items()}, s1, v1, resets, rst,
             opens1 - opens0, conn1 - conn0))
    check(resets > 0, "the hub injected no reset")
    check(opens1 - opens0 > 0 and conn1 - conn0 > 0,
          "no new DLM connections: the resets did not take effect")
    check(v1 == s1, "LVB counter %d != sum of increments %d under hub resets" % (v1, s1))

    # Phase 2, inside the guests: node 2 kills its established port-21064
    # sockets with ss -K every 200 ms; node 3 repeatedly installs an
    # nftables rule that answers its own outgoing DLM segments with a TCP
    # reset (300 ms on, 1 s off).  10 s, all nodes torturing.
    ctx.say("in-guest: ss -K on node 2 every 200 ms, nft reject-with-tcp-reset on node 3 "
            "300 ms of every 1.3 s, for 10 s")
    killer = cl.node(2).start(
        "n=0; end=$(($(date +%s)+10)); while [ $(date +%s) -lt $end ]; do "
        "k=$(ss -K -t -n state established '( dport = :21064 or sport = :21064 )' | "
        "grep -c 21064); n=$((n+k)); usleep 200000; done; echo sskill killed=$n",
        timeout=60)
    nft = cl.node(3).start(
        "set -e; n=0; end=$(($(date +%s)+10)); while [ $(date +%s) -lt $end ]; do "
        "nft add table inet dlmrs; "
        "nft add chain inet dlmrs out '{ type filter hook output priority 0; }'; "
        "for d in dport sport; do nft add rule inet dlmrs out tcp $d 21064 "
        "'tcp flags & (syn | fin | rst) == 0' counter reject with tcp reset; done; "
        "usleep 300000; "
        "p=$(nft list table inet dlmrs | sed -n 's/.*packets \\([0-9]*\\).*/\\1/p' | "
        "awk '{s+=$1} END {print s+0}'); n=$((n+p)); "
        "nft delete table inet dlmrs; usleep 1000000; done; echo nft rejected=$n",
        timeout=60)
    pend = {i: start_torture(cl, i, 10, "s%d" % i) for i in ids}
    totals2 = watched_totals(cl, ctx, pend, "in-guest (ss -K, nft) resets")
    killed = int(killer.wait().kv("sskill")["killed"])
    rejected = int(nft.wait().kv("nft")["rejected"])
    s2 = sum(t for t, _ in totals2.values())
    v2 = lvb_value(cl, 1)
    opens2 = tcp_opens(cl, ids)
    ctx.say("phase 2: increments sum %d, LVB %d (expected %d); ss -K killed %d sockets, "
            "nft rejected %d segments with a reset; new TCP connections %d" %
            (s2, v2, s1 + s2, killed, rejected, opens2 - opens1))
    check(killed > 0, "ss -K killed no socket")
    check(rejected > 0, "the nft rule rejected no segment")
    check(v2 == s1 + s2, "LVB counter %d != %d after in-guest resets" % (v2, s1 + s2))
    ctx.numbers.update(hub_resets=resets, hub_rst_frames=rst, ss_killed=killed,
                       nft_rejected=rejected,
                       new_connections=opens2 - opens0, increments=s1 + s2,
                       torture_ops_per_sec_under_resets=round(
                           s1 / max(max(d for _, d in totals.values()), 1), 1))


def sc_leave_rejoin(cl, ctx):
    ids = cl.alive()
    cl.join(LS, ids)
    anchor(cl, ctx)
    # Long enough to outlast node 3's leave and rejoin (3x on a debug kernel).
    pend = {i: start_torture(cl, i, 45 * cl.scale, "l%d" % i) for i in (1, 2)}
    t3a, _ = torture_total(start_torture(cl, 3, 5, "l3a"))
    m = master_of(cl)
    ctx.say("node 3 did %d increments; %s is mastered by node %s; node 3 leaves" %
            (t3a, RES, m))
    check(m != 3, "resource master is the leaving node; the LVB would not survive")
    cl.leave(LS, 3, [1, 2])
    ctx.say("survivors 1,2 recovered without node 3; node 3 rejoins")
    time.sleep(3)
    before = {i: cl.recover_count(i, LS) for i in (1, 2)}
    cl.change_members(LS, [1, 2], [1, 2, 3], wait=False)
    cl.node(3).run("dlm-controller members %s '1 2 3' && dlmt join %s" % (LS, LS), timeout=120)
    cl.wait_recovered(LS, [1, 2], before)
    busy = [i for i in (1, 2) if not pend[i].done.is_set()]
    ctx.say("node 3 rejoined; torture on node 3 again (nodes %s torturing throughout)" % busy)
    check(busy == [1, 2], "nodes 1,2 finished their torture before node 3 rejoined: "
          "the scenario did not exercise leave/rejoin under load")
    t3b, _ = torture_total(start_torture(cl, 3, 8, "l3b"))
    t1, _ = torture_total(pend[1])
    t2, _ = torture_total(pend[2])
    s = t1 + t2 + t3a + t3b
    v = lvb_value(cl, 3)
    ctx.say("increments: node1 %d node2 %d node3 %d+%d = %d; LVB read on node 3: %d" %
            (t1, t2, t3a, t3b, s, v))
    check(v == s, "LVB counter %d != sum of increments %d" % (v, s))
    ctx.numbers["increments"] = s


def sc_kill(cl, ctx):
    ids = cl.alive()
    cl.join(LS, ids)
    anchor(cl, ctx)
    # If node 3 dies holding EX, recovery marks the LVB not valid (its value
    # stays the master's last committed one): the survivors accept that flag.
    inval = "--allow-invalid"
    pend = {i: start_torture(cl, i, 45, "k%d" % i, extra=inval) for i in (1, 2)}
    victim = cl.node(3).start("torture-loop %s %s 600 %d k3 %s" % (LS, RES, BATCH, inval),
                              timeout=700)
    time.sleep(12)
    m = master_of(cl)
    check(m is not None and m != 3, "resource master is %s; the victim must not be the "
          "master (the LVB would be lost with it)" % m)
    ctx.say("killing node 3 (SIGKILL of its QEMU); %s mastered by node %d" % (RES, m))
    cl.node(3).kill()
    del victim
    cl.change_members(LS, [1, 2], [1, 2],
                      between=lambda: cl.on([1, 2], "dlm-controller rmcomm 3"))
    ctx.say("survivors recovered; waiting for their torture to finish")
    t1, _ = torture_total(pend[1])
    t2, _ = torture_total(pend[2])
    # Node 3's completed batches were reported on its console before the kill.
    rep = re.findall(r"dlmrs-torture k3 batch=\d+ rc=0 .*? ok=(\d+)", cl.node(3).console_text())
    t3 = sum(int(x) for x in rep)
    v = lvb_value(cl, 1, extra=inval)
    lo, hi = t1 + t2 + t3, t1 + t2 + t3 + BATCH
    ctx.say("increments: node1 %d node2 %d node3 reported %d (%d batches, at most %d more "
            "in flight); LVB %d, allowed [%d, %d]" % (t1, t2, t3, len(rep), BATCH, v, lo, hi))
    check(t3 > 0, "node 3 reported no completed batch before the kill")
    check(lo <= v <= hi, "LVB counter %d outside [%d, %d]" % (v, lo, hi))
    ctx.numbers.update(increments_reported=lo, lvb=v, in_flight=v - lo)


# Bad frames for the badbytes scenario: (name, bytes for a sender, the
# receiver's log line for our layer, for the stock C layer).  debugfs rawmsg
# queues them between whole messages; it takes a header at least.
def bad_header(version, length):
    """16 bytes of dlm_header: h_version, h_lockspace 0, h_nodeid, h_length,
    h_cmd DLM_MSG, h_pad."""
    return lambda sender: struct.pack("<IIIHBB", version, 0, sender, length, 1, 0)


GAP_SEQ = 0x40000000


def gap_fin(sender):
    """A well-formed DLM_OPTS carrying a DLM_FIN, numbered far ahead of
    anything the sender sent: to the receiver, messages were lost."""
    return (struct.pack("<IIIHBB", 0x00030002, GAP_SEQ, sender, 40, 3, 0) +
            struct.pack("<BBHI", 5, 0, 0, 0) +
            struct.pack("<IIIHBB", 0x00030002, 0, sender, 16, 5, 0))


BAD_FRAMES = [
    ("length 8", bad_header(0x00030002, 8),
     r"received invalid header from node %d: h_length 8 is less than",
     r"received invalid length header: 8 from node %d"),
    ("version 2.1", bad_header(0x00020001, 16),
     r"received invalid header from node %d: h_version 0x00020001 has major version 2",
     r"received invalid version header: [0-9]+ from node %d"),
    ("length 5000", bad_header(0x00030002, 5000),
     r"received invalid header from node %d: h_length 5000 exceeds",
     r"received invalid length header: 5000 from node %d"),
    # Not malformed: a sequence gap.  Nothing was lost and the stream goes
    # on, so both drop the message; ours would reset the connection only if
    # the gap persisted (no progress for 2 s).
    ("seq gap", gap_fin,
     r"ignore dlm msg because seq mismatch, seq: %d, expected: [0-9]+, nodeid: %%d" % GAP_SEQ,
     r"ignore dlm msg because seq mismatch, seq: %d, expected: [0-9]+, nodeid: %%d" % GAP_SEQ),
]


def sc_badbytes(cl, ctx):
    """A configured peer sends a frame with a bad length or version, or a
    message numbered far ahead (debugfs rawmsg writes it into the stream
    between whole messages) while every node tortures: the receiver logs one
    clear line and closes, the peer reconnects, and no lock message is lost
    (exact LVB counter)."""
    ids = cl.alive()
    cl.join(LS, ids)
    anchor(cl, ctx)
    ours = [i for i in ids if cl.dlm[i - 1] != "stock"]
    receivers = ours or [2]
    plan = []
    for r in receivers:
        senders = [j for j in ids if j != r]
        for k, frame in enumerate(BAD_FRAMES):
            plan.append((senders[k % len(senders)], r, frame))
    secs = 12 + 4 * len(plan)
    pend = {i: start_torture(cl, i, secs, "b%d" % i) for i in ids}
    time.sleep(4)
    opens0 = tcp_opens(cl, ids)
    def inject():
        for s, r, (what, build, ours_re, stock_re) in plan:
            pat = (stock_re if cl.dlm[r - 1] == "stock" else ours_re) % s
            before = dmesg_count(cl, [r], pat)
            esc = "".join("\\%03o" % b for b in build(s))
            cl.node(s).run("printf '%s' > /tmp/bad && "
                           "dd if=/tmp/bad of=/sys/kernel/debug/dlm/comms/%d/rawmsg bs=64 "
                           "count=1 2>/dev/null" % (esc, r))
            deadline = time.monotonic() + 15 * cl.scale
            n = before
            while n == before and time.monotonic() < deadline:
                time.sleep(0.5)
                n = dmesg_count(cl, [r], pat)
            ctx.say("node %d -> node %d: bad %s; node %d logged %d line(s)" %
                    (s, r, what, r, n - before))
            check(n - before == 1, "node %d logged %d lines matching /%s/ for a bad %s "
                  "from node %d, expected exactly 1" % (r, n - before, pat, what, s))
            time.sleep(2)

    totals = watched_totals(cl, ctx, pend, "bad bytes", during=inject)
    opens1 = tcp_opens(cl, ids)
    s_total = sum(t for t, _ in totals.values())
    v = lvb_value(cl, 1)
    ctx.say("increments %s sum %d, LVB %d; new TCP connections %d" %
            ({i: t for i, (t, _) in totals.items()}, s_total, v, opens1 - opens0))
    check(opens1 - opens0 >= 1, "no new connection after the bad frames: nobody reconnected")
    check(v == s_total, "LVB counter %d != sum of increments %d after bad frames" %
          (v, s_total))
    # The connections work after all that: every pair is 3.2 and a fresh
    # round of torture on every node is exact too.
    check_versions(cl, ids)
    pend = {i: start_torture(cl, i, 4, "c%d" % i) for i in ids}
    s2 = sum(t for t, _ in torture_totals(pend).values())
    v2 = lvb_value(cl, 3)
    check(v2 == s_total + s2, "LVB counter %d != %d after the bad frames" %
          (v2, s_total + s2))
    ctx.numbers.update(bad_frames=len(plan), increments=s_total + s2,
                       new_connections=opens1 - opens0)



def sc_cycles(cl, ctx):
    """--cycles (20) times on every node: insmod (the first at boot), join,
    torture, leave in dlm_controld's order, rmmod.  Each round's counter is
    exact; with kmemleak (debug flavour) every node is scanned after each
    leave while dlm.ko is still loaded and once more after the last rmmod,
    and any unreferenced object fails the scenario except the known leak of
    the stock config.c we link (drop_node, counted and reported)."""
    ids = cl.alive()
    n = ctx.args.cycles
    leakcheck = all(cl.has_kmemleak(i) for i in ids)
    ctx.say("%d cycles; kmemleak %s" % (n, "on" if leakcheck else "not in this kernel"))
    check(leakcheck or not ctx.args.require_kmemleak,
          "--require-kmemleak: this kernel has no kmemleak (build FLAVOUR=debug)")
    known, other = {i: 0 for i in ids}, []
    if leakcheck:
        # Scans happen when we ask, and every report is judged below.
        cl.on(ids, "echo scan=off > /sys/kernel/debug/kmemleak")
        _, o = take_leaks(cl, ids, "boot", True)
        other += o
        check(not other, "kmemleak after boot: %s" % "; ".join(other[:5]))
    increments = 0
    for c in range(1, n + 1):
        if c > 1:
            cl.on(ids, "dlm-module load && dlm-controller setup", timeout=120)
        cl.join(LS, ids)
        release = anchor(cl, ctx, 1)
        pend = {i: start_torture(cl, i, 3, "y%d.%d" % (c, i)) for i in ids}
        totals = torture_totals(pend)
        s = sum(t for t, _ in totals.values())
        v = lvb_value(cl, 1 + c % len(ids))
        check(s > 0, "cycle %d: no increments" % c)
        check(v == s, "cycle %d: LVB counter %d != sum of increments %d" % (c, v, s))
        increments += s
        release()
        left = list(ids)
        for x in reversed(ids):
            left.remove(x)
            cl.leave(LS, x, left)
        if leakcheck:
            time.sleep(6)   # kmemleak reports only objects older than 5 s
            k, o = take_leaks(cl, ids, "cycle%d" % c, True)
            for i, cnt in k.items():
                known[i] += cnt
            other += o
            check(not other, "cycle %d: kmemleak: %s" % (c, "; ".join(other[:5])))
        cl.on(ids, "dlm-controller teardown && dlm-module unload", timeout=120)
        bad = cl.console_problems()
        check(not bad, "cycle %d: console reports: %s" % (c, "; ".join(
            "node %d: %s" % (i, " | ".join(l[:200] for l in ls[:3])) for i, ls in bad.items())))
        ctx.say("cycle %d: %d increments exact; left and unloaded on %s; config.c leaks so "
                "far %s" % (c, s, ids, known if leakcheck else "(no kmemleak)"))
    if leakcheck:
        time.sleep(6)
        _, o = take_leaks(cl, ids, "unloaded", False)
        check(not o, "kmemleak after the last rmmod: %s" % "; ".join(o[:5]))
    # The module loads once more and works after all that.
    cl.on(ids, "dlm-module load && dlm-controller setup", timeout=120)
    ctx.numbers.update(cycles=n, increments=increments,
                       kmemleak="on" if leakcheck else "off",
                       config_c_leaks=sum(known.values()))


GFS_FILES = 40        # distinct files per node, and creates per node in shared/
GFS_REGION = 64 * 1024  # each node's region of the shared file


def file_content(node, i):
    return "".join("node %d file %d line %d\n" % (node, i, k) for k in range(64)).encode()


def region_content(node):
    line = ("node %d region " % node).encode()
    out = (line * (GFS_REGION // len(line) + 1))[:GFS_REGION]
    return out


def sc_gfs2(cl, ctx):
    ids = cl.alive()
    ctx.say("mounting gfs2 (lock_dlm, %s:gfs0, 3 journals) on 3 nodes" % C.CLUSTER_NAME)
    cl.on(ids, "mount -t gfs2 -o localflocks /dev/vda /mnt && grep ' /mnt ' /proc/mounts",
          timeout=180)
    cl.node(1).run("mkdir -p /mnt/shared && dd if=/dev/zero of=/mnt/shared.bin bs=%d "
                   "count=3 2>/dev/null && sync" % GFS_REGION, timeout=120)

    def writer(n):
        return (
            "set -e; mkdir -p /mnt/n%(n)d; i=0; while [ $i -lt %(f)d ]; do "
            "k=0; while [ $k -lt 64 ]; do echo \"node %(n)d file $i line $k\"; k=$((k+1)); done"
            " > /mnt/n%(n)d/f$i; "
            "k=0; while [ $k -lt 64 ]; do echo \"node %(n)d file $i line $k\"; k=$((k+1)); done"
            " > /mnt/shared/c%(n)d-$i; i=$((i+1)); done; "
            "r='node %(n)d region '; while [ ${#r} -lt %(reg)d ]; do r=\"$r$r\"; done; "
            "printf '%%s' \"$r\" | head -c %(reg)d > /tmp/region; "
            "dd if=/tmp/region of=/mnt/shared.bin bs=%(reg)d seek=%(seek)d count=1 conv=notrunc "
            "2>/dev/null; sync; echo wrote node=%(n)d"
            % {"n": n, "f": GFS_FILES, "reg": GFS_REGION, "seek": n - 1})
    ctx.say("concurrent writes: %d files per node, %d creates per node in one directory, "
            "one 64 KiB region per node of a shared file" % (GFS_FILES, GFS_FILES))
    cl.on(ids, writer, timeout=300)

    # Verify every node's data from another node.
    for n in ids:
        reader = ids[n % len(ids)]
        exp = {}
        for i in range(GFS_FILES):
            md5 = hashlib.md5(file_content(n, i)).hexdigest()
            exp["/mnt/n%d/f%d" % (n, i)] = md5
            exp["/mnt/shared/c%d-%d" % (n, i)] = md5
        r = cl.node(reader).run(
            "md5sum /mnt/n%d/* /mnt/shared/c%d-*; dd if=/mnt/shared.bin bs=%d skip=%d count=1 "
            "2>/dev/null | md5sum | sed 's|-$|region|'" % (n, n, GFS_REGION, n - 1),
            timeout=120)
        got = {}
        for line in r.out.splitlines():
            h, _, p = line.strip().partition("  ")
            got[p.strip()] = h
        for p, h in exp.items():
            check(got.get(p) == h, "node %d reads %s with md5 %s, expected %s" %
                  (reader, p, got.get(p), h))
        reg = hashlib.md5(region_content(n)).hexdigest()
        check(got.get("region") == reg, "node %d reads node %d's region of shared.bin with md5 "
              "%s, expected %s" % (reader, n, got.get("region"), reg))
    r = cl.node(2).run("ls /mnt/shared | wc -l; stat -c %s /mnt/shared.bin")
    count, size = r.out.split()
    check(int(count) == len(ids) * GFS_FILES, "shared/ has %s entries, expected %d" %
          (count, len(ids) * GFS_FILES))
    check(int(size) == len(ids) * GFS_REGION, "shared.bin is %s bytes" % size)
    ctx.say("all content verified from other nodes; unmounting one node at a time")

    # Unmount with a membership change after each node, like dlm_controld.
    left = list(ids)
    for n in reversed(ids):
        left.remove(n)
        cl.leave("gfs0", n, left, "umount /mnt")
    r = subprocess.run(["fsck.gfs2", "-n", cl.disk], capture_output=True, text=True,
                       timeout=300)
    ctx.say("host fsck.gfs2 -n: rc=%d" % r.returncode)
    with open(os.path.join(cl.dir, "fsck.log"), "w") as f:
        f.write(r.stdout + r.stderr)
    check(r.returncode == 0, "fsck.gfs2 -n failed (rc %d): %s" %
          (r.returncode, (r.stdout + r.stderr)[-1500:]))


SCENARIOS = [
    # name, function, host timeout (s), cluster options
    ("join", sc_join, 240, {}),
    ("resets", sc_resets, 300, {}),  # + the extra --resets-secs beyond 30
    ("leave-rejoin", sc_leave_rejoin, 300, {}),
    ("kill", sc_kill, 300, {}),
    ("gfs2", sc_gfs2, 420, {"mkfs": True}),
    ("badbytes", sc_badbytes, 300, {}),
    # Not in the default set (slow): make check runs it on the debug flavour.
    ("cycles", sc_cycles, 1800, {"default": False}),
]


def load_scenario_modules():
    """Scenarios kept in modules of their own: every sc_<name>.py next to
    this file contributes its SCENARIOS list, in file name order."""
    import importlib
    here = os.path.dirname(os.path.abspath(__file__))
    for f in sorted(os.listdir(here)):
        if f.startswith("sc_") and f.endswith(".py"):
            SCENARIOS.extend(importlib.import_module(f[:-3]).SCENARIOS)


load_scenario_modules()

# Scenarios the stock C layer demonstrably fails (evidence in
# Documentation/testing.rst): name -> regular expression the failure message
# must match to count as the expected failure (anything else is a plain
# FAIL).  In a mixed cluster it applies only to a stall between stock nodes
# with no unacknowledged message on any of ours (stall_of_stock_node); it
# never applies when every node runs another dlm.ko.
XFAIL_STOCK = {
    # Stock 7.2 lowcomms/midcomms: a reply lost with a reset connection is
    # never retransmitted and every node waits for it (testing.rst, "resets").
    "resets": (r"lock traffic STALLED under (hub|in-guest \(ss -K, nft\)) resets", True),
    # Stock 7.2 lowcomms: a bad length on a connection it initiated is
    # logged, but the socket is neither closed nor read again, so nothing
    # more comes from that peer (testing.rst, "badbytes").  In a mixed
    # cluster the receivers are ours, and only a stall that
    # stall_of_stock_node() pins on a stock node (a message it lost with a
    # reset connection and never resent) is excused.
    "badbytes": (r"logged 0 lines matching /received invalid length header|"
                 r"lock traffic STALLED under bad bytes", True),
}


def stall_of_stock_node(err, dlm):
    """In a mixed cluster, is this stall the stock layer's own (the XFAIL_STOCK
    case)?  Yes only when the dump shows a node waiting for a reply from
    another, one of the two is a stock node that holds unacknowledged
    messages for the other (the reply, or the waiter's own request: 7.2
    resends only after a socket error on its side), and no node running
    another dlm.ko holds unacknowledged messages for either of the two: a
    stall our layer could have resolved by retransmitting is ours."""
    m = re.search(r"\(dump: ([^)]+)\)", err)
    if not m or not os.path.exists(m.group(1)):
        return False
    facts = summarize_diag(m.group(1))
    unacked = {(int(a), int(b)) for a, b in
               re.findall(r"node (\d+) has \d+ unacknowledged message\(s\) for node (\d+)", facts)}
    waits = {(int(a), int(b)) for a, b in
             re.findall(r"node (\d+) lock \S+ waits for a \S+ reply from node (\d+)", facts)}
    is_stock = lambda node: 1 <= node <= len(dlm) and dlm[node - 1] == "stock"

    def stock_stall(waiter, master):
        if any(not is_stock(a) and b in (waiter, master) for a, b in unacked):
            return False
        return ((is_stock(master) and (master, waiter) in unacked) or
                (is_stock(waiter) and (waiter, master) in unacked))
    return any(stock_stall(w, m) for w, m in waits)


def expected_failure(name, err, dlm):
    """Is err the documented failure of the stock C layer in scenario name?
    Always no when no node is stock."""
    xf_re, xf_mixed = XFAIL_STOCK.get(name, (None, False))
    if not err or not xf_re or not re.search(xf_re, err):
        return False
    if all(d == "stock" for d in dlm):
        return True
    return xf_mixed and stall_of_stock_node(err, dlm)


def run_scenario(name, fn, timeout, opts, args, t0):
    mkfs = None
    if opts.get("mkfs"):
        mkfs = ["mkfs.gfs2", "-O", "-p", "lock_dlm", "-t", "%s:gfs0" % C.CLUSTER_NAME,
                "-j", "3", "-J", "16"]
    cl = C.Cluster(args.kdir, n=3, dlm=args.dlm, name=name, mkfs=mkfs,
                   run_dir=os.path.join(args.suite_dir, name),
                   initrd=args.initrd, seed=args.seed, stack=opts.get("stack", "static"),
                   log=lambda m: print("[%5.0fs] %s: %s" % (time.monotonic() - t0, name, m),
                                       flush=True))
    ctx = Ctx(cl, name, t0)
    ctx.args = args
    if name == "resets":
        timeout += max(0, args.resets_secs - 30)
    if name == "cycles":
        timeout = timeout * max(args.cycles, 1) // 20 + 120
    timeout *= cl.scale
    start = time.monotonic()
    err = None
    timer = threading.Timer(timeout, lambda: (ctx.say("TIMEOUT after %ds: killing the "
                                                      "cluster" % timeout), cl.shutdown()))
    timer.daemon = True
    timer.start()
    try:
        cl.boot()
        fn(cl, ctx)
        if args.break_assert == name:
            check(False, "deliberately broken assertion (--break %s)" % name)
        if args.break_assert == name + ":console":
            # Prove the console scan bites: a fake kernel warning line.
            cl.node(2).run("echo 'WARNING: CPU: 0 PID: 1 deliberate (--break %s:console)' "
                           "> /dev/kmsg" % name)
        # Debug flavour: every live node's kmemleak report, judged like
        # the cycles scenario does (dlm.ko is loaded, so backtraces resolve).
        leak_nodes = [i for i in cl.alive() if cl.has_kmemleak(i)]
        known, other = take_leaks(cl, leak_nodes, "end", True) if leak_nodes else ({}, [])
        if known:
            ctx.numbers["config_c_leaks_at_end"] = sum(known.values())
        bad = cl.console_problems()
        for line in other:
            bad.setdefault(int(line.split()[1]), []).append("kmemleak: " + line)
        n_lines = sum(len(n.console_text().splitlines()) for n in cl.nodes.values())
        check(not bad, "console reports: %s" % "; ".join(
            "node %d: %s" % (i, " | ".join(l[:200] for l in ls[:5])) for i, ls in bad.items()))
        ctx.say("consoles clean (%d lines scanned)" % n_lines)
    except (Failed, C.ClusterError) as e:
        err = str(e)
    except Exception:
        err = traceback.format_exc()
    finally:
        timer.cancel()
        cl.shutdown()
    secs = time.monotonic() - start
    if err and time.monotonic() - start >= timeout:
        err = "TIMEOUT (%ds): %s" % (timeout, err)
    return err, secs, ctx.numbers, cl.dir


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated scenario names (%s)" %
                    ",".join(s[0] for s in SCENARIOS))
    ap.add_argument("--dlm", help="per-node dlm.ko: stock or a path, comma-separated "
                    "(one entry = all nodes); default stock")
    ap.add_argument("--kdir", help="kernel tree (default: scripts/kernel.sh)")
    ap.add_argument("--initrd", help="use this initramfs instead of building one")
    ap.add_argument("--seed", type=int, default=1, help="hub PRNG seed")
    ap.add_argument("--break", dest="break_assert", metavar="NAME",
                    help="fail scenario NAME on purpose (to show failures propagate); "
                    "NAME:console fakes a kernel WARNING on node 2's console instead")
    ap.add_argument("--resets-secs", type=int, default=30,
                    help="length of the hub reset phase of the resets scenario (default 30)")
    ap.add_argument("--cycles", type=int, default=20,
                    help="insmod/join/traffic/leave/rmmod rounds of the cycles scenario "
                    "(default 20)")
    ap.add_argument("--require-kmemleak", action="store_true",
                    help="fail the cycles scenario if the kernel has no kmemleak")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        for s in SCENARIOS:
            print(s[0])
        return 0
    args.kdir = args.kdir or C.default_kdir()
    args.dlm = C.parse_dlm(args.dlm, 3)
    chosen = [s for s in SCENARIOS if s[3].get("default", True)]
    if args.only:
        want = args.only.split(",")
        unknown = set(want) - {s[0] for s in SCENARIOS}
        if unknown:
            ap.error("unknown scenario(s): %s" % ",".join(sorted(unknown)))
        chosen = [s for s in SCENARIOS if s[0] in want]
    t0 = time.monotonic()
    print("suite: %d scenario(s), dlm %s, kernel %s" % (len(chosen), ",".join(args.dlm),
                                                         args.kdir), flush=True)
    # One directory per suite run: the image and every scenario's run dir.
    args.suite_dir = os.path.join(C.BUILD, "suite-%s-%d" % (time.strftime("%Y%m%d-%H%M%S"),
                                                           os.getpid()))
    os.makedirs(args.suite_dir)
    print("suite: logs in %s" % args.suite_dir, flush=True)
    if args.initrd is None:
        args.initrd = os.path.join(args.suite_dir, "initramfs.cpio.gz")
        alts = sorted(set(d for d in args.dlm if d != "stock"))
        C.initramfs.build(args.kdir, args.initrd, alts[0] if alts else None)
    passed = failed = 0
    summary = []
    xfails = []
    for name, fn, timeout, opts in chosen:
        print("=== %s" % name, flush=True)
        err, secs, numbers, rundir = run_scenario(name, fn, timeout, opts, args, t0)
        nums = " ".join("%s=%s" % kv for kv in numbers.items())
        if expected_failure(name, err, args.dlm):
            verdict = "XFAIL"
            passed += 1
            xfails.append(name)
        elif err:
            verdict = "FAIL"
            failed += 1
        else:
            verdict = "PASS"
            passed += 1
        if err:
            print("%s: %s\n  logs: %s" % (name, err.rstrip(), rundir), flush=True)
        line = "%s %s %.0fs %s" % (verdict, name, secs, nums)
        print(line, flush=True)
        summary.append(line)
    print("--- summary (%.0fs)" % (time.monotonic() - t0))
    for line in summary:
        print(line)
    if xfails:
        print("expected failures of the stock C layer (counted as passed; see "
              "Documentation/testing.rst): %s" % ",".join(xfails))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
