# SPDX-License-Identifier: GPL-2.0
"""Tests of the wire oracle (wire.py): hand-made captures, decoded by the
real tshark, must pass or fail each rule.  tshark is required (setup.sh
installs it); without it these tests fail.

    python3 -m unittest discover -s scripts/cluster -p 'test_wire.py'
"""

import os
import shutil
import struct
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import hub  # noqa: E402
import wire  # noqa: E402

ADDRS = {"192.0.2.%d" % i: i for i in (1, 2, 3)}
V32 = 0x00030002


def ip(n):
    return bytes([192, 0, 2, n])


def mac(n):
    return bytes([0x52, 0x54, 0x00, 0x12, 0x34, n])


def header(cmd, nodeid, length, seq=0, version=V32):
    return struct.pack("<IIIHBB", version, seq, nodeid, length, cmd, 0)


def msg(nodeid, mtype=1):
    """A DLM_MSG of 88 bytes (header and dlm_message without extra)."""
    body = struct.pack("<II", mtype, 0) + b"\0" * 64
    return header(wire.DLM_MSG, nodeid, 16 + len(body)) + body


def opts(nodeid, seq, inner, optlen=0, nextcmd=None, length=None):
    icmd = inner[14]
    return (header(wire.DLM_OPTS, nodeid, length or 24 + optlen + len(inner), seq) +
            struct.pack("<BBHI", icmd if nextcmd is None else nextcmd, 0, optlen, 0) +
            b"\0" * optlen + inner)


def ack(nodeid, seq):
    return header(wire.DLM_ACK, nodeid, 16, seq)


def fin(nodeid):
    return header(wire.DLM_FIN, nodeid, 16)


def rcom_status(nodeid):
    """A stateless RCOM_STATUS with its 16-byte rcom_status (64 bytes: the
    size the kernel sends; tshark's dissector reads a shorter one past its
    end)."""
    body = struct.pack("<IiQQQ", 1, 0, 1, 1, 0) + b"\0" * 16
    return header(wire.DLM_RCOM, nodeid, 16 + len(body)) + body


class Capture:
    """Builds a pcap of TCP connections between nodes on port 21064."""

    def __init__(self, path):
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self.t = 1000.0

    def frame(self, data):
        self.t += 0.001
        sec = int(self.t)
        self.f.write(struct.pack("<IIII", sec, int((self.t - sec) * 1e6), len(data),
                                 len(data)) + data)

    def close(self):
        self.f.close()


class Conn:
    """One TCP connection from node a (client) to node b's port 21064."""

    def __init__(self, cap, a, b, sport, syn=True):
        self.cap, self.a, self.b, self.sport = cap, a, b, sport
        self.nxt = {a: 1000 * a + sport, b: 7000 * b + sport}
        if syn:
            self.seg(a, hub.TCP_SYN)
            self.nxt[a] += 1
            self.seg(b, hub.TCP_SYN | hub.TCP_ACK)
            self.nxt[b] += 1
            self.seg(a, hub.TCP_ACK)

    def seg(self, frm, flags, payload=b"", csum_ok=True, seq=None, ack=None):
        to = self.b if frm == self.a else self.a
        sport, dport = (self.sport, 21064) if frm == self.a else (21064, self.sport)
        f = hub.build_tcp_frame(4, mac(frm), mac(to), ip(frm), ip(to), sport, dport,
                                self.nxt[frm] if seq is None else seq,
                                self.nxt[to] if ack is None else ack, flags, 64000, payload)
        if not csum_ok:
            f = f[:50] + bytes([f[50] ^ 0xFF]) + f[51:]
        self.cap.frame(f)

    def send(self, frm, *msgs, csum_ok=True):
        """Sends msgs in one segment; returns its sequence number."""
        data = b"".join(msgs)
        seq = self.nxt[frm]
        self.seg(frm, hub.TCP_ACK | hub.TCP_PSH, data, csum_ok)
        self.nxt[frm] += len(data)
        return seq

    def rst(self, frm):
        self.seg(frm, hub.TCP_RST | hub.TCP_ACK)


class WireTest(unittest.TestCase):
    def setUp(self):
        self.assertNotEqual(wire.tshark_version(), "missing",
                            "tshark is not installed (run scripts/setup.sh)")
        self.d = tempfile.mkdtemp(prefix="wiret", dir="/tmp")
        self.n = 0

    def tearDown(self):
        shutil.rmtree(self.d, ignore_errors=True)

    def judge(self, build, complete=True):
        self.n += 1
        path = os.path.join(self.d, "c%d.pcap" % self.n)
        cap = Capture(path)
        build(cap)
        cap.close()
        return wire.check(path, ADDRS, complete=complete)

    def assertProblem(self, rep, *needles):
        text = "\n".join(rep.errors)
        for n in needles:
            self.assertIn(n, text)

    def good(self, cap):
        c = Conn(cap, 1, 2, 40001)
        c.send(1, rcom_status(1))
        c.send(2, rcom_status(2))
        c.send(1, opts(1, 0, msg(1)), opts(1, 1, msg(1)))
        c.send(2, ack(2, 2), opts(2, 0, msg(2)))
        # A message split over two segments, then one with three messages.
        m = opts(1, 2, msg(1))
        c.send(1, m[:30])
        c.send(1, m[30:])
        c.send(1, opts(1, 3, msg(1)), opts(1, 4, msg(1)), ack(1, 1))
        c.send(2, ack(2, 5))
        # The close handshake: FIN both ways, then a new session from 0.
        c.send(1, opts(1, 5, fin(1)))
        c.send(2, ack(2, 6), opts(2, 1, fin(2)))
        c.send(1, ack(1, 2))
        c.send(1, opts(1, 0, msg(1)))
        c.send(2, ack(2, 1))

    def test_good_capture(self):
        rep = self.judge(self.good)
        self.assertEqual(rep.errors, [])
        self.assertEqual(rep.counts, {wire.DLM_RCOM: 2, wire.DLM_OPTS: 9, wire.DLM_ACK: 6})
        self.assertEqual(rep.streams, 1)
        self.assertEqual(rep.resent, 0)

    def test_tcp_retransmissions_count_once(self):
        def build(cap):
            c = Conn(cap, 1, 2, 40001)
            m0, m1, m2 = (opts(1, k, msg(1)) for k in range(3))
            s0 = c.send(1, m0)
            c.send(1, m1)
            c.send(1, m2)
            # Node 2 lost the first segment: three duplicate ACKs, then a
            # fast retransmission, then a plain one of the same bytes.
            for _ in range(3):
                c.seg(2, hub.TCP_ACK, ack=s0)
            c.seg(1, hub.TCP_ACK | hub.TCP_PSH, m0, seq=s0)
            cap.t += 1.0
            c.seg(1, hub.TCP_ACK | hub.TCP_PSH, m0, seq=s0)
            c.send(2, ack(2, 3))
        rep = self.judge(build)
        self.assertEqual(rep.errors, [])
        self.assertEqual(rep.counts, {wire.DLM_OPTS: 3, wire.DLM_ACK: 1})
        self.assertEqual(rep.tcp_retrans, 2)

    def test_resend_after_reconnect_is_allowed(self):
        def build(cap):
            c = Conn(cap, 1, 2, 40001)
            c.send(1, opts(1, 0, msg(1)), opts(1, 1, msg(1)), opts(1, 2, msg(1)))
            c.send(2, ack(2, 1))
            c.rst(2)
            # Node 1 reconnects and resends from 1 (C resends 1..2, after
            # any unsent originals).
            c2 = Conn(cap, 1, 2, 40002)
            c2.send(1, opts(1, 3, msg(1)), opts(1, 1, msg(1)), opts(1, 2, msg(1)),
                    opts(1, 3, msg(1)), opts(1, 4, msg(1)))
            c2.send(2, ack(2, 5))
        rep = self.judge(build)
        self.assertEqual(rep.errors, [])
        self.assertEqual((rep.resent, rep.runs), (3, 1))
        self.assertEqual(rep.breaks, 2)     # the RST and node 1's second connection

    def test_second_own_connection_counts_as_break(self):
        def build(cap):
            c = Conn(cap, 1, 2, 40001)
            c.send(1, opts(1, 0, msg(1)))
            Conn(cap, 2, 1, 40003).send(2, opts(2, 0, msg(2)))  # crossed: no break
            c2 = Conn(cap, 1, 2, 40002)   # node 1 connects again: the first is dead
            c2.send(1, opts(1, 0, msg(1)), opts(1, 1, msg(1)))
        rep = self.judge(build)
        self.assertEqual(rep.errors, [])
        self.assertEqual(rep.breaks, 1)

    def test_malformed_length(self):
        def build(cap):
            c = Conn(cap, 1, 2, 40001)
            c.send(1, opts(1, 0, msg(1)))
            c.send(1, header(wire.DLM_MSG, 1, 8) + b"\0" * 8)
        rep = self.judge(build)
        self.assertProblem(rep, "malformed (tshark)",
                           "expert error: _ws.malformed: Malformed Packet")

    def test_bad_checksum(self):
        def build(cap):
            c = Conn(cap, 1, 2, 40001)
            c.send(1, opts(1, 0, msg(1)), csum_ok=False)
        rep = self.judge(build)
        self.assertProblem(rep, "expert error: tcp: Bad checksum")

    def test_undecodable_bytes(self):
        def build(cap):
            c = Conn(cap, 1, 2, 40001)
            c.send(1, opts(1, 0, msg(1)))
            c.send(1, header(wire.DLM_MSG, 1, 32, version=0x00020001) + b"\0" * 16)
            c.send(1, opts(1, 1, msg(1)))
        rep = self.judge(build)
        # tshark does not dissect a message of a version it does not know:
        # its bytes are missing from the dissected ones.
        self.assertProblem(rep, "256 bytes sent, 224 bytes in dissected")

    def test_gap(self):
        def build(cap):
            c = Conn(cap, 1, 2, 40001)
            c.send(1, opts(1, 0, msg(1)), opts(1, 1, msg(1)), opts(1, 3, msg(1)))
        self.assertProblem(self.judge(build), "1 -> 2 OPTS 3 skips ahead")

    def test_first_not_zero(self):
        def build(cap):
            Conn(cap, 1, 2, 40001).send(1, opts(1, 7, msg(1)))
        self.assertProblem(self.judge(build), "numbered 7, not 0")
        self.assertEqual(self.judge(build, complete=False).errors, [])

    def test_repeat_on_healthy_connection(self):
        def build(cap):
            c = Conn(cap, 1, 2, 40001)
            c.send(1, opts(1, 0, msg(1)), opts(1, 1, msg(1)), opts(1, 1, msg(1)))
        self.assertProblem(self.judge(build), "repeats a number already sent")

    def test_one_resend_run_per_event(self):
        def build(cap):
            c = Conn(cap, 1, 2, 40001)
            c.send(1, opts(1, 0, msg(1)), opts(1, 1, msg(1)))
            # Node 2 connects too (crossed, or it lost its end): node 1 may
            # resend what is unacknowledged, once.
            Conn(cap, 2, 1, 40003).send(2, opts(2, 0, msg(2)))
            c.send(1, opts(1, 0, msg(1)), opts(1, 1, msg(1)), opts(1, 2, msg(1)))
            c.send(1, opts(1, 1, msg(1)))
        rep = self.judge(build)
        self.assertEqual(len(rep.errors), 1, rep.errors)
        self.assertProblem(rep, "1 -> 2 OPTS 1 repeats a number already sent (highest 2) "
                           "with no connection event between nodes 1 and 2 since it was "
                           "first sent and the last resend run began")
        self.assertEqual((rep.resent, rep.runs), (3, 1))

    def test_ack_ahead_and_back(self):
        def build(cap):
            c = Conn(cap, 1, 2, 40001)
            c.send(1, opts(1, 0, msg(1)), opts(1, 1, msg(1)))
            c.send(2, ack(2, 3))
            c.send(2, ack(2, 2))
            c.send(2, ack(2, 1))
            c.send(1, ack(1, 1))
        rep = self.judge(build)
        self.assertProblem(rep, "2 -> 1 ACK 3 is ahead: node 1 has sent only up to 1",
                           "2 -> 1 ACK 1 goes back on its connection (previous ACK 2)",
                           "1 -> 2 ACK 1 is ahead")

    def test_queued_acks_behind_a_reconnects_first_are_stale(self):
        """After a reconnect, ours sends its current ACK first and the
        ACKs queued while the connection was down behind it (partition:
        ACK 1125, then two 1124s never sent before): counted, no error."""
        def build(cap):
            c = Conn(cap, 1, 2, 40001)
            c.send(1, opts(1, 0, msg(1)), opts(1, 1, msg(1)), opts(1, 2, msg(1)),
                   opts(1, 3, msg(1)))
            c.send(2, ack(2, 1), ack(2, 2))
            c.rst(1)
            c2 = Conn(cap, 1, 2, 40002)
            c2.send(2, ack(2, 4), ack(2, 3), ack(2, 3), ack(2, 4))
        rep = self.judge(build)
        self.assertEqual(rep.errors, [])
        self.assertEqual(rep.stale_acks, 2)

    def test_ack_falling_within_a_connection(self):
        def build(cap):
            c = Conn(cap, 1, 2, 40001)
            c.send(1, opts(1, 0, msg(1)), opts(1, 1, msg(1)), opts(1, 2, msg(1)))
            c.send(2, ack(2, 1), ack(2, 2), ack(2, 3), ack(2, 2))
        rep = self.judge(build)
        self.assertProblem(rep, "2 -> 1 ACK 2 goes back on its connection (previous ACK 3)")

    def test_header_rules(self):
        def build(cap):
            c = Conn(cap, 1, 2, 40001)
            c.send(1, opts(3, 0, msg(3)))                # wrong node id
            c.send(1, msg(1))                            # bare DLM_MSG
            c.send(1, header(wire.DLM_ACK, 1, 24, 1) + b"\0" * 8)   # long ACK
            c.send(1, opts(1, 1, msg(1), nextcmd=2))     # o_nextcmd lies
            c.send(1, opts(1, 2, msg(1), optlen=8))      # options
            c.send(1, opts(1, 3, fin(1) + b"\0" * 8))    # inner FIN of 24 bytes
            c.send(1, opts(1, 4, msg(1), length=100))   # outer length lies
        rep = self.judge(build)
        self.assertProblem(rep, "h_nodeid 3 from node 1",
                           "1 -> 2 MSG: not allowed outside a DLM_OPTS",
                           "1 -> 2 ACK: h_length 24", "o_nextcmd 2 but inner h_cmd 1",
                           "o_optlen 8", "h_length 48 for a FIN",
                           "h_length 100 but inner h_length 88")

    def test_missing_syn(self):
        def build(cap):
            Conn(cap, 1, 2, 40001, syn=False).send(1, opts(1, 0, msg(1)))
        self.assertProblem(self.judge(build), "SYN is not in the capture")
        self.assertEqual(self.judge(build, complete=False).errors, [])

    def test_unknown_address(self):
        def build(cap):
            Conn(cap, 1, 9, 40001).send(1, opts(1, 0, msg(1)))
        self.assertProblem(self.judge(build), "unknown addresses")


if __name__ == "__main__":
    unittest.main()
