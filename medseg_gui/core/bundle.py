"""Model bundle: the folder a trained model travels in (viewer, ``medseg predict``, sharing).

``model.safetensors`` (SegFormer state dict: no code runs on load), ``config.json`` (the HF
``SegformerConfig``), ``medseg.json`` (format, variant, image size, classes, colours, provenance).
Written into a temp folder beside the destination and renamed into place, so a reader never sees a
half-written bundle.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg_gui.core.config import RunConfig

if TYPE_CHECKING:  # pragma: no cover
    from transformers import SegformerForSemanticSegmentation

BUNDLE_FORMAT = 1
WEIGHTS_FILE = "model.safetensors"
HF_CONFIG_FILE = "config.json"
META_FILE = "medseg.json"


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
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        model.config.to_json_file(str(tmp / HF_CONFIG_FILE))
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        _replace_dir(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def _replace_dir(new: Path, dst: Path) -> None:
    """Move ``new`` to ``dst``; an existing ``dst`` is moved aside first and removed after."""
    old = None
    if dst.exists():
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
    meta_path = folder / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{folder} is not a model bundle: {META_FILE} is missing") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"{meta_path} cannot be read: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{meta_path}: unsupported bundle format {meta.get('format') if isinstance(meta, dict) else meta!r}"
                          f" (this version reads format {BUNDLE_FORMAT})")
    try:
        known = {"format", "variant", "image_size", "num_classes", "class_names", "class_colors",
                 "in_channels_hint", "created", "source_run"}
        return BundleInfo(path=folder, variant=str(meta["variant"]), image_size=int(meta["image_size"]),
                          num_classes=int(meta["num_classes"]), class_names=list(meta["class_names"]),
                          class_colors=list(meta["class_colors"]),
                          in_channels_hint=int(meta.get("in_channels_hint", 3)),
                          created=str(meta.get("created", "")), source_run=meta.get("source_run"),
                          extra={k: v for k, v in meta.items() if k not in known})
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{meta_path}: missing or invalid field {exc}") from None


def _bundle_folder(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if path.is_file() and path.name in (WEIGHTS_FILE, META_FILE, HF_CONFIG_FILE):
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

    from medseg_gui.core.model import ModelSourceError, load_with_config

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
        model, loading = load_with_config(hf_config, weights)
    except ModelSourceError as exc:
        raise BundleError(f"{weights} does not match {HF_CONFIG_FILE} or cannot be read: "
                          f"{exc.__cause__ or exc}") from None
    bad = list(loading.get("missing_keys", ())) + [k[0] if isinstance(k, tuple) else k
                                                    for k in loading.get("mismatched_keys", ())]
    if bad:
        raise BundleError(f"{weights} does not match {HF_CONFIG_FILE}: {len(bad)} tensors missing or of the "
                          f"wrong shape (first: {sorted(bad)[0]})")
    if hf_config.num_labels != info.num_classes:
        raise BundleError(f"{folder}: {META_FILE} says {info.num_classes} classes but the model has "
                          f"{hf_config.num_labels}")
    return model.to(device).eval(), info
