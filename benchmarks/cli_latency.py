"""How long the read-only commands and the refusals of bad input take to answer, each in a fresh
process (imports included): issue 16's target is under 2 s for `leaderboard`, `suites`, the other
lists, `--help`, `--version` and every bad input. Output piped, as a script would read it.

    python -m binarena.benchmarks.cli_latency [RESULTS] [--runs N]   # a Markdown table on stdout

`leaderboard` needs a results folder holding the quickstart (default: ./binarena-results after
`binarena run quickstart`); without one it times the one-line refusal instead. Each command runs
--runs times (default 5); the table gives the median and the slowest, and the exit code.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

# a suite with one misspelled key, and one whose data (MNIST) is not where it is looked for
MISSPELLED = {"name": "misspelled", "dataset": {"name": "digits"}, "model": {"name": "cnn"},
              "methods": [{"name": "random"}], "budgets": [50], "seeds": [0],
              "trainin": {"epochs": 1}}
NEEDS_MNIST = {**MISSPELLED, "name": "needs-mnist", "dataset": {"name": "mnist"},
               "training": MISSPELLED["trainin"]}
del NEEDS_MNIST["trainin"]


def timed(args: list[str], runs: int) -> tuple[float, float, int]:
    """(median, slowest) seconds of ``binarena ARGS`` in a fresh interpreter, and its exit code."""
    seconds, code = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "binarena.cli", *args],
                              capture_output=True, text=True)
        seconds.append(time.perf_counter() - start)
        code = done.returncode
    return statistics.median(seconds), max(seconds), code


def cases(results: Path, folder: Path) -> dict[str, list[str]]:
    """Label -> arguments: what a new user types first, and what they get wrong."""
    misspelled, mnist, empty = folder / "misspelled.yaml", folder / "needs-mnist.yaml", folder / "e"
    misspelled.write_text(yaml.safe_dump(MISSPELLED))
    mnist.write_text(yaml.safe_dump(NEEDS_MNIST))
    empty.mkdir()
    board = ["leaderboard", "quickstart", "--results", str(results)]
    return {
        "binarena --help": ["--help"],
        "binarena --version": ["--version"],
        "binarena suites": ["suites"],
        "binarena methods": ["methods"],
        "binarena models": ["models"],
        "binarena datasets": ["datasets"],
        "binarena leaderboard quickstart": board,
        "binarena leaderboard quickstart --format json": [*board, "--format", "json"],
        "binarena run quikstart (exit 2)": ["run", "quikstart"],
        "binarena run quickstart --seeds x (exit 2)": ["run", "quickstart", "--seeds", "x"],
        "binarena run quickstart --methods randon (exit 2)": ["run", "quickstart", "--methods",
                                                              "randon"],
        "binarena run quickstart --budgets 45 (exit 2)": ["run", "quickstart", "--budgets", "45"],
        "binarena run SUITE, a misspelled key (exit 2)": ["run", str(misspelled)],
        "binarena run SUITE, MNIST not found (exit 2)": ["run", str(mnist), "--data-root",
                                                         str(empty)],
        "binarena tune quickstart, no tune section (exit 2)": ["tune", "quickstart"],
        "binarena summary --dataset digitz (exit 2)": ["summary", "--model", "cnn", "--dataset",
                                                       "digitz"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=Path("binarena-results"),
                        help="a results folder holding the quickstart")
    parser.add_argument("--runs", type=int, default=5, help="runs per command")
    args = parser.parse_args()
    print("| command | median (s) | slowest (s) | exit |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for label, argv in cases(args.results, Path(folder)).items():
            median, slowest, code = timed(argv, args.runs)
            print(f"| `{label}` | {median:.2f} | {slowest:.2f} | {code} |", flush=True)


if __name__ == "__main__":
    main()
