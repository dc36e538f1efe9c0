"""The repository layout: ``platform/`` is the ``binarena`` package without shadowing the stdlib."""

from __future__ import annotations

import argparse
import subprocess
import sys
import sysconfig
from pathlib import Path

from conftest import REPO


def test_platform_folder_is_not_a_regular_package():
    assert not (REPO / "platform" / "__init__.py").exists()


def test_import_platform_from_repo_root_gives_the_standard_module():
    code = "import sys; sys.path.insert(0, ''); import platform; print(platform.__file__); platform.system()"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert Path(out).resolve().parent == stdlib


def test_binarena_subpackages_import_from_repo_root():
    code = ("import sys; sys.path.insert(0, ''); import binarena.cli, binarena.methods, "
            "binarena.datasets, binarena.models; import platform; "
            "print(binarena.cli.__file__, platform.python_version())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert "platform" in out.split()[0]  # binarena.cli lives in the platform/ folder


def cli_commands() -> dict[str, str]:
    """Each sub-command the CLI's parser defines, with its one-line help: read off the parser
    itself, so that a new command cannot be left out of the test below."""
    from binarena.cli import _parser

    (commands,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {action.dest: action.help or "" for action in commands._choices_actions}


def test_every_command_has_help():
    commands = cli_commands()
    assert {"run", "tune", "leaderboard", "suites", "summary"} <= set(commands)
    top = subprocess.run([sys.executable, "-m", "binarena.cli", "--help"], capture_output=True,
                         text=True)
    assert top.returncode == 0, top.stderr
    for command, summary in commands.items():
        assert summary.strip(), f"{command} has no one-line help"
        assert command in top.stdout and summary.split()[0] in top.stdout
        done = subprocess.run([sys.executable, "-m", "binarena.cli", command, "--help"],
                              capture_output=True, text=True)
        assert done.returncode == 0, f"{command}: {done.stderr}"
        assert f"usage: binarena {command}" in done.stdout
