"""The graphed step under fp16 (device-side loss scale) and gradient accumulation: the maths, on the CPU.

On the CPU the captured graphs are stood in for by closures over the same static buffers (what a CUDA
graph is, minus the GPU), so the step's own logic (which graph runs when, the cycle, the flush) is
what runs; the reference is PyTorch's own GradScaler and a plain AdamW on the whole batch.
"""

import math

import pytest
import torch

from cpu_graphs import CpuGraphs
from spawn_ranks import spawn_ranks

from medseg_gui.core.engine import step_graph
from medseg_gui.core.engine.grad_sync import FlatGradBucket
from medseg_gui.core.engine.loss_scale import DeviceLossScaler, attach_to_optimizer
from medseg_gui.core.planning import speed


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))


def _fused_adamw(model, lr=1e-2):
    # fused AdamW takes GradScaler's grad_scale/found_inf (as the graph's does on CUDA)
    return torch.optim.AdamW(model.parameters(), lr=torch.tensor(lr), weight_decay=0.05, fused=True)


def _batches(n, size, seed=1, inf_at=()):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        x, y = torch.randn(size, 6, generator=g), torch.randn(size, 2, generator=g)
        if i in inf_at:
            x[0, 0] = float("inf")  # the forward overflows: non-finite gradients, a skipped step
        out.append((x, y))
    return out


def _loss_fn(model):
    return lambda x, y: torch.nn.functional.mse_loss(model(x), y)


def _state(model, opt):
    params = [p.detach().clone() for p in model.parameters()]
    moments = [(opt.state[p]["exp_avg"].clone(), opt.state[p]["exp_avg_sq"].clone(), float(opt.state[p]["step"]))
               for p in model.parameters() if p in opt.state]
    return params, moments


def _same(a, b):
    (pa, ma), (pb, mb) = a, b
    assert len(pa) == len(pb) and len(ma) == len(mb)
    for x, y in zip(pa, pb):
        assert torch.equal(x, y)
    for (m1, v1, s1), (m2, v2, s2) in zip(ma, mb):
        assert torch.equal(m1, m2) and torch.equal(v1, v2) and s1 == s2


def test_device_scaler_is_grad_scaler_step_for_step_with_an_overflow_and_growth():
    """Scale 2**16, an inf at step 3 (skipped: params, moments and step count untouched, scale
    halves), growth every 2 clean steps: bit-identical to torch.amp.GradScaler on every step."""
    batches = _batches(8, 4, inf_at=(2,))
    ref_model, ours_model = _model(), _model()
    ref_opt, ours_opt = _fused_adamw(ref_model), _fused_adamw(ours_model)
    ref_scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16, growth_interval=2)
    scaler = DeviceLossScaler("cpu", growth_interval=2)
    graph = CpuGraphs(_loss_fn(ours_model), ours_opt, warmup_steps=2, scaler=scaler)
    scales = []
    for i, (x, y) in enumerate(batches):
        before = _state(ours_model, ours_opt)
        ref_opt.zero_grad(set_to_none=True)
        ref_scaler.scale(_loss_fn(ref_model)(x, y)).backward()
        ref_scaler.step(ref_opt)
        ref_scaler.update()
        graph.step(x, y)
        _same(_state(ref_model, ref_opt), _state(ours_model, ours_opt))
        assert float(scaler.scale) == ref_scaler.get_scale()
        assert int(scaler.growth_tracker) == int(ref_scaler._growth_tracker)
        scales.append(float(scaler.scale))
        if i == 2:
            _same(before, _state(ours_model, ours_opt))  # the overflow step changed nothing
    assert graph.captured and graph.replays["last"] == len(batches) - 2
    assert scales[:4] == [2.0 ** 16, 2.0 ** 17, 2.0 ** 16, 2.0 ** 16]  # grow, back off, then count again
    assert scales[4] == 2.0 ** 17 and int(scaler.skipped) == 1


def _sgd(model):
    # plain SGD is not invariant to the gradient's scale (Adam nearly is): a wrong 1/k shows
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


@pytest.mark.parametrize("make_opt", [_fused_adamw, _sgd])
def test_accumulating_two_micro_batches_equals_one_step_on_the_double_batch(make_opt):
    """k=2 at batch B (loss / 2, gradients summed in the persistent buffer) against one step at
    batch 2B with the mean loss: equal to fp32 rounding (atol 1e-6, rtol 1e-5: only the order of
    the sums differs), over a warm-up, the capture and several replays of both graphs."""
    batches = _batches(12, 4, seed=3)
    ref_model, ours_model = _model(1), _model(1)
    ref_opt, ours_opt = make_opt(ref_model), make_opt(ours_model)
    graph = CpuGraphs(_loss_fn(ours_model), ours_opt, warmup_steps=2, accumulate=2)
    assert isinstance(graph.grads, FlatGradBucket) and not graph.grads.reduce
    for i in range(0, len(batches), 2):
        (x1, y1), (x2, y2) = batches[i], batches[i + 1]
        ref_opt.zero_grad(set_to_none=True)
        _loss_fn(ref_model)(torch.cat([x1, x2]), torch.cat([y1, y2])).backward()
        ref_opt.step()
        graph.step(x1, y1)
        graph.step(x2, y2)
        for a, b in zip(ref_model.parameters(), ours_model.parameters()):
            torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)
    assert graph.optimizer_steps == 6 and graph.position == 0
    assert graph.replays == {"micro": 4, "last": 4}  # 2 warm-up cycles eager, then 4 cycles replayed
    assert all(float(b.abs().max()) == 0 for b in graph.grads.buffers.values())  # zeroed after the step
    for p, view in zip(graph.grads.params, graph.grads.views):
        assert p.grad is view  # the backward accumulated into the persistent buffer


def test_fp16_scale_and_accumulation_together_match_grad_scaler_on_the_double_batch():
    batches = _batches(8, 3, seed=4, inf_at=(5,))
    ref_model, ours_model = _model(2), _model(2)
    ref_opt, ours_opt = _fused_adamw(ref_model), _fused_adamw(ours_model)
    ref_scaler = torch.amp.GradScaler("cpu", growth_interval=1)
    scaler = DeviceLossScaler("cpu", growth_interval=1)
    graph = CpuGraphs(_loss_fn(ours_model), ours_opt, warmup_steps=1, accumulate=2, scaler=scaler)
    for i in range(0, len(batches), 2):
        (x1, y1), (x2, y2) = batches[i], batches[i + 1]
        ref_opt.zero_grad(set_to_none=True)
        ref_scaler.scale(_loss_fn(ref_model)(torch.cat([x1, x2]), torch.cat([y1, y2]))).backward()
        ref_scaler.step(ref_opt)
        ref_scaler.update()
        graph.step(x1, y1)
        graph.step(x2, y2)
        assert float(scaler.scale) == ref_scaler.get_scale()
        for a, b in zip(ref_model.parameters(), ours_model.parameters()):
            torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)
    assert int(scaler.skipped) == 1 and float(ours_opt.state[next(ours_model.parameters())]["step"]) == 3


@pytest.mark.parametrize("make_opt", [_fused_adamw, _sgd])
def test_a_cycle_cut_by_the_epoch_end_is_flushed_as_lightning_steps_it(make_opt):
    """k=3 over 4 micro-batches: one full cycle, then the epoch's last batch alone, divided by 3 (as
    Lightning's accumulation divides the loss by k on every batch, the short cycle's included)."""
    batches = _batches(4, 2, seed=5)
    ref_model, ours_model = _model(3), _model(3)
    ref_opt, ours_opt = make_opt(ref_model), make_opt(ours_model)
    graph = CpuGraphs(_loss_fn(ours_model), ours_opt, warmup_steps=1, accumulate=3)
    for cycle in (batches[:3], batches[3:]):
        ref_opt.zero_grad(set_to_none=True)
        for x, y in cycle:
            (_loss_fn(ref_model)(x, y) / 3).backward()
        ref_opt.step()
    assert not graph.flush()  # nothing open yet
    for x, y in batches:
        graph.step(x, y)
    assert graph.position == 1 and graph.optimizer_steps == 1
    assert graph.flush() and graph.position == 0 and graph.optimizer_steps == 2
    assert not graph.flush()
    for a, b in zip(ref_model.parameters(), ours_model.parameters()):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)


def test_accumulation_refuses_overlapped_buckets():
    class Buckets:
        buckets = [1, 2]

        def attach(self): ...

        def zero_(self): ...

        def all_reduce(self): ...

    opt = _fused_adamw(_model())
    with pytest.raises(ValueError, match="one-bucket"):
        step_graph.WholeStepGraph(lambda x, y: x.sum(), opt, grad_sync=Buckets(), accumulate=2)


def test_loss_scale_travels_in_the_optimizer_state_and_old_states_start_at_2_16(tmp_path):
    model = _model()
    opt = _fused_adamw(model)
    scaler = DeviceLossScaler("cpu")
    attach_to_optimizer(scaler, opt)
    scaler.scale.fill_(512.0)
    scaler.growth_tracker.fill_(7)
    path = tmp_path / "opt.pt"
    torch.save(opt.state_dict(), path)
    saved = torch.load(path, weights_only=True)
    assert saved["loss_scaler"]["scale"] == 512.0 and saved["loss_scaler"]["growth_tracker"] == 7

    opt2 = _fused_adamw(model)
    resumed = DeviceLossScaler("cpu")
    held = resumed.scale
    attach_to_optimizer(resumed, opt2)
    opt2.load_state_dict(saved)
    assert resumed.scale is held and float(held) == 512.0 and int(resumed.growth_tracker) == 7

    old = {k: v for k, v in saved.items() if k != "loss_scaler"}
    fresh = DeviceLossScaler("cpu")
    opt3 = _fused_adamw(model)
    attach_to_optimizer(fresh, opt3)
    opt3.load_state_dict(old)
    assert float(fresh.scale) == 2.0 ** 16 and int(fresh.growth_tracker) == 0


def test_fp16_and_accumulation_no_longer_block_the_graph_and_the_words_say_so():
    fp16 = speed.plan_cuda_graphs("auto", on_cuda=True, precision="16-mixed")
    assert fp16.enabled and "loss scale kept on the GPU" in fp16.reason
    acc = speed.plan_cuda_graphs("auto", on_cuda=True, accumulate=2)
    assert acc.enabled and "accumulating 2 micro-batches per optimiser step" in acc.reason
    both = speed.plan_cuda_graphs("on", on_cuda=True, devices=2, precision="16", accumulate=4)
    assert both.enabled and "4 micro-batches" in both.reason and "2 GPUs" in both.reason
    plain = speed.plan_cuda_graphs("auto", on_cuda=True)
    assert plain.reason.endswith("replays as one graph after 3 warm-up steps") or "one graph after" in plain.reason
    assert not speed.plan_cuda_graphs("auto", on_cuda=False, accumulate=2).enabled


@pytest.mark.slow
def test_session_hands_accumulation_to_the_graph_and_lightning_gets_one(tmp_path, monkeypatch):
    """A real (CPU) session with the graph forced on and accumulate 4 over 6 batches an epoch: the
    Trainer accumulates 1, the step accumulates 4 (one full cycle and one flushed a epoch), the
    counters still count batches, and the logged plan speaks of 4 micro-batches."""
    from engine_helpers import FakeDataModule, tiny_config

    from medseg_gui.core.engine.session import TrainingSession
    from medseg_gui.core.events import LogMessage, RunFinished

    real = speed.plan_cuda_graphs
    monkeypatch.setattr(speed, "plan_cuda_graphs", lambda setting, **kw: real(setting, **{**kw, "on_cuda": True}))
    built = []

    class Recorded(CpuGraphs):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(step_graph, "WholeStepGraph", Recorded)
    config = tiny_config(tmp_path, epochs=2, accumulate_grad_batches=4, cuda_graphs="auto")
    events = []
    session = TrainingSession(config, events.append, datamodule_factory=FakeDataModule(n_train=24, n_val=8))
    result = session.run()
    assert isinstance(result, RunFinished), getattr(result, "detail", result)
    assert session._trainer.accumulate_grad_batches == 1
    assert session._module.graph_accumulate == 4 and not session._module.automatic_optimization
    graph = built[-1]
    assert graph.accumulate == 4 and graph.steps == 12 and graph.optimizer_steps == 4 and graph.position == 0
    assert session._module.batches_done == 12
    logged = [e.message for e in events if isinstance(e, LogMessage)]
    assert any("accumulating 4 micro-batches per optimiser step" in m for m in logged), logged
    assert math.isfinite(result.best_f1 or 0.0)


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA GPU")
@pytest.mark.parametrize("accumulate", [1, 2])
def test_captured_fp16_graphs_train_like_ordinary_steps_through_an_overflow(accumulate):
    """On a GPU: fp16 autocast, the device loss scale and (k=2) the two graphs, captured and
    replayed, against the same step run ordinarily; an inf input after the capture must be skipped
    by both (the scale backs off alike), and the weights agree (rtol 1e-4, atol 1e-5)."""
    def make():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(2, 8, 3, padding=1), torch.nn.GELU(),
                                    torch.nn.Conv2d(8, 3, 1)).cuda()
        opt = step_graph.graph_optimizer(model.parameters(), 1e-2, 0.01, torch.device("cuda"))
        loss = lambda x, y: torch.nn.functional.cross_entropy(model(x), y)
        return model, opt, loss

    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(2, 2, 16, 16, generator=gen).cuda(), torch.randint(0, 3, (2, 16, 16), generator=gen).cuda())
               for _ in range(16)]
    batches[11][0][0, 0, 0, 0] = float("inf")
    runs = []
    for warmup in (10**6, step_graph.WARMUP_STEPS):
        model, opt, loss = make()
        scaler = DeviceLossScaler("cuda")
        graph = step_graph.WholeStepGraph(loss, opt, warmup_steps=warmup, accumulate=accumulate, scaler=scaler)
        with torch.autocast("cuda", dtype=torch.float16):
            losses = [float(graph.step(*b)) for b in batches]
        torch.cuda.synchronize()
        runs.append((model, graph, scaler, losses))
    (plain_model, plain, plain_scaler, plain_losses), (graph_model, graphed, scaler, graph_losses) = runs
    assert graphed.captured and graphed.failed is None and not plain.captured
    # the injected overflow at least (a natural one at 2**16 would be skipped by both alike)
    assert int(scaler.skipped) == int(plain_scaler.skipped) >= 1
    assert float(scaler.scale) == float(plain_scaler.scale) <= 2.0 ** 15
    finite = [i for i in range(len(batches)) if i != 11]
    assert [graph_losses[i] for i in finite] == pytest.approx([plain_losses[i] for i in finite], rel=1e-4)
    for a, b in zip(plain_model.parameters(), graph_model.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_bench_graph_modes_dry_run_writes_its_json_and_records_the_graph(tmp_path):
    """The GPU benchmark's tiny CPU mode, end to end (fresh process per case, as on the GPU)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_graph_modes.py"), "--dry-run",
                           "--out", str(out), "--data", str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    by = {r["case"]: r for r in doc["results"]}
    graphed, eager = by["b0-2x2-64:32:graph"], by["b0-2-64:32:eager"]
    assert "error" not in graphed and "error" not in eager, doc
    assert graphed["graph_captured"] and graphed["trainer_accumulate"] == 1 and graphed["module_accumulate"] == 2
    assert graphed["optimizer_steps"] == doc["steps"] // 2 and len(graphed["losses"]) == doc["steps"]
    assert not eager["graph_captured"] and eager["images_per_s"] > 0
    assert doc["comparisons"]["graph_not_captured"] == []


def test_bench_graph_modes_cases_name_graph_compiled_or_eager():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_graph_modes

    case = bench_graph_modes.parse_case("b5-16x2-288:bf16:compiled")
    assert (case["batch"], case["accumulate"], case["graphs"], case["compiled"]) == (16, 2, True, True)
    assert bench_graph_modes.parse_case("b5-32-288:bf16:graph")["compiled"] is False
    with pytest.raises(SystemExit, match="mode must be one of graph, compiled, eager"):
        bench_graph_modes.parse_case("b5-32-288:bf16:graphs")


def _two_rank_fp16_accumulation(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """One rank: the graphed step's code (2 ordinary cycles, then the CPU stand-in of the graphs) with
    the flat-bucket all-reduce, k=2 and the device loss scale; rank 1 alone gets an inf in its 3rd
    cycle. Writes its weights and scale."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = _model(7)  # same initial weights on both ranks
        opt = _fused_adamw(model)
        scaler = DeviceLossScaler("cpu", growth_interval=2)
        bucket = FlatGradBucket(model.parameters())
        graph = CpuGraphs(_loss_fn(model), opt, warmup_steps=2, grad_sync=bucket, accumulate=2, scaler=scaler)
        for x, y in _batches(8, 3, seed=20 + rank, inf_at=(4,) if rank == 1 else ()):
            graph.step(x, y)
        torch.save({"params": [p.detach().clone() for p in model.parameters()], "scale": float(scaler.scale),
                    "skipped": int(scaler.skipped)}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_overflow_on_one_gpu_is_skipped_by_every_gpu_and_the_maths_is_the_whole_batch(tmp_path):
    """Two processes (gloo): the overflow check reads the averaged buffer, so an inf on rank 1 alone
    makes both ranks skip that step and back off the same scale; the weights stay identical across
    ranks and equal one process's GradScaler step on all four micro-batches together (atol 1e-6,
    rtol 1e-5)."""
    spawn_ranks(_two_rank_fp16_accumulation, 2, 2, str(tmp_path / "rendezvous"), str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0]["skipped"] == ranks[1]["skipped"] == 1 and ranks[0]["scale"] == ranks[1]["scale"]
    for a, b in zip(ranks[0]["params"], ranks[1]["params"]):
        assert torch.equal(a, b)

    model = _model(7)
    opt = _fused_adamw(model)
    scaler = torch.amp.GradScaler("cpu", growth_interval=2)
    per_rank = [_batches(8, 3, seed=20 + r, inf_at=(4,) if r == 1 else ()) for r in range(2)]
    for cycle in range(4):
        micro = [per_rank[r][2 * cycle + i] for r in range(2) for i in range(2)]
        opt.zero_grad(set_to_none=True)
        loss = _loss_fn(model)(torch.cat([m[0] for m in micro]), torch.cat([m[1] for m in micro]))
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    assert scaler.get_scale() == ranks[0]["scale"]
    for a, b in zip(model.parameters(), ranks[0]["params"]):
        torch.testing.assert_close(b, a.detach(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("precision, saved_scale, expected",
                         [("16-mixed", 1024.0, 1024.0), ("16-mixed", None, 2.0 ** 16), ("bf16-mixed", 1024.0, None)])
def test_the_module_keeps_a_resumed_fp16_runs_loss_scale(precision, saved_scale, expected):
    """The checkpoint's optimiser state carries the scale (Lightning's own scaler is unused under
    manual optimisation); an old checkpoint without it starts at 2**16; bf16 has no scaler."""
    import types

    from medseg_gui.core.engine.lit_module import OptimSettings, RunPosition, SegModule

    def module(state):
        m = SegModule(_model(), 2, OptimSettings(use_scheduler=False), cuda_graphs=True, graph_accumulate=2,
                      position=RunPosition(optimizer_state=state))
        m._trainer = types.SimpleNamespace(precision=precision)
        return m

    first = module(None)
    opt = first.configure_optimizers()
    state = opt.state_dict()
    if first.loss_scaler is not None:
        assert state["loss_scaler"]["scale"] == 2.0 ** 16
        state["loss_scaler"]["scale"] = saved_scale
        if saved_scale is None:
            del state["loss_scaler"]
    resumed = module(state)
    resumed.configure_optimizers()
    assert resumed.graph_accumulate == 2
    assert (None if resumed.loss_scaler is None else float(resumed.loss_scaler.scale)) == expected
