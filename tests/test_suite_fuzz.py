"""Property-based fuzz test of the suite schema (issue 11): whatever the suite file holds,
``binarena run`` answers exit 0 or 2 (one line on stderr), never a traceback, never a hang past a
bound, and never writes a file outside the results folder.

Documents are the tiny test suite mutated (values replaced by random JSON-like ones, keys dropped
or added, deep nesting) or raw bytes (non-UTF-8, YAML syntax garbage, aliases). Each runs in
process, as a dry run or as a real run whose execution is stubbed out: both go through the same
checks (``make_plan``) before anything runs. Derandomized, with no example database, so CI sees
the same examples every time; about a minute on 2 cores.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

import binarena.orchestrator as orchestrator
from binarena.cli import main

from conftest import TINY_SUITE

HARD_LIMIT_S = 30  # an example still running then is a hang, whatever hypothesis's deadline says
EXAMPLES = int(os.environ.get("BINARENA_FUZZ_EXAMPLES", "700"))  # ~30 s here

# Field names of the schema, so that added keys often mean something.
FIELDS = ["name", "description", "dataset", "model", "methods", "budgets", "seeds", "training",
          "pretrain", "resources", "tune", "root", "download", "train_size", "val_size",
          "test_size", "seed", "activation", "options", "eligible", "channels", "blocks_per_stage",
          "width", "depth", "stem", "epochs", "batch_size", "optimizer", "lr", "momentum",
          "weight_decay", "label_smoothing", "milestones", "gamma", "augment", "cpus", "gpus",
          "params", "label", "start", "method", "space", "objective", "max_flops", "trials",
          "parallel", "sampler", "storage", "low", "high", "log", "integer", "choices",
          "finetune_steps", "finetune_lr", "binary"]


class _ReachedExecution(Exception):
    """The real run got past every check: as good as exit 0 for this test."""


def _stub_run_suite(*args: Any, **kwargs: Any) -> None:
    raise _ReachedExecution


def _alarm(signum: int, frame: Any) -> None:
    raise TimeoutError(f"an example ran past {HARD_LIMIT_S} s")


# ---- strategies -----------------------------------------------------------------------------

numbers = st.one_of(
    st.integers(-3, 70),
    st.sampled_from([0, 1, -1, 2**31, 2**32, 2**63, 2**70, 10**30, -(10**30)]),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.5, 1.5, 1e-9, 1e-4, 100.0, 1e300, float("nan"), float("inf")]),
)
strings = st.one_of(
    st.sampled_from(["", "abc", "0", "1", "true", "random", "cnn", "mnist", "digits", "../../x",
                     "/tmp/x", "a" * 300, "~", "*", "&a", "{", "é"]),
    st.text(max_size=30),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, strings)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner,
                                            max_size=4)),
    max_leaves=12,
)
# Plausible values, so that many mutated suites stay valid and reach the deeper checks (the model
# built, the methods' own checks, the data read).
plausible = st.one_of(
    st.integers(0, 100), st.floats(0, 1), st.booleans(),
    st.sampled_from(["random", "full-binary", "full-precision", "mixbin-loss", "given-layers",
                     "bemi", "cnn", "mlp", "mobilenetv1", "resnet18", "cresnet20", "digits",
                     "mnist", "fashion-mnist", "cifar10", "binrelu", "sign", "adam", "scratch",
                     [4, 8], [2], [1, 1, 1], [30, 60], [0], {}]),
)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value in ``doc`` (the root excluded)."""
    found = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    for key, value in items:
        found.append((*prefix, key))
        found.extend(_paths(value, (*prefix, key)))
    return found


def _container(doc: Any, path: tuple) -> Any:
    """The container holding the last key of ``path``."""
    for key in path[:-1]:
        doc = doc[key]
    return doc


@st.composite
def mutated_suites(draw: st.DrawFn, values: st.SearchStrategy = values) -> bytes:
    """The tiny suite after a few random edits (new values drawn from ``values``), as YAML."""
    doc = copy.deepcopy(TINY_SUITE)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        action = draw(st.sampled_from(["set", "set", "set", "drop", "add", "deep"]))
        if action == "add" or not paths:
            targets = [()] + [p for p in paths if isinstance(_container(doc, (*p, None)), dict)]
            target = draw(st.sampled_from(targets))
            _container(doc, (*target, None))[draw(st.sampled_from(FIELDS))] = copy.deepcopy(
                draw(values))  # a copy: sampled lists are shared between examples
            continue
        path = draw(st.sampled_from(paths))
        parent = _container(doc, path)
        if action == "drop":
            del parent[path[-1]]
        elif action == "deep":
            parent[path[-1]] = _nest(draw(st.integers(10, 120)), draw(st.booleans()))
        else:
            parent[path[-1]] = copy.deepcopy(draw(values))
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=draw(st.booleans()))
    return text.encode("utf-8")


def _nest(depth: int, as_dict: bool) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = {"k": value} if as_dict else [value]
    return value


yaml_garbage = st.text(alphabet="{}[]:-&*!|>'\"#%@`, \n\t?aZ09.", max_size=120).map(str.encode)


@st.composite
def damaged_suites(draw: st.DrawFn) -> bytes:
    """A valid suite with bytes cut, inserted or flipped (non-UTF-8, broken indentation ...)."""
    text = yaml.safe_dump(TINY_SUITE, sort_keys=False).encode()
    at = draw(st.integers(0, len(text)))
    action = draw(st.sampled_from(["cut", "insert", "truncate"]))
    if action == "cut":
        return text[:at] + text[at + draw(st.integers(1, 20)):]
    if action == "insert":
        return text[:at] + draw(st.binary(min_size=1, max_size=8) | yaml_garbage) + text[at:]
    return text[:at]


documents = st.one_of(mutated_suites(), mutated_suites(plausible), damaged_suites(), yaml_garbage,
                      st.binary(max_size=200))

# ---- regression examples: one per finding of the probe ----------------------------------------


def _tiny(**changes: Any) -> bytes:
    return yaml.safe_dump({**TINY_SUITE, **changes}, sort_keys=False).encode()


BOMB = ("model:\n  name: cnn\n  options:\n    a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        + "".join(f"    {b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n"
                  for a, b in zip("abcdefgh", "bcdefghi")))
REGRESSIONS = [
    _tiny().replace(b"model:\n  name: cnn\n  options:\n    channels:\n    - 4\n    - 8\n"
                    b"    blocks_per_stage: 1\n", BOMB.encode()),
    _tiny() + b"pretrain: " + b"[" * 20_000 + b"]" * 20_000 + b"\n",
    _tiny() + b"seeds: [3]\n",
    _tiny().replace(b"a reduced", b"caf\xe9 reduced"),
    _tiny(seeds=[2**70]),
    _tiny(seeds=["0", "1"]),
    _tiny(seeds=[True]),
    _tiny(training={"epochs": 10**30}),
    _tiny(model={"name": "cnn", "options": {"channels": "abc"}}),
    _tiny(model={"name": "cnn", "options": {"channels": []}}),
    _tiny(model={"name": "cnn", "options": {"channels": [-1]}}),
    _tiny(resources={"gpus": 1.5}),
    _tiny(resources={"cpus": 1e-9}),
    _tiny(name="n" * 300),
    _tiny(),  # the valid suite itself: exit 0
]
assert b"&a" in REGRESSIONS[0], "the bomb replaced nothing: the tiny suite's YAML changed"

# ---- the property -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def warm() -> None:
    """Import everything once (MLflow, torch, the registries): not an example's time."""
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "s.yaml"
        suite.write_bytes(_tiny())
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["run", str(suite), "--dry-run", "--results", f"{tmp}/results"]) == 0


def _tree(folder: Path) -> set[str]:
    return {str(Path(dirpath, name).relative_to(folder))
            for dirpath, dirnames, filenames in os.walk(folder) for name in dirnames + filenames}


def check_document(document: bytes, dry_run: bool, data_root: str | None) -> None:
    note(f"document: {document[:2000]!r}")
    cwd_before = set(os.listdir("."))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "empty").mkdir()
        suite = base / "suite.yaml"
        suite.write_bytes(document)
        before = _tree(base)
        argv = ["run", str(suite), "--results", str(base / "results"),
                "--data-root", data_root or str(base / "empty")]
        if dry_run:
            argv.append("--dry-run")
        err, out = io.StringIO(), io.StringIO()
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(HARD_LIMIT_S)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                try:
                    code = main(argv)
                except _ReachedExecution:
                    code = 0
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        message = err.getvalue().strip()
        note(f"exit {code}: {message}")
        assert code in (0, 2), message
        if code == 2:
            assert message.startswith("binarena: error: ") and "\n" not in message, message
            assert "Traceback" not in message
        created = _tree(base) - before
        outside = sorted(p for p in created if p != "results" and not p.startswith("results/"))
        assert not outside, f"files outside the results folder: {outside}"
        if code == 2:
            assert not (base / "results").exists(), "a refused suite wrote into the results folder"
    assert set(os.listdir(".")) == cwd_before, "files appeared in the working directory"


def _data_roots() -> list[str | None]:
    real = os.environ.get("BINARENA_DATA")
    return [None, real] if real and Path(real, "mnist").is_dir() else [None]


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                  HealthCheck.function_scoped_fixture])
@given(document=documents, dry_run=st.booleans(), data_root=st.sampled_from(_data_roots()))
@example(document=REGRESSIONS[0], dry_run=True, data_root=None)
@example(document=REGRESSIONS[1], dry_run=False, data_root=None)
@example(document=REGRESSIONS[2], dry_run=True, data_root=None)
@example(document=REGRESSIONS[3], dry_run=False, data_root=None)
@example(document=REGRESSIONS[4], dry_run=True, data_root=None)
@example(document=REGRESSIONS[5], dry_run=True, data_root=None)
@example(document=REGRESSIONS[6], dry_run=True, data_root=None)
@example(document=REGRESSIONS[7], dry_run=False, data_root=None)
@example(document=REGRESSIONS[8], dry_run=True, data_root=None)
@example(document=REGRESSIONS[9], dry_run=True, data_root=None)
@example(document=REGRESSIONS[10], dry_run=True, data_root=None)
@example(document=REGRESSIONS[11], dry_run=False, data_root=None)
@example(document=REGRESSIONS[12], dry_run=True, data_root=None)
@example(document=REGRESSIONS[13], dry_run=False, data_root=None)
@example(document=REGRESSIONS[14], dry_run=False, data_root=None)
def test_any_suite_file_exits_0_or_2_in_one_line(warm, monkeypatch, document, dry_run, data_root):
    monkeypatch.setattr(orchestrator, "run_suite", _stub_run_suite)
    check_document(document, dry_run, data_root)


@pytest.mark.parametrize("index", range(len(REGRESSIONS) - 1))
def test_each_probe_finding_is_refused(warm, monkeypatch, index):
    """The regression examples, asserted to be refusals (the property alone allows exit 0)."""
    monkeypatch.setattr(orchestrator, "run_suite", _stub_run_suite)
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "s.yaml"
        suite.write_bytes(REGRESSIONS[index])
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main(["run", str(suite), "--results", f"{tmp}/results"]) == 2
        assert err.getvalue().count("\n") == 1 and not Path(tmp, "results").exists()
