"""Name -> factory registries, so a suite can name methods, models and datasets.

Third parties add entries with the decorator, or, without editing binarena, through the entry-point
group ``binarena.<kind>`` (e.g. ``binarena.methods``) of their own distribution.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection filled lazily: built-in modules and entry points load on first lookup."""

    def __init__(self, kind: str, builtin_modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._builtin_modules = builtin_modules
        self._entries: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self._builtin_modules:
            importlib.import_module(module)
        for ep in entry_points(group=f"binarena.{self.kind}s"):
            try:
                self._entries.setdefault(ep.name, ep.load())
            except Exception:  # a broken plug-in must not take the platform down
                log.exception("could not load %s plug-in %r", self.kind, ep.name)

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        known = sorted(self._entries)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r} (known: {', '.join(known)}){hint}"

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(sorted(self._entries))

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return sorted(self._entries.items())


# The three registries a suite names into; their built-in entries live outside the core.
METHODS: Registry = Registry("method", ("binarena.methods.baselines", "binarena.methods.bemi",
                                        "binarena.methods.mixbin", "binarena.methods.optuna_mask"))
MODELS: Registry = Registry("model", ("binarena.models",))
DATASETS: Registry = Registry("dataset", ("binarena.datasets",))
