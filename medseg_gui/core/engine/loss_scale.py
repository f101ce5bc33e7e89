"""fp16's dynamic loss scaling with every number on the GPU, so it can live inside a CUDA graph.

Why: ``torch.amp.GradScaler`` keeps its decision (step or skip, grow or back off) cheap by reading
one flag on the host each step, and a captured graph cannot hold a host read. Its maths, though,
is made of device kernels already; this class runs exactly those kernels on tensors that outlive
the graph (the scale, the growth tracker, the overflow flag), so the captured step replays them:

* the loss is multiplied by ``scale`` (fp32, starts at 2**16) before the backward;
* ``torch._amp_foreach_non_finite_check_and_unscale_`` with an inverse scale of 1 only sets
  ``found_inf`` when a gradient is inf/NaN (GradScaler's own check for optimisers that unscale
  themselves); fused AdamW then gets ``grad_scale``/``found_inf`` (``_step_supports_amp_scaling``),
  divides the gradients by the scale and, on overflow, leaves the parameters and moments untouched
  and takes its step counter back (it adds 1, then subtracts ``found_inf``);
* ``torch._amp_update_scale_`` halves the scale on overflow (and resets the tracker), or doubles it
  after ``growth_interval`` clean steps in a row.

Several GPUs: the check runs after the gradient all-reduce (core/engine/grad_sync.py), on the
averaged buffer, which is bit-identical on every rank; an inf or NaN on any rank reaches every
rank through the sum. So ``found_inf``, the skip and the new scale agree across ranks without a
collective of their own (DDP with GradScaler relies on the same fact).

If gradient clipping is ever added to the step it must see unscaled gradients: call ``unscale_``
before it (the optimiser then gets ``found_inf`` only, as GradScaler does after ``unscale_``).
"""

from __future__ import annotations

from typing import Any

import torch

INIT_SCALE = 2.0 ** 16
GROWTH_FACTOR = 2.0
BACKOFF_FACTOR = 0.5
GROWTH_INTERVAL = 2000


class DeviceLossScaler:
    """GradScaler's dynamic loss scale without host reads. Stateful (tensors a graph captured), hence a class."""

    def __init__(self, device: torch.device | str, init_scale: float = INIT_SCALE,
                 growth_factor: float = GROWTH_FACTOR, backoff_factor: float = BACKOFF_FACTOR,
                 growth_interval: int = GROWTH_INTERVAL):
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = int(growth_interval)
        self.scale = torch.full((), float(init_scale), dtype=torch.float32, device=device)
        self.growth_tracker = torch.zeros((), dtype=torch.int32, device=device)
        self.found_inf = torch.zeros((), dtype=torch.float32, device=device)
        self.skipped = torch.zeros((), dtype=torch.int64, device=device)  # overflow steps so far (read rarely)
        self._one = torch.ones((), dtype=torch.float32, device=device)
        self._unscaled = False

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.scale

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the scale now and record overflow (before clipping, if any)."""
        inv_scale = self.scale.double().reciprocal().float()
        self.found_inf.zero_()
        torch._amp_foreach_non_finite_check_and_unscale_(_grads(optimizer), self.found_inf, inv_scale)
        self._unscaled = True

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimiser step, skipped on overflow, then the scale update; all on the device for fused
        optimisers. Others (never the graph's: it is fused AdamW on CUDA) need one host read to skip."""
        if not self._unscaled:
            self.found_inf.zero_()
            if getattr(optimizer, "_step_supports_amp_scaling", False):
                torch._amp_foreach_non_finite_check_and_unscale_(_grads(optimizer), self.found_inf, self._one)
            else:
                self.unscale_(optimizer)
        if getattr(optimizer, "_step_supports_amp_scaling", False):
            optimizer.grad_scale = None if self._unscaled else self.scale  # type: ignore[attr-defined]
            optimizer.found_inf = self.found_inf  # type: ignore[attr-defined]
            try:
                optimizer.step()
            finally:
                del optimizer.grad_scale, optimizer.found_inf  # type: ignore[attr-defined]
        elif not bool(self.found_inf.item()):
            optimizer.step()
        self._unscaled = False
        self.skipped.add_(self.found_inf.to(torch.int64))
        torch._amp_update_scale_(self.scale, self.growth_tracker, self.found_inf, self.growth_factor,
                                 self.backoff_factor, self.growth_interval)

    # ---- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain numbers (checkpoints load with weights_only): GradScaler's own keys."""
        return {"scale": float(self.scale), "growth_tracker": int(self.growth_tracker),
                "growth_factor": self.growth_factor, "backoff_factor": self.backoff_factor,
                "growth_interval": self.growth_interval}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """In place: a captured graph keeps reading the same tensors."""
        self.scale.fill_(float(state["scale"]))
        self.growth_tracker.fill_(int(state.get("growth_tracker", 0)))


def _grads(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


# The key under which the scaler's state travels inside the optimiser's state dict (so checkpoints,
# which save the optimiser's state, carry it without a format change; older ones lack it).
STATE_KEY = "loss_scaler"


def attach_to_optimizer(scaler: DeviceLossScaler, optimizer: torch.optim.Optimizer) -> None:
    """Make ``optimizer.state_dict()`` carry the scaler's state and ``load_state_dict`` restore it.

    Lightning's own GradScaler (the '16-mixed' plugin's) is unused under manual optimisation, so
    without this a resumed fp16 run would restart at 2**16 and overflow its way back down."""

    def save(_opt: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
        state[STATE_KEY] = scaler.state_dict()
        return state

    def load(_opt: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
        saved = state.get(STATE_KEY)
        if saved is not None:
            scaler.load_state_dict(saved)
        return {k: v for k, v in state.items() if k != STATE_KEY}

    optimizer.register_state_dict_post_hook(save)
    optimizer.register_load_state_dict_pre_hook(load)
