"""The ``medseg`` command line: a thin front end over ``medseg_gui.core``.

Each topic lives in its own module with ``register(subparsers)``; handlers import heavy libraries
inside themselves so ``medseg --help`` and ``medseg hardware`` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from medseg_gui import __version__

COMMAND_MODULES = [
    "medseg_gui.cli.hardware_cmd",
    "medseg_gui.cli.config_cmd",
    "medseg_gui.cli.predict_cmd",
    "medseg_gui.cli.export_cmd",
    "medseg_gui.cli.data_cmd",
    "medseg_gui.cli.train_cmd",
    "medseg_gui.cli.tools_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medseg", description="Recommend, check data, train, predict and export SegFormer models.")
    parser.add_argument("--version", action="version", version=f"medseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
