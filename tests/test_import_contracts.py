"""The import contracts in pyproject.toml run here, and fail on a planted violation.

import-linter reads every import statement, those inside functions included, so a lazy
``import PySide6`` in core is caught although ``tests/test_layers.py`` (which imports the modules)
would not see it. The floors of core (tools > engine > planning > data > imaging > base modules) are
a ``layers`` contract; import circles are found here from the same import graph (grimp, the library
import-linter is built on), because no contract type forbids them. The planted tests copy the
package to a temporary folder so the repository is never written.
"""

from __future__ import annotations

import json
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


# Every import circle among our modules, as sorted lists of module names (strongly connected
# components of more than one module, Tarjan's algorithm, iterative so deep chains do not recurse).
CYCLES = r"""
import json, sys
import grimp
graph = grimp.build_graph("medseg_gui", cache_dir=None)
nodes = sorted(m for m in graph.modules if m.split(".")[0] == "medseg_gui")
edges = {m: sorted(i for i in graph.find_modules_directly_imported_by(m) if i.split(".")[0] == "medseg_gui")
         for m in nodes}
index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
for root in nodes:
    if root in index:
        continue
    work = [(root, iter(edges[root]))]
    index[root] = low[root] = counter[0]; counter[0] += 1; stack.append(root); on_stack.add(root)
    while work:
        node, children = work[-1]
        child = next(children, None)
        if child is not None:
            if child not in index:
                index[child] = low[child] = counter[0]; counter[0] += 1
                stack.append(child); on_stack.add(child)
                work.append((child, iter(edges[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
            continue
        work.pop()
        if work:
            low[work[-1][0]] = min(low[work[-1][0]], low[node])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop(); on_stack.discard(member); component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))
print(json.dumps(sorted(found)))
"""

def _cycles(where: Path) -> list[list[str]]:
    env = dict(os.environ, PYTHONPATH=str(where))
    result = subprocess.run([sys.executable, "-c", CYCLES], cwd=where, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_no_import_circles():
    cycles = _cycles(ROOT)
    assert cycles == [], f"import circles (move the shared code down a floor): {cycles}"


def test_a_planted_import_circle_is_found(tmp_path):
    where = _copy_tree(tmp_path)
    (where / "medseg_gui" / "core" / "imaging" / "planted_a.py").write_text(
        "def f():\n    from medseg_gui.core.imaging import planted_b  # hidden inside a function\n    return planted_b\n")
    (where / "medseg_gui" / "core" / "imaging" / "planted_b.py").write_text(
        "from medseg_gui.core.imaging import planted_a\n")
    cycles = _cycles(where)
    assert ["medseg_gui.core.imaging.planted_a", "medseg_gui.core.imaging.planted_b"] in cycles


def test_a_floor_importing_a_higher_floor_breaks_the_build(tmp_path):
    where = _copy_tree(tmp_path)
    (where / "medseg_gui" / "core" / "data" / "planted.py").write_text(
        "def run():\n    from medseg_gui.core.engine.session import TrainingSession\n    return TrainingSession\n")
    result = _lint(where)
    assert result.returncode != 0
    assert "core floors" in result.stdout and "BROKEN" in result.stdout
    assert "medseg_gui.core.data.planted -> medseg_gui.core.engine.session" in result.stdout


def test_a_base_module_importing_a_floor_breaks_the_build(tmp_path):
    where = _copy_tree(tmp_path)
    words = where / "medseg_gui" / "core" / "words.py"
    words.write_text(words.read_text(encoding="utf-8") + "\nfrom medseg_gui.core.imaging import overlay\n")
    result = _lint(where)
    assert result.returncode != 0
    assert "core floors" in result.stdout and "BROKEN" in result.stdout
    assert "medseg_gui.core.words -> medseg_gui.core.imaging.overlay" in result.stdout


def test_a_new_core_module_must_be_placed_on_a_floor(tmp_path):
    where = _copy_tree(tmp_path)
    (where / "medseg_gui" / "core" / "unplaced.py").write_text("X = 1\n")
    result = _lint(where)
    assert result.returncode != 0
    assert "medseg_gui.core.unplaced" in result.stdout


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
