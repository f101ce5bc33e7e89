"""Resolving the precision and device settings ('auto', 'gpu', 'cuda:1') to what PyTorch should run.

Kept apart from the LightningModule so the recommender and the GUI can show the resolved value
without building a trainer. One rule for every entry point (``medseg train --accelerator``,
``training.accelerator`` in a config, ``medseg predict --device``): asking for a GPU that PyTorch
cannot see is refused here with one sentence, instead of PyTorch's "Torch not compiled with CUDA
enabled" assertion deep inside a run.
"""

from __future__ import annotations

GPU_NAMES = ("gpu", "cuda")


class DeviceError(ValueError):
    """The requested device does not exist on this machine; the message says what to do instead."""


def precision_for(requested: str, *, on_gpu: bool, bf16: bool) -> str:
    """The one rule for 'auto', from facts the caller already has (torch, a hardware snapshot, or
    pre-flight facts), so the recommender, pre-flight and training can never disagree: 'bf16-mixed'
    on a CUDA GPU that supports bf16 (Ampere and newer), '16-mixed' on older CUDA GPUs (loss scaling
    keeps fp16 gradients from underflowing), '32' on the CPU, where mixed precision is slower than
    fp32 for SegFormer. Explicit values pass through unchanged."""
    if requested != "auto":
        return requested
    if not on_gpu:
        return "32"
    return "bf16-mixed" if bf16 else "16-mixed"


def resolve_precision(requested: str, accelerator: str = "auto") -> str:
    """``precision_for`` asking torch where the run trains and whether its GPU runs bf16."""
    if requested != "auto":
        return requested
    if accelerator == "cpu":
        return "32"
    import torch

    on_gpu = torch.cuda.is_available()
    return precision_for(requested, on_gpu=on_gpu, bf16=on_gpu and torch.cuda.is_bf16_supported())


def resolve_accelerator(requested: str) -> str:
    """'auto' → 'gpu' when PyTorch sees a CUDA device, else 'cpu'; 'gpu' without one → DeviceError."""
    if requested == "auto":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    if requested in GPU_NAMES:
        _require_cuda(f"the GPU was requested (accelerator {requested})", "set the accelerator to cpu or auto")
        return "gpu"
    return requested


def resolve_device(requested: str | None) -> str:
    """A torch device string for inference: None/'auto' → 'cuda' when available, else 'cpu';
    'gpu'/'cuda' → 'cuda'; 'cuda:N' must name an existing GPU; anything else → DeviceError."""
    text = (requested or "auto").strip().lower()
    if text == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return "cpu"
    if text in GPU_NAMES:
        _require_cuda(f"--device {requested} was requested", "use --device cpu")
        return "cuda"
    kind, _, index = text.partition(":")
    if kind in GPU_NAMES and index.isdigit():
        count = _require_cuda(f"--device {requested} was requested", "use --device cpu")
        if int(index) >= count:
            raise DeviceError(f"--device {requested}: this machine has {count} CUDA GPU(s), numbered 0 to "
                              f"{count - 1}; choose one of them or --device cpu")
        return f"cuda:{index}"
    if text == "mps":  # Apple GPUs
        import torch

        if not torch.backends.mps.is_available():
            raise DeviceError(f"--device {requested} was requested but PyTorch sees no Apple GPU; use --device cpu")
        return "mps"
    raise DeviceError(f"--device {requested!r} is not a device; use cpu, cuda or cuda:N")


def _require_cuda(what: str, instead: str) -> int:
    """The number of CUDA GPUs PyTorch sees; DeviceError naming ``what`` and ``instead`` when none."""
    import torch

    if not torch.cuda.is_available():
        build = "this PyTorch build has no CUDA support" if torch.version.cuda is None else \
            "PyTorch sees no CUDA GPU (driver missing, CUDA_VISIBLE_DEVICES empty, or no NVIDIA GPU)"
        raise DeviceError(f"{what} but {build}; {instead} to run on the CPU")
    return torch.cuda.device_count()
