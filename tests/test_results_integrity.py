"""Nothing lost, nothing duplicated: one driver per results folder, one key per result, results
folders that move, SIGTERM, and results or MLflow stores that cannot be used."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from binarena.cli import main
from binarena.lock import LOCK_FILE, ResultsLock
from test_e2e import mlflow_runs, results_rows

from conftest import HANG_S

# One seed, two methods, short schedules: 3 stages (a pre-training and two jobs).
SMALL = {"seeds": [0], "methods": [{"name": "full-precision"}, {"name": "random"}],
         "training": {"epochs": 1, "batch_size": 64, "lr": 0.05}}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "binarena.cli", *args]


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# --- one driver per results folder -------------------------------------------------------------

def test_a_second_driver_refuses_with_the_holder_named(tmp_path, write_suite, capsys):
    results = tmp_path / "results"
    with ResultsLock(results, "binarena run other"):
        code = main(["run", str(write_suite(**SMALL)), "--results", str(results)])
    line = one_line(capsys.readouterr().err)
    assert code == 2
    assert f"results folder {results} is in use by `binarena run other` (pid {os.getpid()} on " \
           f"host {socket.gethostname()}, since " in line
    assert sorted(p.name for p in results.iterdir()) == [LOCK_FILE]  # nothing else written


def test_a_lock_dies_with_its_holder_and_is_reported_stale(tmp_path, caplog):
    results = tmp_path / "results"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from binarena.lock import ResultsLock\n"
        f"ResultsLock(Path({str(results)!r}), 'binarena run held').acquire()\n"
        "print('held', flush=True); time.sleep(600)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Exception, match=f"in use by `binarena run held` .pid {holder.pid} "):
            ResultsLock(results).acquire()
    finally:
        holder.kill()
        holder.wait()
    with caplog.at_level(logging.WARNING, logger="binarena.lock"):
        with ResultsLock(results):
            pass
    assert f"`binarena run held` (pid {holder.pid} on host" in caplog.text
    assert "ended without releasing its lock; taken over" in caplog.text
    assert (results / LOCK_FILE).read_text() == ""  # released cleanly: nothing stale left


def test_two_drivers_started_together_record_each_key_once(ray_address, tmp_path, write_suite):
    results = tmp_path / "results"
    suite = write_suite(**SMALL)  # the drivers start together: the second meets the first's lock
    command = cli("run", str(suite), "--results", str(results), "--address", ray_address)
    drivers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outcomes = [(d.wait(timeout=HANG_S), d.stderr.read()) for d in drivers]
    codes = sorted(code for code, _ in outcomes)
    if codes == [0, 0]:  # the second came after the first had finished: nothing left to do
        assert any("3 jobs already recorded: skipped" in err for _, err in outcomes), outcomes
    else:
        assert codes == [0, 2], outcomes
        refused = next(err for code, err in outcomes if code == 2)
        assert "is in use by `binarena run" in one_line(refused)
    rows = results_rows(results, "tiny")
    assert len(rows) == len({r["key"] for r in rows}) == 3
    children, parents = mlflow_runs(results, "tiny")
    assert sorted(c.data.tags["binarena.job_key"] for c in children) == sorted(r["key"] for r in rows)
    assert [p.info.status for p in parents] == ["FINISHED"]


# --- one key per result ------------------------------------------------------------------------

@pytest.mark.parametrize("second", [
    {"name": "random", "label": "random-again"},
    {"name": "random", "label": "random-b", "resources": {"cpus": 2}},
    {"name": "random", "label": "random-b", "training": {"epochs": 1}},  # the suite's epochs: same
])
def test_entries_that_would_share_their_jobs_are_refused(tmp_path, write_suite, capsys, second):
    suite = write_suite(**{**SMALL, "methods": [{"name": "random"}, second]})
    code = main(["run", str(suite), "--results", str(tmp_path / "results"), "--dry-run"])
    line = one_line(capsys.readouterr().err)
    assert code == 2
    assert f"{suite}: methods[0] (random) and methods[1] (" in line
    assert "would run the same jobs" in line


def test_entries_that_differ_in_what_they_run_keep_their_own_jobs(tmp_path, write_suite):
    from binarena.jobs import expand
    from binarena.suite import load_suite

    suite = write_suite(**{**SMALL, "methods": [
        {"name": "random"}, {"name": "random", "label": "random-long", "training": {"epochs": 3}}]})
    jobs = expand(load_suite(suite))
    assert len({j.key for j in jobs}) == len(jobs) == 2


def test_a_job_key_follows_the_datas_content_not_its_place(tmp_path, write_suite, data_root):
    import gzip

    from binarena.orchestrator import RunOptions, make_plan
    from binarena.suite import load_suite

    suite = load_suite(write_suite(**{**SMALL, "dataset": {"name": "mnist", "train_size": 500}}))

    def keys(root: Path) -> list[str]:
        plan = make_plan(suite, RunOptions(results=tmp_path / "results", data_root=root))
        return [job.key for job in plan.jobs]

    here, there = tmp_path / "here", tmp_path / "there"
    shutil.copytree(data_root / "mnist", here / "mnist")
    shutil.copytree(data_root / "mnist", there / "mnist")
    assert keys(here) == keys(there)  # moved, not changed: the same results
    labels = there / "mnist" / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(labels.read_bytes()))
    content[8] = (content[8] + 1) % 10  # one test label, still a valid class
    labels.write_bytes(gzip.compress(bytes(content)))
    changed = keys(there)
    assert all(a != b for a, b in zip(keys(here), changed))  # every stage: a new result


# --- relocatable results folders ---------------------------------------------------------------

def test_a_moved_results_folder_keeps_its_artifacts_under_the_new_place(ray_cluster, tmp_path,
                                                                        write_suite):
    old, new = tmp_path / "old", tmp_path / "new"
    assert main(["run", str(write_suite(**SMALL)), "--results", str(old)]) == 0
    shutil.move(old, new)
    assert main(["run", str(write_suite(**{**SMALL, "seeds": [0, 1]})), "--results", str(new)]) == 0
    assert not old.exists()  # nothing written to the old place
    client = MlflowClient(f"sqlite:///{new / 'mlflow.db'}")
    here = (new / "mlartifacts").resolve().as_uri()
    assert client.get_experiment_by_name("tiny").artifact_location == here
    children, parents = mlflow_runs(new, "tiny")
    assert len(children) == 6 and len(parents) == 2
    for run in children + parents:
        assert run.info.artifact_uri.startswith(here + "/"), run.info.artifact_uri
    earlier = min(parents, key=lambda p: p.info.start_time).info.run_id
    first = next(c for c in children if c.data.tags["binarena.method"] == "random"
                 and c.data.tags["mlflow.parentRunId"] == earlier)
    fetched = client.download_artifacts(first.info.run_id, "config.json", str(tmp_path))
    assert json.loads(Path(fetched).read_text())  # an artifact of the first place's run, found here


def test_only_the_stores_own_experiments_move_with_it(tmp_path):
    from binarena.tracking import Tracker

    folder, other = tmp_path / "results", tmp_path / "results-2"  # "-2": a prefix of nothing
    Tracker(f"sqlite:///{folder / 'mlflow.db'}", "ours", folder / "mlartifacts").start("a", {})
    Tracker(f"sqlite:///{folder / 'mlflow.db'}", "theirs", other / "mlartifacts").start("b", {})
    moved = tmp_path / "moved"
    shutil.move(folder, moved)
    Tracker(f"sqlite:///{moved / 'mlflow.db'}", "ours", moved / "mlartifacts")
    client = MlflowClient(f"sqlite:///{moved / 'mlflow.db'}")
    ours, theirs = (client.get_experiment_by_name(n) for n in ("ours", "theirs"))
    assert ours.artifact_location == (moved / "mlartifacts").resolve().as_uri()
    assert theirs.artifact_location == (other / "mlartifacts").resolve().as_uri()
    runs = {r.info.run_name: r.info.artifact_uri for r in client.search_runs(
        [ours.experiment_id, theirs.experiment_id])}
    assert runs["a"].startswith((moved / "mlartifacts").resolve().as_uri() + "/")
    assert runs["b"].startswith((other / "mlartifacts").resolve().as_uri() + "/")


# --- SIGTERM, and what dead drivers leave --------------------------------------------------------

def test_sigterm_cancels_keeps_what_finished_and_says_so(ray_address, tmp_path, write_suite):
    results = tmp_path / "results"
    suite = write_suite(seeds=[0, 1], training={"epochs": 4, "batch_size": 32, "lr": 0.05})
    table = results / "tiny" / "results.parquet"
    command = cli("run", str(suite), "--results", str(results), "--max-parallel", "1",
                  "--address", ray_address)
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + HANG_S
    while not (table.is_file() and pq.read_metadata(table).num_rows >= 2):
        assert driver.poll() is None, driver.stderr.read()
        assert time.time() < deadline, "no job finished in time"
        time.sleep(0.2)
    driver.send_signal(signal.SIGTERM)
    code = driver.wait(timeout=HANG_S)
    out, err = driver.stdout.read(), driver.stderr.read()
    assert code == 143, err
    assert "interrupted: finished jobs are recorded; run the same command again" in err
    assert "Aborted" not in err and "SIGTERM received" not in err and "Traceback" not in err
    assert "tiny: leaderboard" in out and (results / "tiny" / "leaderboard.csv").is_file()
    kept = {r["key"] for r in results_rows(results, "tiny")}
    assert 2 <= len(kept) < 8
    _, parents = mlflow_runs(results, "tiny")
    assert [p.info.status for p in parents] == ["KILLED"]


def test_a_dead_drivers_parent_run_and_half_written_files_are_cleaned(ray_cluster, tmp_path,
                                                                       write_suite):
    results = tmp_path / "results"
    suite = write_suite(**SMALL)
    assert main(["run", str(suite), "--results", str(results), "--methods", "full-precision"]) == 0
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny").experiment_id
    abandoned = client.create_run(experiment, run_name="a driver that was SIGKILLed").info.run_id
    strays = [results / "tiny" / ".results.parquet.partial-k1ll3d",
              results / "pretrain" / ".weights.pt.partial-0ld"]
    for stray in strays:
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_bytes(b"half")
    assert main(["run", str(suite), "--results", str(results)]) == 0
    assert client.get_run(abandoned).info.status == "KILLED"
    assert not any(stray.exists() for stray in strays)
    _, parents = mlflow_runs(results, "tiny")
    assert sorted(p.info.status for p in parents) == ["FINISHED", "FINISHED", "KILLED"]


# --- stores that cannot be used: one line, exit 2, nothing lost ----------------------------------

def test_a_broken_results_table_is_refused_and_left_as_it_is(tmp_path, write_suite, capsys):
    results = tmp_path / "results"
    table = results / "tiny" / "results.parquet"
    table.parent.mkdir(parents=True)
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), foreign)
    for content in (b"PAR1 truncated", foreign.read_bytes()):
        table.write_bytes(content)
        code = main(["run", str(write_suite(**SMALL)), "--results", str(results)])
        line = one_line(capsys.readouterr().err)
        assert code == 2 and f"{table}: " in line and "move it away" in line
        assert table.read_bytes() == content


def test_another_suites_broken_table_does_not_block(tmp_path, write_suite, capsys):
    results = tmp_path / "results"
    other = results / "other" / "results.parquet"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"not parquet")
    assert main(["run", str(write_suite(**SMALL)), "--results", str(results), "--dry-run"]) == 0
    assert "3 stages to run" in capsys.readouterr().out


def test_a_corrupt_mlflow_store_is_refused(tmp_path, write_suite, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "mlflow.db").write_bytes(b"this is not SQLite" * 100)
    code = main(["run", str(write_suite(**SMALL)), "--results", str(results)])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and f"{results / 'mlflow.db'}: not a readable MLflow store" in line
    assert not (results / "tiny").exists()


def test_an_interrupted_mlflow_migration_is_repaired(tmp_path):
    import sqlite3

    from binarena.tracking import Tracker

    db = tmp_path / "mlflow.db"
    Tracker(f"sqlite:///{db}", "s", tmp_path / "mlartifacts")
    with sqlite3.connect(db) as con:  # what a migration killed half-way leaves
        con.execute("CREATE TABLE _alembic_tmp_latest_metrics (x INTEGER)")
    Tracker(f"sqlite:///{db}", "s", tmp_path / "mlartifacts").start("again", {})
    with sqlite3.connect(db) as con:
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    assert "_alembic_tmp_latest_metrics" not in names and "latest_metrics" in names


def _schema(db: Path) -> dict:
    """Tables with their columns, foreign keys and indexes, and the schema version: what a
    store's schema is. (Not the CREATE text: that of ``runs`` was seen to differ between two
    stores MLflow made in one test session, once in three runs.)"""
    import sqlite3

    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        schema: dict = {"version": list(con.execute("SELECT version_num FROM alembic_version"))}
        for table in tables:
            indexes = {r[1]: (r[2], list(con.execute(f"PRAGMA index_info('{r[1]}')")))
                       for r in con.execute(f"PRAGMA index_list('{table}')")}
            schema[table] = (list(con.execute(f"PRAGMA table_info('{table}')")),
                             sorted(con.execute(f"PRAGMA foreign_key_list('{table}')")), indexes)
    return schema


def test_a_new_store_is_the_one_mlflow_makes_and_an_old_one_is_left_alone(tmp_path, monkeypatch):
    """A new store starts as a copy of a template migrated once (5 s of migrations saved per
    results folder): its schema and version are those of a store MLflow creates itself, it opens
    with the same experiments, and an existing store is never replaced."""
    from binarena.mlflow_store import seed_new_store

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    native, seeded = tmp_path / "native.db", tmp_path / "seeded.db"
    MlflowClient(f"sqlite:///{native}").search_experiments()
    seed_new_store(seeded)
    assert (tmp_path / "cache" / "binarena").is_dir()
    assert _schema(seeded) == _schema(native)
    names = {db: [(e.experiment_id, e.name) for e in
                  MlflowClient(f"sqlite:///{db}").search_experiments()] for db in (native, seeded)}
    assert names[seeded] == names[native] == [("0", "Default")]

    before = seeded.read_bytes()
    MlflowClient(f"sqlite:///{seeded}").create_experiment("kept")
    after = seeded.read_bytes()
    assert after != before
    seed_new_store(seeded)
    assert seeded.read_bytes() == after

    monkeypatch.setenv("XDG_CACHE_HOME", str(native))  # a file: no cache folder can be made
    fallback = tmp_path / "fallback.db"
    seed_new_store(fallback)
    assert not fallback.exists()  # left to MLflow, which makes it as before
    MlflowClient(f"sqlite:///{fallback}").search_experiments()
    assert _schema(fallback) == _schema(native)


@pytest.mark.parametrize("uri, expected", [
    ("http://127.0.0.1:{port}", "cannot reach the MLflow server"),
    ("file:///tmp/mlruns", "file is not an MLflow store binarena can use"),
])
def test_a_bad_tracking_uri_fails_fast(tmp_path, write_suite, capsys, uri, expected):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["run", str(write_suite(**SMALL)), "--results", str(tmp_path / "results"),
                 "--tracking-uri", uri.format(port=port)])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and expected in line


def test_a_results_folder_that_cannot_be_written_is_one_line(tmp_path, write_suite, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = main(["run", str(write_suite(**SMALL)), "--results", str(blocker / "results")])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and f"results folder {blocker / 'results'}: cannot write there" in line


def test_a_full_disk_mid_run_keeps_what_was_recorded(ray_cluster, tmp_path, write_suite, capsys,
                                                      monkeypatch):
    import binarena.results as results_module

    results = tmp_path / "results"
    suite = write_suite(**SMALL)
    real = results_module.atomic_write
    writes = []

    def fills_up(path: Path, blob: bytes) -> None:
        writes.append(path)
        if len(writes) > 2:  # the pre-training's weights and row go in, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, blob)

    monkeypatch.setattr(results_module, "atomic_write", fills_up)
    monkeypatch.setattr("binarena.orchestrator.atomic_write", fills_up)
    code = main(["run", str(suite), "--results", str(results), "--max-parallel", "1"])
    err = capsys.readouterr().err  # the progress bar drawn so far, then one line
    line = err.strip().splitlines()[-1]
    assert code == 2 and err.count("binarena: error:") == 1 and line.startswith("binarena: error:")
    assert "No space left on device" in line and "run again" in line
    kept = results_rows(results, "tiny")
    assert [r["kind"] for r in kept] == ["pretrain"]

    monkeypatch.setattr(results_module, "atomic_write", real)
    monkeypatch.setattr("binarena.orchestrator.atomic_write", real)
    assert main(["run", str(suite), "--results", str(results)]) == 0
    rows = results_rows(results, "tiny")
    assert len(rows) == 3 and rows[0]["finished_at"] == kept[0]["finished_at"]
    children, _ = mlflow_runs(results, "tiny")
    assert len(children) == 3


@pytest.mark.parametrize("content", [b"this is not Parquet" * 100, b"", b"PAR1"])
def test_an_unreadable_results_table_is_one_line_and_left_as_it_was(tmp_path, write_suite, capsys,
                                                                     content):
    table = tmp_path / "results" / "tiny" / "results.parquet"
    table.parent.mkdir(parents=True)
    table.write_bytes(content)
    code = main(["leaderboard", str(write_suite(**SMALL)), "--results", str(tmp_path / "results")])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and f"{table}: not a readable results table" in line
    assert table.read_bytes() == content
