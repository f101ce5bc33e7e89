"""Copy a flat ``images/`` + ``masks/`` folder (or an unsplit tutorial folder) into the split layout.

The training loader reads flat folders directly, so this import is for users who want a fixed,
shareable split on disk: it pairs and splits with ``core.data.formats`` (case-grouped, deterministic),
normalises images to 8 bits (16-bit/float windowed, RGBA -> RGB) and writes masks as class ids.
A mask holding only 0 and 255 is a binary mask saved to be visible: it is written as 0/1 (255 becomes
class 1), the mapping ``medseg data check`` offers for such masks, and the report counts them.
Unreadable files and colour masks are skipped and listed rather than stopping the import.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg_gui.core.data.formats import DatasetLayoutError, index_dataset
from medseg_gui.core.data.import_output import (
    DatasetImportError,
    ImportSummary,
    Progress,
    StagedDataset,
    check_destination,
    safe_name,
)
from medseg_gui.core.imaging.images import read_image
from medseg_gui.core.imaging.volume import ImageReadError
from medseg_gui.core.imaging.window import to_uint8


def import_flat(source: str | Path, destination: str | Path, *, val_fraction: float = 0.2, seed: int = 42,
                num_classes: int | None = None, progress: Progress | None = None) -> ImportSummary:
    """Write ``source``'s pairs into ``destination/{train,valid}/{images,masks}``."""

    source, destination = Path(source).expanduser(), Path(destination).expanduser()
    check_destination(source, destination)
    try:
        index = index_dataset(source, val_fraction=val_fraction, seed=seed)
    except DatasetLayoutError as exc:
        raise DatasetImportError(str(exc)) from None
    summary = ImportSummary(str(source), str(destination), "flat", split_note=index.split_note)
    summary.skipped += [f"{p.relative_to(source)}: no mask for this image" for p in index.images_without_mask]
    summary.skipped += [f"{p.relative_to(source)}: no image for this mask" for p in index.masks_without_image]
    summary.skipped += [f"{', '.join(str(p.relative_to(source)) for p in group)}: several files claim one name"
                        for group in index.duplicates]
    summary.cases_train = sorted({p.case for p in index.train})
    summary.cases_valid = sorted({p.case for p in index.valid})
    jobs = [("train", p) for p in index.train] + [("valid", p) for p in index.valid]
    if not jobs:
        raise DatasetImportError(f"{source}: no image/mask pairs found"
                                 + (f" ({summary.skipped[0]})" if summary.skipped else ""))
    binary_255 = 0
    with StagedDataset(destination, ["background"]) as out:
        for done, (split, pair) in enumerate(jobs):
            try:
                image = read_image(pair.image)
                mask = read_image(pair.mask)
            except ImageReadError as exc:
                summary.skipped.append(f"{exc.path.relative_to(source)}: {exc.reason}")
                continue
            was_255 = is_binary_255(mask)
            if was_255:
                mask = (mask > 0).astype(np.uint8)
            problem = _mask_problem(mask, image, num_classes)
            if problem:
                summary.skipped.append(f"{pair.mask.relative_to(source)}: {problem}")
                continue
            binary_255 += was_255
            out.write(split, safe_name(pair.key.replace("/", "__")), to_uint8(image), mask.astype(np.uint8),
                      source=str(pair.image.relative_to(source)))
            if progress is not None:
                progress(done + 1, len(jobs))
        if binary_255:
            summary.warnings.append(f"{binary_255} mask(s) held only 0 and 255 (a binary mask saved to be "
                                    "visible); they were written as 0/1, class 1 where the mask was 255")
        out.commit(summary)
    return summary


def is_binary_255(mask: np.ndarray) -> bool:
    """A single-channel mask whose values are exactly 0 and 255 (255 present): a binary mask saved for
    viewing rather than as class ids. The check's hint and the import agree on mapping 255 to 1."""
    if mask.ndim != 2 or mask.dtype.kind not in "biu" or not mask.size:
        return False
    values = np.unique(mask)
    return 255 in values and set(int(v) for v in values) <= {0, 255}


def _mask_problem(mask: np.ndarray, image: np.ndarray, num_classes: int | None) -> str:
    if mask.ndim != 2:
        return "mask has colour channels; masks must be single-channel class ids"
    if mask.shape != image.shape[:2]:
        return f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is {image.shape[1]}x{image.shape[0]}"
    if mask.dtype.kind not in "biu":
        return f"mask dtype {mask.dtype} is not integer class ids"
    top = int(mask.max()) if mask.size else 0
    if int(mask.min()) < 0 or top > 255:
        return f"mask values {int(mask.min())}..{top} do not fit 0..255"
    if num_classes is not None and top >= num_classes:
        return f"mask value {top} is not below --num-classes {num_classes}"
    return ""
