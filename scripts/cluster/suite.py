#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""dlm-rs cluster suite: DLM and GFS2 scenarios on a 3-node QEMU cluster.

    python3 scripts/cluster/suite.py [--only NAME[,NAME]] [--dlm SPEC | --mix KO] [--kdir TREE]

Each scenario boots a fresh cluster, is bounded by a host-side timeout, and
asserts outcomes (exact LVB counters, file contents, fsck, clean consoles,
none of our layer's warning lines).  --mix runs every scenario on the two
mixed clusters (1 ours + 2 stock, 2 ours + 1 stock) with the per-scenario
placements of PLACEMENT and judges the role coverage.  The last line is
"N passed, M failed, X XFAIL"; XFAIL (the documented failures of the stock C
layer, all-stock clusters only) is not counted as passed.  The exit status is
non-zero if anything failed.  See Documentation/testing.rst.
"""

import argparse
import hashlib
import json
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
    BATCH, LS, RES, Ctx, Failed, anchor, check, check_versions, console_count, is_stock,
    lvb_value, master_of, remote_lvb, start_torture, take_leaks, tcp_opens, torture_result,
    torture_total, torture_totals, watched_totals)


def sc_join(cl, ctx):
    ids = cl.alive()
    cl.join(LS, ids)
    ctx.say("3 nodes joined lockspace %s" % LS)
    anchor(cl, ctx)
    pend = {i: start_torture(cl, i, 15, "j%d" % i) for i in ids}
    totals = torture_totals(pend)
    s = sum(t for t, _ in totals.values())
    secs = max(d for _, d in totals.values())
    v, _ = remote_lvb(cl, ctx, 2)
    ctx.say("torture: per node %s, sum %d, LVB %d" %
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
    conn0 = console_count(cl, ids, "dlm: got connection from")
    hub0 = cl.hub.stats()
    # Phase 1: the hub kills every port-21064 connection every 200 ms (600 ms
    # on the debug flavour, whose guests run about 3 times slower: at 200 ms
    # a reconnect and its retransmissions there rarely finish before the
    # next reset, and a batch of 20 increments took over a minute).
    secs = ctx.args.resets_secs
    every = 200 * cl.scale
    cl.hub.cmd("reset-every %d" % every)
    ctx.say("hub: reset-every %d ms for %d s while 3 nodes torture" % (every, secs))
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
    conn1 = console_count(cl, ids, "dlm: got connection from")
    s1 = sum(t for t, _ in totals.values())
    v1, _ = remote_lvb(cl, ctx, 3)
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
    ctx.role("kills its own connections (ss -K)", 2)
    ctx.role("rejects its own segments with a reset (nft)", 3)
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
    v2, _ = remote_lvb(cl, ctx, 2)
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
    ctx.role("leaves", 3)
    ctx.role("first to leave (starts the FIN close)", 3)
    cl.leave(LS, 3, [1, 2])
    ctx.say("survivors 1,2 recovered without node 3; node 3 rejoins")
    time.sleep(3)
    before = {i: cl.recover_count(i, LS) for i in (1, 2)}
    cl.change_members(LS, [1, 2], [1, 2, 3], wait=False)
    cl.node(3).run("dlm-controller members %s '1 2 3' && dlmt join %s" % (LS, LS), timeout=120)
    cl.wait_recovered(LS, [1, 2], before)
    ctx.role("rejoins", 3)
    busy = [i for i in (1, 2) if not pend[i].done.is_set()]
    ctx.say("node 3 rejoined; torture on node 3 again (nodes %s torturing throughout)" % busy)
    check(busy == [1, 2], "nodes 1,2 finished their torture before node 3 rejoined: "
          "the scenario did not exercise leave/rejoin under load")
    t3b, _ = torture_total(start_torture(cl, 3, 8, "l3b"))
    t1, _ = torture_total(pend[1])
    t2, _ = torture_total(pend[2])
    s = t1 + t2 + t3a + t3b
    v, _ = remote_lvb(cl, ctx, 3)
    ctx.say("increments: node1 %d node2 %d node3 %d+%d = %d; LVB %d" %
            (t1, t2, t3a, t3b, s, v))
    check(v == s, "LVB counter %d != sum of increments %d" % (v, s))
    ctx.numbers["increments"] = s


RECORD_DEV = "/dev/vda"


def read_record(cl):
    """The victim's last `dlmt torture --record` line, read by the host from
    the shared disk image: {tag, count, value}."""
    with open(cl.disk, "rb") as f:
        head = f.read(4096).split(b"\0", 1)[0].decode(errors="replace")
    m = re.match(r"dlmt-record tag=(\S+) count=(\d+) value=(\d+)\n", head)
    check(m, "no dlmt record at the start of %s: %r" % (cl.disk, head[:80]))
    return {"tag": m.group(1), "count": int(m.group(2)), "value": int(m.group(3))}


def sc_kill(cl, ctx):
    ids = cl.alive()
    cl.join(LS, ids)
    anchor(cl, ctx)
    # If node 3 dies holding EX (granted on the master), lock recovery flags
    # the LVB not valid (DLM_SBF_VALNOTVALID on the next EX grant; lock.c
    # purge_dead_list and recover_lvb); its value is still the master's last
    # committed one, because the master survives.  So the survivors accept
    # that flag, and the suite requires it on at most one grant.
    pend = {i: start_torture(cl, i, 45, "k%d" % i, extra="--allow-invalid") for i in (1, 2)}
    # Node 3 records on the shared disk, before each unlock, how many
    # increments it has stored so far including this one.
    victim = start_torture(cl, 3, 600, "k3", env="TORTURE_RECORD=%s" % RECORD_DEV)
    time.sleep(12)
    m = master_of(cl)
    check(m is not None and m != 3, "resource master is %s; the victim must not be the "
          "master (the LVB would be lost with it)" % m)
    ctx.say("killing node 3 (SIGKILL of its QEMU); %s mastered by node %d" % (RES, m))
    ctx.role("killed", 3)
    cl.node(3).kill()
    del victim
    rec = read_record(cl)
    cl.change_members(LS, [1, 2], [1, 2],
                      between=lambda: cl.on([1, 2], "dlm-controller rmcomm 3"))
    ctx.say("survivors recovered; waiting for their torture to finish")
    k1, k2 = torture_result(pend[1]), torture_result(pend[2])
    t1, t2 = int(k1["total"]), int(k2["total"])
    invalid = int(k1["invalid"]) + int(k2["invalid"])
    # Completed batches node 3 reported on its console before the kill.
    rep = re.findall(r"dlmrs-torture k3 batch=\d+ rc=0 .*? ok=(\d+)", cl.node(3).console_text())
    t3 = sum(int(x) for x in rep)
    n3 = rec["count"]
    v, _ = remote_lvb(cl, ctx, 2)
    s = t1 + t2
    ctx.say("increments: node1 %d node2 %d; node 3 recorded %d (the last may not have reached "
            "the master; %d in %d batches reported complete); LVB %d, allowed [%d, %d]; "
            "grants with DLM_SBF_VALNOTVALID on the survivors: %d" %
            (t1, t2, n3, t3, len(rep), v, s + n3 - 1, s + n3, invalid))
    check(rec["tag"] == "k3", "the disk record is not node 3's: %s" % rec)
    check(t3 > 0, "node 3 reported no completed batch before the kill")
    check(t3 <= n3 <= t3 + BATCH, "node 3 recorded %d increments but reported %d complete "
          "(at most one batch of %d can be in flight)" % (n3, t3, BATCH))
    check(s + n3 - 1 <= v <= s + n3, "LVB counter %d outside [%d, %d]: the survivors' %d "
          "increments plus node 3's %d recorded ones, of which only the last may be lost" %
          (v, s + n3 - 1, s + n3, s, n3))
    check(invalid <= 1, "%d grants carried DLM_SBF_VALNOTVALID; recovery flags the LVB once "
          "and the first EX unlock after it clears the flag" % invalid)
    ctx.numbers.update(increments=s + n3, lvb=v, last_recorded_landed=v - (s + n3 - 1),
                       valnotvalid_grants=invalid)


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
# A bad length on a connection a 7.2 node initiated leaves its receive side
# stuck (testing.rst, "badbytes"): bad lengths go to stock receivers only in
# the all-stock suite, where that is the XFAIL.
BAD_FRAMES_FOR_STOCK = ("version 2.1", "seq gap")


def badbytes_plan(cl, ids):
    """[(sender, receiver, frame)]: each node of ours receives every frame
    of BAD_FRAMES from alternating senders; in a mixed cluster a stock node
    also receives the frames that 7.2 survives (BAD_FRAMES_FOR_STOCK) from
    our nodes, so that ours also sends bad bytes to a stock peer; in an
    all-stock cluster node 2 receives every frame."""
    ours = [i for i in ids if not is_stock(cl, i)]
    stock = [i for i in ids if is_stock(cl, i)]
    plan = []
    for r in ours or [2]:
        senders = [j for j in ids if j != r]
        for k, frame in enumerate(BAD_FRAMES):
            plan.append((senders[k % len(senders)], r, frame))
    if ours and stock:
        r = stock[0]
        for k, frame in enumerate(f for f in BAD_FRAMES if f[0] in BAD_FRAMES_FOR_STOCK):
            plan.append((ours[k % len(ours)], r, frame))
    return plan


def sc_badbytes(cl, ctx):
    """A configured peer sends a frame with a bad length or version, or a
    message numbered far ahead (debugfs rawmsg writes it into the stream
    between whole messages) while every node tortures: the receiver logs one
    clear line and closes, the peer reconnects, and no lock message is lost
    (exact LVB counter)."""
    ids = cl.alive()
    cl.join(LS, ids)
    anchor(cl, ctx)
    plan = badbytes_plan(cl, ids)
    secs = 12 + 4 * len(plan)
    pend = {i: start_torture(cl, i, secs, "b%d" % i) for i in ids}
    time.sleep(4)
    opens0 = tcp_opens(cl, ids)

    def inject():
        for s, r, (what, build, ours_re, stock_re) in plan:
            pat = (stock_re if is_stock(cl, r) else ours_re) % s
            before = console_count(cl, [r], pat)
            esc = "".join("\\%03o" % b for b in build(s))
            cl.node(s).run("printf '%s' > /tmp/bad && "
                           "dd if=/tmp/bad of=/sys/kernel/debug/dlm/comms/%d/rawmsg bs=64 "
                           "count=1 2>/dev/null" % (esc, r))
            ctx.role("sends bad bytes", s, [r])
            ctx.role("receives bad bytes", r, [s])
            deadline = time.monotonic() + 15 * cl.scale
            n = before
            while n == before and time.monotonic() < deadline:
                time.sleep(0.5)
                n = console_count(cl, [r], pat)
            ctx.say("node %d -> node %d: bad %s; node %d logged %d line(s)" %
                    (s, r, what, r, n - before))
            check(n - before == 1, "node %d logged %d lines matching /%s/ for a bad %s "
                  "from node %d, expected exactly 1" % (r, n - before, pat, what, s))
            time.sleep(2)

    totals = watched_totals(cl, ctx, pend, "bad bytes", during=inject)
    opens1 = tcp_opens(cl, ids)
    s_total = sum(t for t, _ in totals.values())
    v, _ = remote_lvb(cl, ctx, 2)
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
    v2, _ = remote_lvb(cl, ctx, 3)
    check(v2 == s_total + s2, "LVB counter %d != %d after the bad frames" %
          (v2, s_total + s2))
    ctx.numbers.update(bad_frames=len(plan), increments=s_total + s2,
                       new_connections=opens1 - opens0)


def sc_cycles(cl, ctx):
    """--cycles (20) times on every node: insmod (the first at boot), join,
    torture, leave in dlm_controld's order, rmmod.  Each round's counter is
    exact; with kmemleak (debug flavour) every node is scanned after each
    leave while dlm.ko is still loaded and once more after the last rmmod,
    and any unreferenced object fails the scenario."""
    ids = cl.alive()
    n = ctx.args.cycles
    leakcheck = all(cl.has_kmemleak(i) for i in ids)
    ctx.say("%d cycles; kmemleak %s" % (n, "on" if leakcheck else "not in this kernel"))
    check(leakcheck or not ctx.args.require_kmemleak,
          "--require-kmemleak: this kernel has no kmemleak (build FLAVOUR=debug)")
    if leakcheck:
        # Scans happen when we ask, and every report is judged below.
        cl.on(ids, "echo scan=off > /sys/kernel/debug/kmemleak")
        leaks = take_leaks(cl, ids, "boot")
        check(not leaks, "kmemleak after boot: %s" % "; ".join(leaks[:5]))
    increments = 0
    for c in range(1, n + 1):
        if c > 1:
            cl.on(ids, "dlm-module load && dlm-controller setup", timeout=120)
        cl.join(LS, ids)
        release = anchor(cl, ctx, 1)
        pend = {i: start_torture(cl, i, 3, "y%d.%d" % (c, i)) for i in ids}
        totals = torture_totals(pend)
        s = sum(t for t, _ in totals.values())
        v, _ = remote_lvb(cl, ctx, 1 + c % len(ids))
        check(s > 0, "cycle %d: no increments" % c)
        check(v == s, "cycle %d: LVB counter %d != sum of increments %d" % (c, v, s))
        increments += s
        release()
        left = list(ids)
        ctx.role("first to leave (starts the FIN close)", ids[-1])
        for x in reversed(ids):
            left.remove(x)
            cl.leave(LS, x, left)
        if leakcheck:
            time.sleep(6)   # kmemleak reports only objects older than 5 s
            leaks = take_leaks(cl, ids, "cycle%d" % c)
            check(not leaks, "cycle %d: kmemleak: %s" % (c, "; ".join(leaks[:5])))
        cl.on(ids, "dlm-controller teardown && dlm-module unload", timeout=120)
        bad = cl.console_problems(faults=ctx.faults)
        check(not bad, "cycle %d: console reports: %s" % (c, "; ".join(
            "node %d: %s" % (i, " | ".join(l[:200] for l in ls[:3])) for i, ls in bad.items())))
        ctx.say("cycle %d: %d increments exact; left and unloaded on %s; %s" % (
            c, s, ids, "no kmemleak report" if leakcheck else "(no kmemleak)"))
    if leakcheck:
        time.sleep(6)
        leaks = take_leaks(cl, ids, "unloaded")
        check(not leaks, "kmemleak after the last rmmod: %s" % "; ".join(leaks[:5]))
    # The module loads once more and works after all that.
    cl.on(ids, "dlm-module load && dlm-controller setup", timeout=120)
    ctx.numbers.update(cycles=n, increments=increments,
                       kmemleak="on" if leakcheck else "off")


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
    ctx.role("first to leave (starts the FIN close)", ids[-1])
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


# Cluster options of a SCENARIOS entry (the fourth field):
#   default    False: not in the default set (run it with --only)
#   mkfs       format the shared disk with gfs2 before boot
#   stack      "controld": corosync + dlm_controld instead of the static
#              controller
#   protocol   "sctp": the DLM runs over SCTP (default "tcp"; the
#              initramfs then carries the sctp module)
#   networks   2: a second NIC and hub segment per guest (cluster.py)
#   faults     the faults the scenario injects, which allow some of our
#              warning lines (cluster.OUR_WARNINGS)
#   debug      True: also run on the debug flavour (KASAN, lockdep, kmemleak)
#              by make check, with our dlm.ko on every node (--debug-set)
#   placement  {1: nodes, 2: nodes}: which node numbers run our dlm.ko in the
#              mixed clusters of --mix (1 ours + 2 stock, 2 ours + 1 stock);
#              default DEFAULT_PLACEMENT.  A scenario whose roles others
#              cover may name one of the two only, to save time, or none
#              ({}: no mixed run, e.g. configfs, which compares the two
#              modules itself).  Roles sit on fixed node numbers in
#              each scenario (node 1 masters the counter; node 3 leaves, is
#              killed, unmounts first), so rotating the placement is what
#              gives every role to ours and to stock against the other.
SCENARIOS = [
    # name, function, host timeout (s), cluster options
    # join's mixed run checks the 3.2 handshake between ours and stock both
    # ways, which one placement does (every other mixed run joins too).
    ("join", sc_join, 240, {"placement": {1: (1,)}}),
    ("resets", sc_resets, 300,  # + the extra --resets-secs beyond 30
     {"faults": ("reset",), "debug": True, "placement": {1: (2,), 2: (1, 3)}}),
    ("leave-rejoin", sc_leave_rejoin, 300,
     {"faults": ("rejoin",), "placement": {1: (3,), 2: (1, 2)}}),
    ("kill", sc_kill, 300,
     {"faults": ("dead",), "debug": True, "placement": {1: (3,), 2: (1, 2)}}),
    # Two of ours with a stock node under gfs2: gfs2-kill (1, 2).
    ("gfs2", sc_gfs2, 420, {"mkfs": True, "placement": {1: (3,)}}),
    ("badbytes", sc_badbytes, 300,
     {"faults": ("badheader", "gap", "reset"), "debug": True,
      "placement": {1: (1,), 2: (2, 3)}}),
    # Not in the default set (slow): make check runs it on the debug flavour.
    ("cycles", sc_cycles, 1800, {"default": False, "debug": True}),
]
DEFAULT_PLACEMENT = {1: (1,), 2: (1, 2)}

# The roles our node must play against a stock peer, and a stock node
# against ours, across the mixed placements of --mix (Ctx.role).
REQUIRED_ROLES = ("master", "leaves", "rejoins", "killed",
                  "first to leave (starts the FIN close)", "sends bad bytes",
                  "receives bad bytes")


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
# FAIL).  Applies only when every node runs the stock layer; a cluster with
# one of our nodes proves a stock stall instead (scenario.StallWatch).
XFAIL_STOCK = {
    # Stock 7.2 lowcomms/midcomms: a reply lost with a reset connection is
    # never retransmitted and every node waits for it (testing.rst, "resets").
    "resets": r"lock traffic STALLED under (hub|in-guest \(ss -K, nft\)) resets",
    # Stock 7.2 lowcomms: a bad length on a connection it initiated is
    # logged, but the socket is neither closed nor read again, so nothing
    # more comes from that peer (testing.rst, "badbytes").
    "badbytes": (r"logged 0 lines matching /received invalid length header|"
                 r"lock traffic STALLED under bad bytes"),
    # Stock 7.2 under adversarial frames: one unlimited log line per bad
    # message (55,520 lines for 100,264 frames) and lock traffic that stops
    # (testing.rst, "hostile").
    "hostile": (r"lock traffic STALLED under hostile frames|"
                r"node \d+ logged more than \d+ lines for \d+ frames"),
}


def expected_failure(name, err, dlm):
    """Is err the documented failure of the stock C layer in scenario name?
    Only ever when every node runs the stock layer."""
    xf_re = XFAIL_STOCK.get(name)
    return bool(err and xf_re and all(d == "stock" for d in dlm) and re.search(xf_re, err))


def placement_dlm(opts, k, ours):
    """The per-node dlm list of the mixed cluster with k nodes of ours."""
    nodes = opts.get("placement", DEFAULT_PLACEMENT)[k]
    assert len(nodes) == k, nodes
    return [ours if i in nodes else "stock" for i in (1, 2, 3)]


def layers(dlm):
    """Short name of a placement: stock, ours, or e.g. "ours on 1"."""
    ours = [i + 1 for i, d in enumerate(dlm) if d != "stock"]
    if not ours:
        return "stock"
    if len(ours) == len(dlm):
        return "ours"
    return "ours on %s" % ",".join(str(i) for i in ours)


def judge_console_and_leaks(cl, ctx, alive_ok):
    """The console scan and (debug flavour) the kmemleak judgement, for
    every scenario, also a failed one: [problems].  alive_ok: the cluster
    was not torn down by the timeout, so live nodes can still be scanned."""
    problems, other = [], []
    if alive_ok:
        try:
            leak_nodes = [i for i in cl.alive() if cl.has_kmemleak(i)]
            other = take_leaks(cl, leak_nodes, "end", ctx) if leak_nodes else []
        except (C.ClusterError, AttributeError, OSError) as e:
            # A cluster that did not boot has no agent to ask.
            problems.append("kmemleak could not be read: %s" % (e or type(e).__name__))
    bad = cl.console_problems(faults=ctx.faults)
    for line in other:
        bad.setdefault(int(line.split()[1]), []).append("kmemleak: " + line)
    if bad:
        problems.append("console reports: %s" % "; ".join(
            "node %d: %s" % (i, " | ".join(l[:200] for l in ls[:5])) for i, ls in bad.items()))
    else:
        n_lines = sum(len(n.console_text().splitlines()) for n in cl.nodes.values())
        ctx.say("consoles clean (%d lines scanned; faults injected: %s)" %
                (n_lines, ",".join(sorted(ctx.faults)) or "none"))
    return problems


def initrd_without(opts):
    """The initramfs parts (initramfs.PARTS) a scenario does without: the
    cluster stack unless it runs on corosync + dlm_controld, gfs2 unless it
    formats the shared disk, and sctp unless its protocol is SCTP."""
    out = []
    if opts.get("protocol", "tcp") != "sctp":
        out.append("sctp")
    if opts.get("stack", "static") != "controld":
        out.append("stack")
    if not opts.get("mkfs"):
        out.append("gfs2")
    return tuple(sorted(out))


def suite_initrd(args, opts, ours):
    """The suite's initramfs for a scenario of these options, built once per
    variant into the suite's directory."""
    without = initrd_without(opts)
    path = os.path.join(args.suite_dir, "initramfs%s.cpio.gz" % "".join(
        "-no" + p for p in without))
    if not os.path.exists(path):
        C.initramfs.build(args.kdir, path, ours if ours != "stock" else None, without=without)
    return path


def run_scenario(name, fn, timeout, opts, args, t0, dlm, label, dirname, initrd):
    mkfs = None
    if opts.get("mkfs"):
        mkfs = ["mkfs.gfs2", "-O", "-p", "lock_dlm", "-t", "%s:gfs0" % C.CLUSTER_NAME,
                "-j", "3", "-J", "16"]
    cl = C.Cluster(args.kdir, n=3, dlm=dlm, name=name, mkfs=mkfs,
                   run_dir=os.path.join(args.suite_dir, dirname),
                   initrd=initrd, seed=args.seed, stack=opts.get("stack", "static"),
                   protocol=opts.get("protocol", "tcp"), networks=opts.get("networks", 1),
                   log=lambda m: print("[%5.0fs] %s: %s" % (time.monotonic() - t0, label, m),
                                       flush=True))
    ctx = Ctx(cl, label, t0, opts.get("faults", ()))
    ctx.args = args
    if name == "resets":
        timeout += max(0, args.resets_secs - 30)
    if name == "cycles":
        timeout = timeout * max(args.cycles, 1) // 20 + 120
    timeout *= cl.scale
    start = time.monotonic()
    err = None
    timed_out = threading.Event()

    def on_timeout():
        timed_out.set()
        ctx.say("TIMEOUT after %ds: killing the cluster" % timeout)
        cl.shutdown()
    timer = threading.Timer(timeout, on_timeout)
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
        if args.break_assert == name + ":ourline":
            # Prove the scan of our warning lines bites: a fake "refused"
            # line on a node of ours (none in an all-stock cluster).
            for i in cl.alive():
                if not is_stock(cl, i):
                    cl.node(i).run("echo 'dlm: send to node 9 refused: deliberate "
                                   "(--break %s:ourline)' > /dev/kmsg" % name)
                    break
    except (Failed, C.ClusterError) as e:
        err = str(e)
    except Exception:
        err = traceback.format_exc()
    finally:
        timer.cancel()
    try:
        problems = judge_console_and_leaks(cl, ctx, not timed_out.is_set())
    except Exception:
        problems = ["console/kmemleak judgement failed: %s" % traceback.format_exc()]
    finally:
        cl.shutdown()
    secs = time.monotonic() - start
    if err and timed_out.is_set():
        err = "TIMEOUT (%ds): %s" % (timeout, err)
    return err, problems, secs, ctx, cl.dir


# --- recorded verdicts of the stock C layer ----------------------------------

HARNESS = [os.path.join(C.TOP, p) for p in ("scripts/hub.py", "tools/dlmt/dlmt.c",
                                           "tools/dlmt/Makefile")]


def stock_key(kdir):
    """What a stock verdict depends on: the kernel (its cached tree's name,
    which carries the source version and the config fragments' hash, and its
    .config) and the harness (every file of scripts/cluster, the hub, dlmt)."""
    h = hashlib.sha256()
    h.update(os.path.basename(os.path.realpath(kdir)).encode())
    files = list(HARNESS)
    for root, _, names in os.walk(C.HERE):
        if "__pycache__" in root:
            continue
        files += [os.path.join(root, n) for n in names]
    for p in [os.path.join(kdir, ".config")] + sorted(files):
        h.update(p.replace(C.TOP, "").encode())
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def load_verdicts(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def save_verdict(path, name, verdict, secs, numbers, rundir):
    d = load_verdicts(path)
    d[name] = {"verdict": verdict, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
               "secs": round(secs), "numbers": numbers, "logs": rundir}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(d, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)


def role_coverage(results):
    """Table lines and the uncovered (role, direction) pairs, from the roles
    recorded by the passing runs of --mix."""
    cover = {}
    for label, dlm, verdict, roles in results:
        if verdict != "PASS":
            continue
        for role, node, peers in roles:
            mine = dlm[node - 1] != "stock"
            if any((dlm[p - 1] != "stock") != mine for p in peers):
                key = (role, "ours" if mine else "stock")
                cover.setdefault(key, []).append("%s node %d" % (label.split(":")[0] + "]",
                                                                 node))
    names = list(REQUIRED_ROLES) + sorted({r for r, _ in cover} - set(REQUIRED_ROLES))
    lines, missing = [], []
    for role in names:
        cells = []
        for side, what in (("ours", "ours against stock"), ("stock", "stock against ours")):
            where = sorted(set(cover.get((role, side), [])))
            if not where and role in REQUIRED_ROLES:
                missing.append("%s (%s)" % (role, what))
            cells.append("    %-19s %s" % (what + ":", ", ".join(where) or "NOT COVERED"))
        lines.append("  %s" % role)
        lines += cells
    return lines, missing


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated scenario names (%s)" %
                    ",".join(s[0] for s in SCENARIOS))
    ap.add_argument("--skip", help="comma-separated scenario names to leave out of the chosen "
                    "set")
    ap.add_argument("--skip-debug-set", action="store_true",
                    help="leave out the scenarios marked debug (make check runs their "
                    "all-ours instance on the debug flavour instead)")
    ap.add_argument("--dlm", help="per-node dlm.ko: stock or a path, comma-separated "
                    "(one entry = all nodes); default stock")
    ap.add_argument("--mix", metavar="KO",
                    help="run every scenario on the two mixed clusters, with this dlm.ko "
                    "on the nodes of the scenario's placement, and judge the role coverage")
    ap.add_argument("--debug-set", action="store_true",
                    help="run the scenarios marked for the debug flavour (opts debug=True)")
    ap.add_argument("--kdir", help="kernel tree (default: scripts/kernel.sh)")
    ap.add_argument("--initrd", help="use this initramfs instead of building one")
    ap.add_argument("--seed", type=int, default=1, help="hub PRNG seed")
    ap.add_argument("--break", dest="break_assert", metavar="NAME",
                    help="fail scenario NAME on purpose (to show failures propagate); "
                    "NAME:console fakes a kernel WARNING on node 2's console instead, "
                    "NAME:ourline one of our warning lines on a node of ours")
    ap.add_argument("--resets-secs", type=int, default=30,
                    help="length of the hub reset phase of the resets scenario (default 30)")
    ap.add_argument("--cycles", type=int, default=20,
                    help="insmod/join/traffic/leave/rmmod rounds of the cycles scenario "
                    "(default 20)")
    ap.add_argument("--require-kmemleak", action="store_true",
                    help="fail the cycles scenario if the kernel has no kmemleak")
    ap.add_argument("--stock-verdicts", metavar="DIR",
                    help="all-stock runs only: skip scenarios whose verdict (PASS or XFAIL) "
                    "is recorded in DIR for this kernel and harness, and record new ones")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        for s in SCENARIOS:
            print(s[0])
        return 0
    if args.mix and args.dlm:
        ap.error("--mix and --dlm exclude each other")
    args.kdir = args.kdir or C.default_kdir()
    chosen = [s for s in SCENARIOS if s[3].get("default", True)]
    if args.debug_set:
        chosen = [s for s in SCENARIOS if s[3].get("debug")]
    if args.only:
        want = args.only.split(",")
        unknown = set(want) - {s[0] for s in SCENARIOS}
        if unknown:
            ap.error("unknown scenario(s): %s" % ",".join(sorted(unknown)))
        chosen = [s for s in SCENARIOS if s[0] in want]
    if args.skip:
        skip = args.skip.split(",")
        unknown = set(skip) - {s[0] for s in SCENARIOS}
        if unknown:
            ap.error("unknown scenario(s): %s" % ",".join(sorted(unknown)))
        chosen = [s for s in chosen if s[0] not in skip]
    if args.skip_debug_set:
        chosen = [s for s in chosen if not s[3].get("debug")]
    runs = []
    if args.mix:
        ours = C.parse_dlm(args.mix, 1)[0]
        for name, fn, timeout, opts in chosen:
            for k in sorted(opts.get("placement", DEFAULT_PLACEMENT)):
                dlm = placement_dlm(opts, k, ours)
                runs.append((name, fn, timeout, opts, dlm,
                             "%s[mixed-%d: %s]" % (name, k, layers(dlm)),
                             "%s-mixed-%d" % (name, k)))
    else:
        dlm = C.parse_dlm(args.dlm, 3)
        runs = [(name, fn, timeout, opts, dlm, name, name)
                for name, fn, timeout, opts in chosen]
        ours = next((d for d in dlm if d != "stock"), None)
    t0 = time.monotonic()
    print("suite: %d run(s), dlm %s, kernel %s" % (
        len(runs), "mixed placements of " + args.mix if args.mix else ",".join(runs[0][4])
        if runs else "-", args.kdir), flush=True)
    verdict_file = None
    all_stock = not args.mix and all(d == "stock" for d in C.parse_dlm(args.dlm, 3))
    if args.stock_verdicts and all_stock:
        key = stock_key(args.kdir)
        verdict_file = os.path.join(args.stock_verdicts, "%s.json" % key)
        print("suite: stock verdicts of this kernel and harness: %s" % verdict_file, flush=True)
    # One directory per suite run: the image and every scenario's run dir.
    args.suite_dir = os.path.join(C.BUILD, "suite-%s-%d" % (time.strftime("%Y%m%d-%H%M%S"),
                                                           os.getpid()))
    os.makedirs(args.suite_dir)
    print("suite: logs in %s" % args.suite_dir, flush=True)
    passed = failed = 0
    summary, xfails, recorded, stalls, results = [], [], [], [], []
    for name, fn, timeout, opts, dlm, label, dirname in runs:
        if verdict_file:
            rec = load_verdicts(verdict_file).get(name)
            if rec and rec.get("verdict") in ("PASS", "XFAIL"):
                line = "RECORDED %s %s (stock verdict of %s, not run; logs %s)" % (
                    rec["verdict"], name, rec["when"], rec["logs"])
                print(line, flush=True)
                summary.append(line)
                recorded.append(name)
                continue
        initrd = args.initrd or suite_initrd(args, opts, ours)
        print("=== %s" % label, flush=True)
        err, problems, secs, ctx, rundir = run_scenario(name, fn, timeout, opts, args, t0,
                                                        dlm, label, dirname, initrd)
        nums = " ".join("%s=%s" % kv for kv in ctx.numbers.items())
        if expected_failure(name, err, dlm) and not problems:
            verdict = "XFAIL"
            xfails.append(label)
        elif err or problems:
            verdict = "FAIL"
            failed += 1
        else:
            verdict = "PASS"
            passed += 1
        for e in [err] + problems:
            if e:
                print("%s: %s" % (label, e.rstrip()), flush=True)
        if err or problems:
            print("  logs: %s" % rundir, flush=True)
        stalls += ctx.stock_stalls
        results.append((label, dlm, verdict, ctx.roles))
        line = "%s %s %.0fs %s" % (verdict, label, secs, nums)
        if ctx.stock_stalls:
            line += " stock_stalls_recovered=%d" % len(ctx.stock_stalls)
        print(line, flush=True)
        summary.append(line)
        if verdict_file and verdict in ("PASS", "XFAIL"):
            save_verdict(verdict_file, name, verdict, secs, ctx.numbers, rundir)
    if args.mix:
        lines, missing = role_coverage(results)
        print("--- role coverage across the mixed placements (from passing runs)")
        for line in lines:
            print(line)
        if args.only:
            print("role coverage not judged (--only runs a subset)")
        elif missing:
            failed += 1
            print("FAIL role coverage: not covered: %s" % "; ".join(missing))
        else:
            passed += 1
            print("PASS role coverage: every role played by ours against stock and by stock "
                  "against ours")
    print("--- summary (%.0fs)" % (time.monotonic() - t0))
    for line in summary:
        print(line)
    if recorded:
        print("recorded stock verdicts reused, not run and not counted: %s" %
              ",".join(recorded))
    print("stock stalls recovered: %d" % len(stalls))
    for line in stalls:
        print("  %s" % line)
    if xfails:
        print("expected failures of the stock C layer (XFAIL, not counted as passed; see "
              "Documentation/testing.rst): %s" % ",".join(xfails))
    print("%d passed, %d failed, %d XFAIL" % (passed, failed, len(xfails)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
