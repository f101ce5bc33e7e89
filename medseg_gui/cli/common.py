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


def positive_int(text: str) -> int:
    """argparse type: a whole number of 1 or more (argparse then prints one line and exits 2)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return value
