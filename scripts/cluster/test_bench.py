# SPDX-License-Identifier: GPL-2.0
"""Host unit tests of the benchmark's summaries (scripts/cluster/bench.py)."""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench as B  # noqa: E402


def rows(n, stock, ours, key="lk1"):
    out = []
    for k, (s, o) in enumerate(zip(stock, ours)):
        out.append({"nodes": n, "layer": "stock", "round": k + 1, "v": {key: s}})
        out.append({"nodes": n, "layer": "ours", "round": k + 1, "v": {key: o}})
    return out


class SummaryTest(unittest.TestCase):
    def test_medians_and_pairs(self):
        s = B.summarize(rows(3, [100, 90, 110], [120, 100, 130]), 3)["lk1"]
        self.assertEqual(sorted(s["stock"]), [90, 100, 110])
        self.assertEqual(len(s["pairs"]), 3)
        self.assertAlmostEqual(min(s["pairs"]), 100 / 90)
        self.assertAlmostEqual(max(s["pairs"]), 1.2)

    def test_other_size_ignored(self):
        self.assertEqual(B.summarize(rows(2, [1], [2]), 3), {})

    def test_resets_pool_every_sample(self):
        r = [{"nodes": 2, "layer": "stock", "round": 1,
              "v": {"reset": 2.0, "reset_all": [1.0, 2.0, 9.0]}},
             {"nodes": 2, "layer": "ours", "round": 1,
              "v": {"reset": 5.0, "reset_all": [5.0, 5.0]}}]
        s = B.summarize(r, 2)["reset"]
        self.assertEqual(s["stock"], [1.0, 2.0, 9.0])
        self.assertEqual(s["pairs"], [2.5])

    def test_table_ratio_of_medians(self):
        t = B.table(rows(2, [100, 200, 300], [150, 300, 450]), [2], False)
        line = [l for l in t.splitlines() if l.startswith(B.LABEL["lk1"])][0]
        self.assertIn("100/200/300", line)
        self.assertIn("150/300/450", line)
        self.assertIn(" 1.50 ", line)


class DocTest(unittest.TestCase):
    def test_block_replaced_not_duplicated(self):
        with tempfile.TemporaryDirectory() as d:
            doc = os.path.join(d, "b.rst")
            with open(doc, "w") as f:
                f.write("Title\n=====\n\nResults\n")
            B.write_doc("first table", None, False, doc)
            B.write_doc("second table", None, False, doc)
            with open(doc) as f:
                s = f.read()
            self.assertEqual(s.count(".. bench-main-start"), 1)
            self.assertIn("    second table", s)
            self.assertNotIn("first table", s)
            self.assertTrue(s.startswith("Title\n"))


if __name__ == "__main__":
    unittest.main()
