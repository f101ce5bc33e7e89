#!/usr/bin/env python3
"""Refresh the documentation screenshots in docs/screenshots/ (main_window, wizard, viewer).

The tests capture the same scenes (tests/screenshot_scenes.py) into temp folders and only check them;
this script is the one thing that writes the committed pictures, so running the test suite never
modifies tracked files. Needs Xvfb (Debian: xvfb xauth and the xcb libraries; see .ci/run).

    python scripts/refresh_screenshots.py                       # all three, tiny random model in the Viewer
    python scripts/refresh_screenshots.py viewer --model BUNDLE # the Viewer with a trained bundle
    python scripts/refresh_screenshots.py --out /tmp/shots      # somewhere else

The committed viewer.png used a SegFormer-b0 trained on the demo with benchmarks/train_demo_model.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENES = ("main_window", "wizard", "viewer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenes", nargs="*", metavar="SCENE",  # not choices=: argparse refuses an empty list
                        help=f"which pictures ({', '.join(SCENES)}; default: all)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"), help="folder for the PNGs")
    parser.add_argument("--model", default=None,
                        help="model bundle shown in the Viewer (default: a tiny random model)")
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenes if s not in SCENES]
    if unknown:
        parser.error(f"unknown scene {unknown[0]!r}; choose from {', '.join(SCENES)}")
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from medseg_gui.core.atomic import atomic_write_bytes
    from screenshot_scenes import capture_main_window, capture_viewer, capture_wizard
    from xvfb import XVFB_MISSING, load_screenshot, xvfb_available

    if not xvfb_available():
        print(f"error: {XVFB_MISSING}", file=sys.stderr)
        return 2
    if args.model is not None and not Path(args.model).expanduser().exists():
        print(f"error: --model {args.model} does not exist", file=sys.stderr)
        return 2
    out_dir = Path(args.out).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for scene in args.scenes or SCENES:
        with tempfile.TemporaryDirectory(prefix=f"medseg-shot-{scene}-") as tmp:
            work = Path(tmp)
            shot = work / f"{scene}.png"  # captured beside, then moved: a failed capture keeps the old picture
            if scene == "main_window":
                proc, shape = capture_main_window(shot, work), (768, 1366, 3)
            elif scene == "wizard":
                proc, shape = capture_wizard(shot, work), (768, 1366, 3)
            else:
                proc, shape = capture_viewer(shot, work, args.model), (768, 1366, 3)
            try:
                if proc.returncode != 0:
                    raise AssertionError(f"capture exited {proc.returncode}: {proc.stdout.strip()} "
                                         f"{proc.stderr.strip()[-1500:]}")
                load_screenshot(shot, shape)
            except AssertionError as exc:
                print(f"error: {scene}: {exc}", file=sys.stderr)
                failed += 1
                continue
            dst = atomic_write_bytes(out_dir / f"{scene}.png", shot.read_bytes())
            print(f"{dst}: refreshed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
