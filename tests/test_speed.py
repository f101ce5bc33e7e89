"""The fast path's decisions and wiring (the compile itself needs a CUDA GPU: see benchmarks/)."""

import os

import pytest
from engine_helpers import FakeDataModule, tiny_config

from medseg_gui.core.planning import speed
from medseg_gui.core.events import PhaseChanged, RunFinished
from medseg_gui.core.engine.session import TrainingSession


def test_plan_off_and_cpu_never_compile():
    assert not speed.plan_compile("off", on_cuda=True, total_steps=10**6).enabled
    on_cpu = speed.plan_compile("on", on_cuda=False, total_steps=10**6)
    assert not on_cpu.enabled and "CUDA" in on_cpu.reason
    assert not speed.plan_compile("auto", on_cuda=False, total_steps=10**6).enabled


def test_plan_auto_compiles_only_long_runs_and_drops_graphs_for_ddp():
    short = speed.plan_compile("auto", on_cuda=True, total_steps=speed.AUTO_COMPILE_MIN_STEPS - 1)
    assert not short.enabled and "too few" in short.reason
    long = speed.plan_compile("auto", on_cuda=True, total_steps=speed.AUTO_COMPILE_MIN_STEPS)
    assert long.enabled and long.mode == "reduce-overhead"
    assert speed.plan_compile("on", on_cuda=True, total_steps=1).mode == "reduce-overhead"
    assert speed.plan_compile("on", on_cuda=True, total_steps=1, devices=2).mode == "default"


def test_compile_cache_lives_in_the_app_cache(monkeypatch, _isolated_home):
    for key in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        monkeypatch.delenv(key, raising=False)
    path = speed.configure_compile_cache()
    assert path.startswith(str(_isolated_home)) and os.environ["TRITON_CACHE_DIR"].startswith(str(_isolated_home))


@pytest.mark.slow
def test_compiled_path_wiring_static_validation_and_phases(tmp_path, monkeypatch):
    """With the compiler replaced by a recorder: both steps go through it, every validation call
    sees the static batch (a short last batch is padded), no inference mode, and the warm-up is a
    visible phase."""
    import torch

    seen = {"train": [], "eval": [], "inference_mode": []}

    def fake_compile(fn, mode):
        kind = "train" if fn.__name__ == "_train_loss" else "eval"

        def wrapped(*args):
            seen[kind].append(args[0].shape[0])
            seen["inference_mode"].append(torch.is_inference_mode_enabled())
            return fn(*args)
        return wrapped

    monkeypatch.setattr(speed, "plan_compile",
                        lambda setting, **kw: speed.CompilePlan(True, "default", "compile on (test)"))
    monkeypatch.setattr(speed, "compile_fn", fake_compile)
    monkeypatch.setattr(speed, "prepare_compiler", lambda: None)
    monkeypatch.setenv(speed.COMPILE_SCOPE_ENV, "whole")  # the regional wiring: tests/test_compile_regions.py
    config = tiny_config(tmp_path, epochs=1, batch_size=4, compile="on")
    events = []
    result = TrainingSession(config, events.append, datamodule_factory=FakeDataModule(n_train=16, n_val=6)).run()
    assert isinstance(result, RunFinished), result
    assert seen["train"] == [4, 4, 4, 4]
    assert seen["eval"] == [4, 4]  # 6 validation images: 4 + 2 padded to 4
    assert not any(seen["inference_mode"])
    phases = [(e.phase, e.message) for e in events if isinstance(e, PhaseChanged)]
    names = [p for p, _ in phases]
    assert names.index("compiling") < names.index("training")
    assert any(p == "training" and m.startswith("compiled in") for p, m in phases)


def test_our_loss_matches_the_reference_recipe_on_a_fixed_batch():
    """Same loss semantics as the reference recipe: exactly in fp32, within bf16 tolerance under autocast."""
    import sys
    from pathlib import Path

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from reference_recipe import dice_coef_loss

    from medseg_gui.core.engine.losses import dice_ce_loss

    torch.manual_seed(0)
    logits = torch.randn(3, 4, 32, 32) * 3
    masks = torch.randint(0, 4, (3, 32, 32))
    ours, theirs = dice_ce_loss(logits, masks, 4), dice_coef_loss(logits, masks, 4)
    assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours_bf16 = dice_ce_loss(logits.bfloat16(), masks, 4)
    assert abs(float(ours_bf16) - float(theirs)) / float(theirs) < 1e-2
