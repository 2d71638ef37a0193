# SPDX-License-Identifier: GPL-2.0
"""Tests for scripts/hub.py and scripts/hubctl.py.

Run: python3 -m unittest discover -s scripts/tests

Each test starts a real hub process on a temporary directory and talks to
it through fake nodes: unix datagram sockets bound to D/node<N>.sock, exactly
as QEMU's ``-netdev dgram`` does.
"""

import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import hub  # noqa: E402
import hubctl  # noqa: E402


def mac(n):
    return bytes([0x52, 0x54, 0x00, 0x12, 0x34, n])


BCAST = b"\xff" * 6
ETYPE_TEST = 0x88B5  # IEEE local experimental ethertype


def eth(dst, src, body=b"", etype=ETYPE_TEST):
    f = dst + src + struct.pack("!H", etype) + body
    return f + b"\0" * max(0, 60 - len(f))


def tagged(src, dst_mac, tag):
    """A test frame whose payload carries a tag we can recognise."""
    return eth(dst_mac, mac(src), b"TAG" + struct.pack("!I", tag))


def tag_of(frame):
    if frame[12:14] != struct.pack("!H", ETYPE_TEST) or frame[14:17] != b"TAG":
        return None
    return struct.unpack_from("!I", frame, 17)[0]


class FakeNode:
    def __init__(self, d, n):
        self.n = n
        self.d = d
        self.path = os.path.join(d, "node%d.sock" % n)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.hub = os.path.join(d, "hub.sock")

    def send(self, frame):
        self.sock.sendto(frame, self.hub)

    def recv(self, timeout=2.0):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536)
        except socket.timeout:
            return None

    def recv_all(self, timeout=0.3):
        out = []
        while True:
            f = self.recv(timeout)
            if f is None:
                return out
            out.append(f)

    def tags(self, timeout=0.3):
        return [tag_of(f) for f in self.recv_all(timeout)]

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def ones_complement_check(data):
    """Independent checksum verifier: the one's complement sum of a block
    that includes its own correct checksum is 0xffff.  Uses a plain integer
    loop over byte pairs, not the hub's struct-based code."""
    if len(data) % 2:
        data += b"\0"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


def verify_tcp_frame(tc, frame):
    """Check Ethernet/IP/TCP structure and both checksums independently;
    return the parsed fields as a dict."""
    etype = struct.unpack_from("!H", frame, 12)[0]
    if etype == 0x0800:
        ip = frame[14:34]
        tc.assertEqual(ip[0], 0x45)
        tot = struct.unpack_from("!H", ip, 2)[0]
        tc.assertEqual(tot, 40)
        tc.assertEqual(ip[9], 6)
        tc.assertTrue(ones_complement_check(ip), "bad IPv4 header checksum")
        src, dst = ip[12:16], ip[16:20]
        seg = frame[34:14 + tot]
        pseudo = src + dst + bytes([0, 6]) + struct.pack("!H", len(seg))
    else:
        tc.assertEqual(etype, 0x86DD)
        ip = frame[14:54]
        plen = struct.unpack_from("!H", ip, 4)[0]
        tc.assertEqual(ip[6], 6)
        src, dst = ip[8:24], ip[24:40]
        seg = frame[54:54 + plen]
        pseudo = src + dst + struct.pack("!I", len(seg)) + bytes([0, 0, 0, 6])
    tc.assertEqual(len(seg), 20)
    tc.assertTrue(ones_complement_check(pseudo + seg), "bad TCP checksum")
    sport, dport, seq, ack, doff, flags, win = struct.unpack_from(
        "!HHIIBBH", seg)
    return dict(dmac=frame[0:6], smac=frame[6:12], src=src, dst=dst,
                sport=sport, dport=dport, seq=seq, ack=ack, flags=flags,
                doff=doff >> 4, window=win)


IP = {n: bytes([192, 0, 2, n]) for n in range(1, 4)}
IP6 = {n: bytes.fromhex("fd000000000000000000000000000000")[:15] + bytes([n])
       for n in range(1, 4)}


def tcp_frame(src, dst, sport, dport, seq, ack, flags, payload=b"", ver=4):
    ips = IP if ver == 4 else IP6
    return hub.build_tcp_frame(ver, mac(src), mac(dst), ips[src], ips[dst],
                               sport, dport, seq, ack, flags, 29200, payload)


S, A, F, R, P = hub.TCP_SYN, hub.TCP_ACK, hub.TCP_FIN, hub.TCP_RST, hub.TCP_PSH


class ChecksumTest(unittest.TestCase):
    def test_ipv4_header_known_value(self):
        # A commonly published IPv4 header example whose checksum is 0xb861.
        hdr = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
        self.assertEqual(hub.ipv4_header_csum(hdr), 0xB861)

    def test_tcp_checksum_independent(self):
        for ver in (4, 6):
            for payload in (b"", b"x", b"hello world, odd length!"):
                f = tcp_frame(1, 2, 40000, 21064, 0x12345678, 0x9ABCDEF0,
                              A | P, payload, ver=ver)
                # Verify over the segment including payload.
                if ver == 4:
                    tot = struct.unpack_from("!H", f, 16)[0]
                    self.assertTrue(ones_complement_check(f[14:34]))
                    seg = f[34:14 + tot]
                    pseudo = IP[1] + IP[2] + bytes([0, 6]) + \
                        struct.pack("!H", len(seg))
                else:
                    seg = f[54:]
                    pseudo = IP6[1] + IP6[2] + struct.pack("!I", len(seg)) + \
                        bytes([0, 0, 0, 6])
                self.assertEqual(len(seg), 20 + len(payload))
                self.assertTrue(ones_complement_check(pseudo + seg))
                # A flipped bit must be detected.
                bad = bytearray(seg)
                bad[-1] ^= 0x01
                self.assertFalse(ones_complement_check(pseudo + bytes(bad)))

    def test_parse_roundtrip_and_padding(self):
        f = tcp_frame(1, 2, 40000, 21064, 100, 200, A | P, b"abc")
        self.assertEqual(len(f), 60)  # padded to the Ethernet minimum
        t = hub.parse_tcp(f)
        self.assertEqual((t.sport, t.dport, t.seq, t.ack, t.plen, t.flags),
                         (40000, 21064, 100, 200, 3, A | P))
        self.assertEqual(t.saddr, IP[1])
        self.assertIsNone(hub.parse_tcp(f[:30]))
        self.assertIsNone(hub.parse_tcp(b""))
        self.assertIsNone(hub.parse_tcp(eth(BCAST, mac(1), b"\0" * 50, 0x0800)))

    def test_real_guest_frame(self):
        # A TCP SYN sent by a 7.2 guest kernel on the hub (virtio-net over
        # -netdev dgram computes full checksums), captured by the hub: the
        # guest's own checksums must verify with both implementations.
        f = bytes.fromhex(REAL_GUEST_SYN)
        t = hub.parse_tcp(f)
        self.assertIsNotNone(t)
        self.assertEqual(t.dport, 21064)
        self.assertEqual(t.flags, S)
        self.assertTrue(ones_complement_check(f[14:34]))
        ihl = (f[14] & 15) * 4
        tot = struct.unpack_from("!H", f, 16)[0]
        seg = f[14 + ihl:14 + tot]
        pseudo = f[26:30] + f[30:34] + bytes([0, 6]) + \
            struct.pack("!H", len(seg))
        self.assertTrue(ones_complement_check(pseudo + seg))
        zeroed = seg[:16] + b"\0\0" + seg[18:]
        self.assertEqual(hub.tcp_csum(4, f[26:30], f[30:34], zeroed),
                         struct.unpack_from("!H", seg, 16)[0])
        ip0 = f[14:24] + b"\0\0" + f[26:34]
        self.assertEqual(hub.ipv4_header_csum(ip0),
                         struct.unpack_from("!H", f, 24)[0])


# A SYN to port 21064 from the 7.2 test kernel in a QEMU guest, captured by
# hub.py --pcap (192.0.2.2:60758 -> 192.0.2.1:21064, with MSS/SACK/TS/WS
# options).
REAL_GUEST_SYN = (
    "52540012340152540012340208004500003ced9b40004006c91cc0000202c000"
    "0201ed565248976bf50a00000000a002faf0b1f00000020405b40402080a4c01"
    "ff030000000001030307"
)


class HubTestBase(unittest.TestCase):
    NODES = 3
    SEED = 1
    EXTRA = ()

    def setUp(self):
        self.d = tempfile.mkdtemp(prefix="hubt", dir="/tmp")
        self.logpath = os.path.join(self.d, "hub.log")
        self.proc = hubctl.start_hub(self.d, self.NODES, self.SEED,
                                     log=self.logpath,
                                     extra=[e.format(d=self.d)
                                            for e in self.EXTRA])
        self.ctl = hubctl.HubClient(self.d)
        self.n = {i: FakeNode(self.d, i) for i in range(1, self.NODES + 1)}

    def tearDown(self):
        self.ctl.close()
        for node in self.n.values():
            node.close()
        rc = hubctl.stop_hub(self.proc)
        log = ""
        if os.path.exists(self.logpath):
            with open(self.logpath) as f:
                log = f.read()
        shutil.rmtree(self.d, ignore_errors=True)
        self.assertEqual(rc, 0, "hub exited with %s; log:\n%s" % (rc, log))
        self.assertNotIn("Traceback", log)

    def hello(self):
        """Every node broadcasts once so the hub learns all MACs and paths."""
        for i, node in self.n.items():
            node.send(tagged(i, BCAST, 1000 + i))
        for node in self.n.values():
            node.recv_all(0.3)

    def stats(self):
        return self.ctl.stats()


class ForwardingTest(HubTestBase):
    def test_flood_learn_forward(self):
        self.n[1].send(tagged(1, BCAST, 1))
        self.assertEqual(self.n[2].tags(), [1])
        self.assertEqual(self.n[3].tags(), [1])
        self.assertEqual(self.n[1].tags(0.2), [])  # never back to the sender
        self.hello()
        self.n[1].send(tagged(1, mac(2), 2))
        self.assertEqual(self.n[2].tags(), [2])
        self.assertEqual(self.n[3].tags(0.2), [])
        # Unknown unicast is flooded.
        self.n[3].send(tagged(3, mac(9), 3))
        self.assertEqual(self.n[1].tags(), [3])
        self.assertEqual(self.n[2].tags(), [3])
        # Multicast is flooded.
        self.n[2].send(tagged(2, bytes([0x33, 0x33, 0, 0, 0, 1]), 4))
        self.assertEqual(self.n[1].tags(), [4])
        self.assertEqual(self.n[3].tags(), [4])
        st = self.stats()
        self.assertEqual(st["frames"], 1 + 3 + 3)
        self.assertEqual(st["forwarded"], 1)
        self.assertEqual(st["spoken"], "1,2,3")
        self.assertEqual(st["dropped"], 0)

    def test_many_frames_in_order_no_loss(self):
        # Far beyond the kernel's unix dgram queue (max_dgram_qlen, 10 on
        # some hosts): the hub must queue, not drop, while node 2 is slow.
        self.hello()
        for i in range(300):
            self.n[1].send(tagged(1, mac(2), i))
        time.sleep(0.3)
        got = self.n[2].tags(1.0)
        self.assertEqual(got, list(range(300)))
        st = self.stats()
        self.assertEqual(st["overflow"], 0)
        self.assertEqual(st["send_errors"], 0)

    def test_vanished_node(self):
        self.hello()
        self.n[3].close()
        for i in range(5):
            self.n[1].send(tagged(1, BCAST, i))
            self.n[1].send(tagged(1, mac(3), 100 + i))
        self.assertEqual(self.n[2].tags(), list(range(5)))
        st = self.stats()
        self.assertGreater(st["send_errors"], 0)
        # The node comes back on the same path (VM restarted).
        self.n[3] = FakeNode(self.d, 3)
        self.n[3].send(tagged(3, BCAST, 50))
        self.assertEqual(self.n[1].tags(), [50])
        self.n[1].send(tagged(1, mac(3), 51))
        self.assertEqual(self.n[3].tags(), [51])
        self.assertEqual(self.ctl.raw("ping")[:2], "ok")

    def test_vanished_node_with_queued_frames(self):
        self.hello()
        for i in range(60):
            self.n[1].send(tagged(1, mac(2), i))
        time.sleep(0.3)
        self.assertGreater(self.stats()["queued"], 30)
        self.n[2].close()  # the VM dies with frames waiting for it
        time.sleep(0.3)
        st = self.stats()
        self.assertEqual(st["queued"], 0)
        self.assertGreater(st["send_errors"], 30)
        self.n[2] = FakeNode(self.d, 2)
        self.n[1].send(tagged(1, mac(2), 500))
        self.assertEqual(self.n[2].tags(), [500])

    def test_bad_input(self):
        # Unbound sender, wrong name, runt frame, truncated IPv4/TCP.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(tagged(1, BCAST, 1), os.path.join(self.d, "hub.sock"))
        s.close()
        other = FakeNode(self.d, 7)  # node7 > --nodes 3
        other.send(tagged(7, BCAST, 2))
        other.close()
        self.n[1].send(b"\x01\x02")
        trunc = tcp_frame(1, 2, 1, 21064, 1, 1, A)[:40]
        self.n[1].send(trunc)
        self.n[1].send(b"\xff" * 6 + mac(1) + b"\x08\x00" + b"\x4f" * 60)
        time.sleep(0.3)
        st = self.stats()
        self.assertEqual(st["bad_frames"], 3)
        self.assertEqual(st["frames"], 2)
        self.assertEqual(self.n[2].tags(0.2), [None, None])
        with open(self.logpath) as f:
            self.assertIn("unknown sender", f.read())


class PcapTest(HubTestBase):
    EXTRA = ("--pcap", "{d}/frames.pcap")

    def test_pcap_has_frames_and_rsts(self):
        self.hello()
        self.n[1].send(tcp_frame(1, 2, 40000, 21064, 10, 0, S))
        self.n[2].send(tcp_frame(2, 1, 21064, 40000, 20, 11, S | A))
        for node in self.n.values():
            node.recv_all(0.2)
        self.assertEqual(self.ctl.reset(), 1)
        for node in self.n.values():
            node.recv_all(0.2)
        with open(os.path.join(self.d, "frames.pcap"), "rb") as f:
            data = f.read()
        magic, vmaj, vmin, _, _, snap, link = struct.unpack_from("<IHHiIII",
                                                                 data)
        self.assertEqual((magic, vmaj, vmin, link), (0xA1B2C3D4, 2, 4, 1))
        off = 24
        frames = []
        while off < len(data):
            _, _, incl, orig = struct.unpack_from("<IIII", data, off)
            self.assertEqual(incl, orig)
            frames.append(data[off + 16:off + 16 + incl])
            off += 16 + incl
        self.assertEqual(off, len(data))
        # 3 hellos, SYN, SYN-ACK, 2 crafted RSTs.
        self.assertEqual(len(frames), 7)
        self.assertEqual([tag_of(f) for f in frames[:3]], [1001, 1002, 1003])
        self.assertEqual(hub.parse_tcp(frames[3]).flags, S)
        self.assertEqual({hub.parse_tcp(f).flags for f in frames[5:]},
                         {R | A})


def read_pcap(path):
    """The frames of a classic pcap file (checking its header)."""
    with open(path, "rb") as f:
        data = f.read()
    magic, vmaj, vmin, _, _, snap, link = struct.unpack_from("<IHHiIII", data)
    assert (magic, vmaj, vmin, link) == (0xA1B2C3D4, 2, 4, 1), data[:24]
    off = 24
    frames = []
    while off < len(data):
        _, _, incl, orig = struct.unpack_from("<IIII", data, off)
        assert incl == orig
        frames.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
    assert off == len(data)
    return frames


class PcapControlTest(HubTestBase):
    def test_pcap_start_stop_replace(self):
        self.hello()
        self.assertEqual(self.stats()["captured"], 0)
        path = self.ctl.pcap("a.pcap")
        self.assertEqual(path, os.path.join(self.d, "a.pcap"))
        self.assertIn("pcap=" + path, self.ctl.raw("show"))
        for k in range(5):
            self.n[1].send(tagged(1, mac(2), k))
        self.assertEqual(self.n[2].tags(), list(range(5)))
        # A second capture replaces the first, which keeps its 5 frames.
        b = os.path.join(self.d, "b.pcap")
        self.assertEqual(self.ctl.pcap(b), b)
        # Frames are recorded as received, before impairments: a dropped
        # frame is in the file.
        self.ctl.drop(100)
        for k in range(3):
            self.n[2].send(tagged(2, mac(3), 10 + k))
        self.assertEqual(self.n[3].tags(), [])
        self.assertEqual(self.ctl.pcap_off(), 3)
        self.assertEqual(self.ctl.pcap_off(), 0)
        self.n[1].send(tagged(1, mac(2), 99))
        self.assertEqual([tag_of(f) for f in read_pcap(path)], list(range(5)))
        self.assertEqual([tag_of(f) for f in read_pcap(b)], [10, 11, 12])
        self.assertEqual(self.stats()["captured"], 8)
        self.assertNotIn("pcap=", self.ctl.raw("show"))

    def test_pcap_errors(self):
        for line in ("pcap", "pcap a b", "pcap /nonexistent/dir/x.pcap"):
            self.assertTrue(self.ctl.raw(line).startswith("err "), line)
        # The hub still forwards after a refused capture.
        self.hello()
        self.n[1].send(tagged(1, mac(3), 7))
        self.assertEqual(self.n[3].tags(), [7])


class ImpairmentTest(HubTestBase):
    def test_drop_100_and_0(self):
        self.hello()
        self.assertEqual(self.ctl.drop(100), {})
        for i in range(20):
            self.n[1].send(tagged(1, mac(2), i))
        self.assertEqual(self.n[2].tags(0.3), [])
        self.assertEqual(self.stats()["dropped"], 20)
        self.ctl.drop(0)
        for i in range(20):
            self.n[1].send(tagged(1, mac(2), i))
        self.assertEqual(self.n[2].tags(), list(range(20)))

    def test_drop_per_link(self):
        self.hello()
        self.ctl.drop(100, 1, 2)
        self.n[1].send(tagged(1, BCAST, 1))
        self.n[2].send(tagged(2, BCAST, 2))
        self.assertEqual(self.n[2].tags(0.3), [])
        self.assertEqual(self.n[3].tags(), [1, 2])
        self.assertEqual(self.n[1].tags(0.3), [])
        # A global setting later overrides per-link ones too; clear resets.
        self.ctl.clear()
        self.n[1].send(tagged(1, mac(2), 3))
        self.assertEqual(self.n[2].tags(), [3])

    def test_drop_seeded_reproducible(self):
        self.hello()

        def pattern():
            self.ctl.seed(1234)
            self.ctl.drop(50)
            for i in range(60):
                self.n[1].send(tagged(1, mac(2), i))
            return self.n[2].tags(0.5)

        first = pattern()
        second = pattern()
        self.assertEqual(first, second)
        self.assertTrue(10 < len(first) < 50, first)

    def test_partition_heal(self):
        self.hello()
        self.ctl.partition([1, 2], [3])
        self.n[1].send(tagged(1, BCAST, 1))
        self.n[3].send(tagged(3, BCAST, 2))
        self.n[3].send(tagged(3, mac(1), 3))
        self.assertEqual(self.n[2].tags(), [1])
        self.assertEqual(self.n[3].tags(0.2), [])
        self.assertEqual(self.n[1].tags(0.2), [])
        # Not named => isolated.
        self.assertEqual(self.ctl.raw("partition 1,3"), "ok")
        self.n[2].send(tagged(2, BCAST, 4))
        self.n[1].send(tagged(1, mac(3), 5))
        self.assertEqual(self.n[3].tags(), [5])
        self.assertEqual(self.n[1].tags(0.2), [])
        st = self.stats()
        self.assertEqual(st["partitioned"], 1 + 2 + 1 + 2)
        self.ctl.heal()
        self.n[3].send(tagged(3, BCAST, 6))
        self.assertEqual(self.n[1].tags(), [6])
        self.assertEqual(self.n[2].tags(), [6])

    def test_dup(self):
        self.hello()
        self.ctl.dup(100, 1, 2)
        for i in range(5):
            self.n[1].send(tagged(1, BCAST, i))
        self.assertEqual(self.n[2].tags(), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
        self.assertEqual(self.n[3].tags(), [0, 1, 2, 3, 4])
        self.assertEqual(self.stats()["duplicated"], 5)

    def test_delay_does_not_block_other_links(self):
        self.hello()
        self.ctl.delay(500, 0, 1, 2)
        t0 = time.monotonic()
        self.n[1].send(tagged(1, mac(2), 1))
        self.n[3].send(tagged(3, mac(2), 2))
        first = self.n[2].recv(2.0)
        t1 = time.monotonic()
        second = self.n[2].recv(2.0)
        t2 = time.monotonic()
        self.assertEqual((tag_of(first), tag_of(second)), (2, 1))
        self.assertLess(t1 - t0, 0.35)
        self.assertGreaterEqual(t2 - t0, 0.49)
        self.assertLess(t2 - t0, 1.5)
        # The other direction is delayed too; 1->3 is not.
        t0 = time.monotonic()
        self.n[2].send(tagged(2, mac(1), 3))
        self.n[1].send(tagged(1, mac(3), 4))
        self.assertEqual(tag_of(self.n[3].recv()), 4)
        self.assertLess(time.monotonic() - t0, 0.35)
        self.assertEqual(tag_of(self.n[1].recv()), 3)
        self.assertGreaterEqual(time.monotonic() - t0, 0.49)
        self.assertEqual(self.stats()["delayed"], 2)

    def test_delay_jitter_keeps_link_order(self):
        self.hello()
        self.ctl.delay(30, 25)
        for i in range(40):
            self.n[1].send(tagged(1, mac(2), i))
            time.sleep(0.002)
        self.assertEqual(self.n[2].tags(0.5), list(range(40)))

    def test_reorder(self):
        self.hello()
        self.ctl.reorder(100, 1, 2)
        for i in range(6):
            self.n[1].send(tagged(1, mac(2), i))
        self.assertEqual(self.n[2].tags(), [1, 0, 3, 2, 5, 4])
        self.assertEqual(self.stats()["reordered"], 3)
        # A held frame with nothing behind it still arrives (hold timeout).
        self.n[1].send(tagged(1, mac(2), 9))
        self.assertEqual(self.n[2].tags(), [9])
        # Other links untouched.
        for i in range(4):
            self.n[1].send(tagged(1, mac(3), i))
        self.assertEqual(self.n[3].tags(), [0, 1, 2, 3])


class ResetTest(HubTestBase):
    ISN1 = 0xFFFFFF00  # wraps during the test
    ISN2 = 0x10000000

    def handshake(self, c=1, s=2, cport=40000, sport=21064, ver=4,
                  unacked=0):
        """Play a TCP exchange between fake nodes c (client) and s (server);
        return (c_snd_nxt, s_snd_nxt, c_last_ack, s_last_ack)."""
        i1, i2 = self.ISN1, self.ISN2
        n = self.n
        n[c].send(tcp_frame(c, s, cport, sport, i1, 0, S, ver=ver))
        n[s].send(tcp_frame(s, c, sport, cport, i2, i1 + 1, S | A, ver=ver))
        n[c].send(tcp_frame(c, s, cport, sport, i1 + 1, i2 + 1, A, ver=ver))
        n[c].send(tcp_frame(c, s, cport, sport, i1 + 1, i2 + 1, A | P,
                            b"q" * 300, ver=ver))
        n[s].send(tcp_frame(s, c, sport, cport, i2 + 1, i1 + 301, A | P,
                            b"r" * 50, ver=ver))
        n[c].send(tcp_frame(c, s, cport, sport, i1 + 301, i2 + 51, A,
                            ver=ver))
        # A retransmission of old data must not move snd_nxt back.
        n[c].send(tcp_frame(c, s, cport, sport, i1 + 1, i2 + 51, A | P,
                            b"q" * 300, ver=ver))
        s_nxt = i2 + 51
        if unacked:
            n[s].send(tcp_frame(s, c, sport, cport, i2 + 51, i1 + 301, A | P,
                                b"u" * unacked, ver=ver))
            s_nxt += unacked
        for node in n.values():
            node.recv_all(0.2)
        return ((i1 + 301) & 0xFFFFFFFF, s_nxt & 0xFFFFFFFF,
                (i2 + 51) & 0xFFFFFFFF, (i1 + 301) & 0xFFFFFFFF)

    def check_rst(self, f, to, frm, to_port, frm_port, seq, ack, ver=4):
        r = verify_tcp_frame(self, f)
        ips = IP if ver == 4 else IP6
        self.assertEqual(r["dmac"], mac(to))
        self.assertEqual(r["smac"], mac(frm))
        self.assertEqual(r["src"], ips[frm])
        self.assertEqual(r["dst"], ips[to])
        self.assertEqual((r["sport"], r["dport"]), (frm_port, to_port))
        self.assertEqual(r["flags"], R | A)
        self.assertEqual(r["doff"], 5)
        self.assertEqual(r["seq"], seq)
        self.assertEqual(r["ack"], ack)
        return r

    def test_reset_fields_ipv4(self):
        self.hello()
        c_nxt, s_nxt, c_ack, s_ack = self.handshake()
        self.assertIn("connections=1", self.ctl.raw("flows"))
        self.assertEqual(self.ctl.reset(1, 3), 0)
        self.assertEqual(self.ctl.reset(), 1)
        to_c = self.n[1].recv_all()
        to_s = self.n[2].recv_all()
        self.assertEqual(len(to_c), 1)
        self.assertEqual(len(to_s), 1)
        self.assertEqual(self.n[3].recv_all(0.2), [])
        # To the client: from the server, seq = the ack the client last sent.
        self.check_rst(to_c[0], 1, 2, 40000, 21064, c_ack, c_nxt)
        self.check_rst(to_s[0], 2, 1, 21064, 40000, s_ack, s_nxt)
        st = self.stats()
        self.assertEqual((st["resets"], st["rst_frames"]), (1, 2))
        self.assertEqual(self.ctl.reset(), 0)  # connection is gone

    def test_reset_ipv6_and_selector(self):
        self.hello()
        c_nxt, s_nxt, c_ack, s_ack = self.handshake(1, 3, 41000, 21064, ver=6)
        self.assertEqual(self.ctl.reset(1, 2), 0)
        self.assertEqual(self.ctl.reset(3, 1), 1)
        to_c = self.n[1].recv_all()
        to_s = self.n[3].recv_all()
        self.assertEqual(len(to_c), 1)
        self.check_rst(to_c[0], 1, 3, 41000, 21064, c_ack, c_nxt, ver=6)
        self.check_rst(to_s[0], 3, 1, 21064, 41000, s_ack, s_nxt, ver=6)

    def test_reset_unacked_data_sends_both_candidates(self):
        self.hello()
        c_nxt, s_nxt, c_ack, s_ack = self.handshake(unacked=77)
        self.assertEqual(self.ctl.reset(), 1)
        to_c = self.n[1].recv_all()
        self.assertEqual(len(to_c), 2)
        self.check_rst(to_c[0], 1, 2, 40000, 21064, c_ack, c_nxt)
        self.check_rst(to_c[1], 1, 2, 40000, 21064, s_nxt, c_nxt)
        self.assertEqual((s_nxt - c_ack) & 0xFFFFFFFF, 77)

    def test_reset_only_dlm_port_and_open_connections(self):
        self.hello()
        self.handshake(1, 2, 40000, 22)  # not the DLM port
        self.handshake(2, 3, 40001, 21064)
        # Cleanly closed connection: FIN both ways, not counted.
        n = self.n
        n[1].send(tcp_frame(1, 3, 40002, 21064, 5, 0, S))
        n[3].send(tcp_frame(3, 1, 21064, 40002, 9, 6, S | A))
        n[1].send(tcp_frame(1, 3, 40002, 21064, 6, 10, F | A))
        n[3].send(tcp_frame(3, 1, 21064, 40002, 10, 7, F | A))
        # Connection ended by a guest RST: forgotten.
        n[1].send(tcp_frame(1, 3, 40003, 21064, 5, 0, S))
        n[3].send(tcp_frame(3, 1, 21064, 40003, 9, 6, S | A))
        n[1].send(tcp_frame(1, 3, 40003, 21064, 6, 0, R))
        for node in n.values():
            node.recv_all(0.2)
        self.assertEqual(self.ctl.reset(), 1)
        self.assertEqual(len(self.n[1].recv_all(0.2)), 0)
        self.assertEqual(len(self.n[2].recv_all()), 1)
        self.assertEqual(len(self.n[3].recv_all()), 1)

    def test_stale_half_open_and_other_ports_not_reset(self):
        # Unanswered SYNs (peer not listening, or gone) must not pile up
        # into "connections" that every later reset would hit.
        self.hello()
        for port in range(41000, 41050):
            self.n[1].send(tcp_frame(1, 2, port, 21064, port, 0, S))
        self.n[1].send(tcp_frame(1, 2, 42000, 22, 1, 0, S))
        self.n[2].send(tcp_frame(2, 1, 22, 42000, 9, 2, S | A))
        self.n[1].recv_all(0.2)
        self.n[2].recv_all(0.2)
        self.assertIn("connections=50 ", self.ctl.raw("flows"))
        time.sleep(hub.HALF_OPEN_S + 0.3)
        self.assertEqual(self.ctl.raw("flows"), "ok connections=0")
        self.assertEqual(self.ctl.reset(), 0)
        self.assertEqual(self.stats()["rst_frames"], 0)

    def test_reset_half_open_syn_sent(self):
        # Only the client's SYN was seen: the RST to the client must carry
        # ACK = its SYN + 1 (SYN-SENT accepts that), and the server gets one
        # at the client's snd_nxt.
        self.hello()
        self.n[1].send(tcp_frame(1, 2, 40010, 21064, 777, 0, S))
        self.n[2].recv_all(0.2)
        self.assertEqual(self.ctl.reset(), 1)
        to_c = self.n[1].recv_all()
        self.assertEqual(len(to_c), 1)
        r = verify_tcp_frame(self, to_c[0])
        self.assertEqual((r["flags"], r["ack"]), (R | A, 778))
        to_s = self.n[2].recv_all()
        self.assertEqual(len(to_s), 1)
        self.assertEqual(verify_tcp_frame(self, to_s[0])["seq"], 778)

    def test_reset_every_and_stop(self):
        self.hello()
        self.assertEqual(self.ctl.raw("reset-every 50"), "ok")
        self.handshake()
        time.sleep(0.3)
        self.assertEqual(self.stats()["resets"], 1)
        self.handshake(cport=40100)
        time.sleep(0.3)
        self.assertEqual(self.stats()["resets"], 2)
        self.assertEqual(self.ctl.raw("reset-stop"), "ok")
        self.handshake(cport=40200)
        time.sleep(0.3)
        st = self.stats()
        self.assertEqual(st["resets"], 2)
        self.assertEqual(st["rst_frames"], 4)


class ControlTest(HubTestBase):
    def test_errors(self):
        bad = ["bogus", "drop", "drop abc", "drop 101", "drop -1", "drop 10 1",
               "drop 10 1 1", "drop 10 1 9", "drop 10 1 2 3", "delay",
               "delay x", "delay 10 1 2 3 4", "delay 10 y 1 2", "dup",
               "reorder 5 2", "partition", "partition 1,1 2",
               "partition 1 1", "partition 1,,2", "partition 4", "heal 1",
               "reset 1", "reset 2 2", "reset-every", "reset-every 0",
               "reset-every 10 1", "seed", "seed x", "stats 1", "clear 1",
               "quit now"]
        for line in bad:
            reply = self.ctl.raw(line)
            self.assertTrue(reply.startswith("err "), (line, reply))
        self.assertEqual(self.stats()["ctl_errors"], len(bad))
        with self.assertRaises(hubctl.HubError):
            self.ctl.command("drop", "nope")

    def test_good_replies(self):
        for line in ["drop 5", "drop 5 1 2", "delay 10", "delay 10 5",
                     "delay 10 1 2", "delay 10 5 2 3", "dup 1", "reorder 2 3 1",
                     "clear", "partition 1,2 3", "partition 1", "heal",
                     "reset-every 1000 1 2", "reset-stop", "seed 99",
                     "DROP 0"]:
            self.assertEqual(self.ctl.raw(line), "ok", line)
        self.assertEqual(self.ctl.raw("reset"), "ok killed=0")
        self.assertEqual(self.ctl.raw("reset 1 2"), "ok killed=0")
        st = self.ctl.raw("stats")
        for key in ("frames", "dropped", "duplicated", "delayed", "reordered",
                    "resets", "rst_frames"):
            self.assertRegex(st, r"(^ok| )%s=\d+( |$)" % key)

    def test_pipelined_partial_and_garbage_lines(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(os.path.join(self.d, "hub.ctl"))
        s.settimeout(3)
        s.sendall(b"stats\ndrop 1\n\xff\xfe\n\nseed 3")
        time.sleep(0.1)
        s.sendall(b"\nbogus\n" + b"x" * 5000)
        buf = b""
        while buf.count(b"\n") < 7:
            chunk = s.recv(4096)
            self.assertTrue(chunk)
            buf += chunk
        lines = buf.decode().splitlines()
        self.assertTrue(lines[0].startswith("ok frames="))
        self.assertEqual(lines[1], "ok")
        self.assertTrue(lines[2].startswith("err "))
        self.assertTrue(lines[3].startswith("err "))
        self.assertEqual(lines[4], "ok")
        self.assertTrue(lines[5].startswith("err unknown"))
        self.assertTrue(lines[6].startswith("err line too long"))
        s.close()
        # Another client is still served, and several at once.
        c2 = hubctl.HubClient(self.d)
        self.assertEqual(c2.raw("ping")[:2], "ok")
        self.assertEqual(self.ctl.raw("heal"), "ok")
        c2.close()

    def test_quit(self):
        self.assertEqual(self.ctl.raw("quit"), "ok")
        self.assertEqual(self.proc.wait(5), 0)
        for f in ("hub.sock", "hub.ctl", "hub.pid"):
            self.assertFalse(os.path.exists(os.path.join(self.d, f)), f)

    def test_sigterm_and_pidfile(self):
        with open(os.path.join(self.d, "hub.pid")) as f:
            pid = int(f.read())
        self.assertEqual(pid, self.proc.pid)
        os.kill(pid, signal.SIGTERM)
        self.assertEqual(self.proc.wait(5), 0)
        self.assertFalse(os.path.exists(os.path.join(self.d, "hub.ctl")))

    def test_second_hub_refused(self):
        with self.assertRaises(RuntimeError):
            hubctl.start_hub(self.d, 3, 1, timeout=5)
        self.assertEqual(self.ctl.raw("ping")[:2], "ok")


class UnreadStderrTest(unittest.TestCase):
    def test_unread_stderr_pipe_does_not_stall(self):
        # Without --log the hub logs to stderr; a runner that pipes stderr
        # and never reads it must not stall the hub.
        import subprocess
        d = tempfile.mkdtemp(prefix="hubt", dir="/tmp")
        try:
            p = subprocess.Popen([sys.executable, hubctl.HUB_PY, "--dir", d,
                                  "--nodes", "2"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            self.assertEqual(p.stdout.readline().strip(), "hub ready")
            with hubctl.HubClient(d, timeout=5) as h:
                for i in range(3000):  # far more than a pipe buffer of log
                    self.assertEqual(h.raw("drop %d" % (i % 100)), "ok")
                self.assertEqual(h.raw("quit"), "ok")
            self.assertEqual(p.wait(5), 0)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
            p.stderr.close()
            shutil.rmtree(d, ignore_errors=True)


def proc_cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PerformanceTest(HubTestBase):
    NODES = 2

    def test_idle_does_not_spin(self):
        self.hello()
        self.ctl.raw("delay 5")  # a timer-driven mode, still idle
        time.sleep(0.2)
        c0 = proc_cpu_seconds(self.proc.pid)
        time.sleep(2.0)
        used = proc_cpu_seconds(self.proc.pid) - c0
        self.assertLess(used, 0.1, "hub used %.2fs CPU in 2s idle" % used)

    def test_throughput(self):
        self.hello()
        n = 6000
        frame = tagged(1, mac(2), 0) + b"\0" * 1000
        rx = self.n[2].sock
        rx.setblocking(False)
        got = 0
        t0 = time.monotonic()
        sent = 0
        deadline = t0 + 20
        while got < n and time.monotonic() < deadline:
            # Keep a bounded number of frames in flight.
            while sent < n and sent - got < 8:
                try:
                    self.n[1].sock.sendto(frame, os.path.join(self.d, "hub.sock"))
                    sent += 1
                except BlockingIOError:
                    break
            try:
                while True:
                    rx.recv(65536)
                    got += 1
            except BlockingIOError:
                time.sleep(0.0001)
        dt = time.monotonic() - t0
        rate = got / dt
        sys.stderr.write("\n[hub throughput: %d frames in %.2fs = %.0f frames/s]\n"
                         % (got, dt, rate))
        self.assertEqual(got, n)
        self.assertGreater(rate, 2000)


class SegmentCutTest(HubTestBase):
    """cut/uncut: one hub is one network segment (a cluster with two
    networks runs two hubs); a cut drops every frame of the segment."""

    def test_cut_and_uncut(self):
        self.hello()
        self.n[1].send(tagged(1, mac(2), 1))
        self.assertEqual(self.n[2].tags(), [1])
        before = self.stats()
        self.assertEqual(self.ctl.raw("cut"), "ok")
        self.assertIn("cut=1", self.ctl.raw("show"))
        # Unicast, broadcast and every direction: nothing gets through.
        self.n[1].send(tagged(1, mac(2), 2))
        self.n[2].send(tagged(2, mac(3), 3))
        self.n[3].send(tagged(3, BCAST, 4))
        for i in (1, 2, 3):
            self.assertEqual(self.n[i].tags(0.2), [], i)
        st = self.stats()
        # One copy each for the two unicasts, two for the broadcast.
        self.assertEqual(st["cut"] - before["cut"], 4)
        self.assertEqual(st["dropped"] - before["dropped"], 4)
        self.assertEqual(st["partitioned"], before["partitioned"])
        # A cut overrides a partition that would let frames through, and
        # uncut restores delivery (also without a heal of the partition).
        self.assertEqual(self.ctl.raw("partition 1,2,3"), "ok")
        self.n[1].send(tagged(1, mac(3), 5))
        self.assertEqual(self.n[3].tags(0.2), [])
        self.assertEqual(self.ctl.raw("uncut"), "ok")
        self.assertNotIn("cut=1", self.ctl.raw("show"))
        self.n[1].send(tagged(1, mac(3), 6))
        self.n[2].send(tagged(2, BCAST, 7))
        self.assertEqual(self.n[3].tags(), [6, 7])
        self.assertEqual(self.n[1].tags(), [7])
        self.assertEqual(self.stats()["cut"], st["cut"] + 1)

    def test_cut_usage(self):
        for line in ("cut now", "uncut 1"):
            self.assertTrue(self.ctl.raw(line).startswith("err "), line)
        # uncut without a cut is harmless.
        self.assertEqual(self.ctl.raw("uncut"), "ok")


def sctp_frame(src, dst, sport, dport, vtag, chunk, ver=4):
    """An Ethernet/IP/SCTP frame with one chunk of type chunk (no body);
    its checksum is not the hub's business and is left 0."""
    ips = IP if ver == 4 else IP6
    pkt = struct.pack("!HHIIBBH", sport, dport, vtag, 0, chunk, 0, 4)
    if ver == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(pkt), 0, 0x4000, 64,
                         132, 0, ips[src], ips[dst])
        etype = 0x0800
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(pkt), 132, 64, ips[src], ips[dst])
        etype = 0x86DD
    f = mac(dst) + mac(src) + struct.pack("!H", etype) + ip + pkt
    return f + b"\0" * max(0, 60 - len(f))


def crc32c_bitwise(data):
    """CRC-32C computed bit by bit (not the hub's table)."""
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 * (c & 1))
    return c ^ 0xFFFFFFFF


def verify_sctp_abort(tc, frame, ver=4):
    """Check the structure and checksums of an ABORT frame the hub built;
    return its fields."""
    etype = struct.unpack_from("!H", frame, 12)[0]
    if ver == 4:
        tc.assertEqual(etype, 0x0800)
        ip = frame[14:34]
        tc.assertEqual(ip[9], 132)
        tc.assertTrue(ones_complement_check(ip), "bad IPv4 header checksum")
        tot = struct.unpack_from("!H", ip, 2)[0]
        tc.assertEqual(tot, 36)
        src, dst, pkt = ip[12:16], ip[16:20], frame[34:50]
    else:
        tc.assertEqual(etype, 0x86DD)
        ip = frame[14:54]
        tc.assertEqual(ip[6], 132)
        tc.assertEqual(struct.unpack_from("!H", ip, 4)[0], 16)
        src, dst, pkt = ip[8:24], ip[24:40], frame[54:70]
    sport, dport, vtag = struct.unpack_from("!HHI", pkt)
    zeroed = pkt[:8] + b"\0\0\0\0" + pkt[12:]
    # RFC 9260 appendix A: the CRC goes in as Linux stores it (cpu_to_le32).
    tc.assertEqual(struct.unpack_from("<I", pkt, 8)[0], crc32c_bitwise(zeroed))
    ctype, cflags, clen = struct.unpack_from("!BBH", pkt, 12)
    tc.assertEqual((ctype, clen), (6, 4))
    return dict(dmac=frame[0:6], smac=frame[6:12], src=src, dst=dst, sport=sport,
                dport=dport, vtag=vtag, tbit=cflags & 1)


class SctpAbortTest(HubTestBase):
    DATA, SACK, INIT, HB = 0, 3, 1, 4

    def test_crc32c_check_value(self):
        # The CRC-32C check value (RFC 3720 B.4 and every CRC catalogue).
        self.assertEqual(hub.crc32c(b"123456789"), 0xE3069283)
        self.assertEqual(hub.crc32c(bytes(32)), crc32c_bitwise(bytes(32)))

    def test_parse_sctp(self):
        f = sctp_frame(1, 2, 40000, 21064, 0xDEADBEEF, self.DATA)
        t = hub.parse_sctp(f)
        self.assertEqual((t.ver, t.saddr, t.daddr, t.sport, t.dport, t.vtag, t.chunk),
                         (4, IP[1], IP[2], 40000, 21064, 0xDEADBEEF, self.DATA))
        self.assertIsNone(hub.parse_sctp(tcp_frame(1, 2, 40000, 21064, 1, 0, S)))
        self.assertIsNone(hub.parse_tcp(f))
        t6 = hub.parse_sctp(sctp_frame(1, 2, 40000, 21064, 7, self.DATA, ver=6))
        self.assertEqual((t6.ver, t6.saddr, t6.vtag), (6, IP6[1], 7))

    def test_abort_both_ends(self):
        self.hello()
        n = self.n
        # INIT (tag 0) is no association yet; then both directions.
        n[1].send(sctp_frame(1, 2, 40000, 21064, 0, self.INIT))
        n[1].send(sctp_frame(1, 2, 40000, 21064, 0x1111, self.DATA))
        n[2].send(sctp_frame(2, 1, 21064, 40000, 0x2222, self.SACK))
        # An association on another port is not the DLM's.
        n[1].send(sctp_frame(1, 3, 40001, 22, 0x3333, self.DATA))
        for node in n.values():
            node.recv_all(0.2)
        self.assertEqual(self.ctl.reset(1, 3), 0)
        self.assertEqual(self.ctl.reset(), 1)
        to1, to2 = n[1].recv_all(), n[2].recv_all()
        self.assertEqual(n[3].recv_all(0.2), [])
        self.assertEqual((len(to1), len(to2)), (1, 1))
        # The most recent direction was 2 -> 1 with tag 0x2222 (node 1's own):
        # node 1 gets it plainly, node 2 reflected (T bit: its peer's tag).
        a1 = verify_sctp_abort(self, to1[0])
        a2 = verify_sctp_abort(self, to2[0])
        self.assertEqual((a1["dmac"], a1["smac"], a1["src"], a1["dst"]),
                         (mac(1), mac(2), IP[2], IP[1]))
        self.assertEqual((a1["sport"], a1["dport"], a1["vtag"], a1["tbit"]),
                         (21064, 40000, 0x2222, 0))
        self.assertEqual((a2["dmac"], a2["smac"], a2["src"], a2["dst"]),
                         (mac(2), mac(1), IP[1], IP[2]))
        self.assertEqual((a2["sport"], a2["dport"], a2["vtag"], a2["tbit"]),
                         (40000, 21064, 0x2222, 1))
        st = self.stats()
        self.assertEqual((st["resets"], st["abort_frames"], st["rst_frames"]), (1, 2, 0))
        # Forgotten once aborted.
        self.assertEqual(self.ctl.reset(), 0)

    def test_multihomed_counts_once_and_abort_ends_it(self):
        self.hello()
        n = self.n
        # One association (same ports), two address pairs: 192.0.2.x and
        # IPv6 standing in for the second network.
        n[1].send(sctp_frame(1, 3, 40000, 21064, 0xA, self.DATA))
        n[1].send(sctp_frame(1, 3, 40000, 21064, 0xA, self.HB, ver=6))
        n[3].send(sctp_frame(3, 1, 21064, 40000, 0xB, self.SACK, ver=6))
        for node in n.values():
            node.recv_all(0.2)
        self.assertEqual(self.ctl.reset(), 1)
        for i in (1, 3):
            self.assertEqual(len(n[i].recv_all()), 1, i)
        # A guest's own ABORT or SHUTDOWN COMPLETE ends an association too.
        n[2].send(sctp_frame(2, 3, 40005, 21064, 0xC, self.DATA))
        n[3].send(sctp_frame(3, 2, 21064, 40005, 0xD, 14))
        for node in n.values():
            node.recv_all(0.2)
        self.assertEqual(self.ctl.reset(), 0)
        self.assertEqual(self.stats()["abort_frames"], 2)

    def test_reset_every_aborts_new_associations(self):
        self.hello()
        self.assertEqual(self.ctl.raw("reset-every 50"), "ok")
        self.n[2].send(sctp_frame(2, 1, 40000, 21064, 0x77, self.DATA))
        time.sleep(0.3)
        self.n[2].send(sctp_frame(2, 1, 40002, 21064, 0x78, self.DATA))
        time.sleep(0.3)
        self.assertEqual(self.ctl.raw("reset-stop"), "ok")
        st = self.stats()
        self.assertEqual((st["resets"], st["abort_frames"]), (2, 4))


if __name__ == "__main__":
    unittest.main()
