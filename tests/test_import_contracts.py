"""The import contracts in pyproject.toml run here, and fail on a planted violation.

import-linter reads every import statement, those inside functions included, so a lazy
``import PySide6`` in core is caught although ``tests/test_layers.py`` (which imports the modules)
would not see it. The planted test copies the package to a temporary folder so the repository is
never written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LINT = ("import sys\nfrom importlinter.cli import lint_imports\n"
        "sys.exit(lint_imports(no_cache=True, no_logo=True))\n")


def _lint(where: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(where))
    return subprocess.run([sys.executable, "-c", LINT], cwd=where, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_repository_keeps_its_contracts():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout and " 0 broken" in result.stdout


def _copy_tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "medseg_gui", tmp_path / "medseg_gui",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "resources", "calibration"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_a_lazy_qt_import_in_core_breaks_the_build(tmp_path):
    where = _copy_tree(tmp_path)
    (where / "medseg_gui" / "core" / "planted.py").write_text(
        "def show():\n    from PySide6 import QtWidgets  # hidden inside a function\n    return QtWidgets\n")
    result = _lint(where)
    assert result.returncode != 0
    assert "core never imports Qt" in result.stdout and "BROKEN" in result.stdout
    assert "medseg_gui.core.planted" in result.stdout


def test_the_gui_importing_the_command_line_breaks_the_build(tmp_path):
    where = _copy_tree(tmp_path)
    (where / "medseg_gui" / "gui" / "planted.py").write_text("from medseg_gui.cli import main\n")
    result = _lint(where)
    assert result.returncode != 0
    assert "medseg_gui.gui is not allowed to import medseg_gui.cli" in result.stdout
