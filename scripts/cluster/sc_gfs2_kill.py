# SPDX-License-Identifier: GPL-2.0
"""The gfs2-kill scenario of the dlm-rs cluster suite: gfs2 on 3 nodes, all
writing with fsync; one node is killed (SIGKILL of its QEMU) in the middle of
it, the survivors remove it from the lockspace as dlm_controld does after
fencing, one of them replays its journal, both keep writing; then every write
that was acknowledged (fsync returned) is read back from another node, and
fsck.gfs2 -n is clean.  See Documentation/testing.rst, "gfs2-kill"."""

import hashlib
import os
import re
import subprocess
import time

import cluster as C
from scenario import check


def broken(ctx, what):
    """--break gfs2-kill:WHAT[+WHAT...]: fail assertion WHAT on purpose."""
    b = getattr(ctx.args, "break_assert", None) or ""
    return b.startswith(ctx.name + ":") and what in b.split(":", 1)[1].split("+")


GFS_LS = "gfs0"
BLOCK = 4096           # each write of a node also fills one block of /mnt/shared.bin
ACKS_BEFORE_KILL = 10  # writes every node has acknowledged before the kill
ACKS_AFTER = 10        # writes each survivor acknowledges after the recovery


def content(node, k):
    """What node writes as its k-th file (and, padded with zeros to BLOCK,
    block k*3 + node-1 of /mnt/shared.bin)."""
    head = "node %d file %d\n" % (node, k)
    pad = "".join("pad line %d of node %d\n" % (i, node) for i in range(120))
    return (head + pad).encode()


def writer(n):
    """Shell loop of node n: write file k to /mnt/n<n>/f<k>, the same to
    /mnt/shared/c<n>-<k> (one directory for all nodes) and to block
    k*3+n-1 of /mnt/shared.bin, each with fsync (dd conv=fsync); only then
    record k as acknowledged: in /tmp/acks and on the console.  Ends when
    /tmp/stop exists; any failed write fails it."""
    return (
        "set -e; n=%(n)d; rm -f /tmp/stop /tmp/acks; touch /tmp/acks; i=0; "
        "while [ $i -lt 120 ]; do echo \"pad line $i of node $n\"; i=$((i+1)); done "
        "> /tmp/tmpl; mkdir -p /mnt/n$n; k=0; "
        "while [ ! -e /tmp/stop ]; do "
        "{ echo \"node $n file $k\"; cat /tmp/tmpl; } > /tmp/buf; "
        "dd if=/tmp/buf of=/mnt/n$n/f$k conv=fsync 2>/dev/null; "
        "dd if=/tmp/buf of=/mnt/shared/c$n-$k conv=fsync 2>/dev/null; "
        "dd if=/tmp/buf of=/mnt/shared.bin bs=%(b)d seek=$((k*3+n-1)) count=1 "
        "conv=notrunc,sync,fsync 2>/dev/null; "
        "echo $k >> /tmp/acks; echo \"dlmrs-gfs2w n=$n k=$k\" > /dev/kmsg; k=$((k+1)); done; "
        "echo \"gfs2w node=$n acked=$k\"" % {"n": n, "b": BLOCK})


def acked(cl, n):
    r = cl.node(n).run("cat /tmp/acks 2>/dev/null | wc -l")
    return int(r.out.strip() or 0)


def console_acks(cl, n):
    """The writes node n reported acknowledged on its console."""
    return [int(k) for k in re.findall(r"dlmrs-gfs2w n=%d k=(\d+)" % n,
                                       cl.node(n).console_text())]


def pick_victim(cl):
    """A node of the flavour (ours or stock) fewer nodes run, the last such;
    node 3 when all run the same.  So with our dlm.ko on node 1 only, our
    node dies and two stock nodes recover; with it on nodes 1 and 2, a
    stock node dies and ours recover."""
    ids = cl.alive()
    ours = [i for i in ids if cl.dlm[i - 1] != "stock"]
    stock = [i for i in ids if i not in ours]
    if not ours or not stock:
        return ids[-1]
    return (ours if len(ours) < len(stock) else stock)[-1]


def jid_of(cl, n):
    m = re.findall(r"fsid=%s:%s\.(\d+)" % (C.CLUSTER_NAME, GFS_LS), cl.node(n).console_text())
    return int(m[-1]) if m else None


def verify(cl, ctx, reader, node, ks):
    """Read node's writes ks on reader; returns the list of mismatches."""
    if not ks:
        return []
    ks = sorted(ks)
    files = " ".join("/mnt/n%d/f%d /mnt/shared/c%d-%d" % (node, k, node, k) for k in ks)
    blocks = " ".join(str(k * 3 + node - 1) for k in ks)
    r = cl.node(reader).run(
        "md5sum %s 2>&1; for b in %s; do echo \"$(dd if=/mnt/shared.bin bs=%d skip=$b "
        "count=1 2>/dev/null | md5sum | cut -d' ' -f1)  block$b\"; done" % (
            files, blocks, BLOCK), timeout=300, check=False)
    got = {}
    for line in r.out.splitlines():
        h, _, p = line.strip().partition("  ")
        got[p.strip()] = h
    bad = []
    for k in ks:
        data = content(node, k)
        md5 = hashlib.md5(data).hexdigest()
        blk = hashlib.md5(data + b"\0" * (BLOCK - len(data))).hexdigest()
        for p, want in (("/mnt/n%d/f%d" % (node, k), md5),
                        ("/mnt/shared/c%d-%d" % (node, k), md5),
                        ("block%d" % (k * 3 + node - 1), blk)):
            if got.get(p) != want:
                bad.append("%s (node %d's write %d) reads %s on node %d, expected %s" % (
                    p, node, k, got.get(p, "nothing"), reader, want))
    return bad


def sc_gfs2_kill(cl, ctx):
    ids = cl.alive()
    victim = pick_victim(cl)
    surv = [i for i in ids if i != victim]
    ctx.say("mounting gfs2 (lock_dlm, %s:%s, 3 journals) on 3 nodes; node %d (%s) will be "
            "killed" % (C.CLUSTER_NAME, GFS_LS, victim,
                        "stock" if cl.dlm[victim - 1] == "stock" else "ours"))
    cl.on(ids, "mount -t gfs2 -o localflocks /dev/vda /mnt && grep ' /mnt ' /proc/mounts",
          timeout=180)
    cl.node(ids[0]).run("mkdir -p /mnt/shared && sync", timeout=60)
    jid = jid_of(cl, victim)
    check(jid is not None, "no gfs2 journal id on node %d's console" % victim)
    pend = {i: cl.node(i).start(writer(i), timeout=600) for i in ids}

    # Kill once every node has acknowledged a few writes: the writes are
    # back to back, so the victim is in the middle of one.
    deadline = time.monotonic() + 120 * cl.scale
    while True:
        counts = {i: acked(cl, i) for i in ids}
        if min(counts.values()) >= ACKS_BEFORE_KILL:
            break
        check(time.monotonic() < deadline, "writers too slow: acknowledged %s" % counts)
        for i, p in pend.items():
            check(not p.done.is_set(), "node %d's writer ended early: %s" % (
                i, p.result and (p.result.out + p.result.err)[-500:]))
        time.sleep(1)
    before = {i: acked(cl, i) for i in surv}
    ctx.say("acknowledged writes %s; killing node %d (SIGKILL of its QEMU), journal %d" %
            (before, victim, jid))
    mark = {i: len(cl.node(i).console_text()) for i in surv}
    cl.node(victim).kill()
    t_kill = time.monotonic()
    vacks = console_acks(cl, victim)
    pend.pop(victim)

    # dlm_controld after fencing: stop, drop the node and its comm, start.
    cl.change_members(GFS_LS, surv, surv,
                      between=lambda: cl.on(surv, "dlm-controller rmcomm %d" % victim))
    ctx.say("survivors %s finished DLM recovery in %.0f s; waiting for gfs2 to replay "
            "journal %d" % (surv, time.monotonic() - t_kill, jid))
    # gfs2's recovery lines after the kill: every survivor sees the journal
    # to recover ("recover generation G jid J"), one replays it, and the
    # one that holds it last reports success.
    def since_kill(i):
        return cl.node(i).console_text()[mark[i]:]
    done = re.compile(r"fsid=%s:%s\.\d+: recover jid %d result success" % (
        C.CLUSTER_NAME, GFS_LS, jid))
    deadline = time.monotonic() + 120 * cl.scale
    while not any(done.search(since_kill(i)) for i in surv):
        check(time.monotonic() < deadline, "no survivor reported 'recover jid %d result "
              "success' within %ds" % (jid, 120 * cl.scale))
        time.sleep(1)
    errors = []
    rec = {}
    for i in surv:
        rec[i] = [l.split("] ", 1)[-1] for l in since_kill(i).splitlines()
                  if re.search(r"(recover generation \d+ jid %d|jid=%d: (Replaying|Replayed|"
                               r"Journal replayed|Done)|recover jid %d)" % (jid, jid, jid), l)]
        ctx.say("node %d: %s" % (i, " | ".join(rec[i])))
    # --break gfs2-kill:replay looks for another journal's replay.
    rj = jid + 1 if broken(ctx, "replay") else jid
    replayed = [i for i in surv if any("jid=%d: Replaying journal" % rj in l for l in rec[i])]
    if not replayed:
        errors.append("no survivor replayed journal %d (no 'jid=%d: Replaying journal' line "
                      "after the kill)" % (rj, rj))
    told = [i for i in surv if any(re.search(r"recover generation \d+ jid %d$" % rj, l)
                                   for l in rec[i])]
    if told != surv:
        errors.append("survivors %s were not told to recover journal %d ('recover "
                      "generation G jid %d')" % (sorted(set(surv) - set(told)), rj, rj))
    ctx.say("journal %d replayed by node %s %.0f s after the kill" % (
        jid, replayed, time.monotonic() - t_kill))

    # The survivors keep writing (--break gfs2-kill:write wants far more).
    mid = {i: acked(cl, i) for i in surv}
    more = 10 ** 6 if broken(ctx, "write") else ACKS_AFTER
    deadline = time.monotonic() + (5 if broken(ctx, "write") else 90 * cl.scale)
    while not all(acked(cl, i) >= mid[i] + more for i in surv):
        if time.monotonic() > deadline:
            errors.append("survivors stopped writing after the recovery: %s acknowledged, "
                          "%s at the recovery, %d more wanted" % (
                              {i: acked(cl, i) for i in surv}, mid, more))
            break
        time.sleep(1)
    cl.on(surv, "touch /tmp/stop")
    final = {}
    for i, p in pend.items():
        r = p.wait(check=False)
        check(r.rc == 0, "node %d's writer failed (rc %d): %s %s" % (
            i, r.rc, r.out[-500:], r.err[-500:]))
        final[i] = int(r.kv("gfs2w")["acked"])
    ctx.say("acknowledged: survivors %s (%s before the kill, %s at the recovery); node %d "
            "reported %d before it died" % (final, before, mid, victim, len(vacks)))
    if len(vacks) < ACKS_BEFORE_KILL:
        errors.append("node %d's console shows %d acknowledged writes, fewer than the %d "
                      "seen before the kill" % (victim, len(vacks), ACKS_BEFORE_KILL))

    if broken(ctx, "data"):
        # A lost write of each kind: a survivor's file, a directory entry of
        # the killed node, a block of the shared file.
        cl.node(surv[0]).run("echo lost > /mnt/n%d/f1; rm /mnt/shared/c%d-%d; "
                             "dd if=/dev/zero of=/mnt/shared.bin bs=%d seek=%d count=1 "
                             "conv=notrunc,fsync 2>/dev/null" % (
                                 surv[0], victim, vacks[0], BLOCK, 2 * 3 + surv[-1] - 1))
    # Every acknowledged write, read on another node.
    bad = []
    for i in surv:
        reader = [j for j in surv if j != i][0]
        bad += verify(cl, ctx, reader, i, range(final[i]))
    bad += verify(cl, ctx, surv[0], victim, vacks)
    if bad:
        errors.append("%d acknowledged write(s) missing or wrong: %s" % (
            len(bad), "; ".join(bad[:8])))
    ctx.say("%d acknowledged writes read back from another node (%d of the killed node), "
            "%d missing or wrong" % (sum(final.values()) + len(vacks), len(vacks), len(bad)))
    ctx.numbers.update(writes=sum(final.values()) + len(vacks), victim_writes=len(vacks),
                       victim=victim)

    # Unmount in dlm_controld's order, then the host's fsck.
    ino = int(cl.node(surv[0]).run("stat -c %%i /mnt/n%d/f0" % surv[0]).out)
    left = list(surv)
    for n in list(surv):
        left.remove(n)
        cl.leave(GFS_LS, n, left, "umount /mnt")
    if broken(ctx, "fsck"):
        # Zero the dinode of a file (gfs2 inode numbers are block numbers).
        with open(cl.disk, "r+b") as f:
            f.seek(ino * BLOCK)
            f.write(b"\0" * BLOCK)
    r = subprocess.run(["fsck.gfs2", "-n", cl.disk], capture_output=True, text=True,
                       timeout=300)
    with open(os.path.join(cl.dir, "fsck.log"), "w") as f:
        f.write(r.stdout + r.stderr)
    ctx.say("host fsck.gfs2 -n: rc=%d" % r.returncode)
    if r.returncode != 0:
        errors.append("fsck.gfs2 -n failed (rc %d): %s" % (
            r.returncode, (r.stdout + r.stderr)[-1500:]))
    check(not errors, "; ".join(errors))


SCENARIOS = [
    ("gfs2-kill", sc_gfs2_kill, 480, {"mkfs": True, "placement": {2: (1, 2)}}),
]
