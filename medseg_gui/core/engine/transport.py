"""The child-process transport's two halves that need no Qt: the command line and the line parser.

Several GPUs train in a child process (Lightning's DDP re-executes ``sys.argv``, which inside the GUI
would relaunch the window): ``medseg train --events-json`` writes one JSON event per stdout line, and
the parent turns each line back into the same typed event the in-process session would have emitted.
"""

from __future__ import annotations

import sys
from pathlib import Path

from medseg_gui.core.events import Event, EventDecodeError, LogMessage, from_json


def child_command(config_path: str | Path, resume_from: str | None = None,
                  run_dir: str | None = None) -> list[str]:
    """``medseg train --config FILE --events-json --stop-on-stdin`` with this interpreter.

    A resume passes ``--resume RUN_DIR`` instead of ``--config`` (the CLI takes the run's own config.toml).
    ``--stop-on-stdin`` gives a stop that works the same on every OS (a line ``stop``).
    """
    if getattr(sys, "frozen", False):  # a PyInstaller bundle ships the CLI as its own executable
        exe = Path(sys.executable).with_name("medseg.exe" if sys.platform == "win32" else "medseg")
        cmd = [str(exe), "train"]
    else:
        cmd = [sys.executable, "-m", "medseg_gui.cli", "train"]
    cmd += ["--resume", str(resume_from)] if resume_from else ["--config", str(config_path)]
    if run_dir:
        cmd += ["--run-dir", str(run_dir)]
    return cmd + ["--events-json", "--stop-on-stdin"]


def parse_child_line(line: str) -> Event | None:
    """One stdout line of the child: an event, or (for stray prints) a log message; blank → None."""
    text = line.strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            return from_json(text)
        except EventDecodeError:
            pass
    return LogMessage(level="info", message=text)
