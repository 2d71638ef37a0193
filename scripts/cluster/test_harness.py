# SPDX-License-Identifier: GPL-2.0
"""Host unit tests of the cluster harness's pure parts (no VMs):

    python3 -m unittest discover -s scripts/cluster -p 'test_*.py'
"""

import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster as C  # noqa: E402
import initramfs as I  # noqa: E402
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


class ConsoleScanTest(unittest.TestCase):
    def test_bad_lines(self):
        for line in ["WARNING: CPU: 0 PID: 1 at fs/dlm/lowcomms.c:432",
                     "BUG: KASAN: slab-use-after-free in dlm_receive_buffer",
                     "INFO: task mount:99 blocked for more than 60 seconds.",
                     "kmemleak: 3 new suspected memory leaks",
                     "WARNING: possible circular locking dependency detected",
                     "dlm-controller: GFS2 WITHDRAW /fs/gfs2/dlmrs:gfs0"]:
            self.assertTrue(C.BAD_CONSOLE.search(line), line)

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
            s = S.summarize_diag(f.name)
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

    def test_xfail_only_for_stalls(self):
        rx = S.XFAIL_STOCK["resets"][0]
        import re
        self.assertTrue(re.search(rx, "lock traffic STALLED under hub resets: node 1 has"))
        self.assertTrue(re.search(rx, "lock traffic STALLED under in-guest (ss -K, nft) "
                                      "resets for more than 25s"))
        self.assertFalse(re.search(rx, "LVB counter 5 != sum of increments 6"))
        self.assertFalse(re.search(rx, "console reports: node 2: WARNING:"))

    def test_mixed_stall_blames_the_holder(self):
        def dump(holder, waiter):
            return "\n".join([
                "== node %d" % holder,
                "comm %d: state=ESTABLISHED flags=0 send_queue_count=7 version=0x00030002"
                % waiter,
                "== node %d" % waiter,
                "-- /sys/kernel/debug/dlm/t_waiters",
                "2 1 %d counter" % holder,
            ])
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "diag.txt")

            def verdict(holder, waiter, dlm):
                with open(path, "w") as f:
                    f.write(dump(holder, waiter) + "\n")
                err = "lock traffic STALLED under hub resets: x (dump: %s); then: y" % path
                return S.stall_of_stock_node(err, dlm)
            # A stock node holds the reply a node waits for: the stock layer's stall.
            self.assertTrue(verdict(2, 3, ["ours", "stock", "stock"]))
            self.assertTrue(verdict(2, 1, ["ours", "stock", "stock"]))
            # Ours holds it, or every node is ours: never excused.
            self.assertFalse(verdict(1, 3, ["ours", "stock", "stock"]))
            self.assertFalse(verdict(2, 3, ["ours", "ours", "ours"]))
            # The waiter holds its own request unacknowledged (lost in a reset):
            # excused when the waiter is stock, never when it is ours.
            def verdict_request(waiter, master, dlm):
                with open(path, "w") as f:
                    f.write("\n".join([
                        "== node %d" % waiter,
                        "comm %d: state=ESTABLISHED flags=0 send_queue_count=6 "
                        "version=0x00030002" % master,
                        "-- /sys/kernel/debug/dlm/t_waiters",
                        "2 1 %d counter" % master,
                    ]) + "\n")
                err = "lock traffic STALLED under hub resets: x (dump: %s); then: y" % path
                return S.stall_of_stock_node(err, dlm)
            self.assertTrue(verdict_request(2, 1, ["ours", "stock", "stock"]))
            self.assertFalse(verdict_request(1, 2, ["ours", "stock", "stock"]))
            self.assertFalse(verdict_request(2, 1, ["ours", "ours", "stock"]))
            # Seen in badbytes, 1 ours + 2 stock: ours (node 1) holds unacked
            # messages only for node 2, which is not part of the wait of stock
            # node 3 on node 1; node 3 holds its own request.  Excused; not
            # when ours holds anything for node 3.
            def verdict_third(ours_holds_for):
                with open(path, "w") as f:
                    f.write("\n".join([
                        "== node 1",
                        "comm %d: state=ESTABLISHED flags=0 send_queue_count=32 "
                        "version=0x00030002" % ours_holds_for,
                        "== node 3",
                        "comm 1: state=ESTABLISHED flags=0 send_queue_count=10 "
                        "version=0x00030002",
                        "-- /sys/kernel/debug/dlm/t_waiters",
                        "2 1 1 counter",
                    ]) + "\n")
                err = "lock traffic STALLED under bad bytes: x (dump: %s); then: y" % path
                return S.expected_failure("badbytes", err, ["ours", "stock", "stock"])
            self.assertTrue(verdict_third(2))
            self.assertFalse(verdict_third(3))
            # No dump to show it: not excused either.
            self.assertFalse(S.stall_of_stock_node("lock traffic STALLED under hub resets",
                                                   ["ours", "stock", "stock"]))

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
