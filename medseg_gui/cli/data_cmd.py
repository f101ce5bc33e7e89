"""`medseg data check PATH`, `medseg data demo DST` (and `medseg data import`, from data_import_cmd).

This module owns the ``data`` parser. Other data sub-commands plug in through
:data:`DATA_SUBCOMMAND_HOOKS`: ``(module, function)`` pairs where ``function(data_subparsers)`` adds
one sub-command. ``medseg data import`` lives in ``cli/data_import_cmd.py`` (``add_import_parser``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util

from medseg_gui.cli.common import fail, positive_int, print_json
from medseg_gui.core.config import field_spec

DATA_SUBCOMMAND_HOOKS = [
    ("medseg_gui.cli.data_import_cmd", "add_import_parser"),
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="check a dataset, make the demo dataset, import other formats")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])

    c = dsub.add_parser("check", help="validate a dataset folder and say whether training can start",
                        description="Report pairs per split, image sizes, classes and their pixel share, and "
                                    "every bad file with the reason. Exit 0 when training can go ahead "
                                    "(bad pairs skipped), 1 when it cannot. The folder is only read.")
    c.add_argument("path", metavar="PATH", help="dataset folder, or 'demo' for the built-in dataset")
    c.add_argument("--num-classes", type=int, default=field_spec("dataset.num_classes").default, metavar="N",
                   help="classes including background; mask values must be 0..N-1 (default %(default)s)")
    c.add_argument("--val-fraction", type=float, default=field_spec("dataset.val_fraction").default, metavar="F",
                   help="validation share when the folder has no train/valid split (default %(default)s)")
    c.add_argument("--seed", type=int, default=field_spec("training.seed").default,
                   help="split seed (default %(default)s)")
    c.add_argument("--sample-masks", type=positive_int, default=None, metavar="K",
                   help="decode only K random masks for the value check (faster on huge folders)")
    c.add_argument("--decode-images", action="store_true",
                   help="fully decode every image too (slower; catches corruption inside files)")
    c.add_argument("--json", action="store_true", help="print the full report as JSON")
    c.set_defaults(handler=run_check)

    d = dsub.add_parser("demo", help="write the synthetic demo dataset (train/ + valid/ layout) to a new folder")
    d.add_argument("dst", metavar="DST", help="new or empty destination folder")
    d.add_argument("--n", type=int, default=None, metavar="N", help="number of slices (default 240)")
    d.add_argument("--size", type=int, default=None, metavar="S", help="image side in px (default 256)")
    d.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    d.set_defaults(handler=run_demo)

    for module_name, function in DATA_SUBCOMMAND_HOOKS:
        # A hook module that is not there (yet) is skipped; one that is there but broken raises.
        if importlib.util.find_spec(module_name) is not None:
            getattr(importlib.import_module(module_name), function)(dsub)


def run_check(args: argparse.Namespace) -> int:
    from medseg_gui.core.data.formats import DatasetLayoutError, resolve_dataset_path
    from medseg_gui.core.data.validate import validate_dataset

    if args.num_classes < 2:
        return fail(f"--num-classes {args.num_classes} must be at least 2 (background + one class)")
    if not 0.0 < args.val_fraction < 1.0:
        return fail(f"--val-fraction {args.val_fraction} must be between 0 and 1", "e.g. --val-fraction 0.2")
    from medseg_gui.core.config import DEFAULT_CLASS_NAMES

    names = list(DEFAULT_CLASS_NAMES) if args.num_classes == len(DEFAULT_CLASS_NAMES) else None
    try:
        root = resolve_dataset_path(args.path)
        report = validate_dataset(root, args.num_classes, class_names=names, val_fraction=args.val_fraction,
                                  seed=args.seed, mask_sample=args.sample_masks,
                                  decode_images=args.decode_images)
    except DatasetLayoutError as exc:
        if args.json:
            print_json({"root": args.path, "can_train": False, "verdict": str(exc), "problems": []})
        else:
            fail(str(exc), "point at a folder with train/ and valid/ (images/ + masks/ inside), or "
                           "images/ + masks/, or convert it with `medseg data import`")
        return 1
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.to_text())
    return 0 if report.can_train else 1


def run_demo(args: argparse.Namespace) -> int:
    from medseg_gui.core.data.demo import DEFAULT_N, DEFAULT_SIZE, generate_demo

    n = DEFAULT_N if args.n is None else args.n
    size = DEFAULT_SIZE if args.size is None else args.size
    from medseg_gui.core.output_guard import os_error_line

    try:
        dst = generate_demo(args.dst, n=n, size=size, seed=args.seed)
    except FileExistsError as exc:
        return fail(str(exc) if exc.errno is None else os_error_line(exc, args.dst))
    except ValueError as exc:
        return fail(str(exc))
    except OSError as exc:  # a read-only or full drive, no permission
        return fail(os_error_line(exc, args.dst))
    n_train = len(list((dst / "train" / "images").iterdir()))
    n_valid = len(list((dst / "valid" / "images").iterdir()))
    print(f"wrote {n_train} training and {n_valid} validation slices ({size} px) to {dst}")
    return 0
