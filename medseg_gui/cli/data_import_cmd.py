"""`medseg data import --from kaggle|dicom|nifti|flat SRC DST`: convert a dataset into the train/valid split layout.

``add_import_parser(data_subparsers)`` adds the sub-command to the ``data`` parser that
``cli/data_cmd.py`` owns; the handler imports the importers lazily so ``medseg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from medseg_gui.cli.common import fail, print_json
from medseg_gui.core.config import field_spec

SOURCES = ("kaggle", "dicom", "nifti", "flat")


def add_import_parser(data_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = data_subparsers.add_parser(
        "import", help="convert Kaggle/DICOM/NIfTI/flat data into a new train/valid folder",
        description="Convert a dataset into the split layout DST/{train,valid}/{images,masks}/*.png "
                    "in a new folder. The source is only read.")
    p.add_argument("--from", dest="source_format", required=True, choices=SOURCES,
                   help="kaggle: folder with train.csv + train/; dicom: folder of series + SEG objects; "
                        "nifti: imagesTr/+labelsTr/ (or images/+labels/); flat: images/+masks/")
    p.add_argument("src", metavar="SRC", help="source folder (or one image volume with --label)")
    p.add_argument("dst", metavar="DST", help="new destination folder (must not exist or be empty)")
    p.add_argument("--label", metavar="PATH",
                   help="dicom/nifti: the label (SEG file, label series or NIfTI) for the single image SRC")
    p.add_argument("--val-fraction", type=float, default=field_spec("dataset.val_fraction").default, metavar="F",
                   help="share held out for validation, split by case/volume (default %(default)s)")
    p.add_argument("--seed", type=int, default=field_spec("training.seed").default,
                   help="split seed (default %(default)s)")
    p.add_argument("--num-classes", type=int, default=None, metavar="N",
                   help="reject labels with values >= N (dicom/nifti/flat)")
    p.add_argument("--keep-empty", type=float, default=1.0, metavar="F",
                   help="dicom/nifti: fraction of slices without labels to keep (default 1 = all)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=run_import)
    return p


def run_import(args: argparse.Namespace) -> int:
    from medseg_gui.core.data.import_output import DatasetImportError
    from medseg_gui.core.imaging.volume import ImageReadError
    from medseg_gui.core.output_guard import os_error_line

    if not 0.0 <= args.val_fraction < 1.0:
        return fail(f"--val-fraction {args.val_fraction} must be in [0, 1)", "e.g. --val-fraction 0.2")
    if args.num_classes is not None and args.num_classes < 2:
        return fail(f"--num-classes {args.num_classes} must be at least 2 (background + one class)")
    if args.label and args.source_format in ("kaggle", "flat"):
        return fail(f"--label is for --from dicom/nifti, not {args.source_format}")
    progress = None if args.json or not sys.stderr.isatty() else _progress
    try:
        if args.source_format == "kaggle":
            from medseg_gui.core.data.kaggle import import_kaggle

            summary = import_kaggle(args.src, args.dst, val_fraction=args.val_fraction, seed=args.seed,
                                    progress=progress)
        elif args.source_format == "flat":
            from medseg_gui.core.data.flat_import import import_flat

            summary = import_flat(args.src, args.dst, val_fraction=args.val_fraction, seed=args.seed,
                                  num_classes=args.num_classes, progress=progress)
        else:
            from medseg_gui.core.data.volume_import import import_volumes

            summary = import_volumes(args.src, args.dst, kind=args.source_format, label=args.label,
                                     val_fraction=args.val_fraction, seed=args.seed,
                                     num_classes=args.num_classes, keep_empty=args.keep_empty,
                                     progress=progress)
    except (DatasetImportError, ImageReadError) as exc:
        return fail(str(exc))
    except OSError as exc:  # e.g. a read-only or full drive while reading the source
        return fail(os_error_line(exc, args.dst))
    finally:
        if progress is not None:
            print(file=sys.stderr)
    if args.json:
        print_json(summary.to_dict())
    else:
        print("\n".join(summary.lines()))
    return 0


def _progress(done: int, total: int) -> None:
    print(f"\r  {done}/{total}", end="", file=sys.stderr, flush=True)
