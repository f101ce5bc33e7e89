"""Building the SegFormer to train: from the HF Hub, a local folder / .safetensors file, or scratch.

Offline must be detected at once: ``from_pretrained`` of a hub id otherwise hangs ~20 s retrying the
network before failing. So the local HF cache is tried first (``local_files_only``), then the
environment's offline flags, then a connect test with a 1.5 s budget; only then is the hub asked.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from medseg_gui.core.config import RunConfig, hub_id

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
HUB_TIMEOUT_S = 1.5


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


def offline_by_environment() -> bool:
    truthy = {"1", "true", "yes", "on"}
    return any(os.environ.get(k, "").strip().lower() in truthy for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout_s: float = HUB_TIMEOUT_S) -> bool:
    """True when a TCP connection to the hub endpoint opens within ``timeout_s``.

    DNS lookups ignore socket timeouts, so the probe runs in a daemon thread that we stop waiting for.
    """
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True, name="hub-probe")
    thread.start()
    thread.join(timeout_s)
    return bool(result and result[0])


def build_model(config: RunConfig, log: Log | None = None) -> "SegformerForSemanticSegmentation":
    """The model a run starts from, with its head sized to the dataset's classes.

    ``training.pretrained``: 'auto' (hub weights if cached or online, else scratch with a warning),
    'hub' (hub weights or ModelSourceError), 'scratch', or a path to an HF model folder or a
    ``.safetensors`` state dict (e.g. a previous bundle's ``model.safetensors``).
    """
    log = log or _noop_log
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
                return SegformerForSemanticSegmentation.from_pretrained(
                    tmp, local_files_only=True, output_loading_info=True, **kwargs)
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ModelSourceError(f"{weights} is not a readable SegFormer .safetensors file: {exc}") from exc
