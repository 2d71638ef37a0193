# SPDX-License-Identifier: GPL-2.0
"""Issue 12's scenarios: the DLM over SCTP, and two networks per node
(testing.rst, "SCTP and two networks").

sctp
    protocol SCTP on one network: leave/rejoin under torture (suite's
    sc_leave_rejoin, exact counter), then a hub resets phase whose resets
    are SCTP ABORTs (exact counter), then gfs2 (suite's sc_gfs2).
multihome
    SCTP on two networks: every association carries both addresses of the
    peer; during torture segment A is cut for CUT_S seconds and healed.
    SCTP must keep delivering over segment B (every node completes batches
    while A is cut); the counter is exact; the longest pause of each node's
    delivered increments is measured and reported.
tcp-failover
    TCP on two networks: during torture segment A is cut and stays cut;
    ours moves every connection to segment B (TCP_USER_TIMEOUT 10 s, next
    address); the counter is exact; the pause is measured; at the end the
    DLM's connections run on segment B.

None is in the default set (make check); make check-full runs them
(scripts/check.sh --only full).
"""

import re
import sys
import time

import cluster as C
from scenario import (LS, anchor, check, check_versions, console_count, remote_lvb,
                      start_torture, watched_totals)
from sc_commsfix import every_pair_talks
from sc_partition import Progress, check_clocks, uptimes

CUT_S = 20          # multihome: how long segment A is cut
LEAD_S = 8          # torture before the cut
AFTER_S = 15        # multihome: torture after the heal
HOLD_S = 40         # tcp-failover: torture after the cut (A stays cut)
RESETS_S = 20       # sctp: length of the hub's ABORT phase
RESET_EVERY_MS = 300
ACCEPT_LINE = r"dlm: got connection from [0-9]+"


def suite_module():
    """suite.py's module, for its scenario functions (sc_leave_rejoin,
    sc_gfs2): the running __main__ when suite.py is the program, else the
    module.  Not imported at the top: suite.py imports this module while it
    loads."""
    main = sys.modules.get("__main__")
    if main is not None and hasattr(main, "sc_leave_rejoin"):
        return main
    import suite
    return suite


def longest_pauses(seen, t0, t1, trail=True):
    """{node: (seconds, from, to)}: each node's longest gap between two
    consecutive progress lines (host times in seen[node], ascending) among
    the gaps that overlap [t0, t1], counted whole.  Before the first line
    the gap starts at t0; after the last one it runs to t1 (to None) if
    trail (the torture still ran at t1) or if no line came after t0 at
    all."""
    out = {}
    for i, times in seen.items():
        before = [t for t in times if t <= t0]
        pts = [before[-1] if before else t0] + [t for t in times if t > t0]
        best = None
        for a, b in zip(pts, pts[1:]):
            if a >= t1:
                break
            if best is None or b - a > best[0]:
                best = (b - a, a, b)
        last = pts[-1]
        if (trail or len(pts) == 1) and last < t1 and (best is None or t1 - last > best[0]):
            best = (t1 - last, last, None)
        out[i] = best
    return out


def progress_during(seen, t0, t1):
    """{node: progress lines seen at host times in [t0, t1)}."""
    return {i: sum(1 for t in times if t0 <= t < t1) for i, times in seen.items()}


def check_protocol(cl, ctx, ids, want):
    """The configfs protocol attribute on every node is want (0 TCP, 1 SCTP):
    the cluster option took effect."""
    got = {i: cl.node(i).run("cat /sys/kernel/config/dlm/cluster/protocol").out.strip()
           for i in ids}
    ctx.say("configfs cluster/protocol: %s" % got)
    check(all(v == str(want) for v in got.values()),
          "configfs cluster/protocol is %s, expected %d on every node" % (got, want))


def sctp_assocs(cl, i):
    """Node i's SCTP associations of the DLM port: [(local addrs, remote
    addrs, primary remote addr)] from /proc/net/sctp/assocs."""
    return parse_sctp_assocs(cl.node(i).run("cat /proc/net/sctp/assocs 2>/dev/null || "
                                            "true").out)


def parse_sctp_assocs(text):
    """[(local addrs, remote addrs, primary remote addr or None)] of the
    port-21064 associations in the
    text of /proc/net/sctp/assocs, whose lines end their numeric columns
    with LPORT RPORT, then the local addresses, "<->", the remote ones (the
    primary path marked "*"), a tab and the timer columns."""
    out = []
    for line in text.splitlines():
        if "<->" not in line:
            continue
        left, right = line.split("<->", 1)
        toks = left.split()
        k = len(toks)
        while k > 0 and re.match(r"^\*?[0-9a-fA-F:.]*[.:][0-9a-fA-F:.]*$", toks[k - 1]):
            k -= 1
        if k < 2 or "21064" not in (toks[k - 2], toks[k - 1]):
            continue
        laddrs = [t.lstrip("*") for t in toks[k:]]
        rtoks = right.split("\t")[0].split()
        raddrs = [t.lstrip("*") for t in rtoks]
        primary = next((t[1:] for t in rtoks if t.startswith("*")), None)
        out.append((laddrs, raddrs, primary))
    return out


def tcp_dlm_conns(cl, i):
    """Node i's established port-21064 TCP connections: [(local, peer)]
    addresses."""
    r = cl.node(i).run("ss -t -n -H state established '( dport = :21064 or sport = :21064 )'"
                       " || true")
    out = []
    for line in r.out.splitlines():
        a = re.findall(r"(\d+\.\d+\.\d+\.\d+):\d+", line)
        if len(a) >= 2:
            out.append((a[0], a[1]))
    return out


def check_on_sctp(cl, ctx, ids, multihomed=False):
    """The DLM's connections are SCTP associations (and no TCP ones); with
    multihomed, each association's peer is reachable on both segments."""
    for i in ids:
        assocs = sctp_assocs(cl, i)
        tcp = tcp_dlm_conns(cl, i)
        ctx.say("node %d: %d DLM SCTP association(s) %s, %d DLM TCP connection(s)" % (
            i, len(assocs), "; ".join("%s <-> %s" % (",".join(l), ",".join(r))
                                      for l, r, _ in assocs[:4]), len(tcp)))
        check(assocs, "node %d has no SCTP association on port 21064" % i)
        check(not tcp, "node %d has DLM TCP connections %s under protocol SCTP" % (i, tcp))
        if multihomed:
            for l, r, _ in assocs:
                nets = {a.rsplit(".", 1)[0] for a in r}
                check(nets >= {"192.0.2", "198.51.100"},
                      "node %d: an association's peer addresses %s do not span both "
                      "segments" % (i, r))


def sctp_resets_phase(cl, ctx, base, secs=RESETS_S):
    """Every node tortures while the hub ABORTs every DLM association every
    RESET_EVERY_MS (x the time scale).  The counter must be base plus the
    increments, and the DLM must have accepted new associations."""
    ids = cl.alive()
    conn0 = console_count(cl, ids, ACCEPT_LINE)
    hub0 = cl.hub.stats()
    every = RESET_EVERY_MS * cl.scale
    cl.hub.cmd("reset-every %d" % every)
    ctx.say("hub: SCTP ABORT of every DLM association every %d ms for %d s while %s "
            "torture" % (every, secs, ids))
    pend = {i: start_torture(cl, i, secs, "sr%d" % i) for i in ids}
    try:
        totals = watched_totals(cl, ctx, pend, "hub SCTP aborts")
    finally:
        cl.hub.cmd("reset-stop")
    hub1 = cl.hub.stats()
    resets = int(hub1["resets"]) - int(hub0["resets"])
    aborts = int(hub1["abort_frames"]) - int(hub0["abort_frames"])
    rst = int(hub1["rst_frames"]) - int(hub0["rst_frames"])
    conn1 = console_count(cl, ids, ACCEPT_LINE)
    s = sum(t for t, _ in totals.values())
    v, _ = remote_lvb(cl, ctx, 3)
    ctx.say("resets phase: increments %s sum %d, LVB %d (expected %d); hub aborted %d "
            "associations with %d ABORT frames (TCP RSTs %d); associations accepted by "
            "dlm %d" % ({i: t for i, (t, _) in totals.items()}, s, v, base + s, resets,
                        aborts, rst, conn1 - conn0))
    check(resets > 0 and aborts > 0, "the hub aborted no SCTP association")
    check(rst == 0, "the hub reset %d TCP connections under protocol SCTP" % rst)
    check(conn1 > conn0, "no new DLM association accepted: the aborts did not take effect")
    check(v == base + s, "LVB counter %d != %d after SCTP aborts" % (v, base + s))
    ctx.numbers.update(hub_sctp_aborts=resets, abort_frames=aborts,
                       new_associations=conn1 - conn0)
    return s


def sc_sctp(cl, ctx):
    """Protocol SCTP, one network: leave/rejoin under torture, a resets
    phase, gfs2; every counter exact."""
    ids = cl.alive()
    check_protocol(cl, ctx, ids, 1)
    suite = suite_module()
    # Joins, anchors on node 1, node 3 leaves and rejoins under torture.
    suite.sc_leave_rejoin(cl, ctx)
    base = ctx.numbers["increments"]
    check_on_sctp(cl, ctx, ids)
    check_versions(cl, ids)
    s = sctp_resets_phase(cl, ctx, base)
    ctx.numbers["increments"] = base + s
    check_versions(cl, ids)
    suite.sc_gfs2(cl, ctx)


def cut_and_measure(cl, ctx, ids, clocks, tag, cut_s, after_s, heal):
    """Torture on every node; LEAD_S in, segment A is cut for cut_s
    seconds, healed if heal (else left cut to the end), and the torture
    goes on after_s more.  clocks: uptimes() from the scenario's start, to
    size the torture in guest seconds.  Returns (totals, progress times,
    cut time, heal time (the cut's if not healed), end time, frames the
    cut dropped, frames segment B forwarded from the cut to the heal or
    the end)."""
    rate = check_clocks(cl, ctx, clocks, ids)
    host_secs = LEAD_S + cut_s + after_s
    ev = {}
    with Progress(cl, ids) as prog:
        # torture-loop counts guest seconds: size each node's to cover the
        # host schedule at its clock's speed.
        pend = {i: start_torture(cl, i, int(host_secs * rate[i] * 1.1) + 2, "%s%d" % (tag, i))
                for i in ids}

        def during():
            time.sleep(LEAD_S)
            ev["a0"], ev["b0"] = cl.hubs["a"].stats(), cl.hubs["b"].stats()
            cl.cut_segment("a")
            ev["cut"] = prog.mark()[0]
            ctx.say("segment A cut (every frame dropped); segment B up")
            time.sleep(cut_s)
            if heal:
                ev["a1"], ev["b1"] = cl.hubs["a"].stats(), cl.hubs["b"].stats()
                cl.heal_segment("a")
                ctx.say("segment A healed after %d s" % cut_s)
            ev["end"] = prog.mark()[0]
        try:
            totals = watched_totals(cl, ctx, pend, "the cut of segment A", during=during)
        finally:
            if heal:
                cl.heal_segment("a")
        ended = prog.mark()[0]
    if not heal:
        ev["a1"], ev["b1"] = cl.hubs["a"].stats(), cl.hubs["b"].stats()
    cut_drops = int(ev["a1"]["cut"]) - int(ev["a0"]["cut"])
    b_fwd = int(ev["b1"]["forwarded"]) - int(ev["b0"]["forwarded"])
    return totals, prog.seen, ev["cut"], ev["end"], ended, cut_drops, b_fwd


def report_pauses(ctx, pauses, t_cut):
    ctx.say("longest pause of delivered increments per node: %s" % ", ".join(
        "node %d %.1f s (%s)" % (i, p[0], "from %.1f s to %s after the cut" % (
            p[1] - t_cut, "%.1f s" % (p[2] - t_cut) if p[2] is not None else "the end"))
        for i, p in sorted(pauses.items())))


def warm_up(cl, ctx, protocol, tag):
    """The start of both two-network scenarios: the configfs protocol
    checked, the lockspace joined and anchored on node 1, and a 3 s torture
    on every node.  Connections (associations) come up with the first
    messages, and the anchor's requests crossed the network from node 1
    only: the torture makes every node talk to the counter's master.
    Returns (ids, the guests' clocks, the torture's increments)."""
    ids = cl.alive()
    clocks = uptimes(cl, ids)
    check_protocol(cl, ctx, ids, protocol)
    cl.join(LS, ids)
    anchor(cl, ctx)
    pend = {i: start_torture(cl, i, 3, "%s%d" % (tag, i)) for i in ids}
    warm = sum(t for t, _ in watched_totals(cl, ctx, pend, "warm-up").values())
    return ids, clocks, warm


def sc_multihome(cl, ctx):
    """SCTP on two networks: segment A cut for CUT_S s under torture and
    healed; delivery goes on over B; exact counter; pauses measured."""
    ids, clocks, warm = warm_up(cl, ctx, 1, "mw")
    check_on_sctp(cl, ctx, ids, multihomed=True)
    # C's rule, which ours keeps: every connect moves the peer's current
    # address on, so an association's primary path may be on either
    # segment; the cut must at least hit one primary path.
    prim = [p for i in ids for _, _, p in sctp_assocs(cl, i)]
    prim_a = sum(1 for p in prim if p and p.startswith("192.0.2."))
    ctx.say("primary paths of the DLM associations before the cut: %d on segment A, %d on "
            "segment B" % (prim_a, len(prim) - prim_a))
    check(prim_a > 0, "no DLM association's primary path is on segment A, so cutting it "
          "tests nothing")
    totals, seen, t_cut, t_heal, t_end, drops, b_fwd = cut_and_measure(
        cl, ctx, ids, clocks, "mh", CUT_S, AFTER_S, heal=True)
    s = warm + sum(t for t, _ in totals.values())
    v, _ = remote_lvb(cl, ctx, 3)
    during = progress_during(seen, t_cut, t_heal)
    pauses = longest_pauses(seen, t_cut, t_heal)
    report_pauses(ctx, pauses, t_cut)
    ctx.say("increments %s + warm-up %d = %d, LVB %d; batches completed while A was cut: "
            "%s; segment A dropped %d frames, segment B forwarded %d meanwhile" % (
                {i: t for i, (t, _) in totals.items()}, warm, s, v, during, drops, b_fwd))
    check(drops > 0, "the cut of segment A dropped no frame")
    check(b_fwd > 0, "segment B forwarded nothing while A was cut")
    check(v == s, "LVB counter %d != sum of increments %d across the cut of segment A" % (v, s))
    stuck = [i for i in ids if not during[i]]
    check(not stuck, "node(s) %s completed no batch during the %d s cut of segment A: SCTP "
          "did not keep delivering over segment B (longest pauses %s)" % (
              stuck, CUT_S, {i: round(p[0], 1) for i, p in pauses.items()}))
    check_on_sctp(cl, ctx, ids, multihomed=True)
    ctx.numbers.update(increments=s, longest_pause_s=round(max(p[0] for p in pauses.values()), 1),
                       pause_s="/".join("%.1f" % pauses[i][0] for i in ids),
                       batches_during_cut="/".join(str(during[i]) for i in ids),
                       cut_dropped=drops, primaries_on_a_before=prim_a,
                       primaries_before=len(prim))


def sc_tcp_failover(cl, ctx):
    """TCP on two networks: segment A cut under torture and left cut; every
    connection moves to B; exact counter; pauses measured."""
    ids, clocks, warm = warm_up(cl, ctx, 0, "tw")
    before = {i: tcp_dlm_conns(cl, i) for i in ids}
    ctx.say("DLM TCP connections before the cut: %s" % before)
    check(all(before.values()), "a node has no DLM TCP connection before the cut: %s" % before)
    # A connect refused at the join (the peer's lockspace not there yet)
    # moves a node's current address on, so a pair may start on B; the cut
    # must at least hit one connection on A.
    on_a = sum(1 for cs in before.values() for _, p in cs if p.startswith("192.0.2."))
    on_b = sum(1 for cs in before.values() for _, p in cs if p.startswith("198.51.100."))
    ctx.say("DLM TCP sockets on segment A %d, on segment B %d before the cut" % (on_a, on_b))
    check(on_a > 0, "no DLM connection runs on segment A before the cut, so cutting it "
          "tests nothing: %s" % before)
    timeouts0 = console_count(cl, ids, r"socket error sending to node \d+, sk_err=110")
    totals, seen, t_cut, _, t_end, drops, b_fwd = cut_and_measure(
        cl, ctx, ids, clocks, "tf", 0, HOLD_S, heal=False)
    s = warm + sum(t for t, _ in totals.values())
    v, _ = remote_lvb(cl, ctx, 3)
    # The torture loops end one by one before t_end: a node's quiet time
    # after its own last batch is no pause.
    pauses = longest_pauses(seen, t_cut, t_end, trail=False)
    after = progress_during(seen, t_cut, t_end)
    resumed = {i: next((t - t_cut for t in seen[i] if t > t_cut), None) for i in ids}
    report_pauses(ctx, pauses, t_cut)
    # The torture only talks to the counter's master: a pair with nothing to
    # say keeps its connection on A, up and idle (TCP learns a path is dead
    # only by sending).  Every ordered pair now carries a request and its
    # reply, within dlmt's 30 s: each must fail over to B for that.
    every_pair_talks(cl, ctx, ids, "after the cut")
    conns = {i: tcp_dlm_conns(cl, i) for i in ids}
    timeouts = console_count(cl, ids, r"socket error sending to node \d+, sk_err=110") - timeouts0
    ctx.say("increments %s + warm-up %d = %d, LVB %d; batches after the cut %s; first batch "
            "after the cut %s; DLM ETIMEDOUT lines %d; connections now %s" % (
                {i: t for i, (t, _) in totals.items()}, warm, s, v, after,
                {i: t and round(t, 1) for i, t in resumed.items()}, timeouts, conns))
    check(drops > 0 and b_fwd > 0, "segment A dropped %d frames and B forwarded %d after the "
          "cut" % (drops, b_fwd))
    check(v == s, "LVB counter %d != sum of increments %d after the failover" % (v, s))
    stuck = [i for i in ids if not after[i]]
    check(not stuck, "node(s) %s completed no batch after segment A was cut" % stuck)
    for i in ids:
        peers = {p for _, p in conns[i]}
        want = {C.node_addr(j, "b") for j in ids if j != i}
        check(want <= peers, "node %d's DLM connections %s do not reach every peer on "
              "segment B (%s)" % (i, conns[i], sorted(want)))
    ctx.numbers.update(increments=s, longest_pause_s=round(max(p[0] for p in pauses.values()), 1),
                       pause_s="/".join("%.1f" % pauses[i][0] for i in ids),
                       etimedout_lines=timeouts, cut_dropped=drops,
                       sockets_on_a_before=on_a, sockets_on_b_before=on_b)


SCENARIOS = [
    # Not in make check (default False) nor in its debug set: make
    # check-full runs them (scripts/check.sh --only full), all ours on the
    # base and the debug flavour and mixed on the base flavour.
    # sctp: node 3 leaves and rejoins (sc_leave_rejoin's roles), so the
    # placements are leave-rejoin's.
    ("sctp", sc_sctp, 1200,
     {"default": False, "protocol": "sctp", "mkfs": True, "faults": ("rejoin", "reset"),
      "placement": {1: (3,), 2: (1, 2)}}),
    # C's SCTP binds every local address as ours does, so a stock peer
    # keeps delivering over B too: one of ours, then two.
    ("multihome", sc_multihome, 420,
     {"default": False, "protocol": "sctp", "networks": 2, "faults": ("segcut",),
      "placement": {1: (2,), 2: (1, 3)}}),
    # All ours only: C's TCP dials a node's first address only and listens
    # on its own first address only, so with segment A cut a stock node
    # is cut off from everyone for good; no stall proof can make that a
    # pass, nor should it (testing.rst, "SCTP and two networks").
    ("tcp-failover", sc_tcp_failover, 420,
     {"default": False, "networks": 2, "faults": ("segcut",), "placement": {}}),
]
