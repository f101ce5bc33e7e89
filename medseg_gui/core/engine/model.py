"""Building the SegFormer to train: from the HF Hub, a local folder / .safetensors file, or scratch.

Offline must be detected at once: ``from_pretrained`` of a hub id otherwise hangs ~20 s retrying the
network before failing. So the local HF cache is tried first (``local_files_only``), then the
environment's offline flags, then a connect test with a 1.5 s budget; only then is the hub asked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg_gui.core.config import RunConfig, hub_id
from medseg_gui.core.planning.weights import HUB_TIMEOUT_S, hub_reachable, offline_by_environment

if TYPE_CHECKING:  # pragma: no cover
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

Log = Callable[[str, str], None]  # (level, message)

# The MiT encoders of the SegFormer paper (Xie et al. 2021, table 6) as HF's configs spell them.
VARIANT_ARCH: dict[str, dict[str, Any]] = {
    "b0": {"depths": [2, 2, 2, 2], "hidden_sizes": [32, 64, 160, 256], "decoder_hidden_size": 256},
    "b1": {"depths": [2, 2, 2, 2], "hidden_sizes": [64, 128, 320, 512], "decoder_hidden_size": 256},
    "b2": {"depths": [3, 4, 6, 3], "hidden_sizes": [64, 128, 320, 512], "decoder_hidden_size": 768},
    "b3": {"depths": [3, 4, 18, 3], "hidden_sizes": [64, 128, 320, 512], "decoder_hidden_size": 768},
    "b4": {"depths": [3, 8, 27, 3], "hidden_sizes": [64, 128, 320, 512], "decoder_hidden_size": 768},
    "b5": {"depths": [3, 6, 40, 3], "hidden_sizes": [64, 128, 320, 512], "decoder_hidden_size": 768},
}


class ModelSourceError(RuntimeError):
    """The requested initial weights cannot be obtained; the message says why and what to do."""


def _noop_log(level: str, message: str) -> None:
    pass


def label_maps(config: RunConfig) -> tuple[dict[int, str], dict[str, int]]:
    names = list(config.dataset.class_names)
    id2label = {i: names[i] if i < len(names) else f"class_{i}" for i in range(config.dataset.num_classes)}
    return id2label, {v: k for k, v in id2label.items()}


def scratch_config(variant: str, num_classes: int, id2label: dict[int, str] | None = None,
                   **overrides: Any) -> "SegformerConfig":
    """The HF config of a variant with a ``num_classes`` head; ``overrides`` shrink it for tests."""
    from transformers import SegformerConfig

    if variant not in VARIANT_ARCH:
        raise ModelSourceError(f"unknown SegFormer variant {variant!r}; use one of {', '.join(VARIANT_ARCH)}")
    id2label = id2label or {i: f"class_{i}" for i in range(num_classes)}
    kwargs = dict(VARIANT_ARCH[variant], num_labels=num_classes, id2label=id2label,
                  label2id={v: k for k, v in id2label.items()})
    kwargs.update(overrides)
    return SegformerConfig(**kwargs)


def build_model(config: RunConfig, log: Log | None = None) -> "SegformerForSemanticSegmentation":
    """The model a run starts from, with its head sized to the dataset's classes.

    ``training.pretrained``: 'auto' (hub weights if cached or online, else scratch with a warning),
    'hub' (hub weights or ModelSourceError), 'scratch', or a path to an HF model folder or a
    ``.safetensors`` state dict (e.g. a previous bundle's ``model.safetensors``).
    """
    log = log or _noop_log
    return with_fast_path(_build_model(config, log), log)


def with_fast_path(model: Any, log: Log | None = None) -> Any:
    """The model with the fast decode head and fused attention (core/engine/fast_segformer.py): the same
    maths and state dict keys, less memory traffic. Every model a run trains or a bundle predicts with
    passes through here, whatever its source."""
    from medseg_gui.core.engine.fast_segformer import use_fast_path

    return use_fast_path(model, log)


def _build_model(config: RunConfig, log: Log) -> "SegformerForSemanticSegmentation":
    variant = config.training.variant
    source = config.training.pretrained
    if source == "scratch":
        return _from_scratch(config, log, "training.pretrained = 'scratch'")
    if source in ("auto", "hub"):
        return _from_hub(config, log, required=source == "hub")
    path = Path(source).expanduser()
    if path.is_dir():
        return _from_folder(config, path, log)
    if path.is_file() and path.suffix == ".safetensors":
        return _from_safetensors(config, path, log)
    if path.exists():
        raise ModelSourceError(f"training.pretrained: {path} is neither a model folder nor a .safetensors file")
    raise ModelSourceError(f"training.pretrained: {path} does not exist; choose a model folder, a .safetensors "
                           f"file, or 'auto'/'hub'/'scratch' (variant {variant})")


def _from_scratch(config: RunConfig, log: Log, why: str) -> "SegformerForSemanticSegmentation":
    from transformers import SegformerForSemanticSegmentation

    id2label, _ = label_maps(config)
    log("info", f"SegFormer-{config.training.variant} from scratch (random weights): {why}")
    return SegformerForSemanticSegmentation(
        scratch_config(config.training.variant, config.dataset.num_classes, id2label))


def _head_kwargs(config: RunConfig) -> dict[str, Any]:
    id2label, label2id = label_maps(config)
    return {"num_labels": config.dataset.num_classes, "id2label": id2label, "label2id": label2id,
            "ignore_mismatched_sizes": True}


def _quiet_transformers():
    """Context that hides transformers' load report (the resized head is expected, not news)."""
    from transformers.utils import logging as hf_logging

    class _Quiet:
        def __enter__(self):
            self.level = hf_logging.get_verbosity()
            self.bars = hf_logging.is_progress_bar_enabled()
            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()

        def __exit__(self, *exc):
            hf_logging.set_verbosity(self.level)
            if self.bars:
                hf_logging.enable_progress_bar()

    return _Quiet()


def _from_hub(config: RunConfig, log: Log, required: bool) -> "SegformerForSemanticSegmentation":
    from transformers import SegformerForSemanticSegmentation

    repo = hub_id(config.training.variant)
    with _quiet_transformers():
        try:
            model = SegformerForSemanticSegmentation.from_pretrained(repo, local_files_only=True,
                                                                      **_head_kwargs(config))
            log("info", f"pretrained weights {repo} from the local Hugging Face cache")
            return model
        except OSError:
            pass  # not cached: decide below whether the network may be asked
    if offline_by_environment():
        why = "offline mode is set (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)"
    elif not hub_reachable():
        why = f"the Hugging Face Hub is not reachable within {HUB_TIMEOUT_S:g} s"
    else:
        why = ""
    if why:
        if required:
            raise ModelSourceError(
                f"cannot download {repo}: {why} and it is not in the local cache. Connect to the internet "
                f"once, set training.pretrained to a local model folder / .safetensors file, or use 'scratch'.")
        log("warning", f"pretrained weights {repo} unavailable ({why}); training from scratch, which needs "
                       f"more epochs. Set training.pretrained to a local file to use pretrained weights offline.")
        return _from_scratch(config, log, "no pretrained weights available offline")
    log("info", f"downloading pretrained weights {repo} from the Hugging Face Hub")
    try:
        with _quiet_transformers():
            return SegformerForSemanticSegmentation.from_pretrained(repo, **_head_kwargs(config))
    except OSError as exc:
        if required:
            raise ModelSourceError(f"cannot download {repo}: {exc}") from exc
        log("warning", f"download of {repo} failed ({exc}); training from scratch")
        return _from_scratch(config, log, "download failed")


def _from_folder(config: RunConfig, path: Path, log: Log) -> "SegformerForSemanticSegmentation":
    from transformers import SegformerForSemanticSegmentation

    if not (path / "config.json").is_file():
        raise ModelSourceError(f"training.pretrained: {path} has no config.json; point to a Hugging Face model "
                               f"folder (save_pretrained output or a medseg bundle) or to a .safetensors file")
    try:
        with _quiet_transformers():
            model = SegformerForSemanticSegmentation.from_pretrained(str(path), local_files_only=True,
                                                                      **_head_kwargs(config))
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"training.pretrained: cannot load a SegFormer from {path}: {exc}") from exc
    log("info", f"initial weights from {path}")
    for note in weight_notes(model, path):
        log("warning", note)
    return model


def _from_safetensors(config: RunConfig, path: Path, log: Log) -> "SegformerForSemanticSegmentation":
    """A bare state dict: architecture from a config.json beside it, else from the variant.

    Loading goes through ``from_pretrained`` on a temporary folder so transformers' key renaming
    applies: state dicts saved by transformers 4 (``encoder.block.N``) load into 5.x (``stages.N``).
    """
    from transformers import SegformerConfig

    beside = path.parent / "config.json"
    if beside.is_file():
        try:
            hf_config = SegformerConfig.from_json_file(str(beside))
        except (OSError, ValueError) as exc:
            raise ModelSourceError(f"training.pretrained: {beside} cannot be read: {exc}") from exc
    else:
        hf_config = scratch_config(config.training.variant, config.dataset.num_classes)
    model, info = load_with_config(hf_config, path, **_head_kwargs(config))
    total = len(model.state_dict())
    missing, mismatched = len(info.get("missing_keys", ())), len(info.get("mismatched_keys", ()))
    if missing >= total - 2:  # nothing but (perhaps) the head matched
        raise ModelSourceError(
            f"training.pretrained: no tensor of {path} matches SegFormer-{config.training.variant}; "
            f"is it a SegFormer state dict of this variant?")
    log("info", f"initial weights from {path}: {total - missing - mismatched} tensors loaded, "
                f"{mismatched} re-initialised (shape mismatch, e.g. the class head), {missing} missing")
    for note in info.get("notes", ()):
        log("warning", note)
    return model


def load_with_config(hf_config: Any, weights: Path, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """``from_pretrained`` of ``weights`` (a .safetensors file) with ``hf_config``; returns loading info."""
    import shutil
    import tempfile

    from safetensors import SafetensorError
    from transformers import SegformerForSemanticSegmentation

    with tempfile.TemporaryDirectory(prefix="medseg-weights-") as tmp:
        hf_config.save_pretrained(tmp)
        target = Path(tmp) / "model.safetensors"
        try:
            os.symlink(weights.resolve(), target)
        except OSError:  # Windows without symlink rights
            shutil.copyfile(weights, target)
        try:
            with _quiet_transformers():
                model, info = SegformerForSemanticSegmentation.from_pretrained(
                    tmp, local_files_only=True, output_loading_info=True, **kwargs)
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ModelSourceError(f"{weights} is not a readable SegFormer .safetensors file: {exc}") from exc
    info["notes"] = weight_notes(model, weights)
    return with_fast_path(model), info


# ---- checks on loaded weights: dtype, NaN/inf, shape mismatches ------------------------------------

def stored_float_dtypes(weights: Path) -> set[str]:
    """The floating dtypes a .safetensors file stores ('F16', 'BF16', 'F32'), read from its header only."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            return {f.get_slice(k).get_dtype() for k in f.keys()} & {"F16", "BF16", "F32", "F64"}
    except Exception:  # noqa: BLE001 — unreadable headers are reported by the loader itself
        return set()


def ensure_float32(model: Any) -> str:
    """Cast a model holding half-precision parameters to float32; returns the dtype it had ('' if fp32).

    Weights saved in fp16/bf16 (e.g. by ``model.half()`` to halve the file) load fine, but a model in
    fp16 cannot run on the CPU ("Input type (float) and bias type (Half) should be the same") and
    training needs fp32 master weights; mixed precision is applied by autocast, not by the stored dtype.
    """
    import torch

    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if not dtypes or dtypes == {torch.float32}:
        return ""
    model.float()
    return ", ".join(sorted(str(d).removeprefix("torch.") for d in dtypes if d != torch.float32))


def nonfinite_tensors(state: dict[str, Any]) -> list[str]:
    """Names of floating tensors holding NaN or infinity (a diverged run saved, or a damaged file)."""
    import torch

    return [name for name, t in state.items()
            if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all())]


def weight_notes(model: Any, weights: Path | None = None) -> list[str]:
    """What a user should hear about freshly loaded weights: a dtype conversion and NaN/inf tensors.
    The model is converted to float32 in place."""
    notes = []
    stored = stored_float_dtypes(weights) - {"F32"} if weights is not None else set()
    converted = ensure_float32(model)
    if stored or converted:
        what = converted or ", ".join(sorted({"F16": "float16", "BF16": "bfloat16", "F64": "float64"}[d]
                                              for d in stored))
        notes.append(f"{weights or 'the model'}: weights stored as {what} were converted to float32 on load")
    bad = nonfinite_tensors(model.state_dict())
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        notes.append(f"{weights or 'the model'}: {len(bad)} weight tensor(s) hold NaN or infinity ({shown}); "
                     "its predictions will be meaningless — use an earlier checkpoint or retrain")
    return notes


def mismatch_text(mismatched: list[tuple[str, Any, Any]], limit: int = 3) -> str:
    """'name: expected (32, 8), found (33, 8); ...' for the first ``limit`` (name, found, expected) tuples,
    as transformers' loading info lists them."""
    def shape(s: Any) -> str:
        return "(" + ", ".join(str(int(n)) for n in s) + ")"

    parts = [f"{name}: expected {shape(expected)}, found {shape(found)}"
             for name, found, expected in sorted(mismatched)[:limit]]
    more = f" (and {len(mismatched) - limit} more)" if len(mismatched) > limit else ""
    return "; ".join(parts) + more


def state_mismatches(model: Any, state: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(name, found shape, expected shape) for tensors of ``state`` whose shape differs from ``model``'s."""
    own = model.state_dict()
    return [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items()
            if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)]


def download_pretrained(variant: str) -> Path:
    """Fetch the variant's hub weights into the local Hugging Face cache; returns the snapshot folder.

    Refuses when the environment says offline, so tests (which set HF_HUB_OFFLINE) never download.
    """
    repo = hub_id(variant)
    if offline_by_environment():
        raise ModelSourceError(f"cannot download {repo}: offline mode is set (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)")
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo, allow_patterns=["config.json", "*.safetensors", "pytorch_model.bin"])
    except Exception as exc:  # noqa: BLE001 — network and hub errors, said in one line
        raise ModelSourceError(f"cannot download {repo}: {type(exc).__name__}: {exc}") from exc
    return Path(folder)
