"""The `lungcad` command: thin verbs, heavy imports inside the functions.

Each verb lives in ``lungcad.commands.<module>`` and exposes ``register(subparsers)``, which adds
its parser and sets ``func`` (called with the parsed arguments, returning an exit status).
A :class:`~lungcad.errors.LungcadError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lungcad.version import __version__
from lungcad.errors import LungcadError

# Order here is the order `lungcad --help` lists the verbs.
VERB_MODULES = [
    "demo",
    "data",
    "models",
    "train",
    "experiment",
    "calibrate",
    "predict",
    "segment",
    "evaluate",
    "explain",
    "export",
    "serve",
    "listen",
    "pacs",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lungcad",
        description="Find signs of lung cancer in chest radiographs and lung CT slices. "
        "Research software, not a medical device.",
    )
    parser.add_argument("--version", action="version", version=f"lungcad {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in VERB_MODULES:
        importlib.import_module(f"lungcad.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        status = args.func(args)
    except LungcadError as exc:
        print(f"lungcad {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lungcad {args.verb}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
