"""A run's state in words, the same in the runs list, the Training page's header and the log.

Why one place: the list said "0 epochs" for a run stopped after 21 steps, and the header said Resume
"continues" while the session's log said it "restarts epoch 1". What the engine really does
(core/engine/session.py): a stop saves the weights of that moment with the count of *completed* epochs; a
resume loads those weights and runs the interrupted epoch again from its first batch. The words here
say exactly that.
"""

from __future__ import annotations

from medseg_gui.core.headline import HEADLINE_SHORT
from medseg_gui.core.words import plural  # the one plural helper, re-exported for this module's users


TRAINING_NOW = "training now"


def progress_words(epochs_done: int, steps_done: int, last_epoch: int, stopped: bool) -> str:
    """``5 epochs`` for whole epochs; ``21 steps, stopped in epoch 1`` when a stop fell mid-epoch."""
    if stopped and last_epoch > epochs_done and steps_done:
        done = f"{plural(epochs_done, 'epoch')} + " if epochs_done else ""
        return f"{done}{plural(steps_done, 'step')}, stopped in epoch {last_epoch}"
    if epochs_done:
        return plural(epochs_done, "epoch")
    return plural(steps_done, "step") if steps_done else "no steps yet"


def resume_words(epochs_done: int) -> str:
    """What Resume will do, as the session does it."""
    return f"Resume restarts epoch {epochs_done + 1} from the weights saved at the stop"


def summary_line(status: str, epochs_done: int, steps_done: int, last_epoch: int, best: float | None,
                 running: bool = False) -> str:
    """The runs list's second line: state, progress and the headline score. ``running`` (this window's
    live run) and status ``training`` (a run whose lock a live process holds) read the same."""
    state = TRAINING_NOW if running or status == "training" else status
    parts = [state, progress_words(epochs_done, steps_done, last_epoch, status == "stopped")]
    if best is not None:
        parts.append(f"{HEADLINE_SHORT} {best:.3f}")
    return " · ".join(parts)
