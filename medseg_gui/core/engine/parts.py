"""The pieces every trainer of this app is made of: the LightningModule and the Trainer's settings.

The training session and the tools' throwaway trainers (``core.tools.trial_run``: LR finder,
benchmark, fit probe) must build the *same* module with the same optimiser settings and a Trainer
that writes nothing of Lightning's own (no logger, no checkpoints, no progress bar), or a tool would
measure another run than the one the user starts. So the construction lives here, in the engine, and
both import it: tools import the engine, never the reverse.

torch and lightning are imported inside the functions: the session imports this module, and the GUI
may import the session before the heavy libraries are allowed to load.
"""

from __future__ import annotations

import gc
from typing import Any

from medseg_gui.core import config as cfg


def build_module(model: Any, config: cfg.RunConfig, module_class: type | None = None, **extra: Any) -> Any:
    """A ``SegModule`` (or ``module_class``, a subclass) around ``model`` with ``config``'s optimiser,
    loss and memory-layout settings. ``extra``: the session's run position, compile and graph settings."""
    from medseg_gui.core.engine.lit_module import OptimSettings, SegModule

    tr = config.training
    cls = module_class or SegModule
    return cls(model, config.dataset.num_classes,
               OptimSettings(lr=tr.lr, weight_decay=tr.weight_decay, use_scheduler=tr.use_scheduler,
                             total_epochs=tr.epochs),
               dice_include_background=tr.dice_include_background, channels_last=tr.channels_last, **extra)


def trainer_settings(*, accelerator: str, devices: Any, precision: str, accumulate: int, root: str,
                     **overrides: Any) -> dict[str, Any]:
    """``lightning.Trainer`` keyword arguments shared by every trainer: the session writes its own
    checkpoints and events, so Lightning's logger, checkpointing, progress bar and summary stay off,
    and cuDNN autotuning is on for the GPU (fixed input sizes)."""
    kwargs: dict[str, Any] = dict(
        accelerator=accelerator, devices=devices, precision=precision, accumulate_grad_batches=accumulate,
        num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=root, benchmark=accelerator == "gpu")
    kwargs.update(overrides)
    return kwargs


def free_cuda() -> None:
    """Give a finished trainer's memory back before the next one (an OOM retry, the real run, a trial)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 — no usable CUDA: nothing to give back
        pass
