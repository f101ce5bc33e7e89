"""Small helpers for text people read: counts with the right plural ("1 worker", "2 workers") and
durations ("3 min 05 s").

One place, so messages from every module say it the same way.
"""

from __future__ import annotations

import math

IRREGULAR = {"series": "series", "batch": "batches", "class": "classes"}


def plural(n: int | float, word: str, many: str | None = None) -> str:
    """'1 epoch', '5 epochs', '1 data-loading worker' (only the last word changes)."""
    if n == 1:
        return f"{n:g} {word}" if isinstance(n, float) else f"{n} {word}"
    if many is None:
        head, _, last = word.rpartition(" ")
        last = IRREGULAR.get(last, last + "s")
        many = f"{head} {last}" if head else last
    return f"{n:g} {many}" if isinstance(n, float) else f"{n} {many}"


def format_duration(seconds: float | None) -> str:
    """'2 days 5 h', '1 h 02 min', '3 min 05 s', '12 s', or '—' when unknown. One format for every
    time the user reads (the live ETA, the speed estimate, the command line's progress line), so an
    estimate and the countdown that follows it look alike."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    s = int(round(seconds))
    if s >= 48 * 3600:
        return f"{plural(s // 86400, 'day')} {s % 86400 // 3600} h"
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"
