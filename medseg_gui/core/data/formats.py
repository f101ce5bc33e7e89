"""Dataset layouts on disk: find the image/mask pairs of a folder and split them into train/valid.

Two layouts are read directly (the ones users bring most; Kaggle/DICOM/NIfTI are imported
into the first one by ``core/data/kaggle.py`` and ``core/data/volume_import.py``):

* **split** — the tutorial's ``ROOT/{train,valid}/{images,masks}/NAME.ext`` (``val``/``validation``
  and ``training`` are accepted too). With no valid folder, ``train/`` is split like a flat folder.
* **flat** — ``ROOT/images/`` + ``ROOT/masks/`` (``labels/`` accepted for masks), any names that pair
  up; the app makes a deterministic split.

Pairing is by relative path without extension, after removing a mask suffix such as ``_mask``,
``-label``, ``_seg``, ``_gt`` (and an image suffix ``_image``/``_img``), so ``a/case1_s3.png`` pairs
with ``a/case1_s3_mask.png``. Sub-folders are allowed on both sides.

Case grouping for the split (:data:`CASE_RE`): a name that contains ``case``, ``patient``,
``subject``, ``pat`` or ``sub`` followed by digits (optionally after ``_``/``-``/space), not preceded
by a letter or digit, belongs to that case: ``case123_day20_slice_0001`` → ``case123``,
``Patient-07_t2_012`` → ``patient7``. Otherwise a file inside a sub-folder of ``images/`` belongs to
that top-level sub-folder (one folder per patient is a common export). Otherwise each file is its own
group. All slices of a group land in the same split, so validation never sees a patient it trained on
(the tutorial's own split leaks slices of one case across train and valid).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from medseg_gui.core.data.decode import IMAGE_EXTENSIONS, MASK_EXTENSIONS
from medseg_gui.core.data.demo import DEFAULT_SIZE, demo_dataset

TRAIN_DIRS = ("train", "training")
VALID_DIRS = ("valid", "val", "validation")
IMAGE_DIRS = ("images", "image", "imgs")
MASK_DIRS = ("masks", "mask", "labels", "label")

CASE_RE = re.compile(r"(?<![A-Za-z0-9])(case|patient|subject|pat|sub)[_\- ]?(\d+)", re.IGNORECASE)
MASK_SUFFIX_RE = re.compile(r"[_\-. ](mask|masks|label|labels|seg|segmentation|gt|annotation)$",
                            re.IGNORECASE)
IMAGE_SUFFIX_RE = re.compile(r"[_\-. ](image|img)$", re.IGNORECASE)


class DatasetLayoutError(ValueError):
    """The folder is not a dataset layout the app reads; the message says what was found and expected."""


@dataclass(frozen=True)
class Pair:
    """One training sample: an image file, its mask file, and the case it belongs to."""

    image: Path
    mask: Path
    key: str  # relative path without extension / mask suffix, e.g. "case1_slice3" or "p7/slice3"
    case: str  # group used for the split ("case1", "p7", or the key itself)


@dataclass
class DatasetIndex:
    """What :func:`index_dataset` found: the pairs of each split and the files that did not pair."""

    root: Path
    layout: str  # "split" or "flat"
    train: list[Pair]
    valid: list[Pair]
    images_without_mask: list[Path] = field(default_factory=list)
    masks_without_image: list[Path] = field(default_factory=list)
    duplicates: list[list[Path]] = field(default_factory=list)  # files that claim the same key
    ignored_files: list[Path] = field(default_factory=list)  # not image/mask extensions
    grouping: str = "given"  # "given", "case id in name", "sub-folder", "file"
    split_note: str = ""
    leaked_cases: list[str] = field(default_factory=list)  # cases in both given splits

    @property
    def pairs(self) -> list[Pair]:
        return self.train + self.valid


def case_id(key: str) -> str | None:
    """The case/patient id a file name carries (see :data:`CASE_RE`), normalised, or None."""
    name = key.rsplit("/", 1)[-1]
    m = CASE_RE.search(name) or CASE_RE.search(key)
    if not m:
        return None
    return f"{m.group(1).lower()}{int(m.group(2))}"


def _find_dir(parent: Path, names: tuple[str, ...]) -> Path | None:
    """The first existing sub-folder among ``names``, matched case-insensitively."""
    try:
        entries = {e.name.lower(): Path(e.path) for e in os.scandir(parent) if e.is_dir()}
    except OSError:
        return None
    for name in names:
        if name in entries:
            return entries[name]
    return None


def _scan(folder: Path, extensions: tuple[str, ...]) -> tuple[dict[str, Path], list[Path]]:
    """Relative key (posix, no extension) -> file, for every file with one of ``extensions``."""
    found: dict[str, Path] = {}
    ignored: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = os.path.relpath(dirpath, folder)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            stem, ext = os.path.splitext(name)
            path = Path(dirpath) / name
            if ext.lower() not in extensions:
                ignored.append(path)
                continue
            key = stem if rel_dir == "." else f"{Path(rel_dir).as_posix()}/{stem}"
            # The same stem with two extensions (a.png + a.jpg) is kept under a marked key so the
            # duplicate is reported instead of one file silently winning.
            while key in found:
                key += "\x00dup"
            found[key] = path
    return found, ignored


def _normalise(key: str, pattern: re.Pattern[str]) -> str:
    head, _, name = key.rpartition("/")
    name = pattern.sub("", name) or name
    return f"{head}/{name}" if head else name


def _pair_folder(images_dir: Path, masks_dir: Path):
    """Pair files of two folders by normalised key; also return what did not pair."""
    images, ignored_i = _scan(images_dir, IMAGE_EXTENSIONS)
    masks, ignored_m = _scan(masks_dir, MASK_EXTENSIONS)
    by_key_img: dict[str, list[Path]] = defaultdict(list)
    for key, path in images.items():
        by_key_img[_normalise(key.split("\x00")[0], IMAGE_SUFFIX_RE)].append(path)
    by_key_mask: dict[str, list[Path]] = defaultdict(list)
    for key, path in masks.items():
        by_key_mask[_normalise(key.split("\x00")[0], MASK_SUFFIX_RE)].append(path)
    pairs: list[tuple[str, Path, Path]] = []
    duplicates: list[list[Path]] = []
    for key in sorted(by_key_img):
        imgs = by_key_img[key]
        msks = by_key_mask.get(key, [])
        if len(imgs) > 1:
            duplicates.append(sorted(imgs))
        if len(msks) > 1:
            duplicates.append(sorted(msks))
        if len(imgs) == 1 and len(msks) == 1:
            pairs.append((key, imgs[0], msks[0]))
    images_without_mask = sorted(p for k, ps in by_key_img.items() if k not in by_key_mask for p in ps)
    masks_without_image = sorted(p for k, ps in by_key_mask.items() if k not in by_key_img for p in ps)
    return pairs, images_without_mask, masks_without_image, duplicates, ignored_i + ignored_m


def _group_of(key: str) -> tuple[str, str]:
    """(group, how) for a key: case id in the name, else top-level sub-folder, else the file."""
    cid = case_id(key)
    if cid:
        return cid, "case id in name"
    if "/" in key:
        return key.split("/", 1)[0], "sub-folder"
    return key, "file"


def _make_pairs(raw: list[tuple[str, Path, Path]]) -> tuple[list[Pair], str]:
    pairs = []
    hows = set()
    for key, img, msk in raw:
        group, how = _group_of(key)
        hows.add(how)
        pairs.append(Pair(image=img, mask=msk, key=key, case=group))
    # Report the strongest grouping that applied to any file ("file" only if nothing grouped).
    for how in ("case id in name", "sub-folder", "file"):
        if how in hows:
            return pairs, how
    return pairs, "file"


def split_pairs(pairs: list[Pair], val_fraction: float, seed: int) -> tuple[list[Pair], list[Pair], str]:
    """Deterministic grouped split: (train, valid, note).

    Groups are ordered by a hash of ``seed`` and the group name (not by the order files were found, and
    not by a global RNG), then taken for validation until their slices reach ``val_fraction`` of all
    pairs. Adding a new case therefore moves no existing case between splits unless it lands before it
    in hash order. At least one group goes to each side when there are two or more.
    """
    if not pairs:
        return [], [], "no pairs to split"
    groups: dict[str, list[Pair]] = defaultdict(list)
    for p in pairs:
        groups[p.case].append(p)
    note = f"{len(groups)} group(s)"
    if len(groups) < 2:
        # One patient only: a case-wise split is impossible, fall back to splitting its slices.
        groups = {p.key: [p] for p in pairs}
        note = "only one case found, so slices of it were split by file (validation shares the patient)"
    order = sorted(groups, key=lambda g: hashlib.sha1(f"{seed}:{g}".encode()).hexdigest())
    target = val_fraction * len(pairs)
    valid_groups: list[str] = []
    taken = 0
    for g in order[:-1]:  # keep at least one group for training
        if taken >= target and valid_groups:
            break
        # Stop before a group that would overshoot the target by more than it undershoots.
        if valid_groups and taken + len(groups[g]) - target > target - taken:
            break
        valid_groups.append(g)
        taken += len(groups[g])
    valid_set = set(valid_groups)
    train = sorted((p for g, ps in groups.items() if g not in valid_set for p in ps), key=lambda p: p.key)
    valid = sorted((p for g in valid_groups for p in groups[g]), key=lambda p: p.key)
    if len(groups) >= 2 and not note.startswith("only"):
        note = f"{len(valid_groups)} of {len(groups)} groups held out for validation ({taken} slices)"
    return train, valid, note


def detect_layout(root: str | Path) -> str:
    """"split" or "flat"; raises :class:`DatasetLayoutError` saying what the folder holds instead."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetLayoutError(f"{root}: folder does not exist")
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: is a file, not a dataset folder")
    train = _find_dir(root, TRAIN_DIRS)
    if train and _find_dir(train, IMAGE_DIRS) and _find_dir(train, MASK_DIRS):
        return "split"
    if _find_dir(root, IMAGE_DIRS) and _find_dir(root, MASK_DIRS):
        return "flat"
    try:
        seen = sorted(e.name + ("/" if e.is_dir() else "") for e in os.scandir(root))[:12]
    except OSError as exc:
        raise DatasetLayoutError(f"{root}: cannot be listed ({exc.strerror or exc})") from None
    hint = ""
    if any(s.lower() == "train.csv" for s in seen):
        hint = " It looks like the raw Kaggle layout: convert it with medseg data import --from kaggle (or File → New training wizard)."
    raise DatasetLayoutError(
        f"{root}: not a dataset layout. Expected train/images + train/masks (+ valid/images + "
        f"valid/masks), or images/ + masks/. Found: {', '.join(seen) or 'nothing'}.{hint}")


def index_dataset(root: str | Path, val_fraction: float = 0.2, seed: int = 42) -> DatasetIndex:
    """Find every pair under ``root`` and the train/valid split (given, or made by case)."""
    root = Path(root).expanduser()
    layout = detect_layout(root)
    if layout == "split":
        train_dir = _find_dir(root, TRAIN_DIRS)
        assert train_dir is not None
        raw_t, miss_i, miss_m, dups, ignored = _pair_folder(_find_dir(train_dir, IMAGE_DIRS),
                                                            _find_dir(train_dir, MASK_DIRS))
        train_pairs, grouping = _make_pairs(raw_t)
        valid_dir = _find_dir(root, VALID_DIRS)
        if valid_dir and _find_dir(valid_dir, IMAGE_DIRS) and _find_dir(valid_dir, MASK_DIRS):
            raw_v, mi, mm, d, ig = _pair_folder(_find_dir(valid_dir, IMAGE_DIRS), _find_dir(valid_dir, MASK_DIRS))
            valid_pairs, _ = _make_pairs(raw_v)
            miss_i, miss_m, dups, ignored = miss_i + mi, miss_m + mm, dups + d, ignored + ig
            leaked = sorted({p.case for p in train_pairs} & {p.case for p in valid_pairs}) \
                if grouping != "file" else []
            return DatasetIndex(root, "split", train_pairs, valid_pairs, miss_i, miss_m, dups, ignored,
                                grouping="given", split_note=f"split given by the folders {train_dir.name}/ "
                                f"and {valid_dir.name}/", leaked_cases=leaked)
        train, valid, note = split_pairs(train_pairs, val_fraction, seed)
        return DatasetIndex(root, "split", train, valid, miss_i, miss_m, dups, ignored, grouping=grouping,
                            split_note=f"no valid/ folder: {train_dir.name}/ split by {grouping}; {note}")
    raw, miss_i, miss_m, dups, ignored = _pair_folder(_find_dir(root, IMAGE_DIRS), _find_dir(root, MASK_DIRS))
    pairs, grouping = _make_pairs(raw)
    train, valid, note = split_pairs(pairs, val_fraction, seed)
    return DatasetIndex(root, "flat", train, valid, miss_i, miss_m, dups, ignored, grouping=grouping,
                        split_note=f"split by {grouping}; {note}")


def resolve_dataset_path(path: str, image_size: int | None = None) -> Path:
    """A dataset folder from ``DatasetConfig.path``; ``"demo"`` means the cached built-in dataset."""
    if path.strip().lower() == "demo":
        return demo_dataset(size=demo_size_for(image_size))
    return Path(path).expanduser()


def demo_size_for(image_size: int | None) -> int:
    """Generate the demo at the training size (no resize in the loader), within sane bounds."""
    if not image_size:
        return DEFAULT_SIZE
    return int(min(max(image_size, 64), 512))
