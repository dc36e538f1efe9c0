"""The repository layout: ``platform/`` is the ``binarena`` package without shadowing the stdlib."""

from __future__ import annotations

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


def test_every_command_has_help():
    for args in (["--help"], ["run", "--help"], ["leaderboard", "--help"], ["suites", "--help"]):
        done = subprocess.run([sys.executable, "-m", "binarena.cli", *args], capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
        assert "usage: binarena" in done.stdout
