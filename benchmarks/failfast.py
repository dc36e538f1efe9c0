"""How long `binarena run` takes to refuse what it cannot use, and to stop on SIGTERM (issue 11's
targets: an unreachable --address within 30 s; the tests only guard against hangs).

    python -m binarena.benchmarks.failfast            # a Markdown table on stdout

Every case is the CLI in a fresh process on a tiny digits suite, timed from start to exit (Python
and torch imports included, ~5 s here). Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml

SUITE = {
    "name": "failfast", "dataset": {"name": "digits", "train_size": 300, "val_size": 50},
    "model": {"name": "cnn", "options": {"channels": [4, 8], "blocks_per_stage": 1}},
    "methods": [{"name": "full-precision"}, {"name": "random"}], "budgets": [50],
    "seeds": [0, 1], "training": {"epochs": 8, "batch_size": 32, "lr": 0.05},
}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def silent_server() -> tuple[int, Callable[[], None]]:
    """A port that accepts connections and never answers (a firewall's black hole, a hung GCS)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()

    def close() -> None:
        stop.set()
        for conn in held:
            conn.close()
        server.close()

    return server.getsockname()[1], close


def timed(command: list[str], after: Callable[[subprocess.Popen], None] | None = None,
          ) -> tuple[float, int, str]:
    """Seconds to exit (from start, or from what ``after`` did), exit code, last stderr line."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    if after is not None:
        after(process)
        started = time.perf_counter()
    _, err = process.communicate(timeout=900)
    lines = [line for line in err.splitlines() if line.strip()]
    return time.perf_counter() - started, process.returncode, lines[-1] if lines else ""


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="failfast-"))
    suite = folder / "failfast.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    big = folder / "big.yaml"
    big.write_text(yaml.safe_dump({**SUITE, "resources": {"cpus": 100}}))
    run = [sys.executable, "-m", "binarena.cli", "run", str(suite)]
    big_run = [sys.executable, "-m", "binarena.cli", "run", str(big)]
    port, close = silent_server()

    def results(name: str) -> list[str]:
        return ["--results", str(folder / name)]

    def sigterm_after_first_rows(process: subprocess.Popen) -> None:
        table = folder / "sigterm" / "failfast" / "results.parquet"
        while not table.is_file() and process.poll() is None:
            time.sleep(0.2)
        time.sleep(1)
        process.send_signal(signal.SIGTERM)

    cases = [
        ("--address at a closed port", run + ["--address", f"127.0.0.1:{closed_port()}"]
         + results("a"), None),
        ("--address at a port that never answers", run + ["--address", f"127.0.0.1:{port}"]
         + results("b"), None),
        ("--tracking-uri at a closed port", run + ["--tracking-uri",
                                                  f"http://127.0.0.1:{closed_port()}"]
         + results("c"), None),
        ("a job no node can hold (cpus: 100)", big_run + results("d"), None),
        ("SIGTERM while jobs run (from the signal)", run + results("sigterm")
         + ["--max-parallel", "1"], sigterm_after_first_rows),
    ]
    print("| case | seconds to exit | exit code | last line |")
    print("|---|---:|---:|---|")
    try:
        for name, command, after in cases:
            seconds, code, line = timed(command, after)
            print(f"| {name} | {seconds:.1f} | {code} | {line[:110]} |", flush=True)
    finally:
        close()


if __name__ == "__main__":
    main()
