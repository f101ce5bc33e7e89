"""Packaging: the icons and desktop entry the spec relies on, and (opt-in) the frozen bundle itself.

The frozen-bundle test builds a ~1.3 GB PyInstaller folder (about 4-5 minutes on 2 cores), so it runs
only with MEDSEG_TEST_PACKAGING=1; set MEDSEG_PACKAGING_NO_BUILD=1 to check an existing dist/ build.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"


def load_make_icons():
    sys.path.insert(0, str(PACKAGING))
    try:
        import make_icons
    finally:
        sys.path.remove(str(PACKAGING))
    return make_icons


def test_make_icons_writes_ico_and_icns_from_the_app_png(tmp_path):
    from PIL import Image

    icons = load_make_icons().make_icons(tmp_path)
    with Image.open(icons["ico"]) as ico:
        assert ico.format == "ICO"
        assert {(16, 16), (32, 32), (256, 256)} <= set(ico.info["sizes"])
    with Image.open(icons["icns"]) as icns:
        assert icns.format == "ICNS"
        assert icns.size[0] >= 256


def test_make_icons_rejects_a_too_small_source(tmp_path):
    from PIL import Image

    small = tmp_path / "small.png"
    Image.new("RGBA", (64, 64)).save(small)
    with pytest.raises(ValueError, match="at least 256x256"):
        load_make_icons().make_icons(tmp_path / "out", small)


def test_desktop_entry_is_complete_and_its_icon_ships():
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in desktop entries
    parser.read(ROOT / "resources" / "medseg-gui.desktop", encoding="utf-8")
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application"
    assert entry["Exec"].split()[0] == "medseg-gui"
    assert entry["Terminal"] == "false"
    assert entry["Categories"].endswith(";")
    assert entry["Icon"] == "medseg-gui"
    assert (ROOT / "resources" / "icons" / "medseg.png").exists()
    assert (ROOT / "resources" / "icons" / "medseg.svg").exists()


def test_install_script_points_the_entry_at_the_bundle(tmp_path):
    bundle = tmp_path / "my bundle"
    bundle.mkdir()
    exe = bundle / "medseg-gui"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"), PATH="/usr/bin:/bin")
    script = PACKAGING / "linux" / "install-desktop-entry.sh"
    subprocess.run(["bash", str(script), str(bundle)], check=True, env=env, capture_output=True)
    installed = tmp_path / "data" / "applications" / "medseg-gui.desktop"
    text = installed.read_text(encoding="utf-8")
    assert f'Exec="{exe}" %f' in text
    assert (tmp_path / "data" / "icons" / "hicolor" / "256x256" / "apps" / "medseg-gui.png").exists()
    subprocess.run(["bash", str(script), "--uninstall"], check=True, env=env, capture_output=True)
    assert not installed.exists()


def test_install_script_refuses_a_folder_without_the_app(tmp_path):
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"))
    result = subprocess.run(["bash", str(PACKAGING / "linux" / "install-desktop-entry.sh"), str(tmp_path)],
                            env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "medseg-gui: not found" in result.stderr
    assert not (tmp_path / "data" / "applications" / "medseg-gui.desktop").exists()


@pytest.mark.packaging
@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.skipif(os.environ.get("MEDSEG_TEST_PACKAGING") != "1",
                    reason="builds a 1.3 GB PyInstaller bundle; set MEDSEG_TEST_PACKAGING=1 to run")
def test_frozen_bundle_builds_and_passes_its_self_test():
    args = ["bash", str(PACKAGING / "check_frozen.sh")]
    if os.environ.get("MEDSEG_PACKAGING_NO_BUILD") == "1":
        args.append("--no-build")
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert '"first_paint_ms"' in result.stdout
    assert "frozen bundle OK" in result.stdout
