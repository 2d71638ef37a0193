# SPDX-License-Identifier: GPL-2.0
"""Host unit tests of the cluster harness's pure parts (no VMs):

    python3 -m unittest discover -s scripts/cluster -p 'test_*.py'
"""

import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster as C  # noqa: E402
import initramfs as I  # noqa: E402
import scenario as SC  # noqa: E402
import suite as S  # noqa: E402


class CpioTest(unittest.TestCase):
    def test_archive_lists_with_cpio(self):
        c = I.Cpio()
        c.chardev("dev/console", 5, 1)
        c.file("etc/motd", b"hello\n")
        c.symlink("bin/sh", "/bin/busybox")
        data = c.finish()
        self.assertEqual(len(data) % 4, 0)
        r = subprocess.run(["cpio", "-itv"], input=data, capture_output=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.decode()
        self.assertIn("dev/console", out)
        self.assertRegex(out, r"crw-------.* 5,\s+1 .*dev/console")
        self.assertRegex(out, r"bin/sh -> /bin/busybox")
        self.assertIn("etc/motd", out)

    def test_parent_dirs_once(self):
        c = I.Cpio()
        c.file("a/b/c", b"x")
        c.file("a/b/d", b"y")
        self.assertEqual(sorted(c.names), ["a", "a/b", "a/b/c", "a/b/d"])


    def test_tree_skips_the_parts_left_out(self):
        with tempfile.TemporaryDirectory() as d:
            for f in ("7.2/kernel/fs/gfs2/gfs2.ko", "7.2/kernel/fs/dlm/dlm.ko",
                      "7.2/kernel/net/sctp/sctp.ko", "7.2/modules.dep"):
                os.makedirs(os.path.dirname(os.path.join(d, f)), exist_ok=True)
                open(os.path.join(d, f), "w").close()
            c = I.Cpio()
            c.tree("lib/modules", d, {"7.2/kernel/fs/gfs2", "7.2/kernel/net/sctp"})
            self.assertIn("lib/modules/7.2/kernel/fs/dlm/dlm.ko", c.names)
            self.assertIn("lib/modules/7.2/modules.dep", c.names)
            self.assertFalse([n for n in c.names if "gfs2" in n or "sctp" in n], c.names)

    def test_scenarios_get_what_they_use(self):
        self.assertEqual(S.initrd_without({}), ("gfs2", "sctp", "stack"))
        self.assertEqual(S.initrd_without({"mkfs": True}), ("sctp", "stack"))
        self.assertEqual(S.initrd_without({"stack": "controld", "mkfs": True}), ("sctp",))
        for name, _, _, opts in S.SCENARIOS:
            if name in ("gfs2", "gfs2-kill", "controld"):
                self.assertNotIn("gfs2", S.initrd_without(opts), name)


class ConsoleScanTest(unittest.TestCase):
    def test_bad_lines(self):
        for line in ["WARNING: CPU: 0 PID: 1 at fs/dlm/lowcomms.c:432",
                     "BUG: KASAN: slab-use-after-free in dlm_receive_buffer",
                     "INFO: task mount:99 blocked for more than 60 seconds.",
                     "kmemleak: 3 new suspected memory leaks",
                     "WARNING: possible circular locking dependency detected",
                     "dlm-controller: GFS2 WITHDRAW /fs/gfs2/dlmrs:gfs0"]:
            self.assertTrue(C.BAD_CONSOLE.search(line), line)

    def test_our_warning_lines(self):
        dlm = ["ours", "stock", "ours"]
        for line, faults, want in [
                ("[ 7.1] dlm: send to node 2 refused: Fin", (), "message refused"),
                ("[ 7.1] dlm: send to node 2 refused: Fin", ("reset", "dead"), "message refused"),
                ("dlm: no memory for messages from node 3", (), "no memory"),
                ("dlm: no memory for messages from node 3", ("alloc",), None),
                ("dlm: node 2: unexpected state: StuckIn", (), "unexpected state"),
                ("dlm: ignore ack 70 from node 3: we only sent up to 12", (), "ack beyond sent"),
                ("dlm: ignore ack 70 from node 3: we only sent up to 12", ("reset",),
                 "ack beyond sent"),
                ("dlm: ignore ack 70 from node 3: we only sent up to 12", ("rmcomm",), None),
                ("dlm: ignore dlm msg seq 7 from node 3: left over from the connection its "
                 "FIN ended", (), None),
                ("dlm: reset node 3 because it started a new connection (state LAST_ACK, "
                 "1 unacked dropped)", (), None),
                ("dlm: message from node 3 after its FIN", (), "message after FIN"),
                ("dlm: received invalid header from node 2: h_length 8 is less than the",
                 (), "invalid header"),
                ("dlm: received invalid header from node 2: h_length 8 is less than the",
                 ("badheader",), None),
                ("dlm: node 1: socket error sending to node 2, sk_err=104", (), "socket error"),
                ("dlm: node 1: socket error sending to node 2, sk_err=104", ("reset",), None),
                ("dlm: node 1: Frobnicated { seq: 3 }", (), "other event"),
                ("dlm: connect from non cluster IPv4 node 192.0.2.3", (),
                 "non-cluster connect"),
                ("dlm: connect from non cluster IPv4 node 192.0.2.3", ("reset",),
                 "non-cluster connect"),
                ("dlm: connect from non cluster IPv4 node 192.0.2.3", ("rmcomm",), None),
                ("[ 1.2] dlm: critical error accepting connection: -12", ("alloc",), None),
                ("[ 1.2] dlm: critical error accepting connection: -12", ("reset",),
                 "accept no memory"),
                ("[ 1.2] dlm: critical error accepting connection: -22", ("alloc",),
                 "accept error"),
                ("[ 1.2] dlm: could not bind for connect: -98", ("alloc",), None),
                ("[ 1.2] dlm: could not bind for connect: -98", (), "bind no memory"),
                ("[ 1.2] dlm: could not bind for connect: -13", ("alloc",), "setup error"),
                # A gap: injected, or the lost resend of a stock peer after a reset;
                # never from a node of ours otherwise.
                ("dlm: node 2 skipped a message: resetting its connection so that it "
                 "retransmits", (), "gap reset"),
                ("dlm: node 2 skipped a message: resetting its connection so that it "
                 "retransmits", ("reset",), None),
                ("dlm: node 3 skipped a message: resetting its connection so that it "
                 "retransmits", ("reset",), "gap reset"),
                ("dlm: node 3 skipped a message: resetting its connection so that it "
                 "retransmits", ("gap",), None),
                # A refused connect (the peer does not listen yet) and the
                # error report after it; any other error number fails.
                ("[ 4.48] dlm: node 3: socket error sending to node 2, sk_err=111", (), None),
                ("[ 4.49] dlm: node 3: socket error sending to node 1, sk_err=0", (), None),
                ("[ 4.49] dlm: connect to node 1 try 1 error -111", (), None),
                ("[ 4.49] dlm: connect to node 1 try 1 error -110", (), "connect error"),
                ("[ 4.49] dlm: node 3: socket error sending to node 1, sk_err=1110", (),
                 "socket error"),
                # Routine lines.
                ("dlm: got connection from 2", (), None),
                ("dlm: connecting to 3", (), None),
                ("dlm: retransmit dlm msg, seq 12, nodeid 3", (), None),
                ("dlm: ignore dlm msg because seq mismatch, seq: 5, expected: 9, nodeid: 2",
                 (), None),
                ("dlm: version 0x00030002 for node 2 detected", (), None),
                ("dlm: closing connection to node 3", (), None)]:
            self.assertEqual(C.our_warning(line, faults, dlm), want, (line, faults))

    def test_our_warnings_documented(self):
        rst = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                           "Documentation", "testing.rst")
        with open(rst) as f:
            text = f.read()
        for name, _, _, _ in C.OUR_WARNINGS:
            self.assertTrue("``%s``" % name in text, "testing.rst does not list %r" % name)

    def test_benign_boot_lines(self):
        for line in ["kmemleak: Kernel memory leak detector initialized",
                     "kasan: KernelAddressSanitizer initialized (generic)",
                     " MAX_LOCKDEP_SUBCLASSES:  8",
                     "dlm: node 1: socket error sending to node 2, sk_err=104/0",
                     "dlm: got connection from 2"]:
            self.assertFalse(C.BAD_CONSOLE.search(line), line)


class ParseTest(unittest.TestCase):
    def test_parse_dlm(self):
        self.assertEqual(C.parse_dlm(None, 3), ["stock"] * 3)
        self.assertEqual(C.parse_dlm("stock", 2), ["stock"] * 2)
        with self.assertRaises(C.ClusterError):
            C.parse_dlm("stock,stock", 3)
        with self.assertRaises(C.ClusterError):
            C.parse_dlm("stock,stock,/nonexistent/dlm.ko", 3)
        with tempfile.NamedTemporaryFile(suffix=".ko") as f:
            self.assertEqual(C.parse_dlm("stock,stock," + f.name, 3)[2], f.name)

    def test_result_kv(self):
        r = C.Result(1, "x", 0, "noise\ntorture ls=t ok=20 first=0\n", "", 0.1)
        self.assertEqual(r.kv("torture")["ok"], "20")
        with self.assertRaises(C.ClusterError):
            r.kv("bench")

    def test_summarize_diag(self):
        dump = "\n".join([
            "### stall",
            "== node 1 uptime 34.31",
            "comm 1: state=CLOSED flags=0 send_queue_count=0 version=0x00000000",
            "comm 3: state=ESTABLISHED flags=0 send_queue_count=7 version=0x00030002",
            "-- /sys/kernel/debug/dlm/t_waiters",
            "-- sockets",
            "State Recv-Q Send-Q Local Address:Port Peer Address:PortProcess",
            "== node 3 uptime 54.22",
            "-- /sys/kernel/debug/dlm/t_waiters",
            "2 1 1 counter",
            "-- sockets",
            "ESTAB 0 0 192.0.2.3:21064 192.0.2.1:40000",
        ])
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
            f.write(dump + "\n")
            f.flush()
            s = SC.summarize_diag(f.name)
        self.assertIn("node 1 has 7 unacknowledged message(s) for node 3", s)
        self.assertIn("node 3 lock 2 waits for a REQUEST reply from node 1", s)
        self.assertIn("1 DLM TCP socket(s) open", s)

    def test_badbytes_xfail_only_when_all_stock(self):
        err = ("node 2 logged 0 lines matching /received invalid length header: 5000 "
               "from node 1/ for a bad length 5000 from node 1, expected exactly 1")
        self.assertTrue(S.expected_failure("badbytes", err, ["stock"] * 3))
        self.assertFalse(S.expected_failure("badbytes", err, ["ours", "stock", "stock"]))
        self.assertFalse(S.expected_failure("badbytes", err, ["ours"] * 3))
        ours = err.replace("received invalid length header: 5000 from node 1",
                           "received invalid header from node 1: h_length 5000 exceeds")
        self.assertFalse(S.expected_failure("badbytes", ours, ["stock"] * 3))
        self.assertFalse(S.expected_failure("badbytes", "LVB counter 5 != 6", ["stock"] * 3))
        self.assertFalse(S.expected_failure("join", err, ["stock"] * 3))
        self.assertFalse(S.expected_failure("badbytes", None, ["stock"] * 3))

    def test_hostile_xfail_only_when_all_stock(self):
        err = ("lock traffic STALLED under hostile frames: node 1 has 22 unacknowledged "
               "message(s) for node 3")
        flood = ("node 1 logged more than 50 lines for 100264 frames in 394 connections "
                 "(at most 10 per 5 s over 17 s) from one call site")
        for e in (err, flood):
            self.assertTrue(S.expected_failure("hostile", e, ["stock"] * 3))
            self.assertFalse(S.expected_failure("hostile", e, ["ours", "stock", "stock"]))
            self.assertFalse(S.expected_failure("hostile", e, ["ours"] * 3))
        self.assertFalse(S.expected_failure("hostile", "LVB counter 5 != 6", ["stock"] * 3))

    def test_xfail_only_for_stalls_of_all_stock(self):
        stall = "lock traffic STALLED under hub resets: node 1 has"
        self.assertTrue(S.expected_failure("resets", stall, ["stock"] * 3))
        self.assertTrue(S.expected_failure(
            "resets", "lock traffic STALLED under in-guest (ss -K, nft) resets for more "
            "than 25s", ["stock"] * 3))
        self.assertFalse(S.expected_failure("resets", "LVB counter 5 != sum of increments 6",
                                            ["stock"] * 3))
        self.assertFalse(S.expected_failure("resets", "console reports: node 2: WARNING:",
                                            ["stock"] * 3))
        # A cluster with a node of ours never gets an XFAIL, whatever the dump says.
        for dlm in (["ours", "stock", "stock"], ["ours", "ours", "stock"], ["ours"] * 3):
            self.assertFalse(S.expected_failure("resets", stall, dlm))

    def test_diag_facts_last_dump(self):
        dump = "\n".join([
            "### stall of node(s) [3] (10:00:00)",
            "== node 1 uptime 1",
            "comm 3: state=ESTABLISHED flags=0 send_queue_count=9 version=0x00030002",
            "### stall of node(s) [2] (10:01:00)",
            "== node 1 uptime 2",
            "comm 2: state=ESTABLISHED flags=0 send_queue_count=4 version=0x00030002",
            "== node 2 uptime 2",
            "-- /sys/kernel/debug/dlm/t_waiters",
            "7 1 1 counter",
        ])
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
            f.write(dump + "\n")
            f.flush()
            unacked, waits = SC.diag_facts(f.name)
        self.assertEqual(unacked, {(1, 2): 4})
        self.assertEqual(waits, {(2, 1)})

    def test_placements_cover_every_role(self):
        # The roles the scenarios record on fixed node numbers, played on the
        # placements of SCENARIOS: every required role both ways.
        fixed = {"join": [("master", 1, None)],
                 "resets": [("master", 1, None)],
                 "leave-rejoin": [("master", 1, None), ("leaves", 3, None),
                                  ("rejoins", 3, None),
                                  ("first to leave (starts the FIN close)", 3, None)],
                 "kill": [("master", 1, None), ("killed", 3, None)],
                 "gfs2": [("first to leave (starts the FIN close)", 3, None)]}
        results = []
        for name, _, _, opts in S.SCENARIOS:
            if not opts.get("default", True):
                continue
            for k in sorted(opts.get("placement", S.DEFAULT_PLACEMENT)):
                dlm = S.placement_dlm(opts, k, "ours.ko")
                roles = [(r, n, tuple(j for j in (1, 2, 3) if j != n))
                         for r, n, _ in fixed.get(name, [])]
                if name == "badbytes":
                    cl = type("Cl", (), {"dlm": dlm})()
                    for snd, rcv, _ in S.badbytes_plan(cl, [1, 2, 3]):
                        roles += [("sends bad bytes", snd, (rcv,)),
                                  ("receives bad bytes", rcv, (snd,))]
                results.append(("%s[%d]" % (name, k), dlm, "PASS", roles))
        lines, missing = S.role_coverage(results)
        self.assertEqual(missing, [], "\n".join(lines))
        # A failed run covers nothing.
        failed = [(l, d, "FAIL", r) for l, d, _, r in results]
        _, missing = S.role_coverage(failed)
        self.assertEqual(len(missing), 2 * len(S.REQUIRED_ROLES))

    def test_badbytes_plan(self):
        mk = lambda dlm: type("Cl", (), {"dlm": dlm})()
        # All stock: node 2 receives every frame.
        plan = S.badbytes_plan(mk(["stock"] * 3), [1, 2, 3])
        self.assertEqual({r for _, r, _ in plan}, {2})
        self.assertEqual(len(plan), len(S.BAD_FRAMES))
        # Mixed: ours receives every frame; a stock node only the ones 7.2
        # survives, and only from ours.
        plan = S.badbytes_plan(mk(["ours", "stock", "stock"]), [1, 2, 3])
        to_stock = [(s, f[0]) for s, r, f in plan if r != 1]
        self.assertEqual(sorted(f for _, f in to_stock), sorted(S.BAD_FRAMES_FOR_STOCK))
        self.assertTrue(all(s == 1 for s, _ in to_stock))
        self.assertEqual(len([1 for _, r, _ in plan if r == 1]), len(S.BAD_FRAMES))

    def test_stall_watch_death_fails(self):
        """A StallWatch whose thread dies (sc_partition once passed its
        timeout where the torture processes belong) fails the scenario
        instead of leaving the torture unwatched."""
        class Node:
            def console_text(self):
                return "dlmrs-torture x\n"

        class Cluster:
            scale = 1
            dlm = ["/x/dlm.ko"] * 3

            def node(self, i):
                return Node()
        ctx = SC.Ctx(Cluster(), "t", 0)
        ctx.say = lambda m: None
        with self.assertRaisesRegex(SC.Failed, "stall watch died.*TypeError"):
            with SC.StallWatch(Cluster(), ctx, 31):
                time.sleep(0.2)
        done = type("P", (), {"done": threading.Event()})
        with SC.StallWatch(Cluster(), ctx, {1: done(), 2: done()}):
            time.sleep(0.2)

    def test_stock_stall_proof(self):
        """StallWatch.prove_stock_stall on a fake cluster: which connections
        it kills, in which order, and when a stall counts as recovered."""
        class Node:
            def __init__(self, cl, i):
                self.cl, self.i, self.batches = cl, i, 0

            def console_text(self):
                return "dlmrs-torture x\n" * self.batches

            def run(self, script, timeout=60):
                if "rawmsg" in script:
                    # The provoked dial: a live connection to the comm's node.
                    peer = int(script.split("comms/")[1].split("/")[0])
                    self.cl.live.add((self.i, "192.0.2.%d" % peer))
                    self.cl.kills.append((self.i, "rawmsg %d" % peer))
                    return C.Result(self.i, script, 0, "", "", 0)
                dst = script.split("dst ")[1].split("'")[0]
                live = (self.i, dst) in self.cl.live
                if not script.startswith("ss -K"):
                    return C.Result(self.i, script, 0, "%d\n" % live, "", 0)
                self.cl.kills.append((self.i, dst))
                if live and (self.i, dst) in self.cl.cures:
                    for n in self.cl.nodes.values():
                        n.batches += 1
                return C.Result(self.i, script, 0, "%d\n" % live, "", 0)

        class Cluster:
            scale = 1

            def __init__(self, dlm, cures, live):
                self.dlm, self.cures, self.kills, self.live = dlm, cures, [], set(live)
                self.nodes = {i: Node(self, i) for i in (1, 2, 3)}
                self.transcript = type("T", (), {"write": lambda self, t: None})()

            def node(self, i):
                return self.nodes[i]

            def alive(self):
                return [1, 2, 3]

        def dump(holds):
            lines = []
            for a, b, n in holds:
                lines += ["== node %d" % a, "comm %d: state=ESTABLISHED flags=0 "
                          "send_queue_count=%d version=0x00030002" % (b, n)]
            return "\n".join(lines) + "\n"

        everyone = {(a, "192.0.2.%d" % b) for a in (1, 2, 3) for b in (1, 2, 3) if a != b}

        def prove(dlm, holds, cures, live=everyone):
            cl = Cluster(dlm, cures, live)
            ctx = SC.Ctx(cl, "t", 0)
            ctx.say = lambda m: None
            done = type("P", (), {"done": threading.Event()})
            w = SC.StallWatch(cl, ctx, {1: done(), 2: done(), 3: done()})
            w.RECOVER_SECS = 0.6
            with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
                f.write(dump(holds))
                f.flush()
                why = w.prove_stock_stall(f.name, [1, 2, 3], w.progress())
            return why, cl.kills, ctx
        ours = "/x/dlm.ko"
        # Stock 1 holds messages for stock 3 and for ours 2: the stock pair
        # first, which cures it; ours is not touched.
        why, kills, ctx = prove(["stock", ours, "stock"], [(1, 3, 12), (1, 2, 4)],
                                {(1, "192.0.2.3")})
        self.assertIsNone(why)
        self.assertEqual(kills, [(1, "192.0.2.3")])
        self.assertEqual(len(ctx.stock_stalls), 1)
        self.assertNotIn("reset too", ctx.stock_stalls[0])
        self.assertIn("reset", ctx.faults)
        # Only the connection to ours cures it: recovered, and said so.
        why, kills, ctx = prove(["stock", ours, "stock"], [(1, 3, 12), (1, 2, 4)],
                                {(1, "192.0.2.2")})
        self.assertIsNone(why)
        self.assertEqual(kills, [(1, "192.0.2.3"), (1, "192.0.2.2")])
        self.assertIn("reset too", ctx.stock_stalls[0])
        # Nothing cures it: a failure, with both steps in the evidence.
        why, kills, ctx = prove(["stock", ours, "stock"], [(1, 3, 12), (1, 2, 4)], set())
        self.assertIn("did not resume", why)
        self.assertEqual(len(kills), 2)
        self.assertEqual(ctx.stock_stalls, [])
        # No live connection to kill (only closing ones): the holder is made
        # to dial (rawmsg) and that connection is killed, which cures it.
        why, kills, ctx = prove(["stock", ours, "stock"], [(1, 2, 1)], {(1, "192.0.2.2")},
                                live=set())
        self.assertIsNone(why)
        self.assertEqual(kills, [(1, "192.0.2.2"), (1, "rawmsg 2"), (1, "192.0.2.2")])
        # Only ours holds messages: no stock holder, nothing killed, a failure.
        why, kills, _ = prove(["stock", ours, "stock"], [(2, 1, 7)], {(2, "192.0.2.1")})
        self.assertIn("no stock node holds", why)
        self.assertEqual(kills, [])

    def test_region_content(self):
        self.assertEqual(len(S.region_content(2)), S.GFS_REGION)
        self.assertTrue(S.region_content(2).startswith(b"node 2 region node 2 region "))


class KmemleakTest(unittest.TestCase):
    REPORT = "\n".join([
        "unreferenced object 0xffff888006a1c2e0 (size 32):",
        '  comm "dlm-controller", pid 301, jiffies 4294905541',
        "  hex dump (first 32 bytes):",
        "    03 00 00 00 00 00 00 00 00 01 00 00 00 00 ad de  ................",
        "  backtrace (crc 5a1d3f2c):",
        "    __kmalloc_cache_noprof+0x2f1/0x4a0",
        "    drop_node+0x4c/0x1d0 [dlm]",
        "    configfs_rmdir+0x3b5/0x620",
        "unreferenced object 0xffff888006a1c300 (size 64):",
        '  comm "kworker/u4:1", pid 40, jiffies 4294905600',
        "  backtrace (crc 0):",
        "    __kmalloc_noprof+0x1a0/0x3c0",
        "    0xffffffffc0123456",
        "",
    ])

    def test_parse(self):
        objs = C.parse_kmemleak(self.REPORT)
        self.assertEqual(len(objs), 2)
        self.assertTrue(objs[0][0].startswith("unreferenced object 0xffff888006a1c2e0"))
        self.assertTrue(objs[1][0].startswith("unreferenced object 0xffff888006a1c300"))
        self.assertIn("    drop_node+0x4c/0x1d0 [dlm]", objs[0])
        self.assertEqual(C.parse_kmemleak(""), [])


    def judge(self, dlm):
        objs = C.parse_kmemleak(self.REPORT)

        class Cl:
            def kmemleak_take(self, ids, tag):
                return {i: list(objs) for i in ids}
        cl = Cl()
        cl.dlm = dlm
        ctx = type("Ctx", (), {})()
        ctx.numbers, ctx.said = {}, []
        ctx.say = ctx.said.append
        return SC.take_leaks(cl, [1, 2, 3], "end", ctx), ctx

    def test_stock_config_c_leak_on_a_stock_node_of_a_mixed_cluster(self):
        leaks, ctx = self.judge(["/x/dlm.ko", "/x/dlm.ko", "stock"])
        # Both objects on each of our nodes fail; on the stock node only
        # the drop_node one is the stock layer's, the other still fails.
        self.assertEqual([l.split()[1] for l in leaks], ["1", "1", "2", "2", "3"])
        self.assertIn("0xffff888006a1c300", leaks[-1])
        self.assertEqual(ctx.numbers, {"stock_config_c_leaks": 1})
        self.assertIn("node 3 1", ctx.said[0])

    def test_all_stock_fails_on_its_own_leak(self):
        leaks, ctx = self.judge(["stock"] * 3)
        self.assertEqual(len(leaks), 6)
        self.assertEqual(ctx.numbers, {})


class GuestScriptsTest(unittest.TestCase):
    GUEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guest")

    def test_sh_syntax(self):
        bb = I.busybox_path()
        for name in ("init", "agent", "dlm-controller", "dlm-module", "torture-loop"):
            r = subprocess.run([bb, "sh", "-n", os.path.join(self.GUEST, name)],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, "%s: %s" % (name, r.stderr))

    def test_lockspace_id_matches_dlm_controld(self):
        # CRC-32 of "dlm:ls:gfs0\0", the value dlm_controld writes.
        bb = I.busybox_path()
        script = os.path.join(self.GUEST, "dlm-controller")
        with open(script) as f:
            text = f.read()
        fn = text[text.index("ls_id() {"):]
        fn = fn[:fn.index("\n}\n") + 3]
        r = subprocess.run([bb, "sh", "-c", fn.replace("crc32", bb + " crc32") + "ls_id gfs0"],
                           capture_output=True, text=True)
        self.assertEqual(r.stdout.strip(), str(0xd6c2e89a))

    def test_write_addr_bytes(self):
        bb = I.busybox_path()
        script = os.path.join(self.GUEST, "dlm-controller")
        with open(script) as f:
            text = f.read()
        fn = text[text.index("write_addr() {"):]
        fn = fn[:fn.index("\n}\n") + 3]
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "comms", "2"))
            open(os.path.join(d, "comms", "2", "addr"), "w").close()
            r = subprocess.run([bb, "sh", "-c", "CFG=%s; %s write_addr 2 192.0.2.2" % (d, fn)],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(os.path.join(d, "comms", "2", "addr"), "rb") as f:
                data = f.read()
        self.assertEqual(len(data), 128)
        self.assertEqual(data[:8], bytes([2, 0, 0, 0, 192, 0, 2, 2]))
        self.assertEqual(data[8:], bytes(120))


if __name__ == "__main__":
    unittest.main()
