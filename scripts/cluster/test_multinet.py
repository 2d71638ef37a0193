# SPDX-License-Identifier: GPL-2.0
"""Host unit tests (no VMs) of issue 12's harness parts: the protocol and
networks cluster options (QEMU argv, hubs, kernel command line), the static
controller's configfs writes (protocol, two addresses per node), the scan of
our warning lines under a segment cut, the multinet scenarios' table and
pause measurement, and suite.py --list.

    python3 -m unittest discover -s scripts/cluster -p 'test_*.py'
"""

import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cluster as C  # noqa: E402
import initramfs as I  # noqa: E402
import sc_multinet as M  # noqa: E402
import suite as S  # noqa: E402


def one_nic_argv(d, kdir, n=1, nodes=3, stack="static", dlm="stock"):
    """The argv of a one-network TCP guest exactly as cluster.py built it
    before issue 12 (commit 13e40c6), written out here so that any change
    to it shows."""
    return [
        "qemu-system-x86_64", "-accel", "tcg", "-m", "768", "-smp", "1",
        "-nographic", "-monitor", "none", "-no-reboot",
        "-kernel", os.path.join(kdir, "arch/x86/boot/bzImage"), "-initrd", "/x/initrd.gz",
        "-append", "console=ttyS0 panic=-1 printk.devkmsg=on tsc=unstable "
                   "dlmrs.node=%d dlmrs.nodes=%d dlmrs.cluster=dlmrs dlmrs.dlm=%s "
                   "dlmrs.stack=%s" % (n, nodes, dlm, stack),
        "-serial", "file:%s/console%d.log" % (d, n),
        "-netdev", "dgram,id=n0,local.type=unix,local.path=%s/node%d.sock,"
                   "remote.type=unix,remote.path=%s/hub.sock" % (d, n, d),
        "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:%02x" % n,
        "-drive", "file=%s/shared.raw,format=raw,if=none,cache=none,id=d0" % d,
        "-device", "virtio-blk-pci,drive=d0,share-rw=on,serial=dlmrs-shared",
        "-device", "virtio-serial-pci",
        "-chardev", "socket,id=ag,path=%s/agent%d.sock,server=on,wait=off" % (d, n),
        "-device", "virtserialport,chardev=ag,name=dlmrs.agent",
        "-qmp", "unix:%s/qmp%d.sock,server=on,wait=off" % (d, n),
    ]


class ClusterOptionsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.kdir = os.path.join(self.tmp.name, "kdir")
        os.makedirs(self.kdir)
        self.d = os.path.join(self.tmp.name, "run")
        self.made = []

    def tearDown(self):
        for cl in self.made:
            cl.transcript.f.close()
        self.tmp.cleanup()

    def cluster(self, **kw):
        cl = C.Cluster(self.kdir, n=3, run_dir=self.d, initrd="/x/initrd.gz",
                       log=lambda m: None, **kw)
        self.made.append(cl)
        return cl

    def test_one_nic_argv_unchanged(self):
        cl = self.cluster()
        for i in (1, 3):
            node = C.Node(cl, i, "stock")
            self.assertEqual(node.qemu_argv(), one_nic_argv(self.d, self.kdir, i))
        cl = self.cluster(stack="controld")
        self.assertEqual(C.Node(cl, 2, "/x/dlm.ko").qemu_argv(),
                         one_nic_argv(self.d, self.kdir, 2, stack="controld", dlm="alt"))
        # The defaults spelt out are the defaults.
        cl = self.cluster(protocol="tcp", networks=1)
        self.assertEqual(C.Node(cl, 1, "stock").qemu_argv(), one_nic_argv(self.d, self.kdir))

    def test_two_nics(self):
        cl = self.cluster(protocol="sctp", networks=2)
        argv = C.Node(cl, 2, "stock").qemu_argv()
        base = one_nic_argv(self.d, self.kdir, 2)
        b = os.path.join(self.d, "segb")
        extra = ["-netdev", "dgram,id=n1,local.type=unix,local.path=%s/node2.sock,"
                            "remote.type=unix,remote.path=%s/hub.sock" % (b, b),
                 "-device", "virtio-net-pci,netdev=n1,mac=52:54:00:12:35:02"]
        # Everything else as with one NIC; the second NIC right after the
        # first (eth1 in the guest), the command line says sctp and 2 nets.
        i = base.index("-drive")
        want = base[:i] + extra + base[i:]
        ai = want.index("-append") + 1
        want[ai] += " dlmrs.protocol=sctp dlmrs.nets=2"
        self.assertEqual(argv, want)
        macs = [a for a in argv if a.startswith("virtio-net-pci")]
        self.assertEqual(len(macs), 2)
        self.assertEqual(len(set(m.rsplit("=", 1)[1] for m in macs)), 2)

    def test_protocol_alone_and_networks_alone(self):
        a = C.Node(self.cluster(protocol="sctp"), 1, "stock").qemu_argv()
        self.assertEqual(a.count("-netdev"), 1)
        self.assertTrue(a[a.index("-append") + 1].endswith(" dlmrs.stack=static "
                                                            "dlmrs.protocol=sctp"))
        a = C.Node(self.cluster(networks=2), 1, "stock").qemu_argv()
        self.assertEqual(a.count("-netdev"), 2)
        self.assertTrue(a[a.index("-append") + 1].endswith(" dlmrs.stack=static dlmrs.nets=2"))

    def test_bad_options(self):
        with self.assertRaises(C.ClusterError):
            self.cluster(protocol="udp")
        with self.assertRaises(C.ClusterError):
            self.cluster(networks=3)

    def test_hub_argv_per_segment(self):
        cl = self.cluster(networks=2)
        a = cl.hub_argv("a")
        b = cl.hub_argv("b")
        self.assertEqual(a[a.index("--dir") + 1], self.d)
        self.assertEqual(a[a.index("--log") + 1], os.path.join(self.d, "hub.log"))
        self.assertEqual(b[b.index("--dir") + 1], os.path.join(self.d, "segb"))
        self.assertEqual(b[b.index("--log") + 1], os.path.join(self.d, "hub-b.log"))
        self.assertEqual(a[a.index("--nodes") + 1], "3")

    def test_node_addr(self):
        self.assertEqual(C.node_addr(3), "192.0.2.3")
        self.assertEqual(C.node_addr(3, "b"), "198.51.100.3")

    def test_two_hubs_cut_one_segment(self):
        """Start the two hubs as a cluster does (no VM), cut segment A
        through the cluster's method and see it in that hub alone."""
        cl = self.cluster(networks=2)
        try:
            cl.start_hub()
            self.assertEqual(sorted(cl.hubs), ["a", "b"])
            self.assertIs(cl.hub, cl.hubs["a"])
            self.assertTrue(os.path.exists(os.path.join(self.d, "segb", "hub.sock")))
            cl.cut_segment("a")
            self.assertIn("cut=1", cl.hubs["a"].cmd("show"))
            self.assertNotIn("cut=1", cl.hubs["b"].cmd("show"))
            cl.heal_segment("a")
            self.assertNotIn("cut=1", cl.hubs["a"].cmd("show"))
        finally:
            procs = list(cl.hub_procs)
            cl.shutdown()
        self.assertEqual(len(procs), 2)
        self.assertEqual([p.returncode for p in procs], [0, 0])
        self.assertEqual(cl.hubs, {})


class ControllerConfigTest(unittest.TestCase):
    """dlm-controller setup, run by busybox sh on a directory standing in
    for configfs: each comm's addr is a FIFO, so that every write() of a
    128-byte sockaddr_storage is seen on its own, as configfs sees it."""

    GUEST = os.path.join(HERE, "guest")

    def setup_run(self, protocol=None, nets=None, node=2, nodes=3):
        bb = I.busybox_path()
        with open(os.path.join(self.GUEST, "dlm-controller")) as f:
            text = f.read()
        # The script's functions and its setup command, with CFG and RUN
        # pointing here and the log going nowhere.
        head = text[text.index("log() {"):text.index('if [ $# -eq 0 ]; then')]
        setup = text[text.index("setup)\n"):text.index("\t;;\nteardown)")]
        setup = setup[len("setup)\n"):]
        tmp = tempfile.mkdtemp(prefix="ctlt")
        cfg, run = os.path.join(tmp, "cfg"), os.path.join(tmp, "run")
        os.makedirs(run)
        for k, v in (("node", node), ("nodes", nodes), ("cluster", "dlmrs"),
                     ("protocol", protocol), ("nets", nets)):
            if v is not None:
                with open(os.path.join(run, k), "w") as f:
                    f.write("%s\n" % v)
        fds = {}
        for i in range(1, nodes + 1):
            os.makedirs(os.path.join(cfg, "comms", str(i)))
            p = os.path.join(cfg, "comms", str(i), "addr")
            os.mkfifo(p)
            fds[i] = os.open(p, os.O_RDWR | os.O_NONBLOCK)
        script = ("CFG=%s; RUN=%s; %s\nlog() { :; }\n%s\n" %
                  (cfg, run, head, setup))
        r = subprocess.run([bb, "sh", "-c", script], capture_output=True, text=True,
                           timeout=60)
        addrs = {}
        for i, fd in fds.items():
            data = b""
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                data += chunk
            os.close(fd)
            addrs[i] = [data[k:k + 128] for k in range(0, len(data), 128)]
        out = {"rc": r.returncode, "err": r.stderr, "addrs": addrs, "cfg": cfg}
        for name in ("protocol", "cluster_name"):
            try:
                with open(os.path.join(cfg, name)) as f:
                    out[name] = f.read()
            except OSError:
                out[name] = None
        out["local"] = {i: os.path.exists(os.path.join(cfg, "comms", str(i), "local"))
                        for i in range(1, nodes + 1)}
        subprocess.run(["rm", "-rf", tmp])
        return out

    @staticmethod
    def sockaddr(ip):
        return bytes([2, 0, 0, 0] + [int(x) for x in ip.split(".")]) + bytes(120)

    def test_tcp_one_network_default(self):
        # No protocol or nets file (a guest of an older harness): TCP, one
        # address per node.
        r = self.setup_run()
        self.assertEqual(r["rc"], 0, r["err"])
        self.assertEqual(r["protocol"], "0\n")
        self.assertEqual(r["cluster_name"], "dlmrs")
        for i in (1, 2, 3):
            self.assertEqual(r["addrs"][i], [self.sockaddr("192.0.2.%d" % i)], i)
        self.assertEqual(r["local"], {1: False, 2: True, 3: False})

    def test_sctp_two_networks(self):
        r = self.setup_run(protocol="sctp", nets=2, node=3)
        self.assertEqual(r["rc"], 0, r["err"])
        self.assertEqual(r["protocol"], "1\n")
        # Every node, the local one too, with A's address first, then B's.
        for i in (1, 2, 3):
            self.assertEqual(r["addrs"][i], [self.sockaddr("192.0.2.%d" % i),
                                             self.sockaddr("198.51.100.%d" % i)], i)
        self.assertEqual(r["local"], {1: False, 2: False, 3: True})

    def test_tcp_two_networks(self):
        r = self.setup_run(protocol="tcp", nets=2)
        self.assertEqual(r["rc"], 0, r["err"])
        self.assertEqual(r["protocol"], "0\n")
        self.assertEqual(r["addrs"][1], [self.sockaddr("192.0.2.1"),
                                         self.sockaddr("198.51.100.1")])

    def test_unknown_protocol_fails_before_any_comm(self):
        r = self.setup_run(protocol="udp")
        self.assertNotEqual(r["rc"], 0)
        self.assertIsNone(r["protocol"])
        self.assertEqual(r["addrs"], {1: [], 2: [], 3: []})

    def test_cluster_stack_config(self):
        """cluster-stack config's dlm.conf and corosync.conf follow the
        protocol and networks options (run with / redirected here)."""
        bb = I.busybox_path()
        with open(os.path.join(self.GUEST, "cluster-stack")) as f:
            text = f.read()
        fn = text[text.index("config() {"):]
        fn = fn[:fn.index("\n}\n") + 3]
        for protocol, nets in (("tcp", 1), ("sctp", 2)):
            with tempfile.TemporaryDirectory() as d:
                run = os.path.join(d, "run/dlm")
                os.makedirs(run)
                for k, v in (("node", 1), ("nodes", 3), ("cluster", "dlmrs"),
                             ("protocol", protocol), ("nets", nets)):
                    with open(os.path.join(run, k), "w") as f:
                        f.write("%s\n" % v)
                body = fn.replace("/run/dlm", run).replace("/etc/", d + "/etc/").replace(
                    "/var/lib", d + "/var/lib")
                r = subprocess.run([bb, "sh", "-c", "LOG=%s/log; %s config" % (d, body)],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(r.returncode, 0, r.stderr)
                with open(os.path.join(d, "etc/dlm/dlm.conf")) as f:
                    self.assertIn("protocol=%s\n" % protocol, f.read())
                with open(os.path.join(d, "etc/corosync/corosync.conf")) as f:
                    conf = f.read()
                self.assertEqual(conf.count("ring0_addr: 192.0.2."), 3)
                self.assertEqual(conf.count("ring1_addr: 198.51.100."), 3 if nets == 2 else 0)
                self.assertEqual(conf.count("linknumber:"), nets)


class WarningsTest(unittest.TestCase):
    def test_segment_cut_allows_timeouts_and_unreachable(self):
        dlm = ["ours", "ours", "ours"]
        for line in ["dlm: connect to node 2 try 3 error -110",
                     "dlm: connect to node 3 try 1 error -113",
                     "dlm: node 1: socket error sending to node 2, sk_err=110"]:
            self.assertIsNotNone(C.our_warning(line, (), dlm), line)
            self.assertIsNone(C.our_warning(line, ("segcut",), dlm), line)
        # Not what a cut explains.
        for line in ["dlm: send to node 2 refused: Fin",
                     "dlm: node 2 skipped a message: resetting its connection",
                     "dlm: Connection to node 2 failed to shutdown"]:
            self.assertIsNotNone(C.our_warning(line, ("segcut",), dlm), line)

    def test_segcut_documented(self):
        with open(os.path.join(HERE, "..", "..", "Documentation", "testing.rst")) as f:
            text = f.read()
        self.assertTrue("``segcut``" in text, "testing.rst does not list the segcut fault")


class ScenarioTableTest(unittest.TestCase):
    def entries(self):
        return {name: (fn, t, opts) for name, fn, t, opts in S.SCENARIOS}

    def test_multinet_scenarios_registered(self):
        e = self.entries()
        for name in ("sctp", "multihome", "tcp-failover"):
            self.assertIn(name, e)
            self.assertFalse(e[name][2].get("default", True), name)
            self.assertFalse(e[name][2].get("debug"), name)
        self.assertEqual(e["sctp"][2]["protocol"], "sctp")
        self.assertEqual(e["multihome"][2]["protocol"], "sctp")
        self.assertEqual(e["multihome"][2]["networks"], 2)
        self.assertEqual(e["tcp-failover"][2].get("protocol", "tcp"), "tcp")
        self.assertEqual(e["tcp-failover"][2]["networks"], 2)
        self.assertIn("segcut", e["multihome"][2]["faults"])
        self.assertIn("segcut", e["tcp-failover"][2]["faults"])
        # tcp-failover has no mixed run: a stock node dials only its peers'
        # first address, so with segment A cut it is cut off (testing.rst).
        self.assertEqual(e["tcp-failover"][2]["placement"], {})
        for name in ("sctp", "multihome"):
            for k, nodes in e[name][2]["placement"].items():
                self.assertEqual(len(nodes), k)

    def test_sctp_initramfs_has_the_module(self):
        e = self.entries()
        self.assertNotIn("sctp", S.initrd_without(e["sctp"][2]))
        self.assertNotIn("gfs2", S.initrd_without(e["sctp"][2]))
        self.assertNotIn("sctp", S.initrd_without(e["multihome"][2]))
        self.assertIn("sctp", S.initrd_without(e["tcp-failover"][2]))
        self.assertEqual(S.initrd_without({"protocol": "sctp"}), ("gfs2", "stack"))

    def test_not_in_default_or_debug_sets(self):
        default = [s[0] for s in S.SCENARIOS if s[3].get("default", True)]
        debug = [s[0] for s in S.SCENARIOS if s[3].get("debug")]
        for name in ("sctp", "multihome", "tcp-failover"):
            self.assertNotIn(name, default)
            self.assertNotIn(name, debug)

    def test_suite_list_names_them(self):
        r = subprocess.run([sys.executable, os.path.join(HERE, "suite.py"), "--list"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        names = r.stdout.split()
        for name in ("sctp", "multihome", "tcp-failover"):
            self.assertEqual(names.count(name), 1, names)
        self.assertEqual(len(names), len(set(names)))


class SctpAssocsTest(unittest.TestCase):
    # Lines as sctp_assocs_seq_show() prints them (net/sctp/proc.c): two
    # local addresses, two remote ones with the primary marked; a listener's
    # association elsewhere; the header.
    TEXT = (
        " ASSOC     SOCK   STY SST ST HBKT ASSOC-ID TX_QUEUE RX_QUEUE UID INODE LPORT RPORT "
        "LADDRS <-> RADDRS HBINT INS OUTS MAXRT T1X T2X RTXC wmema wmemq sndbuf rcvbuf\n"
        "ffff8880 ffff8881 1   1   3  0       2        0        0     0 1234 21064 40012  "
        "192.0.2.1 198.51.100.1 <-> *192.0.2.2 198.51.100.2 \t    7500    10    10   10    "
        "0    0        0        1   0  212992  4194304\n"
        "ffff8882 ffff8883 1   1   3  0       3        0        0     0 1235 40013 21064  "
        "192.0.2.1 <-> *192.0.2.3 \t    7500    10    10   10    0    0        0        1   "
        "0  212992  4194304\n"
        "ffff8884 ffff8885 1   1   3  0       4        0        0     0 1236 5000 5001  "
        "192.0.2.1 <-> *192.0.2.3 \t    7500    10    10   10    0    0        0        1   "
        "0  212992  4194304\n")

    def test_parse(self):
        self.assertEqual(M.parse_sctp_assocs(self.TEXT), [
            (["192.0.2.1", "198.51.100.1"], ["192.0.2.2", "198.51.100.2"], "192.0.2.2"),
            (["192.0.2.1"], ["192.0.2.3"], "192.0.2.3")])
        # The primary path on segment B.
        text = self.TEXT.replace("*192.0.2.2 198.51.100.2", "192.0.2.2 *198.51.100.2")
        self.assertEqual(M.parse_sctp_assocs(text)[0][2], "198.51.100.2")
        self.assertEqual(M.parse_sctp_assocs(""), [])


class CheckShTest(unittest.TestCase):
    """scripts/check.sh's stage selection: make check never runs the full
    stage; --full adds it to every other stage; --only full runs it alone."""

    def wanted(self, *args):
        with open(os.path.join(HERE, "..", "check.sh")) as f:
            text = f.read()
        sel = text[text.index('only=""\n'):text.index("# Issue 12's scenarios")]
        stages = "setup kernel host harness tools module cluster debug full"
        r = subprocess.run(["bash", "-c", sel + "for s in %s; do want $s && echo $s; done; true" %
                            stages, "check.sh"] + list(args),
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.split()

    def test_stage_selection(self):
        every = "setup kernel host harness tools module cluster debug".split()
        self.assertEqual(self.wanted(), every)
        self.assertEqual(self.wanted("--full"), every + ["full"])
        self.assertEqual(self.wanted("--only", "full"), ["full"])
        self.assertEqual(self.wanted("--only", "harness,cluster"), ["harness", "cluster"])
        self.assertEqual(self.wanted("--only", "host", "--full"), ["host", "full"])

    def test_makefile_target(self):
        r = subprocess.run(["make", "-n", "-C", os.path.join(HERE, "..", ".."), "check-full"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("bash scripts/check.sh --full", r.stdout)


class PauseTest(unittest.TestCase):
    def test_longest_pause(self):
        # Host times of progress lines per node.
        seen = {1: [0.0, 1.0, 2.0, 9.5, 10.0], 2: [0.5, 1.5, 3.0, 4.0, 12.0]}
        p = M.longest_pauses(seen, 0.0, 13.0)
        self.assertEqual(p[1], (7.5, 2.0, 9.5))
        self.assertEqual(p[2], (8.0, 4.0, 12.0))
        # A window: only gaps that overlap it count, each counted whole.
        p = M.longest_pauses(seen, 3.5, 11.0)
        self.assertEqual(p[1], (7.5, 2.0, 9.5))
        self.assertEqual(p[2], (8.0, 4.0, 12.0))
        # No line after the start: the pause runs to the end of the window.
        p = M.longest_pauses({3: [1.0]}, 2.0, 10.0)
        self.assertEqual(p[3], (9.0, 1.0, None))
        # Without trail, the time after a node's last line is no pause,
        # unless no line came after the start at all.
        p = M.longest_pauses({1: [0.0, 1.0, 2.0]}, 0.5, 30.0, trail=False)
        self.assertEqual(p[1], (1.0, 0.0, 1.0))
        p = M.longest_pauses({3: [1.0]}, 2.0, 30.0, trail=False)
        self.assertEqual(p[3], (29.0, 1.0, None))
        p = M.longest_pauses({1: [0.0, 1.0, 2.0]}, 0.5, 30.0)
        self.assertEqual(p[1], (28.0, 2.0, None))

    def test_progress_during(self):
        seen = {1: [0.0, 5.0, 25.0], 2: [0.0, 22.0]}
        self.assertEqual(M.progress_during(seen, 2.0, 22.0), {1: 1, 2: 0})


if __name__ == "__main__":
    unittest.main()
