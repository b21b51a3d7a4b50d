"""Wall time of one radiograph through the bundled nodule detector, end to end: read the file,
screen it, the detector's network, the jsrt-lungs mask, the marks and the image-level figures
(``lungcad.detection.detect.detect`` + the image probability, as ``lungcad predict`` does for each image).

Median and maximum over ``--repeats`` passes per image (after one warm-up pass), on a 512 px
JSRT PNG (from ``--jsrt``, where the shared data are present) and on the pydicom sample
RG1_UNCI.dcm (1955 x 1841 px). Goal: at most 1 s per radiograph on the CPU.

    .venv/bin/python benchmarks/detector_latency.py [--threads 2] [--repeats 5] [--runtime onnx]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, provisional_note  # noqa: E402

GOAL_S = 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="jsrt-nodules")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                        help="the detector's network on PyTorch or ONNX Runtime (exported on the "
                             "fly with its cell maps; the lung segmenter stays on PyTorch)")
    parser.add_argument("--jsrt", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared/data/jsrt")
    args = parser.parse_args()
    import torch
    from pydicom.data import get_testdata_file

    from lungcad.detection.batch import image_probabilities
    from lungcad import load_model
    from lungcad.domain.check import screen
    from lungcad.io import load_image

    torch.set_num_threads(args.threads)
    model = load_model(args.model, args.runtime,
                       threads=args.threads if args.runtime == "onnx" else None)
    samples = [Path(get_testdata_file("RG1_UNCI.dcm"))]
    jsrt = sorted((args.jsrt / "images").glob("JPCLN*.png"))[:1]
    samples = jsrt + samples
    print(describe(("torch", "onnxruntime") if args.runtime == "onnx" else ("torch",)))
    print(provisional_note())
    print(f"{args.model} on {args.runtime}, {args.threads} thread(s), {args.repeats} timed "
          "passes per image")
    for path in samples:
        times = []
        for k in range(args.repeats + 1):
            start = time.perf_counter()
            loaded = load_image(path)
            check = screen(model, [loaded.array], [path.name], [loaded.meta.modality])[0]
            detection = model.detect(loaded.array, loaded.meta.pixel_spacing_mm,
                                     loaded.meta.modality)
            model.calibrate(image_probabilities(detection, model.map_output)[None])
            if k:
                times.append(time.perf_counter() - start)
        median = statistics.median(times)
        print(f"{path.name} ({loaded.array.shape[1]} x {loaded.array.shape[0]} px): median "
              f"{median:.2f} s, max {max(times):.2f} s per radiograph, {len(detection)} marks, "
              f"in domain {check.in_domain}; goal <= {GOAL_S:g} s: "
              f"{'met' if median <= GOAL_S else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
