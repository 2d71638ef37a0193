# SPDX-License-Identifier: GPL-2.0
"""Unit tests of the allocfail scenario's host side (no VMs): the console
filter that takes out the stack dumps of injected allocation failures and
nothing else, the classification of an injected failure, and the layout of
the comms code in a dlm.ko."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster as C  # noqa: E402
import sc_allocfail as A  # noqa: E402
from scenario import Failed  # noqa: E402

RUST_DRAIN = "_RNvNtNtCslF6XZ1GQn71_9dlm_comms5comms8lowcomms5drain"
RUST_PUSH = ("_RNvXs_NtNtCslF6XZ1GQn71_9dlm_comms5comms4nodeNtB4_11UnackedListNtNtNtB8_5proto"
             "8reliable12UnackedQueue9push_back")
RUST_VEC = ("_RNvMs_NtNtCs1EKtwoKEMO2_6kernel5alloc4kvecINtB4_3VecTjENtB6_7KmallocE4push")

# One injected failure in a kernel worker (failslab, verbose=2), in the
# shape lib/fault-inject.c and arch/x86/kernel/dumpstack.c print it.
INJECTION = """\
[  102.750100] FAULT_INJECTION: forcing a failure.
[  102.750100] name failslab, interval 1, probability 3, space 0, times 999998
[  102.750101] CPU: 0 UID: 0 PID: 61 Comm: kworker/u4:3 Tainted: G           O        7.2.13 #1 PREEMPT(voluntary)
[  102.750101] Tainted: [O]=OOT_MODULE
[  102.750101] Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[  102.750102] Workqueue: dlm_io _RNvXs1_NtNtCslF6XZ1GQn71_9dlm_comms5comms8lowcomms (dlm_io)
[  102.750102] Call Trace:
[  102.750102]  <TASK>
[  102.750102]  dump_stack_lvl+0x5d/0x80
[  102.750103]  should_fail_ex+0x2ad/0x2f0
[  102.750103]  should_failslab+0x9c/0xc0
[  102.750103]  __kmalloc_noprof+0xa1/0x470
[  102.750104]  ? krealloc_node_align_noprof+0x46/0x120
[  102.750104]  krealloc_node_align_noprof+0x46/0x120
[  102.750104]  %(vec)s+0x51/0x140 [dlm]
[  102.750105]  %(drain)s+0x1cd/0x953 [dlm]
[  102.750105]  process_scheduled_works+0x78d/0xe80
[  102.750105]  worker_thread+0x76f/0xbc0
[  102.750106]  kthread+0x308/0x3e0
[  102.750106]  ret_from_fork+0x1d6/0x460
[  102.750106]  ret_from_fork_asm+0x11/0x20
[  102.750107]  </TASK>
""" % {"vec": RUST_VEC, "drain": RUST_DRAIN}

# A failure in softirq on top of the lock manager, crossing an interrupt
# frame (the interrupted context's registers are printed).
IRQ_INJECTION = """\
[  103.000000] FAULT_INJECTION: forcing a failure.
[  103.000000] name fail_page_alloc, interval 1, probability 3, space 0, times 999990
[  103.000001] CPU: 0 UID: 0 PID: 0 Comm: swapper/0 Tainted: G           O        7.2.13 #1 PREEMPT(voluntary)
[  103.000001] Tainted: [O]=OOT_MODULE
[  103.000001] Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[  103.000002] Call Trace:
[  103.000002]  <IRQ>
[  103.000002]  dump_stack_lvl+0x5d/0x80
[  103.000003]  should_fail_ex+0x2ad/0x2f0
[  103.000003]  __alloc_frozen_pages_noprof+0x1c2/0x5a0
[  103.000003]  skb_page_frag_refill+0x1a2/0x2c0
[  103.000004]  tcp_v4_rcv+0x1f0/0x1b20
[  103.000004]  handle_softirqs+0x1e3/0x6b0
[  103.000004]  </IRQ>
[  103.000005]  <TASK>
[  103.000005] RIP: 0010:dlm_user_request+0x2a/0x6f0 [dlm]
[  103.000005] Code: 48 89 e5 41 57 41 56 41 55 41 54 53 48 83 ec 30 <48> 8b 47 08
[  103.000006] RSP: 0018:ffffc90000347c28 EFLAGS: 00000246
[  103.000006] RAX: 0000000000000000 RBX: 0000000000000003 RCX: 0000000000000007
[  103.000006] RDX: 0000000000000003 RSI: ffff888006163980 RDI: ffffffff8130b64f
[  103.000007] RBP: 0000000000000000 R08: ffffffff82b9cbaf R09: 1ffffffff0573975
[  103.000007] R10: dffffc0000000000 R11: fffffbfff0573976 R12: 0000000000000020
[  103.000007] R13: 0000000000000000 R14: 0000000000000050 R15: ffff8880282089e8
[  103.000008]  device_write+0x7a1/0x9f0 [dlm]
[  103.000008]  vfs_write+0x1f5/0x7a0
[  103.000008]  </TASK>
"""

# A real splat right after an injection report: it must stay.
SPLAT = """\
[  104.000000] ------------[ cut here ]------------
[  104.000000] WARNING: CPU: 0 PID: 12 at rust/comms/exports.rs:55 dlm_lowcomms_connect_node+0x10/0x40 [dlm]
[  104.000001] CPU: 0 UID: 0 PID: 12 Comm: kworker/0:1 Tainted: G           O        7.2.13 #1 PREEMPT(voluntary)
[  104.000001] Call Trace:
[  104.000001]  <TASK>
[  104.000002]  dlm_lowcomms_connect_node+0x10/0x40 [dlm]
[  104.000002]  </TASK>
[  104.000002] ---[ end trace 0000000000000000 ]---
"""


def layout(comms=(RUST_DRAIN, RUST_PUSH, RUST_VEC)):
    return {"comms_names": set(comms), "memory_names": {"dlm_allocate_mhandle"}}


class ConsoleFilter(unittest.TestCase):
    def test_removes_exactly_the_reports(self):
        text = "[  1.0] boot\n" + INJECTION + IRQ_INJECTION + "[  2.0] done\n"
        reps, rest = A.split_injections(text.splitlines())
        self.assertEqual(len(reps), 2)
        self.assertEqual(rest, ["[  1.0] boot", "[  2.0] done"])
        self.assertEqual(reps[0]["injector"], "failslab")
        self.assertEqual(reps[0]["comm"], "kworker/u4:3")
        self.assertEqual(reps[1]["injector"], "fail_page_alloc")
        self.assertTrue(reps[1]["irq"])

    def test_the_reports_alone_would_fail_the_scan(self):
        self.assertTrue(any(C.BAD_CONSOLE.search(l) for l in INJECTION.splitlines()))

    def test_a_splat_after_a_report_stays(self):
        lines = (INJECTION + SPLAT).splitlines()
        rest = A.strip_injections(lines)
        self.assertEqual(rest, SPLAT.splitlines())
        self.assertTrue(any(C.BAD_CONSOLE.search(l) for l in rest))

    def test_a_foreign_line_inside_keeps_the_whole_report(self):
        lines = INJECTION.splitlines()
        lines.insert(12, "[  102.750104] BUG: KASAN: slab-use-after-free in drain+0x1/0x2 [dlm]")
        reps, rest = A.split_injections(lines)
        self.assertEqual(reps, [])
        self.assertEqual(rest, lines)

    def test_lines_of_other_contexts_inside_are_kept_and_the_report_goes(self):
        # Seen in make check: the error callback's line between the report's
        # name and CPU lines, and another between two frames.
        lines = INJECTION.splitlines()
        own = "[  102.750101] dlm: node 2: socket error sending to node 1, sk_err=104"
        torture = "[  102.750104] dlmrs-torture a2 batch=1 rc=0 torture ls=t"
        lines.insert(2, own)
        lines.insert(14, torture)
        reps, rest = A.split_injections(lines)
        self.assertEqual(len(reps), 1)
        self.assertEqual(rest, [own, torture])

    def test_a_context_preempted_between_header_and_dump(self):
        # Seen in make check (allocfail, debug flavour): a worker preempted
        # after fail_dump()'s header, another worker's whole report, then
        # the first worker's dump_stack() with no header of its own.
        first = INJECTION.splitlines()
        second = [l.replace("kworker/u4:3", "kworker/u4:5") for l in first]
        own = "[  102.750100] dlm: connecting to 1"
        lines = first[:2] + [own] + second + first[2:]
        reps, rest = A.split_injections(lines)
        self.assertEqual([r["comm"] for r in reps], ["kworker/u4:5", "kworker/u4:3"])
        self.assertEqual(rest, [own])

    def test_a_dump_pairs_only_with_a_header_of_its_injector(self):
        page = IRQ_INJECTION.splitlines()
        slab = INJECTION.splitlines()
        lines = page[:2] + slab[2:]
        self.assertEqual(A.strip_injections(lines), lines)
        reps, rest = A.split_injections(page[:2] + slab[:2] + slab[2:] + page[2:])
        self.assertEqual([r["injector"] for r in reps], ["failslab", "fail_page_alloc"])
        self.assertEqual(rest, [])

    def test_a_dump_without_a_header_stays(self):
        lines = INJECTION.splitlines()[2:]
        self.assertEqual(A.strip_injections(lines), lines)

    def test_a_report_without_its_end_stays(self):
        lines = INJECTION.splitlines()[:-1]
        self.assertEqual(A.strip_injections(lines), lines)

    def test_a_header_alone_stays(self):
        lines = INJECTION.splitlines()[:2] + SPLAT.splitlines()
        self.assertEqual(A.strip_injections(lines), lines)

    def test_cluster_applies_the_filter(self):
        class Node:
            dlm = "/x/dlm.ko"

            def console_text(self):
                return INJECTION + SPLAT
        cl = C.Cluster.__new__(C.Cluster)
        cl.nodes = {1: Node()}
        cl.dlm = ["/x/dlm.ko"]
        self.assertIn("Call Trace:", " ".join(cl.console_problems()[1]))
        cl.console_filters = (A.strip_injections,)
        bad = cl.console_problems()[1]
        self.assertEqual(len([l for l in bad if "Call Trace:" in l]), 1)
        self.assertTrue(any("WARNING:" in l for l in bad))


class Classify(unittest.TestCase):
    def test_comms_site_skips_the_kernel_crate(self):
        rep = A.split_injections(INJECTION.splitlines())[0][0]
        self.assertEqual(A.classify(rep, layout()), ("comms", "lowcomms::drain"))

    def test_lock_manager(self):
        rep = A.split_injections(INJECTION.splitlines())[0][0]
        self.assertEqual(A.classify(rep, layout(comms=()))[0], "lock manager")

    def test_interrupt_on_top_of_dlm_code(self):
        rep = A.split_injections(IRQ_INJECTION.splitlines())[0][0]
        self.assertEqual(A.classify(rep, layout())[0], "interrupt")

    def test_rust_path(self):
        self.assertEqual(A.rust_path(RUST_PUSH)[-2:], ["UnackedQueue", "push_back"])
        self.assertEqual(A.rust_path("dlm_user_request"), ["dlm_user_request"])


class Breaks(unittest.TestCase):
    def ctx(self, name, brk):
        class Args:
            break_assert = brk

        class Ctx:
            pass
        c = Ctx()
        c.name, c.args = name, Args()
        return c

    def test_plain(self):
        c = self.ctx("allocfail", None)
        A.expect(c, "lvb", True, "m")
        with self.assertRaises(Failed):
            A.expect(c, "lvb", False, "m")

    def test_one_turned_around(self):
        c = self.ctx("allocfail[mixed-2: ours on 2,3]", "allocfail:lvb")
        with self.assertRaises(Failed):
            A.expect(c, "lvb", True, "m")
        A.expect(c, "lvb", False, "m")
        A.expect(c, "links", True, "m")

    def test_all_in_a_list(self):
        c = self.ctx("churn", "allocfail:all,churn:all")
        A.expect(c, "lvb", True, "counter")
        A.expect(c, "resets", True, "no reset")
        with self.assertRaises(Failed) as e:
            A.end_breaks(c)
        self.assertIn("2 assertions turned around", str(e.exception))
        self.assertIn("counter", str(e.exception))

    def test_all_still_fails_a_real_failure(self):
        c = self.ctx("churn", "churn:all")
        with self.assertRaises(Failed):
            A.expect(c, "lvb", False, "counter")


class Layout(unittest.TestCase):
    def test_missing_objects_fail(self):
        with self.assertRaises((Failed, OSError, Exception)):
            A.comms_layout("/nonexistent", "/nonexistent/dlm.ko")


if __name__ == "__main__":
    unittest.main()
