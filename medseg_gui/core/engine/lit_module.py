"""The LightningModule: SegFormer forward, Dice+CE loss, AdamW, validation confusion counts.

GPU-friendly step: batches arrive as uint8 and are normalised on the device inside the step (so a
compiled step or a CUDA graph includes that kernel too); channels_last and fused AdamW on CUDA;
losses and confusion counts accumulate in device tensors, so nothing forces a host sync inside a
step. The event callback reads them every few steps or seconds (``read_train_loss``), which is the
only sync.

Three speeds of the same step (core/planning/speed.py decides which): eager; compiled (``torch.compile``
fuses forward, upsampling and loss); and either of those captured with the backward and the
optimiser step as one CUDA graph (core/engine/step_graph.py), which needs manual optimisation here. On
several GPUs that graph also averages the gradients (one all-reduce, core/engine/grad_sync.py); under
fp16 it keeps the loss scale on the GPU (core/engine/loss_scale.py, saved with the optimiser's state);
with gradient accumulation the graph owns it (``graph_accumulate``: Lightning's Trainer then gets 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch

from medseg_gui.core.data.normalize import input_constants, to_model_input
from medseg_gui.core.engine import grad_sync, step_graph
from medseg_gui.core.engine.losses import dice_ce_loss, upsample_logits
from medseg_gui.core.engine.metrics import SegScores, confusion_matrix, scores_from_confusion
from medseg_gui.core.planning import speed


@dataclass
class OptimSettings:
    lr: float = 3e-4
    weight_decay: float = 1e-2
    use_scheduler: bool = True
    total_epochs: int = 1  # the whole run's epochs (the scheduler milestone is half of it)
    gamma: float = 0.1


@dataclass
class ValResult:
    loss: float | None
    scores: SegScores | None


@dataclass
class RunPosition:
    """Where this fit() starts in the run: epochs done and batches done so far (resume, OOM restart)."""
    epoch_offset: int = 0
    step_offset: int = 0
    optimizer_state: dict[str, Any] | None = field(default=None, repr=False)


class SegModule(L.LightningModule):
    def __init__(self, model: torch.nn.Module, num_classes: int, optim: OptimSettings,
                 dice_include_background: bool = True, channels_last: bool = True,
                 position: RunPosition | None = None, compile_mode: str | None = None,
                 static_batch: int | None = None, cuda_graphs: bool = False, graph_accumulate: int = 1):
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.optim = optim
        self.dice_include_background = dice_include_background
        self.use_channels_last = channels_last
        self.position = position or RunPosition()
        self.forward_fn: Callable[[torch.Tensor], torch.Tensor] = self._eager_forward
        # The fast path (core/planning/speed.py): forward, upsampling and loss compiled as one function so
        # inductor fuses the full-resolution softmax/one-hot work; with cuda_graphs the whole step
        # (that, the backward and the optimiser step) is one CUDA graph replay.
        self.compile_mode = compile_mode
        self.cuda_graphs = cuda_graphs
        self.automatic_optimization = not cuda_graphs  # the graph runs backward and step itself
        self._step_graph: Any = None  # core.engine.step_graph.WholeStepGraph, built at the first step
        # Micro-batches per optimiser step when the graph accumulates (the Trainer's own is then 1:
        # manual optimisation refuses it); every micro-batch still comes through training_step.
        self.graph_accumulate = max(1, int(graph_accumulate)) if cuda_graphs else 1
        self.loss_scaler: Any = None  # core.engine.loss_scale.DeviceLossScaler under fp16 with graphs
        self.graph_log: Callable[[str, str], None] | None = None  # (level, message), set by the session
        self._norm: tuple[torch.Tensor, torch.Tensor] | None = None
        self.static_batch = static_batch  # validation batches are padded to it (no recompiles)
        self._train_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = self._train_loss
        self._eval_fn: Callable[[torch.Tensor], torch.Tensor] = self._eval_logits
        self.batches_done = self.position.step_offset  # host counter, no sync needed
        self.fault_hook: Callable[[SegModule, int], None] | None = None  # tests inject OOMs here
        self._reset_train_accumulators()
        self._val_loss_sum: torch.Tensor | None = None
        self._val_batches = 0
        self._confusion: torch.Tensor | None = None
        self.last_val: ValResult = ValResult(None, None)

    # ---- position in the run -------------------------------------------------------------------
    @property
    def run_epoch(self) -> int:
        """0-based epoch index within the whole run (continues across resume/restart)."""
        return self.position.epoch_offset + self.trainer.current_epoch

    # ---- forward -------------------------------------------------------------------------------
    def _eager_forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits at the input's resolution (SegFormer predicts at 1/4; upsampled bilinearly)."""
        return upsample_logits(self.forward_fn(pixel_values), tuple(pixel_values.shape[-2:]))

    def _model_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 batch → normalised float input, inside the (compiled, graphed) step."""
        return to_model_input(images, channels_last=self._cuda_channels_last(), constants=self._norm)

    def _cuda_channels_last(self) -> bool:
        return self.use_channels_last and self.device.type == "cuda"

    def on_fit_start(self) -> None:
        """After Lightning moved the model to its device (``setup`` still runs on the CPU copy)."""
        self._norm = input_constants(self.device)  # before any compile traces the step
        if self._cuda_channels_last():
            self.model.to(memory_format=torch.channels_last)
        speed.uncompile_regions(self.model)  # an earlier fit that ended by an exception may have left them
        if self.compile_mode:
            speed.configure_compile_cache()
            speed.prepare_compiler()
            if speed.compile_scope(self.compile_mode) == "regional":
                # each repeated block, the head and the loss compiled on their own (core/planning/speed.py)
                speed.compile_regions(self.model, self.compile_mode)
                tail = speed.compile_fn(_upsampled_loss, self.compile_mode)
                self._train_fn = lambda images, masks: tail(self.forward_fn(self._model_input(images)), masks,
                                                            self.num_classes, self.dice_include_background)
                self._eval_fn = self._eval_logits
            else:
                self._train_fn = speed.compile_fn(self._train_loss, self.compile_mode)
                self._eval_fn = speed.compile_fn(self._eval_logits, self.compile_mode)

    def on_fit_end(self) -> None:
        speed.uncompile_regions(self.model)  # regional compilation must not follow the model elsewhere

    def _train_loss(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return _upsampled_loss(self.forward_fn(self._model_input(images)), masks, self.num_classes,
                               self.dice_include_background)

    def _eval_logits(self, images: torch.Tensor) -> torch.Tensor:
        return upsample_logits(self.forward_fn(self._model_input(images)), tuple(images.shape[-2:]))

    # ---- training ------------------------------------------------------------------------------
    def _reset_train_accumulators(self) -> None:
        self._train_loss_sum: torch.Tensor | None = None
        self._train_batches = 0
        self._window_sum: torch.Tensor | None = None
        self._window_batches = 0

    def on_train_epoch_start(self) -> None:
        self._reset_train_accumulators()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.fault_hook is not None:
            self.fault_hook(self, batch[0].shape[0])
        images, masks = batch
        if self.cuda_graphs:
            graph = self._graph_step()
            loss = graph.step(images, masks)
            if batch_idx + 1 >= _finite_batches(self.trainer):
                graph.flush()  # the epoch ends mid-cycle: step on what accumulated, as Lightning does
        else:
            if self.compile_mode == "reduce-overhead":
                speed.mark_step()
            loss = self._train_fn(images, masks)
        # A CUDA-graph output is overwritten by the next replay: keep a copy, not the buffer.
        detached = loss.detach().clone() if (self.compile_mode or self.cuda_graphs) else loss.detach()
        self._train_loss_sum = detached if self._train_loss_sum is None else self._train_loss_sum + detached
        self._window_sum = detached if self._window_sum is None else self._window_sum + detached
        self._train_batches += 1
        self._window_batches += 1
        return loss

    def _graph_step(self) -> Any:
        if self._step_graph is None:
            def fell_back(reason: str) -> None:
                if self.graph_log is not None:
                    self.graph_log("warning", f"CUDA graph off for the rest of this run: {reason}. Training "
                                              "continues without it (slower); set training.cuda_graphs = "
                                              "'off' to skip the attempt.")

            self._step_graph = step_graph.WholeStepGraph(self._train_fn, self.trainer.optimizers[0],
                                                         on_fallback=fell_back, grad_sync=self._grad_sync(),
                                                         accumulate=self.graph_accumulate, scaler=self.loss_scaler)
        return self._step_graph

    def _grad_sync(self) -> Any:
        """Several processes: the step averages the gradients itself, one flat all-reduce inside the
        graph (core/engine/grad_sync.py); the strategy must then be the one that does not wrap in DDP."""
        if self.trainer.world_size < 2:
            return None
        if not grad_sync.owns_gradient_sync(self.trainer.strategy):
            raise RuntimeError("the graphed training step on several processes needs "
                               "core.grad_sync.graph_ddp_strategy() (DDP's own hooks would average twice)")
        return grad_sync.FlatGradBucket(self.parameters())

    def on_train_end(self) -> None:
        self.release_step_graph()

    def release_step_graph(self) -> None:
        """Free the captured step (its memory, and the NCCL communicator it holds on to) once
        training is over; the session also calls this when fit ends by an exception."""
        if self._step_graph is not None:
            self._step_graph.release()

    def on_train_epoch_end(self) -> None:
        """Manual optimisation (graphs) steps the epoch scheduler itself; Lightning does it otherwise."""
        if self.automatic_optimization:
            return
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    def read_window_loss(self) -> float | None:
        """Mean loss since the last read (one host sync); resets the window."""
        if self._window_sum is None or not self._window_batches:
            return None
        value = float(self._window_sum) / self._window_batches
        self._window_sum, self._window_batches = None, 0
        return value

    def read_epoch_train_loss(self) -> float | None:
        if self._train_loss_sum is None or not self._train_batches:
            return None
        total = self.trainer.strategy.reduce(self._train_loss_sum / self._train_batches, reduce_op="mean")
        return float(total)

    # ---- validation ----------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        if self._step_graph is not None and self._step_graph.grad_sync is not None:
            grad_sync.broadcast_module_states(self.model, buffers_only=True)  # rank 0's BatchNorm statistics, as DDP
        self._val_loss_sum = None
        self._val_batches = 0
        self._confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long, device=self.device)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, masks = batch
        masks = masks.long()
        logits = self._validation_logits(images)
        loss = dice_ce_loss(logits, masks, self.num_classes, self.dice_include_background).detach()
        self._val_loss_sum = loss if self._val_loss_sum is None else self._val_loss_sum + loss
        self._val_batches += 1
        assert self._confusion is not None
        self._confusion += confusion_matrix(logits.argmax(1), masks, self.num_classes)

    def _validation_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits at image size; a short last batch is padded to the static batch when compiled."""
        if not self.compile_mode:
            return self._eval_fn(images)
        n = images.shape[0]
        full = self.static_batch or n
        if n < full:
            images = torch.cat([images, images.new_zeros((full - n, *images.shape[1:]))])
        if self.compile_mode == "reduce-overhead":
            speed.mark_step()
        return self._eval_fn(images)[:n].clone()

    def on_validation_epoch_end(self) -> None:
        """Sum counts over DDP ranks (every rank calls this), then read them once."""
        if self._confusion is None or not self._val_batches:
            self.last_val = ValResult(None, None)
            return
        strategy = self.trainer.strategy
        confusion = strategy.reduce(self._confusion, reduce_op="sum")
        mean_loss = strategy.reduce(self._val_loss_sum / self._val_batches, reduce_op="mean")
        self.last_val = ValResult(float(mean_loss), scores_from_confusion(confusion))

    # ---- optimiser -----------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        if self.cuda_graphs:
            optimizer = step_graph.graph_optimizer(self.parameters(), self.optim.lr, self.optim.weight_decay,
                                                   self.device)
        else:
            fused = self.device.type == "cuda"
            optimizer = torch.optim.AdamW(self.parameters(), lr=self.optim.lr,
                                          weight_decay=self.optim.weight_decay, fused=fused or None)
        lr_holders = [group["lr"] for group in optimizer.param_groups]
        if self.cuda_graphs and str(self.trainer.precision) in speed.FP16_PRECISIONS:
            # Lightning's '16-mixed' still casts (autocast), but its GradScaler is never called under
            # manual optimisation: the graphed step scales on the device, and the optimiser's state
            # dict carries that scale into checkpoints (older checkpoints: it starts at 2**16).
            from medseg_gui.core.engine.loss_scale import DeviceLossScaler, attach_to_optimizer

            self.loss_scaler = DeviceLossScaler(self.device)
            attach_to_optimizer(self.loss_scaler, optimizer)
        if self.position.optimizer_state is not None:
            optimizer.load_state_dict(self.position.optimizer_state)
            for group, holder in zip(optimizer.param_groups, lr_holders):
                group["lr"] = holder  # keep the device tensor a graph reads (load replaced it)
            step_graph.set_lr(optimizer, self.optim.lr)  # the config's lr wins over the saved one
            self.position.optimizer_state = None
        if not self.optim.use_scheduler:
            return optimizer
        factor = lr_factor_fn(self.optim.total_epochs, self.position.epoch_offset, self.optim.gamma)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def current_lr(self) -> float | None:
        try:
            return float(self.trainer.optimizers[0].param_groups[0]["lr"])
        except (IndexError, AttributeError, RuntimeError):
            return None


def _upsampled_loss(logits: torch.Tensor, masks: torch.Tensor, num_classes: int,
                    include_background: bool) -> torch.Tensor:
    """The step's tail (full-resolution upsampling and Dice+CE) as one function, compiled on its own
    under regional compilation."""
    return dice_ce_loss(upsample_logits(logits, tuple(masks.shape[-2:])), masks, num_classes, include_background)


def _finite_batches(trainer: Any) -> float:
    """Training batches in this epoch (inf when unknown: no flush until the loader says so)."""
    n = getattr(trainer, "num_training_batches", float("inf"))
    return n if isinstance(n, (int, float)) else float("inf")


def lr_factor_fn(total_epochs: int, epoch_offset: int, gamma: float = 0.1) -> Callable[[int], float]:
    """The tutorial's MultiStepLR(milestones=[epochs // 2], gamma=0.1), in run epochs.

    A LambdaLR over ``epoch_offset + local epoch`` gives the same schedule after a resume without
    saving scheduler objects in checkpoints (which must stay plain tensors and numbers).
    """
    milestone = max(1, total_epochs // 2)

    def factor(local_epoch: int) -> float:
        return gamma if epoch_offset + local_epoch >= milestone else 1.0

    return factor
