"""Name -> factory registries, so a suite can name methods, models and datasets.

A name is resolved lazily and alone: looking up ``random`` imports the module that registers
``random`` and nothing else, so reading a suite loads only the plug-ins it names. Built-in entries
are declared here by name and module; third parties add entries with the decorator, or, without
editing binarena, through the entry-point group ``binarena.<kind>s`` (e.g. ``binarena.methods``)
of their own distribution.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection whose entries load on first lookup, each on its own."""

    def __init__(self, kind: str, builtins: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self._builtins = dict(builtins or {})  # name -> the module that registers it
        self._entries: dict[str, T] = {}
        self._broken: set[str] = set()  # entry points that failed to load

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    @cached_property
    def _entry_points(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=f"binarena.{self.kind}s")}

    def names(self) -> list[str]:
        """Every known name, loading nothing."""
        known = set(self._entries) | set(self._builtins) | set(self._entry_points)
        return sorted(known - self._broken)

    def _load(self, name: str) -> None:
        if name in self._entries or name in self._broken:
            return
        if name in self._builtins:
            importlib.import_module(self._builtins[name])
            if name not in self._entries:
                raise RuntimeError(f"{self._builtins[name]} does not register {self.kind} {name!r}")
        elif name in self._entry_points:
            try:
                self._entries.setdefault(name, self._entry_points[name].load())
            except Exception:  # a broken plug-in must not take the platform down
                log.exception("could not load %s plug-in %r", self.kind, name)
                self._broken.add(name)

    def get(self, name: str) -> T:
        self._load(name)
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        known = self.names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r} (known: {', '.join(known)}){hint}"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        """Every entry, loading them all (listings; a test that every method passes a contract)."""
        for name in self.names():
            self._load(name)
        return sorted(self._entries.items())


def _by_name(modules: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    return {name: module for module, names in modules.items() for name in names}


# The three registries a suite names into; their built-in entries live outside the core, each
# declared with the module that registers it (a test checks the two agree).
METHODS: Registry = Registry("method", _by_name({
    "binarena.methods.baselines.reference": ("full-precision", "full-binary", "given-layers"),
    "binarena.methods.baselines.positional": ("front-bn", "rear-bn"),
    "binarena.methods.baselines.random_selection": ("random",),
    "binarena.methods.baselines.slimming": ("network-slimming",),
    "binarena.methods.baselines.hawq": ("hawq-v2",),
    "binarena.methods.baselines.bnas": ("bnas",),
    "binarena.methods.baselines.adaptive_mbq": ("adaptive-mbq",),
    "binarena.methods.mixbin": ("mixbin-grad", "mixbin-loss", "pseudo-random"),
    "binarena.methods.optuna_mask": ("optuna-mask",),
    "binarena.methods.bemi.method": ("bemi",),
    "binarena.methods.bdnn.method": ("bdnn-milp",),
    "binarena.methods.bdnn.gradient": ("bdnn-ste", "bdnn-mlp"),
    "binarena.methods.bnn_finetune": ("bnn-finetune",),
}))
MODELS: Registry = Registry("model", _by_name({
    "binarena.models.catalog": ("mlp", "cnn", "cresnet20", "resnet18", "mobilenetv1"),
}))
DATASETS: Registry = Registry("dataset", _by_name({
    "binarena.datasets.digits": ("digits",),
    "binarena.datasets.tables": ("breast-cancer",),
    "binarena.datasets.idx": ("mnist", "fashion-mnist"),
    "binarena.datasets.cifar": ("cifar10", "cifar100"),
    "binarena.datasets.folders": ("tinyimagenet", "imagenet"),
}))
