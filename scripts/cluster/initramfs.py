#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Build the initramfs of a dlm-rs test guest (python3 stdlib only).

Contents: busybox-static with its applet links, the guest scripts of
scripts/cluster/guest (/init, and agent, dlm-controller, cluster-stack, ... in
/sbin), the static dlmt tool, the static hostile frame sender (tools/hostile),
the kernel tree's modules (staged with ``make modules_install``, cached under
build/), an optional alternative dlm.ko at /lib/modules/alt/dlm.ko, the
dynamically linked host tools nft, ss and tc, and the host's cluster stack
(Debian's corosync and dlm_controld with their tools, run by
guest/cluster-stack), each with the libraries ldd reports.

The archive is written directly in cpio "newc" format, so /dev/console can
be a real device node without root, and compressed with gzip.

    python3 scripts/cluster/initramfs.py --kdir TREE --out FILE [--alt-dlm KO]
"""

import argparse
import gzip
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
GUEST = os.path.join(HERE, "guest")
BUILD = os.path.join(TOP, "build")

# Host tools copied with their libraries, for in-guest fault injection.
HOST_TOOLS = ("nft", "ss", "tc")
# Parts a guest only needs for some scenarios, and that cost boot time: the
# kernel unpacks the archive into the rootfs page by page, about 1 s per
# 2 MB in a guest of the debug flavour under TCG with three guests on two
# host cores.  build(without=...) leaves them out.
PARTS = ("stack", "gfs2", "sctp")
# The cluster stack (packages corosync and dlm-controld), with its libraries.
STACK_TOOLS = ("corosync", "corosync-cfgtool", "corosync-quorumtool", "corosync-cmapctl",
               "corosync-cpgtool", "dlm_controld", "dlm_tool")


class Cpio:
    """Minimal cpio newc writer."""

    def __init__(self):
        self.buf = bytearray()
        self.ino = 1000
        self.names = set()

    def _entry(self, name, mode, data=b"", rdev=(0, 0), mtime=0):
        name = name.lstrip("/")
        if name in self.names:
            return
        self.names.add(name)
        self.ino += 1
        nameb = name.encode() + b"\0"
        hdr = "070701" + "".join("%08x" % v for v in (
            self.ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, mtime,
            len(data), 0, 0, rdev[0], rdev[1], len(nameb), 0))
        self.buf += hdr.encode() + nameb
        self._pad()
        self.buf += data
        self._pad()

    def _pad(self):
        if len(self.buf) % 4:
            self.buf += b"\0" * (4 - len(self.buf) % 4)

    def dir(self, name, mode=0o755):
        name = name.strip("/")
        if name in ("", "."):
            return
        parts = name.split("/")
        for i in range(1, len(parts) + 1):
            self._entry("/".join(parts[:i]), stat.S_IFDIR | mode)

    def file(self, name, data, mode=0o644):
        self.dir(os.path.dirname(name.strip("/")) or ".")
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name, target):
        self.dir(os.path.dirname(name.strip("/")) or ".")
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name, major, minor, mode=0o600):
        self.dir(os.path.dirname(name.strip("/")))
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def host_file(self, name, path, mode=None):
        with open(path, "rb") as f:
            data = f.read()
        if mode is None:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        self.file(name, data, mode)

    def tree(self, dest, src, skip=()):
        """src's files under dest, but none under a directory of skip
        (paths relative to src)."""
        for root, dirs, files in os.walk(src):
            rel = os.path.relpath(root, src)
            dirs[:] = [x for x in dirs if os.path.normpath(os.path.join(rel, x)) not in skip]
            dirs.sort()
            d = dest if rel == "." else os.path.join(dest, rel)
            self.dir(d)
            for f in sorted(files):
                p = os.path.join(root, f)
                if os.path.islink(p):
                    self.symlink(os.path.join(d, f), os.readlink(p))
                else:
                    self.host_file(os.path.join(d, f), p)

    def finish(self):
        self._entry("TRAILER!!!", 0)
        return bytes(self.buf)


def log(msg):
    print("[initramfs] " + msg, file=sys.stderr, flush=True)


def kernel_release(kdir):
    with open(os.path.join(kdir, "include/config/kernel.release")) as f:
        return f.read().strip()


def tree_make_flags(kdir):
    """The make flags the tree was built with (scripts/kernel.sh records them
    in .dlmrs-make-flags, e.g. LLVM=-19 for the clang-built debug flavour),
    so that modules_install does not see a compiler change."""
    try:
        with open(os.path.join(kdir, ".dlmrs-make-flags")) as f:
            return f.read().split()
    except OSError:
        pass
    try:
        with open(os.path.join(kdir, ".config")) as f:
            if "CONFIG_CC_IS_CLANG=y" in f.read():
                return ["LLVM=1"] if shutil.which("clang") else ["LLVM=-19"]
    except OSError:
        pass
    return []


def stage_modules(kdir):
    """make modules_install into a cache directory keyed by the tree."""
    built = os.path.join(kdir, ".dlmrs-built")
    stamp = "%s:%d" % (os.path.realpath(kdir),
                       int(os.stat(built).st_mtime) if os.path.exists(built) else 0)
    key = hashlib.sha256(stamp.encode()).hexdigest()[:12]
    stage = os.path.join(BUILD, "modules-" + key)
    if os.path.exists(os.path.join(stage, ".done")):
        return stage
    log("staging modules of %s into %s" % (kdir, stage))
    # Stage into a private directory and rename it into place, so that
    # concurrent builders never see a half-staged tree.
    tmp = "%s.tmp%d" % (stage, os.getpid())
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    subprocess.run(["make", "-s", "-C", kdir] + tree_make_flags(kdir) +
                   ["modules_install", "INSTALL_MOD_PATH=" + tmp, "INSTALL_MOD_STRIP=1"],
                   check=True, stdout=subprocess.DEVNULL)
    open(os.path.join(tmp, ".done"), "w").close()
    try:
        os.rename(tmp, stage)
    except OSError:
        # Someone else finished first.
        shutil.rmtree(tmp)
    return stage


def busybox_path():
    """The host's busybox if it is static (busybox-static), by ldd."""
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(p):
            r = subprocess.run(["ldd", p], capture_output=True, text=True)
            out = r.stdout + r.stderr
            if "not a dynamic executable" in out or "statically linked" in out:
                return p
    raise SystemExit("static busybox not found (apt-get install busybox-static)")


def ldd_libs(path):
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"=>\s+(/\S+)", line) or re.match(r"\s*(/\S+)\s+\(", line)
        if m:
            libs.append(m.group(1))
    return libs


def find_dlmt():
    """The dlmt binary: $DLMT, else tools/dlmt built into build/dlmt/."""
    env = os.environ.get("DLMT")
    if env:
        return env
    d = os.path.join(TOP, "tools", "dlmt")
    if not os.path.isdir(d):
        raise SystemExit("tools/dlmt is missing")
    o = os.path.join(BUILD, "dlmt")
    subprocess.run(["make", "-s", "-C", d, "O=" + o], check=True)
    return os.path.join(o, "dlmt")


def find_hostile():
    """The hostile frame sender: tools/hostile built into build/hostile/."""
    o = os.path.join(BUILD, "hostile")
    subprocess.run(["make", "-s", "-C", os.path.join(TOP, "tools", "hostile"), "O=" + o],
                   check=True)
    return os.path.join(o, "hostile")


def build(kdir, out, alt_dlm=None, dlmt=None, extra=(), without=()):
    """extra: (guest path, host file, mode) of further files, e.g. the
    benchmark's module and tool (scripts/cluster/bench.py).  without: PARTS
    to leave out (the cluster stack's programs and the libraries only they
    use, the gfs2 module, the sctp module)."""
    assert set(without) <= set(PARTS), without
    c = Cpio()
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "lib", "lib64", "etc",
              "proc", "sys", "dev", "tmp", "run", "mnt", "root", "var"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3, 0o666)
    c.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    c.file("etc/group", b"root:x:0:\n")

    # Host tools first, so busybox applets of the same name do not shadow them.
    for tool in HOST_TOOLS + (() if "stack" in without else STACK_TOOLS):
        path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
        if not path:
            raise SystemExit("host tool %s not found (scripts/setup.sh installs it: "
                             "nftables iproute2 corosync dlm-controld)" % tool)
        real = os.path.realpath(path)
        c.host_file("usr/sbin/" + tool, real, 0o755)
        for lib in ldd_libs(real):
            c.host_file(lib.lstrip("/"), os.path.realpath(lib), 0o755)

    bb = busybox_path()
    c.host_file("bin/busybox", bb, 0o755)
    applets = subprocess.run([bb, "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        if os.path.basename(a) in HOST_TOOLS or a in ("bin/busybox", "linuxrc"):
            continue
        c.symlink(a, "/bin/busybox")

    c.host_file("init", os.path.join(GUEST, "init"), 0o755)
    # Run-time directories of corosync and dlm_controld (/var/run is /run).
    for d in ("etc/corosync", "etc/dlm", "var/lib/corosync", "var/log/cluster"):
        c.dir(d)
    c.symlink("var/run", "/run")
    # Every other guest script goes to /sbin (agent, dlm-controller, ...).
    for s in sorted(os.listdir(GUEST)):
        if s != "init" and not s.startswith("."):
            c.host_file("sbin/" + s, os.path.join(GUEST, s), 0o755)
    dlmt = dlmt or find_dlmt()
    c.host_file("sbin/dlmt", dlmt, 0o755)
    c.host_file("sbin/hostile", find_hostile(), 0o755)

    stage = stage_modules(kdir)
    kver = kernel_release(kdir)
    skip = {os.path.join(kver, "kernel", d) for part, d in (("gfs2", "fs/gfs2"),
                                                           ("sctp", "net/sctp"))
            if part in without}
    c.tree("lib/modules", os.path.join(stage, "lib", "modules"), skip)
    if alt_dlm:
        c.host_file("lib/modules/alt/dlm.ko", alt_dlm, 0o644)
    for dest, src, mode in extra:
        c.host_file(dest, src, mode)

    data = c.finish()
    tmp = out + ".tmp"
    with gzip.open(tmp, "wb", compresslevel=3) as f:
        f.write(data)
    os.replace(tmp, out)
    log("%s: %d KiB (%d KiB uncompressed)%s" % (
        out, os.path.getsize(out) // 1024, len(data) // 1024,
        "; without %s" % ", ".join(without) if without else ""))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kdir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--alt-dlm", help="alternative dlm.ko (staged at /lib/modules/alt)")
    ap.add_argument("--dlmt", help="dlmt binary (default: build tools/dlmt)")
    a = ap.parse_args()
    build(a.kdir, a.out, a.alt_dlm, a.dlmt)


if __name__ == "__main__":
    main()
