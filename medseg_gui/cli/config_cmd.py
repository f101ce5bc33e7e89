"""`medseg config validate FILE` and `medseg config show`."""

from __future__ import annotations

import argparse

from medseg_gui.cli.common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="check or print configuration files")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    v = csub.add_parser("validate", help="check a config TOML and list every problem")
    v.add_argument("file")
    v.add_argument("--json", action="store_true")
    v.set_defaults(handler=run_validate)
    d = csub.add_parser("default", help="print the default configuration as TOML")
    d.set_defaults(handler=run_default)


def run_validate(args: argparse.Namespace) -> int:
    from medseg_gui.core.config import problems_in_file

    problems = problems_in_file(args.file)  # wrong types and out-of-range values together
    if args.json:
        print_json({"file": args.file, "valid": not problems,
                    "problems": [{"field": p.field, "reason": p.reason} for p in problems]})
    elif problems:
        print(f"{args.file}: {len(problems)} problem(s)")
        for p in problems:
            print(f"  - {p}")
    else:
        print(f"{args.file}: valid")
    return 1 if problems else 0


def run_default(args: argparse.Namespace) -> int:
    from medseg_gui.core.config import RunConfig, to_toml

    print(to_toml(RunConfig()), end="")
    return 0
