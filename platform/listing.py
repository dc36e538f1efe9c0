"""What ``binarena suites|methods|models|datasets`` list, as plain data (the CLI renders it): one
row per entry with the parameters a suite may give it and their defaults. Built from the registries'
declarations, which import no torch, so a listing answers at once."""

from __future__ import annotations

import inspect
import json
from typing import Any

from .registry import DATASETS, METHODS, MODELS

REQUIRED = "(required)"  # the "default" of a parameter a suite must give
# a model factory's arguments that are not model.options: the data set's, and model.activation
BUILT_IN = ("input_shape", "num_classes", "activation")


def shown(value: Any) -> str:
    """A default as a suite would write it (YAML flow style): 0.01, true, null, [784, 4, 1]."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def params_text(params: dict[str, Any], required: list[str]) -> str:
    """``a=1, b=x`` with the required ones first; "-" when there is none."""
    parts = [f"{name} {REQUIRED}" for name in required]
    parts += [f"{name}={shown(value)}" for name, value in params.items()]
    return ", ".join(parts) or "-"


def suite_rows() -> list[dict[str, str]]:
    """Every bundled suite and the first paragraph of its description, on one line."""
    from .suite import bundled_suites, load_suite

    return [{"name": name,
             "description": " ".join(load_suite(name).description.split("\n\n")[0].split())}
            for name in bundled_suites()]


def method_rows() -> list[dict[str, Any]]:
    """Every method: whether it takes a FLOPs budget, whether it trains the suite's model or
    builds its own network, and its parameters (``methods[].params``) with their defaults."""
    rows = []
    for name, method in METHODS.items():
        fields = method.Params.model_fields
        rows.append({
            "name": name,
            "budget": method.uses_budget,
            "network": "suite's model" if method.needs_model else "its own",
            "required": [k for k, f in fields.items() if f.is_required()],
            "params": {k: f.get_default(call_default_factory=True) for k, f in fields.items()
                       if not f.is_required()},
        })
    return rows


def model_rows() -> list[dict[str, Any]]:
    """Every model and the options of its factory (``model.options``) with their defaults."""
    rows = []
    for name, factory in MODELS.items():
        parameters = [p for p in inspect.signature(factory).parameters.values()
                      if p.name not in BUILT_IN]
        rows.append({
            "name": name,
            "required": [p.name for p in parameters if p.default is inspect.Parameter.empty],
            "params": {p.name: p.default for p in parameters
                       if p.default is not inspect.Parameter.empty},
        })
    return rows


def activations() -> tuple[str, list[str]]:
    """``model.activation``'s default and the names it accepts, for every model alike."""
    from .suite import ACTIVATION_NAMES, ModelSpec

    return str(ModelSpec.model_fields["activation"].default), list(ACTIVATION_NAMES)


def dataset_rows() -> list[dict[str, Any]]:
    """Every data set: its input shape, classes, official training images (None where only its
    files can tell) and whether it is embedded or read from the data root."""
    return [{"name": name, "input_shape": list(source.input_shape),
             "classes": source.num_classes, "train_images": source.train_images,
             "embedded": source.embedded}
            for name, source in DATASETS.items()]


def dataset_params() -> dict[str, Any]:
    """What a suite's ``dataset`` section may set beside the name, for every data set alike."""
    from .suite import DatasetSpec

    return {k: f.get_default(call_default_factory=True) for k, f in DatasetSpec.model_fields.items()
            if k not in ("name", "fingerprint")}
