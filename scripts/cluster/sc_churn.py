# SPDX-License-Identifier: GPL-2.0
"""churn: comms entries and lockspace members come and go while lock
traffic and connection resets go on.  Nodes 1 and 2 torture the counter
lockspace throughout; node 3 leaves and rejoins it, shares a second
lockspace with node 2, pings node 1 from a lockspace node 1 never joins
while nodes 1 and 2 remove and re-add node 3's comm, and reloads dlm.ko.
Documentation/testing.rst, "churn", says what each step aims at."""

import time

from scenario import LS, RES, anchor, lvb_value, start_torture, watched_totals
from sc_allocfail import end_breaks, expect

ROUNDS = 1            # the last (here: only) round also reloads dlm.ko on node 3
RESET_MS = 700        # hub reset-every period for the whole churn
COMM_CYCLES = 4       # rmdir/mkdir of comms/3 per round on nodes 1 and 2
LS2 = "u"             # second lockspace, nodes 2 and 3
RES2 = "c2"
GHOST = "w"           # node 3's lockspace with node 1 as a member that never joins


def stop_torture(cl, i, tag):
    """Let node i's torture-loop TAG end after its current batch."""
    cl.node(i).run("touch /tmp/torture-stop-%s" % tag)


def dlm_sockets(cl, i, peer):
    """Node i's port-21064 sockets with node peer that are still open on
    i's side (established, or close-wait: the peer closed, i did not)."""
    r = cl.node(i).run("ss -tn state established state close-wait "
                       "'( dport = :21064 or sport = :21064 )' dst 192.0.2.%d | "
                       "grep -c 192.0.2.%d || true" % (peer, peer))
    return int(r.out.strip() or 0)


def refused(cl, i):
    """Lines of connections node i refused because no comm matched the
    peer, from the host's complete console log (the guest's dmesg wraps)."""
    return cl.console_count([i], "connect from non cluster")


def comm_churn(cl, i, peer, cycles):
    """Start on node i: `cycles` times rmdir comms/peer, then re-add it with
    its address; prints the number of cycles done."""
    return cl.node(i).start(
        "n=0; while [ $n -lt %d ]; do dlm-controller rmcomm %d || exit 1; usleep 150000; "
        "dlm-controller addcomm %d || exit 1; usleep 250000; n=$((n+1)); done; "
        "echo churn cycles=$n" % (cycles, peer, peer), timeout=120)


def second_lockspace(cl, ctx, r):
    """Nodes 2 and 3 join LS2, torture it, check its counter and leave."""
    cl.join(LS2, [2, 3])
    rel = cl.anchor(2, LS2, RES2)
    p = {i: start_torture(cl, i, 3, "u%d.%d" % (r, i), ls=LS2, res=RES2) for i in (2, 3)}
    # Watched like every other torture under resets: in a mixed cluster a
    # stall held by the stock node (7.2's lost resend) is proven and
    # recovered, or fails with the evidence, instead of waiting out dlmt's
    # AST timeout.
    s = sum(t for t, _ in watched_totals(cl, ctx, p, "%s's torture" % LS2).values())
    v = lvb_value(cl, 3, ls=LS2, res=RES2)
    expect(ctx, "lvb2", s > 0 and v == s, "round %d: %s counter %d != sum of increments %d" %
           (r, LS2, v, s))
    rel()
    cl.leave(LS2, 3, [2])
    cl.leave(LS2, 2, [])
    ctx.say("round %d: nodes 2,3 joined %s, %d increments exact, left" % (r, LS2, s))
    return s


def ghost_and_comm_churn(cl, ctx, r):
    """Node 3 joins GHOST with members 1 and 3; node 1 never joins it, so
    node 3's recovery pings node 1 (RCOM_STATUS, answered "not ready")
    until the member list changes.  Meanwhile nodes 1 and 2 remove and
    re-add node 3's comm (node 3 is in none of their lockspaces).  Then
    node 3 drops node 1 from GHOST, its join completes and it leaves; once
    node 3 is silent, node 1 removes its comm once more and must hold no
    socket with it."""
    ghost = cl.node(3).start("dlm-controller members %s '1 3' && dlmt join %s --timeout 300"
                             % (GHOST, GHOST), timeout=330)
    time.sleep(2)
    churn = {i: comm_churn(cl, i, 3, COMM_CYCLES) for i in (1, 2)}
    for i, p in churn.items():
        n = int(p.wait().kv("churn")["cycles"])
        expect(ctx, "cycles", n == COMM_CYCLES, "node %d: comm churn stopped after %d cycles" %
               (i, n))
    pings = refused(cl, 1)
    expect(ctx, "ghost", not ghost.done.is_set(), "node 3 joined %s without node 1: %s" % (
        GHOST, ghost.result and ghost.result.out))
    cl.node(3).run("dlm-controller stop %s && dlm-controller members %s '3' && "
                   "dlm-controller start %s" % (GHOST, GHOST, GHOST))
    ghost.wait()
    cl.leave(GHOST, 3, [])
    cl.node(1).run("dlm-controller rmcomm 3")
    time.sleep(2 * cl.scale)
    left = dlm_sockets(cl, 1, 3)
    cl.node(1).run("dlm-controller addcomm 3")
    ctx.say("round %d: node 3 pinged node 1 from %s while nodes 1,2 removed and re-added "
            "comms/3 %d times (node 1 refused %d connections from node 3 so far); with "
            "comms/3 gone and node 3 silent node 1 holds %d sockets with it" % (
                r, GHOST, COMM_CYCLES, pings, left))
    expect(ctx, "sockets", left == 0, "round %d: node 1 still holds %d port-21064 socket(s) "
           "with node 3 2 s after rmdir comms/3 and node 3's last lockspace (a socket "
           "accepted while the comm was closed?)" % (r, left))


def churn_round(cl, ctx, r, steady, node3):
    """Node 3 tortures, leaves the counter lockspace, shares LS2 with node 2,
    pings node 1 from GHOST while its comm churns on nodes 1 and 2, in the
    last round reloads dlm.ko, and rejoins."""
    t, _ = watched_totals(cl, ctx, {3: start_torture(cl, 3, 4, "x%d" % r)},
                          "node 3's torture")[3]
    node3.append(t)
    cl.leave(LS, 3, [1, 2])
    ctx.say("round %d: node 3 did %d increments and left %s" % (r, t, LS))
    second_lockspace(cl, ctx, r)
    ghost_and_comm_churn(cl, ctx, r)
    if r == ROUNDS:
        cl.node(3).run("dlm-controller teardown && dlm-module unload && "
                       "dlm-module load && dlm-controller setup", timeout=120)
        ctx.say("round %d: node 3 unloaded and reloaded dlm.ko" % r)
    before = {i: cl.recover_count(i, LS) for i in (1, 2)}
    cl.change_members(LS, [1, 2], [1, 2, 3], wait=False)
    cl.node(3).run("dlm-controller members %s '1 2 3' && dlmt join %s" % (LS, LS),
                   timeout=120)
    cl.wait_recovered(LS, [1, 2], before)
    busy = [i for i in (1, 2) if not steady[i].done.is_set()]
    expect(ctx, "steady", busy == [1, 2], "round %d: the torture of nodes 1,2 ended "
           "early: %s" % (r, {i: steady[i].result and steady[i].result.out[-300:]
                              for i in (1, 2)}))
    ctx.say("round %d: node 3 rejoined %s" % (r, LS))


def sc_churn(cl, ctx):
    ids = cl.alive()
    cl.join(LS, ids)
    release = anchor(cl, ctx)
    hub0 = cl.hub.stats()
    cl.hub.cmd("reset-every %d" % RESET_MS)
    steady = {i: cl.node(i).start("rm -f /tmp/torture-stop-h%d; torture-loop %s %s 3600 20 "
                                  "h%d --timeout %d" % (i, LS, RES, i, 60 * cl.scale),
                                  timeout=3900)
              for i in (1, 2)}
    ctx.say("hub reset-every %d ms; nodes 1,2 torture %s throughout" % (RESET_MS, LS))
    node3 = []

    def rounds():
        try:
            for r in range(1, ROUNDS + 1):
                churn_round(cl, ctx, r, steady, node3)
        finally:
            cl.hub.cmd("reset-stop")
            for i in (1, 2):
                stop_torture(cl, i, "h%d" % i)

    totals = watched_totals(cl, ctx, steady, "the churn", during=rounds)
    last = {i: start_torture(cl, i, 4, "z%d" % i) for i in ids}
    final = watched_totals(cl, ctx, last, "the last round")
    s = sum(t for t, _ in totals.values()) + sum(node3) + sum(t for t, _ in final.values())
    v = lvb_value(cl, 3)
    hub1 = cl.hub.stats()
    resets = int(hub1["resets"]) - int(hub0["resets"])
    ctx.say("increments: nodes 1,2 %s, node 3 %d, last round %s: %d; LVB %d; hub resets %d"
            % ({i: t for i, (t, _) in totals.items()}, sum(node3),
               {i: t for i, (t, _) in final.items()}, s, v, resets))
    expect(ctx, "resets", resets > 0, "the hub injected no reset")
    expect(ctx, "lvb", v == s, "LVB counter %d != sum of increments %d after the churn" %
           (v, s))
    release()
    ctx.numbers.update(increments=s, resets=resets, rounds=ROUNDS,
                       refused_connects=refused(cl, 1))
    end_breaks(ctx)


SCENARIOS = [
    # make check runs the all-ours instance on the debug flavour (debug set),
    # the mixed one (ours on nodes 1 and 2) on the base kernel: on the debug
    # flavour a stock node that drops a node entry leaks it (testing.rst).
    ("churn", sc_churn, 600,
     {"debug": True, "faults": ("reset", "rmcomm"), "placement": {2: (1, 2)}}),
]
