"""BeMi: the vote of Example 1, the MIP models against brute force on every back end, bad input,
and a reduced bemi-digits run through Ray and MLflow (its resume: ``test_method_contract``)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pyarrow.parquet as pq
import pytest

from binarena.cli import main
from binarena.jobs import expand
from binarena.mip import BACKENDS
from binarena.methods.bemi.network import Network, output_code
from binarena.methods.bemi.train import train_network
from binarena.methods.bemi.vote import confusion, vote
from binarena.suite import load_suite

# Example 1 of the paper: which label each of the 45 pair networks votes for.
EXAMPLE_1 = {
    0: [(0, 1), (0, 2), (0, 3), (0, 5), (0, 7), (0, 8)],
    1: [(1, 5), (1, 6)],
    2: [(1, 2), (2, 5), (2, 8)],
    3: [(1, 3), (2, 3), (3, 4), (3, 5)],
    4: [(0, 4), (1, 4), (2, 4), (4, 5), (4, 6), (4, 7), (4, 9)],
    5: [(5, 6), (5, 7)],
    6: [(0, 6), (2, 6), (3, 6), (6, 7)],
    7: [(1, 7), (2, 7), (3, 7)],
    8: [(1, 8), (3, 8), (4, 8), (5, 8), (6, 8), (7, 8)],
    9: [(0, 9), (1, 9), (2, 9), (3, 9), (5, 9), (6, 9), (7, 9), (8, 9)],
}
PAIRS = list(itertools.combinations(range(10), 2))


def ballot(moves: dict[tuple[int, int], int] | None = None) -> np.ndarray:
    winner = {pair: label for label, pairs in EXAMPLE_1.items() for pair in pairs}
    winner.update(moves or {})
    return np.array([[winner[pair] for pair in PAIRS]])


def statuses(predictions: np.ndarray, truths: list[int]) -> tuple[list[int], list[int]]:
    out = [vote(predictions, PAIRS, np.array([t])) for t in truths]
    return [int(v.labels[0]) for v in out], [int(v.statuses[0]) for v in out]


def test_example_1_covers_every_pair_once():
    assert sorted(p for pairs in EXAMPLE_1.values() for p in pairs) == PAIRS


def test_vote_reproduces_example_1_and_every_status():
    labels, status = statuses(ballot(), [9, 3])
    assert labels == [9, 9] and status == [0, 6]  # one dominant label
    labels, status = statuses(ballot({(8, 9): 8}), [4, 0])
    assert labels == [-1, -1] and status == [3, 4]  # D = {4, 8, 9}: unclassified
    labels, status = statuses(ballot({(3, 9): 3}), [4, 9, 0])
    assert labels == [4, 4, 4] and status == [1, 2, 5]  # D = {4, 9}: network {4, 9} decides
    v = vote(np.concatenate([ballot(), ballot({(8, 9): 8}), ballot({(3, 9): 3})]), PAIRS,
             np.array([9, 4, 9]))
    assert v.percentages()["pct_correct"] == pytest.approx(100 / 3)
    assert v.percentages()["pct_unclassified"] == pytest.approx(100 / 3)
    assert confusion(np.array([9, 4, 9]), v.labels, 10)[4, 10] == 1  # the -1 column


def test_output_code():
    assert output_code(2, 1).tolist() == [[1], [-1]]
    assert output_code(3, 3).tolist() == [[1, -1, -1], [-1, 1, -1], [-1, -1, 1]]
    with pytest.raises(ValueError, match="output layer of 2 neurons does not fit p = 3"):
        output_code(3, 2)


# A tiny instance: 3 pixels, one hidden layer of 2, one output; 5 images.
X = np.array([[0, 3, 0], [1, 1, 1], [0, 3, 2], [3, 0, 2], [1, 2, 3]], dtype=np.float64)
Y = np.array([[-1], [1], [-1], [-1], [1]])


def brute_force_sat_margin() -> int:
    """max over all 3^8 weight settings of the images with y * yhat >= 1/2."""
    best = 0
    for flat in itertools.product((-1, 0, 1), repeat=8):
        w = np.array(flat)
        net = Network((0, 1), [w[:6].reshape(3, 2), w[6:].reshape(2, 1)])
        best = max(best, int(net.confident(X, Y).sum()))
    return best


BACKEND_NAMES = sorted(BACKENDS)


@pytest.fixture(scope="module")
def trained() -> dict:
    return {name: train_network(X, Y, (0, 1), [2], weight_bound=1, eps=0.1, limits=(30, 30, 30),
                                backend=name, mw_negative="margin") for name in BACKEND_NAMES}


def test_sat_margin_optimum_equals_brute_force_on_every_backend(trained):
    best = brute_force_sat_margin()
    assert 0 < best < len(X)  # the instance is not trivial
    for name, result in trained.items():
        sm = result.stages[0]
        assert (sm.status, sm.objective) == ("optimal", pytest.approx(best)), name
        assert result.confident == best and result.sm_mismatch == 0 and result.final_mismatch == 0


def test_max_margin_and_min_weight_optima_agree_across_backends():
    """On one fixed set of confidently correct images (S-M can have several optima with different
    sets), M-M's optimum, and M-W's with M-M's margins fixed, are the same for every back end."""
    from binarena.mip import solve
    from binarena.methods.bemi import models

    confident = [0, 1, 2, 4]  # the images S-M classifies confidently in HiGHS's optimum
    x, y, layers = X[confident], Y[confident], [3, 2, 1]
    mm = {}
    for name in BACKEND_NAMES:
        cm, m = models.max_margin(x, y, layers, 1, 0.1)
        mm[name] = (solve(cm.model, name, time_limit=30), m)
    assert {r.status for r, _ in mm.values()} == {"optimal"}, mm
    objectives = [r.objective for r, _ in mm.values()]
    assert max(objectives) - min(objectives) < 1e-3
    result, m = mm["highs"]
    margins = [np.floor(result.values[ml] * 1e6) / 1e6 for ml in m]
    mw = []
    for name in BACKEND_NAMES:
        cm, _ = models.min_weight(x, y, layers, 1, 0.1, margins, below=0.0)
        mw.append(solve(cm.model, name, time_limit=30))
    assert {r.status for r in mw} == {"optimal"} and len({round(r.objective, 6) for r in mw}) == 1


def test_paper_rule_for_min_weight_is_kept_or_reported():
    result = train_network(X, Y, (0, 1), [2], weight_bound=1, eps=0.1, limits=(30, 30, 30),
                           backend="highs")
    mw = result.stages[2]
    assert mw.status in {"optimal", "infeasible"}
    assert mw.used == (mw.status == "optimal")  # an infeasible M-W keeps M-M's network


class FakeClock:
    """Wall-clock time that moves only when the test says: model building takes ``build[stage]``
    seconds, and every solve uses all the seconds it is given."""

    def __init__(self, build: dict[str, float]):
        self.now, self.build, self.given = 0.0, build, {}

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clocked(monkeypatch):
    from binarena.methods.bemi import models, train
    from binarena.mip import solve

    def make(build: dict[str, float]) -> FakeClock:
        clock = FakeClock(build)
        monkeypatch.setattr(train.time, "monotonic", clock.monotonic)
        for stage, builder in (("S-M", "sat_margin"), ("M-M", "max_margin"), ("M-W", "min_weight")):
            def built(*args, _stage=stage, _real=getattr(models, builder), **kw):
                clock.now += clock.build.get(_stage, 0.0)
                return _real(*args, **kw)
            monkeypatch.setattr(models, builder, built)

        def timed(model, backend, *, time_limit, **kw):
            stage = ("S-M", "M-M", "M-W")[len(clock.given)]
            clock.given[stage] = time_limit
            result = solve(model, backend, time_limit=time_limit, **kw)
            clock.now += time_limit
            return dataclasses.replace(result, seconds=time_limit, status="time_limit")
        monkeypatch.setattr(train, "solve", timed)
        return clock
    return make


def test_a_deadline_cuts_stage_limits_so_the_network_ends_within_it(clocked):
    """Limits 29 / 29 / 2 within 41 s, S-M's model built in 7 s: S-M keeps what the later stages'
    limits and the 2 s kept aside for a solver's overrun leave (41 - 7 - 31 - 2 = 1 s), M-M its
    29 s, M-W its 2 s, and the network ends at 39 s."""
    clock = clocked({"S-M": 7.0})
    result = train_network(X, Y, (0, 1), [2], weight_bound=1, eps=0.1, limits=(29, 29, 2),
                           backend="highs", mw_negative="margin", deadline=41)
    assert clock.given == pytest.approx({"S-M": 1.0, "M-M": 29.0, "M-W": 2.0})
    assert result.wall_seconds == pytest.approx(39.0)
    assert [s.time_limit for s in result.stages] == pytest.approx([1.0, 29.0, 2.0])


def test_a_deadline_skips_a_stage_with_no_time_left_and_keeps_the_earlier_network(clocked):
    # S-M gets 60 - 31 - 2 = 27 s, M-M's model then takes 29.5: 60 - 56.5 - 2 - 2 < 0 is left
    clock = clocked({"M-M": 29.5})
    result = train_network(X, Y, (0, 1), [2], weight_bound=1, eps=0.1, limits=(29, 29, 2),
                           backend="highs", mw_negative="margin", deadline=60)
    assert list(clock.given) == ["S-M"]
    assert [s.status for s in result.stages] == ["time_limit", "skipped", "skipped"]
    assert result.stages[0].used and result.wall_seconds == pytest.approx(56.5)


def test_without_a_deadline_each_stage_gets_its_own_limit(clocked):
    clock = clocked({"S-M": 7.0, "M-M": 30.0})
    train_network(X, Y, (0, 1), [2], weight_bound=1, eps=0.1, limits=(29, 29, 2),
                  backend="highs", mw_negative="margin")
    assert clock.given == pytest.approx({"S-M": 29.0, "M-M": 29.0, "M-W": 2.0})


TINY = {"dataset": {"name": "digits"},
        "methods": [{"name": "bemi", "params": {"layers": [64, 2, 1], "classes": [0, 1, 7],
                                                 "images_per_class": 4, "test_per_class": 20,
                                                 "time_limits": [3, 3, 1], "solver": "cpsat"}}],
        "seeds": [0], "model": None, "budgets": [], "training": {}}


@pytest.mark.parametrize("params, expected", [
    ({"p": 4}, "p = 4 is outside 2..3"),
    ({"layers": [64, 2, 3]}, "output layer of 3 neurons does not fit p = 2"),
    ({"layers": [784, 2, 1]}, "layers[0] is 784 but digits images have 64 pixels"),
    ({"images_per_class": 500}, "500 training images per class asked, but a class has only"),
    ({"classes": [0, 12]}, "classes [12] are not labels of digits"),
    ({"solver": "cplex"}, "cplex"),
    ({"deadline": 4}, "deadline 4 s leaves S-M no time after M-M's and M-W's limits (4 s)"),
    ({"model": "authors", "mw_negative": "margin"}, "mw_negative: margin applies to model: paper"),
    ({"model": "print"}, "params.model"),
])
def test_bad_bemi_input(capsys, write_suite, tmp_path, params, expected):
    method = {"name": "bemi", "params": {**TINY["methods"][0]["params"], **params}}
    suite = write_suite(**{**TINY, "methods": [method]})
    assert main(["run", str(suite), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and err.count("\n") == 0
    assert not (tmp_path / "r").exists()


def test_a_job_at_the_printed_model_keeps_the_key_recorded_before_the_variant(write_suite):
    """Key of TINY pinned at commit f185693, before ``model`` existed: ``model: paper`` (the
    default) leaves it, ``model: authors`` makes another job."""
    def key(**params) -> str:
        method = {"name": "bemi", "params": {**TINY["methods"][0]["params"], **params}}
        [job] = expand(load_suite(write_suite(**{**TINY, "methods": [method]})))
        return job.key

    # sm_start was "ste" then: its default is "ternary" now (issue 17), which must move the key,
    # or a dense start's recorded results would be taken for the ternary start's
    assert key(sm_start="ste") == key(model="paper", sm_start="ste") == "2e829e5c80894b42"
    assert key() == key(sm_start="ternary") != key(sm_start="ste")
    assert key(model="authors") != key()
    # repair and sample (issue 17, items 1 and 5) leave it at their defaults too
    assert key() == key(repair=False, sample="random")
    assert len({key(), key(repair=True), key(sample="kmedoids")}) == 3


def test_solver_not_installed_is_one_line(capsys, write_suite, tmp_path, monkeypatch):
    monkeypatch.setattr(type(BACKENDS["cpsat"]), "available",
                        lambda self: (False, "ortools is not installed: pip install ortools"))
    assert main(["run", str(write_suite(**TINY)), "--results", str(tmp_path / "r")]) == 2
    assert "ortools is not installed" in capsys.readouterr().err


def test_reduced_bemi_digits_through_ray_and_mlflow(ray_cluster, write_suite, tmp_path, capsys):
    results = tmp_path / "results"
    suite = write_suite(**TINY)
    assert main(["run", str(suite), "--results", str(results)]) == 0
    rows = pq.read_table(results / "tiny" / "results.parquet").to_pylist()
    assert len(rows) == 1 and {r["status"] for r in rows} == {"ok"}
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    artifacts = {a.path for a in client.list_artifacts(rows[0]["mlflow_run_id"])}
    assert {"ensemble.npz", "networks.parquet", "votes.parquet", "confusion.png"} <= artifacts
    metrics = client.get_run(rows[0]["mlflow_run_id"]).data.metrics
    assert metrics["networks"] == 3 and metrics["mismatch_sm"] == 0
    assert metrics["accuracy"] == pytest.approx(metrics["pct_s0"] + metrics["pct_s1"])
    assert "bemi" in capsys.readouterr().out
    # the warm-start benchmark finds the job's images: its vote of the saved networks is the
    # job's recorded accuracy; a dense start has every weight, a ternary one not
    from binarena.benchmarks.bemi_warm import compare

    ste, ternary, trained = compare(results / "tiny", None, rows[0]["method_label"], 0, str(suite))
    assert trained["test"] == pytest.approx(rows[0]["accuracy"])
    assert ste["links"] == 100.0 and ternary["links"] < 100.0
    assert trained["networks"] == "trained (ternary start)" and 0 <= ternary["validation"] <= 100
    # a row renamed in the suite keeps its recorded job, under its new label, in the reports
    from binarena.results import ResultsTable
    from binarena.standings import recorded_labels

    renamed = write_suite(**{**TINY, "methods": [{**TINY["methods"][0], "label": "bemi renamed"}]})
    recorded = ResultsTable.open(results / "tiny" / "results.parquet")
    assert recorded_labels(load_suite(renamed), recorded) == {rows[0]["key"]: "bemi renamed"}
    again = compare(results / "tiny", None, "bemi renamed", 0, str(renamed))[2]
    assert again["method"] == "bemi renamed" and again["test"] == trained["test"]


def test_a_saved_network_without_active_pixels_loads_back_with_the_same_predictions(tmp_path):
    # `active` None means every pixel; saved as None it became an object array np.load refuses
    from binarena.methods.bemi.method import load_network, save_network
    from binarena.methods.bemi.train import TrainedNetwork

    rng = np.random.default_rng(0)
    net = Network((3, 8), [rng.integers(-1, 2, (6, 3)), rng.integers(-1, 2, (3, 1))])
    trained = TrainedNetwork(net, [], images=4, confident=4, sm_mismatch=0, final_mismatch=0,
                             links_mm=None, links_mw=None)
    save_network(trained, tmp_path / "net.npz")
    loaded, report = load_network(tmp_path / "net.npz")
    x = rng.integers(0, 17, (20, 6))
    assert loaded.labels == (3, 8) and loaded.active.all() and len(loaded.active) == 6
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    assert report["row"]["images"] == 4
