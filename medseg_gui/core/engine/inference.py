"""Prediction from a trained model: the viewer's worker thread and ``medseg predict`` both call this.

Pre-processing mirrors training exactly, because a model only works on inputs that look like what it
learnt from: >8-bit slices get the same window to uint8 as the importers/loaders use (a percentile
window per 2D image, the volume's default window for DICOM/NIfTI), grey/RGB is matched to the
bundle's ``in_channels_hint``, the image is resized bilinearly to the bundle's ``image_size`` and
normalised on the device by ``data.normalize.to_model_input``. SegFormer's logits come at 1/4 of the
input size; they are upsampled (bilinear) straight to the *original* image size before the argmax,
so the mask edges follow the image and not a blocky 72x72 grid.

torch and transformers are imported inside the functions: the viewer page imports this module at
start-up, and the window must paint before the heavy libraries load.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medseg_gui.core import config as cfg
from medseg_gui.core import runs
from medseg_gui.core.data.normalize import to_model_input
from medseg_gui.core.engine.bundle import (BundleError, BundleInfo, HF_CONFIG_FILE, WEIGHTS_FILE, load_bundle,
                                           read_bundle_info)
from medseg_gui.core.engine.model import (label_maps, mismatch_text, scratch_config, state_mismatches,
                                          weight_notes)
from medseg_gui.core.runs import BUNDLE_META_FILE
from medseg_gui.core.imaging.model_input import slice_to_uint8, volume_to_uint8

if TYPE_CHECKING:  # pragma: no cover
    from medseg_gui.core.imaging.volume import Volume

Progress = Callable[[int, int], None]   # (slices done, slices total)
ShouldStop = Callable[[], bool]


class ModelLoadError(ValueError):
    """No usable model at a path; the message names the file, the problem and what to choose instead."""


@dataclass
class Prediction:
    """One slice: ``labels`` uint8 ``[H, W]`` class ids, ``confidence`` float16 ``[H, W]`` (the winning
    class's softmax probability), ``probs`` float16 ``[C, H, W]`` only when asked for, ``timings`` in ms."""

    labels: np.ndarray
    confidence: np.ndarray
    probs: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class VolumePrediction:
    """A stack: ``labels``/``confidence`` ``[Z, H, W]``. ``done`` slices are filled; fewer than Z when
    cancelled (the rest stay 0 and ``cancelled`` is True)."""

    labels: np.ndarray
    confidence: np.ndarray
    done: int
    cancelled: bool = False
    timings: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------- loading

def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def describe_model_path(path: str | Path) -> str:
    """'bundle' | 'run' | 'safetensors' for a loadable path; raises ModelLoadError otherwise (cheap: no torch)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model {path} does not exist — choose a model bundle folder (with {BUNDLE_META_FILE}), "
                             "a training run folder, or a .safetensors file next to its medseg.json")
    if path.is_dir():
        if (path / BUNDLE_META_FILE).is_file():
            return "bundle"
        if runs.is_run_dir(path):
            return "run"
        raise ModelLoadError(f"{path} is neither a model bundle (no {BUNDLE_META_FILE}) nor a training run folder "
                             f"(no {runs.CONFIG_FILE} and {runs.CHECKPOINT_DIR}/) — choose the bundle/ folder "
                             "of a finished run, or the run folder itself")
    if path.suffix == ".safetensors":
        if not (path.parent / BUNDLE_META_FILE).is_file():
            raise ModelLoadError(f"{path}: no {BUNDLE_META_FILE} beside it, so its classes and input size are "
                                 "unknown — load the bundle folder written by training or by medseg export")
        return "safetensors"
    if path.name in (BUNDLE_META_FILE, HF_CONFIG_FILE):
        return "bundle"
    raise ModelLoadError(f"{path} is not a model: choose a bundle folder, a run folder or a .safetensors file")


def load_model(path: str | Path, device: str | None = None) -> tuple[Any, BundleInfo]:
    """The SegFormer (eval mode, on ``device``) and its metadata from a bundle, a run folder or a
    ``.safetensors`` next to ``medseg.json``. Errors are :class:`ModelLoadError` naming the file."""
    path = Path(path).expanduser()
    kind = describe_model_path(path)
    device = device or default_device()
    try:
        if kind == "bundle":
            return load_bundle(path, device=device)
        if kind == "safetensors":
            return _load_named_safetensors(path, device)
        bundle_dir = path / runs.BUNDLE_DIR
        if (bundle_dir / BUNDLE_META_FILE).is_file():
            return load_bundle(bundle_dir, device=device)
        return load_run_checkpoint(path, device)
    except (BundleError, runs.CheckpointError) as exc:
        raise ModelLoadError(str(exc)) from None


def _load_named_safetensors(weights: Path, device: str) -> tuple[Any, BundleInfo]:
    """A weights file of another name (e.g. ``best.safetensors``) that shares a bundle's metadata."""
    if weights.name == WEIGHTS_FILE:
        return load_bundle(weights.parent, device=device)
    from transformers import SegformerConfig

    info = read_bundle_info(weights.parent)
    try:
        hf_config = SegformerConfig.from_json_file(str(weights.parent / HF_CONFIG_FILE))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{weights.parent / HF_CONFIG_FILE} cannot be read: {exc}") from None
    return _model_from_state(hf_config, _read_safetensors(weights, device), weights, info, device), info


def _read_safetensors(path: Path, device: str) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{path} cannot be read (corrupt or not a safetensors file): {exc}") from None


def _model_from_state(hf_config: Any, state: dict[str, Any], source: Path, info: BundleInfo, device: str) -> Any:
    from transformers import SegformerForSemanticSegmentation

    if hf_config.num_labels != info.num_classes:
        raise ModelLoadError(f"{source}: the model has {hf_config.num_labels} classes but its metadata says "
                             f"{info.num_classes}")
    from medseg_gui.core.engine.model import with_fast_path

    model = with_fast_path(SegformerForSemanticSegmentation(hf_config))  # same keys, less memory traffic
    mismatched = state_mismatches(model, state)
    if mismatched:
        raise ModelLoadError(f"{source}: the weights do not fit the model's configuration: {len(mismatched)} "
                             f"tensor(s) of the wrong shape — {mismatch_text(mismatched)}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{source}: the weights do not fit the model's configuration "
                             f"({' '.join(str(exc).split())[:300]})") from None
    info.warnings.extend(weight_notes(model, source if source.suffix == ".safetensors" else None))
    return model.to(device).eval()


def load_run_checkpoint(run_dir: Path, device: str = "cpu", checkpoint: Path | None = None
                        ) -> tuple[Any, BundleInfo]:
    """A run's model from a checkpoint (``weights_only``): ``checkpoint``, else best, else last.

    Used for runs without a bundle (crashed or still training) and by ``medseg export --from-checkpoint``.
    """

    best, last = runs.checkpoint_paths(run_dir)
    ckpt = Path(checkpoint) if checkpoint is not None else (best if best.is_file() else last)
    if checkpoint is not None and not ckpt.is_file():
        raise ModelLoadError(f"checkpoint {ckpt} does not exist — choose 'best' or 'last' of a run that has it")
    if not ckpt.is_file():
        raise ModelLoadError(f"{run_dir}: the run has no bundle/ and no checkpoint in {runs.CHECKPOINT_DIR}/ yet — "
                             "wait for the first validation, or choose another run")
    config = cfg.load(run_dir / runs.CONFIG_FILE)
    data = runs.load_checkpoint(ckpt)
    ds = config.dataset
    id2label, label2id = label_maps(config)
    hf_config = None
    pretrained = Path(config.training.pretrained).expanduser()
    if pretrained.is_dir() and (pretrained / HF_CONFIG_FILE).is_file():
        # the run was started from a local model folder: its architecture, this run's head
        from transformers import SegformerConfig

        hf_config = SegformerConfig.from_json_file(str(pretrained / HF_CONFIG_FILE))
        hf_config.num_labels = ds.num_classes
        hf_config.id2label, hf_config.label2id = id2label, label2id
    if hf_config is None:
        hf_config = scratch_config(config.training.variant, ds.num_classes, id2label)
    info = BundleInfo(path=run_dir, variant=config.training.variant, image_size=ds.image_size,
                      num_classes=ds.num_classes, class_names=list(ds.class_names),
                      class_colors=list(ds.class_colors), source_run=run_dir.name,
                      extra={"checkpoint": str(ckpt)})
    return _model_from_state(hf_config, data["model"], ckpt, info, device), info


# ----------------------------------------------------------------------------------------- predictor

class Predictor:
    """A loaded model plus the pre/post-processing that makes its masks line up with the input image."""

    def __init__(self, model: Any, info: BundleInfo, device: str = "cpu"):
        self.model = model
        self.info = info
        self.device = device

    @classmethod
    def from_path(cls, path: str | Path, device: str | None = None) -> "Predictor":
        device = device or default_device()
        model, info = load_model(path, device)
        return cls(model, info, device)

    # metadata the viewer shows
    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.info.class_names)

    @property
    def class_colors(self) -> list[str]:
        return list(self.info.class_colors)

    @property
    def image_size(self) -> int:
        return self.info.image_size

    def describe(self) -> str:
        return (f"SegFormer-{self.info.variant}, {self.image_size} px, {self.num_classes} classes, "
                f"on {self.device.upper() if self.device == 'cpu' else self.device}")

    def _model_slice(self, image_u8: np.ndarray) -> np.ndarray:
        """uint8 slice → uint8 ``[C, S, S]`` at the model's size, grey/RGB as the model was trained."""
        import cv2

        img = image_u8
        if self.info.in_channels_hint == 1 and img.ndim == 3:
            img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
        size = self.image_size
        if img.shape[:2] != (size, size):
            img = cv2.resize(np.ascontiguousarray(img), (size, size), interpolation=cv2.INTER_LINEAR)
        return img[None] if img.ndim == 2 else np.ascontiguousarray(img.transpose(2, 0, 1))

    def _forward(self, batch_u8: np.ndarray, out_hw: tuple[int, int], keep_probs: bool
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, float]]:
        import torch
        import torch.nn.functional as F

        t0 = time.perf_counter()
        with torch.inference_mode():
            # from_numpy shares memory and warns on read-only arrays (a memory-mapped volume slice)
            x = torch.from_numpy(np.require(batch_u8, requirements=["W"])).to(self.device, non_blocking=True)
            x = to_model_input(x)
            t1 = time.perf_counter()
            logits = self.model(pixel_values=x).logits
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
            t2 = time.perf_counter()
            logits = F.interpolate(logits.float(), size=out_hw, mode="bilinear", align_corners=False)
            top, labels = logits.max(dim=1)
            # max softmax = 1 / sum(exp(l - max)): no full softmax tensor unless probabilities are kept
            conf = torch.exp(logits - top[:, None]).sum(dim=1).reciprocal_()
            probs = torch.softmax(logits, dim=1).half().cpu().numpy() if keep_probs else None
            labels_np = labels.to(torch.uint8).cpu().numpy()
            conf_np = conf.half().cpu().numpy()
            t3 = time.perf_counter()
        return labels_np, conf_np, probs, {"to_tensor_ms": (t1 - t0) * 1e3, "forward_ms": (t2 - t1) * 1e3,
                                           "upsample_argmax_ms": (t3 - t2) * 1e3}

    def predict_slice(self, image: np.ndarray, keep_probs: bool = False) -> Prediction:
        """One 2D grey ``[H, W]`` or RGB ``[H, W, 3]`` image of any dtype → a mask of the same ``H, W``."""
        t0 = time.perf_counter()
        img = slice_to_uint8(image)
        batch = self._model_slice(img)[None]
        t1 = time.perf_counter()
        labels, conf, probs, timings = self._forward(batch, img.shape[:2], keep_probs)
        timings = {"preprocess_ms": (t1 - t0) * 1e3, **timings,
                   "total_ms": (time.perf_counter() - t0) * 1e3}
        return Prediction(labels=labels[0], confidence=conf[0], probs=None if probs is None else probs[0],
                          timings=timings)

    def predict_volume(self, volume: "Volume | np.ndarray", progress: Progress | None = None,
                       should_stop: ShouldStop | None = None, batch_size: int | None = None) -> VolumePrediction:
        """Every slice of a :class:`Volume` (or a uint8 ``[Z, H, W(, 3)]`` array), in batches.

        ``should_stop`` is checked between batches (cooperative cancel); ``progress(done, total)`` is
        called after each batch.
        """
        t0 = time.perf_counter()
        if isinstance(volume, np.ndarray):
            data = volume if volume.dtype == np.uint8 else np.stack([slice_to_uint8(s) for s in volume])
        else:
            data = volume_to_uint8(volume)
        if data.ndim not in (3, 4):
            raise ValueError(f"expected a volume [Z, H, W] or [Z, H, W, 3], got shape {data.shape}")
        z, h, w = data.shape[:3]
        batch_size = batch_size or (8 if self.device.startswith("cuda") else 2)
        labels = np.zeros((z, h, w), np.uint8)
        conf = np.zeros((z, h, w), np.float16)
        totals: dict[str, float] = {}
        done = 0
        cancelled = False
        for start in range(0, z, batch_size):
            if should_stop is not None and should_stop():
                cancelled = True
                break
            stop = min(z, start + batch_size)
            batch = np.stack([self._model_slice(data[i]) for i in range(start, stop)])
            lab, cf, _, timings = self._forward(batch, (h, w), keep_probs=False)
            labels[start:stop], conf[start:stop] = lab, cf
            for key, value in timings.items():
                totals[key] = totals.get(key, 0.0) + value
            done = stop
            if progress is not None:
                progress(done, z)
        totals["total_ms"] = (time.perf_counter() - t0) * 1e3
        return VolumePrediction(labels=labels, confidence=conf, done=done, cancelled=cancelled, timings=totals)


def load_predictor(path: str | Path, device: str | None = None) -> Predictor:
    """Shorthand for :meth:`Predictor.from_path`."""
    return Predictor.from_path(path, device)
