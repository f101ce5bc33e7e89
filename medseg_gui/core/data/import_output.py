"""Where importers write: a staging folder renamed into place, and the summary they report.

Every importer (Kaggle, DICOM, NIfTI, flat) writes the tutorial layout
``DST/{train,valid}/{images,masks}/NAME.png`` into a hidden staging folder beside ``DST`` and renames
it to ``DST`` only when everything succeeded, so an interrupted or failed import never leaves a
half-filled dataset that the validator or a training run could mistake for a complete one. The source
is only ever read; a destination inside the source is refused for the same reason.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Progress = Callable[[int, int], None]
"""``progress(done, total)``; raise from it (e.g. a cancel flag) to abort an import cleanly."""

REPORT_NAME = "import_report.json"


class DatasetImportError(ValueError):
    """An import cannot go ahead; the message names the file or folder, the problem and what to do."""


@dataclass
class ImportSummary:
    """What an import wrote and what it skipped, for the CLI/GUI summary and ``import_report.json``."""

    source: str
    destination: str
    kind: str
    n_train: int = 0
    n_valid: int = 0
    cases_train: list[str] = field(default_factory=list)
    cases_valid: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    class_pixels: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # "name: reason", one per skipped item
    warnings: list[str] = field(default_factory=list)
    split_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """A short human summary (the CLI prints it)."""
        out = [f"imported {self.kind} dataset {self.source} -> {self.destination}",
               f"  train: {self.n_train} slices from {len(self.cases_train)} case(s); "
               f"valid: {self.n_valid} slices from {len(self.cases_valid)} case(s)",
               f"  split: {self.split_note}"]
        total = sum(self.class_pixels.values()) or 1
        shares = ", ".join(f"{name} {100.0 * n / total:.2f}%" for name, n in self.class_pixels.items())
        if shares:
            out.append(f"  pixel share: {shares}")
        if self.skipped:
            out.append(f"  skipped {len(self.skipped)}:")
            out += [f"    {s}" for s in self.skipped[:20]]
            if len(self.skipped) > 20:
                out.append(f"    ... and {len(self.skipped) - 20} more (see {REPORT_NAME})")
        out += [f"  warning: {w}" for w in self.warnings]
        return out


def check_destination(source: Path, destination: Path) -> None:
    """Refuse a destination that would modify the source or overwrite an existing dataset."""
    src, dst = Path(source).resolve(), Path(destination).resolve()
    if dst == src or src in dst.parents:
        raise DatasetImportError(f"{destination}: the destination is inside the source {source}; "
                           "imports never write into the source — choose a folder outside it")
    if dst in src.parents:
        raise DatasetImportError(f"{destination}: the destination contains the source {source}; "
                           "choose a new, empty folder elsewhere")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise DatasetImportError(f"{destination}: already exists and is not empty; "
                           "choose a new folder (imports never overwrite a dataset)")


class StagedDataset:
    """Writes image/mask PNG pairs into a staging folder; ``commit()`` renames it to the destination.

    Used as a context manager: leaving the block without ``commit()`` (an error, a cancel) deletes
    the staging folder, so nothing half-written remains.
    """

    def __init__(self, destination: Path, class_names: list[str]) -> None:
        self.destination = Path(destination)
        self.destination.parent.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix=f".{self.destination.name}.importing-",
                                          dir=self.destination.parent))
        self.class_names = list(class_names)
        self.pixels = np.zeros(256, dtype=np.int64)
        self.counts = {"train": 0, "valid": 0}
        self._committed = False
        for split in ("train", "valid"):
            for sub in ("images", "masks"):
                (self.root / split / sub).mkdir(parents=True)

    def __enter__(self) -> StagedDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._committed:
            shutil.rmtree(self.root, ignore_errors=True)

    def write(self, split: str, name: str, image: np.ndarray, mask: np.ndarray) -> None:
        """Write ``NAME.png`` into ``split/images`` (uint8 grey/RGB) and ``split/masks`` (class ids)."""
        from PIL import Image

        if image.dtype != np.uint8 or mask.dtype != np.uint8:
            raise TypeError(f"{name}: importer must pass uint8 image and mask, got {image.dtype}/{mask.dtype}")
        if image.shape[:2] != mask.shape:
            raise ValueError(f"{name}: image {image.shape[:2]} and mask {mask.shape} differ in size")
        Image.fromarray(np.ascontiguousarray(image)).save(self.root / split / "images" / f"{name}.png",
                                                          compress_level=3)
        Image.fromarray(np.ascontiguousarray(mask)).save(self.root / split / "masks" / f"{name}.png",
                                                         compress_level=3)
        self.pixels += np.bincount(mask.ravel(), minlength=256)
        self.counts[split] += 1

    def class_pixels(self) -> dict[str, int]:
        used = int(np.nonzero(self.pixels)[0].max()) + 1 if self.pixels.any() else 0
        n = max(len(self.class_names), used)
        names = self.class_names + [f"class {k}" for k in range(len(self.class_names), n)]
        return {names[k]: int(self.pixels[k]) for k in range(n)}

    def commit(self, summary: ImportSummary) -> Path:
        """Finish the summary, write ``import_report.json``, and rename the staging folder into place."""
        summary.n_train, summary.n_valid = self.counts["train"], self.counts["valid"]
        summary.class_pixels = self.class_pixels()
        summary.class_names = list(summary.class_pixels) or self.class_names
        (self.root / REPORT_NAME).write_text(json.dumps(summary.to_dict(), indent=2), encoding="utf-8")
        if self.destination.exists():  # empty folder (checked before): replace it
            self.destination.rmdir()
        self.root.rename(self.destination)
        self._committed = True
        return self.destination


def safe_name(text: str) -> str:
    """A file-name-safe version of a case/series name (letters, digits, ``-``, ``_``, ``.``)."""
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text.strip())
    return keep.strip("._") or "case"
