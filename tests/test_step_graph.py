"""Whole-step CUDA graphs: the plan, the manual-optimisation wiring (CPU), and the capture (CUDA only)."""

import csv

import pytest
from engine_helpers import FakeDataModule, tiny_config

from medseg_gui.core.planning import speed

from medseg_gui.core.engine import step_graph
from medseg_gui.core.events import LogMessage, PhaseChanged, RunFinished
from medseg_gui.core.engine.session import TrainingSession


def test_graphs_auto_on_one_cuda_gpu_and_each_blocker_named():
    assert speed.plan_cuda_graphs("auto", on_cuda=True).enabled
    assert speed.plan_cuda_graphs("auto", on_cuda=True, precision="32").enabled
    assert not speed.plan_cuda_graphs("off", on_cuda=True).enabled
    # fp16 and accumulation no longer block it (tests/test_step_graph_modes.py)
    assert speed.plan_cuda_graphs("auto", on_cuda=True, precision="16-mixed", accumulate=4).enabled
    cases = {"no CUDA GPU": dict(on_cuda=False), "strategy": dict(on_cuda=True, devices=2, strategy="deepspeed")}
    for words, kwargs in cases.items():
        plan = speed.plan_cuda_graphs("auto", **kwargs)
        assert not plan.enabled and words in plan.reason, (words, plan)
    forced = speed.plan_cuda_graphs("on", on_cuda=True, devices=2, accumulate=2, strategy="fsdp")
    assert not forced.enabled and "cannot be used" in forced.reason and "'fsdp' strategy" in forced.reason


def test_graph_dropped_only_when_the_graph_alone_would_not_fit():
    on = speed.GraphPlan(True, "graphs auto")
    assert speed.check_graph_memory(on, graph_gb=7.5, eager_gb=6.2, budget_gb=8.0).enabled
    dropped = speed.check_graph_memory(on, graph_gb=7.5, eager_gb=6.2, budget_gb=7.0)
    assert not dropped.enabled and "7.5 GB" in dropped.reason and "budget is 7.0 GB" in dropped.reason
    # neither fits: the graph is not the problem (the OOM handler halves the batch either way)
    assert speed.check_graph_memory(on, graph_gb=9.0, eager_gb=8.0, budget_gb=7.0).enabled
    assert speed.check_graph_memory(on, graph_gb=None, eager_gb=None, budget_gb=None).enabled


def test_memory_model_puts_validation_beside_the_graph_pool():
    from medseg_gui.core.planning.memory import default_memory_model
    from medseg_gui.core.planning.memory import MemoryQuery

    model = default_memory_model()
    eager = model(MemoryQuery("b4", 32, 288, 4, "bf16-mixed"))
    graph = model(MemoryQuery("b4", 32, 288, 4, "bf16-mixed", graphs=True))
    # measured on an H200, plus the 1.35 GB context: 12.3 GB eager (bench_memory_fastpath.json, the bare
    # step), 14.9 graphed through the real Trainer (bench_train_speed_graphed_peaks.json)
    assert 12.0 < eager < 13.2 and 14.9 <= graph < 15.7 and graph > eager + 2


def test_compile_inside_our_graph_only_fuses_and_auto_waits_for_longer_runs():
    assert speed.plan_compile("on", on_cuda=True, total_steps=1, whole_step_graph=True).mode == "default"
    graphed = speed.AUTO_COMPILE_MIN_STEPS_GRAPHED
    assert not speed.plan_compile("auto", on_cuda=True, total_steps=graphed - 1, whole_step_graph=True).enabled
    assert speed.plan_compile("auto", on_cuda=True, total_steps=graphed, whole_step_graph=True).enabled
    assert speed.plan_compile("on", on_cuda=True, total_steps=1).mode == "reduce-overhead"


def test_tensor_learning_rate_survives_resume_and_the_scheduler_reaches_it():
    """The graph reads the lr tensor it captured: loading a state or stepping a scheduler must
    write into that tensor, and the config's lr must win over a saved one."""
    import torch

    layer = torch.nn.Linear(3, 2)
    first = step_graph.graph_optimizer(layer.parameters(), 1e-3, 0.01, torch.device("cpu"))
    torch.optim.lr_scheduler.LambdaLR(first, lambda e: 1.0)
    saved = first.state_dict()
    opt = step_graph.graph_optimizer(layer.parameters(), 5e-4, 0.01, torch.device("cpu"))
    holder = opt.param_groups[0]["lr"]
    opt.load_state_dict(saved)
    opt.param_groups[0]["lr"] = holder
    step_graph.set_lr(opt, 5e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.1 if e >= 1 else 1.0)
    assert opt.param_groups[0]["lr"] is holder and float(holder) == pytest.approx(5e-4)
    scheduler.step()
    assert float(holder) == pytest.approx(5e-5)


def test_optimizer_state_made_early_leaves_weights_and_the_first_step_unchanged():
    """Moments created before the first forward (memory layout) must not change training."""
    import torch

    def run(early: bool):
        torch.manual_seed(0)
        layer = torch.nn.Linear(5, 3)
        opt = step_graph.graph_optimizer(layer.parameters(), 1e-2, 0.05, torch.device("cpu"))
        torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
        before = [p.detach().clone() for p in layer.parameters()]
        if early:
            step_graph.init_optimizer_state(opt)
            assert all(torch.equal(a, b) for a, b in zip(before, layer.parameters()))
            assert all(float(opt.state[p]["step"]) == 0 for p in layer.parameters())
            assert "initial_lr" in opt.param_groups[0] and float(opt.param_groups[0]["lr"]) == pytest.approx(1e-2)
        for _ in range(3):
            layer(torch.ones(2, 5)).pow(2).sum().backward()
            opt.step()
            opt.zero_grad()
        return [p.detach().clone() for p in layer.parameters()]

    for a, b in zip(run(False), run(True)):
        assert torch.equal(a, b)


class _CpuStepGraph(step_graph.WholeStepGraph):
    """The real step logic with the two CUDA-only pieces replaced: warm-up runs on the one CPU
    stream, and "capture" either fails (to test the fallback) or records the step as a replayable
    closure over the static buffers (what a CUDA graph is, minus the GPU)."""

    fail_capture = False
    instances: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.replays = 0
        _CpuStepGraph.instances.append(self)

    def _side_stream_step(self, images, masks, last=True):
        return self._plain_step(images, masks, last)

    def _capture(self, images, masks, last=True):
        if self.fail_capture:
            raise RuntimeError("operation not permitted when stream is capturing (simulated)")
        static = (images.clone(), masks.clone())
        holder = {}

        class Replay:
            def replay(inner):
                holder["loss"].copy_(self._plain_step(*static))
                self.replays += 1

        self._static, self.graph = static, Replay()
        holder["loss"] = self._plain_step(*static).clone()
        self._static_loss = holder["loss"]
        return self._static_loss


def _graph_run(tmp_path, monkeypatch, fail_capture=False, **training):
    monkeypatch.setattr(speed, "plan_cuda_graphs", lambda setting, **kw: speed.GraphPlan(True, "graphs on (test)"))
    monkeypatch.setattr(step_graph, "WholeStepGraph", _CpuStepGraph)
    _CpuStepGraph.instances, _CpuStepGraph.fail_capture = [], fail_capture
    config = tiny_config(tmp_path, **training)
    events = []
    session = TrainingSession(config, events.append, datamodule_factory=FakeDataModule(n_train=24, n_val=8))
    return session, session.run(), events


@pytest.mark.slow
def test_graph_mode_trains_with_manual_optimisation_and_steps_the_epoch_scheduler(tmp_path, monkeypatch):
    session, result, events = _graph_run(tmp_path, monkeypatch, epochs=2, lr=1e-3)
    assert isinstance(result, RunFinished), result
    assert not session._module.automatic_optimization
    graphs = _CpuStepGraph.instances
    assert len(graphs) == 1 and graphs[0].replays == 12 - step_graph.WARMUP_STEPS - 1  # 2 epochs x 6 batches
    # freed when training ends (a live graph would keep NCCL's communicator, and the memory, alive)
    assert not graphs[0].captured and graphs[0].failed == "released"
    with open(session.run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    # the tutorial's MultiStepLR at half the epochs, stepped by the module (manual optimisation)
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-3, 1e-4])
    assert all(float(r["train_loss"]) > 0 for r in rows)
    messages = [e.message for e in events if isinstance(e, PhaseChanged)]
    assert any(m.startswith("capturing the training step") for m in messages)
    assert any(m.startswith("CUDA graph captured in") for m in messages)

    # resume: the checkpoint's tensor lr loads with weights_only and the config's lr wins
    config = tiny_config(tmp_path, epochs=3, lr=2e-3)
    resumed = TrainingSession(config, events.append, datamodule_factory=FakeDataModule(n_train=24, n_val=8),
                              resume_from=session.run_dir)
    assert isinstance(resumed.run(), RunFinished)
    with open(resumed.run_dir / "metrics.csv", newline="") as fh:
        last = list(csv.DictReader(fh))[-1]
    assert int(last["epoch"]) == 3 and float(last["lr"]) == pytest.approx(2e-4)  # past the milestone (1)


@pytest.mark.slow
def test_a_failed_capture_says_why_and_keeps_training(tmp_path, monkeypatch):
    session, result, events = _graph_run(tmp_path, monkeypatch, fail_capture=True, epochs=1)
    assert isinstance(result, RunFinished), result
    graph = _CpuStepGraph.instances[0]
    assert graph.failed and not graph.captured and graph.steps == 6
    warnings = [e.message for e in events if isinstance(e, LogMessage) and e.level == "warning"]
    assert any("CUDA graph off" in m and "capture failed" in m and "simulated" in m and "cuda_graphs" in m
               for m in warnings)
    messages = [e.message for e in events if isinstance(e, PhaseChanged)]
    assert any("capture failed" in m for m in messages)


def test_a_changed_batch_shape_falls_back_instead_of_replaying_stale_buffers():
    import torch

    layer = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    reasons = []
    _CpuStepGraph.fail_capture = False
    graph = _CpuStepGraph(lambda x, y: ((layer(x.float()) - y) ** 2).mean(), opt, on_fallback=reasons.append,
                          warmup_steps=1)
    for _ in range(3):
        graph.step(torch.ones(2, 4), torch.zeros(2, 1))
    assert graph.captured
    graph.step(torch.ones(3, 4), torch.zeros(3, 1))
    assert not graph.captured and reasons and "shape changed" in reasons[0]


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA GPU")
def test_replayed_graph_trains_exactly_like_ordinary_steps():
    """Same weights after the same batches, graph or not (dropout off, so both are deterministic)."""
    import torch

    from medseg_gui.core.engine.losses import dice_ce_loss, upsample_logits

    def make():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.GELU(),
                                    torch.nn.Conv2d(8, 3, 1)).cuda()
        return model, step_graph.graph_optimizer(model.parameters(), 1e-2, 0.01, torch.device("cuda"))

    def loss_fn(model):
        def fn(images, masks):
            logits = model(images.float() / 255.0)
            return dice_ce_loss(upsample_logits(logits, tuple(masks.shape[-2:])), masks, 3)
        return fn

    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randint(0, 255, (2, 1, 32, 32), generator=gen, dtype=torch.uint8).cuda(),
                torch.randint(0, 3, (2, 32, 32), generator=gen).cuda()) for _ in range(8)]
    plain_model, plain_opt = make()
    graph_model, graph_opt = make()
    plain = step_graph.WholeStepGraph(loss_fn(plain_model), plain_opt, warmup_steps=10**6)
    graphed = step_graph.WholeStepGraph(loss_fn(graph_model), graph_opt)
    plain_losses = [float(plain.step(*b)) for b in batches]
    graph_losses = [float(graphed.step(*b)) for b in batches]
    assert graphed.captured and graphed.failed is None
    assert graph_losses == pytest.approx(plain_losses, rel=1e-5)
    for a, b in zip(plain_model.parameters(), graph_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA GPU")
def test_a_failed_real_capture_leaves_random_numbers_working():
    """A host sync inside the step makes the capture fail; training (with dropout) must go on."""
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1)).cuda()
    opt = step_graph.graph_optimizer(model.parameters(), 1e-3, 0.0, torch.device("cuda"))

    def syncing_loss(x, y):
        loss = ((model(x) - y) ** 2).mean()
        if float(loss) < 0:  # .item(): illegal while capturing
            raise AssertionError
        return loss

    reasons = []
    graph = step_graph.WholeStepGraph(syncing_loss, opt, on_fallback=reasons.append)
    x, y = torch.randn(4, 8, device="cuda"), torch.randn(4, 1, device="cuda")
    for _ in range(step_graph.WARMUP_STEPS + 3):
        graph.step(x, y)
    assert reasons and not graph.captured
    torch.rand(3, device="cuda")  # the generator works again
