"""The BeMi report beside the paper's Table 2: links after a stage are the network in force once
that stage has ended, worked out by hand on three networks."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from binarena.benchmarks.bemi_bench import (PAPER_TABLE_2, _spread, accuracy_table,
                                            training_figures, training_table)
from binarena.methods.bemi.network import Network


def _net(nonzero: int) -> Network:
    """A [4, 2, 1] network (10 weights) with ``nonzero`` of them non-zero."""
    flat = np.zeros(10, dtype=np.int64)
    flat[:nonzero] = 1
    return Network((0, 1), [flat[:8].reshape(4, 2), flat[8:].reshape(2, 1)], None)


def _row(**stages) -> dict:
    row = {"sm_status": "optimal", "sm_seconds": 2.0, "confident": 8, "images": 10,
           "mm_objective": None, "mw_objective": None, "mw_gap": None, "links_mm": None,
           "wall_seconds": 50.0}
    row.update(stages)
    return {"row": row}


def test_links_after_each_stage_are_those_of_the_network_in_force():
    nets = [
        # M-M and M-W found networks: 80 % after M-M, the final 30 %
        (_net(3), _row(mm_objective=0.5, links_mm=80.0, mw_objective=3.0, mw_gap=0.25)),
        # M-M found one (60 %), M-W none: the final network is M-M's
        (_net(6), _row(mm_objective=0.4, links_mm=60.0, wall_seconds=59.5)),
        # neither: S-M's network (100 %) is in force after both stages
        (_net(10), _row(sm_status="time_limit", sm_seconds=5.0, confident=6)),
    ]
    f = training_figures(nets)
    assert f["links_mm"] == pytest.approx((80 + 60 + 100) / 3)
    assert f["links_mw"] == pytest.approx((30 + 60 + 100) / 3)
    assert (f["mm_solved"], f["mw_solved"], f["sm_optimal"]) == (2, 1, 2)
    assert f["gap_mean"] == f["gap_max"] == pytest.approx(25.0)
    assert f["confident"] == pytest.approx(100 * 22 / 30)
    assert f["sm_seconds"] == pytest.approx(3.0) and f["seconds_max"] == 59.5


def test_spread_is_the_mean_and_sample_standard_deviation():
    values = [71.5, 74.25, 69.0]
    mean, sd = statistics.mean(values), statistics.stdev(values)
    assert _spread(values) == f"{mean:.2f} +- {sd:.2f}"
    assert _spread([61.76]) == "61.76"


def test_paper_table_2_holds_the_printed_mnist_row_at_40_images():
    assert PAPER_TABLE_2[("mnist", "[784, 4, 4, 1]", 40)] == (15.92, 18.50, 23.89, 58.70, 29.42)
    assert len(PAPER_TABLE_2) == 16


def test_a_run_where_m_w_found_nothing_shows_no_gap_not_nan():
    run = {"label": "bemi r=40", "seed": 0, "layers": "[784, 4, 4, 1]", "r": 40,
           "nets": [(_net(6), _row(mm_objective=0.4, links_mm=60.0, wall_seconds=59.5))]}
    line = training_table([run], "mnist").splitlines()[-1]
    assert "| 0/1 | - / - |" in line and "nan" not in line


def test_table_1_figures_stand_only_beside_mnist_rows():
    # Table 1 is MNIST's; Fashion-MNIST's accuracy is only drawn (Fig. 5): nothing to print beside
    metrics = {k: 50.0 for k in ["pct_correct", "pct_wrong", "pct_unclassified",
                                 *(f"pct_s{i}" for i in range(7))]}
    run = {"label": "bemi r=40", "seed": 0, "layers": "[784, 4, 4, 1]", "r": 40, "metrics": metrics}
    assert accuracy_table([run], "mnist").splitlines()[-1].endswith("| 78.82 / 19.30 / 1.88 |")
    assert accuracy_table([run], "fashion-mnist").splitlines()[-1].endswith("| 50.00 |  |")
