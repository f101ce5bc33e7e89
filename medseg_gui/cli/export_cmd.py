"""`medseg export RUN_DIR DST`: copy a run's model bundle out (or re-export it from a checkpoint).

A bundle is what the viewer, ``medseg predict`` and other machines load; exporting copies it into a
temp folder beside ``DST`` and renames it into place, so ``DST`` is never half-written. ``--force``
replaces only an earlier export (``core.bundle.is_bundle_export``): never the run itself, a folder
holding it, or anything else.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medseg_gui.cli.common import fail, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="copy a run's model bundle to a folder (safetensors + config)")
    p.add_argument("run_dir", help="training run folder (or a bundle folder to copy)")
    p.add_argument("dst", help="destination folder for the bundle")
    p.add_argument("--from-checkpoint", choices=("best", "last"), default=None,
                   help="re-export from checkpoints/{best,last}.ckpt instead of copying bundle/")
    p.add_argument("--force", action="store_true",
                   help="replace DST if it is an earlier export (anything else is never replaced)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from medseg_gui.core import runs
    from medseg_gui.core.engine.bundle import BundleError, check_bundle_destination, copy_bundle, read_bundle_info
    from medseg_gui.core.engine.inference import ModelLoadError
    from medseg_gui.core.output_guard import OutputRefused, os_error_line

    src, dst = Path(args.run_dir).expanduser(), Path(args.dst).expanduser()
    if not src.exists():
        return fail(f"{src} does not exist", "give a training run folder or a bundle folder")
    try:
        check_bundle_destination(dst, force=args.force, sources=(src,))
    except OutputRefused as exc:
        return fail(str(exc))
    try:
        if args.from_checkpoint:
            if not runs.is_run_dir(src):
                return fail(f"{src} is not a run folder (no {runs.CONFIG_FILE} and {runs.CHECKPOINT_DIR}/)")
            written = _from_checkpoint(src, dst, args.from_checkpoint)
        else:
            bundle = src if (src / runs.BUNDLE_META_FILE).is_file() else src / runs.BUNDLE_DIR
            if not (bundle / runs.BUNDLE_META_FILE).is_file():
                return fail(f"{src} has no bundle ({runs.BUNDLE_DIR}/{runs.BUNDLE_META_FILE})",
                            "the run may have stopped before its first checkpoint; try --from-checkpoint last")
            read_bundle_info(bundle)  # refuse to copy something unreadable
            written = copy_bundle(bundle, dst)
        info = read_bundle_info(written)
    except (BundleError, ModelLoadError, runs.CheckpointError, OutputRefused) as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(os_error_line(exc, dst))
    summary = {"bundle": str(written), "variant": info.variant, "image_size": info.image_size,
               "classes": info.class_names}
    if args.json:
        print_json(summary)
    else:
        print(f"exported SegFormer-{info.variant} ({info.image_size} px, {info.num_classes} classes) to {written}")
    return 0


def _from_checkpoint(run_dir: Path, dst: Path, which: str) -> Path:
    from medseg_gui.core import config as cfg
    from medseg_gui.core import runs
    from medseg_gui.core.engine.bundle import save_bundle
    from medseg_gui.core.engine.inference import load_run_checkpoint

    best, last = runs.checkpoint_paths(run_dir)
    model, _ = load_run_checkpoint(run_dir, "cpu", checkpoint=best if which == "best" else last)
    config = cfg.load(run_dir / runs.CONFIG_FILE)
    return save_bundle(model, config, dst, source_run=run_dir.name)
