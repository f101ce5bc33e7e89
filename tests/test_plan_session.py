"""PlanSession: the progressive plan as one session (quick check, then the full run), without Qt."""

from medseg_gui.core import config as cfg
from medseg_gui.core import events as ev


def test_plan_session_runs_the_check_then_the_full_run(tmp_path):
    from medseg_gui.core.tools.plan_session import PlanSession

    seen: list[ev.Event] = []
    configs: list[cfg.RunConfig] = []

    class Quick:
        def __init__(self, config, sink, **_):
            configs.append(config)
            self.sink = sink

        def stop(self):
            pass

        def run(self):
            self.sink(ev.RunStarted(run_dir="", config={}, device="cpu", epochs=1, steps_per_epoch=2))
            self.sink(ev.StepMetrics(step=1, epoch=1, loss=0.5, lr=1e-3))
            result = ev.RunFinished(run_dir=f"run{len(configs)}", stopped_early=False, steps_done=1)
            self.sink(result)
            return result

    config = cfg.RunConfig()
    config.training.variant, config.dataset.image_size = "b2", 256
    result = PlanSession(config, seen.append, inner_factory=Quick).run()
    assert [c.training.variant for c in configs] == ["b0", "b2"]
    assert configs[0].dataset.image_size == 224 and configs[1].dataset.image_size == 256
    assert isinstance(result, ev.RunFinished) and result.run_dir == "run2"
    assert sum(isinstance(e, ev.RunStarted) for e in seen) == 2


def test_plan_session_reports_a_failed_check_as_a_failure(tmp_path):
    from medseg_gui.core.tools.plan_session import PlanSession

    seen: list[ev.Event] = []

    class NaN:
        def __init__(self, config, sink, **_):
            self.sink = sink

        def stop(self):
            pass

        def run(self):
            self.sink(ev.StepMetrics(step=1, epoch=1, loss=float("nan"), lr=1e-3))
            result = ev.RunFinished(run_dir="r", stopped_early=False, steps_done=1)
            self.sink(result)
            return result

    result = PlanSession(cfg.RunConfig(), seen.append, inner_factory=NaN).run()
    assert isinstance(result, ev.RunFailed)
    assert "quick check did not pass" in result.reason and "NaN" in result.reason
    assert seen[-1] is result
