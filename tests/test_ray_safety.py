"""Ray as binarena runs it: every server on loopback, the token owner-only, a wrong address and a
job no node can hold refused quickly with one line, before anything is written.

Real Ray throughout. A Ray of its own (the cluster the wait test joins) runs in a subprocess of
its own session, stopped by its process group: other Rays on the machine are left alone.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from binarena.cli import main

from conftest import HANG_S

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def _free_port() -> int:
    """A port nothing listens on (bound, then closed): connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = set(), [root]
    while stack:
        pid = stack.pop()
        found.add(pid)
        stack += children.get(pid, [])
    return found


def _in_session(sid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


def _listening(pids: set[int]) -> list[tuple[str, str, int]]:
    """(protocol, local address, pid) of every listening TCP and bound UDP socket of ``pids``:
    from ``ss`` (iproute2), else from /proc/net and the processes' file descriptors."""
    if shutil.which("ss"):
        found = []
        for proto, flags in (("tcp", "-ltnpH"), ("udp", "-lunpH")):
            out = subprocess.run(["ss", flags], capture_output=True, text=True, check=True).stdout
            for line in out.splitlines():
                fields = line.split()
                for pid in map(int, re.findall(r"pid=(\d+)", line)):
                    if pid in pids:
                        found.append((proto, fields[3], pid))
        return found
    return _listening_from_proc(pids)


def _listening_from_proc(pids: set[int]) -> list[tuple[str, str, int]]:
    owner = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    owner[target[8:-1]] = pid
        except OSError:
            continue
    found = []
    for name, state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == state and fields[9] in owner:
                found.append((name[:3], _proc_address(fields[1]), owner[fields[9]]))
    return found


def _proc_address(hex_address: str) -> str:
    """'0100007F:1F90' -> '127.0.0.1:8080' (and the IPv6 form, 32 hex digits, likewise)."""
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return f"{socket.inet_ntop(socket.AF_INET, raw[::-1])}:{int(port, 16)}"
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return f"[{socket.inet_ntop(socket.AF_INET6, words)}]:{int(port, 16)}"


def _off_loopback(sockets: list[tuple[str, str, int]]) -> list[tuple[str, str, str]]:
    bad = []
    for proto, address, pid in sockets:
        host = address.rpartition(":")[0].strip("[]").split("%")[0]
        if host not in LOOPBACK and not host.startswith(("127.", "::ffff:127.")):
            try:
                name = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                name = "?"
            bad.append((proto, address, f"{name} (pid {pid})"))
    return bad


def test_embedded_ray_listens_on_loopback_only(ray_cluster) -> None:
    """The driver, gcs_server, raylet, its agents and the workers of the Ray that
    ``ensure_ray`` starts (the session's): no socket on another interface."""
    @ray_cluster.remote
    def pid() -> int:
        return os.getpid()

    assert ray_cluster.get([pid.remote() for _ in range(2)])  # workers up, with their servers
    ours = _descendants(os.getpid())
    sockets = _listening(ours)
    names = {Path(f"/proc/{p}/comm").read_text().strip() for _, _, p in sockets
             if Path(f"/proc/{p}").exists()}
    assert {"gcs_server", "raylet"} <= names, sockets  # we do see Ray's servers
    assert _off_loopback(sockets) == []
    assert {n["NodeManagerAddress"] for n in ray_cluster.nodes()} == {"127.0.0.1"}


def test_auth_token_is_owner_only(ray_cluster, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from binarena.connect import protect_auth_token

    token = Path.home() / ".ray" / "auth_token"
    assert token.is_file() and token.stat().st_mode & 0o777 == 0o600  # the session's Ray

    monkeypatch.setenv("HOME", str(tmp_path))  # a new local cluster: created 0600 from the start
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    protect_auth_token(create=True)
    mine = tmp_path / ".ray" / "auth_token"
    assert mine.stat().st_mode & 0o777 == 0o600 and len(mine.read_text()) == 64
    assert (tmp_path / ".ray").stat().st_mode & 0o777 == 0o700
    mine.chmod(0o644)  # as older binarena (or Ray itself) left it
    protect_auth_token(create=False)
    assert mine.stat().st_mode & 0o777 == 0o600




def _binarena(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The CLI in a fresh process; a hang ends the test (how fast it answers: benchmarks/failfast.py)."""
    return subprocess.run([sys.executable, "-m", "binarena.cli", *args], capture_output=True,
                          text=True, timeout=HANG_S, env=env)


def _written(results: Path) -> list[str]:
    """What a run left in the results folder, besides the lock of the driver that refused."""
    return sorted(str(p.relative_to(results)) for p in results.rglob("*")
                  if p.name != ".binarena.lock") if results.exists() else []


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_unreachable_address_fails_fast_with_one_line(write_suite: Callable[..., Path],
                                                      tmp_path: Path) -> None:
    port = _free_port()
    results = tmp_path / "results"
    done = _binarena("run", str(write_suite()), "--address", f"127.0.0.1:{port}",
                              "--results", str(results))
    assert done.returncode == 2, done.stderr
    lines = _lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in lines[0]  # not rewritten
    assert _written(results) == []


@pytest.mark.parametrize("changes, job, asks", [
    ({"resources": {"cpus": 100}}, "pre-trained[seed=0]", "asks for 100 CPUs"),
    ({"resources": {"gpus": 1}}, "pre-trained[seed=0]", "asks for 1 CPU and 1 GPU"),
    ({"methods": [{"name": "mixbin-loss", "params": {"candidate_gpus": 1}}]},
     "mixbin-loss[", "fans out sub-tasks of 1 CPU and 1 GPU each"),
], ids=["cpus", "gpus", "subtask-gpus"])
def test_job_no_node_can_hold_is_refused_before_anything_is_written(
        ray_cluster, write_suite: Callable[..., Path], tmp_path: Path,
        capsys: pytest.CaptureFixture, changes: dict, job: str, asks: str) -> None:
    if "methods" in changes:  # the pre-training fits: the sub-tasks are what cannot
        changes = {**changes, "seeds": [0]}
    results = tmp_path / "results"
    code = main(["run", str(write_suite(**changes)), "--results", str(results)])
    err = capsys.readouterr().err
    assert code == 2, err
    (line,) = _lines(err)
    assert line.startswith(f"binarena: error: {job}") and line.endswith(
        f" {asks}; the cluster's only node has 2 CPUs and 0 GPUs"), line
    assert _written(results) == []  # no mlflow.db, no results.parquet


def test_a_job_whose_sub_tasks_take_gpus_holds_none_itself(write_suite: Callable[..., Path]) -> None:
    """Ray lends a waiting job's CPUs to its sub-tasks, not its GPUs: a job of 1 GPU whose
    candidates take 1 GPU each runs on a 1-GPU node only because the job's own task holds no GPU
    (its training runs in a sub-task of its declared shape: ``RunContext.on_own_resources``)."""
    from binarena.jobs import expand
    from binarena.placement import demands, holds_gpus, misfit
    from binarena.suite import load_suite

    suite = write_suite(methods=[{"name": "mixbin-loss", "params": {"candidate_gpus": 1}},
                                 {"name": "mixbin-grad"}, {"name": "full-precision"}],
                        seeds=[0], resources={"cpus": 1, "gpus": 1})
    jobs = expand(load_suite(str(suite)))
    holding = {j.method: holds_gpus(j) for j in jobs}
    assert holding == {"mixbin-loss": False, "mixbin-grad": True, "full-precision": True}
    assert all(holds_gpus(j.pretrain) for j in jobs if j.pretrain is not None)
    wanted = demands(jobs)
    assert misfit(wanted, [{"CPU": 8.0, "GPU": 1.0}]) is None
    refused = misfit(wanted, [{"CPU": 8.0, "GPU": 0.5}])
    assert refused is not None
    assert refused.describe() == "mixbin-loss[candidate_gpus=1.0][budget=50,seed=0] asks for " \
        "1 CPU and 1 GPU"


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen]]:
    """A one-CPU Ray cluster of our own (``ray start --head``, loopback only), in its own
    session and temp dir: killed by its process group (all of it ours), never by ``ray stop``,
    which would stop every Ray on the machine."""
    from binarena.connect import protect_auth_token

    protect_auth_token(create=True)  # the token both sides use (token auth on, as by default)
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="br", dir="/tmp")  # short: Ray's socket paths have a limit
    log = tmp_path / "head.log"
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token"}
    with log.open("w") as out:
        head = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
             f"--port={port}", "--num-cpus=1", "--node-ip-address=127.0.0.1",
             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + HANG_S
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        yield port, head
    finally:
        os.killpg(head.pid, signal.SIGKILL)  # its gcs_server, raylet, agents and workers
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def test_existing_cluster_gets_wait_timeout_to_add_a_node(
        ray_head: tuple[int, subprocess.Popen], write_suite: Callable[..., Path],
        tmp_path: Path) -> None:
    port, head = ray_head
    assert _off_loopback(_listening(_in_session(head.pid))) == []  # `ray start` as documented

    suite = write_suite(methods=[{"name": "random"}], seeds=[0], resources={"cpus": 2})
    results = tmp_path / "results"
    done = _binarena("run", str(suite), "--address", f"127.0.0.1:{port}",
                              "--wait-timeout", "3", "--results", str(results),
                              env={**os.environ, "RAY_AUTH_MODE": "token"})
    assert done.returncode == 2, done.stderr
    lines = _lines(done.stderr)
    assert lines[0].startswith("waiting up to 3 s for the cluster to add a node that fits: "
                               "pre-trained[seed=0] asks for 2 CPUs"), done.stderr
    assert lines[-1] == ("binarena: error: pre-trained[seed=0] asks for 2 CPUs; the cluster's "
                         "only node has 1 CPU and 0 GPUs (waited 3 s for a node that fits: "
                         "--wait-timeout)"), done.stderr
    assert _written(results) == []


def test_jobs_in_flight_follow_a_growing_cluster(write_suite: Callable[..., Path]) -> None:
    """Jobs of 2 CPUs and 1 GPU: one at a time on an empty autoscaling cluster (the head's 2
    CPUs, no GPU), then as many as the nodes that join hold, asked again every ``every`` seconds;
    a number the user gave stays. (A loopback-only Ray cannot take a second node here: the
    cluster's resources are given as Ray's ``cluster_resources`` would give them.)"""
    from binarena.jobs import expand
    from binarena.placement import Parallelism
    from binarena.suite import load_suite

    jobs = expand(load_suite(str(write_suite(resources={"cpus": 2, "gpus": 1}))))
    cluster = {"CPU": 2.0}
    parallelism = Parallelism(jobs, every=0.2, capacity=lambda: cluster)
    assert parallelism() == 1
    cluster = {"CPU": 2.0 + 8 * 3, "GPU": 3.0}  # three 8-CPU, 1-GPU workers joined
    assert parallelism() == 1  # not asked again yet
    time.sleep(0.25)
    assert parallelism() == 3  # the GPUs bound it, not the 26 CPUs
    cluster = {"CPU": 2.0 + 8 * 8, "GPU": 8.0}
    time.sleep(0.25)
    assert parallelism() == 8
    assert Parallelism(jobs, fixed=2, every=0.0, capacity=lambda: cluster)() == 2
