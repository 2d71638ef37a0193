# SPDX-License-Identifier: GPL-2.0
"""Regression scenarios for the five comms bugs of issue 9 (the review in
comms-review.md, A.1-A.5), each made reachable on purpose:

wedge        A.1: the allocation that stores an unacknowledged message fails
             (failslab/fail_page_alloc, stack filter on that one function);
             the node pair must keep working.
seqgap       A.2: the page for a message that follows a due ACK cannot be
             allocated; no sequence number may be used up without its bytes.
acceptclose  A.3: the accept work is stalled (test fault point
             dlm_accept_stall) while the peer's comm is removed; no socket of
             the removed node may survive.
sigwait      A.4: a process leaving its last lockspace gets SIGKILL while the
             shutdown waits for a partitioned peer; the waits must sleep, not
             spin.
closedrx     A.5: a received buffer is held in the receive queue (test fault
             point dlm_rx_hold) while its node's comm is removed; it must not
             reach the lock manager afterwards.

wedge, seqgap, acceptclose and closedrx need the debug flavour (fault
injection) and our dlm.ko on every node; sigwait runs anywhere (stock is the
oracle).  See Documentation/testing.rst.
"""

import re
import struct
import subprocess
import time

from scenario import (LS, Ctx, Failed, anchor, check, lvb_value,  # noqa: F401
                      start_torture, watched_totals)

DBG = "/sys/kernel/debug"
DLM_VERSION_3_2 = 0x00030002
DLM_RCOM = 2
DLM_RCOM_STATUS = 1
DLM_RCOM_STATUS_REPLY = 5


# --- fault injection helpers -------------------------------------------------

def ko_of(cl, i):
    ko = cl.dlm[i - 1]
    check(ko != "stock", "node %d runs the stock dlm.ko; this scenario needs ours" % i)
    return ko


def text_symbol(ko, patterns):
    """(offset in .text, size, name) of the first function of ko whose
    demangled name matches one of patterns (tried in order)."""
    out = subprocess.run(["nm", "-S", "-C", "--defined-only", ko], check=True,
                         capture_output=True, text=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[2] in ("t", "T"):
            syms.append((int(parts[0], 16), int(parts[1], 16), parts[3]))
    for p in patterns:
        for off, size, name in syms:
            if re.search(p, name):
                return off, size, name
    raise Failed("no function of %s matches %s" % (ko, patterns))


def arm(cl, i, attr, start=None, end=None, probability=100, times=1, extra=()):
    """Arm the fault attribute /sys/kernel/debug/<attr> on node i: fail (or
    fire) with probability %, at most `times` times, and only in calls whose
    stack contains an address in [start, end)."""
    d = "%s/%s" % (DBG, attr)
    cmds = ["[ -d %s ]" % d, "echo 0 > %s/verbose" % d, "echo 1 > %s/interval" % d,
            "echo 0 > %s/space" % d, "echo %d > %s/times" % (times, d)]
    if start is not None:
        cmds += ["echo 0 > %s/require-start" % d, "echo %d > %s/require-end" % (end, d),
                 "echo %d > %s/require-start" % (start, d),
                 "echo 32 > %s/stacktrace-depth" % d]
    cmds += ["echo %s > %s/%s" % (v, d, k) for k, v in extra]
    cmds.append("echo %d > %s/probability" % (probability, d))
    cl.node(i).run(" && ".join(cmds))


def fault_left(cl, i, attr):
    """How many of the armed `times` of /sys/kernel/debug/<attr> are left."""
    return int(cl.node(i).run("cat %s/%s/times" % (DBG, attr)).out.strip())


def disarm(cl, i, attr):
    """Stop injecting; returns how many of the allowed `times` are left."""
    d = "%s/%s" % (DBG, attr)
    r = cl.node(i).run("echo 0 > %s/probability && cat %s/times" % (d, d))
    return int(r.out.strip())


def arm_alloc_fault(cl, ctx, i, patterns, attrs=("failslab", "fail_page_alloc"), times=1):
    """Fail the next `times` allocations made from the function of node i's
    dlm.ko that matches patterns (slab and page allocations)."""
    off, size, name = text_symbol(ko_of(cl, i), patterns)
    base = int(cl.node(i).run("cat /sys/module/dlm/sections/.text").out.strip(), 16)
    ctx.say("node %d: failing the next %d allocation(s) made from %s [0x%x, +0x%x)" %
            (i, times, name, base + off, size))
    for a in attrs:
        extra = [("min-order", 0)] if a == "fail_page_alloc" else []
        extra.append(("ignore-gfp-wait", "N"))
        arm(cl, i, a, base + off, base + off + size, times=times, extra=extra)


def rawmsg(cl, sender, receiver, frame):
    """Queue frame (bytes) on sender's connection to receiver (debugfs
    rawmsg, between whole messages)."""
    esc = "".join("\\%03o" % b for b in frame)
    cl.node(sender).run("printf '%s' > /tmp/raw && dd if=/tmp/raw "
                        "of=/sys/kernel/debug/dlm/comms/%d/rawmsg bs=%d count=1 2>/dev/null"
                        % (esc, receiver, len(frame)))


def rcom_frame(sender, lockspace, rc_type, length):
    """A plain (stateless) 3.2 DLM_RCOM of `length` bytes: a STATUS (which
    the lock manager answers) or a STATUS_REPLY with a recovery sequence
    that matches nothing (which it ignores silently)."""
    hdr = struct.pack("<IIIHBB", DLM_VERSION_3_2, lockspace, sender, length, DLM_RCOM, 0)
    body = struct.pack("<IIQQQ", rc_type, 0, 0, 0, 0xdead0000)
    return (hdr + body).ljust(length, b"\0")


def ls_id(cl, i, ls=LS):
    return int(cl.node(i).run("cat /sys/kernel/dlm/%s/id" % ls).out.strip())


def background(cl, i, tag, cmd):
    """Start cmd (one simple command) on node i in the background; its pid
    is in /tmp/<tag>.pid and its output in /tmp/<tag>.out."""
    cl.node(i).run("%s > /tmp/%s.out 2>&1 & echo $! > /tmp/%s.pid" % (cmd, tag, tag))


def wait_out(cl, i, tag, pattern, secs):
    deadline = time.monotonic() + secs * cl.scale
    while time.monotonic() < deadline:
        if re.search(pattern, cl.node(i).run("cat /tmp/%s.out" % tag).out):
            return True
        time.sleep(0.5)
    return False


def every_pair_talks(cl, ctx, ids, what):
    """Each node masters a resource of its own (it locks it first); every
    other node then reads its LVB, a request to that master and its reply:
    every ordered pair of nodes must carry a message."""
    for i in ids:
        background(cl, i, "m%d" % i, "dlmt hold %s --res m%d --mode NL --secs 600" % (LS, i))
        check(wait_out(cl, i, "m%d" % i, r"ready=1", 60),
              "%s: node %d could not lock its own resource m%d" % (what, i, i))
    for i in ids:
        for j in ids:
            if j != i:
                r = cl.node(j).run("dlmt lvb %s m%d --raw --timeout 30" % (LS, i),
                                   timeout=90, check=False)
                check(r.rc == 0, "%s: node %d cannot reach node %d (the master of m%d): %s"
                      % (what, j, i, i, (r.out + r.err).strip()[-300:]))
    for i in ids:
        cl.node(i).run("kill $(cat /tmp/m%d.pid)" % i)
    ctx.say("%s: every node pair carried a request and its reply" % what)


def links_move(cl, ctx, ids, secs, what):
    """Every node pair must carry messages both ways, and every node
    tortures the anchored counter for secs: an exact counter, no stall."""
    every_pair_talks(cl, ctx, ids, what)
    before = lvb_value(cl, 1)
    pend = {i: start_torture(cl, i, secs, "%s%d" % (what, i)) for i in ids}
    totals = watched_totals(cl, ctx, pend, what)
    s = sum(t for t, _ in totals.values())
    v = lvb_value(cl, 1)
    ctx.say("%s: increments %s, LVB %d -> %d" %
            (what, {i: t for i, (t, _) in totals.items()}, before, v))
    check(s > 0, "%s: no increments" % what)
    check(v == before + s, "%s: LVB counter %d != %d + %d" % (what, v, before, s))
    return s


# --- A.1 ---------------------------------------------------------------------

# The function that allocates the storage of unacknowledged messages, in
# each version of the code: e37416e grew a KVec of (Seq, MsgRef) under the
# node lock after the message's bytes were reserved; since the fix the
# chunked queue allocates its chunks (before anything is reserved, or ahead
# of time in process context).
UNACKED_STORE = [
    r"^dlm_comms::comms::queue::new_chunk::<\(dlm_comms::proto::seq::Seq, "
    r"dlm_comms::comms::node::MsgRef\)>$",
    r"kvec::Vec<core::option::Option<\(dlm_comms::proto::seq::Seq, "
    r"dlm_comms::comms::node::MsgRef\)>.*>::reserve$",
]


def sc_wedge(cl, ctx):
    ids = cl.alive()
    cl.join(LS, ids)
    anchor(cl, ctx)
    # 200 resources mastered on node 1 (it locks them first), then node 2
    # locks them too: a burst of 200 requests from node 2 to node 1, more
    # unacknowledged messages than the join left room for.
    background(cl, 1, "own", "dlmt hold %s --prefix w --count 200 --mode NL" % LS)
    check(wait_out(cl, 1, "own", r"ready=1", 60), "node 1's hold of w0..w199 not ready")
    arm_alloc_fault(cl, ctx, 2, UNACKED_STORE)
    background(cl, 2, "burst", "dlmt hold %s --prefix w --count 200 --mode NL --timeout 30"
               % LS)
    wait_out(cl, 2, "burst", r"ready=1|dlmt", 40)
    left = [disarm(cl, 2, a) for a in ("failslab", "fail_page_alloc")]
    ctx.say("node 2's burst: %s; faults left (failslab, fail_page_alloc): %s" %
            (cl.node(2).run("cat /tmp/burst.out").out.strip()[:200], left))
    check(0 in left, "the injected allocation failure never happened: node 2 grew no "
          "storage for unacknowledged messages during the burst")
    cl.on([1, 2], lambda i: "kill $(cat /tmp/%s.pid) 2>/dev/null; true" %
          ("own" if i == 1 else "burst"))
    # The pair must still carry traffic in both directions.
    s = links_move(cl, ctx, ids, 8, "after")
    ctx.numbers.update(increments_after=s)


# --- A.2 ---------------------------------------------------------------------

# The function that allocates the pages messages go into: e37416e's
# new_page() (called by ensure_room() and by reserve(), which ran after the
# due ACK had taken the room ensure_room() had checked); since the fix
# SendPage::new(), called before anything (the ACK, the sequence number) is
# consumed, or ahead of time in process context.  Every such allocation
# fails while the scenario's unlocks go out.
SEND_PAGE = [
    r"^<dlm_comms::comms::page::SendPage>::new$",
    r"^<dlm_comms::comms::node::WriteQueue>::new_page$",
]
UNLOCK_TOTAL = 24 + 88     # DLM_OPTS header + struct dlm_message (an unlock, no LVB)
ACK_LEN = 16
PAGE = 4096


def connected(cl, i, peer, secs):
    """Wait until node i has an established DLM connection with node peer."""
    deadline = time.monotonic() + secs * cl.scale
    while time.monotonic() < deadline:
        if any(l.startswith("ESTAB") for l in peer_sockets(cl, i, peer)):
            return True
        time.sleep(1)
    return False


def sc_seqgap(cl, ctx):
    ids = cl.alive()
    cl.join(LS, ids)
    anchor(cl, ctx)
    lsid = ls_id(cl, 2)
    # Node 1 masters g0..g99 in EX; node 2 waits for them in PR, then node 1
    # lets go: node 2 receives 100 grants and sends nothing back, so its next
    # message to node 1 must be preceded by an ACK (more than 32 deliveries
    # since its last one).
    background(cl, 1, "own", "dlmt hold %s --prefix g --count 100 --mode EX" % LS)
    check(wait_out(cl, 1, "own", r"ready=1", 60), "node 1's hold of g0..g99 not ready")
    background(cl, 2, "wait", "dlmt hold %s --prefix g --count 100 --mode PR --timeout 600"
               % LS)
    time.sleep(3 * cl.scale)
    cl.node(1).run("kill $(cat /tmp/own.pid)")
    check(wait_out(cl, 2, "wait", r"ready=1", 60), "node 2's PR locks were not granted")
    # Node 2 loses its connection to node 1 and cannot make a new one, so
    # what it queues for node 1 stays queued (a page sent entirely leaves the
    # queue).
    cl.hub.cmd("partition 1,3 2")
    cl.node(2).run("ss -K -t -n state established dst 192.0.2.1 "
                   "'( dport = :21064 or sport = :21064 )' > /dev/null")
    time.sleep(2 * cl.scale)
    # Pad node 2's write queue to node 1 so that exactly ACK_LEN + 8 bytes
    # more than an unlock needs are left in its last page: a full page, then
    # a page that ends there (harmless STATUS_REPLYs the lock manager ignores).
    rawmsg(cl, 2, 1, rcom_frame(2, lsid, DLM_RCOM_STATUS_REPLY, PAGE))
    rawmsg(cl, 2, 1, rcom_frame(2, lsid, DLM_RCOM_STATUS_REPLY,
                                PAGE - UNLOCK_TOTAL - ACK_LEN + 8))
    arm_alloc_fault(cl, ctx, 2, SEND_PAGE, attrs=("fail_page_alloc",), times=1000)
    # The first of node 2's 100 unlocks carries the due ACK, which no longer
    # leaves room for the unlock in that page; no new page can be had.
    cl.node(2).run("kill $(cat /tmp/wait.pid)")
    wait_out(cl, 2, "wait", r"released=|dlmt", 30)
    left = disarm(cl, 2, "fail_page_alloc")
    ctx.say("node 2 released: %s; page allocations failed: %d" %
            (cl.node(2).run("cat /tmp/wait.out").out.strip()[-200:], 1000 - left))
    check(left < 1000, "the injected page allocation failure never happened")
    cl.hub.cmd("heal")
    check(connected(cl, 2, 1, 120), "node 2 did not connect to node 1 again after the heal")
    s = links_move(cl, ctx, ids, 8, "after")
    ctx.numbers.update(increments_after=s)


# --- A.3 ---------------------------------------------------------------------

def peer_sockets(cl, i, peer):
    """Node i's DLM sockets to or from node peer that are not closed."""
    r = cl.node(i).run("ss -tn state established state close-wait state syn-recv "
                       "'( sport = :21064 or dport = :21064 )' | grep -F ' 192.0.2.%d:' "
                       "|| true" % peer)
    return [l for l in r.out.splitlines() if l.strip()]


def sc_acceptclose(cl, ctx):
    ko_of(cl, 1)
    # Node 1 runs lockspace t with node 2; node 3 only needs its comms up (a
    # lockspace of its own) to connect to node 1.
    cl.on([1, 2], "dlm-controller members %s '1 2' && dlmt join %s" % (LS, LS))
    cl.node(3).run("dlm-controller members solo '3' && dlmt join solo")
    lsid = ls_id(cl, 1)
    arm(cl, 1, "dlm_accept_stall")
    # Node 3 connects to node 1 to send a STATUS; node 1's accept finds node
    # 3 and stalls there for 3 s, while node 1 removes node 3's comm.
    rawmsg(cl, 3, 1, rcom_frame(3, lsid, DLM_RCOM_STATUS, 64))
    deadline = time.monotonic() + 10 * cl.scale
    while fault_left(cl, 1, "dlm_accept_stall") != 0:
        check(time.monotonic() < deadline, "node 1 never accepted node 3's connection")
        time.sleep(0.2)
    disarm(cl, 1, "dlm_accept_stall")
    cl.node(1).run("dlm-controller rmcomm 3")
    ctx.say("node 1 removed node 3's comm while its accept work was stalled")
    time.sleep(8 * cl.scale)
    left = peer_sockets(cl, 1, 3)
    ctx.say("node 1's sockets with node 3 afterwards: %s" % (left or "none"))
    check(not left, "node 1 still has a socket with node 3 after removing its comm "
          "(callbacks into dlm.ko on a connection nobody owns): %s" % left)
    # And the module can go (every configfs entry pins it).
    cl.node(1).run("dlmt leave %s --force; dlm-controller teardown && dlm-module unload"
                   % LS, timeout=120)
    rawmsg(cl, 3, 1, rcom_frame(3, lsid, DLM_RCOM_STATUS, 64))
    time.sleep(3 * cl.scale)
    cl.node(1).run("dlm-module load && dlm-controller setup", timeout=120)


# --- A.4 ---------------------------------------------------------------------

def cpu_ticks(cl, i, pid):
    """(state, utime + stime in USER_HZ ticks) of pid on node i, or None."""
    r = cl.node(i).run("cat /proc/%d/stat 2>/dev/null || true" % pid)
    f = r.out.rsplit(")", 1)[-1].split()
    if len(f) < 13:
        return None
    return f[0], int(f[11]) + int(f[12])


def sc_sigwait(cl, ctx):
    ids = cl.alive()
    cl.join(LS, ids)
    # Node 3 cannot reach the others: its DLM_FIN is never acknowledged and
    # its half-closed connections never see the peers' end of stream, so
    # leaving its last lockspace waits 5 s per peer twice.
    cl.hub.cmd("partition 1,2 3")
    before = int(cl.node(3).run("grep -c 'offline %s done$' /run/dlm/controller.log || true"
                                % LS).out.strip() or 0)
    background(cl, 3, "leave", "dlmt leave %s --timeout 120" % LS)
    pid = int(cl.node(3).run("cat /tmp/leave.pid").out.strip())
    deadline = time.monotonic() + 30 * cl.scale
    while int(cl.node(3).run("grep -c 'offline %s done$' /run/dlm/controller.log || true"
                             % LS).out.strip() or 0) <= before:
        check(time.monotonic() < deadline, "node 3 never got its offline uevent")
        time.sleep(0.3)
    time.sleep(1)
    # dlmt makes the blocking write to dlm-control in a child (its parent
    # bounds the wait); that child is the process in dlm_release_lockspace.
    # A process killed during umount or lockspace release: SIGKILL stays
    # pending until the release returns.
    r = cl.node(3).run("for f in /proc/[0-9]*/stat; do awk '$4 == %d {print $1}' $f "
                       "2>/dev/null; done" % pid)
    kids = [int(x) for x in r.out.split()]
    check(len(kids) == 1, "dlmt leave (pid %d) has children %s, expected the one that "
          "writes to dlm-control" % (pid, kids))
    pid = kids[0]
    cl.node(3).run("kill -9 %d" % pid)
    t0 = cpu_ticks(cl, 3, pid)
    check(t0 is not None, "the leaving process ended before the shutdown waits")
    time.sleep(3)
    t1 = cpu_ticks(cl, 3, pid)
    check(t1 is not None, "the leaving process ended during the shutdown waits")
    used = t1[1] - t0[1]
    ctx.say("node 3: dlmt leave (pid %d, SIGKILL pending) used %d ticks of CPU in 3 s, "
            "state %s -> %s" % (pid, used, t0[0], t1[0]))
    check(used <= 30, "the shutdown waits spin with a signal pending: %d of 300 CPU ticks "
          "in 3 s (state %s)" % (used, t1[0]))
    deadline = time.monotonic() + 60 * cl.scale
    while cpu_ticks(cl, 3, pid) is not None:
        check(time.monotonic() < deadline, "the leave never returned")
        time.sleep(1)
    cl.hub.cmd("heal")
    # The survivors drop node 3 and carry on.
    cl.change_members(LS, [1, 2], [1, 2])
    ctx.numbers.update(cpu_ticks_in_3s=used)


# --- A.5 ---------------------------------------------------------------------

def sc_closedrx(cl, ctx):
    ko_of(cl, 1)
    cl.on([1, 2], "dlm-controller members %s '1 2' && dlmt join %s" % (LS, LS))
    cl.node(3).run("dlm-controller members solo '3' && dlmt join solo")
    anchor(cl, ctx)
    lsid = ls_id(cl, 1)
    warnings0 = cl.node(1).run("dmesg | grep -c 'WARNING:' || true").out.strip()
    # Node 1's receive worker queues node 3's STATUS but the processing
    # worker leaves it queued (as if it ran late on another CPU) ...
    arm(cl, 1, "dlm_rx_hold")
    rawmsg(cl, 3, 1, rcom_frame(3, lsid, DLM_RCOM_STATUS, 64))
    deadline = time.monotonic() + 10 * cl.scale
    while fault_left(cl, 1, "dlm_rx_hold") != 0:
        check(time.monotonic() < deadline, "node 3's STATUS never reached node 1")
        time.sleep(0.2)
    disarm(cl, 1, "dlm_rx_hold")
    # ... until after node 3's comm was removed: then node 2's next message
    # runs the worker.
    cl.node(1).run("dlm-controller rmcomm 3")
    ctx.say("node 1 removed node 3's comm with node 3's STATUS still queued")
    v = lvb_value(cl, 2)
    time.sleep(2)
    r = cl.node(1).run("dmesg | grep -E 'WARNING:|from non-member|lookup of node 3' "
                       "|| true")
    warnings1 = cl.node(1).run("dmesg | grep -c 'WARNING:' || true").out.strip()
    ctx.say("node 2 read the counter (%d); node 1 warnings %s -> %s" %
            (v, warnings0, warnings1))
    check(warnings1 == warnings0, "node 1 handed node 3's message to the lock manager "
          "after closing node 3: %s" % r.out.strip()[:400])


SCENARIOS = [
    # The fault points and fault injection exist on the debug flavour only:
    # make check runs these four there (--debug-set), with ours on every node.
    ("wedge", sc_wedge, 420, {"default": False, "debug": True}),
    ("seqgap", sc_seqgap, 420, {"default": False, "debug": True}),
    ("acceptclose", sc_acceptclose, 300, {"default": False, "debug": True}),
    # Runs anywhere: all-ours, and all-stock as the oracle (no mixed run:
    # the waits it judges are the leaving node's own).
    ("sigwait", sc_sigwait, 300, {"placement": {}}),
    ("closedrx", sc_closedrx, 300, {"default": False, "debug": True}),
]
