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

fp16 (core/engine/loss_scale.py): the loss scale, the overflow check, the skipped step and the scale
update are device kernels on tensors outside the graph, captured with the rest of the step; no host
read decides anything, so GradScaler's maths runs at replay speed.

Gradient accumulation (``accumulate`` = k micro-batches per optimiser step): the gradients are
persistent views of one flat buffer (core/engine/grad_sync.FlatGradBucket, without a process group on
one GPU), allocated before the warm-up, and two graphs share one memory pool: "micro" (forward and
backward of loss / k, accumulating into the buffer) and "last" (the same, then the all-reduce if
any, the fp16 check, the optimiser step, and zeroing the buffer). A cycle cut short by the end of the
epoch is finished by ``flush`` with the same operations run ordinarily, as Lightning steps on an
epoch's last batch (it too divides by k, not by the micro-batches the short cycle had).

If capture fails the step falls back to ordinary steps for the rest of the fit and says why once.
A failed capture leaves the CUDA random generator believing it is still capturing (every later
dropout would raise "Offset increment outside graph capture"), so its state is replaced by a copy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol

import torch

from medseg_gui.core.engine.loss_scale import DeviceLossScaler
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
    """Runs training steps: ``WARMUP_STEPS`` ordinary optimiser steps, then captured graphs replayed.

    ``step`` takes one micro-batch; every ``accumulate``-th one ends with the optimiser step.
    Stateful by nature (static buffers, the graphs, the cycle position, the fallback flag), hence a class.
    """

    def __init__(self, loss_fn: LossFn, optimizer: torch.optim.Optimizer,
                 on_fallback: Callable[[str], None] | None = None, warmup_steps: int = WARMUP_STEPS,
                 grad_sync: GradSync | None = None, accumulate: int = 1, scaler: DeviceLossScaler | None = None):
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.grad_sync = grad_sync
        self.accumulate = max(1, int(accumulate))
        self.scaler = scaler
        self.on_fallback = on_fallback
        self.warmup_steps = warmup_steps
        self.steps = 0  # micro-batches
        self.optimizer_steps = 0
        self.position = 0  # micro-batches into the current accumulation cycle
        self.failed: str | None = None
        self.graph: torch.cuda.CUDAGraph | None = None  # the "last" graph (the only one when accumulate == 1)
        self.micro_graph: torch.cuda.CUDAGraph | None = None
        self._static: tuple[torch.Tensor, torch.Tensor] | None = None
        self._static_loss: torch.Tensor | None = None
        self._micro_loss: torch.Tensor | None = None
        self._side: torch.cuda.Stream | None = None
        # Persistent gradients: the cross-process buffer, or (accumulating on one GPU) the same flat
        # buffer with no process group. None: each step's backward allocates them (in the graph's pool).
        self.grads: Any = grad_sync
        if self.accumulate > 1 and grad_sync is None:
            from medseg_gui.core.engine.grad_sync import FlatGradBucket

            params = [p for group in optimizer.param_groups for p in group["params"]]
            self.grads = FlatGradBucket(params, reduce=False)
        if self.accumulate > 1 and len(getattr(self.grads, "buckets", ())) > 1:
            raise ValueError("gradient accumulation needs the one-bucket gradient average (bucket_mb=None): "
                             "overlapped buckets would reduce partial sums")

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def step(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """One micro-batch (an optimiser step when it ends a cycle); returns the loss, unscaled and
        undivided (a buffer the next step overwrites)."""
        self.steps += 1
        last = self.position + 1 == self.accumulate
        loss = self._run(images, masks, last)
        self._advance(last)
        return loss

    def flush(self) -> bool:
        """Finish a cycle cut short (the epoch ended): the optimiser step on what has accumulated,
        run ordinarily on the current stream, after any replay. False when no cycle was open."""
        if self.position == 0:
            return False
        self._finish()
        self._advance(True)
        return True

    def _advance(self, last: bool) -> None:
        if last:
            self.position = 0
            self.optimizer_steps += 1
        else:
            self.position += 1

    def _run(self, images: torch.Tensor, masks: torch.Tensor, last: bool) -> torch.Tensor:
        if self.graph is not None and self._static is not None:
            if images.shape != self._static[0].shape or masks.shape != self._static[1].shape:
                self._fall_back(f"batch shape changed from {tuple(self._static[0].shape)} to "
                                f"{tuple(images.shape)}")
                return self._plain_step(images, masks, last)
            self._static[0].copy_(images, non_blocking=True)
            self._static[1].copy_(masks, non_blocking=True)
            graph, loss = (self.graph, self._static_loss) if last else (self.micro_graph, self._micro_loss)
            assert graph is not None and loss is not None
            graph.replay()
            return loss
        if self.failed is not None:
            return self._plain_step(images, masks, last)
        if self.optimizer_steps < self.warmup_steps or self.position != 0:
            return self._side_stream_step(images, masks, last)
        try:
            return self._capture(images, masks, last)
        except Exception as exc:  # noqa: BLE001 — any capture failure: keep training without graphs
            self._static, self._static_loss, self._micro_loss, self.micro_graph = None, None, None, None
            self._fall_back(f"capture failed ({type(exc).__name__}: {exc}".splitlines()[0][:300] + ")")
            if images.is_cuda:
                _reset_cuda_generator(images.device)
                torch.cuda.synchronize()
            return self._plain_step(images, masks, last)

    # ---- the step, three ways ------------------------------------------------------------------
    def _plain_step(self, images: torch.Tensor, masks: torch.Tensor, last: bool = True) -> torch.Tensor:
        """Forward and backward of one micro-batch (loss x scale / k), then, if ``last``, the step."""
        if self.grads is None:
            self.optimizer.zero_grad(set_to_none=True)
        elif self.accumulate == 1:
            self.grads.zero_()  # one memset; arms the overlapped buckets' hooks for this backward
        else:
            self.grads.attach()  # accumulating: zeroed after each optimiser step instead (_finish)
        with _autocast_without_cache():
            loss = self.loss_fn(images, masks)
        scaled = loss if self.scaler is None else self.scaler.scale_loss(loss)
        if self.accumulate > 1:
            scaled = scaled / self.accumulate
        scaled.backward()
        if last:
            self._finish()
        return loss.detach()

    def _finish(self) -> None:
        """After the cycle's last backward: average across GPUs, check for overflow, step, zero."""
        if self.grad_sync is not None:
            self.grad_sync.all_reduce()
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)  # after the all-reduce: see core/engine/loss_scale.py
        if self.grads is not None and self.accumulate > 1:
            self.grads.zero_()  # the next cycle starts from zero (one graph for its micro-batches)

    def _side_stream_step(self, images: torch.Tensor, masks: torch.Tensor, last: bool = True) -> torch.Tensor:
        """A warm-up step on the side stream, as the capture recipe asks (lazy inits happen off-graph)."""
        if self._side is None:
            init_optimizer_state(self.optimizer)
            self._side = torch.cuda.Stream()
        current = torch.cuda.current_stream()
        self._side.wait_stream(current)
        with torch.cuda.stream(self._side):
            loss = self._plain_step(images, masks, last)
        current.wait_stream(self._side)
        return loss

    def _capture(self, images: torch.Tensor, masks: torch.Tensor, last: bool = True) -> torch.Tensor:
        """Capture the step's graph(s) at a cycle's start; capturing runs nothing, so replay once after."""
        static_images, static_masks = images.clone(), masks.clone()
        if self.grads is None:
            self.optimizer.zero_grad(set_to_none=True)  # the captured backward allocates them
        else:
            self.grads.attach()  # the flat buffer outlives the graph; zeroed inside it
        torch.cuda.synchronize()
        torch.cuda.empty_cache()  # give warm-up blocks back so the graph's pool does not double the peak
        # Accumulating: "micro" and "last" run one after the other, never at once, so they share a pool
        # (the live outputs, the two losses, stay allocated; everything else is reused).
        pool = torch.cuda.graph_pool_handle() if self.accumulate > 1 else None
        micro, micro_loss = None, None
        if self.accumulate > 1:
            micro = torch.cuda.CUDAGraph()
            with torch.cuda.graph(micro, pool=pool, stream=self._side, capture_error_mode="thread_local"):
                micro_loss = self._plain_step(static_images, static_masks, last=False)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool, stream=self._side, capture_error_mode="thread_local"):
            static_loss = self._plain_step(static_images, static_masks, last=True)
        self.graph, self._static, self._static_loss = graph, (static_images, static_masks), static_loss
        self.micro_graph, self._micro_loss = micro, micro_loss
        if last:
            graph.replay()
            return static_loss
        assert micro is not None and micro_loss is not None
        micro.replay()
        return micro_loss

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
        for graph in (self.micro_graph, self.graph):
            reset = getattr(graph, "reset", None)
            if reset is not None:
                reset()
        self.graph, self.micro_graph, self._static, self._static_loss, self._micro_loss = None, None, None, None, None
        self.failed = self.failed or "released"

    def _fall_back(self, reason: str) -> None:
        self.failed = reason
        self.graph = self.micro_graph = None
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
