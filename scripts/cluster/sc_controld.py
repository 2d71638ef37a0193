# SPDX-License-Identifier: GPL-2.0
"""The controld scenario: the cluster run by Debian's corosync and dlm_controld
instead of the harness's static controller (guest/cluster-stack; see
Documentation/testing.rst, "corosync and dlm_controld").

Three nodes form a corosync cluster (knet over UDP through the hub,
votequorum: 2 of 3 votes), dlm_controld fills configfs and answers the
kernel's lockspace uevents.  The nodes join lockspace t and run the exact
torture, mount gfs2 and write to it; node 3 leaves cleanly (umount, leave,
its corosync and dlm_controld stop) while nodes 1 and 2 torture, then comes
back; node 2 is killed while nodes 1 and 3 torture and node 2 writes to
gfs2.  Each time dlm_controld alone takes the members through recovery
(CPG and corosync membership changes); afterwards the counter is exact, and
gfs2 on the survivors has replayed node 2's journal, still serves every
file written before and takes new ones; the host's fsck.gfs2 -n passes.
"""

import hashlib
import os
import re
import subprocess
import time

import cluster as C
from scenario import (LS, anchor, check, check_versions, start_torture,
                      lvb_value, torture_total, torture_totals)

FS = "gfs0"
FILES = 12            # files per node and phase


def parse_views(out):
    """(quorate, [corosync members], [dlm_controld members]) from the output
    of `cluster-stack views` (or wait)."""
    m = re.search(r"^corosync quorate=(\d) members=(\S*)$", out, re.M)
    d = re.search(r"^dlm_controld members=(\S*)$", out, re.M)
    if not (m and d):
        return None
    ints = lambda s: [int(x) for x in s.split(",") if x]
    return m.group(1) == "1", ints(m.group(2)), ints(d.group(1))


def parse_lockspaces(out):
    """dlm_controld's lockspaces from `dlm_tool ls`: {name: (members, last
    change)}, the change as "member M joined J remove R failed F"."""
    ls, cur = {}, None
    for line in out.splitlines():
        m = re.match(r"^name\s+(\S+)$", line)
        if m:
            cur = m.group(1)
            ls[cur] = ([], None)
            continue
        m = re.match(r"^members\s+([\d ]*)$", line)
        if m and cur:
            ls[cur] = (sorted(int(x) for x in m.group(1).split()), ls[cur][1])
        m = re.match(r"^change\s+(member \d+ joined \d+ remove \d+ failed \d+)", line)
        if m and cur:
            ls[cur] = (ls[cur][0], m.group(1))
    return ls


def check_members(cl, ctx, ids, spaces, change=None):
    """On every node of ids at once: corosync quorate with exactly ids as
    members (waiting up to 60 s for it), dlm_controld the same, and every
    lockspace of `spaces` with exactly ids as dlm_controld's members
    (dlm_tool ls); if change is given, each lockspace's last change must
    match it (e.g. "joined 0 remove 1 failed 1": a node failed)."""
    want = ",".join(str(i) for i in ids)
    res = cl.on(ids, "cluster-stack wait %s %d; echo '-- dlm_tool ls'; dlm_tool ls" %
                (want, 60 * cl.scale), timeout=120 * cl.scale)
    for i in ids:
        out = res[i].out
        v = parse_views(out)
        check(v == (True, ids, ids), "node %d: corosync and dlm_controld views (quorate, "
              "corosync members, dlm_controld members) are %s, expected %s" %
              (i, v, (True, ids, ids)))
        ls = parse_lockspaces(out)
        for s in spaces:
            members, last = ls.get(s, (None, None))
            check(members == ids, "node %d: dlm_controld has lockspace %s with members %s, "
                  "expected %s (dlm_tool ls: %s)" % (i, s, members, ids, ls))
            check(change is None or (last and last.endswith(change)),
                  "node %d: dlm_controld's last change of lockspace %s is %r, expected "
                  "'... %s'" % (i, s, last, change))
    ctx.say("corosync and dlm_controld on %s: quorate, members %s; lockspaces %s with "
            "members %s%s" % (ids, ids, spaces, ids,
                              "; last change '%s'" % change if change else ""))


def check_no_static_controller(cl, ids):
    """dlm_controld, not the harness's dlm-controller, runs membership: the
    static controller never ran (no log, no process), dlm_controld is running,
    and the uevent handler is udev-dlm."""
    for i in ids:
        r = cl.node(i).run(
            "echo log=$([ -e /run/dlm/controller.log ] && echo yes || echo no) "
            "controller=$(ps -o args | grep -c '[d]lm-controller') "
            "udev=$(ps -o args | grep -c '[u]event /sbin/udev-dlm') "
            "controld=$(kill -0 $(cat /run/dlm/dlm_controld.pid) && echo yes || echo no) "
            "corosync=$(pidof corosync | wc -w)")
        kv = r.kv()
        check(kv == {"log": "no", "controller": "0", "udev": "1", "controld": "yes",
                     "corosync": "1"},
              "node %d: expected dlm_controld and corosync running and no static "
              "controller: %s" % (i, r.out.strip()))


def check_configfs(cl, ids):
    """dlm_controld filled configfs from corosync: cluster_name, a comm per
    cluster node with its address, local=1 on the node itself."""
    for i in ids:
        out = cl.node(i).run(
            "c=/sys/kernel/config/dlm/cluster; echo name=$(cat $c/cluster_name); "
            "for d in $c/comms/*; do echo comm=${d##*/} local=$(cat $d/local) "
            "addr=$(cat $d/addr_list | tr -d '\\n'); done").out
        name = re.search(r"^name=(\S*)$", out, re.M)
        # addr_list: "AF_INET 192.0.2.N" per address.
        comms = {int(n): (l, " ".join(re.findall(r"\d+\.\d+\.\d+\.\d+", a))) for n, l, a in
                 re.findall(r"^comm=(\d+) local=(\d) addr=(.*)$", out, re.M)}
        check(name and name.group(1) == C.CLUSTER_NAME,
              "node %d: configfs cluster_name %r, expected %r" %
              (i, name and name.group(1), C.CLUSTER_NAME))
        want = {n: ("1" if n == i else "0", "192.0.2.%d" % n) for n in ids}
        check(comms == want, "node %d: configfs comms %s, expected %s" % (i, comms, want))


def write_files(cl, ids, tag):
    """Every node of ids writes FILES files of its own into /mnt/<tag>-<node>/
    and syncs; returns {path: md5}."""
    def writer(n):
        return ("set -e; d=/mnt/%(t)s-%(n)d; mkdir -p $d; i=0; while [ $i -lt %(f)d ]; do "
                "k=0; while [ $k -lt 64 ]; do echo \"%(t)s node %(n)d file $i line $k\"; "
                "k=$((k+1)); done > $d/f$i; i=$((i+1)); done; sync"
                % {"t": tag, "n": n, "f": FILES})
    cl.on(ids, writer, timeout=240)
    exp = {}
    for n in ids:
        for i in range(FILES):
            data = "".join("%s node %d file %d line %d\n" % (tag, n, i, k) for k in range(64))
            exp["/mnt/%s-%d/f%d" % (tag, n, i)] = hashlib.md5(data.encode()).hexdigest()
    return exp


def verify_files(cl, readers, exp):
    """Every node of readers reads every file of exp and compares md5s."""
    paths = sorted(exp)
    for r in readers:
        out = cl.node(r).run("md5sum %s" % " ".join(paths), timeout=240).out
        got = {}
        for line in out.splitlines():
            h, _, p = line.strip().partition("  ")
            got[p.strip()] = h
        bad = [p for p in paths if got.get(p) != exp[p]]
        check(not bad, "node %d reads %d of %d gfs2 files with the wrong md5, e.g. %s: %s "
              "(expected %s)" % (r, len(bad), len(paths), bad[:1], bad and got.get(bad[0]),
                                 bad and exp[bad[0]]))


def gfs2_jid(cl, i):
    """The journal id node i mounted gfs0 with (its console: fsid=<table>.<jid>)."""
    m = re.search(r"gfs2: fsid=%s:%s\.(\d+): " % (C.CLUSTER_NAME, FS),
                  cl.node(i).console_text())
    check(m, "node %d: no gfs2 line with a journal id (fsid=%s:%s.<jid>) on its console" %
          (i, C.CLUSTER_NAME, FS))
    return int(m.group(1))


def mount(cl, ids):
    cl.on(ids, "mount -t gfs2 -o localflocks /dev/vda /mnt && grep -q ' /mnt gfs2 ' "
          "/proc/mounts", timeout=240)


def save_stack_logs(cl, ids, tag):
    """Copy each node's corosync and dlm_controld logs into the run dir."""
    for i in ids:
        try:
            r = cl.node(i).run("for f in /var/log/cluster/*.log; do echo \"=== $f\"; "
                               "cat $f; done; echo '=== cluster-stack status'; "
                               "cluster-stack status; dlm_tool dump", timeout=60, check=False)
        except C.ClusterError:
            continue
        with open(os.path.join(cl.dir, "stack-%s-%d.log" % (tag, i)), "w") as f:
            f.write(r.out + r.err)


def sc_controld(cl, ctx):
    ids = cl.alive()
    check_no_static_controller(cl, ids)
    check_configfs(cl, ids)
    try:
        run(cl, ctx, ids)
    finally:
        save_stack_logs(cl, cl.alive(), "end")


def run(cl, ctx, ids):
    # 1. Join through dlm_controld (dlmt join: the kernel's online uevent
    # goes to dlm_controld), torture exact on all three.
    cl.join(LS, ids)
    check_members(cl, ctx, ids, [LS])
    anchor(cl, ctx, 1)
    totals = torture_totals({i: start_torture(cl, i, 10, "a%d" % i) for i in ids})
    total = sum(t for t, _ in totals.values())
    v = lvb_value(cl, 2)
    ctx.say("torture on %s: %s, sum %d, LVB %d" % (ids, {i: t for i, (t, _) in totals.items()},
                                                    total, v))
    check(total > 0, "no increments")
    check(v == total, "LVB counter %d != sum of increments %d" % (v, total))
    check_versions(cl, ids)

    # 2. gfs2 on all three: its lockspace comes from dlm_controld too.
    ctx.say("mounting gfs2 (lock_dlm, %s:%s) on %s" % (C.CLUSTER_NAME, FS, ids))
    mount(cl, ids)
    check_members(cl, ctx, ids, [LS, FS])
    files = write_files(cl, ids, "a")
    verify_files(cl, [2], files)
    jid2 = gfs2_jid(cl, 2)
    ctx.say("%d files written and verified; node 2 mounted journal %d" % (len(files), jid2))

    # 3. Node 3 leaves cleanly while nodes 1 and 2 torture: umount, leave t,
    # stop dlm_controld and corosync.  dlm_controld on 1 and 2 takes both
    # lockspaces through the change; corosync keeps quorum with 2 of 3.
    pend = {i: start_torture(cl, i, 25 * cl.scale, "b%d" % i) for i in (1, 2)}
    time.sleep(3)
    before = {(i, s): cl.recover_count(i, s) for i in (1, 2) for s in (LS, FS)}
    ctx.say("node 3 leaves cleanly (umount, dlmt leave, cluster-stack stop) while nodes 1, "
            "2 torture")
    cl.node(3).run("umount /mnt && dlmt leave %s && cluster-stack stop" % LS, timeout=180)
    for s in (LS, FS):
        cl.wait_recovered(s, [1, 2], {i: before[(i, s)] for i in (1, 2)}, timeout=120)
    busy = [i for i in (1, 2) if not pend[i].done.is_set()]
    check(busy == [1, 2], "nodes 1,2 finished their torture before node 3's leave was "
          "through: the leave did not happen under load")
    check_members(cl, ctx, [1, 2], [LS, FS], "joined 0 remove 1 failed 0")
    t = {i: torture_total(pend[i])[0] for i in (1, 2)}
    total += sum(t.values())
    v = lvb_value(cl, 2)
    ctx.say("after node 3's leave: increments %s, LVB %d (expected %d)" % (t, v, total))
    check(v == total, "LVB counter %d != %d after node 3 left" % (v, total))

    # Node 3 comes back (quorum for the kill below needs 2 of 3 votes).
    cl.node(3).run("cluster-stack start", timeout=120)
    cl.wait_stack(ids, ids)
    cl.join(LS, [3])
    mount(cl, [3])
    check_members(cl, ctx, ids, [LS, FS], "joined 1 remove 0 failed 0")
    ctx.say("node 3 is back in corosync, %s and %s" % (LS, FS))

    # 4. Node 2 is killed while nodes 1 and 3 torture, node 2 holds locks in
    # t and writes to gfs2 without syncing.  corosync notices after its
    # token timeout; dlm_controld (fencing disabled) removes node 2 as
    # failed and recovers; gfs2 on a survivor replays node 2's journal.
    pend = {i: start_torture(cl, i, 20 * cl.scale, "c%d" % i) for i in (1, 3)}
    cl.node(2).run("dlmt hold %s --prefix h --count 32 --mode PR > /tmp/hold.out 2>&1 & "
                   "i=0; while ! grep -q ready=1 /tmp/hold.out; do i=$((i+1)); "
                   "[ $i -lt 600 ] || { cat /tmp/hold.out; exit 1; }; usleep 100000; done"
                   % LS, timeout=90)
    cl.node(2).start("mkdir -p /mnt/late; i=0; while :; do echo late $i > /mnt/late/f$i; "
                     "i=$((i+1)); done", timeout=600)
    time.sleep(5)
    before = {(i, s): cl.recover_count(i, s) for i in (1, 3) for s in (LS, FS)}
    cons0 = {i: len(cl.node(i).console_text()) for i in (1, 3)}
    ctx.say("killing node 2 (SIGKILL of its QEMU)")
    t_kill = time.monotonic()
    cl.node(2).kill()
    for s in (LS, FS):
        cl.wait_recovered(s, [1, 3], {i: before[(i, s)] for i in (1, 3)}, timeout=180)
    ctx.say("survivors 1, 3 recovered %s and %s %.0f s after the kill" %
            (LS, FS, time.monotonic() - t_kill))
    # dlm_controld removed node 2 as failed (not as a leave) from both.
    check_members(cl, ctx, [1, 3], [LS, FS], "joined 0 remove 1 failed 1")

    # gfs2 on a survivor replayed node 2's journal.
    deadline = time.monotonic() + 120 * cl.scale
    done = re.compile(r"fsid=%s:%s\.\d+: jid=%d: Done" % (C.CLUSTER_NAME, FS, jid2))
    result = re.compile(r"fsid=%s:%s\.\d+: recover jid %d result success" %
                        (C.CLUSTER_NAME, FS, jid2))
    while True:
        new = {i: cl.node(i).console_text()[cons0[i]:] for i in (1, 3)}
        by = [i for i in (1, 3) if done.search(new[i]) and result.search(new[i])]
        if by or time.monotonic() > deadline:
            break
        time.sleep(2)
    check(by, "no survivor logged gfs2 recovery of node 2's journal %d ('jid=%d: Done' and "
          "'recover jid %d result success') after the kill" % (jid2, jid2, jid2))
    m = re.search(r"jid=%d: Replayed (\d+) of (\d+) blocks" % jid2, new[by[0]])
    replayed = int(m.group(1)) if m else 0
    ctx.say("node %d recovered node 2's journal %d (%d blocks replayed)" %
            (by[0], jid2, replayed))

    t = {i: torture_total(pend[i])[0] for i in (1, 3)}
    total += sum(t.values())
    v = lvb_value(cl, 3)
    ctx.say("through the kill: increments %s, LVB %d (expected %d)" % (t, v, total))
    check(v == total, "LVB counter %d != %d through node 2's kill" % (v, total))

    # 5. Afterwards: torture exact on the survivors, gfs2 serves every file
    # written before (node 2's included) and takes new ones.
    totals = torture_totals({i: start_torture(cl, i, 6, "d%d" % i) for i in (1, 3)})
    total += sum(t for t, _ in totals.values())
    v = lvb_value(cl, 1)
    check(v == total, "LVB counter %d != %d after the recovery" % (v, total))
    files.update(write_files(cl, [1, 3], "d"))
    verify_files(cl, [1, 3], files)
    ctx.say("after the kill: torture exact (LVB %d), %d gfs2 files verified on nodes 1 "
            "and 3" % (v, len(files)))

    # Unmount and leave in turn; then the host's fsck.
    cl.leave(FS, 3, [1], "umount /mnt")
    cl.leave(FS, 1, [], "umount /mnt")
    r = subprocess.run(["fsck.gfs2", "-n", cl.disk], capture_output=True, text=True,
                       timeout=300)
    with open(os.path.join(cl.dir, "fsck.log"), "w") as f:
        f.write(r.stdout + r.stderr)
    ctx.say("host fsck.gfs2 -n: rc=%d" % r.returncode)
    check(r.returncode == 0, "fsck.gfs2 -n failed (rc %d): %s" %
          (r.returncode, (r.stdout + r.stderr)[-1500:]))
    ctx.numbers.update(increments=total, files=len(files), journal_recovered=jid2,
                       journal_blocks_replayed=replayed)


SCENARIOS = [
    ("controld", sc_controld, 420, {"stack": "controld", "mkfs": True, "placement": {2: (1, 3)}}),
]
