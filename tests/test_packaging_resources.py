"""The top-level resources/ folder reaches the app however it is installed: a wheel carries the icons
inside the package, a source checkout (and an editable install) reads the repository's folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ICONS = ROOT / "resources" / "icons"


def test_icons_are_found_in_the_package_first_then_in_the_repository(tmp_path):
    from medseg_gui.gui.resources import APP_ICON, find_icons

    installed, repository = tmp_path / "pkg" / "_resources", tmp_path / "repo" / "icons"
    repository.mkdir(parents=True)
    (repository / APP_ICON).write_text("<svg/>")
    assert find_icons((installed, repository)) == repository  # editable install: no copy in the package
    installed.mkdir(parents=True)
    assert find_icons((installed, repository)) == repository  # an empty folder is not the icons
    (installed / APP_ICON).write_text("<svg/>")
    assert find_icons((installed, repository)) == installed  # wheel or bundle: its own copy wins
    assert find_icons((tmp_path / "a", tmp_path / "b")) == tmp_path / "a"  # none: empty icons, no crash


def test_this_checkout_finds_and_renders_its_icons(qapp):
    from medseg_gui.gui import resources, style

    assert resources.RESOURCES == ICONS
    assert not resources.app_icon().pixmap(64, 64).isNull()
    assert not resources.icon("page_viewer").pixmap(32, 32).isNull()
    assert resources.icon("no_such_icon").isNull()
    assert f"url({ICONS.as_posix()}/check.svg)" in style.STYLE_SHEET


@pytest.mark.slow
def test_the_wheel_carries_every_icon_inside_the_package(tmp_path):
    try:  # setuptools >= 70.1 builds wheels itself; older ones need the wheel package
        import setuptools.command.bdist_wheel  # noqa: F401
    except ImportError:
        pytest.importorskip("wheel")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "medseg_gui", src / "medseg_gui", ignore=ignore)
    shutil.copytree(ROOT / "resources", src / "resources", ignore=ignore)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             "--no-index", "-q", "-w", str(tmp_path / "whl"), str(src)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "whl").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    icons = sorted(p.name for p in ICONS.iterdir() if p.is_file())
    assert "medseg.svg" in icons and "medseg.png" in icons
    assert {f"medseg_gui/_resources/{n}" for n in icons} <= names
    assert not any(n.startswith("resources/") for n in names)  # no top-level package named resources
    assert "medseg_gui/gui/resources.py" in names
    assert any(n.startswith("medseg_gui/core/planning/calibration/") and n.endswith(".json") for n in names)
