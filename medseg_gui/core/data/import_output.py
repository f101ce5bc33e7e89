"""Where importers write: a staging folder renamed into place, and the summary they report.

Every importer (Kaggle, DICOM, NIfTI, flat) writes the tutorial layout
``DST/{train,valid}/{images,masks}/NAME.png`` into a hidden staging folder beside ``DST`` and renames
it to ``DST`` only when everything succeeded, so an interrupted or failed import never leaves a
half-filled dataset that the validator or a training run could mistake for a complete one. The source
is only ever read; a destination inside the source is refused for the same reason. A lock beside
``DST`` makes a second import into the same folder refuse while the first runs, and two source names
that map to one file name (``a b`` and ``a_b``) are both kept (``_2``), so the counts in the report
are the files on disk.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg_gui.core.atomic import temp_dir_beside
from medseg_gui.core.output_guard import (OutputRefused, check_not_overlapping, exclusive_lock, os_error_line,
                                         unique_name)

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
    try:
        check_not_overlapping(Path(destination), [Path(source)])
    except OutputRefused as exc:
        raise DatasetImportError(f"{exc} (imports only read their source)") from None
    dst = Path(destination)
    if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
        raise DatasetImportError(f"{destination}: already exists and is not a folder; choose a new folder")
    if dst.exists() and any(dst.iterdir()):
        raise DatasetImportError(f"{destination}: already exists and is not empty; "
                                 "choose a new folder (imports never overwrite a dataset)")


class StagedDataset:
    """Writes image/mask PNG pairs into a staging folder; ``commit()`` renames it to the destination.

    Used as a context manager: leaving the block without ``commit()`` (an error, a cancel) deletes
    the staging folder, so nothing half-written remains.
    """

    def __init__(self, destination: Path, class_names: list[str]) -> None:
        self.destination = Path(destination)
        self.class_names = list(class_names)
        self.pixels = np.zeros(256, dtype=np.int64)
        self.counts = {"train": 0, "valid": 0}
        self.renamed: list[str] = []  # "source: written as NAME (why)", reported as warnings
        self._names: set[str] = set()
        self._committed = False
        self._lock = contextlib.ExitStack()
        try:
            self.destination.parent.mkdir(parents=True, exist_ok=True)
            self._lock.enter_context(exclusive_lock(
                self.destination.parent / f".{self.destination.name}.import-lock", str(self.destination)))
            self.root = temp_dir_beside(self.destination)  # follows the umask, like the dataset will
            for split in ("train", "valid"):
                for sub in ("images", "masks"):
                    (self.root / split / sub).mkdir(parents=True)
        except OutputRefused as exc:
            self._lock.close()
            raise DatasetImportError(str(exc)) from None
        except OSError as exc:
            self._lock.close()
            raise DatasetImportError(os_error_line(exc, self.destination)) from None

    def __enter__(self) -> StagedDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if not self._committed:
                shutil.rmtree(self.root, ignore_errors=True)
        finally:
            self._lock.close()

    def write(self, split: str, name: str, image: np.ndarray, mask: np.ndarray, source: str = "") -> str:
        """Write ``NAME.png`` into ``split/images`` (uint8 grey/RGB) and ``split/masks`` (class ids).

        Returns the name used: ``NAME`` made file-name safe, with ``_2``, ``_3``… when an earlier item
        (either split, compared case-blind) already took it — never a silent replacement.
        """
        from PIL import Image

        if image.dtype != np.uint8 or mask.dtype != np.uint8:
            raise TypeError(f"{name}: importer must pass uint8 image and mask, got {image.dtype}/{mask.dtype}")
        if image.shape[:2] != mask.shape:
            raise ValueError(f"{name}: image {image.shape[:2]} and mask {mask.shape} differ in size")
        wanted = safe_name(name)
        final = unique_name(wanted, self._names)
        if final != wanted:
            self.renamed.append(f"{source or name}: written as {final}.png ('{wanted}' was already taken by "
                                "another item whose name maps to the same file name)")
        try:
            Image.fromarray(np.ascontiguousarray(image)).save(self.root / split / "images" / f"{final}.png",
                                                              compress_level=3)
            Image.fromarray(np.ascontiguousarray(mask)).save(self.root / split / "masks" / f"{final}.png",
                                                             compress_level=3)
        except OSError as exc:
            exc.filename = None  # the staging file means nothing to the user: name the destination
            raise DatasetImportError(os_error_line(exc, self.destination)) from None
        self._names.add(final)
        self.pixels += np.bincount(mask.ravel(), minlength=256)
        self.counts[split] += 1
        return final

    def class_pixels(self) -> dict[str, int]:
        used = int(np.nonzero(self.pixels)[0].max()) + 1 if self.pixels.any() else 0
        n = max(len(self.class_names), used)
        names = self.class_names + [f"class {k}" for k in range(len(self.class_names), n)]
        return {names[k]: int(self.pixels[k]) for k in range(n)}

    def commit(self, summary: ImportSummary) -> Path:
        """Finish the summary, write ``import_report.json``, and rename the staging folder into place."""
        summary.n_train, summary.n_valid = self.counts["train"], self.counts["valid"]
        if not summary.n_train + summary.n_valid:  # an empty "dataset" would only fail later, less clearly
            why = (f"all {len(summary.skipped)} item(s) were skipped (first: {summary.skipped[0]})"
                   if summary.skipped else "every slice was left out")
            raise DatasetImportError(f"{summary.source}: nothing could be imported; {why} — nothing was written")
        summary.class_pixels = self.class_pixels()
        summary.class_names = list(summary.class_pixels) or self.class_names
        summary.warnings += self.renamed
        try:
            (self.root / REPORT_NAME).write_text(json.dumps(summary.to_dict(), indent=2), encoding="utf-8")
            if self.destination.exists():  # empty folder (checked before): replace it
                if not self.destination.is_dir() or any(self.destination.iterdir()):
                    raise DatasetImportError(f"{self.destination}: something else was written there during the "
                                             "import; nothing was changed — choose a new folder")
                self.destination.rmdir()
            self.root.rename(self.destination)
        except OSError as exc:
            raise DatasetImportError(os_error_line(exc, self.destination)) from None
        self._committed = True
        return self.destination


def safe_name(text: str) -> str:
    """A file-name-safe version of a case/series name (letters, digits, ``-``, ``_``, ``.``)."""
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text.strip())
    return keep.strip("._") or "case"
