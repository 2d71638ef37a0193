#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Check the test guests' clocks against the host's.

    python3 scripts/cluster/clockcheck.py [--kdir TREE] [--boots 3] [--secs 60]

Boots a 2-node cluster --boots times.  On each node it reads the
clocksource, the kernel's TSC and HPET lines, and the smallest step of
CLOCK_MONOTONIC (dlmbu clock), then reads the guest's CLOCK_MONOTONIC twice,
--secs apart, each time between two readings of the host's: the guest's
elapsed time over the host's is its clock rate, known to within the agent's
round trips; the same for the TSC gives its frequency.  Fails if a rate is
off by more than 1 %.  (The step is reported: 4 ms on the jiffies
clocksource the current kernels run on, Documentation/benchmarks.rst.)
Run it under the VM lock (flock /tmp/dlmrs-vm.lock ...).
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cluster as C  # noqa: E402
import initramfs  # noqa: E402


def sample(node):
    h0 = time.monotonic()
    r = node.run("dlmbu clock")
    h1 = time.monotonic()
    kv = r.kv("clock")
    return (h0 + h1) / 2, (h1 - h0) / 2, int(kv["mono_ns"]) / 1e9, kv


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kdir")
    ap.add_argument("--tools", default=os.path.join(C.BUILD, "dlmbench"))
    ap.add_argument("--boots", type=int, default=3)
    ap.add_argument("--secs", type=int, default=60)
    args = ap.parse_args()
    kdir = args.kdir or C.default_kdir()
    initrd = os.path.join(C.BUILD, "clockcheck.cpio.gz")
    initramfs.build(kdir, initrd, None, extra=[
        ("sbin/dlmbu", os.path.join(args.tools, "dlmbu"), 0o755)])
    bad = 0
    for b in range(1, args.boots + 1):
        with C.Cluster(kdir, n=2, name="clock", initrd=initrd) as cl:
            ids = cl.alive()
            for i in ids:
                r = cl.node(i).run("dmesg | grep -E -i 'tsc|hpet|clocksource|acpi_pm' "
                                   "| grep -v -i 'unstable.*watchdog' | head -12")
                print("boot %d node %d:\n%s" % (b, i, "".join(
                    "    " + l + "\n" for l in r.out.strip().splitlines())), end="")
            first = {i: sample(cl.node(i)) for i in ids}
            time.sleep(args.secs)
            for i in ids:
                h0, e0, g0, kv0 = first[i]
                h1, e1, g1, kv1 = sample(cl.node(i))
                rate = (g1 - g0) / (h1 - h0)
                err = (e0 + e1) / (h1 - h0)
                step = min(int(kv0["step_ns"]), int(kv1["step_ns"]))
                tsc = (int(kv1["tsc"]) - int(kv0["tsc"])) / (h1 - h0)
                ok = abs(rate - 1) <= 0.01 + err
                bad += not ok
                print("boot %d node %d: clocksource %s, step %d ns, guest/host rate over "
                      "%.1f s: %.5f (+-%.5f), TSC %.2f MHz %s" % (
                          b, i, kv1["clocksource"], step, h1 - h0, rate, err, tsc / 1e6,
                          "ok" if ok else "BAD"), flush=True)
            for i in ids:
                cl.node(i).quit()
    print("clockcheck: %d boots, %d bad node clocks" % (args.boots, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
