"""Silencing Lightning's advice that does not apply to our runs: one list, one place.

Lightning warns about choices made here on purpose (few loader workers on a small machine, a logging
interval longer than a tiny epoch, our own ``on_after_batch_transfer``, DDP's gradient-stride notice on
channels-last models). Left alone, each would reach the terminal, the GUI's log and ``events.jsonl`` as
if something were wrong. The training session, the tools' throwaway trainers and ``medseg train`` all
silence the same things, so the list lives here and nowhere else; a new false alarm is added once.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

# Advice that never applies to a run this app starts (matched against the warning's message).
ADVICE = (
    r".*does not have many workers.*",
    r".*LightningModule.log.*",
    r".*smaller than the logging interval.*",
    r".*overridden `on_after_batch_transfer`.*",
    r"Grad strides do not match bucket view strides.*",
    r".*LeafSpec.*is deprecated.*",
)
# Also true of a tool's short, throwaway trainer (no epochs limit, no validation, a reused scratch folder).
TRIAL_ADVICE = (
    r".*validation_step.*val_dataloader.*",
    r".*max_epochs.*not set.*",
    r".*GPU available but not used.*",
    r".*Checkpoint directory.*",
    r".*exists and is not empty.*",
    r".*module\(s\) in eval mode.*",
)
LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "lightning.pytorch.tuner.lr_finder",
           "lightning.pytorch.utilities.rank_zero")
TRIAL_LOG_LEVEL = logging.ERROR + 10  # a tool's trainer says nothing; the tool reports what it found


def lightning_logs_at(level: int) -> dict[str, int]:
    """Set Lightning's loggers to ``level``; return their earlier levels for restoring. Imports
    Lightning first: it sets its own level on import, which would otherwise undo this one."""
    import lightning.pytorch  # noqa: F401

    previous = {name: logging.getLogger(name).level for name in LOGGERS}
    for name in LOGGERS:
        logging.getLogger(name).setLevel(level)
    return previous


@contextlib.contextmanager
def quiet_lightning(*, trial: bool = False) -> Iterator[None]:
    """Within the block, ignore ``ADVICE`` (and, for a tool's ``trial``, ``TRIAL_ADVICE`` with
    Lightning's log quiet too); the warning filters and log levels are restored after."""
    with warnings.catch_warnings():
        for pattern in ADVICE + (TRIAL_ADVICE if trial else ()):
            warnings.filterwarnings("ignore", message=pattern)
        previous = lightning_logs_at(TRIAL_LOG_LEVEL) if trial else {}
        try:
            yield
        finally:
            for name, level in previous.items():
                logging.getLogger(name).setLevel(level)
