"""Progressive plan: the quick-check stage, the judge, and a real two-stage run with the tiny model."""

from __future__ import annotations

import math

import pytest

from engine_helpers import FakeDataModule, tiny_config
from medseg_gui.core.config import RunConfig
from medseg_gui.core.events import LogMessage, RunFailed, RunFinished, RunStarted
from medseg_gui.core.tools.progressive_plan import PlanRunner, describe, judge_stage, progressive_plan


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_plan_is_a_short_b0_224_check_then_the_full_config():
    config = RunConfig()
    config.training.variant, config.training.pretrained, config.training.compile = "b4", "/models/b4", "on"
    config.dataset.image_size, config.training.epochs = 288, 100
    check, full = progressive_plan(config, check_steps=15)
    assert (check.training.variant, check.dataset.image_size, check.training.epochs) == ("b0", 224, 1)
    assert check.training.max_steps_per_epoch == 15 and check.training.compile == "off"
    assert check.training.pretrained == "scratch"  # b4 weights cannot load into b0
    assert full.to_dict() == config.to_dict() and full is not config
    assert describe([check, full])[0].startswith("1. quick check: SegFormer-b0")
    config.dataset.image_size = 128  # never upsample the check beyond the real run
    assert progressive_plan(config)[0].dataset.image_size == 128


def test_judge_stage():
    ok = RunFinished(run_dir="r", stopped_early=False, steps_done=5)
    assert judge_stage(ok, [0.9, 0.8])[0]
    assert not judge_stage(ok, [0.9, math.nan])[0]
    assert "NaN" in judge_stage(ok, [math.inf])[1]
    assert not judge_stage(RunFinished(run_dir="r", stopped_early=True, steps_done=5), [0.9])[0]
    failed = judge_stage(RunFailed(run_dir="r", reason="dataset problem: x", hint="run medseg data check"), [])
    assert not failed[0] and "dataset problem" in failed[1] and "medseg data check" in failed[1]


class _FakeSession:
    """Stands in for TrainingSession to test the runner's sequencing without training."""
    made: list = []

    def __init__(self, config, sink, outcome):
        self.config, self.sink, self.outcome = config, sink, outcome
        _FakeSession.made.append(config)

    def stop(self):
        pass

    def run(self):
        return self.outcome


def test_runner_stops_after_a_failed_check():
    _FakeSession.made = []
    events = []
    failed = RunFailed(run_dir="r", reason="out of memory", kind="oom")
    runner = PlanRunner(progressive_plan(RunConfig()), events.append,
                        session_factory=lambda c, s: _FakeSession(c, s, failed))
    results = runner.run()
    assert len(results) == 1 and not results[0].passed and len(_FakeSession.made) == 1
    assert any(isinstance(e, LogMessage) and "full run was not started" in e.message for e in events)


@pytest.mark.slow
def test_real_plan_runs_the_check_then_the_full_run(tmp_path):
    config = tiny_config(tmp_path, epochs=1, max_steps_per_epoch=3)
    config.dataset.image_size = 64
    events = []
    results = PlanRunner(progressive_plan(config, check_steps=2), events.append,
                         datamodule_factory=FakeDataModule(n_train=16)).run()
    assert [r.passed for r in results] == [True, True], [r.reason for r in results]
    assert results[0].result.steps_done == 2 and results[1].result.steps_done == 3
    started = [e for e in events if isinstance(e, RunStarted)]
    assert len(started) == 2 and started[0].run_dir != started[1].run_dir
    assert any(isinstance(e, LogMessage) and e.message.startswith("Quick check passed") for e in events)
