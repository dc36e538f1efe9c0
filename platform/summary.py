"""What ``binarena summary`` reports: a registered model built for a dataset's shape, made
switchable, with the chosen layers binary, profiled layer by layer.

Plain data for the CLI to print (or a script to read as JSON); every input a user can get wrong
is answered with a ``UserError`` naming what is valid. No data is loaded: the dataset only lends
its ``input_shape`` and ``num_classes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from pydantic import ValidationError
from torch import nn

from .b2nn import binary_layers, default_eligible, make_switchable, set_binary, switchable_layers
from .errors import UserError
from .flops import profile
from .registry import DATASETS, MODELS
from .suite import ModelSpec
from .suite_values import check_model_builds

__all__ = ["build", "parse_options", "summary_data"]


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings as model options; a VALUE is read as YAML (``0.5``, ``[4, 8]``, ``cifar``)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--option: expected KEY=VALUE, got {pair!r}")
        try:
            options[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise UserError(f"--option {key.strip()}: cannot read the value {text!r}") from None
    return options


def build(model: str, dataset: str, activation: str = "binrelu",
          options: Mapping[str, Any] | None = None) -> tuple[nn.Module, tuple[int, ...]]:
    """The switchable model for the dataset's shape, and that input shape.

    The model, its activation and options are checked by the rules a suite's ``model`` section
    obeys (``binarena.suite.ModelSpec``).
    """
    if dataset not in DATASETS:
        raise UserError(DATASETS.unknown_message(dataset))
    try:
        spec = ModelSpec(name=model, activation=activation, options=dict(options or {}))
    except ValidationError as exc:
        raise UserError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    try:  # sizes a driver can build, checked on the meta device before memory is allocated
        check_model_builds(spec, dataset)
    except ValueError as exc:
        raise UserError(str(exc).removeprefix("model.options: ")) from None
    source = DATASETS.get(dataset)
    try:
        network = MODELS.get(spec.name)(source.input_shape, source.num_classes,
                                        activation=spec.activation, **spec.options)
    except (TypeError, ValueError) as exc:
        raise UserError(f"model {model!r}: {exc}") from None
    return make_switchable(network), tuple(source.input_shape)


def _binary_names(model: nn.Module, binary: str | Sequence[str]) -> list[str]:
    """``"all"`` (the default eligible layers), ``"none"``, or the named layers, checked."""
    if binary == "all":
        return default_eligible(model)
    if binary == "none":
        return []
    names = [binary] if isinstance(binary, str) else list(binary)
    known = switchable_layers(model)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UserError(
            f"--binary: unknown layer(s) {', '.join(unknown)}; switchable layers: {', '.join(known)}"
        )
    return names


def summary_data(model: str, dataset: str, binary: str | Sequence[str] = "all",
                 activation: str = "binrelu",
                 options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Per-layer rows (``ModelProfile.to_rows``) and the totals, as JSON-ready plain data."""
    network, input_shape = build(model, dataset, activation, options)
    chosen = _binary_names(network, binary)
    set_binary(network, chosen)
    result = profile(network, input_shape)
    return {
        "model": model,
        "dataset": dataset,
        "input_shape": list(input_shape),
        "activation": activation,
        "options": dict(options or {}),
        "layers": result.to_rows(),
        "totals": {
            "params": sum(p.numel() for p in network.parameters()),
            "macs": result.macs,
            "flops": result.flops,
            "full_precision_flops": result.full_precision_flops,
            "flops_pct": result.flops_pct,
            "binary_layers": len(binary_layers(network)),
            "switchable_layers": len(switchable_layers(network)),
            "binary_macs_pct": 100 * result.binary_macs_ratio,
        },
        "uncounted": list(result.uncounted),
    }
