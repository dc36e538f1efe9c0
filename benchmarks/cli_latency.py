"""How long the read-only commands take to answer, each in a fresh process (imports included):
issue 16's target is under 2 s for `leaderboard`, `suites`, `--help`, `--version` and a bad input.

    python -m binarena.benchmarks.cli_latency [RESULTS]    # a Markdown table on stdout

`leaderboard` needs a results folder holding the quickstart (default: ./binarena-results after
`binarena run quickstart`); without one it times the one-line refusal instead. Each command runs
five times; the table gives the median and the slowest.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 5


def timed(args: list[str]) -> tuple[float, float, int]:
    """(median, slowest) seconds of ``binarena ARGS`` in a fresh interpreter, and its exit code."""
    seconds, code = [], 0
    for _ in range(RUNS):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "binarena.cli", *args],
                              capture_output=True, text=True)
        seconds.append(time.perf_counter() - start)
        code = done.returncode
    return statistics.median(seconds), max(seconds), code


def main() -> None:
    results = Path(sys.argv[1] if len(sys.argv) > 1 else "binarena-results")
    cases = {
        "binarena --help": ["--help"],
        "binarena --version": ["--version"],
        "binarena suites": ["suites"],
        "binarena leaderboard quickstart": ["leaderboard", "quickstart", "--results", str(results)],
        "binarena run no-such-suite (exit 2)": ["run", "no-such-suite"],
        "binarena run quickstart --seeds x (exit 2)": ["run", "quickstart", "--seeds", "x"],
    }
    print("| command | median (s) | slowest (s) | exit |")
    print("|---|---:|---:|---:|")
    for label, args in cases.items():
        median, slowest, code = timed(args)
        print(f"| `{label}` | {median:.2f} | {slowest:.2f} | {code} |")


if __name__ == "__main__":
    main()
