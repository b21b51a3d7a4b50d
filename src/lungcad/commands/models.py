"""``lungcad models``: the registered architectures, as a table."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "models", help="list the registered model architectures",
        description="List each registered architecture: parameters, default input size, "
                    "normalisation and the default layer for saliency maps.")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.set_defaults(func=run)


def count_parameters(name: str, num_classes: int = 2) -> int:
    import torch

    from lungcad.models import create_model, model_info

    kwargs = {"pretrained": False} if "pretrained" in model_info(name).defaults else {}
    with torch.device("meta"):  # counts without allocating or initialising the weights
        network = create_model(name, num_classes, **kwargs)
    return sum(p.numel() for p in network.parameters())


def rows() -> list[dict]:
    from lungcad.models import list_models

    return [{"name": m.name, "params": f"{count_parameters(m.name) / 1e6:.2f}M",
             "input": f"{m.input_size}x{m.input_size}x{m.in_channels}",
             "mean/std": f"{m.mean:.3f}/{m.std:.3f}", "saliency layer": m.target_layer,
             "description": m.description} for m in list_models()]


def format_table(table: list[dict], markdown: bool = False) -> str:
    columns = list(table[0])
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(r[c] for c in columns) + " |" for r in table]
        return "\n".join(lines)
    widths = {c: max(len(c), *(len(r[c]) for r in table)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns) for r in table]
    return "\n".join(line.rstrip() for line in lines)


def run(args: argparse.Namespace) -> int:
    print(format_table(rows(), markdown=args.markdown))
    print("\nParameters are for a binary task (1 output logit). Sizes: any side divisible by "
          "the model's size multiple works; the input size above is the default.")
    return 0
