"""Registries: a name loads its own plug-in and nothing else; the declared modules are the truth."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest

from binarena.registry import DATASETS, METHODS, MODELS, Registry
from binarena.suite import bundled_suites

from conftest import HANG_S


@pytest.mark.parametrize("registry", [METHODS, MODELS, DATASETS], ids=lambda r: r.kind)
def test_each_builtin_name_is_registered_by_the_module_declared_for_it(registry):
    declared = dict(registry._builtins)
    found = {name: entry.__module__ for name, entry in registry.items()}
    assert {n: m for n, m in found.items() if n in declared} == declared
    assert set(found) >= set(declared)


def _modules_loaded_by_reading(*suites) -> set[str]:
    """The modules a fresh interpreter holds after reading ``suites`` (and nothing else)."""
    code = textwrap.dedent(f"""
        import sys
        from binarena.suite import load_suite
        for suite in {[str(s) for s in suites]!r}:
            load_suite(suite)
        print(" ".join(sorted(sys.modules)))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=HANG_S)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(done.stdout.split())


def test_reading_a_suite_imports_only_the_plug_ins_it_names(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(json.dumps({
        "name": "s", "dataset": {"name": "digits"}, "model": {"name": "mlp"},
        "methods": [{"name": "random"}], "budgets": [50], "seeds": [0],
    }))
    loaded = _modules_loaded_by_reading(suite)
    assert {"binarena.methods.baselines.random_selection", "binarena.models.catalog"} <= loaded
    unnamed = {"binarena.methods.mixbin", "binarena.methods.optuna_mask",
               "binarena.methods.bemi.method", "binarena.methods.baselines.hawq",
               "binarena.methods.baselines.bnas", "binarena.methods.baselines.adaptive_mbq",
               "binarena.methods.baselines.slimming", "binarena.datasets.idx", "binarena.mip"}
    assert not loaded & unnamed


# methods that build their own network from a required architecture
REQUIRED = {name: {"params": {"layers": [64, 4, 10]}} for name in ("bdnn-milp", "bdnn-ste", "bdnn-mlp")}
REQUIRED["bnn-finetune"] = {"params": {"optimizer": "binsfo"}}


def test_reading_any_suite_imports_no_torch(tmp_path):
    """Every built-in method and model named, and every bundled suite: reading them is a schema
    check, so it must not pay for torch (seconds of CPU on every command that reads a suite)."""
    every = tmp_path / "every.yaml"
    every.write_text(json.dumps({
        "name": "every", "dataset": {"name": "digits"}, "model": {"name": "cnn"},
        "methods": [{"name": name, **REQUIRED.get(name, {})} for name in sorted(METHODS._builtins)],
        "budgets": [50],
        "seeds": [0],
    }))
    models = []
    for name in sorted(MODELS._builtins):  # the built-in ones: tests register more
        models.append(tmp_path / f"{name}.yaml")
        models[-1].write_text(json.dumps({
            "name": name, "dataset": {"name": "cifar10"}, "model": {"name": name},
            "methods": [{"name": "full-precision"}], "seeds": [0],
        }))
    loaded = _modules_loaded_by_reading(every, *models, *bundled_suites().values())
    assert {f"binarena.methods.{m}" for m in ("mixbin", "bemi.method", "baselines.hawq",
                                              "bdnn.method", "bdnn.gradient")} <= loaded
    heavy = sorted(m for m in loaded if m.split(".")[0] in ("torch", "torchvision"))
    assert not heavy, f"reading suites imported {heavy[:5]}"


def test_an_unknown_name_lists_the_known_ones_without_loading_them():
    registry = Registry("method", {"alpha": "binarena.no_such_module"})
    message = registry.unknown_message("alpah")
    assert "'alpha'" in message and "did you mean 'alpha'" in message
    assert "alpha" in registry and "beta" not in registry


def test_a_declared_module_that_does_not_register_its_name_is_an_error():
    registry = Registry("method", {"alpha": "binarena.errors"})
    with pytest.raises(RuntimeError, match="does not register method 'alpha'"):
        registry.get("alpha")


def test_a_broken_entry_point_is_logged_and_dropped(caplog):
    registry = Registry("method")
    registry._entry_points = {"broken": EntryPoint("broken", "binarena.no_such_module:X",
                                                   "binarena.methods")}
    assert "broken" in registry
    with pytest.raises(KeyError):
        registry.get("broken")
    assert "could not load method plug-in 'broken'" in caplog.text
    assert "broken" not in registry
