"""Helpers shared by the CLI modules: JSON printing and one-line user errors."""

from __future__ import annotations

import json
import sys
from typing import Any


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False, default=str))


def fail(message: str, hint: str = "", code: int = 2) -> int:
    """Print a clear error (and what to do) on stderr; return the exit code for the handler."""
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
    return code
