"""The `lungcad` command: thin verbs, heavy imports inside the functions.

Each verb lives in ``lungcad.commands.<module>`` and exposes ``register(subparsers)``, which adds
its parser and sets ``func`` (called with the parsed arguments, returning an exit status).
A :class:`~lungcad.errors.LungcadError` becomes one line on stderr and exit status 2; what the
image readers warn about (:class:`~lungcad.io.ImageReadWarning`) becomes one ``note:`` line.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

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
    args, extra = parser.parse_known_args(argv)
    if extra[:1] == ["--"] and isinstance(getattr(args, "inputs", None), list):
        # Python 3.11's argparse leaves what follows "--" unmatched where the inputs are
        # nargs="*" (predict: none are needed with --list); they are inputs all the same
        args.inputs += extra[1:]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_notes(args.verb, warnings.showwarning)
            status = args.func(args)
    except LungcadError as exc:
        print(f"lungcad {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lungcad {args.verb}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


def _one_line_notes(verb: str, show):
    """``warnings.showwarning`` that prints an ImageReadWarning as one ``note:`` line (no file
    name and source line of lungcad's own code), and any other warning as ``show`` does."""
    def showwarning(message, category, filename, lineno, file=None, line=None):
        from lungcad.io import ImageReadWarning

        if issubclass(category, ImageReadWarning):
            print(f"lungcad {verb}: note: {message}", file=file or sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)
    return showwarning


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
