# SPDX-License-Identifier: GPL-2.0
"""Host unit tests of the pure parts of sc_gfs2_kill.py, sc_hostile.py and
sc_partition.py (no VMs):

    python3 -m unittest discover -s scripts/cluster -p 'test_*.py'
"""

import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import sc_gfs2_kill as G  # noqa: E402
import sc_hostile as H  # noqa: E402
import sc_partition as P  # noqa: E402


class FakeCluster:
    def __init__(self, dlm):
        self.dlm = dlm

    def alive(self):
        return list(range(1, len(self.dlm) + 1))


class PartitionLinesTest(unittest.TestCase):
    def test_counts_from_the_whole_console_not_the_wrapped_dmesg(self):
        boot = "[    4.5] dlm: got connection from 2"
        after = "[   53.0] dlm: got connection from 2"

        class Node:
            def console_text(self):
                return "\n".join([boot, "[   10.0] dlmrs-torture p1 batch=1", after])

            def run(self, cmd):
                # The guest's dmesg after it wrapped: the boot line is gone.
                return type("R", (), {"out": after + "\n"})()

        class Cl:
            def node(self, i):
                return Node()
        lines = P.console_lines(Cl(), 1, P.ACCEPT_LINE)
        self.assertEqual(lines, [boot, after])


class PlacementTest(unittest.TestCase):
    def test_victim(self):
        ko = "/x/dlm.ko"
        self.assertEqual(G.pick_victim(FakeCluster(["stock"] * 3)), 3)
        self.assertEqual(G.pick_victim(FakeCluster([ko] * 3)), 3)
        self.assertEqual(G.pick_victim(FakeCluster([ko, "stock", "stock"])), 1)
        self.assertEqual(G.pick_victim(FakeCluster([ko, ko, "stock"])), 3)
        self.assertEqual(G.pick_victim(FakeCluster(["stock", "stock", ko])), 3)
        self.assertEqual(G.pick_victim(FakeCluster(["stock", ko, ko])), 1)

    def test_target_and_sender(self):
        ko = "/x/dlm.ko"
        self.assertEqual(H.pick_nodes(FakeCluster(["stock"] * 3)), (1, 2))
        self.assertEqual(H.pick_nodes(FakeCluster([ko] * 3)), (1, 2))
        self.assertEqual(H.pick_nodes(FakeCluster([ko, "stock", "stock"])), (1, 2))
        self.assertEqual(H.pick_nodes(FakeCluster([ko, ko, "stock"])), (1, 2))
        self.assertEqual(H.pick_nodes(FakeCluster(["stock", "stock", ko])), (3, 1))
        self.assertEqual(H.pick_nodes(FakeCluster(["stock", ko, ko])), (2, 3))


class Gfs2ContentTest(unittest.TestCase):
    def test_content_matches_the_guest_writer(self):
        """The shell writer's file k of node n is content(n, k), and fits a
        block of the shared file."""
        with tempfile.TemporaryDirectory() as d:
            script = G.writer(2).split("mkdir -p /mnt/")[0].replace("/tmp/", d + "/")
            script += ("k=7; { echo \"node $n file $k\"; cat %s/tmpl; } > %s/buf" % (d, d))
            subprocess.run(["sh", "-c", script], check=True)
            with open(os.path.join(d, "buf"), "rb") as f:
                data = f.read()
        self.assertEqual(data, G.content(2, 7))
        self.assertLessEqual(len(data), G.BLOCK)


class LogLinesTest(unittest.TestCase):
    def test_bound(self):
        self.assertEqual(H.line_bound(5), 20)
        self.assertEqual(H.line_bound(17), 50)
        self.assertEqual(H.line_bound(17, 1), 5)

    def test_classify(self):
        lines = [
            "dlm: invalid message from node 2: inner h_length 3200 but DLM_OPTS carries "
            "280 bytes after its options, will skip this message",
            "dlm: invalid message from node 2: h_cmd 77 is not a DLM command",
            "dlm: got connection from 2",
            "dlm: got connection from 3",
            "dlm: connect from non cluster IPv4 node 192.0.2.200",
            "dlm: ignore ack 82390083 from node 2: we only sent up to 504",
            "dlm: ignore dlm msg because seq mismatch, seq: 3717332517, expected: 710, nodeid: 2",
            "dlm: ignore dlm msg because seq mismatch, seq: 700, expected: 710, nodeid: 2",
            "dlm: ignore dlm msg because seq mismatch, seq: 4294967290, expected: 3, nodeid: 2",
            "dlm: ignore dlm msg because seq mismatch, seq: 711, expected: 710, nodeid: 2",
        ]
        g = H.classify(lines)
        self.assertEqual(len(g["invalid message"]), 2)
        self.assertEqual(len(g["ack beyond sent"]), 1)
        self.assertEqual(len(g["dlm: got connection from N"]), 2)
        self.assertEqual(len(g["dlm: connect from non cluster IPv4 node N.N.N.N"]), 1)
        # Two call sites with C's one text: a duplicate (before the expected
        # seq, across the wrap too) and a gap (after it).
        self.assertEqual(len(g["seq mismatch: duplicate"]), 3)
        self.assertEqual(len(g["seq mismatch: gap"]), 1)

    def test_window_and_dlm_lines(self):
        text = ("[ 1.0] dlm: before\n[ 2.0] dlmrs-hostile: x begin\n"
                "[ 2.1] dlm: got connection from 2\n[ 2.2] other line\n"
                "[ 3.0] dlmrs-hostile: x end\n[ 4.0] dlm: after\n")

        class N:
            def console_text(self):
                return text

        class Cl:
            def node(self, i):
                return N()
        w = H.console_window(Cl(), 1, "x begin", "x end")
        self.assertEqual(H.dlm_lines(w), ["dlm: got connection from 2"])


class HostileToolTest(unittest.TestCase):
    def test_frames_are_framed(self):
        """Against a local listener, every body frame has a valid header
        whose length matches what was sent (the receiver sees each one)."""
        import socket
        import struct
        import threading
        o = tempfile.mkdtemp()
        subprocess.run(["make", "-s", "-C", os.path.join(HERE, "..", "..", "tools", "hostile"),
                        "O=" + o], check=True)
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        port = srv.getsockname()[1]
        framed = []

        def serve():
            for _ in range(8):
                c, _ = srv.accept()
                data = b""
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    data += d
                c.close()
                off = n = 0
                while off + 16 <= len(data):
                    ver, _, _, ln, _, _ = struct.unpack_from("<IIIHBB", data, off)
                    if not 16 <= ln <= 4096 or ver not in (0x30001, 0x30002) or \
                            off + ln > len(data):
                        break
                    off += ln
                    n += 1
                framed.append(n)
        t = threading.Thread(target=serve)
        t.start()
        r = subprocess.run([os.path.join(o, "hostile"), "--to", "127.0.0.1", "--from",
                            "127.0.0.1", "--port", str(port), "--nodeid", "2", "--conns", "8",
                            "--batch", "50-60", "--body-only", "--seed", "3"],
                           capture_output=True, text=True, timeout=60)
        t.join(30)
        srv.close()
        self.assertEqual(r.returncode, 0, r.stderr)
        kv = dict(x.split("=") for x in r.stdout.split()[1:])
        self.assertEqual(int(kv["conns"]), 8)
        self.assertEqual(int(kv["end_eof"]), 8)
        self.assertEqual(sum(framed), int(kv["frames"]))
        self.assertTrue(all(50 <= n <= 60 for n in framed), framed)


if __name__ == "__main__":
    unittest.main()
