"""The app's data folder: MEDSEG_HOME wins, else the platform's per-user folder from platformdirs, in the
same place earlier versions used, so existing runs and settings are found."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from medseg_gui.core import paths


def test_medseg_home_wins_and_is_created(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "custom" / "home"))
    assert paths.app_home() == tmp_path / "custom" / "home"
    assert (tmp_path / "custom" / "home").is_dir()
    assert paths.default_output_dir() == tmp_path / "custom" / "home" / "runs"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux folder rule")
def test_linux_folder_is_where_earlier_versions_kept_it(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDSEG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert paths.platform_home() == tmp_path / ".local" / "share" / "medseg-gui"
    assert paths.earlier_home() is None
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert paths.app_home() == tmp_path / "xdg" / "medseg-gui"
    assert (tmp_path / "xdg" / "medseg-gui").is_dir()


def test_an_existing_earlier_folder_is_kept_until_the_new_one_exists(tmp_path):
    current, earlier = tmp_path / "new" / "medseg-gui", tmp_path / "old" / "medseg-gui"
    assert paths.choose_home(current, earlier) == current  # a new user: the platform's folder
    earlier.mkdir(parents=True)
    assert paths.choose_home(current, earlier) == earlier  # an existing user: their runs stay found
    current.mkdir(parents=True)
    assert paths.choose_home(current, earlier) == current  # once the new folder exists, it is the one
    assert paths.choose_home(current, None) == current
    assert paths.choose_home(current, current) == current


def test_earlier_rule_on_macos_and_windows(tmp_path, monkeypatch):
    monkeypatch.setattr(paths.Path, "home", classmethod(lambda cls: Path(tmp_path)))
    monkeypatch.setattr(paths.sys, "platform", "darwin")
    assert paths.earlier_home() == tmp_path / "Library" / "Application Support" / "medseg-gui"
    monkeypatch.setattr(paths.sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "Local"))
    assert paths.earlier_home() == tmp_path / "Local" / "medseg-gui"
    monkeypatch.delenv("LOCALAPPDATA")
    assert paths.earlier_home() is None
