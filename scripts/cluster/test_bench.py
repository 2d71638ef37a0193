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
        self.assertAlmostEqual(s["ratio"], 1.2)
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


class AlternationTest(unittest.TestCase):
    def test_schedule_alternates_from_stock(self):
        self.assertEqual(B.schedule(3), ["stock", "ours"] * 3)
        s = B.schedule(5)
        self.assertEqual(len(s), 10)
        self.assertEqual(s.count("stock"), s.count("ours"))
        # No two neighbouring rounds run the same layer.
        self.assertTrue(all(a != b for a, b in zip(s, s[1:])))

    def test_pairs_are_neighbouring_rounds(self):
        r = rows(2, [100, 200], [110, 150])
        self.assertEqual(B.pair_ratios(r, 2, "lk1"), [1.1, 0.75])
        # A round whose ours half is missing (run stopped) pairs with nothing.
        r = r[:-1]
        self.assertEqual(B.pair_ratios(r, 2, "lk1"), [1.1])

    def test_ratio_of_medians_not_median_of_ratios(self):
        # Medians 20 and 30: 1.5, while the round ratios are 3, 1.5, 0.5.
        self.assertAlmostEqual(B.ratio_of_medians([10, 20, 60], [30, 30, 30]), 1.5)
        self.assertAlmostEqual(B.ratio_of_medians([1, 2, 3, 4], [5, 5, 5, 5]), 2.0)
        self.assertIsNone(B.ratio_of_medians([], [1]))
        self.assertIsNone(B.ratio_of_medians([0, 0], [1, 1]))


class ClockTest(unittest.TestCase):
    def sample(self, host, mono, tsc, err=0.001):
        return {"host": host, "err": err, "mono": mono, "tsc": tsc, "step": 4000000,
                "cs": "refined-jiffies"}

    def test_rates(self):
        m, hz, e = B.clock_rates(self.sample(10.0, 5.0, 1000), self.sample(110.0, 105.0,
                                                                          2e11 + 1000))
        self.assertAlmostEqual(m, 1.0)
        self.assertAlmostEqual(hz, 2e9)
        self.assertAlmostEqual(e, 0.002 / 100)

    def test_check_clocks(self):
        good = {1: (1.0, 2.0e9, 0.0001), 2: (0.999, 2.001e9, 0.0001)}
        self.assertEqual(B.check_clocks(good), [])
        fast = dict(good)
        fast[2] = (1.5, 2.0e9, 0.0001)      # a clock 50 % fast
        slow = dict(good)
        slow[2] = (0.98, 2.0e9, 0.0001)     # jiffies that lost 2 %: reported only
        self.assertEqual(B.check_clocks(slow), [])
        self.assertEqual(len(B.check_clocks(fast)), 1)
        odd = {1: (1.0, 2.0e9, 0.0001), 2: (1.0, 2.0e9, 0.0001), 3: (1.0, 2.5e9, 0.0001)}
        self.assertIn("node 3", B.check_clocks(odd)[0])

    def test_cycles_to_us(self):
        r = [{"nodes": 2, "layer": "stock", "round": 1,
              "v": {"lk1": 2.5e-7, "wire_s": 133.0, "lk1_p50": 2e6,
                    "reset_all": [1e8, 3e8, 2e8], "reset": 2e8}}]
        B.cycles_to_us(r, 2e9)
        v = r[0]["v"]
        self.assertAlmostEqual(v["lk1"], 500.0)     # per cycle -> per second
        self.assertEqual(v["wire_s"], 133.0)        # no time in it
        self.assertAlmostEqual(v["lk1_p50"], 1000.0)  # 2e6 cycles at 2 GHz = 1 ms
        self.assertEqual(v["reset_all"], [50.0, 150.0, 100.0])  # ms
        self.assertEqual(v["reset"], 100.0)


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
