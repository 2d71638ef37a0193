# SPDX-License-Identifier: GPL-2.0
"""The loss scenario: lossy, duplicating, reordering, delaying links under
torture, and the tshark wire oracle on a clean phase (testing.rst, "loss")."""

import os
import time

from scenario import LS, anchor, check, lvb_value, start_torture, watched_totals
import wire

DROP_PCT = 5
DUP_PCT = 1
REORDER_PCT = 10
DELAY_MS, JITTER_MS = 5, 5
LOSS_SECS = 30
CLEAN_SECS = 5


def tcp_counter(cl, ids, names):
    """Sum over nodes of TCP MIB counters (Tcp: of /proc/net/snmp, TcpExt:
    of /proc/net/netstat), {name: total}."""
    out = dict.fromkeys(names, 0)
    for i in ids:
        r = cl.node(i).run("cat /proc/net/snmp /proc/net/netstat")
        rows = [l.split() for l in r.out.splitlines()]
        for hdr, val in zip(rows[0::2], rows[1::2]):
            for k, v in zip(hdr[1:], val[1:]):
                if k in out and hdr[0] in ("Tcp:", "TcpExt:"):
                    out[k] += int(v)
    return out


def sc_loss(cl, ctx):
    """Every link drops 5 %, duplicates 1 %, reorders 10 % and delays 5 +- 5 ms
    of frames for 30 s while every node tortures; the counter is exact and
    the hub's and the guests' TCP counters show that the faults happened.
    The hub records the whole run from before the lockspace join (a clean
    phase of 5 s, then the lossy one) and tshark judges it (wire.check):
    loss below TCP must not show in the DLM's own numbering, and no DLM
    connection breaks."""
    ids = cl.alive()
    pcap = os.path.join(cl.dir, "wire.pcap")
    cl.hub.cmd("pcap %s" % pcap)
    cl.join(LS, ids)
    anchor(cl, ctx)
    pend = {i: start_torture(cl, i, CLEAN_SECS, "w%d" % i) for i in ids}
    s0 = sum(t for t, _ in watched_totals(cl, ctx, pend, "no fault").values())
    v0 = lvb_value(cl, 2)
    ctx.say("clean phase: %d increments, LVB read on node 2: %d" % (s0, v0))
    check(v0 == s0, "LVB counter %d != sum of increments %d after the clean phase" % (v0, s0))

    mib = ("RetransSegs", "TCPLostRetransmit", "TCPDSACKRecv", "TCPOFOQueue",
           "TCPTimeouts")
    tcp0 = tcp_counter(cl, ids, mib)
    hub0 = cl.hub.stats()
    pend = {i: start_torture(cl, i, LOSS_SECS + 2, "x%d" % i) for i in ids}

    def impair():
        for line in ("drop %d" % DROP_PCT, "dup %d" % DUP_PCT, "reorder %d" % REORDER_PCT,
                     "delay %d %d" % (DELAY_MS, JITTER_MS)):
            cl.hub.cmd(line)
        ctx.say("hub: drop %d%%, dup %d%%, reorder %d%%, delay %d+-%d ms on every link for "
                "%d s while 3 nodes torture" % (DROP_PCT, DUP_PCT, REORDER_PCT, DELAY_MS,
                                                JITTER_MS, LOSS_SECS))
        try:
            time.sleep(LOSS_SECS)
        finally:
            cl.hub.cmd("clear")

    totals = watched_totals(cl, ctx, pend, "lossy links", during=impair)
    hub1 = cl.hub.stats()
    tcp1 = tcp_counter(cl, ids, mib)
    d = {k: int(hub1[k]) - int(hub0[k]) for k in
         ("frames", "dropped", "duplicated", "reordered", "delayed", "partitioned")}
    dt = {k: tcp1[k] - tcp0[k] for k in mib}
    s1 = sum(t for t, _ in totals.values())
    # Read on a node that is not the master: the read crosses the network.
    v1 = lvb_value(cl, 3)
    # Let the last segments reach the hub before the capture ends: the
    # oracle requires every message in it to be complete.
    time.sleep(1)
    captured = int(cl.hub.cmd("pcap off").split("captured=")[1])
    ctx.say("increments %s sum %d, LVB read on node 3: %d (expected %d)" % (
        {i: t for i, (t, _) in totals.items()}, s1, v1, s0 + s1))
    ctx.say("hub: of %d frames %d dropped, %d duplicated, %d reordered, %d delayed; guests' "
            "TCP: %s" % (d["frames"], d["dropped"], d["duplicated"], d["reordered"],
                         d["delayed"], " ".join("%s=%d" % kv for kv in dt.items())))
    for k in ("dropped", "duplicated", "reordered", "delayed"):
        check(d[k] > 0, "the hub %s no frame: the impairment did not happen" % k)
    check(d["partitioned"] == 0, "frames partitioned in a scenario without a partition")
    check(dt["RetransSegs"] > 0, "no TCP retransmission on any node: the drops did not hit "
          "the DLM's traffic")
    check(v1 == s0 + s1, "LVB counter %d != sum of increments %d under lossy links" %
          (v1, s0 + s1))

    t0 = time.monotonic()
    rep = wire.check(pcap, {"192.0.2.%d" % i: i for i in ids}, complete=True)
    ctx.say("wire oracle (tshark %s) on %d captured frames: %s (%.1fs)" % (
        wire.tshark_version(), captured, rep.summary(), time.monotonic() - t0))
    check(rep.opts and rep.acks, "the capture holds no sequenced DLM message or ACK")
    check(not rep.errors, "wire oracle: %d problem(s) in %s: %s" % (
        len(rep.errors), pcap, "; ".join(rep.errors[:8])))
    check(rep.breaks == 0 and rep.resent == 0, "a DLM connection broke under loss (%d breaks, "
          "%d messages resent): TCP should have hidden the loss" % (rep.breaks, rep.resent))
    ctx.numbers.update(increments=s0 + s1, frames=d["frames"], dropped=d["dropped"],
                       duplicated=d["duplicated"], reordered=d["reordered"],
                       delayed=d["delayed"], tcp_retrans=dt["RetransSegs"],
                       wire_messages=rep.pdus)


SCENARIOS = [
    ("loss", sc_loss, 300, {"debug": True, "placement": {2: (1, 2)}}),
]
