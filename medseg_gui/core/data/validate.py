"""The dataset validation report, run before any training (``medseg data check``, the wizard's data step).

It answers: how many pairs each split has, what sizes and modes the images are, which classes appear
and how much of the pixels they cover, and which files are bad and why (no partner, unreadable,
truncated, image/mask size mismatch, mask values outside ``0..num_classes-1``, colour masks). It then
says whether training can go ahead by skipping the bad pairs, or not. It only reads: the source folder
is never changed.

Speed on 10 000+ files: image sizes and modes come from the file header (PIL opens lazily), image
truncation from the file's last bytes (PNG ``IEND`` / JPEG ``EOI`` marker) instead of a full decode;
masks must be decoded to check their values, which runs in a thread pool (PNG decoding releases the
GIL). ``mask_sample`` limits the decoded masks to a random sample — the report then says so.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg_gui.core.config import DEFAULT_CLASS_NAMES
from medseg_gui.core.data.decode import DecodeError, read_image, read_mask
from medseg_gui.core.data.demo import CLASS_NAMES, DEFAULT_N
from medseg_gui.core.data.formats import (DatasetIndex, DatasetLayoutError, Pair, index_dataset,
                                          resolve_dataset_path)
from medseg_gui.core.data.summary import DatasetSummary
from medseg_gui.core.imaging.images import too_many_pixels
from medseg_gui.core.output_guard import not_a_regular_file

GREY_MODES = {"L", "I;16", "I;16B", "I;16L", "I;16N", "I", "1", "F", "LA"}
COLOUR_MODES = {"RGB", "RGBA", "P", "CMYK", "YCbCr", "PA", "RGBX", "LAB", "HSV"}
MASK_OK_MODES = {"L", "P", "I;16", "I;16B", "I;16L", "I;16N", "I", "1"}
HIGH_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}
PNG_END = b"IEND\xaeB`\x82"
MAX_BAD_SHARE = 0.5  # above this share of bad pairs the problem is systematic: refuse to train


@dataclass
class Problem:
    """One bad file: which, what kind of problem, and a sentence saying what is wrong and what to do."""

    path: str
    kind: str  # missing_mask, missing_image, duplicate, empty, unreadable, truncated, size_mismatch,
    #            mask_values, rgb_mask, mask_mode
    message: str
    split: str = ""
    key: str = ""  # the pair skipped because of it ("" when no pair was formed)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class ValidationReport:
    root: str
    layout: str
    num_classes: int
    class_names: list[str]
    split_note: str
    pairs_found: dict[str, int]
    pairs_usable: dict[str, int]
    image_sizes: dict[str, int]
    mask_sizes: dict[str, int]
    image_modes: dict[str, int]
    image_channels: int  # what the loader will ship: 1 (grey) or 3 (colour)
    class_pixels: list[int]  # over the decoded, usable masks
    class_masks: list[int]  # number of decoded masks in which each class appears
    masks_checked: int
    masks_total: int
    mask_values_sampled: bool
    problems: list[Problem]
    warnings: list[str]
    can_train: bool
    verdict: str
    elapsed_s: float
    bad_keys: dict[str, list[str]] = field(default_factory=dict)  # split -> keys of skipped pairs
    index: DatasetIndex | None = field(default=None, repr=False, compare=False)

    @property
    def class_share(self) -> list[float]:
        total = sum(self.class_pixels)
        return [c / total if total else 0.0 for c in self.class_pixels]

    def usable_pairs(self, split: str) -> list[Pair]:
        """The pairs of ``split`` that training may use (bad ones removed)."""
        if self.index is None:
            raise RuntimeError("this report was loaded without its dataset index; re-run the check")
        bad = set(self.bad_keys.get(split, []))
        pairs = self.index.train if split == "train" else self.index.valid
        return [p for p in pairs if p.key not in bad]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("index", None)
        data["class_share"] = self.class_share
        return data

    def to_text(self, max_problems: int = 40) -> str:
        lines = [f"Dataset: {self.root}", f"Layout:  {self.layout} ({self.split_note})"]
        lines.append("Pairs:   " + ", ".join(
            f"{s} {self.pairs_found.get(s, 0)} ({self.pairs_usable.get(s, 0)} usable)" for s in ("train", "valid")))
        lines.append("Image sizes: " + _fmt_counts(self.image_sizes))
        if self.mask_sizes and self.mask_sizes != self.image_sizes:
            lines.append("Mask sizes:  " + _fmt_counts(self.mask_sizes))
        lines.append("Image modes: " + _fmt_counts(self.image_modes)
                     + f" -> the loader ships {self.image_channels} channel(s)")
        sample = " (random sample)" if self.mask_values_sampled else ""
        lines.append(f"Classes (pixel share over {self.masks_checked} of {self.masks_total} masks decoded{sample}):")
        for i, (share, n_masks) in enumerate(zip(self.class_share, self.class_masks)):
            name = self.class_names[i] if i < len(self.class_names) else f"class_{i}"
            lines.append(f"  {i:>3} {name:<16} {100 * share:6.2f} %   in {n_masks} mask(s)")
        if self.problems:
            by_kind = Counter(p.kind for p in self.problems)
            lines.append(f"Problems ({len(self.problems)}: "
                         + ", ".join(f"{k} {n}" for k, n in by_kind.most_common()) + "):")
            for p in self.problems[:max_problems]:
                lines.append(f"  - {p}")
            if len(self.problems) > max_problems:
                lines.append(f"  ... and {len(self.problems) - max_problems} more (use --json for all)")
        else:
            lines.append("Problems: none")
        for w in self.warnings:
            lines.append(f"Warning: {w}")
        lines.append(("OK: " if self.can_train else "CANNOT TRAIN: ") + self.verdict)
        lines.append(f"Checked in {self.elapsed_s:.2f} s")
        return "\n".join(lines)


def _fmt_counts(counts: dict[str, int], limit: int = 6) -> str:
    items = sorted(counts.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{k} x{v}" for k, v in items[:limit])
    if len(items) > limit:
        text += f", ... ({len(items) - limit} more)"
    return text or "none"


def _rel(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _header(path: Path) -> tuple[tuple[int, int] | None, str, str]:
    """((width, height), mode, error) from the file header only; error is '' when readable."""
    import warnings

    from PIL import Image, UnidentifiedImageError


    problem = not_a_regular_file(path)  # before opening: a FIFO would block the check
    if problem:
        return None, "", f"unreadable:{problem}; remove it from the folder"
    try:
        if path.stat().st_size == 0:
            return None, "", "empty:file is empty (0 bytes); re-export it"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                size, mode = im.size, im.mode
        bomb = too_many_pixels(*size)
        if bomb:
            return None, "", f"too_large:{bomb}; downscale or crop it, or remove it"
        return size, mode, ""
    except Image.DecompressionBombError:
        return None, "", ("too_large:image is over the decoding safety limit (a possible decompression bomb); "
                          "downscale or crop it, or remove it")
    except UnidentifiedImageError:
        return None, "", "unreadable:not an image format that can be read (wrong extension or corrupt header)"
    except OSError as exc:
        return None, "", f"unreadable:cannot be read ({exc.strerror or exc})"
    except Exception as exc:  # PIL raises assorted errors on corrupt headers
        return None, "", f"unreadable:corrupt header ({type(exc).__name__}: {exc})"


def _truncated(path: Path) -> bool:
    """Cheap end-of-file check for PNG and JPEG; other formats are not checked without a decode."""
    ext = path.suffix.lower()
    if ext not in (".png", ".jpg", ".jpeg"):
        return False
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 32))
            tail = fh.read()
    except OSError:
        return True
    if ext == ".png":
        return PNG_END not in tail
    return b"\xff\xd9" not in tail[-16:]


@dataclass
class _PairResult:
    image_size: tuple[int, int] | None = None
    image_mode: str = ""
    mask_size: tuple[int, int] | None = None
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (path kind, kind, message)
    counts: np.ndarray | None = None
    decoded: bool = False
    grey_rgb_mask: bool = False


def _check_pair(pair: Pair, num_classes: int, decode_mask: bool, decode_image: bool) -> _PairResult:
    res = _PairResult()
    size, mode, err = _header(pair.image)
    if err:
        kind, msg = err.split(":", 1)
        res.problems.append(("image", kind, msg))
    else:
        res.image_size, res.image_mode = size, mode
        if decode_image:
            try:
                read_image(pair.image)
            except DecodeError as exc:
                res.problems.append(("image", "truncated", f"cannot be decoded ({str(exc).split(': ', 1)[-1]})"))
        elif _truncated(pair.image):
            res.problems.append(("image", "truncated",
                                 "file is truncated (no end-of-image marker); re-export or re-copy it"))
    msize, mmode, merr = _header(pair.mask)
    if merr:
        kind, msg = merr.split(":", 1)
        res.problems.append(("mask", kind, msg))
        return res
    res.mask_size = msize
    if res.image_size and msize != res.image_size:
        res.problems.append(("mask", "size_mismatch",
                             f"mask is {msize[0]}x{msize[1]} but its image is "
                             f"{res.image_size[0]}x{res.image_size[1]}; masks must match their image"))
    if mmode == "F":
        res.problems.append(("mask", "mask_mode", "mask holds floating-point values; save class ids as "
                                                  "8-bit integers (0..N-1)"))
        return res
    colour = mmode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
    if mmode not in MASK_OK_MODES and not colour:
        res.problems.append(("mask", "mask_mode", f"mask mode {mmode} is not a class-id image; save it as "
                                                  "8-bit single-channel PNG"))
        return res
    if not (decode_mask or colour):
        if _truncated(pair.mask):
            res.problems.append(("mask", "truncated", "file is truncated (no end-of-image marker)"))
        return res
    try:
        arr = read_mask(pair.mask)
    except DecodeError as exc:
        reason = str(exc).split(": ", 1)[-1]
        kind = "truncated" if "truncated" in reason.lower() else "unreadable"
        res.problems.append(("mask", kind, f"cannot be decoded ({reason}); re-export it"))
        return res
    if arr.ndim == 3:
        chans = arr[..., :3]
        if (chans == chans[..., :1]).all():
            arr = chans[..., 0]
            res.grey_rgb_mask = True
        else:
            res.problems.append(("mask", "rgb_mask",
                                 "mask is an RGB colour image; masks must be single-channel class ids "
                                 "0..N-1 (convert each colour to its class id, or import the folder)"))
            return res
    res.decoded = True
    vmax = int(arr.max()) if arr.size else 0
    if vmax >= num_classes or (arr.dtype.kind == "i" and arr.size and int(arr.min()) < 0):
        values = np.unique(arr)
        bad = [int(v) for v in values if v < 0 or v >= num_classes]
        shown = ", ".join(str(v) for v in bad[:8]) + (" ..." if len(bad) > 8 else "")
        hint = ""
        if set(int(v) for v in values) <= {0, 255}:
            hint = (" (looks like a 0/255 binary mask: the command medseg data import --from flat SRC NEW_FOLDER "
                    "copies the dataset with 255 written as class 1)")
        elif bad and max(bad) < 256 and len(values) <= 255:
            hint = f" (set the number of classes to at least {max(bad) + 1} if these are real classes)"
        res.problems.append(("mask", "mask_values",
                             f"mask values {shown} are outside 0..{num_classes - 1}{hint}"))
        return res
    res.counts = np.bincount(arr.reshape(-1).astype(np.int64, copy=False), minlength=num_classes)[:num_classes]
    return res


def _decide_channels(colour_images: list[Path]) -> tuple[int, str]:
    """1 when every colour image checked is grey stored as RGB (the tutorial's PNGs are), else 3."""
    if not colour_images:
        return 1, ""
    sample = colour_images[:: max(1, len(colour_images) // 16)][:16]
    for path in sample:
        try:
            img = read_image(path, channels=3)
        except DecodeError:
            continue
        if not ((img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()):
            return 3, (f"{len(colour_images)} colour image(s) (e.g. {path.name}); the model gets 3 channels")
    return 1, (f"{len(colour_images)} image(s) are stored as RGB but hold grey values (checked "
               f"{len(sample)}); they are read as one grey channel")


def validate_dataset(source: str | Path | DatasetIndex, num_classes: int = 4, *,
                     class_names: list[str] | None = None, val_fraction: float = 0.2, seed: int = 42,
                     mask_sample: int | None = None, decode_images: bool = False,
                     workers: int | None = None) -> ValidationReport:
    """Check a dataset folder (or an index of one) and say whether training can go ahead.

    ``mask_sample``: decode at most this many masks (a seeded random sample) instead of all; the
    rest only get header checks. ``decode_images``: fully decode images too (slower; catches
    corruption inside files that end correctly).
    """
    start = time.perf_counter()
    index = source if isinstance(source, DatasetIndex) else index_dataset(source, val_fraction, seed)
    root = index.root
    names = list(class_names or [])
    problems: list[Problem] = []
    warnings: list[str] = []

    for path in index.images_without_mask:
        problems.append(Problem(_rel(root, path), "missing_mask",
                                "image has no mask with the same name in the masks folder (expected the "
                                "same name, optionally with a _mask suffix); it is skipped"))
    for path in index.masks_without_image:
        problems.append(Problem(_rel(root, path), "missing_image",
                                "mask has no image with the same name in the images folder; it is skipped"))
    for group in index.duplicates:
        problems.append(Problem(_rel(root, group[0]), "duplicate",
                                f"{len(group)} files claim the same name ("
                                + ", ".join(_rel(root, p) for p in group)
                                + "); keep one of them - the pair is skipped"))

    jobs: list[tuple[str, Pair]] = [("train", p) for p in index.train] + [("valid", p) for p in index.valid]
    decode_set: set[int] | None = None
    if mask_sample is not None and mask_sample < len(jobs):
        decode_set = set(random.Random(seed).sample(range(len(jobs)), max(0, mask_sample)))
    n_workers = workers or min(8, 2 * (os.cpu_count() or 1))

    def run(i: int) -> _PairResult:
        _, pair = jobs[i]
        return _check_pair(pair, num_classes, decode_set is None or i in decode_set, decode_images)

    if n_workers > 1 and len(jobs) > 64:
        with ThreadPoolExecutor(n_workers) as pool:
            results = list(pool.map(run, range(len(jobs)), chunksize=64))
    else:
        results = [run(i) for i in range(len(jobs))]

    image_sizes: Counter[str] = Counter()
    mask_sizes: Counter[str] = Counter()
    image_modes: Counter[str] = Counter()
    class_pixels = np.zeros(num_classes, dtype=np.int64)
    class_masks = np.zeros(num_classes, dtype=np.int64)
    bad_keys: dict[str, list[str]] = {"train": [], "valid": []}
    colour_images: list[Path] = []
    high_bit = 0
    grey_rgb_masks = 0
    decoded = 0
    for (split, pair), res in zip(jobs, results):
        if res.image_size:
            image_sizes[f"{res.image_size[0]}x{res.image_size[1]}"] += 1
            image_modes[res.image_mode] += 1
            if res.image_mode in COLOUR_MODES:
                colour_images.append(pair.image)
            if res.image_mode in HIGH_BIT_MODES:
                high_bit += 1
        if res.mask_size:
            mask_sizes[f"{res.mask_size[0]}x{res.mask_size[1]}"] += 1
        grey_rgb_masks += res.grey_rgb_mask
        decoded += res.decoded
        if res.problems:
            bad_keys[split].append(pair.key)
            for which, kind, msg in res.problems:
                path = pair.image if which == "image" else pair.mask
                problems.append(Problem(_rel(root, path), kind, f"{msg}; pair skipped", split, pair.key))
        elif res.counts is not None:
            class_pixels += res.counts
            class_masks += res.counts > 0

    found = {"train": len(index.train), "valid": len(index.valid)}
    usable = {s: found[s] - len(bad_keys[s]) for s in found}
    channels, channel_note = _decide_channels(colour_images)
    if channel_note:
        warnings.append(channel_note)
    if high_bit:
        warnings.append(f"{high_bit} image(s) are 16-bit or float; each is windowed to 8 bits "
                        "(0.5-99.5 percentile) when loaded")
    if grey_rgb_masks:
        warnings.append(f"{grey_rgb_masks} mask(s) are stored as RGB with identical channels; the first "
                        "channel is used as class ids")
    if index.leaked_cases:
        shown = ", ".join(index.leaked_cases[:5]) + (" ..." if len(index.leaked_cases) > 5 else "")
        warnings.append(f"{len(index.leaked_cases)} case(s) have slices in both train and valid ({shown}); "
                        "validation scores will be optimistic. A flat images/ + masks/ folder gets a "
                        "case-wise split")
    if index.ignored_files:
        shown = ", ".join(_rel(root, p) for p in index.ignored_files[:3])
        warnings.append(f"{len(index.ignored_files)} file(s) with other extensions were ignored (e.g. {shown})")
    jpeg_masks = sum(1 for p in index.pairs if p.mask.suffix.lower() in (".jpg", ".jpeg"))
    if jpeg_masks:
        warnings.append(f"{jpeg_masks} mask(s) are JPEG; lossy compression changes class ids at edges - "
                        "save masks as PNG")
    if len(image_sizes) > 1:
        warnings.append(f"{len(image_sizes)} different image sizes; all are resized to the training size")

    total_found = found["train"] + found["valid"]
    bad_total = total_found - usable["train"] - usable["valid"]
    reasons: list[str] = []
    if total_found == 0:
        reasons.append("no image/mask pairs were found")
    else:
        if usable["train"] == 0:
            reasons.append("no usable training pairs")
        if usable["valid"] == 0:
            reasons.append("no usable validation pairs (a split needs at least two pairs)")
        if bad_total > MAX_BAD_SHARE * total_found:
            kinds = Counter(p.kind for p in problems if p.key)
            reasons.append(f"{bad_total} of {total_found} pairs are bad (mostly {kinds.most_common(1)[0][0]}), "
                           "which points to a systematic problem; fix the dataset or the number of classes")
        if class_pixels.sum() and class_pixels[1:].sum() == 0:
            reasons.append("every decoded mask is background only (class 0); there is nothing to learn")
    can_train = not reasons
    if can_train:
        verdict = f"training can go ahead with {usable['train']} training and {usable['valid']} validation pairs"
        if bad_total:
            verdict += f"; {bad_total} bad pair(s) will be skipped"
        unpaired = len(index.images_without_mask) + len(index.masks_without_image)
        if unpaired:
            verdict += f"; {unpaired} unpaired file(s) ignored"
    else:
        verdict = "; ".join(reasons)
    missing = [i for i in range(1, num_classes) if class_masks[i] == 0]
    if class_pixels.sum() and missing and can_train:
        warnings.append("class(es) " + ", ".join(
            (names[i] if i < len(names) else str(i)) for i in missing) + " never appear in the decoded masks")
    if len(names) != num_classes:
        names = ["background"] + [f"class_{i}" for i in range(1, num_classes)]

    return ValidationReport(
        root=str(root), layout=index.layout, num_classes=num_classes, class_names=names,
        split_note=index.split_note, pairs_found=found, pairs_usable=usable,
        image_sizes=dict(image_sizes), mask_sizes=dict(mask_sizes), image_modes=dict(image_modes),
        image_channels=channels, class_pixels=[int(v) for v in class_pixels],
        class_masks=[int(v) for v in class_masks], masks_checked=decoded, masks_total=len(jobs),
        mask_values_sampled=decode_set is not None, problems=problems, warnings=warnings,
        can_train=can_train, verdict=verdict, elapsed_s=round(time.perf_counter() - start, 3),
        bad_keys=bad_keys, index=index)


def summary_for_recommendation(path: str, mask_sample: int = 200) -> tuple[DatasetSummary | None, str | None]:
    """``(DatasetSummary, None)`` for the recommender, or ``(None, problem)``.

    The class count is read from the data: the largest mask value in a sample of masks, plus one
    (checked against 256 classes, so nothing is rejected for being "out of range" here). The image
    size is the median longer side.
    """

    if path.strip().lower() == "demo":  # generated at the training size: any size fits
        return DatasetSummary(num_classes=len(CLASS_NAMES), image_size=None,
                              train_images=round(DEFAULT_N * 0.8), class_names=list(CLASS_NAMES)), None
    try:
        report = validate_dataset(resolve_dataset_path(path), 256, mask_sample=mask_sample)
    except DatasetLayoutError as exc:
        return None, str(exc)
    present = [i for i, n in enumerate(report.class_masks) if n > 0]
    if not report.can_train or not present:
        return None, f"{report.root}: {report.verdict}"
    sides = sorted(max(int(v) for v in k.split("x")) for k, n in report.image_sizes.items() for _ in range(n))
    num_classes = max(2, present[-1] + 1)
    names = None
    if num_classes == len(DEFAULT_CLASS_NAMES):
        names = list(DEFAULT_CLASS_NAMES)
    return DatasetSummary(num_classes=num_classes, image_size=sides[len(sides) // 2] if sides else None,
                          train_images=report.pairs_usable["train"], class_names=names), None
