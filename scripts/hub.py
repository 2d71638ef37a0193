#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Host-side L2 hub for the dlm-rs QEMU cluster, with fault injection.

Every VM runs ``-netdev dgram`` with its local end bound to
``D/node<N>.sock`` and its remote end at ``D/hub.sock``: one datagram is one
Ethernet frame.  The hub learns a node from the sender's path, learns MAC
addresses from source MACs, forwards unicast frames to the learned node and
floods broadcast/unknown frames to every other node.

Impairments (drop, delay with jitter, duplicate, reorder, partition) are set
per directed link through the line protocol on the unix stream socket
``D/hub.ctl``; all randomness comes from one seeded ``random.Random`` so a
run is reproducible for a given frame order.  The hub also follows TCP flows
and follows the TCP connections of the DLM port (21064), and can kill them by crafting an RST that each end
accepts (sequence number = that end's rcv_nxt).  It also notes the
verification tags of SCTP associations on that port and kills them with an
ABORT (the tag the receiver expects, or its peer's with the T bit).

A cluster with two networks runs one hub per segment (each with its own
directory); ``cut`` takes one segment down as a whole.

Single thread: one selector loop plus a timer heap, so a delayed link never
holds up another one and an idle hub sleeps in the kernel.

Order of the per-link pipeline for one frame copy:
  partition -> drop -> duplicate -> delay(+jitter, FIFO per link) -> reorder
  -> per-node output queue (back-pressure from the receiving QEMU).

Control protocol on D/hub.ctl (unix stream; one command per line, one reply
line per command, ``ok [key=value ...]`` or ``err <message>``).  ``A B`` are
node ids and select the links A->B and B->A; without them a setting applies
to every link (and overrides earlier per-link values of that setting).

  stats                      ok frames= dropped= duplicated= delayed=
                             reordered= resets= rst_frames= partitioned=
                             forwarded= flooded= send_errors= overflow=
                             bad_frames= ctl_errors= captured= flows=
                             queued= spoken= cut= abort_frames=
  drop PCT [A B]             drop PCT % of frames
  delay MS [JITTER_MS] [A B] delay by MS +- uniform JITTER_MS (FIFO per link)
  dup PCT [A B]              send PCT % of frames twice
  reorder PCT [A B]          hold PCT % of frames behind the next frame on
                             the link (at most --reorder-hold-ms)
  clear                      drop/delay/dup/reorder off everywhere
  partition 1,2 3            only nodes of one group talk; unnamed isolated
  heal                       end the partition
  cut                        drop every frame: the whole segment is down
                             (counted in dropped and cut) until uncut
  uncut                      end the cut
  reset [A B]                RST every known port-21064 connection (between
                             A and B), and ABORT every SCTP association
                             with port 21064 seen in the last
                             SCTP_RECENT_S: ok killed=K
  reset-every MS [A B]       reset every MS ms until reset-stop
  reset-stop
  seed S                     re-seed the PRNG
  pcap PATH                  record frames in PATH (relative: in the hub's
                             directory), replacing any capture in progress:
                             ok file=PATH
  pcap off                   stop recording: ok captured=N (frames in the
                             file just closed)
  quit                       reply ok, then exit
  ping | show | flows | help additions for people: pid, current settings,
                             known connections, command list

Counters: ``frames`` frames received from nodes; ``dropped`` frame copies not
delivered because of drop or partition (``partitioned`` is the partition
share); ``duplicated``/``delayed``/``reordered`` frame copies affected;
``resets`` connections (TCP) and associations (SCTP) killed; ``rst_frames``
RST frames sent; ``abort_frames`` SCTP ABORT frames sent; ``cut`` frames
dropped because the segment was cut;
``send_errors`` frames lost because a node's socket was gone; ``overflow``
frames lost because a node did not read (its queue holds 2048); ``bad_frames``
runts and frames from unknown senders; ``captured`` frames written to pcap
files; ``queued`` frames waiting for a slow node now; ``spoken`` nodes heard
from.

A capture (``--pcap`` or the ``pcap`` command) holds every frame as the hub
received it from a node, before any impairment, plus every RST the hub
crafts: the senders' view of the wire.  A frame the hub then drops is in the
file, and so is the sender's TCP retransmission of it; duplicates and
reordering the hub adds are not.

See ``python3 scripts/hub.py --help`` and scripts/hubctl.py for a client.
"""

import argparse
import heapq
import os
import random
import re
import selectors
import signal
import socket
import stat
import struct
import sys
import time
from collections import deque

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
IPPROTO_TCP = 6
IPPROTO_SCTP = 132

SCTP_ABORT = 6
SCTP_SHUTDOWN_COMPLETE = 14
# An SCTP association counts for "reset" if a packet of it was seen this
# recently: an idle association still sends a HEARTBEAT every 30 s (plus
# jitter) on each path.
SCTP_RECENT_S = 45.0

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10

DLM_PORT = 21064

# A node that does not read (paused or slow guest) may hold this many frames
# in the hub before further frames to it are dropped and counted.
OUTPUT_QUEUE_MAX = 2048
# Most frames read from hub.sock per wakeup before the loop looks at timers
# and the control socket again.
RX_BATCH = 256
# TCP flow table limits.
FLOWS_MAX = 65536
FLOW_IDLE_S = 3600.0
FLOW_CLOSED_IDLE_S = 60.0
# A connection seen in one direction only (unanswered SYNs) counts for
# "reset" only this long after its last frame.
HALF_OPEN_S = 3.0
PRUNE_EVERY_S = 30.0
CTL_LINE_MAX = 4096

NODE_PATH_RE = re.compile(r"(?:^|/)node([0-9]{1,4})\.sock$")


# --------------------------------------------------------------------------
# Checksums and packet parsing/building (pure functions, unit tested).

def ones_sum(data, start=0):
    """16-bit one's complement sum of ``data`` (big-endian words), folded."""
    if len(data) & 1:
        data = bytes(data) + b"\0"
    total = start
    for (word,) in struct.iter_unpack("!H", data):
        total += word
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def inet_csum(data, start=0):
    """Internet checksum (RFC 1071) of ``data``."""
    return (~ones_sum(data, start)) & 0xFFFF


def ipv4_header_csum(hdr):
    """Checksum for an IPv4 header whose checksum field is zero."""
    return inet_csum(hdr)


def tcp_csum(ver, saddr, daddr, segment):
    """TCP checksum over the pseudo-header and ``segment`` (csum field 0)."""
    if ver == 4:
        pseudo = saddr + daddr + struct.pack("!BBH", 0, IPPROTO_TCP, len(segment))
    else:
        pseudo = saddr + daddr + struct.pack("!IxxxB", len(segment), IPPROTO_TCP)
    return inet_csum(pseudo + segment)


class TcpInfo:
    """The fields of one TCP segment the hub cares about."""

    __slots__ = ("ver", "smac", "dmac", "saddr", "daddr", "sport", "dport",
                 "seq", "ack", "flags", "window", "plen")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


def ip_payload(frame, proto, min_len):
    """The IPv4 or IPv6 packet of protocol ``proto`` in an Ethernet frame
    (one 802.1Q tag allowed): (ver, saddr, daddr, payload offset, payload
    length), or None.  IPv4 fragments other than a whole packet and IPv6
    extension headers are not followed.  The payload length comes from the
    IP header, not from the frame length, so Ethernet padding is ignored;
    it must be at least min_len."""
    n = len(frame)
    if n < 14:
        return None
    off = 12
    (etype,) = struct.unpack_from("!H", frame, off)
    off += 2
    if etype == ETH_P_8021Q:
        if n < off + 4:
            return None
        (etype,) = struct.unpack_from("!H", frame, off + 2)
        off += 4
    if etype == ETH_P_IP:
        if n < off + 20 or frame[off] >> 4 != 4:
            return None
        ihl = (frame[off] & 0x0F) * 4
        (tot_len, frag, p) = struct.unpack_from("!H2xHxB", frame, off + 2)
        if p != proto or ihl < 20 or frag & 0x3FFF:
            return None
        if tot_len < ihl + min_len or n < off + tot_len:
            return None
        return (4, bytes(frame[off + 12:off + 16]), bytes(frame[off + 16:off + 20]),
                off + ihl, tot_len - ihl)
    if etype == ETH_P_IPV6:
        if n < off + 40 or frame[off] >> 4 != 6:
            return None
        (plen, nxt) = struct.unpack_from("!HB", frame, off + 4)
        if nxt != proto or plen < min_len or n < off + 40 + plen:
            return None
        return (6, bytes(frame[off + 8:off + 24]), bytes(frame[off + 24:off + 40]),
                off + 40, plen)
    return None


def parse_tcp(frame):
    """Return a TcpInfo for an Ethernet/IPv4|IPv6/TCP frame, else None
    (the limits of ip_payload)."""
    ip = ip_payload(frame, IPPROTO_TCP, 20)
    if ip is None:
        return None
    ver, saddr, daddr, toff, seglen = ip
    (sport, dport, seq, ack, doff, flags, window) = struct.unpack_from(
        "!HHIIBBH", frame, toff)
    thl = (doff >> 4) * 4
    if thl < 20 or thl > seglen:
        return None
    return TcpInfo(ver=ver, smac=bytes(frame[6:12]), dmac=bytes(frame[0:6]),
                   saddr=saddr, daddr=daddr, sport=sport, dport=dport,
                   seq=seq, ack=ack, flags=flags, window=window,
                   plen=seglen - thl)


def build_tcp_frame(ver, smac, dmac, saddr, daddr, sport, dport, seq, ack,
                    flags, window=0, payload=b"", ttl=64, ip_id=0):
    """Build a complete Ethernet frame carrying one TCP segment, with
    correct IPv4 header and TCP checksums, padded to the 60-byte minimum."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF,
                      ack & 0xFFFFFFFF, 5 << 4, flags, window, 0, 0) + payload
    c = tcp_csum(ver, saddr, daddr, tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    return ip_frame(ver, smac, dmac, saddr, daddr, IPPROTO_TCP, tcp, ttl, ip_id)


def ip_frame(ver, smac, dmac, saddr, daddr, proto, payload, ttl=64, ip_id=0):
    """A complete Ethernet frame carrying payload in an IPv4 (DF set,
    header checksum filled in) or IPv6 packet of protocol proto, padded to
    the 60-byte minimum."""
    if ver == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ip_id,
                         0x4000, ttl, proto, 0, saddr, daddr)
        ip = ip[:10] + struct.pack("!H", ipv4_header_csum(ip)) + ip[12:]
        etype = ETH_P_IP
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(payload), proto, ttl,
                         saddr, daddr)
        etype = ETH_P_IPV6
    frame = dmac + smac + struct.pack("!H", etype) + ip + payload
    if len(frame) < 60:
        frame += b"\0" * (60 - len(frame))
    return frame


def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    """CRC-32C (Castagnoli), as SCTP uses it (RFC 9260, appendix A)."""
    c = 0xFFFFFFFF
    t = CRC32C_TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


class SctpInfo:
    """The fields of one SCTP packet the hub cares about."""

    __slots__ = ("ver", "smac", "dmac", "saddr", "daddr", "sport", "dport",
                 "vtag", "chunk")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


def parse_sctp(frame):
    """Return an SctpInfo (first chunk's type in ``chunk``) for an
    Ethernet/IPv4|IPv6/SCTP frame, else None (the limits of ip_payload)."""
    ip = ip_payload(frame, IPPROTO_SCTP, 16)
    if ip is None:
        return None
    ver, saddr, daddr, soff, _ = ip
    sport, dport, vtag, _ = struct.unpack_from("!HHII", frame, soff)
    return SctpInfo(ver=ver, smac=bytes(frame[6:12]), dmac=bytes(frame[0:6]),
                    saddr=saddr, daddr=daddr, sport=sport, dport=dport,
                    vtag=vtag, chunk=frame[soff + 12])


def build_sctp_abort(ver, smac, dmac, saddr, daddr, sport, dport, vtag,
                     reflect=False, ttl=64):
    """An Ethernet frame with one SCTP packet holding one ABORT chunk (no
    causes), CRC-32C filled in (stored little-endian, as Linux does), padded
    to 60 bytes.  reflect: the T bit (vtag is then the receiver's peer's
    tag, not its own)."""
    pkt = struct.pack("!HHII", sport, dport, vtag, 0) + struct.pack(
        "!BBH", SCTP_ABORT, 1 if reflect else 0, 4)
    pkt = pkt[:8] + struct.pack("<I", crc32c(pkt)) + pkt[12:]
    return ip_frame(ver, smac, dmac, saddr, daddr, IPPROTO_SCTP, pkt, ttl)


def seq_geq(a, b):
    """a >= b in 32-bit sequence space."""
    return ((a - b) & 0xFFFFFFFF) < 0x80000000


def fmt_addr(ver, addr):
    return socket.inet_ntop(socket.AF_INET if ver == 4 else socket.AF_INET6, addr)


# --------------------------------------------------------------------------

class Impair:
    __slots__ = ("drop", "delay", "jitter", "dup", "reorder")

    def __init__(self):
        self.drop = 0.0
        self.delay = 0.0
        self.jitter = 0.0
        self.dup = 0.0
        self.reorder = 0.0

    def copy(self):
        c = Impair()
        for f in self.__slots__:
            setattr(c, f, getattr(self, f))
        return c

    def active(self):
        return any(getattr(self, f) for f in self.__slots__)

    def describe(self):
        return ",".join("%s:%g" % (f, getattr(self, f))
                        for f in self.__slots__ if getattr(self, f))


class Link:
    """Mutable per directed link state (delay FIFO, reorder hold)."""
    __slots__ = ("last_due", "held", "hold_gen")

    def __init__(self):
        self.last_due = 0.0
        self.held = []
        self.hold_gen = 0


class Port:
    """Output side towards one node: a dgram socket connected to the node's
    path, so that a full receive queue in QEMU gives back-pressure (POLLOUT)
    instead of a silent loss."""
    __slots__ = ("node", "path", "sock", "queue", "want_write", "retry_at",
                 "spoken")

    def __init__(self, node, path):
        self.node = node
        self.path = path
        self.sock = None
        self.queue = deque()
        self.want_write = False
        self.retry_at = 0.0
        self.spoken = False


class FlowDir:
    """One direction of a TCP connection, as sent by one end."""
    __slots__ = ("node", "smac", "dmac", "snd_nxt", "ack", "has_ack",
                 "window", "fin", "last")

    def __init__(self):
        self.node = None
        self.smac = None
        self.dmac = None
        self.snd_nxt = None
        self.ack = 0
        self.has_ack = False
        self.window = 0
        self.fin = False
        self.last = 0.0


class SctpDir:
    """One direction of an SCTP association on one address pair, as sent by
    one end: vtag is the receiver's own tag."""
    __slots__ = ("node", "smac", "dmac", "vtag", "last")

    def __init__(self, node, smac, dmac, vtag, last):
        self.node = node
        self.smac = smac
        self.dmac = dmac
        self.vtag = vtag
        self.last = last


class CtlError(Exception):
    pass


class CtlClient:
    __slots__ = ("sock", "inbuf", "outbuf", "closing")

    def __init__(self, sock):
        self.sock = sock
        self.inbuf = b""
        self.outbuf = b""
        self.closing = False


class Hub:
    COUNTERS = ("frames", "dropped", "duplicated", "delayed", "reordered",
                "resets", "rst_frames", "partitioned", "forwarded",
                "flooded", "send_errors", "overflow", "bad_frames",
                "ctl_errors", "captured", "cut", "abort_frames")
    # Read-only commands a runner may poll: not logged unless they fail.
    QUIET_COMMANDS = ("stats", "ping", "show", "flows", "help")

    def __init__(self, directory, nodes, seed=0, log=None, reorder_hold_ms=20.0,
                 reset_port=DLM_PORT, pcap=None):
        self.dir = directory
        self.nodes = nodes
        self.rng = random.Random(seed)
        self.seed = seed
        self.logf = log
        self.reorder_hold = reorder_hold_ms / 1000.0
        self.reset_port = reset_port
        self.pcap = pcap
        self.pcap_path = None
        self.pcap_frames = 0
        self.pcap_errors = 0
        self.c = dict.fromkeys(self.COUNTERS, 0)
        self.default = Impair()
        self.link_imp = {}
        self.links = {}
        self.groups = None
        self.cut = False
        self.sctp = {}
        self.macs = {}
        self.ports = {}
        for n in range(1, nodes + 1):
            self.ports[n] = Port(n, os.path.join(directory, "node%d.sock" % n))
        self.flows = {}
        self.timers = []
        self.timer_seq = 0
        self.reset_gen = 0
        self.reset_every = None
        self.rl_last = {}
        self.rl_suppressed = {}
        self.stopping = False
        self.sel = selectors.DefaultSelector()
        self.data = None
        self.ctl = None
        self.clients = {}
        self.hub_path = os.path.join(directory, "hub.sock")
        self.ctl_path = os.path.join(directory, "hub.ctl")
        self.pid_path = os.path.join(directory, "hub.pid")

    # ---------------------------------------------------------------- logging
    def log(self, msg):
        line = "%s hub: %s\n" % (time.strftime("%H:%M:%S"), msg)
        f = self.logf or sys.stderr
        try:
            f.write(line)
            f.flush()
        except OSError:
            pass

    def log_rl(self, key, msg, every=5.0):
        """Rate-limited log: at most one line per ``key`` per ``every`` s."""
        now = time.monotonic()
        last = self.rl_last.get(key)
        if last is not None and now - last < every:
            self.rl_suppressed[key] = self.rl_suppressed.get(key, 0) + 1
            return
        sup = self.rl_suppressed.pop(key, 0)
        self.rl_last[key] = now
        self.log(msg + (" (%d similar suppressed)" % sup if sup else ""))

    # ---------------------------------------------------------------- pcap
    def pcap_open(self, path):
        """Record every frame received from a node, and every RST the hub
        crafts, in classic pcap format (tcpdump -r / wireshark), replacing
        any capture in progress.  Raises OSError if path cannot be
        written."""
        f = open(path, "wb")
        try:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
            f.flush()
        except OSError:
            f.close()
            raise
        self.pcap_close()
        self.pcap = f
        self.pcap_path = path
        self.pcap_frames = 0

    def pcap_close(self):
        """Stop recording; returns the number of frames in the file."""
        n = self.pcap_frames
        if self.pcap is not None:
            try:
                self.pcap.close()
            except OSError as e:
                self.pcap_errors += 1
                self.log_rl("pcap", "pcap close: %s" % e)
            self.log("pcap %s closed: %d frames" % (self.pcap_path, n))
        self.pcap = None
        self.pcap_path = None
        self.pcap_frames = 0
        return n

    def pcap_write(self, frame):
        t = time.time()
        sec = int(t)
        try:
            self.pcap.write(struct.pack("<IIII", sec, int((t - sec) * 1e6),
                                        len(frame), len(frame)) + frame)
            self.pcap.flush()
            self.pcap_frames += 1
            self.c["captured"] += 1
        except OSError as e:
            self.pcap_errors += 1
            self.log_rl("pcap", "pcap write: %s" % e)

    # ---------------------------------------------------------------- set-up
    def bind(self):
        os.makedirs(self.dir, exist_ok=True)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.ctl_path)
            probe.close()
            raise SystemExit("hub: another hub is running on %s" % self.ctl_path)
        except OSError:
            probe.close()
        for p in (self.hub_path, self.ctl_path):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        self.data = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.data.bind(self.hub_path)
        self.data.setblocking(False)
        self.sel.register(self.data, selectors.EVENT_READ, self.on_data)
        self.ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ctl.bind(self.ctl_path)
        self.ctl.listen(16)
        self.ctl.setblocking(False)
        self.sel.register(self.ctl, selectors.EVENT_READ, self.on_accept)
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        self.sig_r = rfd
        signal.set_wakeup_fd(wfd)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, lambda *_: None)
        self.sel.register(rfd, selectors.EVENT_READ, self.on_signal)
        with open(self.pid_path + ".tmp", "w") as f:
            f.write("%d\n" % os.getpid())
        os.replace(self.pid_path + ".tmp", self.pid_path)
        self.add_timer(PRUNE_EVERY_S, self.prune_flows)
        self.log("listening on %s, control %s, nodes=%d seed=%d" %
                 (self.hub_path, self.ctl_path, self.nodes, self.seed))

    def cleanup(self):
        for p in (self.hub_path, self.ctl_path, self.pid_path):
            try:
                os.unlink(p)
            except OSError:
                pass
        for cl in list(self.clients.values()):
            cl.sock.close()
        for port in self.ports.values():
            if port.sock is not None:
                port.sock.close()
        self.pcap_close()
        self.log("stopped: " + self.stats_line())

    # ---------------------------------------------------------------- timers
    def add_timer(self, delay_s, fn, *args):
        self.timer_seq += 1
        heapq.heappush(self.timers, (time.monotonic() + delay_s,
                                     self.timer_seq, fn, args))

    def add_timer_at(self, due, fn, *args):
        self.timer_seq += 1
        heapq.heappush(self.timers, (due, self.timer_seq, fn, args))

    def run_timers(self):
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, fn, args = heapq.heappop(self.timers)
            fn(*args)

    def run(self):
        while not self.stopping:
            timeout = None
            if self.timers:
                timeout = max(0.0, self.timers[0][0] - time.monotonic())
            for key, mask in self.sel.select(timeout):
                key.data(mask)
                if self.stopping:
                    break
            self.run_timers()

    def on_signal(self, _mask):
        try:
            sigs = os.read(self.sig_r, 64)
        except BlockingIOError:
            return
        if sigs:
            self.log("signal %s, stopping" % ",".join(str(b) for b in sigs))
            self.stopping = True

    # ---------------------------------------------------------------- nodes
    def node_of(self, addr):
        if isinstance(addr, bytes):
            addr = addr.decode("utf-8", "replace")
        if not addr:
            return None
        m = NODE_PATH_RE.search(addr)
        if not m:
            return None
        n = int(m.group(1))
        if n < 1 or n > self.nodes:
            return None
        return n

    def flood_targets(self):
        return self.ports.keys()

    # ---------------------------------------------------------------- data
    def on_data(self, _mask):
        recv = self.data.recvfrom
        for _ in range(RX_BATCH):
            try:
                frame, addr = recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.log_rl("recv", "recvfrom on hub.sock: %s" % e)
                return
            self.on_frame(frame, addr)

    def on_frame(self, frame, addr):
        node = self.node_of(addr)
        if node is None:
            self.c["bad_frames"] += 1
            self.log_rl("sender", "frame from unknown sender %r ignored "
                        "(expect .../node1..%d.sock)" % (addr, self.nodes))
            return
        if len(frame) < 14:
            self.c["bad_frames"] += 1
            self.log_rl("short", "runt frame (%d bytes) from node %d ignored"
                        % (len(frame), node))
            return
        self.c["frames"] += 1
        if self.pcap is not None:
            self.pcap_write(frame)
        port = self.ports[node]
        path = addr if isinstance(addr, str) else addr.decode("utf-8",
                                                                "replace")
        # A relative bind path means nothing in the hub's cwd: keep the
        # default D/node<N>.sock then.
        if not os.path.isabs(path):
            path = port.path
        if not port.spoken or port.path != path:
            if port.path != path:
                port.path = path
                self.port_disconnect(port)
            port.spoken = True
            self.log("node %d speaks from %s" % (node, port.path))
        port.retry_at = 0.0
        src = frame[6:12]
        if not src[0] & 1:
            if self.macs.get(src) != node:
                self.macs[src] = node
        try:
            self.track_tcp(frame, node)
            self.track_sctp(frame, node)
        except (struct.error, IndexError) as e:
            self.log_rl("tcpparse", "TCP/SCTP tracking failed on a frame from "
                        "node %d: %s" % (node, e))
        dst = frame[0:6]
        if not dst[0] & 1:
            to = self.macs.get(dst)
            if to is not None:
                if to != node:
                    self.c["forwarded"] += 1
                    self.link_send(node, to, frame)
                return
        self.c["flooded"] += 1
        for to in self.flood_targets():
            if to != node:
                self.link_send(node, to, frame)

    def impair_for(self, a, b):
        return self.link_imp.get((a, b), self.default)

    def link(self, a, b):
        ln = self.links.get((a, b))
        if ln is None:
            ln = self.links[(a, b)] = Link()
        return ln

    def link_send(self, a, b, frame):
        if self.cut:
            self.c["cut"] += 1
            self.c["dropped"] += 1
            return
        g = self.groups
        if g is not None:
            ga = g.get(a)
            if ga is None or ga != g.get(b):
                self.c["partitioned"] += 1
                self.c["dropped"] += 1
                return
        imp = self.link_imp.get((a, b), self.default)
        if imp.drop and self.rng.random() * 100.0 < imp.drop:
            self.c["dropped"] += 1
            return
        copies = 1
        if imp.dup and self.rng.random() * 100.0 < imp.dup:
            self.c["duplicated"] += 1
            copies = 2
        for _ in range(copies):
            self.delay_stage(a, b, frame, imp)

    def delay_stage(self, a, b, frame, imp):
        ln = self.links.get((a, b))
        now = time.monotonic()
        if imp.delay or imp.jitter:
            d = imp.delay
            if imp.jitter:
                d += self.rng.uniform(-imp.jitter, imp.jitter)
            if ln is None:
                ln = self.link(a, b)
            due = max(now + max(0.0, d) / 1000.0, ln.last_due)
            ln.last_due = due
            self.c["delayed"] += 1
            self.add_timer_at(due, self.reorder_stage, a, b, frame)
        elif ln is not None and ln.last_due > now:
            # Delay was just lowered: do not let new frames overtake the
            # ones still waiting on this link.
            self.add_timer_at(ln.last_due, self.reorder_stage, a, b, frame)
        else:
            self.reorder_stage(a, b, frame)

    def reorder_stage(self, a, b, frame):
        imp = self.link_imp.get((a, b), self.default)
        ln = self.links.get((a, b))
        if imp.reorder and (ln is None or not ln.held) \
                and self.rng.random() * 100.0 < imp.reorder:
            if ln is None:
                ln = self.link(a, b)
            ln.held.append(frame)
            self.add_timer(self.reorder_hold, self.release_held, a, b,
                           ln.hold_gen)
            return
        self.output(b, frame)
        if ln is not None and ln.held:
            self.c["reordered"] += len(ln.held)
            for f in ln.held:
                self.output(b, f)
            ln.held = []
            ln.hold_gen += 1

    def release_held(self, a, b, gen):
        ln = self.links.get((a, b))
        if ln is None or ln.hold_gen != gen or not ln.held:
            return
        for f in ln.held:
            self.output(b, f)
        ln.held = []
        ln.hold_gen += 1

    # ---------------------------------------------------------------- output
    def port_connect(self, port):
        now = time.monotonic()
        if now < port.retry_at:
            return False
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.setblocking(False)
        try:
            s.connect(port.path)
        except OSError as e:
            s.close()
            port.retry_at = now + 0.2
            self.log_rl("connect%d" % port.node, "node %d: connect %s: %s"
                        % (port.node, port.path, e.strerror or e))
            return False
        port.sock = s
        return True

    def port_disconnect(self, port):
        """Forget the output socket; frames still queued for the old peer
        are lost (counted in send_errors)."""
        if port.queue:
            self.c["send_errors"] += len(port.queue)
            port.queue.clear()
        if port.sock is None:
            return
        if port.want_write:
            self.sel.unregister(port.sock)
            port.want_write = False
        port.sock.close()
        port.sock = None

    def output(self, node, frame):
        port = self.ports[node]
        if port.queue and len(port.queue) >= OUTPUT_QUEUE_MAX:
            # Full: make sure the peer is still there at all (a vanished
            # peer must not leave a stuck queue behind).
            self.on_writable(port)
        if port.queue:
            if len(port.queue) >= OUTPUT_QUEUE_MAX:
                self.c["overflow"] += 1
                self.log_rl("overflow%d" % node, "node %d not reading: output "
                            "queue full, frames dropped" % node)
                return
            port.queue.append(frame)
            return
        for attempt in (0, 1):
            if port.sock is None and not self.port_connect(port):
                self.c["send_errors"] += 1
                return
            try:
                port.sock.send(frame)
                return
            except (BlockingIOError, InterruptedError):
                port.queue.append(frame)
                self.want_write(port)
                return
            except OSError as e:
                # Peer gone (VM killed) or replaced (VM restarted on the
                # same path): reconnect once, then count and move on.
                self.port_disconnect(port)
                if attempt:
                    self.c["send_errors"] += 1
                    port.retry_at = time.monotonic() + 0.2
                    self.log_rl("send%d" % node, "node %d: send: %s"
                                % (node, e.strerror or e))

    def want_write(self, port):
        if not port.want_write:
            self.sel.register(port.sock, selectors.EVENT_WRITE,
                              lambda mask, p=port: self.on_writable(p))
            port.want_write = True

    def on_writable(self, port):
        q = port.queue
        while q:
            try:
                port.sock.send(q[0])
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.log_rl("send%d" % port.node, "node %d: send: %s "
                            "(%d queued frames lost)" % (port.node, e.strerror
                                                         or e, len(q)))
                self.port_disconnect(port)
                return
            q.popleft()
        if port.want_write:
            self.sel.unregister(port.sock)
            port.want_write = False

    # ---------------------------------------------------------------- TCP
    def track_tcp(self, frame, node):
        t = parse_tcp(frame)
        if t is None or self.reset_port not in (t.sport, t.dport):
            return
        key = (t.ver, t.saddr, t.sport, t.daddr, t.dport)
        rkey = (t.ver, t.daddr, t.dport, t.saddr, t.sport)
        flows = self.flows
        if t.flags & TCP_RST:
            flows.pop(key, None)
            flows.pop(rkey, None)
            return
        d = flows.get(key)
        if t.flags & TCP_SYN and not t.flags & TCP_ACK:
            # A new connection on this 4-tuple replaces any old state.
            if d is not None and d.snd_nxt == (t.seq + 1) & 0xFFFFFFFF:
                pass  # SYN retransmission
            else:
                flows.pop(rkey, None)
                d = None
        if d is None:
            if len(flows) >= FLOWS_MAX:
                self.prune_flows(force=True)
            d = flows[key] = FlowDir()
        d.node = node
        d.smac = t.smac
        d.dmac = t.dmac
        end = (t.seq + t.plen + (1 if t.flags & TCP_SYN else 0)
               + (1 if t.flags & TCP_FIN else 0)) & 0xFFFFFFFF
        if d.snd_nxt is None or seq_geq(end, d.snd_nxt):
            d.snd_nxt = end
        if t.flags & TCP_ACK:
            if not d.has_ack or seq_geq(t.ack, d.ack):
                d.ack = t.ack
                d.window = t.window
                d.has_ack = True
        if t.flags & TCP_FIN:
            d.fin = True
        d.last = time.monotonic()

    def prune_flows(self, force=False):
        now = time.monotonic()
        dead = []
        for key, d in self.flows.items():
            r = self.flows.get((key[0], key[3], key[4], key[1], key[2]))
            closed = (d.fin and r is not None and r.fin) or r is None
            idle = now - d.last
            if idle > FLOW_IDLE_S or (closed and idle > FLOW_CLOSED_IDLE_S):
                dead.append(key)
        if force and not dead:
            dead = sorted(self.flows, key=lambda k: self.flows[k].last)[
                :len(self.flows) // 8 + 1]
        for key in dead:
            self.flows.pop(key, None)
        if not force:
            self.prune_sctp()
            self.add_timer(PRUNE_EVERY_S, self.prune_flows)

    def connections(self, a=None, b=None):
        """Known, not closed connections with the reset port on either side,
        optionally only those between nodes a and b.  Returns (k1, d1, k2,
        d2) tuples where d2 is None when only one direction was seen (then
        only if that direction sent within HALF_OPEN_S)."""
        seen = set()
        out = []
        now = time.monotonic()
        for key, d in self.flows.items():
            ver, sa, sp, da, dp = key
            rkey = (ver, da, dp, sa, sp)
            canon = min(key, rkey)
            if canon in seen:
                continue
            seen.add(canon)
            if self.reset_port not in (sp, dp):
                continue
            r = self.flows.get(rkey)
            if d.fin and r is not None and r.fin:
                continue
            if r is None and now - d.last > HALF_OPEN_S:
                continue
            if a is not None:
                n1 = d.node
                n2 = r.node if r is not None else self.macs.get(d.dmac)
                if {n1, n2} != {a, b}:
                    continue
            out.append((key, d, rkey, r))
        return out

    def rst_to(self, key, d, r):
        """Frames that reset the end that sent direction ``key``/``d``.

        The RST comes from the other end: addresses and ports swapped,
        sending MAC = the other end's MAC, seq = this end's rcv_nxt, which is
        the ack it last sent.  If the other end sent data this end has not
        acked yet (delayed ACK), its rcv_nxt may already be the other end's
        snd_nxt, so that value is sent too; a non-exact in-window RST only
        triggers a challenge ACK, which the already-reset peer answers with
        an exact RST.  ACK flag set with ack = this end's snd_nxt, so an end
        still in SYN-SENT accepts it as well."""
        ver, saddr, sport, daddr, dport = key
        seqs = []
        if d.has_ack:
            seqs.append(d.ack)
        if r is not None and r.snd_nxt is not None and r.snd_nxt not in seqs:
            seqs.append(r.snd_nxt)
        if not seqs:
            seqs.append(0)
        return [build_tcp_frame(ver, d.dmac, d.smac, daddr, saddr, dport, sport,
                                s, d.snd_nxt or 0, TCP_RST | TCP_ACK, 0)
                for s in seqs]

    def kill_connection(self, k1, d1, k2, d2):
        sent = 0
        for key, d, r in ((k1, d1, d2), (k2, d2, d1)):
            if d is None:
                # Never heard from this end: reconstruct its view from what
                # the other end sent.
                other = r
                d = FlowDir()
                d.node = self.macs.get(other.dmac)
                d.smac, d.dmac = other.dmac, other.smac
                d.snd_nxt = other.ack if other.has_ack else None
                d.has_ack = True
                d.ack = other.snd_nxt
                r = None
            if d.node is None:
                continue
            for f in self.rst_to(key, d, r):
                if self.pcap is not None:
                    self.pcap_write(f)
                self.output(d.node, f)
                sent += 1
        self.c["rst_frames"] += sent
        self.flows.pop(k1, None)
        self.flows.pop(k2, None)
        ver, sa, sp, da, dp = k1
        self.log("reset %s:%d <-> %s:%d (%d RST frames)" %
                 (fmt_addr(ver, sa), sp, fmt_addr(ver, da), dp, sent))

    def do_reset(self, a=None, b=None):
        conns = self.connections(a, b)
        for c in conns:
            self.kill_connection(*c)
        assocs = self.sctp_assocs(a, b) if self.sctp else []
        for key, d in assocs:
            self.abort_assoc(key, d)
        self.c["resets"] += len(conns) + len(assocs)
        return len(conns) + len(assocs)

    def reset_tick(self, gen, period, a, b):
        if gen != self.reset_gen:
            return
        self.do_reset(a, b)
        self.add_timer(period, self.reset_tick, gen, period, a, b)

    # ---------------------------------------------------------------- SCTP
    def track_sctp(self, frame, node):
        if len(frame) < 34 or frame[23] != IPPROTO_SCTP and frame[20] != IPPROTO_SCTP:
            return      # cheap test: IPv4 protocol byte or IPv6 next header
        t = parse_sctp(frame)
        if t is None or self.reset_port not in (t.sport, t.dport):
            return
        key = (t.ver, t.saddr, t.sport, t.daddr, t.dport)
        if t.chunk in (SCTP_ABORT, SCTP_SHUTDOWN_COMPLETE):
            # The association is over (on this address pair; other pairs of
            # it age out).
            self.sctp.pop(key, None)
            self.sctp.pop((t.ver, t.daddr, t.dport, t.saddr, t.sport), None)
            return
        if t.vtag == 0:
            return      # INIT: no association yet
        if len(self.sctp) >= FLOWS_MAX:
            self.prune_sctp(force=True)
        self.sctp[key] = SctpDir(node, t.smac, t.dmac, t.vtag, time.monotonic())

    def prune_sctp(self, force=False):
        now = time.monotonic()
        for key in [k for k, d in self.sctp.items() if now - d.last > SCTP_RECENT_S]:
            del self.sctp[key]
        if force and len(self.sctp) >= FLOWS_MAX:
            self.sctp.clear()

    def assoc_of(self, key, d):
        """An association's identity: its ends' (node, port), sorted."""
        return tuple(sorted([(d.node, key[2]), (self.macs.get(d.dmac), key[4])],
                            key=lambda e: (e[0] or 0, e[1])))

    def sctp_assocs(self, a=None, b=None):
        """Recently seen SCTP associations (between nodes a and b): one
        (key, SctpDir) per association, its most recent direction.  An
        association is told apart by its two ends' nodes and ports, so the
        address pairs of a multihomed one count once."""
        now = time.monotonic()
        best = {}
        for key, d in self.sctp.items():
            if now - d.last > SCTP_RECENT_S:
                continue
            peer = self.macs.get(d.dmac)
            if peer is None:
                continue
            if a is not None and {d.node, peer} != {a, b}:
                continue
            assoc = self.assoc_of(key, d)
            if assoc not in best or best[assoc][1].last < d.last:
                best[assoc] = (key, d)
        return [best[k] for k in sorted(best)]

    def abort_assoc(self, key, d):
        """ABORT both ends of the association of direction key/d: to its
        receiver with the tag it sent (the receiver's own), to its sender
        with the same tag and the T bit (the sender's peer's tag)."""
        ver, sa, sp, da, dp = key
        frames = [(self.macs.get(d.dmac),
                   build_sctp_abort(ver, d.smac, d.dmac, sa, da, sp, dp, d.vtag)),
                  (d.node, build_sctp_abort(ver, d.dmac, d.smac, da, sa, dp, sp,
                                            d.vtag, reflect=True))]
        sent = 0
        for node, f in frames:
            if node is None:
                continue
            if self.pcap is not None:
                self.pcap_write(f)
            self.output(node, f)
            sent += 1
        self.c["abort_frames"] += sent
        # Forget every direction and address pair of this association.
        assoc = self.assoc_of(key, d)
        for k in [k for k, x in self.sctp.items() if self.assoc_of(k, x) == assoc]:
            del self.sctp[k]
        self.log("abort SCTP %s:%d <-> %s:%d (%d ABORT frames)" %
                 (fmt_addr(ver, sa), sp, fmt_addr(ver, da), dp, sent))
        return sent

    # ---------------------------------------------------------------- control
    def on_accept(self, _mask):
        try:
            s, _ = self.ctl.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.log_rl("accept", "accept on hub.ctl: %s" % e)
            return
        s.setblocking(False)
        cl = CtlClient(s)
        self.clients[s.fileno()] = cl
        self.sel.register(s, selectors.EVENT_READ,
                          lambda mask, c=cl: self.on_client(c, mask))

    def client_close(self, cl):
        try:
            self.sel.unregister(cl.sock)
        except (KeyError, ValueError):
            pass
        self.clients.pop(cl.sock.fileno(), None)
        cl.sock.close()

    def on_client(self, cl, mask):
        if mask & selectors.EVENT_WRITE:
            self.client_flush(cl)
            if cl.sock.fileno() < 0:
                return
        if not mask & selectors.EVENT_READ:
            return
        try:
            data = cl.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.client_close(cl)
            return
        cl.inbuf += data
        while True:
            i = cl.inbuf.find(b"\n")
            if i < 0:
                break
            line, cl.inbuf = cl.inbuf[:i], cl.inbuf[i + 1:]
            self.client_reply(cl, self.command_bytes(line))
            if self.stopping or cl.sock.fileno() < 0:
                return
        if len(cl.inbuf) > CTL_LINE_MAX:
            cl.inbuf = b""
            self.client_reply(cl, "err line too long (max %d bytes)"
                              % CTL_LINE_MAX)

    def client_reply(self, cl, reply):
        cl.outbuf += reply.encode() + b"\n"
        self.client_flush(cl)

    def client_flush(self, cl):
        try:
            while cl.outbuf:
                n = cl.sock.send(cl.outbuf)
                cl.outbuf = cl.outbuf[n:]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.client_close(cl)
            return
        ev = selectors.EVENT_READ | (selectors.EVENT_WRITE if cl.outbuf else 0)
        try:
            self.sel.modify(cl.sock, ev, self.sel.get_key(cl.sock).data)
        except (KeyError, ValueError):
            pass

    def command_bytes(self, line):
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            self.c["ctl_errors"] += 1
            return "err command is not UTF-8"
        if not text:
            self.c["ctl_errors"] += 1
            return "err empty command"
        try:
            reply = self.command(text)
        except CtlError as e:
            self.c["ctl_errors"] += 1
            reply = "err %s" % e
        if text.split()[0].lower() not in self.QUIET_COMMANDS \
                or reply.startswith("err"):
            self.log("ctl: %s -> %s" % (text, reply))
        return reply

    def parse_pct(self, s):
        try:
            v = float(s)
        except ValueError:
            raise CtlError("not a percentage: %r" % s)
        if not 0.0 <= v <= 100.0:
            raise CtlError("percentage out of range 0..100: %s" % s)
        return v

    def parse_ms(self, s, what="MS"):
        try:
            v = float(s)
        except ValueError:
            raise CtlError("%s is not a number: %r" % (what, s))
        if not 0.0 <= v <= 3600000.0:
            raise CtlError("%s out of range 0..3600000: %s" % (what, s))
        return v

    def parse_node(self, s):
        try:
            n = int(s)
        except ValueError:
            raise CtlError("not a node id: %r" % s)
        if n not in self.ports:
            raise CtlError("no node %d (nodes are 1..%d)" % (n, self.nodes))
        return n

    def parse_pair(self, args, usage):
        if not args:
            return None, None
        if len(args) != 2:
            raise CtlError("usage: " + usage)
        a, b = self.parse_node(args[0]), self.parse_node(args[1])
        if a == b:
            raise CtlError("link needs two different nodes")
        return a, b

    def set_impair(self, field, value, a, b):
        if a is None:
            setattr(self.default, field, value)
            for imp in self.link_imp.values():
                setattr(imp, field, value)
            return
        for k in ((a, b), (b, a)):
            imp = self.link_imp.get(k)
            if imp is None:
                imp = self.link_imp[k] = self.default.copy()
            setattr(imp, field, value)

    def stats_line(self):
        spoken = ",".join(str(p.node) for p in self.ports.values() if p.spoken)
        queued = sum(len(p.queue) for p in self.ports.values())
        return " ".join(["%s=%d" % (k, self.c[k]) for k in self.COUNTERS] +
                        ["flows=%d" % len(self.flows), "queued=%d" % queued,
                         "spoken=%s" % (spoken or "-")])

    def command(self, text):
        words = text.split()
        cmd, args = words[0].lower(), words[1:]
        if cmd == "stats":
            if args:
                raise CtlError("usage: stats")
            return "ok " + self.stats_line()
        if cmd in ("drop", "dup", "reorder"):
            usage = "%s PCT [A B]" % cmd
            if not args:
                raise CtlError("usage: " + usage)
            v = self.parse_pct(args[0])
            a, b = self.parse_pair(args[1:], usage)
            self.set_impair(cmd, v, a, b)
            return "ok"
        if cmd == "delay":
            usage = "delay MS [JITTER_MS] [A B]"
            if len(args) not in (1, 2, 3, 4):
                raise CtlError("usage: " + usage)
            ms = self.parse_ms(args[0])
            jitter = 0.0
            rest = args[1:]
            if len(rest) in (1, 3):
                jitter = self.parse_ms(rest[0], "JITTER_MS")
                rest = rest[1:]
            a, b = self.parse_pair(rest, usage)
            self.set_impair("delay", ms, a, b)
            self.set_impair("jitter", jitter, a, b)
            return "ok"
        if cmd == "clear":
            if args:
                raise CtlError("usage: clear")
            self.default = Impair()
            self.link_imp = {}
            return "ok"
        if cmd == "partition":
            if not args:
                raise CtlError("usage: partition 1,2 3 (groups of node ids)")
            groups = {}
            for gi, g in enumerate(args):
                for s in g.split(","):
                    if not s:
                        raise CtlError("empty node id in group %r" % g)
                    n = self.parse_node(s)
                    if n in groups:
                        raise CtlError("node %d named twice" % n)
                    groups[n] = gi
            self.groups = groups
            return "ok"
        if cmd == "heal":
            if args:
                raise CtlError("usage: heal")
            self.groups = None
            return "ok"
        if cmd in ("cut", "uncut"):
            if args:
                raise CtlError("usage: " + cmd)
            if self.cut != (cmd == "cut"):
                self.log("segment %s (%d frames dropped by cuts so far)" %
                         ("cut: every frame dropped" if cmd == "cut" else "uncut",
                          self.c["cut"]))
            self.cut = cmd == "cut"
            return "ok"
        if cmd == "reset":
            a, b = self.parse_pair(args, "reset [A B]")
            return "ok killed=%d" % self.do_reset(a, b)
        if cmd == "reset-every":
            usage = "reset-every MS [A B]"
            if not args:
                raise CtlError("usage: " + usage)
            ms = self.parse_ms(args[0])
            if ms < 1:
                raise CtlError("reset-every needs MS >= 1")
            a, b = self.parse_pair(args[1:], usage)
            self.reset_gen += 1
            self.reset_every = (ms, a, b)
            self.add_timer(ms / 1000.0, self.reset_tick, self.reset_gen,
                           ms / 1000.0, a, b)
            return "ok"
        if cmd == "reset-stop":
            if args:
                raise CtlError("usage: reset-stop")
            self.reset_gen += 1
            self.reset_every = None
            return "ok"
        if cmd == "seed":
            if len(args) != 1:
                raise CtlError("usage: seed S")
            try:
                s = int(args[0], 0)
            except ValueError:
                raise CtlError("seed is not an integer: %r" % args[0])
            self.rng.seed(s)
            self.seed = s
            return "ok"
        if cmd == "pcap":
            if len(args) != 1:
                raise CtlError("usage: pcap PATH | pcap off")
            if args[0] == "off":
                return "ok captured=%d" % self.pcap_close()
            path = os.path.join(self.dir, args[0])
            try:
                self.pcap_open(path)
            except OSError as e:
                raise CtlError("pcap %s: %s" % (path, e.strerror or e))
            self.log("pcap: recording in %s" % path)
            return "ok file=%s" % path
        if cmd == "quit":
            if args:
                raise CtlError("usage: quit")
            self.stopping = True
            return "ok"
        # Additions beyond the interface the cluster runner relies on.
        if cmd == "ping":
            return "ok pid=%d" % os.getpid()
        if cmd == "show":
            parts = ["seed=%d" % self.seed,
                     "default=%s" % (self.default.describe() or "-")]
            for (a, b), imp in sorted(self.link_imp.items()):
                parts.append("link%d-%d=%s" % (a, b, imp.describe() or "-"))
            if self.groups is not None:
                gs = {}
                for n, g in sorted(self.groups.items()):
                    gs.setdefault(g, []).append(str(n))
                parts.append("partition=" + "/".join(
                    ",".join(v) for _, v in sorted(gs.items())))
            if self.cut:
                parts.append("cut=1")
            if self.pcap_path is not None:
                parts.append("pcap=%s" % self.pcap_path)
            if self.reset_every is not None:
                ms, a, b = self.reset_every
                parts.append("reset_every=%g%s" % (
                    ms, "" if a is None else ":%d-%d" % (a, b)))
            return "ok " + " ".join(parts)
        if cmd == "flows":
            conns = self.connections()
            parts = ["connections=%d" % len(conns)]
            for k1, d1, k2, d2 in conns:
                ver, sa, sp, da, dp = k1
                parts.append("%s:%d-%s:%d" % (fmt_addr(ver, sa), sp,
                                              fmt_addr(ver, da), dp))
            return "ok " + " ".join(parts)
        if cmd == "help":
            return ("ok commands=stats,drop,delay,dup,reorder,clear,partition,"
                    "heal,cut,uncut,reset,reset-every,reset-stop,seed,pcap,quit,ping,"
                    "show,flows,help")
        raise CtlError("unknown command %r (try help)" % cmd)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True,
                    help="directory for hub.sock, hub.ctl, hub.pid, node<N>.sock")
    ap.add_argument("--nodes", type=int, required=True, help="node ids 1..N")
    ap.add_argument("--seed", type=int, default=0, help="PRNG seed")
    ap.add_argument("--log", help="append log lines to FILE (default stderr)")
    ap.add_argument("--reorder-hold-ms", type=float, default=20.0,
                    help="longest time a reordered frame waits for a frame "
                    "to overtake it (default 20)")
    ap.add_argument("--reset-port", type=int, default=DLM_PORT,
                    help="TCP port whose connections reset kills (default %d)"
                    % DLM_PORT)
    ap.add_argument("--pcap", help="write frames received from nodes and "
                    "crafted RSTs to this pcap file")
    args = ap.parse_args(argv)
    if not 1 <= args.nodes <= 64:
        ap.error("--nodes must be 1..64")
    logf = open(args.log, "a", buffering=1) if args.log else None
    if logf is None:
        # A runner that pipes our stderr and never reads it must not be able
        # to stall forwarding: on a pipe, log lines that do not fit are lost.
        try:
            if stat.S_ISFIFO(os.fstat(2).st_mode):
                os.set_blocking(2, False)
        except OSError:
            pass
    hub = Hub(os.path.abspath(args.dir), args.nodes, args.seed, logf,
              args.reorder_hold_ms, args.reset_port)
    if args.pcap:
        hub.pcap_open(args.pcap)
    hub.bind()
    try:
        print("hub ready", flush=True)
        hub.run()
    finally:
        hub.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
