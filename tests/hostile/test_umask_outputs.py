"""Everything we write for people to use follows the umask: a colleague on a shared server can read
the model, the imported dataset, the predicted masks and the saved configuration (``mkstemp``/``mkdtemp``
alone would make them 0600/0700).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from medseg_gui.cli import main

from data_helpers import make_pair
from viewer_helpers import ramp_image, tiny_bundle, tiny_model, tiny_run_config, write_png

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _all_modes(root: Path) -> set[tuple[str, int]]:
    """(kind, mode) of root and everything under it."""
    found = {("dir", _mode(root))}
    for p in root.rglob("*"):
        found.add(("dir" if p.is_dir() else "file", _mode(p)))
    return found


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_user_visible_outputs_follow_the_umask(tmp_path, capsys, mask):
    from medseg_gui.core.engine.bundle import WEIGHTS_FILE, copy_bundle, save_bundle
    from medseg_gui.core.data.demo import generate_demo

    want = {("dir", 0o777 & ~mask), ("file", 0o666 & ~mask)}
    bundle = tiny_bundle(tmp_path / "models")  # made before the umask changes: only an input here
    old = os.umask(mask)
    try:
        # a run's own bundle folder, as training writes it
        saved = save_bundle(tiny_model(), tiny_run_config(), tmp_path / "run" / "bundle")
        assert _mode(saved) == 0o777 & ~mask and _mode(saved / WEIGHTS_FILE) == 0o666 & ~mask
        assert _all_modes(saved) == want

        # an exported model (medseg export copies the bundle)
        exported = copy_bundle(bundle, tmp_path / "exported")
        assert _all_modes(exported) == want

        # an imported dataset
        src = tmp_path / "flat"
        for i, name in enumerate(["a", "b", "c", "d"]):
            make_pair(src / "images", src / "masks", name, seed=i)
        dst = tmp_path / "imported"
        assert main(["data", "import", "--from", "flat", str(src), str(dst)]) == 0
        assert _all_modes(dst) == want

        # the demo dataset
        demo = generate_demo(tmp_path / "demo", n=4, size=32)
        assert _all_modes(demo) == want

        # predicted masks and overlays
        case = write_png(tmp_path / "in" / "case1.png", ramp_image())
        out = tmp_path / "out"
        assert main(["predict", str(bundle), str(case), "--out", str(out), "--overlay"]) == 0
        assert len(list(out.rglob("*.png"))) == 2
        assert _all_modes(out) == want

        # the trial runs' scratch folder (Lightning's tuner writes a checkpoint there)
        from medseg_gui.core.tools.trial_run import scratch_dir

        with scratch_dir("umask-check") as scratch:
            (scratch / "tuner.ckpt").write_bytes(b"x")
            assert _mode(scratch) == 0o777 & ~mask

        # recommend --save
        saved_cfg = tmp_path / "configs" / "mine.toml"
        assert main(["recommend", "--vram-gb", "0", "--save", str(saved_cfg)]) == 0
        assert _mode(saved_cfg) == 0o666 & ~mask and _mode(saved_cfg.parent) == 0o777 & ~mask
    finally:
        os.umask(old)
    capsys.readouterr()
