"""``lungcad predict``'s per-image time at torch's default thread count against one thread.

On a machine whose cores are shared with other work, torch's intra-op threads (the default:
one per core) wait for each other at every parallel region; one thread does not. The script
loads ``--model`` once, predicts one image to warm it, then the next ``--images`` JSRT
radiographs (``../shared/data/jsrt``) through :func:`lungcad.prediction.predict_input` at the
default thread count and at 1, and prints seconds per image and the load average.

    .venv/bin/python benchmarks/predict_threads.py [--images 5] [--model jsrt-nodules]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, load_average, provisional_note  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LUNGCAD_SHARED_DATA", ROOT.parent / "shared" / "data"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--model", default="jsrt-nodules")
    args = parser.parse_args()
    labels = SHARED / "jsrt" / "labels.csv"
    if not labels.is_file():
        print(f"the JSRT data is not at {SHARED / 'jsrt'}; set LUNGCAD_SHARED_DATA")
        return 1
    import pandas as pd
    import torch

    from lungcad.inference import load_model
    from lungcad.prediction import collect_input, model_task, predict_input

    print(describe(("lungcad", "torch")))
    paths = [str(SHARED / "jsrt" / p) for p in pd.read_csv(labels)["path"][:args.images + 1]]
    model = load_model(args.model)
    task = model_task(model)
    predict_input(model, collect_input(paths[:1], task), progress=False)  # warm
    default = torch.get_num_threads()
    print(f"model {args.model}, {args.images} images, batch size 4, nice {os.nice(0)}")
    print("| torch threads | s per image | load average |\n|---|---|---|")
    for threads in (default, 1):
        torch.set_num_threads(threads)
        started = time.perf_counter()
        predict_input(model, collect_input(paths[1:], task), batch_size=4, progress=False)
        seconds = (time.perf_counter() - started) / args.images
        print(f"| {threads}{' (default)' if threads == default else ''} | {seconds:.2f} | "
              f"{load_average()} |", flush=True)
    torch.set_num_threads(default)
    print(provisional_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
