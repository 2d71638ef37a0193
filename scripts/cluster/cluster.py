# SPDX-License-Identifier: GPL-2.0
"""QEMU cluster runner for dlm-rs (python3 stdlib only).

A Cluster boots N (2..3) TCG guests from the test kernel and an initramfs
(scripts/cluster/initramfs.py), joined by the fault-injecting L2 hub
(scripts/hub.py) and sharing one raw disk image.  Each guest runs a command
agent on a virtio-serial port; the host runs shell scripts there with a
timeout and gets rc/stdout/stderr back.  Everything lives in one run
directory (build/run-<timestamp>/ by default):

    hub.sock hub.ctl hub.log     the hub and its log
    node<N>.sock                 node N's end of the L2 segment
    segb/ hub-b.log              networks=2: segment B's hub (segb/hub.sock,
                                 segb/hub.ctl, segb/node<N>.sock) and its log
    agent<N>.sock qmp<N>.sock    command channel and QMP of node N
    console<N>.log qemu<N>.log   serial console and QEMU's own stderr
    shared.raw                   the shared disk (sparse)
    initramfs.cpio.gz            the guest image
    transcript.log               every agent command and its result

With the static stack (default) the host orders DLM membership changes in
two phases (stop on every member, change the member lists, start on every
member); with stack="controld" the guests run Debian's corosync and
dlm_controld, which do that themselves.  protocol="sctp" makes the DLM use
SCTP (configfs cluster/protocol 1; dlm.conf protocol=sctp); networks=2
gives every guest a second NIC on a second segment (its own hub), with
addresses 192.0.2.N (segment A, eth0) and 198.51.100.N (segment B, eth1),
both in every node's configfs comm in that order; cut_segment() and
heal_segment() take one segment down and up.  See Documentation/testing.rst.
"""

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(TOP, "build")
sys.path.insert(0, HERE)

import initramfs  # noqa: E402

CLUSTER_NAME = "dlmrs"

# Console lines that fail a run, whatever the scenario.
BAD_CONSOLE = re.compile(
    r"WARNING:|BUG:|Oops|Kernel panic|general protection fault|Call Trace:|"
    r"blocked for more than|KASAN:|UBSAN:|possible circular locking|"
    r"possible recursive locking|inconsistent lock state|"
    r"suspicious RCU usage|unreferenced object|suspected memory leak|"
    r"detected stall|rcu: INFO|soft lockup|hard LOCKUP|"
    r"GFS2 WITHDRAW|withdrawn|fatal: I/O error")


# Lines of our comms layer (rust/comms) that report a fault.  On a node that
# runs our dlm.ko each of them fails the scenario, unless the scenario declares
# a fault that legitimately produces it (opts "faults" in a SCENARIOS entry;
# Documentation/testing.rst lists the lines and the scenarios that may print
# them).  Our other lines (connecting, got connection, retransmit, version
# detected, closing connection) are routine.  One row per line:
#   name, pattern (group "peer": the node the line is about, if it names one),
#   faults that allow it, faults that allow it only when that peer is stock.
# Fault names: reset (connections killed under traffic), gap (a message
# numbered ahead is injected), badheader (frames with an impossible length or
# version), dead (a node is killed), rejoin (the others add a node to the
# lockspace before its comms listen: refused connects), partition (nodes cut
# off from each other), loss (the hub drops, duplicates, reorders, delays
# frames), alloc (allocation failures injected), hostile (adversarial frames
# from a program), rmcomm (a node's comm is removed while that node still
# connects), segcut (one network segment of a two-network cluster is cut:
# connects to an address there time out or find no route, connections on it
# time out).
OUR_WARNINGS = [
    ("message refused", r"dlm: send to node (?P<peer>\d+) refused", (), ()),
    ("send before version", r"dlm: send to node (?P<peer>\d+) before its version is known",
     (), ()),
    ("no memory", r"dlm: (no memory for .* node (?P<peer>\d+)|failed to allocate a buffer|"
     r"failed to keep partial message from node (?P<peer2>\d+))", ("alloc",), ()),
    ("unexpected state", r"dlm: node (?P<peer>\d+): unexpected state", ("hostile",), ()),
    # A comm removed and added again (rmcomm) drops our state of a node that may still hold
    # the connection lifetime we had with it, as C's dlm_midcomms_close() does: its ACKs then
    # count messages of the lifetime we dropped.
    ("ack beyond sent", r"dlm: ignore ack \d+ from node (?P<peer>\d+): we only sent up to",
     ("hostile", "rmcomm"), ()),
    ("message after FIN", r"dlm: message from node (?P<peer>\d+) after its FIN", ("hostile",), ()),
    # A stock 7.2 peer loses messages with a killed connection and never
    # resends them on its own; ours resets its connection.  A gap in what a
    # node of ours sends is always a bug.
    ("gap reset", r"dlm: node (?P<peer>\d+) skipped a message: resetting", ("gap", "hostile"),
     ("reset", "dead", "partition", "badheader")),
    ("invalid header", r"dlm: received invalid header from node (?P<peer>\d+)",
     ("badheader", "hostile"), ()),
    ("invalid message", r"dlm: invalid message from node (?P<peer>\d+)", ("hostile",), ()),
    ("version mismatch", r"dlm: version mismatch detected from node (?P<peer>\d+)",
     ("hostile",), ()),
    ("socket error", r"dlm: node \d+: socket error sending to node (?P<peer>\d+)",
     ("reset", "dead", "partition", "badheader", "hostile", "rejoin", "segcut"), ()),
    ("connect error", r"dlm: connect to node (?P<peer>\d+) try \d+ error",
     ("reset", "dead", "partition", "rejoin", "segcut"), ()),
    ("shutdown timeout", r"dlm: Connection to node (?P<peer>\d+) "
     r"(failed to shutdown|shutdown timed out)", ("dead", "partition"), ()),
    ("non-cluster connect", r"dlm: (connect from non cluster|invalid family from non cluster)",
     ("hostile", "rmcomm"), ()),
    # Allocation failures injected into the socket calls: accept's new socket
    # (-ENOMEM), and the bind of a connecting socket, which inet_csk_get_port
    # reports as -EADDRINUSE when it cannot allocate its bind bucket.  C logs
    # the same lines; the pending connection or the connect is tried again.
    ("accept no memory", r"dlm: critical error accepting connection: -12$", ("alloc",), ()),
    ("bind no memory", r"dlm: could not bind for connect: -98$", ("alloc",), ()),
    ("accept error", r"dlm: critical error accepting connection", (), ()),
    ("setup error", r"dlm: (can't start dlm_|Can't create comms socket|Can't bind|"
     r"cannot initialise comms|no local IP address|Invalid protocol identifier|"
     r"could not bind for connect)", (), ()),
    # log_event()'s catch-all for protocol events added later: "node N: Name ...".
    ("other event", r"dlm: node (?P<peer>\d+): [A-Z]\w*", (), ()),
]
OUR_WARNING_RES = [(name, re.compile(rx), allow, stock_only)
                   for name, rx, allow, stock_only in OUR_WARNINGS]
# A connect refused (ECONNREFUSED, 111) is the peer not listening yet: a
# node that joins first dials the others before their lockspace (and so
# their listening socket) exists, and C logs the same lines.  The socket
# error report that follows such a refusal carries sk_err 0 (already
# taken by the connect).  Nothing of ours can cause a refusal, so these
# never fail a scenario; any other error number still does.
OUR_BENIGN_RE = re.compile(r"dlm: (node \d+: socket error sending to node \d+, sk_err=(0|111)$|"
                           r"connect to node \d+ try \d+ error -111$)")


def our_warning(line, faults, dlm):
    """The name of the OUR_WARNINGS row that line (a console line of a node
    running our dlm.ko) matches and that faults do not allow, or None.  dlm:
    the cluster's per-node list, to tell whether the named peer is stock."""
    if OUR_BENIGN_RE.search(line.rstrip()):
        return None
    for name, rx, allow, stock_only in OUR_WARNING_RES:
        m = rx.search(line)
        if not m:
            continue
        if any(f in allow for f in faults):
            return None
        peer = next((int(v) for k, v in m.groupdict().items()
                     if k.startswith("peer") and v), None)
        if (peer is not None and 1 <= peer <= len(dlm) and dlm[peer - 1] == "stock" and
                any(f in stock_only for f in faults)):
            return None
        return name
    return None


class ClusterError(Exception):
    pass


class CommandFailed(ClusterError):
    pass


class CommandTimeout(ClusterError):
    pass


class NodeDead(ClusterError):
    pass


def now():
    return time.monotonic()


def time_scale(kdir):
    """Timeouts are multiplied by this: 3 for a debug (KASAN) kernel, which
    is several times slower under TCG."""
    try:
        with open(os.path.join(kdir, ".config")) as f:
            if "CONFIG_KASAN=y" in f.read():
                return 3
    except OSError:
        pass
    return 1


class Result:
    def __init__(self, node, script, rc, out, err, secs):
        self.node, self.script, self.rc = node, script, rc
        self.out, self.err, self.secs = out, err, secs

    def kv(self, prefix=None):
        """key=value pairs of the last stdout line (starting with prefix)."""
        lines = [l for l in self.out.splitlines() if l.strip()]
        if prefix:
            lines = [l for l in lines if l.startswith(prefix)]
        if not lines:
            raise ClusterError("node %d: no %s line in output of %r: %r" %
                               (self.node, prefix or "result", self.script, self.out))
        return dict(re.findall(r"(\w+)=(\S*)", lines[-1]))


class Pending:
    """A command running in a guest."""

    def __init__(self, agent, cid, script, timeout):
        self.agent, self.cid, self.script, self.timeout = agent, cid, script, timeout
        self.started = now()
        self.done = threading.Event()
        self.result = None
        self.error = None

    def wait(self, check=True):
        # The guest kills the command at `timeout`; the host allows slack on
        # top for the reply to arrive.
        left = self.started + self.timeout + 15 - now()
        if not self.done.wait(max(0, left)):
            raise CommandTimeout("node %d: command timed out after %ds: %s" %
                                 (self.agent.node, self.timeout, short(self.script)))
        if self.error:
            raise self.error
        r = self.result
        if check and r.rc != 0:
            raise CommandFailed("node %d: rc=%d%s: %s\nstdout: %s\nstderr: %s" % (
                r.node, r.rc, " (guest timeout)" if r.rc == 137 else "",
                short(self.script), r.out.strip()[-2000:], r.err.strip()[-2000:]))
        return r


def short(s, n=160):
    s = " ".join(s.split())
    return s if len(s) <= n else s[:n] + "..."


class Agent:
    """Host end of a guest's command agent (see guest/agent)."""

    def __init__(self, node, path, transcript):
        self.node, self.path, self.transcript = node, path, transcript
        self.sock = None
        self.lock = threading.Lock()
        self.pending = {}
        self.next_id = 1
        self.dead = None
        self.scale = 1
        self.ready = threading.Event()

    def connect(self, deadline, alive=lambda: True):
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.path)
                break
            except OSError:
                s.close()
                if not alive():
                    raise ClusterError("node %d: qemu exited before its agent socket appeared"
                                       % self.node)
                if now() > deadline:
                    raise ClusterError("node %d: cannot connect to %s" % (self.node, self.path))
                time.sleep(0.1)
        self.sock = s
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        f = self.sock.makefile("rb")
        try:
            while True:
                hdr = f.readline()
                if not hdr:
                    break
                parts = hdr.decode(errors="replace").split()
                if len(parts) == 2 and parts[0] == "READY":
                    self.ready.set()
                    continue
                if len(parts) != 5 or parts[0] != "R":
                    continue
                cid, rc, no, ne = (int(x) for x in parts[1:])
                out = f.read(no)
                err = f.read(ne)
                p = self.pending.pop(cid, None)
                if p is None:
                    continue
                p.result = Result(self.node, p.script, rc, out.decode(errors="replace"),
                                  err.decode(errors="replace"), now() - p.started)
                self.transcript.write("node%d #%d rc=%d %.1fs: %s\n%s%s" % (
                    self.node, cid, rc, p.result.secs, short(p.script, 400),
                    indent(p.result.out), indent(p.result.err, "! ")))
                p.done.set()
        except (OSError, ValueError):
            pass
        self.mark_dead(NodeDead("node %d: agent connection closed" % self.node))

    def mark_dead(self, err):
        self.dead = err
        for p in list(self.pending.values()):
            p.error = err
            p.done.set()
        self.pending.clear()

    def start(self, script, timeout=60):
        if self.dead:
            raise self.dead
        timeout = int(timeout * self.scale)
        with self.lock:
            cid = self.next_id
            self.next_id += 1
            p = Pending(self, cid, script, timeout)
            self.pending[cid] = p
            line = "C %d %d %s\n" % (cid, timeout, base64.b64encode(script.encode()).decode())
            try:
                self.sock.sendall(line.encode())
            except OSError as e:
                self.pending.pop(cid, None)
                raise NodeDead("node %d: send failed: %s" % (self.node, e))
        return p

    def run(self, script, timeout=60, check=True):
        return self.start(script, timeout).wait(check)


def indent(text, prefix="  "):
    if not text:
        return ""
    return "".join(prefix + l + "\n" for l in text.rstrip("\n").split("\n"))


class Transcript:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()
        self.t0 = now()

    def write(self, text):
        with self.lock:
            self.f.write("[%7.1f] %s" % (now() - self.t0, text))


class Node:
    def __init__(self, cluster, nodeid, dlm):
        self.c = cluster
        self.id = nodeid
        self.dlm = dlm
        d = cluster.dir
        self.console = os.path.join(d, "console%d.log" % nodeid)
        self.qmp_path = os.path.join(d, "qmp%d.sock" % nodeid)
        self.agent = Agent(nodeid, os.path.join(d, "agent%d.sock" % nodeid), cluster.transcript)
        self.agent.scale = cluster.scale
        self.proc = None
        self.alive = False

    def qemu_argv(self):
        c = self.c
        d = c.dir
        n = self.id
        # tsc=unstable: the kernel has no HPET or ACPI PM timer to calibrate
        # the TSC against (no ACPI), and under TCG its PIT calibration now
        # and then "succeeds" with a value 5-17 times too low, making the
        # guest's clock run that much fast (corosync then sees token
        # timeouts all the time, and hung-task limits fire early).  Most
        # boots mark the TSC unstable by themselves and run on jiffies;
        # this makes every boot do so.
        append = ("console=ttyS0 panic=-1 printk.devkmsg=on tsc=unstable "
                  "dlmrs.node=%d dlmrs.nodes=%d dlmrs.cluster=%s dlmrs.dlm=%s dlmrs.stack=%s" %
                  (n, c.n, CLUSTER_NAME, "stock" if self.dlm == "stock" else "alt", c.stack))
        # The defaults (TCP, one network) add nothing: the command line and
        # the argv of such a cluster are what they always were.
        if c.protocol != "tcp":
            append += " dlmrs.protocol=%s" % c.protocol
        if c.networks > 1:
            append += " dlmrs.nets=%d" % c.networks
        argv = [
            c.qemu, "-accel", "tcg", "-m", str(c.mem), "-smp", "1",
            "-nographic", "-monitor", "none", "-no-reboot",
            "-kernel", c.bzimage, "-initrd", c.initrd, "-append", append,
            "-serial", "file:" + self.console,
            "-netdev", "dgram,id=n0,local.type=unix,local.path=%s/node%d.sock,"
                       "remote.type=unix,remote.path=%s/hub.sock" % (d, n, d),
            "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:%02x" % n,
            "-drive", "file=%s,format=raw,if=none,cache=%s,id=d0" % (c.disk, c.cache),
            "-device", "virtio-blk-pci,drive=d0,share-rw=on,serial=dlmrs-shared",
            "-device", "virtio-serial-pci",
            "-chardev", "socket,id=ag,path=%s,server=on,wait=off" % self.agent.path,
            "-device", "virtserialport,chardev=ag,name=dlmrs.agent",
            "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path,
        ]
        if c.networks > 1:
            # Segment B: a second NIC (eth1) on the second hub, whose
            # directory is segb/ (the hub names its sockets hub.sock and
            # node<N>.sock in its own directory).
            b = os.path.join(d, SEGB_DIR)
            i = argv.index("-drive")
            argv[i:i] = [
                "-netdev", "dgram,id=n1,local.type=unix,local.path=%s/node%d.sock,"
                           "remote.type=unix,remote.path=%s/hub.sock" % (b, n, b),
                "-device", "virtio-net-pci,netdev=n1,mac=52:54:00:12:35:%02x" % n]
        return argv

    def boot(self):
        argv = self.qemu_argv()
        self.c.transcript.write("node%d qemu: %s\n" % (self.id, " ".join(argv)))
        self.qemu_log = open(os.path.join(self.c.dir, "qemu%d.log" % self.id), "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.qemu_log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.alive = True

    def connect(self, deadline):
        self.agent.connect(deadline, lambda: self.proc.poll() is None)
        # Wait for the agent's READY line; as a fallback (READY written
        # before we connected) ping now and then.
        last_ping = now()
        while True:
            if self.proc.poll() is not None:
                raise ClusterError("node %d: qemu exited with %s; see %s" %
                                   (self.id, self.proc.returncode, self.console))
            if self.agent.ready.wait(1):
                break
            if now() - last_ping > 30:
                last_ping = now()
                r = self.agent.start("cat /run/dlm/node", timeout=5)
                if r.done.wait(3) and r.result and r.result.rc == 0:
                    break
            if now() > deadline:
                raise ClusterError("node %d: agent did not answer; see %s" % (self.id, self.console))
        r = self.agent.run("cat /run/dlm/node", timeout=30)
        if r.out.strip() != str(self.id):
            raise ClusterError("node %d answered as %r" % (self.id, r.out))

    def run(self, script, timeout=60, check=True):
        return self.agent.run(script, timeout, check)

    def start(self, script, timeout=60):
        return self.agent.start(script, timeout)

    def qmp(self, *cmds):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.qmp_path)
        f = s.makefile("rwb")
        f.readline()
        out = []
        for cmd in ({"execute": "qmp_capabilities"},) + cmds:
            f.write(json.dumps(cmd).encode() + b"\n")
            f.flush()
            while True:
                line = f.readline()
                if not line:
                    break
                m = json.loads(line)
                if "return" in m or "error" in m:
                    out.append(m)
                    break
        s.close()
        return out

    def kill(self):
        """Crash the node: SIGKILL its QEMU (no shutdown, no FIN, no RST)."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.alive = False
        self.agent.mark_dead(NodeDead("node %d was killed" % self.id))

    def quit(self):
        """Stop the VM through QMP quit (falls back to SIGKILL)."""
        if self.proc and self.proc.poll() is None:
            try:
                self.qmp({"execute": "quit"})
                self.proc.wait(10)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                self.kill()
        self.alive = False
        self.agent.mark_dead(NodeDead("node %d was stopped" % self.id))

    def console_text(self):
        try:
            with open(self.console, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""


STACKS = ("static", "controld")
PROTOCOLS = ("tcp", "sctp")
# Segment B's hub directory inside the run directory (networks=2).
SEGB_DIR = "segb"


class Cluster:
    def __init__(self, kdir, n=3, dlm=None, run_dir=None, name="run", mem=768,
                 disk_mb=1024, seed=1, mkfs=None, log=None, initrd=None, stack="static",
                 protocol="tcp", networks=1):
        if not 2 <= n <= 9:
            raise ClusterError("2..9 nodes")
        if stack not in STACKS:
            raise ClusterError("stack must be one of %s" % (STACKS,))
        if protocol not in PROTOCOLS:
            raise ClusterError("protocol must be one of %s" % (PROTOCOLS,))
        if networks not in (1, 2):
            raise ClusterError("networks must be 1 or 2")
        # The DLM's transport (configfs cluster/protocol, dlm.conf protocol=)
        # and the number of network segments (one NIC and hub each).
        self.protocol = protocol
        self.networks = networks
        # static: the harness's dlm-controller, membership ordered by the host;
        # controld: corosync + dlm_controld in the guests (guest/cluster-stack).
        self.stack = stack
        self.kdir = kdir
        self.scale = time_scale(kdir)
        self.n = n
        self.dlm = dlm or ["stock"] * n
        if len(self.dlm) != n:
            raise ClusterError("--dlm needs one entry per node")
        self.mem = mem
        self.disk_mb = disk_mb
        self.seed = seed
        self.mkfs = mkfs
        self.logf = log or (lambda m: print(m, flush=True))
        if run_dir is None:
            run_dir = os.path.join(BUILD, "run-%s-%d-%s" % (time.strftime("%Y%m%d-%H%M%S"),
                                                        os.getpid(), name))
        self.dir = os.path.abspath(run_dir)
        os.makedirs(self.dir, exist_ok=True)
        self.transcript = Transcript(os.path.join(self.dir, "transcript.log"))
        self.qemu = "qemu-system-x86_64"
        self.bzimage = os.path.join(kdir, "arch/x86/boot/bzImage")
        self.initrd = initrd
        self.disk = os.path.join(self.dir, "shared.raw")
        self.cache = "none"
        self.hub = None
        self.hubs = {}
        self.hub_procs = []
        self.nodes = {}

    def log(self, msg):
        self.logf(msg)
        self.transcript.write("# %s\n" % msg)

    # --- bring-up ---------------------------------------------------------

    def prepare(self):
        if not os.path.exists(self.bzimage):
            raise ClusterError("no bzImage in %s (build the kernel first)" % self.kdir)
        alts = sorted(set(d for d in self.dlm if d != "stock"))
        if len(alts) > 1:
            raise ClusterError("one alternative dlm.ko per run, got %s" % alts)
        if self.initrd is None:
            self.initrd = os.path.join(self.dir, "initramfs.cpio.gz")
            initramfs.build(self.kdir, self.initrd, alts[0] if alts else None)
        with open(self.disk, "wb") as f:
            f.truncate(self.disk_mb << 20)
        if self.mkfs:
            subprocess.run(self.mkfs + [self.disk], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.STDOUT)
        if not odirect_ok(self.dir):
            self.cache = "writethrough"

    def hub_argv(self, seg="a"):
        """The command line of segment seg's hub (a: the run directory, as
        always; b: SEGB_DIR inside it, logging to hub-b.log)."""
        hubpy = os.path.join(TOP, "scripts", "hub.py")
        d = self.dir if seg == "a" else os.path.join(self.dir, SEGB_DIR)
        log = os.path.join(self.dir, "hub.log" if seg == "a" else "hub-%s.log" % seg)
        return [sys.executable, hubpy, "--dir", d, "--nodes", str(self.n),
                "--seed", str(self.seed), "--log", log]

    def start_hub(self):
        for seg in "ab"[:self.networks]:
            argv = self.hub_argv(seg)
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    text=True, start_new_session=True)
            self.hub_procs.append(proc)
            if seg == "a":
                self.hub_proc = proc
            line = proc.stdout.readline()
            if "hub ready" not in line:
                raise ClusterError("hub of segment %s did not start: %r" % (seg, line))
            self.hubs[seg] = Hub(os.path.join(argv[argv.index("--dir") + 1], "hub.ctl"))
        self.hub = self.hubs["a"]

    def cut_segment(self, seg):
        """Take network segment seg ("a" or "b") down: its hub drops every
        frame until heal_segment(seg)."""
        self.hubs[seg].cmd("cut")
        self.log("segment %s cut" % seg)

    def heal_segment(self, seg):
        self.hubs[seg].cmd("uncut")
        self.log("segment %s healed" % seg)

    def boot(self, timeout=180):
        t0 = now()
        self.prepare()
        self.start_hub()
        for i in range(1, self.n + 1):
            self.nodes[i] = Node(self, i, self.dlm[i - 1])
            self.nodes[i].boot()
        deadline = now() + timeout * self.scale
        for node in self.nodes.values():
            node.connect(deadline)
        for node in self.nodes.values():
            r = node.run("cat /sys/module/dlm/initstate", check=False)
            if r.out.strip() != "live":
                raise ClusterError("node %d: dlm.ko (%s) is not loaded; see %s" %
                                   (node.id, node.dlm, node.console))
        if self.stack == "controld":
            self.wait_stack(sorted(self.nodes), timeout=timeout)
        self.log("booted %d nodes (%s, %s stack) in %.1fs; run dir %s" % (
            self.n, ",".join(self.dlm), self.stack, now() - t0, self.dir))

    def wait_stack(self, ids, members=None, timeout=120):
        """controld stack: wait until corosync on each of ids is quorate with
        exactly `members` (default ids) and dlm_controld sees the same."""
        want = ",".join(str(i) for i in sorted(members or ids))
        t = int(timeout * self.scale)
        try:
            self.on(ids, "cluster-stack wait %s %d" % (want, t), timeout=t + 30)
        except CommandFailed as e:
            raise ClusterError("corosync/dlm_controld membership is not %s: %s" % (want, e))
        self.log("corosync quorate and dlm_controld running on %s with members %s" %
                 (ids, want))

    def __enter__(self):
        try:
            self.boot()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(self, *exc):
        self.shutdown()

    def shutdown(self):
        for node in self.nodes.values():
            if node.proc and node.proc.poll() is None:
                node.kill()
        for hub in self.hubs.values():
            try:
                hub.cmd("quit")
            except (OSError, ClusterError):
                pass
        for hp in self.hub_procs:
            try:
                hp.wait(5)
            except subprocess.TimeoutExpired:
                hp.kill()
                hp.wait()
            if hp.stdout:
                hp.stdout.close()
        self.hub = None
        self.hubs = {}
        self.hub_procs = []

    # --- running things -----------------------------------------------------

    def node(self, i):
        return self.nodes[i]

    def alive(self):
        return [i for i, n in sorted(self.nodes.items()) if n.alive]

    def on(self, ids, script, timeout=60, check=True):
        """Run script on several nodes in parallel; {id: Result}.

        script may be a function of the node id."""
        pend = {i: self.nodes[i].start(script(i) if callable(script) else script, timeout)
                for i in ids}
        res, errors = {}, []
        for i, p in pend.items():
            try:
                res[i] = p.wait(check)
            except ClusterError as e:
                errors.append(e)
        if errors:
            raise errors[0]
        return res

    # --- DLM membership (the host plays corosync) ---------------------------

    def join(self, ls, ids, timeout=120):
        """All of ids join ls at once (static membership: each join waits for
        the others; under dlm_controld each join is its own change)."""
        self.log("join %s on %s" % (ls, ids))
        if self.stack == "controld":
            self.on(ids, "dlmt join %s" % ls, timeout)
            return
        members = " ".join(str(i) for i in ids)
        self.on(ids, "dlm-controller members %s '%s' && dlmt join %s" % (ls, members, ls),
                timeout)

    def recover_count(self, i, ls):
        """Recoveries node i finished in ls so far (from its console log)."""
        return self.console_count([i], r"dlm: %s: dlm_recover \d+ generation \d+ done" %
                                  re.escape(ls))

    def change_members(self, ls, ids, members, between=None, wait=True, timeout=120):
        """Two-phase membership change on the running members ids: stop all,
        set the member list (and run between(), e.g. rmdir a dead comm), start
        all, then wait until each has finished a new recovery."""
        self.log("membership %s: stop %s, members -> %s, start" % (ls, ids, members))
        before = {i: self.recover_count(i, ls) for i in ids}
        self.on(ids, "dlm-controller stop %s" % ls)
        lst = " ".join(str(m) for m in members)
        self.on(ids, "dlm-controller members %s '%s'" % (ls, lst))
        if between:
            between()
        self.on(ids, "dlm-controller start %s" % ls)
        if wait:
            self.wait_recovered(ls, ids, before, timeout)

    def leave(self, ls, x, others, cmd=None, timeout=180):
        """Node x leaves ls (cmd: `dlmt leave`, or e.g. `umount`), and the
        running members `others` drop it, in dlm_controld's order: x's
        lock traffic ends and its release sends the offline uevent; once
        x's controller has answered it, the others stop, drop x and start
        while x's release finishes (its DLM_FIN handshake with the others
        completes only when they have removed it)."""
        cmd = cmd or "dlmt leave %s" % ls
        self.log("node %d leaves %s (%s)" % (x, ls, cmd))
        if self.stack == "controld":
            # dlm_controld drops x from the others when x's leave is done.
            before = {i: self.recover_count(i, ls) for i in others}
            self.nodes[x].run(cmd, timeout)
            if others:
                self.wait_recovered(ls, others, before, timeout)
            return
        pat = "offline %s done" % ls
        count = "grep -c '%s$' /run/dlm/controller.log || true" % pat
        before = int(self.nodes[x].run(count).out.strip() or 0)
        p = self.nodes[x].start(cmd, timeout)
        if others:
            deadline = now() + timeout
            while int(self.nodes[x].run(count).out.strip() or 0) <= before:
                if p.done.is_set():
                    p.wait()
                    break
                if now() > deadline:
                    raise ClusterError("node %d: no offline uevent for %s" % (x, ls))
                time.sleep(0.3)
            self.change_members(ls, others, others)
        p.wait()

    def wait_recovered(self, ls, ids, before, timeout=120):
        deadline = now() + timeout * self.scale
        left = set(ids)
        while left:
            for i in sorted(left):
                if self.recover_count(i, ls) > before[i]:
                    left.discard(i)
            if not left:
                break
            if now() > deadline:
                raise ClusterError("%s: recovery did not finish on %s within %ds" %
                                   (ls, sorted(left), timeout))
            time.sleep(1)

    def anchor(self, node, ls, res):
        """Hold an NL lock on res on node until the returned function is
        called.  An LVB only lives while some lock exists on its resource
        (tools/dlmt/README.rst), and the first node to lock a resource
        becomes its master."""
        n = self.nodes[node]
        n.run("dlmt hold %s --res %s --mode NL > /tmp/anchor.out 2>&1 & "
              "echo $! > /tmp/anchor.pid; i=0; while ! grep -q ready=1 /tmp/anchor.out; "
              "do i=$((i+1)); [ $i -lt 600 ] || { cat /tmp/anchor.out; exit 1; }; "
              "usleep 100000; done" % (ls, res), timeout=90)

        def release():
            n.run("kill $(cat /tmp/anchor.pid); i=0; while ! grep -q released= "
                  "/tmp/anchor.out; do i=$((i+1)); [ $i -lt 300 ] || exit 1; "
                  "usleep 100000; done; cat /tmp/anchor.out", timeout=60)
        return release

    # --- checks -----------------------------------------------------------

    # Nodes whose every kmemleak report a scenario has read and judged itself
    # (kmemleak_take): kmemleak's own "N new suspected memory leaks" console
    # line then says nothing more.
    kmemleak_judged = frozenset()
    KMEMLEAK_NOTICE = re.compile(r"kmemleak: \d+ new suspected memory leaks \(see ")

    # Functions (lines -> lines) that remove what a scenario made the kernel
    # log on purpose and has judged itself, e.g. the stack dump of every
    # injected allocation failure (sc_allocfail.py); each must remove
    # exactly those lines and nothing else.
    console_filters = ()

    def console_problems(self, ids=None, faults=()):
        """Lines of the consoles that match BAD_CONSOLE, and on nodes running
        our dlm.ko the OUR_WARNINGS lines that faults (the faults the scenario
        injected) do not allow: {node: [lines]}."""
        out = {}
        for i, node in sorted(self.nodes.items()):
            if ids is not None and i not in ids:
                continue
            lines = node.console_text().splitlines()
            for f in self.console_filters:
                lines = f(lines)
            bad = []
            for l in lines:
                if BAD_CONSOLE.search(l):
                    if not (i in self.kmemleak_judged and self.KMEMLEAK_NOTICE.search(l)):
                        bad.append(l)
                elif node.dlm != "stock":
                    w = our_warning(l, faults, self.dlm)
                    if w:
                        bad.append("our warning (%s): %s" % (w, l))
            if bad:
                out[i] = bad
        return out

    def console_count(self, ids, pattern):
        """Lines matching pattern (a regular expression) on the consoles of
        ids.  The host keeps each console complete in console<N>.log, unlike
        the guest's dmesg buffer, which can wrap."""
        rx = re.compile(pattern)
        return sum(1 for i in ids for l in self.nodes[i].console_text().splitlines()
                   if rx.search(l))

    DIAG = (
        "echo \"== node $(cat /run/dlm/node) uptime $(cut -d' ' -f1 /proc/uptime)\"; "
        "for c in /sys/kernel/debug/dlm/comms/*; do [ -d \"$c\" ] || continue; "
        "echo \"comm ${c##*/}: state=$(cat $c/state) flags=$(cat $c/flags) "
        "send_queue_count=$(cat $c/send_queue_count) version=$(cat $c/version)\"; done; "
        "for f in /sys/kernel/debug/dlm/*_waiters; do [ -e \"$f\" ] || continue; "
        "echo \"-- $f\"; cat \"$f\"; done; "
        "for f in /sys/kernel/debug/dlm/*_locks; do [ -e \"$f\" ] || continue; "
        "echo \"-- $f\"; cat \"$f\"; done; "
        "echo '-- sockets'; ss -tnoi '( dport = :21064 or sport = :21064 )'; "
        "echo '-- nft ruleset (must be empty outside injection phases)'; nft list ruleset; "
        "if [ \"$(cat /run/dlm/stack)\" = controld ]; then cluster-stack status; "
        "else dlm-controller status; fi")

    # Under SCTP the DLM's connections are associations, which ss -t does not show.
    DIAG_SCTP = "; echo '-- sctp associations'; cat /proc/net/sctp/assocs 2>/dev/null"

    def diagnose(self, why, name="diag"):
        """Dump every live node's DLM state (midcomms per node, waiters,
        locks, sockets) into <run>/<name>.txt; used when traffic stalls."""
        path = os.path.join(self.dir, name + ".txt")
        pend = {}
        script = self.DIAG + (self.DIAG_SCTP if self.protocol == "sctp" else "")
        for i in self.alive():
            try:
                pend[i] = self.nodes[i].start(script, timeout=30)
            except ClusterError:
                pass
        with open(path, "a") as f:
            f.write("### %s (%s)\n" % (why, time.strftime("%H:%M:%S")))
            for i, p in sorted(pend.items()):
                try:
                    r = p.wait(check=False)
                    f.write(r.out + r.err)
                except ClusterError as e:
                    f.write("node %d: %s\n" % (i, e))
        self.log("diagnostics (%s) written to %s" % (why, path))
        return path

    def has_kmemleak(self, i):
        r = self.nodes[i].run("[ -e /sys/kernel/debug/kmemleak ] && echo yes || echo no")
        return r.out.strip() == "yes"

    def kmemleak_take(self, ids, tag):
        """Scan with kmemleak on each of ids, save any report as
        kmemleak-<tag>-<node>.txt, and clear it (the objects reported are not
        reported again).  Two scans: kmemleak reports an object only once its
        checksum stayed the same over a whole scan.  Returns {node: [objects]}
        (see parse_kmemleak)."""
        k = "/sys/kernel/debug/kmemleak"
        pend = {i: self.nodes[i].start(
            "echo scan > {k} && echo scan > {k} && cat {k} && echo clear > {k}".format(k=k),
            timeout=300) for i in ids}
        out = {}
        self.kmemleak_judged = self.kmemleak_judged | set(ids)
        for i, p in pend.items():
            r = p.wait()
            objs = parse_kmemleak(r.out)
            if objs:
                path = os.path.join(self.dir, "kmemleak-%s-%d.txt" % (tag, i))
                with open(path, "w") as f:
                    f.write(r.out)
            out[i] = objs
        return out


def parse_kmemleak(text):
    """Split a /sys/kernel/debug/kmemleak report into its objects: a list of
    lists of lines, each starting with "unreferenced object ..."."""
    objs = []
    for line in text.splitlines():
        if line.startswith("unreferenced object"):
            objs.append([line])
        elif objs and line.strip():
            objs[-1].append(line)
    return objs


class Hub:
    """Client of the hub's control socket (one command per line)."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def cmd(self, line):
        with self.lock:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(self.path)
            f = s.makefile("rwb")
            f.write(line.encode() + b"\n")
            f.flush()
            reply = f.readline().decode().strip()
            s.close()
        if not reply.startswith("ok"):
            raise ClusterError("hub: %s -> %s" % (line, reply))
        return reply

    def stats(self):
        return {k: v for k, v in re.findall(r"(\w+)=(\S+)", self.cmd("stats"))}


def odirect_ok(d):
    p = os.path.join(d, ".odirect-probe")
    try:
        fd = os.open(p, os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o600)
        os.close(fd)
        return True
    except OSError:
        return False
    finally:
        try:
            os.unlink(p)
        except OSError:
            pass


SEGMENT_NETS = {"a": "192.0.2", "b": "198.51.100"}


def node_addr(i, seg="a"):
    """Node i's address on segment seg's hub (guest/init): 192.0.2.N on
    segment A (eth0), 198.51.100.N on segment B (eth1, networks=2); both
    documentation ranges, never routed to the host."""
    return "%s.%d" % (SEGMENT_NETS[seg], i)


def default_kdir():
    env = os.environ.get("KDIR")
    if env:
        return env
    r = subprocess.run(["bash", os.path.join(TOP, "scripts", "kernel.sh")],
                       stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise ClusterError("scripts/kernel.sh failed")
    return r.stdout.strip().splitlines()[-1]


def parse_dlm(spec, n):
    """--dlm stock,stock,/path/dlm.ko (one per node; a single entry applies
    to every node)."""
    if not spec:
        return ["stock"] * n
    parts = spec.split(",")
    if len(parts) == 1:
        parts = parts * n
    if len(parts) != n:
        raise ClusterError("--dlm needs 1 or %d entries" % n)
    out = []
    for p in parts:
        if p == "stock":
            out.append(p)
        else:
            if not os.path.isfile(p):
                raise ClusterError("no such dlm.ko: %s" % p)
            out.append(os.path.abspath(p))
    return out
