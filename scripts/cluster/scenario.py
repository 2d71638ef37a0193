# SPDX-License-Identifier: GPL-2.0
"""What every scenario of the dlm-rs cluster suite uses: the failure type and
check(), the scenario context, torture helpers with the stall watch, LVB reads,
counters read from the guests, the kmemleak judgement.  Scenarios live in
suite.py and in sc_<name>.py modules next to it (each with a SCENARIOS list);
see Documentation/testing.rst."""

import os
import re
import sys
import threading
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
    """What a scenario gets: the cluster, a progress printer, and a dict of
    numbers to report."""

    def __init__(self, cl, name, t0):
        self.cl, self.name, self.t0 = cl, name, t0
        self.numbers = {}

    def say(self, msg):
        line = "[%5.0fs] %s: %s" % (time.monotonic() - self.t0, self.name, msg)
        print(line, flush=True)
        self.cl.transcript.write("# %s\n" % line)


class StallWatch:
    """While torture runs, watch the consoles for dlmrs-torture progress
    lines; if no node reports a batch for `secs`, dump every node's DLM
    state once (Cluster.diagnose) and remember the stall for the report."""

    def __init__(self, cl, ctx, secs=25):
        self.cl, self.ctx, self.secs = cl, ctx, secs
        self.stop = threading.Event()
        self.stalls = []
        self.t = threading.Thread(target=self.run, daemon=True)

    def progress(self):
        return sum(n.console_text().count("dlmrs-torture") for n in self.cl.nodes.values())

    def run(self):
        last, since, dumped = self.progress(), time.monotonic(), False
        while not self.stop.wait(2):
            p = self.progress()
            if p != last:
                last, since, dumped = p, time.monotonic(), False
            elif not dumped and time.monotonic() - since > self.secs:
                self.ctx.say("no torture progress on any node for %ds: dumping DLM state"
                             % self.secs)
                self.stalls.append(self.cl.diagnose("stall after %d batches" % p))
                dumped = True

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join()


def watched_totals(cl, ctx, pend, what, during=None):
    """torture_totals under a StallWatch: a stall fails the scenario with
    the evidence (who holds unacknowledged messages, who waits for what),
    even if traffic resumed later.  during(), if given, runs first under
    the same watch (fault injection while the torture runs)."""
    watch = StallWatch(cl, ctx)
    with watch:
        try:
            if during:
                during()
            totals = torture_totals(pend)
        except Failed as e:
            if watch.stalls:
                raise Failed("lock traffic STALLED under %s: %s (dump: %s); then: %s" % (
                    what, summarize_diag(watch.stalls[0]), watch.stalls[0], e))
            raise
    check(not watch.stalls, "lock traffic STALLED under %s for more than %ds, then "
          "resumed: %s (dump: %s)" % (what, watch.secs, watch.stalls and
                                      summarize_diag(watch.stalls[0]), watch.stalls[:1]))
    return totals


WAIT_TYPES = {1: "REQUEST", 2: "CONVERT", 3: "UNLOCK", 4: "CANCEL", 12: "LOOKUP"}


def summarize_diag(path):
    """One line from a Cluster.diagnose dump: unacknowledged midcomms
    messages, lock waiters, and whether any DLM socket was open."""
    facts, node, sockets = [], None, 0
    section = None
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
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


def start_torture(cl, node, secs, tag, ls=LS, res=RES, batch=BATCH, extra=""):
    # dlmt's own wait limit: 60 s without a completion AST fails the batch.
    return cl.node(node).start("torture-loop %s %s %d %d %s --timeout 60 %s" %
                               (ls, res, secs, batch, tag, extra), timeout=secs + 240)


def torture_total(pending):
    r = pending.wait(check=False)
    kv = r.kv("torture-loop")
    if r.rc != 0 or kv.get("failed") != "0":
        raise Failed("node %d: torture failed (rc=%d): %s %s" %
                     (r.node, r.rc, r.out.strip()[-600:], r.err.strip()[-600:]))
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


def dmesg_count(cl, ids, pattern):
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



def take_leaks(cl, ids, tag):
    """kmemleak scan on ids: a description of every object reported (each
    one fails the scenario)."""
    leaks = []
    for i, objs in sorted(cl.kmemleak_take(ids, tag).items()):
        for obj in objs:
            leaks.append("node %d (%s): %s" % (i, tag, " | ".join(
                l.strip() for l in obj[:1] + [l for l in obj if "+0x" in l][:8])))
    return leaks

