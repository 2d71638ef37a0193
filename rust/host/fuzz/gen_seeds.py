#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Writes the seed corpus of the framer_codec fuzz target.

Each seed is one byte choosing how the fuzz target cuts the stream into
pieces, followed by a byte stream as a DLM peer (nodeid 1) would send it.
Layouts follow struct dlm_header / dlm_opts / dlm_message / dlm_rcom
(little-endian); see Documentation/wire-protocol.rst.
"""
import os
import struct

V31, V32 = 0x00030001, 0x00030002
MSG, RCOM, OPTS, ACK, FIN = 1, 2, 3, 4, 5
NODE = 1


def header(version, u, length, cmd, nodeid=NODE):
    return struct.pack("<IIIHBB", version, u, nodeid, length, cmd, 0)


def message(version, m_type, extra=0, lockspace=0x2a2a2a2a):
    body = struct.pack("<18I", m_type, NODE, 0, 0x10001, 0, 0, 0, 0, 0, 0,
                       0, 0x1234, 0, 5, 5, 0, 0, 0) + bytes(extra)
    return header(version, lockspace, 16 + len(body), MSG) + body


def rcom(version, rc_type, buf=b"", lockspace=0x2a2a2a2a):
    body = struct.pack("<IIQQQ", rc_type, 0, 7, 3, 2) + buf
    return header(version, lockspace, 16 + len(body), RCOM) + body


def cut(msg, n):
    """The first n bytes of msg, with h_length saying n."""
    return msg[:12] + struct.pack("<H", n) + msg[14:n]


def opts(seq, inner, options=b""):
    total = 24 + len(options) + len(inner)
    return (header(V32, seq, total, OPTS) +
            struct.pack("<BBHI", inner[14], 0, len(options), 0) + options + inner)


def fin(seq):
    return opts(seq, header(V32, 0, 16, FIN))


def ack(seq):
    return header(V32, seq, 16, ACK)


status = rcom(V32, 1, struct.pack("<III", 1, 0, 0) + bytes(4))
status_reply = rcom(V32, 5, bytes(32))
seeds = {
    "seed-3_2-session": bytes([2]) + status + status_reply +
    opts(0, message(V32, 1, 10)) + opts(1, rcom(V32, 4, bytes(40))) +
    ack(5) + opts(2, message(V32, 9)) + fin(3) + ack(7),
    "seed-3_2-bytewise": bytes([0]) + status + opts(0, message(V32, 2, 24)) +
    fin(1),
    "seed-3_1-plain": bytes([1]) + rcom(V31, 1, bytes(16)) +
    message(V31, 5, 64) + rcom(V31, 4, bytes(100)) + message(V31, 14),
    "seed-max-length": bytes([3]) + opts(9, message(V32, 1, 4072 - 88)) +
    ack(10),
    "seed-opts-options": bytes([2]) + opts(4, rcom(V32, 3, bytes(8)),
                                           options=bytes(range(8))),
    "seed-bad-length": bytes([1]) + ack(1) + header(V32, 0, 4097, ACK) +
    bytes(64),
    "seed-inner-length-lie": bytes([2]) + opts(0, header(
        V32, 0, 4096, RCOM) + struct.pack("<IIQQQ", 5, 0, 0, 0, 0)),
    "seed-partial-tail": bytes([3]) + ack(1) + opts(2, message(V32, 1))[:50],
    # Frames at and just below the 4096-byte limit, back to back, cut into
    # small pieces (byte 1) so that they pass through the carry-over; also
    # lets inputs grow to several maximal frames.
    "seed-max-frames": bytes([1]) + opts(0, message(V32, 1, 4072 - 88)) +
    ack(1) + opts(1, message(V32, 1, 4071 - 88)) +
    opts(2, message(V32, 1, 4072 - 88)) + opts(3, message(V32, 1, 4070 - 88)),
    # Inner messages below their minimum, with consistent lengths.
    "seed-inner-too-short": bytes([1]) + opts(0, cut(message(V32, 1), 40)) +
    opts(1, cut(rcom(V32, 3), 32)),
}

here = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                    "corpus", "framer_codec")
os.makedirs(here, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(here, name), "wb") as f:
        f.write(data)
    print(f"{name}: {len(data)} bytes")
