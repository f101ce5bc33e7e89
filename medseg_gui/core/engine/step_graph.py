"""One training step (forward, loss, backward, optimiser step) captured as a single CUDA graph.

Why: at the tiers' batch sizes (2-16 images) SegFormer's step is a few thousand small kernels and
the GPU waits on Python launching them. ``torch.compile(mode="reduce-overhead")`` graphs the forward
and backward separately, but the optimiser step, the normalisation and Lightning's plumbing around
them still launch one by one. Capturing the whole step and replaying it costs one launch per step,
with or without torch.compile (without it the warm-up is a few eager steps, not minutes).

Rules the capture relies on (PyTorch's "whole network capture" recipe):
* static shapes: the training loader drops its last short batch, so every step has the same shapes;
* inputs are copied into static buffers the graph reads, outputs are read before the next replay;
* warm-up steps run first on a side stream (cuDNN autotuning, compiled kernels, optimiser state);
* gradients are set to ``None`` before capture, so the captured backward allocates them once from
  the graph's pool and every replay overwrites them (no zero_grad needed);
* the optimiser is capturable with its learning rate in a device tensor, so an LR scheduler's
  ``fill_`` reaches the graph;
* autocast's weight-cast cache is off during warm-up and capture (cached casts would outlive the
  capture and dangle);
* memory: warm-up allocations live in the ordinary pool and the capture in a private one, so any
  long-lived tensor born during warm-up (optimiser moments, a cuBLAS workspace per new stream)
  pins the warm-up's freed blocks and the card holds both (measured: b4/8/288 reserved 9.2 GiB
  against 4.9 eager). Hence the optimiser state is created before the first forward, one side
  stream serves warm-up and capture, and the cache is emptied before capturing;
* the capture is thread-local: the DataLoader's pin-memory thread keeps allocating pinned host
  memory meanwhile, which a global-mode capture counts as an illegal call (measured: it failed the
  capture of some configurations at random).

Several GPUs (core/engine/grad_sync.py): ``grad_sync`` owns the gradients instead: they are views of one
flat buffer that each step zeroes and, after the backward, averages across processes with one
all-reduce, captured into the graph with the rest of the step (the warm-up steps run it eagerly,
which creates the NCCL communicator before the capture).

If capture fails the step falls back to ordinary steps for the rest of the fit and says why once.
A failed capture leaves the CUDA random generator believing it is still capturing (every later
dropout would raise "Offset increment outside graph capture"), so its state is replaced by a copy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol

import torch

from medseg_gui.core.planning.speed import GRAPH_WARMUP_STEPS as WARMUP_STEPS

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class GradSync(Protocol):
    """What the step needs from a cross-process gradient average (core/grad_sync.FlatGradBucket)."""

    def attach(self) -> None: ...

    def zero_(self) -> None: ...

    def all_reduce(self) -> None: ...


def _autocast_without_cache() -> contextlib.AbstractContextManager:
    """The ambient CUDA autocast (Lightning's precision plugin), with the weight-cast cache off."""
    if not torch.is_autocast_enabled("cuda"):
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"), cache_enabled=False)


class WholeStepGraph:
    """Runs training steps: ``WARMUP_STEPS`` ordinary ones, then one captured graph replayed per step.

    Stateful by nature (static buffers, the graph, the fallback flag), hence a class.
    """

    def __init__(self, loss_fn: LossFn, optimizer: torch.optim.Optimizer,
                 on_fallback: Callable[[str], None] | None = None, warmup_steps: int = WARMUP_STEPS,
                 grad_sync: GradSync | None = None):
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.grad_sync = grad_sync
        self.on_fallback = on_fallback
        self.warmup_steps = warmup_steps
        self.steps = 0
        self.failed: str | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self._static: tuple[torch.Tensor, torch.Tensor] | None = None
        self._static_loss: torch.Tensor | None = None
        self._side: torch.cuda.Stream | None = None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def step(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """One optimiser step on this batch; returns the loss (a buffer the next step overwrites)."""
        self.steps += 1
        if self.graph is not None and self._static is not None:
            if images.shape != self._static[0].shape or masks.shape != self._static[1].shape:
                self._fall_back(f"batch shape changed from {tuple(self._static[0].shape)} to "
                                f"{tuple(images.shape)}")
                return self._plain_step(images, masks)
            self._static[0].copy_(images, non_blocking=True)
            self._static[1].copy_(masks, non_blocking=True)
            self.graph.replay()
            assert self._static_loss is not None
            return self._static_loss
        if self.failed is not None or self.steps <= self.warmup_steps:
            return self._side_stream_step(images, masks) if self.failed is None else self._plain_step(images, masks)
        try:
            return self._capture(images, masks)
        except Exception as exc:  # noqa: BLE001 — any capture failure: keep training without graphs
            self._static, self._static_loss = None, None
            self._fall_back(f"capture failed ({type(exc).__name__}: {exc}".splitlines()[0][:300] + ")")
            if images.is_cuda:
                _reset_cuda_generator(images.device)
                torch.cuda.synchronize()
            return self._plain_step(images, masks)

    # ---- the step, three ways ------------------------------------------------------------------
    def _plain_step(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        if self.grad_sync is None:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.grad_sync.zero_()
        with _autocast_without_cache():
            loss = self.loss_fn(images, masks)
        loss.backward()
        if self.grad_sync is not None:
            self.grad_sync.all_reduce()
        self.optimizer.step()
        return loss.detach()

    def _side_stream_step(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """A warm-up step on the side stream, as the capture recipe asks (lazy inits happen off-graph)."""
        if self._side is None:
            init_optimizer_state(self.optimizer)
            self._side = torch.cuda.Stream()
        current = torch.cuda.current_stream()
        self._side.wait_stream(current)
        with torch.cuda.stream(self._side):
            loss = self._plain_step(images, masks)
        current.wait_stream(self._side)
        return loss

    def _capture(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Capture this batch's step; the capture itself does not run it, so replay once afterwards."""
        static_images, static_masks = images.clone(), masks.clone()
        if self.grad_sync is None:
            self.optimizer.zero_grad(set_to_none=True)  # the captured backward allocates them
        else:
            self.grad_sync.attach()  # the flat buffer outlives the graph; zeroed inside it
        torch.cuda.synchronize()
        torch.cuda.empty_cache()  # give warm-up blocks back so the graph's pool does not double the peak
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self._side, capture_error_mode="thread_local"):
            static_loss = self._plain_step(static_images, static_masks)
        self.graph, self._static, self._static_loss = graph, (static_images, static_masks), static_loss
        graph.replay()
        return static_loss

    def release(self) -> None:
        """Free the graph (and its memory pool) now. Needed before the process group goes: NCCL
        keeps a communicator that a live graph captured from being destroyed, so a process exiting
        with the graph still alive hangs (seen on 2 H200s: training finished, the processes never
        exited). Later steps, if any, run ordinarily."""
        close = getattr(self.grad_sync, "close", None)
        if close is not None:
            close()  # its gradient hooks would outlive this fit on the model
        if self.graph is None:
            return
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        reset = getattr(self.graph, "reset", None)
        if reset is not None:
            reset()
        self.graph, self._static, self._static_loss = None, None, None
        self.failed = self.failed or "released"

    def _fall_back(self, reason: str) -> None:
        self.failed = reason
        self.graph = None
        if self.on_fallback is not None:
            self.on_fallback(reason)


def init_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Create Adam's moment buffers now (they are zeros either way) instead of at the first step.

    One step with zero gradients at learning rate 0 leaves every parameter bit-identical (decay is
    ``p * (1 - lr * wd)``, the update ``lr * m / (sqrt(v) + eps)``), then the step counters go back
    to 0, so the run's first real step is still step 1.
    """
    params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
    if all(optimizer.state.get(p) for p in params):
        return  # resumed: the loaded state is already there
    lr_values = [float(group["lr"]) for group in optimizer.param_groups]
    for p in params:
        p.grad = torch.zeros_like(p)
    _fill_lr(optimizer, [0.0] * len(lr_values))
    optimizer.step()
    _fill_lr(optimizer, lr_values)
    for p in params:
        step = optimizer.state[p].get("step")
        if isinstance(step, torch.Tensor):
            step.zero_()
        elif step is not None:
            optimizer.state[p]["step"] = 0
    optimizer.zero_grad(set_to_none=True)


def _reset_cuda_generator(device: torch.device) -> None:
    """Give the device's default generator a fresh state with the same seed and offset."""
    generator = torch.cuda.default_generators[device.index if device.index is not None else
                                              torch.cuda.current_device()]
    try:
        generator.graphsafe_set_state(generator.clone_state())
    except (AttributeError, RuntimeError):  # older torch: nothing better to try
        pass


def graph_optimizer(params: Any, lr: float, weight_decay: float, device: torch.device) -> torch.optim.AdamW:
    """Fused AdamW that can be captured: state and learning rate live on the device.

    Off CUDA (tests) the same tensor learning rate with the single-tensor implementation, which is
    the one that accepts it there.
    """
    lr_tensor = torch.tensor(lr, dtype=torch.float32, device=device)
    if torch.device(device).type != "cuda":
        return torch.optim.AdamW(params, lr=lr_tensor, weight_decay=weight_decay, foreach=False)
    return torch.optim.AdamW(params, lr=lr_tensor, weight_decay=weight_decay, fused=True, capturable=True)


def _fill_lr(optimizer: torch.optim.Optimizer, values: list[float]) -> None:
    """Per-group learning rates, in place (a tensor lr keeps its identity: graphs read it)."""
    for group, value in zip(optimizer.param_groups, values):
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(value)
        else:
            group["lr"] = value


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group to ``lr``; a scheduler built next starts from it, not from a saved ``initial_lr``."""
    _fill_lr(optimizer, [lr] * len(optimizer.param_groups))
    for group in optimizer.param_groups:
        group.pop("initial_lr", None)
