"""A pydantic ``ValidationError`` as one line a user can act on: where (``methods[0].params.x``)
and what. A misspelled key names the closest valid one (difflib) instead of pydantic's "Extra
inputs are not permitted", found by walking the model's fields along the error's location."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from .suite_values import Problem


def first_error(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """``where: what`` of the first error (and how many more there are); ``model``, the model
    validated, lets an unknown key be answered with the keys valid there."""
    err = exc.errors()[0]
    loc = list(err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    problem = err.get("ctx", {}).get("error")
    if isinstance(problem, Problem):  # a validator named the part of its field at fault
        loc.append(problem.path)
        msg = problem.detail
    elif err["type"] == "extra_forbidden" and model is not None and loc:
        keys = keys_at(model, loc[:-1])
        if keys is not None:
            msg = unknown_key(str(loc[-1]), keys)
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    where = where.replace(".[", "[")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {msg}{more}" if where else f"{msg}{more}"


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """"; did you mean 'x'?" for the closest of ``known`` (difflib), or "" when none is close."""
    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_key(key: str, keys: Sequence[str]) -> str:
    """"unknown key; did you mean 'x'?", or the valid keys when none is close."""
    if hint := did_you_mean(key, keys):
        return f"unknown key{hint}"
    return f"unknown key (valid: {', '.join(keys)})" if keys else "unknown key (none is valid here)"


def keys_at(model: type[BaseModel], path: Sequence[str | int]) -> list[str] | None:
    """The keys the model accepts in the mapping at ``path`` (None where no model is found)."""
    node: Any = model
    for part in path:
        node = _inside(node, part)
        if node is None:
            return None
    found = [t for t in _alternatives(node) if _is_model(t)]
    return list(found[0].model_fields) if found else None


def _inside(annotation: Any, part: str | int) -> Any:
    """The type at ``part`` (a field name, a list index or a mapping key) inside ``annotation``."""
    for t in _alternatives(annotation):
        origin = typing.get_origin(t)
        if isinstance(part, str) and _is_model(t):
            if part in t.model_fields:
                return t.model_fields[part].annotation
            if part == t.__name__:  # pydantic names a union's member in the location
                return t
        elif isinstance(part, int) and origin in (list, tuple, Sequence):
            return typing.get_args(t)[0]
        elif isinstance(part, str) and origin is dict:
            return typing.get_args(t)[1]
    return None


def _alternatives(annotation: Any) -> list[Any]:
    """``X | Y | None`` as [X, Y, None], ``Annotated[X, ...]`` as [X]."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _alternatives(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _alternatives(arg)]
    return [annotation]


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)
