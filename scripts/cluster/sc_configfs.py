# SPDX-License-Identifier: GPL-2.0
"""Scenario configfs: the dlm configfs tree of the dlm.ko under test against
the stock one, on the same kernel.

Node 1 loads the stock dlm.ko and node 2 the alternative one (the dlm.ko
under test; the stock one again when the suite runs stock only), and both
run the same walk of /sys/kernel/config/dlm: the entries with their names,
types, modes, sizes and link counts; every attribute's default and read-back
text; a table of good writes and of bad writes (wrong sizes, out-of-range
and malformed values, unknown node ids, too many and duplicate addresses, a
missing privilege, mkdir and rmdir where configfs or dlm refuses them) with
the error each gets; and, with a one-node lockspace running, the writes
dlm refuses while its comms layer runs.  Every step's outcome must be the
same on both nodes.  Documentation/configuration.rst lists the table.

Afterwards both nodes get their own module back (the one they booted with)
and the usual end-of-scenario checks run."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from scenario import Failed, check  # noqa: E402

B = "/sys/kernel/config/dlm"
C = B + "/cluster"

CLUSTER_ATTRS = ["tcp_port", "buffer_size", "rsbtbl_size", "recover_timer", "toss_secs",
                 "scan_secs", "log_debug", "log_info", "protocol", "mark", "new_rsb_count",
                 "recover_callbacks", "cluster_name"]
CLUSTER_DEFAULTS = {"tcp_port": "21064", "buffer_size": "4096", "rsbtbl_size": "1024",
                    "recover_timer": "5", "toss_secs": "10", "scan_secs": "5",
                    "log_debug": "0", "log_info": "1", "protocol": "0", "mark": "0",
                    "new_rsb_count": "128", "recover_callbacks": "0", "cluster_name": ""}
COMM_ATTRS = ["nodeid", "local", "addr", "addr_list", "mark"]
NODE_ATTRS = ["nodeid", "weight", "release_recover"]
NODE_NAMES = ["1", "2", "010", "0x10", "7\\n"]

AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10


def sockaddr(family, addr=b"", port=0, size=128):
    """A struct sockaddr_storage (128 bytes) of family with the address
    bytes at their place (sin_addr at 4, sin6_addr at 8), cut or padded to
    size."""
    b = bytearray(128)
    b[0:2] = family.to_bytes(2, "little")
    b[2:4] = port.to_bytes(2, "big")
    off = 8 if family == AF_INET6 else 4
    b[off:off + len(addr)] = addr
    b = bytes(b[:size])
    return b + b"\0" * (size - len(b))


def v4(a, size=128):
    return sockaddr(AF_INET, bytes(int(x) for x in a.split(".")), size=size)


def v6(groups):
    return sockaddr(AF_INET6, b"".join(g.to_bytes(2, "big") for g in groups))


# The bad writes, each (label, path, bytes, the error C gives it).  The error
# is documentation: the scenario compares both modules' outcomes, whatever
# they are, and lists these in configuration.rst.
def bad_writes():
    c1, c2, c9 = C + "/comms/1", C + "/comms/2", C + "/comms/9"
    n1 = C + "/spaces/ls1/nodes/1"
    return [
        ("tcp_port zero", C + "/tcp_port", b"0", "EINVAL"),
        ("tcp_port 65536", C + "/tcp_port", b"65536", "ERANGE"),
        ("tcp_port negative", C + "/tcp_port", b"-1", "EINVAL"),
        ("tcp_port letters", C + "/tcp_port", b"abc", "EINVAL"),
        ("tcp_port trailing space", C + "/tcp_port", b"21064 ", "EINVAL"),
        ("tcp_port newline only", C + "/tcp_port", b"\n", "EINVAL"),
        ("buffer_size below 4096", C + "/buffer_size", b"4095", "EINVAL"),
        ("buffer_size 2^32", C + "/buffer_size", b"4294967296", "ERANGE"),
        ("buffer_size 0x without digits", C + "/buffer_size", b"0x", "EINVAL"),
        ("rsbtbl_size zero", C + "/rsbtbl_size", b"0", "EINVAL"),
        ("recover_timer zero", C + "/recover_timer", b"0", "EINVAL"),
        ("toss_secs zero", C + "/toss_secs", b"0\n", "EINVAL"),
        ("scan_secs zero", C + "/scan_secs", b"00", "EINVAL"),
        ("log_debug negative", C + "/log_debug", b"-1", "EINVAL"),
        ("log_info two newlines", C + "/log_info", b"1\n\n", "EINVAL"),
        ("protocol 2", C + "/protocol", b"2", "EINVAL"),
        ("protocol -0", C + "/protocol", b"-0", "EINVAL"),
        ("mark 2^32", C + "/mark", b"4294967296", "ERANGE"),
        ("new_rsb_count octal 8", C + "/new_rsb_count", b"08", "EINVAL"),
        ("recover_callbacks garbage after digit", C + "/recover_callbacks", b"1x", "EINVAL"),
        ("overflow before garbage", C + "/toss_secs", b"99999999999999999999999x", "ERANGE"),
        ("embedded NUL then digits", C + "/toss_secs", b"\x0012", "EINVAL"),
        ("comm local letters", c1 + "/local", b"x", "EINVAL"),
        ("comm local 2^31", c1 + "/local", b"2147483648", "ERANGE"),
        ("comm local -+1", c1 + "/local", b"-+1", "EINVAL"),
        ("comm addr 127 bytes", c1 + "/addr", v4("192.0.2.201", 127), "EINVAL"),
        ("comm addr 129 bytes", c1 + "/addr", v4("192.0.2.201", 129), "EINVAL"),
        ("comm addr 16 bytes", c1 + "/addr", v4("192.0.2.201", 16), "EINVAL"),
        ("comm addr duplicate", c1 + "/addr", v4("192.0.2.201"), "EEXIST"),
        ("comm addr ninth", c2 + "/addr", v4("192.0.2.240"), "ENOSPC"),
        ("comm mark letters", c1 + "/mark", b"abc", "EINVAL"),
        ("comm mark without address", c9 + "/mark", b"5", "ENOENT"),
        ("comm addr_list is read-only", c1 + "/addr_list", b"x", "EACCES"),
        ("node weight 2^31", n1 + "/weight", b"2147483648", "ERANGE"),
        ("node weight -2^31-1", n1 + "/weight", b"-2147483649", "ERANGE"),
        ("node weight decimal point", n1 + "/weight", b"1.5", "EINVAL"),
        ("node release_recover negative", n1 + "/release_recover", b"-1", "EINVAL"),
    ]


# Bad mkdir/rmdir: (label, op, path, the error C gives it).
BAD_DIRS = [
    ("mkdir comm letters", "mkdir", C + "/comms/abc", "EINVAL"),
    ("mkdir comm 2^32", "mkdir", C + "/comms/4294967296", "ERANGE"),
    ("mkdir comm 0x", "mkdir", C + "/comms/0x", "EINVAL"),
    ("mkdir comm twice", "mkdir", C + "/comms/1", "EEXIST"),
    ("mkdir node negative", "mkdir", C + "/spaces/ls1/nodes/-1", "EINVAL"),
    ("mkdir in a cluster", "mkdir", C + "/other", "EPERM"),
    ("mkdir in a space", "mkdir", C + "/spaces/ls1/other", "EPERM"),
    ("mkdir in a comm", "mkdir", C + "/comms/1/other", "ENOTDIR"),
    ("rmdir default group comms", "rmdir", C + "/comms", "EPERM"),
    ("rmdir default group nodes", "rmdir", C + "/spaces/ls1/nodes", "EPERM"),
    ("rmdir non-empty cluster", "rmdir", C, "ENOTEMPTY"),
    ("rmdir non-empty space", "rmdir", C + "/spaces/ls1", "ENOTEMPTY"),
    ("rmdir missing comm", "rmdir", C + "/comms/77", "ENOENT"),
]

# Writes that succeed, each read back: (label, path, bytes, path read after).
GOOD_WRITES = [
    ("tcp_port hex", C + "/tcp_port", b"0x5249", C + "/tcp_port"),
    ("tcp_port plus and newline", C + "/tcp_port", b"+21064\n", C + "/tcp_port"),
    ("buffer_size hex", C + "/buffer_size", b"0X2000", C + "/buffer_size"),
    ("toss_secs octal", C + "/toss_secs", b"012", C + "/toss_secs"),
    ("toss_secs digits then NUL", C + "/toss_secs", b"11\x00zz", C + "/toss_secs"),
    ("log_debug max", C + "/log_debug", b"4294967295", C + "/log_debug"),
    ("protocol sctp", C + "/protocol", b"1", C + "/protocol"),
    ("protocol tcp", C + "/protocol", b"0", C + "/protocol"),
    ("cluster mark", C + "/mark", b"7", C + "/mark"),
    ("comm mark 0 takes the cluster mark", C + "/comms/1/mark", b"0", C + "/comms/1/mark"),
    ("comm mark", C + "/comms/2/mark", b"0x10", C + "/comms/2/mark"),
    ("cluster_name with newline", C + "/cluster_name", b"alpha\n", C + "/cluster_name"),
    ("cluster_name with NUL", C + "/cluster_name", b"be\x00ta", C + "/cluster_name"),
    ("cluster_name 100 bytes", C + "/cluster_name", b"n" * 100, C + "/cluster_name"),
    ("cluster_name 63 bytes", C + "/cluster_name", b"m" * 63, C + "/cluster_name"),
    ("cluster_name empty line", C + "/cluster_name", b"\n", C + "/cluster_name"),
    ("comm nodeid is ignored", C + "/comms/1/nodeid", b"abc", C + "/comms/1/nodeid"),
    ("comm local 0 after 1", C + "/comms/1/local", b"0", C + "/comms/1/local"),
    ("comm local negative", C + "/comms/2/local", b"-3", C + "/comms/2/local"),
    ("node nodeid is ignored", C + "/spaces/ls1/nodes/1/nodeid", b"99",
     C + "/spaces/ls1/nodes/1/nodeid"),
    ("node weight negative", C + "/spaces/ls1/nodes/1/weight", b"-5",
     C + "/spaces/ls1/nodes/1/weight"),
    ("node weight int max", C + "/spaces/ls1/nodes/2/weight", b"0x7fffffff",
     C + "/spaces/ls1/nodes/2/weight"),
    ("node release_recover", C + "/spaces/ls1/nodes/1/release_recover", b"3",
     C + "/spaces/ls1/nodes/1/release_recover"),
]


class Walk:
    """A busybox sh script of numbered steps; each prints one line
    "@<n> rc=<rc> <outcome>", where outcome is the hex of what was read or
    the error text of what failed."""

    def __init__(self):
        self.lines = [
            "B=%s" % B,
            "err() { grep -v ' records ' /tmp/cfge | sed -e 's/.*: //' | tr '\\n' ' '; }",
            # One write(2) of the whole file: configfs stores each write.
            "w() { dd if=/tmp/cfgw of=\"$2\" bs=$3 count=1 2>/tmp/cfge >/dev/null; rc=$?; "
            "echo \"@$1 rc=$rc $( [ $rc = 0 ] || err)\"; }",
            "r() { if cat \"$2\" >/tmp/cfgr 2>/tmp/cfge; then "
            "echo \"@$1 rc=0 $(od -An -tx1 -v /tmp/cfgr | tr -d ' \\n')\"; "
            "else echo \"@$1 rc=1 $(err)\"; fi; }",
            "d() { $2 \"$3\" 2>/tmp/cfge; rc=$?; echo \"@$1 rc=$rc $( [ $rc = 0 ] || err)\"; }",
            # Entries in readdir order: name, type, mode, size, links.
            "t() { echo \"@$1 rc=0 $(find \"$2\" -exec stat -c '%n|%F|%a|%s|%h' {} \\; "
            "| tr '\\n' ' ')\"; }",
        ]
        self.labels = []

    def _n(self, label):
        self.labels.append(label)
        return len(self.labels) - 1

    def write(self, label, path, data, user=None):
        """One write(2) of data, as root or as user (then its errors go
        through su)."""
        shown = repr(data) if len(data) <= 24 else "<%d bytes>" % len(data)
        n = self._n("write %s: %s %s%s" % (label, path, shown,
                                          " as %s" % user if user else ""))
        esc = "".join("\\%03o" % b for b in data)
        if user:
            self.lines.append(
                "printf '%s' >/tmp/cfgw; su -s /bin/sh %s -c 'dd if=/tmp/cfgw of=%s bs=%d "
                "count=1' >/dev/null 2>/tmp/cfge; rc=$?; echo \"@%d rc=$rc $(err)\""
                % (esc, user, path, len(data), n))
        else:
            self.lines.append("printf '%s' >/tmp/cfgw; w %d '%s' %d"
                              % (esc, n, path, len(data)))

    def read(self, label, path):
        n = self._n("read %s: %s" % (label, path))
        self.lines.append("%s; r %d \"$p\"" % (self._path(path), n))

    def mkdir(self, label, path):
        self._dir(label, "mkdir", path)

    def rmdir(self, label, path):
        self._dir(label, "rmdir", path)

    @staticmethod
    def _path(path):
        """Sets $p to path, where a \\n stands for a newline in a name."""
        return "p=$(printf '%s'; echo x); p=${p%%x}" % path

    def _dir(self, label, op, path):
        n = self._n("%s %s: %s" % (op, label, path))
        self.lines.append("%s; d %d %s \"$p\"" % (self._path(path), n, op))

    def tree(self, label, path):
        n = self._n("tree %s: %s" % (label, path))
        self.lines.append("t %d '%s'" % (n, path))

    def shell(self, label, cmd):
        """A command whose exit status and output are the outcome."""
        n = self._n("%s: %s" % (label, cmd))
        self.lines.append("(%s) >/tmp/cfgo 2>&1; echo \"@%d rc=$? $(tr '\\n' ' ' </tmp/cfgo)\""
                          % (cmd, n))

    def read_attrs(self, label, d, names):
        for a in names:
            self.read("%s %s" % (label, a), "%s/%s" % (d, a))

    def script(self):
        return "\n".join(self.lines) + "\n"


def walk():
    """Phase 1: the tree without a running lockspace."""
    w = Walk()
    w.tree("empty subsystem", B)
    w.mkdir("cluster", C)
    w.tree("new cluster", B)
    w.read_attrs("cluster default", C, CLUSTER_ATTRS)
    for i in ("1", "2", "9"):
        w.mkdir("comm", C + "/comms/" + i)
    w.read_attrs("comm default", C + "/comms/1", COMM_ATTRS)
    w.write("comm 1 address", C + "/comms/1/addr", v4("192.0.2.201"))
    w.write("comm 2 address", C + "/comms/2/addr", v4("192.0.2.202"))
    w.write("comm 2 IPv6 address", C + "/comms/2/addr",
            v6([0x2001, 0xdb8, 0, 0, 0, 0, 0x12, 0xabcd]))
    w.write("comm 2 address of another family", C + "/comms/2/addr",
            sockaddr(AF_UNIX, b"/x"))
    for k in range(3, 8):
        w.write("comm 2 address %d" % (k + 1), C + "/comms/2/addr", v4("192.0.2.%d" % (230 + k)))
    w.read("comm 2 eight addresses", C + "/comms/2/addr_list")
    w.write("comm 1 local", C + "/comms/1/local", b"1")
    w.mkdir("space", C + "/spaces/ls1")
    # "7\n" is node 7: kstrtouint() takes one trailing newline.
    for i in NODE_NAMES:
        w.mkdir("node", C + "/spaces/ls1/nodes/" + i)
    w.tree("populated", B)
    for i in ("1", "010", "0x10", "7\\n"):
        w.read_attrs("node %s default" % i, C + "/spaces/ls1/nodes/" + i, NODE_ATTRS)
    for d in ("1", "2", "9"):
        w.read_attrs("comm %s" % d, C + "/comms/" + d, COMM_ATTRS)
    for label, path, data, _ in bad_writes():
        w.write("bad " + label, path, data)
    for label, op, path, _ in BAD_DIRS:
        (w.mkdir if op == "mkdir" else w.rmdir)("bad " + label, path)
    # A missing privilege: root's configfs file given to nobody, who has no
    # CAP_SYS_ADMIN.  cluster_name needs none.
    for a, data in (("toss_secs", b"7"), ("tcp_port", b"21065"), ("protocol", b"0"),
                    ("cluster_name", b"nobody")):
        w.shell("chown %s" % a, "chown 65534 %s/%s" % (C, a))
        w.write("bad %s without CAP_SYS_ADMIN" % a if a != "cluster_name" else
                "cluster_name without CAP_SYS_ADMIN", "%s/%s" % (C, a), data, user="nobody")
        w.read("after nobody wrote %s" % a, "%s/%s" % (C, a))
    w.tree("cluster after chown", C)
    for label, path, data, back in GOOD_WRITES:
        w.write("good " + label, path, data)
        w.read("after " + label, back)
    w.read_attrs("cluster after writes", C, CLUSTER_ATTRS)
    w.read_attrs("comm 1 after writes", C + "/comms/1", COMM_ATTRS)
    w.read_attrs("comm 2 after writes", C + "/comms/2", COMM_ATTRS)
    # The module is pinned while the tree exists.
    w.shell("rmmod while configured", "rmmod dlm")
    # Tear down, every comm with an address first (stock 7.2 WARNs when a
    # comm that never had one is removed: Documentation/configuration.rst).
    w.write("comm 9 address", C + "/comms/9/addr", v4("192.0.2.209"))
    for i in NODE_NAMES:
        w.rmdir("node", C + "/spaces/ls1/nodes/" + i)
    w.rmdir("space", C + "/spaces/ls1")
    for i in ("1", "2", "9"):
        w.rmdir("comm", C + "/comms/" + i)
    w.tree("after removals", B)
    w.rmdir("cluster", C)
    w.tree("empty again", B)
    # The tunables are global: they outlive the cluster directory.
    w.mkdir("cluster again", C)
    w.read_attrs("cluster made again", C, CLUSTER_ATTRS)
    for a, v in CLUSTER_DEFAULTS.items():
        w.write("restore %s" % a, "%s/%s" % (C, a), v.encode() or b"\0")
    w.rmdir("cluster again", C)
    return w


def walk_running(me):
    """Phase 2: a one-node lockspace runs, so the comms layer does."""
    w = Walk()
    w.shell("setup", "dlm-controller setup >/dev/null && echo ok")
    w.shell("join", "echo %d > /run/dlm/members.cfgt && dlmt join cfgt >/dev/null && echo ok"
            % me)
    for label, path, data in (
            ("tcp_port", C + "/tcp_port", b"21065"),
            ("tcp_port same value", C + "/tcp_port", b"21064"),
            ("tcp_port zero", C + "/tcp_port", b"0"),
            ("tcp_port 2^16", C + "/tcp_port", b"65536"),
            ("protocol tcp", C + "/protocol", b"0"),
            ("protocol sctp", C + "/protocol", b"1"),
            ("protocol 7", C + "/protocol", b"7"),
            ("buffer_size", C + "/buffer_size", b"8192"),
            ("buffer_size back", C + "/buffer_size", b"4096")):
        w.write("running " + label, path, data)
    for a in CLUSTER_ATTRS:
        if a != "cluster_name":
            w.read("running " + a, "%s/%s" % (C, a))
    w.shell("space while running", "ls %s/spaces/cfgt/nodes | wc -l" % C)
    w.shell("leave", "dlmt leave cfgt >/dev/null && echo ok")
    w.shell("teardown", "dlm-controller teardown >/dev/null && echo ok")
    return w


def parse(w, out):
    got = {}
    for line in out.splitlines():
        if line.startswith("@"):
            n, _, rest = line[1:].partition(" ")
            got[int(n)] = rest.strip()
    return [got.get(i, "<no output>") for i in range(len(w.labels))]


def run_walk(cl, ids, w, timeout=300):
    res = cl.on(ids, w.script(), timeout=timeout, check=False)
    return {i: parse(w, res[i].out) for i in ids}


def swap_module(cl, i, flavour):
    cl.node(i).run("dlm-controller teardown >/dev/null; dlm-module unload && "
                   "echo %s > /run/dlm/flavour && dlm-module load" % flavour, timeout=120)


def sc_configfs(cl, ctx):
    ids = [1, 2]
    has_alt = cl.node(2).run("[ -f /lib/modules/alt/dlm.ko ] && echo yes || echo no"
                             ).out.strip() == "yes"
    flavours = {1: "stock", 2: "alt" if has_alt else "stock"}
    booted = {i: cl.node(i).run("cat /run/dlm/flavour").out.strip() for i in ids}
    ctx.say("node 1 walks the stock dlm.ko, node 2 %s" %
            ("the one under test" if has_alt else "the stock one too (no other dlm.ko given)"))
    for i in ids:
        swap_module(cl, i, flavours[i])
        cl.node(i).run("grep -q '^nobody:' /etc/passwd 2>/dev/null || "
                       "echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >> /etc/passwd")
    diffs = []
    steps = 0
    for phase, walks in (("tree", {i: walk() for i in ids}),
                         ("running", {i: walk_running(i) for i in ids})):
        out = {}
        for i in ids:
            out.update(run_walk(cl, [i], walks[i]))
        w = walks[1]
        steps += len(w.labels)
        for k, label in enumerate(w.labels):
            a, b = out[1][k], out[2][k]
            if a != b:
                diffs.append("%s #%d %s: stock %r, %s %r" % (phase, k, label, a[:300],
                                                             flavours[2], b[:300]))
        missing = [k for k in range(len(w.labels)) if out[1][k] == "<no output>"]
        check(not missing, "%s walk: steps without output on the stock node: %s" % (
            phase, [w.labels[k] for k in missing[:5]]))
        with open(os.path.join(cl.dir, "configfs-%s.txt" % phase), "w") as f:
            for k, label in enumerate(w.labels):
                f.write("#%d %s\n  stock: %s\n  %s: %s\n" % (k, label, out[1][k],
                                                             flavours[2], out[2][k]))
    errors = sum(1 for label in walk().labels if " bad " in label)
    ctx.say("%d steps on each node (%d bad writes, mkdirs and rmdirs); %d difference(s)" %
            (steps, errors, len(diffs)))
    ctx.numbers.update(steps=steps, bad_steps=errors, differences=len(diffs))
    check(not diffs, "configfs differs from stock in %d step(s): %s" % (
        len(diffs), "; ".join(diffs[:8])))
    for i in ids:
        swap_module(cl, i, booted[i])
        cl.node(i).run("dlm-controller setup", timeout=60)


SCENARIOS = [
    # Compares the two modules itself (node 1 stock, node 2 the one under
    # test), so a mixed cluster adds nothing: no mixed run.
    ("configfs", sc_configfs, 420, {"placement": {}}),
]
