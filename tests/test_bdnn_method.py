"""``bdnn-milp`` as a user runs it: through the CLI on Ray (sub-tasks per radius, member and
restart), its figures recomputed from the networks it saved, its resume, and bad input."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from binarena.cli import main
from binarena.methods.bdnn.data import split_table, table_of
from binarena.methods.bdnn.network import BDNN
from binarena.methods.bdnn.milp import Settings
from binarena.methods.bdnn.network import target_codes, training_loss
from binarena.methods.bdnn.train import Solver, local_search, random_network
from binarena.registry import DATASETS

SUITE = {
    "name": "bdnn-tiny",
    "dataset": {"name": "breast-cancer"},
    "methods": [
        {"name": "bdnn-milp", "label": "local search",
         "params": {"layers": [30, 2, 1], "heuristic": "local-search", "restarts": 2,
                    "robust_radius": [0, 0.05], "train_size": 40, "time_limit": 3,
                    "max_rounds": 2, "perturbations": [0, 0.5], "solver": "highs"}},
        {"name": "bdnn-milp", "label": "k-means one-vs-rest",
         "params": {"layers": [30, 2, 2], "heuristic": "kmeans-split", "outputs": "one-vs-rest",
                    "max_splits": 2, "train_size": 30, "time_limit": 3, "perturbations": [0],
                    "solver": "highs"}},
    ],
    "seeds": [3],
}


def networks(blob: bytes) -> dict[str, BDNN]:
    with np.load(io.BytesIO(blob)) as data:
        names = {key.split("/")[0] for key in data.files}
        return {n: BDNN.from_arrays({k.split("/")[1]: data[k] for k in data.files
                                     if k.startswith(n + "/")}) for n in names}


def test_bdnn_milp_through_ray_and_mlflow(ray_cluster, write_suite, tmp_path):
    results = tmp_path / "results"
    assert main(["run", str(write_suite(**SUITE)), "--results", str(results)]) == 0
    rows = {r["method_label"]: r for r in
            pq.read_table(results / "bdnn-tiny" / "results.parquet").to_pylist()}
    assert {r["status"] for r in rows.values()} == {"ok"}
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    spec = DATASETS.get("breast-cancer")
    split = split_table(*table_of(type("D", (), {"name": "breast-cancer"})(), None), 3)
    assert spec.num_classes == split.classes
    for label, members in (("local search", False), ("k-means one-vs-rest", True)):
        run_id = rows[label]["mlflow_run_id"]
        metrics = json.loads(rows[label]["metrics"])
        files = {a.path for a in client.list_artifacts(run_id)}
        assert {"networks.npz", "solves.parquet", "robustness.parquet"} <= files
        client.download_artifacts(run_id, "networks.npz", str(tmp_path))
        nets = networks((tmp_path / "networks.npz").read_bytes())
        radius0 = sorted(n for n in nets if n.startswith("r0-"))
        # the test accuracy, recomputed from the saved weights on the seed's own split
        if members:
            margins = np.stack([nets[n].preactivations(split.x_test)[-1][:, 0]
                                for n in sorted(radius0, key=lambda n: int(n.split("-")[1]))], 1)
            predicted = margins.argmax(axis=1)
        else:
            predicted = nets["r0-joint"].predict(split.x_test)
        assert metrics["accuracy"] == pytest.approx(100 * np.mean(predicted == split.y_test))
        assert metrics["mismatches"] == 0
    local = json.loads(rows["local search"]["metrics"])
    assert local["trainings"] == 4  # 2 radii x 2 restarts, each a sub-task
    assert {"accuracy_radius_0", "accuracy_radius_0.05"} <= set(local)
    ovr = json.loads(rows["k-means one-vs-rest"]["metrics"])
    assert ovr["trainings"] == 2  # one member per class


def test_local_search_never_makes_the_network_worse():
    x, y = table_of(type("D", (), {"name": "breast-cancer"})(), None)
    split = split_table(x, y, 0)
    x, y = split.x_train[:50], split.y_train[:50]
    layers, settings = [30, 3, 1], Settings(loss="zero-one")
    codes = target_codes(y, 1)
    start = random_network(layers, settings, x, 0)
    trained = local_search(x, codes, layers, settings, Solver("highs", 10), start, 3)
    losses = [training_loss(start.outputs(x), codes, "zero-one")]
    losses += [h["train_loss"] for h in trained.history]
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    assert trained.train_loss == training_loss(trained.network.outputs(x), codes, "zero-one")
    assert trained.train_loss < losses[0]


def test_a_killed_job_solves_only_what_is_missing(tmp_path, monkeypatch):
    from binarena.jobs import expand
    from binarena.methods import base
    from binarena.methods.bdnn import method
    from binarena.suite import Suite

    suite = Suite.model_validate({**SUITE, "methods": [SUITE["methods"][0]]})
    (job,) = expand(suite)
    first = base.run_job(base.RunContext(job=job, data_root=None, workdir=tmp_path))
    saved = sorted(p.name for p in (tmp_path / "solves").iterdir())
    assert len(saved) == 4
    (tmp_path / "solves" / saved[0]).unlink()
    solved = []
    real = method.train_one
    monkeypatch.setattr(method, "train_one", lambda p, item: solved.append(item) or real(p, item))
    again = base.run_job(base.RunContext(job=job, data_root=None, workdir=tmp_path))
    assert [item.name + ".npz" for item in solved] == [saved[0]]
    assert again.metrics["trainings"] == first.metrics["trainings"]


BAD = {"name": "bdnn-milp", "params": {"layers": [30, 2, 1], "solver": "highs"}}


@pytest.mark.parametrize("params, expected", [
    ({"layers": [31, 2, 1]}, "layers[0] is 31 but breast-cancer has 30 features"),
    ({"layers": [30, 2, 3]}, "layers[-1] is 3 but breast-cancer has 2 classes"),
    ({"robust_radius": [0, -0.1]}, "params.robust_radius: a radius is at least 0, got -0.1"),
    ({"robust_radius": -1}, "params.robust_radius: a radius is at least 0, got -1"),
    ({"heuristic": "exact", "solver": "gurobi"}, "beyond the size-limited Gurobi licence"),
    ({"heuristic": "newton"}, "params.heuristic"),
])
def test_bad_bdnn_input(capsys, write_suite, tmp_path, params, expected):
    from binarena.mip import BACKENDS

    if params.get("solver") == "gurobi":
        gurobi = BACKENDS["gurobi"]
        if not gurobi.available()[0] or gurobi.licence() != "size-limited":  # type: ignore[attr-defined]
            pytest.skip("needs gurobipy with its size-limited licence (the pip wheel's)")
    method = {"name": "bdnn-milp", "params": {**BAD["params"], **params}}
    suite = write_suite(**{**SUITE, "name": "bad", "methods": [method]})
    assert main(["run", str(suite), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and err.count("\n") == 0
    assert str(suite) in err
    assert not (tmp_path / "r").exists()


def test_the_restart_kept_has_the_lowest_training_loss_then_the_best_validation():
    from binarena.methods.bdnn.method import SolveItem
    from binarena.methods.bdnn.report import kept
    from binarena.methods.bdnn.train import Trained

    split = split_table(*table_of(type("D", (), {"name": "breast-cancer"})(), None), 0)
    always = lambda label: BDNN([np.zeros((30, 1))], [np.array([-1.0 if label else 1.0])])  # noqa: E731
    majority = int(np.bincount(split.y_val).argmax())

    def trained(loss: float, label: int) -> Trained:
        return Trained(always(label), loss, None, "optimal", 0.0, 0)

    items = [SolveItem(0.0, None, k) for k in range(4)]
    done = dict(zip(items, [trained(5, 1), trained(3, 1 - majority), trained(3, majority),
                            trained(4, majority)]))
    (best,) = kept(items, done, split).values()
    assert best is done[items[2]]  # loss 3, and the better validation accuracy of the two 3s


def test_kmeans_splitting_grows_the_clusters_from_one():
    from binarena.methods.bdnn.train import kmeans_split

    split = split_table(*table_of(type("D", (), {"name": "breast-cancer"})(), None), 1)
    x, y = split.x_train[:60], split.y_train[:60]
    settings = Settings(loss="zero-one")
    trained = kmeans_split(x, target_codes(y, 1), [30, 2, 1], settings, Solver("highs", 10), 3,
                           lambda net: net.accuracy(split.x_val, split.y_val), 0)
    steps = [h["step"] for h in trained.history]
    assert steps[:2] == ["1 clusters", "2 clusters"]
    # one cluster, one shared output: the best it can do is to call every point the majority
    assert trained.history[0]["train_loss"] == min(np.bincount(y))
    assert trained.history[1]["train_loss"] <= trained.history[0]["train_loss"]
    best = max(h["val_accuracy"] for h in trained.history)
    assert trained.network.accuracy(split.x_val, split.y_val) == best
