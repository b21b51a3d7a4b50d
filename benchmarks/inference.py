"""Inference speed, PyTorch eager against ONNX Runtime, for every registered model.

For each architecture (random weights: they do not change the speed) at its default input size
(256 px; 224 for EfficientNet-Lite0; 512 for the nodule heatmap), the model directory is
exported with ``lungcad.export.onnx_export.export_onnx`` (equivalence check included) and both
runtimes run the same preprocessed batches through the same ``LungModel.predict_batch``
interface (numpy in, probabilities out):

- latency at batch 1: median of the timed calls;
- throughput at batch 32: images per second over the timed calls (after a warm-up call, left
  out where one eager call takes over 5 s, as for VGG16).

PyTorch and ONNX Runtime calls alternate, so a shared machine's changing load falls on both
alike. Both use the same number of threads (``--threads``, default 1: the CI machine has 2
cores, shared). Goal: ONNX Runtime at least 2x faster than eager at batch 1.

    .venv/bin/python benchmarks/inference.py [--threads 1] [--models ct-cnn,...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, provisional_note  # noqa: E402

GOAL_SPEEDUP = 2.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="threads for both runtimes")
    parser.add_argument("--models", default="", help="comma-separated names (default: all)")
    parser.add_argument("--latency-seconds", type=float, default=4.0,
                        help="time budget per model and runtime for batch-1 calls (default 4)")
    parser.add_argument("--throughput-batch", type=int, default=32)
    parser.add_argument("--throughput-seconds", type=float, default=10.0,
                        help="time budget per model for the batch-32 calls (at least one call "
                             "per runtime, after a warm-up call; default 10)")
    return parser.parse_args()


def build(architecture: str, folder: Path, threads: int):
    import torch

    from lungcad.export.onnx_export import export_onnx
    from lungcad.inference import load_model
    from lungcad.model_dir import ModelSpec, save_model_dir
    from lungcad.models import create_model, model_info
    from lungcad.preprocess import Preprocessing

    info = model_info(architecture)
    args = {"pretrained": False} if "pretrained" in info.defaults else {}
    torch.manual_seed(0)
    network = create_model(architecture, num_classes=2, **args)
    spec = ModelSpec(name=architecture, architecture=architecture, task="jsrt-malignant",
                     classes=["rest", "malignant"], architecture_args=args,
                     preprocessing=Preprocessing(info.input_size, info.in_channels, info.mean,
                                                 info.std))
    directory = save_model_dir(folder / architecture, network, spec)
    eager = load_model(directory)
    started = time.perf_counter()
    report = export_onnx(eager, folder / f"{architecture}.onnx")
    export_s = time.perf_counter() - started
    return eager, load_model(report.path, runtime="onnx", threads=threads), report, export_s


def alternate(calls: dict, batch: np.ndarray, min_calls: int, budget_s: float,
              warm_up: bool = True) -> dict:
    """Seconds per call for each runtime, calls alternating, after one warm-up call each."""
    for call in calls.values():
        if warm_up:
            call(batch)
    times: dict[str, list[float]] = {name: [] for name in calls}
    started = time.perf_counter()
    while (min(len(t) for t in times.values()) < min_calls
           or time.perf_counter() - started < budget_s):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call(batch)
            times[name].append(time.perf_counter() - t0)
        if min(len(t) for t in times.values()) >= 200:
            break
    return times


def main() -> int:
    args = parse_args()
    import onnxruntime
    import torch

    from lungcad.export.common import check_inputs
    from lungcad.models import list_models

    torch.set_num_threads(args.threads)
    names = [m.name for m in list_models()]
    if args.models:
        names = [n for n in names if n in args.models.split(",")]
    print(describe(("lungcad", "torch", "onnx", "onnxruntime", "numpy")))
    print(f"threads: {args.threads} (torch.set_num_threads; ONNX Runtime intra_op_num_threads); "
          f"ONNX Runtime providers: CPUExecutionProvider of {onnxruntime.get_available_providers()}")
    print()
    header = ("| model | input | eager b1 (ms) | ONNX RT b1 (ms) | b1 speed-up | eager b32 (img/s) "
              f"| ONNX RT b32 (img/s) | b32 speed-up | export (s) | max abs diff |")
    rows = [header, "|" + "---|" * 10]
    met = []
    with tempfile.TemporaryDirectory(prefix="lungcad-bench-") as tmp:
        for name in names:
            eager, onnx_model, report, export_s = build(name, Path(tmp), args.threads)
            size = eager.spec.preprocessing.size
            one = check_inputs(eager.spec, (1,), seed=2)[0]
            big = np.repeat(check_inputs(eager.spec, (1,), seed=3)[0], args.throughput_batch, 0)
            calls = {"eager": eager.predict_batch, "onnx": onnx_model.predict_batch}
            lat = alternate(calls, one, 5, args.latency_seconds)
            # A warm-up call costs little beside calls this long (VGG16: ~30 s a batch).
            slow = statistics.median(lat["eager"]) * len(big) > 5
            thr = alternate(calls, big, 1, args.throughput_seconds, warm_up=not slow)
            b1 = {k: statistics.median(v) * 1e3 for k, v in lat.items()}
            b32 = {k: args.throughput_batch * len(v) / sum(v) for k, v in thr.items()}
            speed1, speed32 = b1["eager"] / b1["onnx"], b32["onnx"] / b32["eager"]
            met.append(speed1 >= GOAL_SPEEDUP)
            rows.append(f"| {name} | {size} px | {b1['eager']:.1f} | {b1['onnx']:.1f} | "
                        f"{speed1:.2f}x | {b32['eager']:.1f} | {b32['onnx']:.1f} | {speed32:.2f}x"
                        f" | {export_s:.1f} | {report.max_abs_diff:.1e} |")
            print(rows[-1], flush=True)
            print(f"    ({len(lat['eager'])} batch-1 calls and {len(thr['eager'])} batch-"
                  f"{args.throughput_batch} calls per runtime, alternating"
                  f"{'; no batch-32 warm-up' if slow else ''})", flush=True)
            del eager, onnx_model
    print()
    print("\n".join(rows))
    print()
    print(f"goal: ONNX Runtime >= {GOAL_SPEEDUP:g}x eager at batch 1: met for {sum(met)} of "
          f"{len(met)} models")
    print(provisional_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
