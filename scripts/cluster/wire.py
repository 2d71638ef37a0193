# SPDX-License-Identifier: GPL-2.0
"""The wire oracle: Debian's tshark decodes a capture of the hub (hub.py
``pcap PATH``) with its own DLM3 dissector, and check() judges every DLM
frame of it.  tshark knows nothing of our code, so what it decodes is an
independent view of what went over the wire.

    python3 scripts/cluster/wire.py CAPTURE.pcap [--incomplete]

prints the report and exits 1 if the capture breaks a rule.

Rules (a "direction" is one sending node and one receiving node, across
all TCP connections between them; nodes are known by their IP address):

Frames
  F1. No frame with a port-21064 TCP segment is malformed or carries an
      expert item of severity error (tshark checks TCP and IP checksums
      too).
  F2. Every byte of every port-21064 stream is part of a DLM message that
      tshark dissected: per stream and direction, the h_length of the
      messages adds up to the bytes sent (so nothing is undecodable or
      left unfinished; the capture must end after the traffic settled).
      With complete=True every stream must start with its SYN in the
      capture; otherwise streams older than the capture are not counted.
      Segments tshark marks as TCP retransmissions or out of order are
      left out: the hub recorded their bytes already, but tshark hands
      fast and spurious retransmissions to the DLM3 dissector again.

Messages (DLM 3.2)
  M1. Every message has h_version 0x00030002 and the sender's node id in
      h_nodeid.
  M2. A message on its own is a DLM_ACK (exactly 16 bytes) or a DLM_RCOM
      (the stateless RCOM_STATUS and its reply); everything else is
      wrapped in a DLM_OPTS whose o_optlen is 0, whose o_nextcmd equals
      the inner h_cmd (DLM_MSG, DLM_RCOM or DLM_FIN), whose inner header
      has the same version and node id, and whose h_length is 24 plus the
      inner h_length.  An inner DLM_FIN is 16 bytes.

Sequence numbers (u.h_seq of DLM_OPTS and DLM_ACK; comparisons modulo 2^32)
  S1. No gap: in each direction a DLM_OPTS carries either the next new
      number (one more than the highest sent so far; 0 for the first of a
      session when the capture is complete) or a number already sent.
  S2. Numbers already sent come again only in resend runs (a
      retransmission by the DLM; TCP's own retransmissions are left out):
      a run is a series of repeated numbers each one more than the last,
      and a run may only start after a connection event between the two
      nodes (a SYN, RST or FIN on any connection between them) that
      happened after the run's first number was first sent and after the
      previous run of that direction started.  Each event allows one run,
      because each is what makes a DLM resend (C after a socket error
      copies every unacknowledged message behind what it still has to
      send; ours resends them when it reconnects, or when the peer
      connects again while its own connection looks alive).  Without such
      an event the numbers rise by exactly one: in a capture whose
      connections never change after they are set up, nothing repeats.
  S3. ACKs are never ahead: a DLM_ACK from B to A carries at most one more
      than the highest number A has sent to B so far in the capture (the
      hub records a frame when it receives it, before it forwards it, so
      a message is always recorded before any answer to it).
  S4. ACKs never go back within a connection: in each direction, the
      ACKs a connection carries after its first one never fall.  Both
      layers queue an ACK with the value of the moment, in order, so the
      queue's order is the values' order.  The first ACK of a connection
      is exempt: ours sends its current value ahead of everything still
      queued when it reconnects (the last ACK may have gone with the old
      connection), and the ACKs queued while the connection was down
      then follow below it (seen in *partition*: 30 queued ACKs of 2109
      after the new connection's ACK 2110; ACK 1125, then two queued
      1124s never sent before).  An ACK below the highest one sent
      before in that direction is counted (stale_acks); a receiver
      ignores it.  A value that falls within a connection after its first
      ACK would be a receive state gone back: an error.
  A session (the numbering between two midcomms resets) ends with a
  DLM_FIN in that direction: after it, a DLM_OPTS numbered 0 starts a new
  session for that direction (and a new ACK series for its answers).  A
  node that restarts without a FIN (killed) is outside what these rules
  describe.
"""

import argparse
import html
import os
import re
import subprocess
import sys
import threading

DLM_PORT = 21064
DLM_VERSION_3_2 = 0x00030002
DLM_MSG, DLM_RCOM, DLM_OPTS, DLM_ACK, DLM_FIN = 1, 2, 3, 4, 5
HEADER_LEN = 16
OPTS_LEN = 24
PI_ERROR = 0x00800000           # epan/proto.h: expert severity "error"
CMD_NAMES = {1: "MSG", 2: "RCOM", 3: "OPTS", 4: "ACK", 5: "FIN"}
TSHARK = os.environ.get("TSHARK", "tshark")
# tshark's marks of a TCP segment that repeats bytes sent before.  Its TCP
# dissector hands fast and spurious retransmissions to the DLM3 dissector
# again (only plain ones are held back), so their messages are counted
# twice unless left out.
# (PDML_LINE lists them: tcp.analysis.retransmission, fast_retransmission,
# spurious_retransmission and out_of_order.)


def tshark_version():
    try:
        out = subprocess.run([TSHARK, "--version"], capture_output=True, text=True).stdout
    except OSError:
        return "missing"
    m = re.search(r"TShark \(Wireshark\) (\S+)", out)
    return m.group(1) if m else "unknown"


def tshark_argv(path, port=DLM_PORT):
    return [TSHARK, "-r", path, "-n",
            "-d", "tcp.port==%d,dlm3" % port,
            "-o", "tcp.desegment_tcp_streams:TRUE",
            "-o", "tcp.analyze_sequence_numbers:TRUE",
            "-o", "tcp.relative_sequence_numbers:TRUE",
            "-o", "tcp.no_subdissector_on_error:TRUE",
            "-o", "tcp.check_checksum:TRUE",
            "-o", "ip.check_checksum:TRUE",
            "-T", "pdml", "-J", "ip tcp dlm3 _ws.malformed _ws.expert"]


def seq_lt(a, b):
    return a != b and ((b - a) & 0xFFFFFFFF) < 0x80000000


def seq_add(a, n):
    return (a + n) & 0xFFFFFFFF


class Pdu:
    """One DLM message as tshark dissected it (outer header; for a
    DLM_OPTS also the inner one)."""
    __slots__ = ("version", "seq", "nodeid", "length", "cmd", "nextcmd", "optlen",
                 "inner")

    def __init__(self):
        self.version = self.seq = self.nodeid = self.length = self.cmd = None
        self.nextcmd = self.optlen = self.inner = None


class Frame:
    __slots__ = ("num", "src", "dst", "sport", "dport", "stream", "tcp_seq", "tcp_len",
                 "syn", "fin", "rst", "retrans", "malformed", "expert", "pdus")

    def __init__(self):
        self.num = 0
        self.src = self.dst = None
        self.sport = self.dport = self.stream = None
        self.tcp_seq = self.tcp_len = 0
        self.syn = self.fin = self.rst = self.retrans = False
        self.malformed = False
        self.expert = []        # [severity, message, protocol]
        self.pdus = []

    @property
    def errors(self):
        """Expert items of severity error, as text."""
        return ["%s: %s" % (p, m) for sev, m, p in self.expert
                if sev is not None and sev >= PI_ERROR]


def _num(s):
    """A PDML show (or value) attribute as an integer, or None."""
    try:
        return int(s, 16) if s.startswith(b"0x") else int(s)
    except (AttributeError, TypeError, ValueError):
        return None


# The PDML lines parse_pdml reads: packet boundaries, every proto, and the
# fields it needs (everything else, most of tshark's output, is skipped by
# the regular expression in C).
PDML_LINE = re.compile(
    rb'^( *)<(?:(packet)>|(/packet)>|proto name="([^"]*)"|field name="('
    rb'num|ip\.src|ip\.dst|ipv6\.src|ipv6\.dst|'
    rb'tcp\.(?:srcport|dstport|stream|seq|len|flags\.(?:syn|fin|reset)|'
    rb'analysis\.(?:retransmission|fast_retransmission|spurious_retransmission|'
    rb'out_of_order))|'
    rb'_ws\.expert\.(?:severity|message)|_ws\.expert|'
    rb'dlm3\.h\.(?:version|seq|lockspac|nodeid|length|cmd)|dlm3\.o\.(?:nextcmd|optlen)'
    rb')"(?:[^\n]*? show="([^"]*)")?(?:[^\n]*? value="([^"]*)")?)', re.M)
TCP_FIELDS = {b"tcp.srcport": "sport", b"tcp.dstport": "dport", b"tcp.stream": "stream",
              b"tcp.seq": "tcp_seq", b"tcp.len": "tcp_len", b"tcp.flags.syn": "syn",
              b"tcp.flags.fin": "fin", b"tcp.flags.reset": "rst"}


def pdml_chunks(f, size=1 << 22):
    """Pieces of the PDML stream f that end with a whole packet."""
    rest = b""
    while True:
        data = f.read(size)
        if not data:
            if rest:
                yield rest
            return
        data = rest + data
        cut = data.rfind(b"</packet>")
        if cut < 0:
            rest = data
            continue
        cut += len(b"</packet>")
        yield data[:cut]
        rest = data[cut:]


def parse_pdml(f):
    """Frames from tshark's PDML (a binary file object).  PDML has one
    element a line, indented two spaces a level; a DLM message is a
    top-level dlm3 proto whose outer header fields are its direct children
    (indented 4), and the inner header of a DLM_OPTS lies directly below
    dlm3.o.nextcmd.  Much cheaper than an XML tree for the 20 kB tshark
    writes per frame."""
    fr = None
    proto = None            # name of the top-level proto being read
    pdu = None
    inner_indent = None     # indentation of the inner header's fields
    for chunk in pdml_chunks(f):
        for m in PDML_LINE.finditer(chunk):
            ind, start, end, pname, name, show, value = m.groups()
            if start:
                fr = Frame()
                proto = pdu = None
                continue
            if end:
                if fr is not None:
                    for p in fr.pdus:
                        if p.inner is not None and p.inner.cmd is None:
                            p.inner = None      # o_nextcmd seen, inner not decoded
                    yield fr
                fr = None
                continue
            if fr is None:
                continue
            if pname is not None:
                if len(ind) != 2:
                    continue        # a proto inside a proto (not used here)
                proto = pname
                if proto == b"dlm3":
                    pdu = Pdu()
                    fr.pdus.append(pdu)
                    inner_indent = None
                elif proto == b"_ws.malformed":
                    fr.malformed = True
                continue
            indent = len(ind)
            if name == b"num":
                if proto == b"geninfo":
                    fr.num = _num(show)
            elif name in (b"ip.src", b"ipv6.src"):
                fr.src = show.decode()
            elif name in (b"ip.dst", b"ipv6.dst"):
                fr.dst = show.decode()
            elif name.startswith(b"tcp."):
                if proto != b"tcp":
                    continue
                attr = TCP_FIELDS.get(name)
                if attr is None:
                    fr.retrans = True       # one of RETRANS_FIELDS
                elif attr in ("syn", "fin", "rst"):
                    setattr(fr, attr, bool(_num(show)))
                else:
                    setattr(fr, attr, _num(show))
            elif name == b"_ws.expert":
                fr.expert.append([None, None, proto.decode()])
            elif name == b"_ws.expert.severity":
                if fr.expert:
                    fr.expert[-1][0] = _num(show)
            elif name == b"_ws.expert.message":
                if fr.expert:
                    fr.expert[-1][1] = html.unescape(show.decode())
            elif proto == b"dlm3" and pdu is not None:
                if indent == 4:
                    if name.startswith(b"dlm3.h."):
                        _set_header(pdu, name, show, value)
                elif name == b"dlm3.o.nextcmd" and indent == 6:
                    pdu.nextcmd = _num(show)
                    pdu.inner = Pdu()
                    inner_indent = indent + 2
                elif name == b"dlm3.o.optlen" and indent == 6:
                    pdu.optlen = _num(show)
                elif indent == inner_indent and name.startswith(b"dlm3.h."):
                    _set_header(pdu.inner, name, show, value)


def _set_header(pdu, name, show, value):
    if name == b"dlm3.h.cmd":
        # The raw byte: for the message inside a DLM_OPTS the dissector
        # shows o_nextcmd in place of the inner h_cmd.
        pdu.cmd = _num(b"0x" + value) if value else None
        if pdu.cmd is None:
            pdu.cmd = _num(show)
    elif name == b"dlm3.h.version":
        pdu.version = _num(show)
    elif name in (b"dlm3.h.seq", b"dlm3.h.lockspac"):
        pdu.seq = _num(show)
    elif name == b"dlm3.h.nodeid":
        pdu.nodeid = _num(show)
    elif name == b"dlm3.h.length":
        pdu.length = _num(show)


def frames(path, port=DLM_PORT):
    """Decode path with tshark; yields a Frame per packet."""
    proc = subprocess.Popen(tshark_argv(path, port), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    # tshark's stderr (a warning line or two) must not fill its pipe.
    err = []
    t = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    t.start()
    try:
        yield from parse_pdml(proc.stdout)
    finally:
        proc.stdout.close()
        rc = proc.wait()
        t.join()
        proc.stderr.close()
    if rc != 0:
        raise RuntimeError("tshark failed (rc %d) on %s: %s" % (
            rc, path, b"".join(err).decode(errors="replace").strip()[-500:]))


class Report:
    """What check() found.  breaks counts connections that ended (an RST or
    FIN) and connects of a node to a peer it had connected to before (its
    earlier connection died, or a connect attempt failed); resent counts
    DLM_OPTS that repeat a number, in `runs` resend runs."""

    def __init__(self):
        self.errors = []
        self.frames = 0
        self.dlm_frames = 0
        self.pdus = 0
        self.counts = {}
        self.opts = {}          # (src, dst) -> messages numbered (new ones)
        self.resent = 0
        self.runs = 0
        self.tcp_retrans = 0
        self.acks = 0
        self.streams = 0
        self.breaks = 0
        self.stale_acks = 0

    def error(self, fr, msg):
        self.errors.append("frame %d: %s" % (fr.num, msg) if fr else msg)

    def summary(self):
        return ("%d frames, %d with DLM data (%d TCP retransmissions), %d DLM messages (%s), "
                "%d TCP connections, %d breaks, %d DLM retransmissions in %d runs, "
                "%d stale ACKs (below one sent before), %d problem(s)" % (
                    self.frames, self.dlm_frames, self.tcp_retrans, self.pdus,
                    " ".join("%s=%d" % (CMD_NAMES.get(k, k), v)
                             for k, v in sorted(self.counts.items())),
                    self.streams, self.breaks, self.resent, self.runs, self.stale_acks,
                    len(self.errors)))


class Direction:
    """Sequence state of one direction (sender -> receiver) in a session."""

    def __init__(self):
        self.max = None         # highest number sent
        # number -> connection events before it was first sent (a number
        # sent before the capture began counts as sent before any event)
        self.first_gen = {}
        self.run_last = None    # last number of the current resend run
        self.run_gen = None     # connection events when the last run began
        self.fin = False        # a DLM_FIN was sent: seq 0 may start a new session
        self.ack = None         # highest ACK value the receiver sent for this direction
        # stream -> highest ACK value on that connection after its first
        # ACK (None while only the first was seen)
        self.conn_ack = {}


def check(path, addrs, complete=True, port=DLM_PORT):
    """Decode path with tshark and judge it (rules in the module doc).
    addrs maps an IP address (as tshark prints it) to a node id.  Returns
    a Report; report.errors lists every broken rule."""
    return judge(frames(path, port), addrs, complete, port)


def judge(frame_iter, addrs, complete=True, port=DLM_PORT):
    rep = Report()
    dirs = {}               # (a, b) -> Direction
    stream_bytes = {}       # (stream, src) -> highest relative seq end
    stream_pdus = {}        # (stream, src) -> sum of h_length
    stream_syn = set()      # streams whose SYN was captured
    opened = set()          # streams whose first SYN was seen
    pair_gen = {}           # frozenset({a, b}) -> connection events so far
    connected = set()       # (initiator, peer) that opened a connection before
    stream_dead = set()     # streams with an RST or FIN seen

    def d(a, b):
        if (a, b) not in dirs:
            dirs[(a, b)] = Direction()
        return dirs[(a, b)]

    def event(pair):
        pair_gen[pair] = pair_gen.get(pair, 0) + 1

    for fr in frame_iter:
        rep.frames += 1
        if fr.stream is None or port not in (fr.sport, fr.dport):
            continue
        a, b = addrs.get(fr.src), addrs.get(fr.dst)
        if a is None or b is None:
            rep.error(fr, "DLM traffic between unknown addresses %s -> %s" % (fr.src, fr.dst))
            continue
        pair = frozenset((a, b))
        if fr.syn and fr.stream not in opened:
            opened.add(fr.stream)
            event(pair)
            stream_syn.add(fr.stream)
            rep.streams += 1
            # A node that connects to a peer again lost its connection.
            if (a, b) in connected:
                rep.breaks += 1
            connected.add((a, b))
        if (fr.rst or fr.fin) and fr.stream not in stream_dead:
            stream_dead.add(fr.stream)
            event(pair)
            rep.breaks += 1
        if fr.malformed:
            rep.error(fr, "%s -> %s: malformed (tshark)" % (fr.src, fr.dst))
        for e in fr.errors:
            rep.error(fr, "%s -> %s: expert error: %s" % (fr.src, fr.dst, e))
        if fr.tcp_len:
            rep.dlm_frames += 1
            if complete and fr.stream not in stream_syn:
                rep.error(fr, "TCP stream %d has data but its SYN is not in the capture"
                          % fr.stream)
                stream_syn.add(fr.stream)
            key = (fr.stream, fr.src)
            end = fr.tcp_seq + fr.tcp_len
            if end > stream_bytes.get(key, 0):
                stream_bytes[key] = end
            if fr.retrans:
                # Bytes the capture holds already (the hub records what a
                # node sends before it drops anything): what tshark
                # decodes from them again is not new.
                rep.tcp_retrans += 1
                continue
        for p in fr.pdus:
            rep.pdus += 1
            rep.counts[p.cmd] = rep.counts.get(p.cmd, 0) + 1
            key = (fr.stream, fr.src)
            stream_pdus[key] = stream_pdus.get(key, 0) + (p.length or 0)
            what = "%d -> %d %s" % (a, b, CMD_NAMES.get(p.cmd, "cmd %s" % p.cmd))
            if p.version != DLM_VERSION_3_2:
                rep.error(fr, "%s: h_version %s, not 0x00030002" % (
                    what, None if p.version is None else "0x%08x" % p.version))
            if p.nodeid != a:
                rep.error(fr, "%s: h_nodeid %s from node %d" % (what, p.nodeid, a))
            if p.cmd == DLM_ACK:
                if p.length != HEADER_LEN:
                    rep.error(fr, "%s: h_length %s, not 16" % (what, p.length))
                rep.acks += 1
                # Node a acknowledges what node b sent to it.
                st = d(b, a)
                v = p.seq
                if v is None:
                    rep.error(fr, "%s without a value" % what)
                    continue
                if st.max is not None or complete:
                    hi = seq_add(st.max, 1) if st.max is not None else 0
                    if seq_lt(hi, v):
                        rep.error(fr, "%s %d is ahead: node %d has sent %s" % (
                            what, v, b, "nothing" if st.max is None else
                            "only up to %d" % st.max))
                # After a FIN the receiver's numbering may restart before
                # the sender's next session begins.
                if not st.fin:
                    if fr.stream in st.conn_ack:
                        hi = st.conn_ack[fr.stream]
                        if hi is not None and seq_lt(v, hi):
                            rep.error(fr, "%s %s goes back on its connection (previous "
                                      "ACK %d)" % (what, v, hi))
                        if hi is None or seq_lt(hi, v):
                            st.conn_ack[fr.stream] = v
                    else:
                        st.conn_ack[fr.stream] = None
                    if st.ack is not None and seq_lt(v, st.ack):
                        rep.stale_acks += 1
                if st.ack is None or seq_lt(st.ack, v):
                    st.ack = v
            elif p.cmd == DLM_OPTS:
                inner = p.inner
                if p.optlen != 0:
                    rep.error(fr, "%s: o_optlen %s" % (what, p.optlen))
                if inner is None and p.nextcmd == DLM_FIN:
                    # tshark does not decode an inner FIN: its length
                    # must leave room for exactly a header.
                    if p.length != OPTS_LEN + HEADER_LEN:
                        rep.error(fr, "%s: h_length %s for a FIN" % (what, p.length))
                elif inner is None:
                    rep.error(fr, "%s: no inner message decoded (o_nextcmd %s)" % (
                        what, p.nextcmd))
                else:
                    if p.nextcmd != inner.cmd:
                        rep.error(fr, "%s: o_nextcmd %s but inner h_cmd %s" % (
                            what, p.nextcmd, inner.cmd))
                    if inner.cmd not in (DLM_MSG, DLM_RCOM, DLM_FIN):
                        rep.error(fr, "%s: inner h_cmd %s" % (what, inner.cmd))
                    if inner.version != p.version or inner.nodeid != p.nodeid:
                        rep.error(fr, "%s: inner header version %s node %s differs" % (
                            what, inner.version, inner.nodeid))
                    if inner.length is None or p.length != OPTS_LEN + (p.optlen or 0) + \
                            inner.length:
                        rep.error(fr, "%s: h_length %s but inner h_length %s" % (
                            what, p.length, inner.length))
                    if inner.cmd == DLM_FIN and inner.length != HEADER_LEN:
                        rep.error(fr, "%s: inner FIN of %s bytes" % (what, inner.length))
                st = d(a, b)
                s = p.seq
                if s is None:
                    rep.error(fr, "%s: no sequence number" % what)
                    continue
                if st.fin and s == 0:
                    # A new session after the FIN handshake.
                    dirs[(a, b)] = st = Direction()
                gen = pair_gen.get(pair, 0)
                if st.max is None or s == seq_add(st.max, 1) or seq_lt(st.max, s):
                    if st.max is None and complete and s != 0:
                        rep.error(fr, "%s: first message of the session numbered %d, "
                                  "not 0" % (what, s))
                    elif st.max is not None and s != seq_add(st.max, 1):
                        rep.error(fr, "%s %d skips ahead: the last new number was %d" % (
                            what, s, st.max))
                    st.max = s
                    st.first_gen[s] = gen
                    rep.opts[(a, b)] = rep.opts.get((a, b), 0) + 1
                else:
                    rep.resent += 1
                    if st.run_last is not None and s == seq_add(st.run_last, 1):
                        st.run_last = s
                    elif gen > st.first_gen.get(s, -1) and (st.run_gen is None or
                                                             gen > st.run_gen):
                        st.run_gen, st.run_last = gen, s
                        rep.runs += 1
                    else:
                        st.run_last = None
                        rep.error(fr, "%s %d repeats a number already sent (highest %d) "
                                  "with no connection event between nodes %d and %d since "
                                  "it was first sent%s" % (
                                      what, s, st.max, a, b,
                                      "" if st.run_gen is None else
                                      " and the last resend run began"))
                if p.nextcmd == DLM_FIN:
                    st.fin = True
            elif p.cmd == DLM_RCOM:
                pass    # stateless RCOM_STATUS / STATUS_REPLY
            else:
                rep.error(fr, "%s: not allowed outside a DLM_OPTS in 3.2" % what)
    for key, n in sorted(stream_bytes.items()):
        # Relative sequence numbers start at 1 after the SYN.
        sent = n - 1 if key[0] in stream_syn else None
        got = stream_pdus.get(key, 0)
        if sent is not None and sent != got:
            rep.error(None, "TCP stream %d from %s: %d bytes sent, %d bytes in dissected "
                      "DLM messages" % (key[0], key[1], sent, got))
    return rep


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pcap")
    ap.add_argument("--incomplete", action="store_true",
                    help="the capture began after the traffic did")
    ap.add_argument("--nodes", type=int, default=3,
                    help="node N is 192.0.2.N (default 3 nodes)")
    args = ap.parse_args(argv)
    addrs = {"192.0.2.%d" % i: i for i in range(1, args.nodes + 1)}
    rep = check(args.pcap, addrs, complete=not args.incomplete)
    print(rep.summary())
    for e in rep.errors:
        print("  " + e)
    return 1 if rep.errors else 0


if __name__ == "__main__":
    sys.exit(main())
