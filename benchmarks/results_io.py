"""A benchmark's results: one JSON file under benchmarks/results/, replaced atomically.

Why one helper: every benchmark writes its results after each case, so a run cut by a time limit keeps
what it measured; core/atomic makes each write all-or-nothing (a killed benchmark leaves the previous
file or the new one, never half of one) with the user's umask.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_results(path: str | Path, doc: dict[str, Any]) -> Path:
    """Write ``doc`` as indented JSON to ``path`` (its folder created if needed); returns the path."""
    from medseg_gui.core.atomic import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
    return path
