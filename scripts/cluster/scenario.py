# SPDX-License-Identifier: GPL-2.0
"""What every scenario of the dlm-rs cluster suite uses: the failure type and
check(), the scenario context, torture helpers with the stall watch, LVB reads,
counters read from the guests, the kmemleak judgement.  Scenarios live in
suite.py and in sc_<name>.py modules next to it (each with a SCENARIOS list);
see Documentation/testing.rst."""

import os
import re
import struct
import sys
import threading
import traceback
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster as C  # noqa: E402

LS = "t"
RES = "counter"
BATCH = 20          # increments per `dlmt torture` batch in torture-loop


class Failed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failed(msg)


class Ctx:
    """What a scenario gets: the cluster, a progress printer, a dict of
    numbers to report, the faults it injected (for the console scan, see
    cluster.OUR_WARNINGS), the roles nodes played (role coverage of the mixed
    placements) and the stock stalls it proved and recovered."""

    def __init__(self, cl, name, t0, faults=()):
        self.cl, self.name, self.t0 = cl, name, t0
        self.numbers = {}
        self.faults = set(faults)
        self.roles = []             # (role, node, peers)
        self.stock_stalls = []      # one line of evidence per recovered stock stall

    def say(self, msg):
        line = "[%5.0fs] %s: %s" % (time.monotonic() - self.t0, self.name, msg)
        print(line, flush=True)
        self.cl.transcript.write("# %s\n" % line)

    def role(self, role, node, peers=None):
        """Record that node played role against peers (default: every other
        node of the cluster)."""
        if peers is None:
            peers = [i for i in self.cl.nodes if i != node]
        self.roles.append((role, node, tuple(peers)))


def is_stock(cl, node):
    return cl.dlm[node - 1] == "stock"


def is_mixed(cl):
    """Some nodes run our dlm.ko and some the stock C layer."""
    return len({d == "stock" for d in cl.dlm}) == 2


class StallWatch:
    """While torture runs, watch each torturing node's console for
    dlmrs-torture progress lines.  If a node that is still torturing reports
    no batch for `secs`, dump every node's DLM state once (Cluster.diagnose).

    Without a stock node, or without one of ours, that stall fails the
    scenario (in an all-stock cluster it may be the documented XFAIL).  In a
    mixed cluster a stall may be the stock layer's own (7.2 resends
    unacknowledged messages only after a socket error on the holder), and it
    is proven instead of excused: the stock nodes that hold unacknowledged
    messages (midcomms send_queue_count in the dump) get their port-21064
    connections to those peers killed (ss -K), first the connections between
    stock nodes only, then, if lock traffic has not resumed, those to our
    nodes; every stalled node must then make progress within 10 s, or the
    stall is a failure.  Recovered stalls are kept in ctx.stock_stalls and
    reported on a line of their own; the scenario goes on and its counter
    must be exact.  (A lock waiting for a grant the master sent is not in the
    *_waiters files, which list only requests waiting for a reply, so the
    holders are found from the unacknowledged messages, not from the waits.)
    """

    RECOVER_SECS = 10

    def __init__(self, cl, ctx, pend, secs=20):
        self.cl, self.ctx, self.pend = cl, ctx, pend
        self.secs = secs * cl.scale
        self.stop = threading.Event()
        self.stalls = []        # (dump path, what went wrong or None)
        self.prove = is_mixed(cl)
        self.error = None       # what killed the watch's thread, if anything
        self.t = threading.Thread(target=self.guarded_run, daemon=True)

    def progress(self):
        return {i: self.cl.node(i).console_text().count("dlmrs-torture ") for i in self.pend}

    def running(self):
        return [i for i, p in self.pend.items() if not p.done.is_set()]

    def guarded_run(self):
        """run(), remembering an exception: a watch that died watches
        nothing, and __exit__ fails the scenario with it."""
        try:
            self.run()
        except Exception:
            self.error = traceback.format_exc()

    def run(self):
        last = self.progress()
        since = {i: time.monotonic() for i in last}
        dumped = False
        while not self.stop.wait(2):
            now = self.progress()
            t = time.monotonic()
            for i in now:
                if now[i] != last[i]:
                    last[i], since[i] = now[i], t
            stalled = [i for i in self.running() if t - since[i] > self.secs]
            if not stalled:
                dumped = False
                continue
            if dumped:
                continue
            dumped = True
            self.ctx.say("no torture progress on node(s) %s for %ds: dumping DLM state" %
                         (stalled, self.secs))
            dump = self.cl.diagnose("stall of node(s) %s" % stalled)
            if not self.prove:
                self.stalls.append((dump, None))
                continue
            why = self.prove_stock_stall(dump, stalled, last)
            if why:
                self.stalls.append((dump, why))
            else:
                t = time.monotonic()
                last = self.progress()
                since = {i: t for i in last}
                dumped = False

    def sctp(self):
        return getattr(self.cl, "protocol", "tcp") == "sctp"

    def kill_dlm_connections(self, a, b):
        """ss -K on node a of its established DLM connections with node b:
        how many were killed.  Under SCTP, whose sockets ss -K cannot
        destroy (sctp_diag has no destroy), every hub ABORTs the
        associations between a and b instead: both ends get the error, as
        with ss -K's reset."""
        if self.sctp():
            return sum(int(h.cmd("reset %d %d" % (a, b)).split("killed=")[1])
                       for h in self.cl.hubs.values())
        r = self.cl.node(a).run(
            "ss -K -t -n state established '( dport = :21064 or sport = :21064 ) and "
            "dst %s' | grep -c 21064 || true" % C.node_addr(b), timeout=30)
        return int(r.out.strip() or 0)

    def provoke_and_kill(self, a, b):
        """Make stock node a open a connection to b and kill it.  A 7.2 node
        dials only when it has something to send; its debugfs rawmsg sends a
        frame that is not DLM_OPTS as it is, unsequenced, so a DLM_ACK of 0
        (which releases nothing on either layer while sequence numbers are
        below 2^31) makes it connect without touching any sequence."""
        frame = struct.pack("<IIIHBB", 0x00030002, 0, a, 16, 4, 0)
        esc = "".join("\\%03o" % x for x in frame)
        cl = self.cl
        cl.node(a).run("printf '%s' > /tmp/ack0 && dd if=/tmp/ack0 "
                       "of=/sys/kernel/debug/dlm/comms/%d/rawmsg bs=16 count=1 2>/dev/null"
                       % (esc, b), timeout=30)
        deadline = time.monotonic() + 5 * cl.scale
        if self.sctp():
            # No ss view of the association here: give it the time a
            # connect takes, then let the hubs abort it.
            time.sleep(2 * cl.scale)
            deadline = 0
        while time.monotonic() < deadline:
            r = cl.node(a).run("ss -t -n state established '( dport = :21064 or sport = "
                               ":21064 ) and dst %s' | grep -c 21064 || true" %
                               C.node_addr(b), timeout=30)
            if int(r.out.strip() or 0):
                break
            time.sleep(0.3)
        n = self.kill_dlm_connections(a, b)
        self.ctx.say("stock node %d had no live connection to node %d: a DLM_ACK of 0 "
                     "through its rawmsg made it dial; ss -K killed %d" % (a, b, n))
        return n

    def prove_stock_stall(self, dump, stalled, seen):
        """Kill the stock holders' connections and wait for the stalled
        nodes to make progress.  None if they did (recorded in
        ctx.stock_stalls), else why not."""
        cl = self.cl
        unacked, _ = diag_facts(dump)
        alive = cl.alive()
        held = sorted((a, b) for a, b in unacked
                      if is_stock(cl, a) and a in alive and b in alive)
        if not held:
            return ("no stock node holds unacknowledged messages: not the stock layer's "
                    "lost resend")
        if any(self.progress()[i] != seen[i] for i in stalled):
            return "the stalled node(s) resumed by themselves before any proof"
        phases = [("", [(a, b) for a, b in held if is_stock(cl, b)]),
                  (" (our node's end of the connection was reset too, and it retransmits "
                   "as well)", [(a, b) for a, b in held if not is_stock(cl, b)])]
        tried = []
        for note, pairs in phases:
            if not pairs:
                continue
            killed = {}
            for a, b in pairs:
                killed[(a, b)] = self.kill_dlm_connections(a, b)
                if not killed[(a, b)]:
                    # No live connection to kill (only closing ones, which
                    # are no longer the DLM's): make the holder dial the
                    # peer, then kill that one.
                    killed[(a, b)] = self.provoke_and_kill(a, b)
            t0 = time.monotonic()
            self.ctx.faults.add("reset")
            what = "; ".join("stock node %d held %d unacknowledged message(s) for node %d, "
                             "ss -K on node %d killed %d connection(s) to it" %
                             (a, unacked[(a, b)], b, a, killed[(a, b)]) for a, b in pairs)
            tried.append(what)
            self.ctx.say("mixed-cluster stall of node(s) %s: %s" % (stalled, what))
            deadline = t0 + self.RECOVER_SECS * cl.scale
            while time.monotonic() < deadline:
                now = self.progress()
                if all(now[i] != seen[i] or self.pend[i].done.is_set() for i in stalled):
                    line = "%s: node(s) %s resumed %.1fs after the kill: %s%s" % (
                        self.ctx.name, stalled, time.monotonic() - t0, what, note)
                    self.ctx.stock_stalls.append(line)
                    self.ctx.say("stock stall recovered: %s" % line)
                    return None
                time.sleep(0.5)
        return ("%s; lock traffic did not resume within %ds of that" %
                ("; then ".join(tried), self.RECOVER_SECS * cl.scale))

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join()
        if self.error and not exc[0]:
            raise Failed("the stall watch died, so stalls went unwatched: %s" %
                         self.error.strip().splitlines()[-1])


def watched_totals(cl, ctx, pend, what, during=None):
    """torture_totals under a StallWatch: a stall that is not a proven
    stock stall fails the scenario with the evidence (who holds
    unacknowledged messages, who waits for what), even if traffic resumed
    later.  during(), if given, runs first under the same watch (fault
    injection while the torture runs)."""
    watch = StallWatch(cl, ctx, pend)

    def evidence():
        dump, why = watch.stalls[0]
        return "%s (dump: %s)%s" % (summarize_diag(dump), dump, "; " + why if why else "")
    with watch:
        try:
            if during:
                during()
            totals = torture_totals(pend)
        except Failed as e:
            if watch.stalls:
                raise Failed("lock traffic STALLED under %s: %s; then: %s" % (
                    what, evidence(), e))
            raise
    check(not watch.stalls, "lock traffic STALLED under %s for more than %ds, then "
          "resumed: %s" % (what, watch.secs, watch.stalls and evidence()))
    return totals


WAIT_TYPES = {1: "REQUEST", 2: "CONVERT", 3: "UNLOCK", 4: "CANCEL", 12: "LOOKUP"}


def diag_facts(path):
    """From a Cluster.diagnose dump: ({(holder, peer): unacknowledged
    messages}, {(waiter, master)}) of the last dump in the file."""
    unacked, waits = {}, set()
    for line in summarize_diag(path).split("; "):
        m = re.match(r"node (\d+) has (\d+) unacknowledged message\(s\) for node (\d+)", line)
        if m:
            unacked[(int(m.group(1)), int(m.group(3)))] = int(m.group(2))
        m = re.match(r"node (\d+) lock \S+ waits for a \S+ reply from node (\d+)", line)
        if m:
            waits.add((int(m.group(1)), int(m.group(2))))
    return unacked, waits


def summarize_diag(path):
    """One line from the last dump of a Cluster.diagnose file: unacknowledged
    midcomms messages, lock waiters, and whether any DLM socket was open."""
    facts, node, sockets = [], None, 0
    section = None
    with open(path) as f:
        text = f.read()
    last = text.rfind("### ")
    for line in text[max(last, 0):].splitlines():
        m = re.match(r"== node (\d+)", line)
        if m:
            node, section = int(m.group(1)), None
            continue
        m = re.match(r"comm (\d+): state=(\S+) .*send_queue_count=(\d+)", line)
        if m and int(m.group(3)) > 0:
            facts.append("node %d has %s unacknowledged message(s) for node %s (midcomms "
                         "state %s)" % (node, m.group(3), m.group(1), m.group(2)))
            continue
        if line.startswith("-- "):
            section = line.rsplit("/", 1)[-1] if "/" in line else line[3:]
            continue
        if section and section.endswith("_waiters"):
            w = line.split()
            if len(w) >= 4:
                facts.append("node %d lock %s waits for a %s reply from node %s" % (
                    node, w[0], WAIT_TYPES.get(int(w[1]), "type %s" % w[1]), w[2]))
        elif section == "sockets" and re.search(r":21064\b", line):
            sockets += 1
        elif section and section.startswith("nft ruleset") and line.startswith("table"):
            facts.append("node %d has an nft %s installed" % (node, line.rstrip(" {")))
    facts.append("%d DLM TCP socket(s) open" % sockets)
    return "; ".join(facts)


# --- helpers shared by scenarios ---------------------------------------------

def lvb_value(cl, node, ls=LS, res=RES, extra=""):
    r = cl.node(node).run("dlmt lvb %s %s %s" % (ls, res, extra), timeout=60)
    return int(r.kv("lvb")["value"])


def remote_lvb(cl, ctx, prefer=None, ls=LS, res=RES, extra=""):
    """The counter as read (dlmt lvb, PR) by a live node that does not
    master res, so that the read crosses the network: prefer if it
    qualifies, else the first such node.  Returns (value, node)."""
    m = master_of(cl, ls, res)
    others = [i for i in cl.alive() if i != m]
    check(m is not None and others, "no live node other than the master (%s) of %s to read "
          "its LVB" % (m, res))
    node = prefer if prefer in others else others[0]
    v = lvb_value(cl, node, ls, res, extra)
    ctx.say("LVB of %s read on node %d (master: node %d): %d" % (res, node, m, v))
    return v, node


def start_torture(cl, node, secs, tag, ls=LS, res=RES, batch=BATCH, extra="", env=""):
    # dlmt's own wait limit: 60 s (x3 on a debug kernel) without a completion
    # AST fails the batch; a stall is caught (and in mixed clusters proven)
    # by the StallWatch well before that.
    return cl.node(node).start("%s torture-loop %s %s %d %d %s --timeout %d %s" %
                               (env, ls, res, secs, batch, tag, 60 * cl.scale, extra),
                               timeout=secs + 240)


def torture_result(pending):
    """The key=value pairs of a finished torture-loop (total, batches,
    invalid, secs, ...); a failed loop fails the scenario."""
    r = pending.wait(check=False)
    kv = r.kv("torture-loop")
    if r.rc != 0 or kv.get("failed") != "0":
        raise Failed("node %d: torture failed (rc=%d): %s %s" %
                     (r.node, r.rc, r.out.strip()[-600:], r.err.strip()[-600:]))
    return kv


def torture_total(pending):
    kv = torture_result(pending)
    return int(kv["total"]), int(kv["secs"])


def torture_totals(pend):
    """Wait for every torture-loop of {node: Pending}; {node: (total, secs)}.
    Reports every node's failure, not just the first."""
    out, errors = {}, []
    for i, p in pend.items():
        try:
            out[i] = torture_total(p)
        except (Failed, C.ClusterError) as e:
            errors.append(str(e))
    if errors:
        raise Failed("; ".join(errors))
    return out


def master_of(cl, ls=LS, res=RES):
    """Node that masters res, from the debugfs dump of the live nodes."""
    for i in cl.alive():
        r = cl.node(i).run("cat /sys/kernel/debug/dlm/%s 2>/dev/null || true" % ls)
        text = r.out
        m = re.search(r'Name \(len=\d+\) "%s"\n(Master Copy|Local Copy, Master is node (\d+))'
                      % re.escape(res), text)
        if m:
            return i if m.group(1) == "Master Copy" else int(m.group(2))
    return None


def tcp_opens(cl, ids):
    """Sum of TCP ActiveOpens + PassiveOpens (new connections) of nodes."""
    total = 0
    for i in ids:
        r = cl.node(i).run("cat /proc/net/snmp")
        lines = [l.split() for l in r.out.splitlines() if l.startswith("Tcp:")]
        hdr, val = lines[0], lines[1]
        d = dict(zip(hdr[1:], val[1:]))
        total += int(d["ActiveOpens"]) + int(d["PassiveOpens"])
    return total


def console_count(cl, ids, pattern):
    """Lines matching pattern (a Python regular expression) on the consoles
    of ids, from the host's complete console logs."""
    return cl.console_count(ids, pattern)


def dmesg_count(cl, ids, pattern):
    """As console_count, from the guests' dmesg, which can wrap: prefer
    console_count."""
    n = 0
    for i in ids:
        r = cl.node(i).run("dmesg | grep -c -E '%s' || true" % pattern)
        n += int(r.out.strip() or 0)
    return n


def anchor(cl, ctx, node=1, ls=LS, res=RES):
    """Hold an NL lock on the counter resource on node for the whole
    scenario.  The LVB only lives while some lock exists on the resource
    (tools/dlmt/README.rst), and the first node to lock a resource becomes
    its master, so this also makes node the master.  The victim of the
    leave and kill scenarios is another node: the LVB lives on the master.
    Returns a function that releases the hold."""
    release = cl.anchor(node, ls, res)
    v = lvb_value(cl, node)
    check(v == 0, "fresh resource %s has LVB value %d, expected 0" % (res, v))
    m = master_of(cl, ls, res)
    ctx.say("anchor NL lock on %s held by node %d; master is node %s" % (res, node, m))
    check(m == node, "the anchor's node %d does not master %s (node %s does)" % (node, res, m))
    ctx.role("master", m)

    return release


# --- scenarios -------------------------------------------------------------


def check_versions(cl, ids):
    """Every node speaks DLM 3.2 with every other node (midcomms debugfs
    "version" of each peer): no 3.1 fallback, in mixed clusters too."""
    for i in ids:
        out = cl.node(i).run("for c in /sys/kernel/debug/dlm/comms/*; do "
                             "echo \"peer ${c##*/} $(cat $c/version)\"; done", timeout=30).out
        seen = dict(re.findall(r"^peer (\d+) (\S+)$", out, re.M))
        for j in ids:
            if j == i:
                continue
            check(seen.get(str(j)) == "0x00030002",
                  "node %d speaks version %s with node %d, not 3.2 (0x00030002)" %
                  (i, seen.get(str(j)), j))



# The known leak of the stock fs/dlm/config.c (7.2): drop_node() records a
# dlm_member_gone for a removed spaces/<ls>/nodes/<id>, freed only by the
# next dlm_config_nodes(); release_space() never frees those left when the
# space goes (testing.rst, "Debug flavour").  Our dlm.ko does not link
# config.c.  Recognised by a symbolised drop_node frame of dlm.ko.
STOCK_CONFIG_C_LEAK = re.compile(r"^\s*drop_node\+0x[0-9a-f]+/0x[0-9a-f]+ \[dlm\]$")


def take_leaks(cl, ids, tag, ctx=None):
    """kmemleak scan on ids: a description of every object reported (each
    one fails the scenario).  With ctx, in a mixed cluster, the known leak
    of the stock config.c on a node running the stock dlm.ko is the stock
    layer's, not ours: those objects are counted in ctx.numbers
    ("stock_config_c_leaks") and said, not returned.  In an all-stock
    cluster they fail like any other object."""
    leaks, stock = [], {}
    for i, objs in sorted(cl.kmemleak_take(ids, tag).items()):
        for obj in objs:
            if (ctx is not None and is_mixed(cl) and is_stock(cl, i)
                    and any(STOCK_CONFIG_C_LEAK.match(l) for l in obj)):
                stock[i] = stock.get(i, 0) + 1
                continue
            leaks.append("node %d (%s): %s" % (i, tag, " | ".join(
                l.strip() for l in obj[:1] + [l for l in obj if "+0x" in l][:8])))
    if stock:
        ctx.numbers["stock_config_c_leaks"] = sum(stock.values())
        ctx.say("kmemleak: the stock config.c's known leak (dlm_member_gone from "
                "drop_node, never freed by release_space) on stock nodes: %s objects; "
                "not ours, not judged" % ", ".join(
                    "node %d %d" % kv for kv in sorted(stock.items())))
    return leaks

