"""Model bundle: the folder a trained model travels in (viewer, ``medseg predict``, sharing).

``model.safetensors`` (SegFormer state dict: no code runs on load), ``config.json`` (the HF
``SegformerConfig``), ``medseg.json`` (format, variant, image size, classes, colours, provenance).
Written into a temp folder beside the destination and renamed into place, so a reader never sees a
half-written bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg_gui.core import runs
from medseg_gui.core.atomic import temp_dir_beside, umask_mode
from medseg_gui.core.config import RunConfig
from medseg_gui.core.engine.model import ModelSourceError, load_with_config, mismatch_text
from medseg_gui.core.output_guard import OutputRefused, check_folder_target, is_empty_folder, is_our_output
from medseg_gui.core.runs import BUNDLE_META_FILE

if TYPE_CHECKING:  # pragma: no cover
    from transformers import SegformerForSemanticSegmentation

BUNDLE_FORMAT = 1
WEIGHTS_FILE = "model.safetensors"
HF_CONFIG_FILE = "config.json"
# A side a model can be fed at (px): 4x the largest training size. Beyond it one slice alone would
# need tens of GB; a larger value in medseg.json is damage, not a choice.
MAX_IMAGE_SIZE = 8192
BUNDLE_FILES = (WEIGHTS_FILE, HF_CONFIG_FILE, BUNDLE_META_FILE)  # all a bundle holds


class BundleError(ValueError):
    """A bundle that cannot be loaded; the message names the file and the problem."""


@dataclass
class BundleInfo:
    path: Path
    variant: str
    image_size: int
    num_classes: int
    class_names: list[str]
    class_colors: list[str]
    in_channels_hint: int = 3
    created: str = ""
    source_run: str | None = None
    format: int = BUNDLE_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # found while loading: NaN weights, fp16 converted


def save_bundle(model: Any, config: RunConfig, dst: str | Path, *, source_run: str | Path | None = None,
                in_channels_hint: int = 3) -> Path:
    """Write ``model`` (a SegformerForSemanticSegmentation) and its metadata to the folder ``dst``.

    ``in_channels_hint`` records whether the training images were grey (1) or RGB (3); the model
    itself always takes 3 channels (``to_model_input`` repeats grey).
    """
    from safetensors.torch import save_file

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds = config.dataset
    meta = {
        "format": BUNDLE_FORMAT, "variant": config.training.variant, "image_size": ds.image_size,
        "num_classes": ds.num_classes, "class_names": list(ds.class_names),
        "class_colors": list(ds.class_colors), "in_channels_hint": int(in_channels_hint),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source_run": str(source_run) if source_run is not None else None,
    }
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    tmp = temp_dir_beside(dst)  # follows the umask: the bundle is shared with colleagues
    try:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        os.chmod(tmp / WEIGHTS_FILE, umask_mode())  # safetensors writes 0600; colleagues must read it
        model.config.to_json_file(str(tmp / HF_CONFIG_FILE))
        (tmp / BUNDLE_META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        _replace_dir(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def is_bundle_export(folder: str | Path) -> bool:
    """An earlier bundle of ours (``--force`` may replace it): a ``medseg.json`` that reads back as our
    metadata, and nothing but the bundle files beside it — a run, a dataset or a folder holding
    anything else is never taken for one."""
    return is_our_output(Path(folder), BUNDLE_META_FILE, BUNDLE_FILES,
                         lambda meta: "format" in meta and "variant" in meta and "num_classes" in meta)


def check_bundle_destination(dst: str | Path, *, force: bool, sources: tuple[Path, ...] = ()) -> None:
    """Refuse (``OutputRefused``) a bundle destination that exists (without ``force``), is not an earlier
    export (even with ``force``), is a training run's own bundle, or overlaps ``sources`` (the run or
    bundle being exported)."""

    dst = Path(dst).expanduser()
    parent = dst.resolve().parent
    if runs.is_run_dir(parent) and dst.exists():
        raise OutputRefused(f"{dst}: is the model bundle of the training run {parent}; an export never replaces "
                            "a run's files — choose a new folder")
    check_folder_target(Path(dst), force=force, is_ours=is_bundle_export, ours_name="model export",
                        sources=sources, ours_files=BUNDLE_FILES)


def copy_bundle(bundle: str | Path, dst: str | Path) -> Path:
    """Copy the bundle files of ``bundle`` to the folder ``dst`` (staged beside it, renamed into place)."""
    bundle, dst = Path(bundle), Path(dst)
    tmp = temp_dir_beside(dst)  # follows the umask: colleagues can read the export
    try:
        for name in BUNDLE_FILES:
            if (bundle / name).is_file():
                shutil.copyfile(bundle / name, tmp / name)  # contents only: modes follow the umask
        _replace_dir(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def _replace_dir(new: Path, dst: Path) -> None:
    """Move ``new`` to ``dst``; an existing ``dst`` is moved aside first and removed after — only when it
    is an earlier bundle of ours: anything else there is refused, never deleted."""
    old = None
    if dst.exists() or dst.is_symlink():
        if not (is_bundle_export(dst) or is_empty_folder(dst)):
            raise OutputRefused(f"{dst}: exists and is not an earlier model export; it was left untouched — "
                                "choose a new folder for the bundle")
        old = dst.with_name(f".{dst.name}.old-{time.time_ns()}")
        dst.rename(old)
    try:
        new.rename(dst)
    except BaseException:
        if old is not None:
            old.rename(dst)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_bundle_info(path: str | Path) -> BundleInfo:
    """Only ``medseg.json`` (cheap: no torch), for listing bundles in the GUI."""
    folder = _bundle_folder(path)
    meta_path = folder / BUNDLE_META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{folder} is not a model bundle: {BUNDLE_META_FILE} is missing") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"{meta_path} cannot be read: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{meta_path}: unsupported bundle format {meta.get('format') if isinstance(meta, dict) else meta!r}"
                          f" (this version reads format {BUNDLE_FORMAT})")
    try:
        known = {"format", "variant", "image_size", "num_classes", "class_names", "class_colors",
                 "in_channels_hint", "created", "source_run"}
        info = BundleInfo(path=folder, variant=str(meta["variant"]), image_size=int(meta["image_size"]),
                          num_classes=int(meta["num_classes"]), class_names=list(meta["class_names"]),
                          class_colors=list(meta["class_colors"]),
                          in_channels_hint=int(meta.get("in_channels_hint", 3)),
                          created=str(meta.get("created", "")), source_run=meta.get("source_run"),
                          extra={k: v for k, v in meta.items() if k not in known})
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{meta_path}: missing or invalid field {exc}") from None
    if not 1 <= info.image_size <= MAX_IMAGE_SIZE:
        raise BundleError(f"{meta_path}: image_size {info.image_size} is impossible (expected 1 to "
                          f"{MAX_IMAGE_SIZE} px) — the file is damaged; export the model again from its run")
    if not 1 <= info.num_classes <= 255:
        raise BundleError(f"{meta_path}: num_classes {info.num_classes} is impossible (expected 1 to 255) — "
                          "the file is damaged; export the model again from its run")
    return info


def _bundle_folder(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if path.is_file() and path.name in (WEIGHTS_FILE, BUNDLE_META_FILE, HF_CONFIG_FILE):
        return path.parent
    if not path.exists():
        raise BundleError(f"model bundle {path} does not exist")
    return path


def load_bundle(path: str | Path, device: str = "cpu") -> tuple["SegformerForSemanticSegmentation", BundleInfo]:
    """The model (eval mode) and its metadata. Every weight must be present and fit the config.

    Loaded through ``from_pretrained`` on the bundle folder, so transformers' key renaming keeps
    bundles written by other transformers versions readable.
    """
    from transformers import SegformerConfig

    info = read_bundle_info(path)
    folder = info.path
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise BundleError(f"{folder} is not a complete model bundle: {WEIGHTS_FILE} is missing")
    try:
        hf_config = SegformerConfig.from_json_file(str(folder / HF_CONFIG_FILE))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{folder / HF_CONFIG_FILE} cannot be read: {exc}") from None
    try:
        # ignore_mismatched_sizes: transformers then lists every wrong-shaped tensor instead of raising
        # its own multi-page report; the bundle is still refused below, naming the first few.
        model, loading = load_with_config(hf_config, weights, ignore_mismatched_sizes=True)
    except ModelSourceError as exc:
        raise BundleError(f"{weights} does not match {HF_CONFIG_FILE} or cannot be read: "
                          f"{exc.__cause__ or exc}") from None
    mismatched = [k for k in loading.get("mismatched_keys", ()) if isinstance(k, tuple) and len(k) == 3]
    if mismatched:
        raise BundleError(f"{weights} does not match {HF_CONFIG_FILE}: {len(mismatched)} tensor(s) of the wrong "
                          f"shape — {mismatch_text(mismatched)}")
    missing = sorted(loading.get("missing_keys", ()))
    if missing:
        raise BundleError(f"{weights} does not match {HF_CONFIG_FILE}: {len(missing)} tensor(s) missing "
                          f"(first: {', '.join(missing[:3])})")
    if hf_config.num_labels != info.num_classes:
        raise BundleError(f"{folder}: {BUNDLE_META_FILE} says {info.num_classes} classes but the model has "
                          f"{hf_config.num_labels}")
    info.warnings.extend(loading.get("notes", ()))
    return model.to(device).eval(), info
