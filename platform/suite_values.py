"""Checks of the values a suite may hold that a type alone cannot say: Ray's resource quantities,
plain finite data in free-form mappings (method params), model options against their factory's
type hints, and whether the model can be built at all (on torch's meta device, before any job).
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import typing
import warnings
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import TypeAdapter, ValidationError

from .registry import DATASETS, MODELS

if TYPE_CHECKING:
    from .suite import ModelSpec

RESOURCE_UNIT = 1e-4  # Ray's granularity of resource quantities (ray_constants.MIN_RESOURCE_GRANULARITY)
MAX_OPTION_SIZE = 1 << 20  # a whole number in model options is a size (channels, width, depth)
MAX_MODEL_MODULES = 2_000  # building more takes seconds even on the meta device (ResNet-18: 107)
MAX_MODEL_PARAMETERS = 10**8  # the driver builds the model to count FLOPs (ResNet-18: 1.1e7)


class Problem(ValueError):
    """A validator's error about a part of its field: ``first_error`` puts ``path`` into the
    location, so the message reads ``model.options.channels: ...``."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path, self.detail = path, detail


def ray_quantity(value: float, *, gpu: bool) -> float:
    """``value`` if Ray accepts it as a task's CPUs / GPUs: a multiple of 0.0001 (Ray truncates
    finer ones, and refuses what truncates to zero), and for GPUs a fraction only up to one (Ray:
    "GPU resource quantities >1 must be whole numbers")."""
    units = value / RESOURCE_UNIT
    if abs(units - round(units)) > 1e-6 * max(1.0, units):
        raise ValueError(f"{value!r} is not a multiple of {RESOURCE_UNIT:g} (Ray's resource unit)")
    if gpu and value > 1 and not float(value).is_integer():
        raise ValueError(f"{value:g}: a job takes a fraction of one GPU or whole GPUs, as Ray does")
    return value


def plain_value(value: Any, where: str, *, limit: float) -> None:
    """Raise ``Problem`` unless ``value`` is plain YAML data (null, bool, number, string, list,
    string-keyed mapping) with finite numbers of magnitude at most ``limit``."""
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise Problem(where, f"{value} is not a finite number")
        if abs(value) > limit:
            raise Problem(where, f"{value:g} is out of range (at most {limit:g} in magnitude)")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            plain_value(item, f"{where}[{i}]", limit=limit)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise Problem(where, f"key {key!r} is not a string")
            plain_value(item, f"{where}.{key}", limit=limit)
        return
    raise Problem(where, f"a {type(value).__name__} is not a plain value (number, string, list, "
                  "mapping)")


@functools.lru_cache(maxsize=256)
def _option_type(factory: Any, name: str) -> tuple[TypeAdapter | None, bool, Any]:
    """The option's validator from the factory's type hint (None: unannotated), whether the hint
    carries its own constraints (``Annotated``), and the option's default."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    default = inspect.signature(factory).parameters[name].default
    hint = inspect.get_annotations(target).get(name, Any)
    if isinstance(hint, str):  # postponed: resolved alone, so a return type the factory imports
        try:                   # only for type checkers (``torch.nn``) cannot hide the options'
            hint = eval(hint, getattr(target, "__globals__", {}))  # noqa: S307 (typing does this)
        except Exception:  # a hint that does not resolve: nothing to validate against
            hint = Any
    constrained = typing.get_origin(hint) is Annotated
    return (None if hint is Any else TypeAdapter(hint)), constrained, default


def check_option(factory: Any, name: str, value: Any) -> None:
    """A model option must fit the factory's type hint (strictly); an unconstrained whole number
    is a size (channels, width, depth), from 1 to ``MAX_OPTION_SIZE``; a list meant to hold
    something (its default does) must not be empty."""
    where = f"options.{name}"
    plain_value(value, where, limit=math.inf)
    adapter, constrained, default = _option_type(factory, name)
    if adapter is not None:
        try:  # through JSON: a YAML list is a tuple's input there
            adapter.validate_json(json.dumps(value), strict=True)
        except ValidationError as exc:
            err = exc.errors()[0]
            inner = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
            raise Problem(where + inner, err["msg"]) from None
    if constrained or isinstance(default, float):  # a float (a width multiplier) is no count
        return
    _check_sizes(value, where)
    if isinstance(default, (list, tuple)) and default and isinstance(value, list) and not value:
        raise Problem(where, f"must not be empty (default: {list(default)})")


def _check_sizes(value: Any, where: str) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not 1 <= value <= MAX_OPTION_SIZE:
        raise Problem(where, f"{value} is not a size (a whole number from 1 to {MAX_OPTION_SIZE:,})")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_sizes(item, f"{where}[{i}]")


class _TooBig(Exception):
    pass


def check_model_builds(spec: ModelSpec, dataset: str) -> None:
    """Build the model on torch's meta device (no memory, no data) for the dataset's shape, so
    options the factory refuses, or a model too big to build on the driver, fail here."""
    source = DATASETS.get(dataset)
    shape, classes = getattr(source, "input_shape", None), getattr(source, "num_classes", None)
    if shape is None or classes is None:
        return
    import torch
    from torch.nn.modules import module as torch_module

    counts = {"modules": 0, "parameters": 0}

    def on_module(*_: Any) -> None:
        counts["modules"] += 1
        if counts["modules"] > MAX_MODEL_MODULES:
            raise _TooBig(f"more than {MAX_MODEL_MODULES:,} layers")

    def on_parameter(_module: Any, _name: str, param: Any) -> None:
        counts["parameters"] += param.numel() if param is not None else 0
        if counts["parameters"] > MAX_MODEL_PARAMETERS:
            raise _TooBig(f"more than {MAX_MODEL_PARAMETERS:,} parameters")

    hooks = [torch_module.register_module_module_registration_hook(on_module),
             torch_module.register_module_parameter_registration_hook(on_parameter)]
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            MODELS.get(spec.name)(input_shape=shape, num_classes=classes,
                                  activation=spec.activation, **spec.options)
    except _TooBig as exc:
        raise ValueError(f"model.options: model {spec.name!r} with these options has {exc}") from None
    except Exception as exc:  # whatever the factory raises for options it cannot build
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ValueError(f"model.options: model {spec.name!r} cannot be built with these options "
                         f"({type(exc).__name__}: {detail[:300]})") from None
    finally:
        for hook in hooks:
            hook.remove()
