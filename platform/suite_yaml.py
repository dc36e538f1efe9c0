"""Reading a suite's YAML safely: PyYAML's safe loader, minus what a suite never needs and a
hostile file would use (aliases, deep nesting, duplicate keys, huge files, non-UTF-8 bytes); any
problem is one ``SuiteError`` line naming the file and the line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import yaml

from .errors import SuiteError

MAX_SUITE_BYTES = 1 << 20  # suites are a few KB; a bigger file is not one (and slow to parse)
MAX_YAML_DEPTH = 50  # suites nest ~5 levels; the YAML composer recurses once per level


class _Refused(yaml.MarkedYAMLError):
    """YAML that parses but that a suite refuses (alias, duplicate key, too deep)."""


class SuiteLoader(yaml.SafeLoader):
    """PyYAML's safe loader, minus what a suite never needs and a hostile file would use.

    - Aliases (``*name``) are refused: suites have no use for them, and a few nested ones expand
      into billions of nodes downstream ("billion laughs"). Anchors are refused with them.
    - Nesting deeper than ``MAX_YAML_DEPTH`` is refused while composing, before the composer's
      recursion overflows Python's stack.
    - A key given twice in one mapping is refused (PyYAML would keep the last value silently).
    - Numbers like ``1e-4`` are floats, as in YAML 1.2 (PyYAML 1.1 reads them as strings, which a
      strict schema would then refuse).
    - A scalar Python cannot convert (a 5,000-digit integer, a 13th month) is a YAML error.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            # the stubs allow libyaml's Mark too; this pure-Python loader makes yaml.error.Mark
            mark = cast("yaml.error.Mark | None", event.start_mark)
            raise _Refused(None, None, f"aliases (*{event.anchor}) are not allowed in a suite",
                           mark)
        if getattr(event, "anchor", None) is not None:
            raise _Refused(None, None, f"anchors (&{event.anchor}) are not allowed in a suite",
                           event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Refused(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels",
                               event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # unhashable: the base constructor says so
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _Refused(None, None, f"duplicate key {key!r} (first on line "
                               f"{seen[key].start_mark.line + 1})", key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:
            raise _Refused(None, None, f"cannot read {node.value!r:.40}: {exc}",
                           node.start_mark) from None


SuiteLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_yaml(path: Path) -> Any:
    """The YAML document of ``path``, read by ``SuiteLoader``; any problem is one ``SuiteError``."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SUITE_BYTES + 1)  # no more: a huge file is refused unread
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_SUITE_BYTES:
        raise SuiteError(f"{path}: over {MAX_SUITE_BYTES:,} bytes; a suite is at most that")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SuiteError(f"{path}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None
    try:
        return _load_yaml(text)
    except _Refused as exc:
        where = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark is not None else ""
        raise SuiteError(f"{path}: {where}{exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SuiteError(f"{path}: {where}malformed YAML: {' '.join(str(problem).split())}") from None


def _load_yaml(text: str) -> Any:
    """What ``yaml.load`` does, with ``SuiteLoader``."""
    loader = SuiteLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
