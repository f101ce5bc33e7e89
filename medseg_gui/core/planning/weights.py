"""Where a run's initial weights would come from, without loading them or asking the hub for them.

A planning question: the recommendation warns when training would start from random weights and the
pre-flight check fails a configuration whose weights file is missing, before any model is built.
``core.engine.model`` builds the model by the same rules. No torch, no transformers, no network
except ``hub_reachable``'s short connect test.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from medseg_gui.core.config import RunConfig, hub_id

HUB_TIMEOUT_S = 1.5


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


PRETRAINED_LICENCE = ("NVIDIA's SegFormer weights (ADE20k) are licensed for non-commercial research use only "
                      "(NVIDIA Source Code License for SegFormer).")
HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class PretrainedAvailability:
    """What ``build_model`` would start from. ``state``:

    "scratch" (random weights, chosen), "local" (a usable local file/folder), "cached" (hub weights in
    the local Hugging Face cache), "download" (not cached; downloaded at Start when online),
    "offline" (not cached and offline: training would start from random weights), "bad" (the
    configured path is missing or unusable).
    """
    state: str
    source: str  # the configured training.pretrained
    repo: str  # the hub id for the variant
    path: str = ""  # the local file/folder found, if any
    detail: str = ""


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, as huggingface_hub resolves it (without importing it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def cached_hub_weights(repo: str, cache_dir: Path | None = None) -> Path | None:
    """The cached snapshot folder of ``repo`` holding config.json and weights, or None (no network)."""
    root = (cache_dir or hf_hub_cache_dir()) / ("models--" + repo.replace("/", "--"))
    snapshots = root / "snapshots"
    candidates: list[Path] = []
    try:
        main = (root / "refs" / "main").read_text(encoding="utf-8").strip()
        candidates.append(snapshots / main)
    except OSError:
        pass
    try:
        candidates += sorted(p for p in snapshots.iterdir() if p.is_dir())
    except OSError:
        pass
    for folder in candidates:
        if (folder / "config.json").is_file() and any((folder / w).is_file() for w in HUB_WEIGHT_FILES):
            return folder
    return None


def local_weights_problem(path: Path) -> str:
    """Why ``path`` cannot serve as initial weights ('' when it can): the rules ``build_model`` applies."""
    if path.is_dir():
        return "" if (path / "config.json").is_file() else f"{path} has no config.json (not a model folder)"
    if path.is_file():
        return "" if path.suffix == ".safetensors" else f"{path} is not a .safetensors file"
    return f"{path} does not exist"


def pretrained_availability(config: RunConfig, *, online: bool | None = None,
                            cache_dir: Path | None = None) -> PretrainedAvailability:
    """Where ``config``'s initial weights would come from; never touches the network.

    ``online``: whether the hub can be reached (None: only the offline environment flags decide,
    so a cache miss without them is reported as "download").
    """
    source = config.training.pretrained
    repo = hub_id(config.training.variant)
    if source == "scratch":
        return PretrainedAvailability("scratch", source, repo, detail="random weights (chosen: 'scratch')")
    if source not in ("auto", "hub"):
        path = Path(source).expanduser()
        problem = local_weights_problem(path)
        if problem:
            return PretrainedAvailability("bad", source, repo, str(path), problem)
        return PretrainedAvailability("local", source, repo, str(path.resolve()), f"local weights {path.resolve()}")
    cached = cached_hub_weights(repo, cache_dir)
    if cached is not None:
        return PretrainedAvailability("cached", source, repo, str(cached),
                                      f"{repo} is in the local Hugging Face cache")
    if offline_by_environment() or online is False:
        why = "offline mode is set (HF_HUB_OFFLINE)" if offline_by_environment() else "no internet connection"
        return PretrainedAvailability("offline", source, repo,
                                      detail=f"{repo} is not on this computer and {why}")
    return PretrainedAvailability("download", source, repo,
                                  detail=f"{repo} is not on this computer yet; it is downloaded at Start")
