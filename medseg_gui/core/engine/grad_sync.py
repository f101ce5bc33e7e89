"""Several GPUs with the whole training step as one CUDA graph: we average the gradients ourselves.

Why: DDP averages gradients from autograd hooks, bucket by bucket, with host-side bookkeeping the
graph cannot hold, so under DDP the step ran ungraphed, launch-bound, and two GPUs trained slower
than one (b5 · 16 · 256: 131 against 259 images/s). Instead:

* every trainable parameter's ``.grad`` is a view into one flat buffer per dtype (allocated once,
  before the warm-up, strides matching the parameter so channels_last weights and fused AdamW see
  the layout they expect);
* each step zeroes the buffer, runs forward and backward (which accumulate into the views), divides
  by the number of processes and all-reduces (sum) the buffer, then the optimiser step: the mean of
  the gradients, divided before summing as DDP does, so the maths is DDP's;
* by default that is ONE all-reduce of the whole buffer after the backward. DDP-style overlap is
  available (``bucket_mb``: contiguous buckets in backward order, each launched from a
  post-accumulate-grad hook when its last gradient lands) and gives the same gradients, but on 2
  H200s it was not faster: b5 · 16 · 256 54.3 ms a step against 52.5 with one bucket, b2 · 32 · 256
  42.8 against 40.5 (benchmarks/results/bench_multi_gpu.json; the overlapped runs had shorter
  epochs, which cost the 1-GPU runs about 0.5 ms a step), so the simpler one bucket is the default;
* the warm-up steps run the all-reduce eagerly (the NCCL communicator is created there), and the
  capture records it into the graph: NCCL collectives can be captured, and each replay is one
  launch. The graph must be freed before the process group (``WholeStepGraph.release``).

Lightning still launches the processes, builds the process group, shards the data with its
DistributedSampler and reduces the logged metrics; ``GraphDDPStrategy`` only skips the DDP wrapper
(its hooks would average a second time) and broadcasts rank 0's weights instead, as DDP's constructor
does. BatchNorm running statistics, which DDP re-broadcasts from rank 0 at every forward, are
broadcast before each validation (``broadcast_module_states``); training uses batch statistics either way.

fp16's loss scaler and gradient accumulation run inside the same graph (core/engine/step_graph.py):
the overflow check reads the averaged buffer, identical on every rank, and with accumulation the
buffer sums k micro-batches and is reduced once, at the cycle's last one (one bucket only: the
overlapped buckets would reduce partial sums). One GPU accumulating uses this same buffer with
``reduce=False`` (no process group, no all-reduce).

Not covered (the plan in core/planning/speed.py keeps the ordinary DDP path and says why): other strategies
(FSDP, DeepSpeed, DDP with unused parameters). A loss that leaves a parameter unused gives it a zero
gradient here (plain DDP refuses such models).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import torch


# Bucket size for the overlapped variant (DDP's default, 25 MB). Not the default: measured on 2
# H200s (NCCL 2.28, NVLink NV18), overlapping ~25 MB all-reduces with the backward was not faster
# than one all-reduce after it (b5 · 16 · 256: 54.3 against 52.5 ms a step; b2 · 32 · 256: 42.8
# against 40.5); the collectives then share the GPU with the backward's kernels.
OVERLAP_BUCKET_MB = 25.0


def _grad_view(flat: torch.Tensor, offset: int, param: torch.Tensor) -> torch.Tensor:
    """A view of ``param.numel()`` elements of ``flat`` shaped (and, if dense, strided) like ``param``."""
    n = param.numel()
    dense = param.is_contiguous() or (param.dim() == 4 and param.is_contiguous(memory_format=torch.channels_last))
    if dense:
        return torch.as_strided(flat, param.size(), param.stride(), storage_offset=offset)
    return flat[offset:offset + n].view(param.size())


class FlatGradBucket:
    """All trainable gradients as views of one flat buffer per (device, dtype), averaged across the
    default process group (or ``group``): DDP's maths (divide by the world size, then sum).

    ``bucket_mb=None`` (default): one bucket, reduced after the backward. With ``bucket_mb`` the
    buffer, laid out in reverse parameter order (the order backward produces gradients), is cut into
    contiguous buckets of about that size; a post-accumulate-grad hook launches a bucket's all-reduce
    (asynchronously, on the step's stream) when its last gradient arrives, and ``all_reduce``
    launches any bucket still waiting (unused parameters), then joins them all. Under capture the
    hooks run once, so the graph holds the same launches at the same points of the backward.

    ``reduce=False``: the persistent buffer alone, for one process (gradient accumulation inside a
    graph on one GPU); ``all_reduce`` then does nothing.

    Stateful (the buffers, views and hooks outlive the steps; a captured graph reads and writes
    them), hence a class.
    """

    def __init__(self, params: Iterable[torch.Tensor], group: Any = None, bucket_mb: float | None = None,
                 reduce: bool = True):
        self.group = group
        self.reduce = reduce
        if reduce:
            import torch.distributed as dist

            self.world = dist.get_world_size(group)
        else:
            self.world = 1
        self.params = [p for p in params if p.requires_grad]
        order = list(reversed(range(len(self.params))))
        sizes: dict[tuple[torch.device, torch.dtype], int] = {}
        offsets = [0] * len(self.params)
        for i in order:
            key = (self.params[i].device, self.params[i].dtype)
            offsets[i] = sizes.get(key, 0)
            sizes[key] = offsets[i] + self.params[i].numel()
        self.buffers = {key: torch.zeros(total, device=key[0], dtype=key[1]) for key, total in sizes.items()}
        self.views = [_grad_view(self.buffers[(p.device, p.dtype)], off, p) for p, off in zip(self.params, offsets)]
        self.buckets: list[list[Any]] = []  # [key, start, end]: contiguous slices of one buffer
        self._bucket_of = [0] * len(self.params)
        cap = None if bucket_mb is None else max(1, int(bucket_mb * 2**20))
        open_bucket: dict[tuple[torch.device, torch.dtype], int] = {}
        for i in order:
            p = self.params[i]
            key = (p.device, p.dtype)
            b = open_bucket.get(key)
            if b is None or (cap is not None and (self.buckets[b][2] - self.buckets[b][1]) * p.element_size() >= cap):
                self.buckets.append([key, offsets[i], offsets[i]])
                b = open_bucket[key] = len(self.buckets) - 1
            self.buckets[b][2] = offsets[i] + p.numel()
            self._bucket_of[i] = b
        self._members = [self._bucket_of.count(b) for b in range(len(self.buckets))]
        self._remaining = list(self._members)
        self._launched = [False] * len(self.buckets)
        self._works: list[Any] = []
        self._armed = False
        self._stream: Any = None
        self.launched_in_backward = 0  # buckets the hooks launched in the last step (overlap)
        self._hooks = []
        if reduce and len(self.buckets) > 1:
            for i, p in enumerate(self.params):
                self._hooks.append(p.register_post_accumulate_grad_hook(lambda _p, i=i: self._grad_ready(i)))
        self.attach()

    @property
    def numel(self) -> int:
        return sum(b.numel() for b in self.buffers.values())

    def attach(self) -> None:
        """Point every ``.grad`` at its view (undoes a ``zero_grad(set_to_none=True)`` by anyone);
        the step calls it before each backward, so bucket launches follow that step's stream."""
        for p, view in zip(self.params, self.views):
            if p.grad is not view:
                p.grad = view
        self._stream = self._current_stream()

    def zero_(self) -> None:
        """Before the backward (accumulating: after each optimiser step instead): one memset per buffer
        (captured into the graph when capturing); arms the hooks for the next backward."""
        self.attach()
        for buffer in self.buffers.values():
            buffer.zero_()
        self._remaining = list(self._members)
        self._launched = [False] * len(self.buckets)
        self._works, self.launched_in_backward = [], 0
        self._stream = self._current_stream()
        self._armed = True

    def _current_stream(self) -> Any:
        on_cuda = any(key[0].type == "cuda" for key in self.buffers)
        return torch.cuda.current_stream() if on_cuda else None

    def all_reduce(self) -> None:
        """After the backward: launch what the hooks did not, then make the step's stream wait for
        every bucket, so the optimiser reads averaged gradients."""
        self._armed = False
        if not self.reduce:
            return
        self._stream = self._current_stream()  # an ordinary step after a capture: not the capture's stream
        for b, launched in enumerate(self._launched):
            if not launched:
                self._launch(b)
        for work in self._works:
            work.wait()
        self._works = []

    def close(self) -> None:
        """Remove the hooks (the gradients stay views of the buffer)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    def _grad_ready(self, index: int) -> None:
        if not self._armed:
            return
        b = self._bucket_of[index]
        self._remaining[b] -= 1
        if self._remaining[b] == 0 and not self._launched[b]:
            self._launch(b)
            self.launched_in_backward += 1

    def _launch(self, b: int) -> None:
        import torch.distributed as dist

        key, start, end = self.buckets[b]
        chunk = self.buffers[key][start:end]
        with torch.cuda.stream(self._stream) if self._stream is not None else contextlib.nullcontext():
            if self.world > 1:
                chunk.div_(self.world)
            self._works.append(dist.all_reduce(chunk, op=dist.ReduceOp.SUM, group=self.group, async_op=True))
        self._launched[b] = True


def broadcast_module_states(module: torch.nn.Module, src: int = 0, group: Any = None,
                            buffers_only: bool = False) -> None:
    """Rank ``src``'s parameters and buffers (or buffers only) on every rank, one collective per
    dtype: what DDP's constructor does for parameters and its forward for buffers."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) < 2:
        return
    tensors = [b for b in module.buffers()]
    if not buffers_only:
        tensors = [p.data for p in module.parameters()] + tensors
    by_kind: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for t in tensors:
        by_kind.setdefault((t.device, t.dtype), []).append(t)
    with torch.no_grad():
        for (device, dtype), group_tensors in by_kind.items():
            flat = torch.cat([t.reshape(-1) for t in group_tensors]).to(device=device, dtype=dtype)
            dist.broadcast(flat, src=src, group=group)
            offset = 0
            for t in group_tensors:
                n = t.numel()
                t.copy_(flat[offset:offset + n].view(t.shape))
                offset += n


def graph_ddp_strategy(**kwargs: Any) -> Any:
    """Lightning's DDP strategy (processes, process group, sampler, metric reductions) without the
    DDP wrapper: the graphed step averages the gradients itself (FlatGradBucket)."""
    from lightning.pytorch.strategies import DDPStrategy

    class GraphDDPStrategy(DDPStrategy):
        step_owns_gradient_sync = True

        def configure_ddp(self) -> None:
            broadcast_module_states(self.model)  # equal initial weights, as DDP's constructor does

    return GraphDDPStrategy(**kwargs)


def owns_gradient_sync(strategy: Any) -> bool:
    """Whether this Lightning strategy leaves the gradient average to our step (graph_ddp_strategy)."""
    return bool(getattr(strategy, "step_owns_gradient_sync", False))
