"""Resolving the precision setting 'auto' to what Lightning should run.

Kept apart from the LightningModule so the recommender and the GUI can show the resolved value
without building a trainer.
"""

from __future__ import annotations


def resolve_precision(requested: str, accelerator: str = "auto") -> str:
    """'auto' → 'bf16-mixed' on a CUDA GPU that supports bf16 (Ampere and newer), '16-mixed' on
    older CUDA GPUs (loss scaling keeps fp16 gradients from underflowing), '32' on the CPU, where
    mixed precision is slower than fp32 for SegFormer. Explicit values pass through unchanged."""
    if requested != "auto":
        return requested
    if accelerator == "cpu":
        return "32"
    import torch

    if not torch.cuda.is_available():
        return "32"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def resolve_accelerator(requested: str) -> str:
    """'auto' → 'gpu' when PyTorch sees a CUDA device, else 'cpu'."""
    if requested != "auto":
        return requested
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"
