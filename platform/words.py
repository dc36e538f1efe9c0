"""Numbers in the words a user reads: a count with its noun in the right number ("1 job", "2
jobs"), and a number as a suite writes it (a budget of 60 reads "60", not "60.0"; 0.5 stays 0.5;
``:g`` would round 12.3456789 to six digits)."""

from __future__ import annotations


def counted(n: float, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1 (``plural`` for irregular nouns)."""
    return f"{as_written(n)} {noun if n == 1 else plural or noun + 's'}"


def as_written(x: float | str) -> str:
    """A whole number without ".0", any other as the shortest text that reads back as it (a
    name as it is)."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    return repr(x) if isinstance(x, float) else str(x)
