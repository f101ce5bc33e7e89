"""The progressive plan (a quick check, then the full run) behind the interface of one training session.

The GUI's training worker runs a session: something with ``run()`` and ``stop()`` that sends events to
a sink and returns the terminal event. ``PlanSession`` gives ``PlanRunner`` that shape, so the wizard
runs both stages in one worker with one event stream; it lives in core so it is tested without Qt.
"""

from __future__ import annotations

from typing import Any

from medseg_gui.core import config as cfg
from medseg_gui.core.events import RunFailed, RunFinished
from medseg_gui.core.tools.progressive_plan import CHECK_STEPS, PlanRunner, progressive_plan


class PlanSession:
    """The progressive plan behind the session interface the worker expects (``run()``, ``stop()``).

    Its result is the full run's, or a RunFailed that says why the quick check stopped the plan —
    a passed check alone is not a trained model.
    """

    def __init__(self, config: cfg.RunConfig, sink, run_dir: str | None = None, resume_from: str | None = None,
                 *, inner_factory=None, check_steps: int | None = None, **session_kwargs: Any):
        self.sink = sink
        self.runner = PlanRunner(progressive_plan(config, check_steps or CHECK_STEPS), sink,
                                 session_factory=inner_factory, **session_kwargs)

    def stop(self) -> None:
        self.runner.stop()

    def run(self) -> RunFinished | RunFailed:
        results = self.runner.run()
        if len(results) == len(self.runner.plan):
            return results[-1].result
        if results and not results[-1].passed:
            last = results[-1]
            if isinstance(last.result, RunFinished) and last.result.stopped_early:
                return last.result  # the user stopped during the check
            failure = RunFailed(run_dir=getattr(last.result, "run_dir", ""), kind="error",
                                reason=f"The quick check did not pass, so the full run was not started: {last.reason}",
                                hint=getattr(last.result, "hint", "") or "fix the problem and start again")
            self.sink(failure)
            return failure
        stopped = RunFinished(run_dir="", stopped_early=True)
        self.sink(stopped)
        return stopped
