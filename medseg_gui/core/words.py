"""Small helpers for text people read: counts with the right plural ("1 worker", "2 workers").

One place, so messages from every module say it the same way.
"""

from __future__ import annotations

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
