# SPDX-License-Identifier: GPL-2.0
"""Unit tests of the controld scenario's parsers (no VMs): the outputs are
those of corosync 3.1.7 and dlm_controld 4.2.0 in the guests."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sc_controld as S  # noqa: E402

DLM_TOOL_LS = """dlm lockspaces
name          gfs0
id            0xd6c2ab9a
flags         0x00000000 
change        member 2 joined 0 remove 1 failed 1 seq 6,6
members       1 3 

name          t
id            0x68a53196
flags         0x00000000 
change        member 3 joined 1 remove 0 failed 0 seq 2,3
members       1 2 3 
new change    member 2 joined 0 remove 1 failed 1 seq 7,7
new status    wait messages 1
new members   1 3 
"""


class ParseTest(unittest.TestCase):
    def test_views(self):
        out = "corosync quorate=1 members=1,3\ndlm_controld members=1,3\n"
        self.assertEqual(S.parse_views(out), (True, [1, 3], [1, 3]))
        out = "corosync quorate=0 members=3\ndlm_controld members=\n"
        self.assertEqual(S.parse_views(out), (False, [3], []))
        self.assertIsNone(S.parse_views("corosync-quorumtool: cannot connect\n"))

    def test_lockspaces(self):
        ls = S.parse_lockspaces(DLM_TOOL_LS)
        self.assertEqual(ls["gfs0"], ([1, 3], "member 2 joined 0 remove 1 failed 1"))
        # A change in progress ("new members") is not the current membership.
        self.assertEqual(ls["t"], ([1, 2, 3], "member 3 joined 1 remove 0 failed 0"))
        self.assertEqual(S.parse_lockspaces("dlm lockspaces\n"), {})


if __name__ == "__main__":
    unittest.main()
