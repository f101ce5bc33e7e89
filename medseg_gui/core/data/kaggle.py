"""Convert the raw UW-Madison GI Tract Kaggle layout into the tutorial's split layout.

Source (read only)::

    SRC/train.csv                      id, class, segmentation
    SRC/train/caseN/caseN_dayM/scans/slice_XXXX_W_H_PW_PH.png     16-bit slices

``segmentation`` is run-length encoded as the competition and the community decoders define it:
space-separated ``start length`` pairs, ``start`` 1-based, over the slice flattened row by row
(``H x W``, C order). An empty cell means the organ is absent from that slice.

Destination: ``DST/{train,valid}/{images,masks}/caseN_dayM_slice_XXXX.png`` — images as 8-bit grey
(per-slice percentile window, the same the training loader applies to 16-bit files), masks as class
ids 1 stomach, 2 small bowel, 3 large bowel. Where organs overlap (they do, at a few boundary
pixels), the later class in that order wins: large bowel over small bowel over stomach, whatever the
row order of the csv. The split keeps every slice of a case on one side (all days of a patient
together), so validation measures generalisation to new patients.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from medseg_gui.core.data.formats import Pair, split_pairs
from medseg_gui.core.data.import_output import (
    DatasetImportError,
    ImportSummary,
    Progress,
    StagedDataset,
    check_destination,
)
from medseg_gui.core.imaging.images import read_image
from medseg_gui.core.imaging.volume import ImageReadError
from medseg_gui.core.imaging.window import to_uint8
from medseg_gui.core.output_guard import os_error_line

CLASSES = ("stomach", "small_bowel", "large_bowel")
CLASS_IDS = {name: i + 1 for i, name in enumerate(CLASSES)}
CLASS_NAMES = ["background", "stomach", "small_bowel", "large_bowel"]
REQUIRED_COLUMNS = ("id", "class", "segmentation")

SLICE_RE = re.compile(r"^slice_(\d+)_(\d+)_(\d+)_([\d.]+)_([\d.]+)\.png$", re.IGNORECASE)
ID_RE = re.compile(r"^(case\d+)_day\d+_slice_\d+$")


class RLEError(ValueError):
    """A run-length string is malformed or runs outside the slice."""


def rle_decode(rle: str | None, shape: tuple[int, int]) -> np.ndarray:
    """Decode ``'start length ...'`` (1-based starts, row-major) into a bool mask of ``shape`` (H, W).

    An empty string or None gives an empty mask. Raises :class:`RLEError` for odd token counts,
    non-integers, starts below 1, negative lengths or runs past the last pixel.
    """
    height, width = int(shape[0]), int(shape[1])
    size = height * width
    flat = np.zeros(size, dtype=bool)
    if rle is None or not str(rle).strip() or str(rle).strip().lower() == "nan":
        return flat.reshape(height, width)
    tokens = str(rle).split()
    if len(tokens) % 2:
        raise RLEError(f"odd number of values ({len(tokens)}); expected start/length pairs")
    try:
        ints = [int(t) for t in tokens]
    except ValueError:
        bad = next(t for t in tokens if not t.lstrip("-").isdigit())
        raise RLEError(f"'{bad}' is not an integer") from None
    huge = next((v for v in ints if abs(v) > size + 1), None)
    if huge is not None:  # also keeps absurd numbers from overflowing int64
        raise RLEError(f"value {huge if abs(huge) < 10**12 else f'{str(huge)[:12]}…'} is beyond the slice's "
                       f"{size} pixels")
    values = np.array(ints, dtype=np.int64)
    starts, lengths = values[0::2] - 1, values[1::2]
    if (starts < 0).any():
        raise RLEError(f"start {int(values[0::2][starts < 0][0])} is below 1 (starts are 1-based)")
    if (lengths < 0).any():
        raise RLEError(f"negative run length {int(lengths[lengths < 0][0])}")
    ends = starts + lengths
    if ends.size and int(ends.max()) > size:
        i = int(np.argmax(ends))
        raise RLEError(f"run {int(starts[i]) + 1}+{int(lengths[i])} ends at pixel {int(ends[i])}, past the "
                       f"{height}x{width} slice ({size} pixels)")
    for s, e in zip(starts, ends):
        flat[s:e] = True
    return flat.reshape(height, width)


def rle_encode(mask: np.ndarray) -> str:
    """Encode a 2D mask (non-zero = inside) as Kaggle RLE; the inverse of :func:`rle_decode`."""
    flat = np.asarray(mask).ravel() > 0
    padded = np.concatenate([[False], flat, [False]])
    changes = np.flatnonzero(padded[1:] != padded[:-1]) + 1  # 1-based positions where runs flip
    starts, ends = changes[0::2], changes[1::2]
    return " ".join(f"{s} {e - s}" for s, e in zip(starts, ends))


def parse_slice_name(path: Path) -> tuple[str, int, int, float, float]:
    """``(id, width, height, pixel_w, pixel_h)`` from ``.../caseN_dayM/scans/slice_XXXX_W_H_PW_PH.png``."""
    m = SLICE_RE.match(path.name)
    if not m:
        raise ValueError(f"{path}: not a Kaggle slice name (slice_XXXX_W_H_PW_PH.png)")
    day = path.parent.parent.name
    return (f"{day}_slice_{m.group(1)}", int(m.group(2)), int(m.group(3)),
            float(m.group(4)), float(m.group(5)))


def _index_slices(train_dir: Path) -> tuple[dict[str, tuple[Path, int, int, float, float]], list[str]]:
    found: dict[str, tuple[Path, int, int, float, float]] = {}
    odd: list[str] = []
    for path in sorted(train_dir.glob("*/*/scans/*.png")):
        try:
            sid, w, h, pw, ph = parse_slice_name(path)
        except ValueError:
            odd.append(f"{path.relative_to(train_dir.parent)}: name does not follow slice_XXXX_W_H_PW_PH.png")
            continue
        found[sid] = (path, w, h, pw, ph)
    return found, odd


def read_train_csv(csv_path: Path) -> dict[str, dict[str, str]]:
    """``{id: {class: rle}}`` from ``train.csv``; errors name the csv, the line and the problem."""
    if not csv_path.is_file():
        raise DatasetImportError(f"{csv_path}: train.csv not found — the Kaggle layout needs SRC/train.csv "
                                 "next to SRC/train/ (download the competition's train.csv too)")
    rows: dict[str, dict[str, str]] = defaultdict(dict)
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            _read_rows(csv.DictReader(fh), csv_path, rows)
    except UnicodeDecodeError as exc:
        raise DatasetImportError(f"{csv_path}: not UTF-8 text (it holds the byte {exc.object[exc.start]:#04x}) — "
                                 "save the csv as UTF-8 (the competition's file is)") from None
    except csv.Error as exc:  # e.g. "field larger than field limit": not the competition's csv
        raise DatasetImportError(f"{csv_path}: not a readable csv ({exc}) — expected the competition's "
                                 "train.csv with columns id,class,segmentation") from None
    except OSError as exc:
        raise DatasetImportError(os_error_line(exc, csv_path)) from None
    return dict(rows)


def _read_rows(reader: csv.DictReader, csv_path: Path, rows: dict[str, dict[str, str]]) -> None:
    columns = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise DatasetImportError(f"{csv_path}: missing column(s) {', '.join(missing)}; found "
                                 f"{', '.join(columns) or 'no header'} — expected id,class,segmentation")
    reader.fieldnames = columns
    for line, row in enumerate(reader, start=2):
        sid, cls = (row.get("id") or "").strip(), (row.get("class") or "").strip()
        if not sid:
            raise DatasetImportError(f"{csv_path}: line {line}: empty id")
        if cls not in CLASS_IDS:
            raise DatasetImportError(f"{csv_path}: line {line}: unknown class '{cls}' for {sid}; "
                                     f"expected one of {', '.join(CLASSES)}")
        rows[sid][cls] = (row.get("segmentation") or "").strip()


def import_kaggle(source: str | Path, destination: str | Path, *, val_fraction: float = 0.2, seed: int = 42,
                  progress: Progress | None = None) -> ImportSummary:
    """Convert ``source`` (Kaggle layout) into a new tutorial-layout folder ``destination``.

    Ids whose slice file is missing (or whose image size disagrees with its name) are skipped and
    listed in the summary; a malformed RLE stops the import with an error naming the id, since it
    means the csv is not the competition's.
    """

    source, destination = Path(source).expanduser(), Path(destination).expanduser()
    if not source.is_dir():
        raise DatasetImportError(f"{source}: not a folder — pass the Kaggle folder holding train.csv and train/")
    check_destination(source, destination)
    csv_path = source / "train.csv"
    rows = read_train_csv(csv_path)
    train_dir = source / "train"
    if not train_dir.is_dir():
        raise DatasetImportError(f"{train_dir}: folder not found — the Kaggle layout keeps slices in "
                                 "SRC/train/caseN/caseN_dayM/scans/")
    slices, odd = _index_slices(train_dir)
    summary = ImportSummary(str(source), str(destination), "kaggle", class_names=list(CLASS_NAMES))
    summary.skipped += odd
    pairs = []
    for sid in sorted(rows):
        if sid not in slices:
            summary.skipped.append(f"{sid}: no slice file train/{sid.split('_')[0]}/"
                                   f"{'_'.join(sid.split('_')[:2])}/scans/slice_{sid.rsplit('_', 1)[-1]}_*.png")
            continue
        m = ID_RE.match(sid)
        case = m.group(1) if m else sid.split("_")[0]
        pairs.append(Pair(image=slices[sid][0], mask=slices[sid][0], key=sid, case=case))
    if not pairs:
        raise DatasetImportError(f"{source}: none of the {len(rows)} ids in train.csv has a slice file under "
                                 f"{train_dir} — check that train/ holds caseN/caseN_dayM/scans/*.png")
    unlisted = len(slices) - len(pairs)
    if unlisted:
        summary.warnings.append(f"{unlisted} slice file(s) are not listed in train.csv and were ignored")
    train, valid, note = split_pairs(pairs, val_fraction, seed)
    summary.split_note = note
    summary.cases_train = sorted({p.case for p in train})
    summary.cases_valid = sorted({p.case for p in valid})
    if not valid:
        summary.warnings.append("the validation split is empty (one case only); add cases or validate elsewhere")
    jobs = [("train", p) for p in train] + [("valid", p) for p in valid]
    with StagedDataset(destination, CLASS_NAMES) as out:
        for done, (split, pair) in enumerate(jobs):
            path, width, height, _, _ = slices[pair.key]
            try:
                raw = read_image(path)
            except ImageReadError as exc:
                summary.skipped.append(f"{pair.key}: {exc.reason}")
                continue
            if raw.shape[:2] != (height, width):
                summary.skipped.append(f"{pair.key}: image is {raw.shape[1]}x{raw.shape[0]} but its name says "
                                       f"{width}x{height} ({path.name})")
                continue
            mask = np.zeros((height, width), dtype=np.uint8)
            for cls in CLASSES:  # fixed order: a later class wins where organs overlap
                try:
                    on = rle_decode(rows[pair.key].get(cls), (height, width))
                except RLEError as exc:
                    raise DatasetImportError(f"{csv_path}: id {pair.key}, class {cls}: bad segmentation RLE: "
                                             f"{exc} — the slice is {width}x{height}") from None
                mask[on] = CLASS_IDS[cls]
            image = to_uint8(raw if raw.ndim == 2 else raw[..., 0])
            out.write(split, pair.key, image, mask)
            if progress is not None:
                progress(done + 1, len(jobs))
        out.commit(summary)
    return summary
