#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Client for the dlm-rs test hub (scripts/hub.py).

As a module::

    import hubctl
    proc = hubctl.start_hub(d, nodes=3, seed=1, log=d + "/hub.log")
    with hubctl.HubClient(d) as hub:
        hub.drop(10, 1, 2)
        killed = hub.reset()
        print(hub.stats()["frames"])
    hubctl.stop_hub(proc)

As a command::

    python3 scripts/hubctl.py --dir D stats
    python3 scripts/hubctl.py --dir D partition 1,2 3
    echo -e 'drop 5\\nstats' | python3 scripts/hubctl.py --dir D -

prints the hub's reply line(s); exits 1 if any reply is ``err ...``.
"""

import argparse
import os
import selectors
import socket
import subprocess
import sys
import time

HUB_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hub.py")


class HubError(Exception):
    """The hub answered ``err <message>``."""


def parse_reply(line):
    """``ok k=v ...`` -> dict (ints where the value is an integer);
    ``err msg`` -> HubError."""
    if line == "ok" or line.startswith("ok "):
        out = {}
        for tok in line[3:].split():
            k, sep, v = tok.partition("=")
            if not sep:
                out[k] = True
                continue
            try:
                out[k] = int(v)
            except ValueError:
                out[k] = v
        return out
    if line.startswith("err"):
        raise HubError(line[4:] if len(line) > 4 else "error")
    raise HubError("malformed reply %r" % line)


def _sel(a, b):
    if (a is None) != (b is None):
        raise ValueError("give both nodes of the link or neither")
    return [] if a is None else [str(a), str(b)]


class HubClient:
    """One connection to D/hub.ctl; commands are answered in order."""

    def __init__(self, where, timeout=10.0):
        path = where
        if os.path.isdir(where):
            path = os.path.join(where, "hub.ctl")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def raw(self, line):
        """Send one command line, return the reply line (without newline)."""
        if "\n" in line:
            raise ValueError("one command per call")
        self.sock.sendall(line.encode() + b"\n")
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("hub closed the control connection")
            self.buf += chunk
        reply, self.buf = self.buf.split(b"\n", 1)
        return reply.decode()

    def command(self, *words):
        return parse_reply(self.raw(" ".join(str(w) for w in words)))

    # Convenience wrappers, one per hub command.
    def stats(self):
        return self.command("stats")

    def drop(self, pct, a=None, b=None):
        return self.command("drop", pct, *_sel(a, b))

    def delay(self, ms, jitter_ms=0, a=None, b=None):
        return self.command("delay", ms, jitter_ms, *_sel(a, b))

    def dup(self, pct, a=None, b=None):
        return self.command("dup", pct, *_sel(a, b))

    def reorder(self, pct, a=None, b=None):
        return self.command("reorder", pct, *_sel(a, b))

    def clear(self):
        return self.command("clear")

    def partition(self, *groups):
        """partition([1, 2], [3]) or partition("1,2", "3")."""
        args = [g if isinstance(g, str) else ",".join(str(n) for n in g)
                for g in groups]
        return self.command("partition", *args)

    def heal(self):
        return self.command("heal")

    def reset(self, a=None, b=None):
        return self.command("reset", *_sel(a, b))["killed"]

    def reset_every(self, ms, a=None, b=None):
        return self.command("reset-every", ms, *_sel(a, b))

    def reset_stop(self):
        return self.command("reset-stop")

    def seed(self, s):
        return self.command("seed", s)

    def pcap(self, path):
        """Start recording frames in path (relative: in the hub's
        directory); returns the file's absolute path."""
        return self.command("pcap", path)["file"]

    def pcap_off(self):
        """Stop recording; returns the number of frames recorded."""
        return self.command("pcap", "off")["captured"]

    def quit(self):
        return self.command("quit")


def start_hub(directory, nodes=3, seed=0, log=None, timeout=10.0, extra=()):
    """Start hub.py, wait for ``hub ready``; returns the Popen.  Raises
    RuntimeError (with the hub's stderr) if it does not come up."""
    cmd = [sys.executable, HUB_PY, "--dir", directory, "--nodes", str(nodes),
           "--seed", str(seed)]
    if log:
        cmd += ["--log", log]
    cmd += list(extra)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=None,
                            text=True)
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not sel.select(left):
            sel.close()
            proc.kill()
            proc.wait()
            proc.stdout.close()
            raise RuntimeError("hub did not print 'hub ready' within %gs" % timeout)
        line = proc.stdout.readline()
        if line.strip() == "hub ready":
            sel.close()
            return proc
        if not line:
            sel.close()
            proc.wait()
            proc.stdout.close()
            raise RuntimeError("hub exited with status %s before ready"
                               % proc.returncode)


def stop_hub(proc, timeout=5.0):
    """SIGTERM the hub and wait; SIGKILL if it does not stop in time.
    Returns its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()
    return proc.returncode


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Send commands to the dlm-rs hub (scripts/hub.py).")
    ap.add_argument("--dir", required=True, help="hub directory (with hub.ctl)")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("command", nargs="+",
                    help="one command (words), or '-' to read lines from stdin")
    args = ap.parse_args(argv)
    if args.command == ["-"]:
        lines = [ln.strip() for ln in sys.stdin if ln.strip()]
    else:
        lines = [" ".join(args.command)]
    status = 0
    try:
        with HubClient(args.dir, args.timeout) as hub:
            for ln in lines:
                reply = hub.raw(ln)
                print(reply, flush=True)
                if not reply.startswith("ok"):
                    status = 1
    except OSError as e:
        print("hubctl: %s: %s" % (args.dir, e), file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
