"""A first FROC baseline for nodule marks on JSRT: the out-of-fold cell maps of a finished
nodule-heatmap experiment, turned into marks.

For every fold k of the experiment, fold k's model (which never saw those images) scores its
own test images: the sigmoid of its 16 px nodule cell map; the K strongest local maxima at least
``--min-distance-mm`` apart become marks (centre of the cell, score = the cell's probability).
With ``--lungs``, a cell counts only if its centre lies inside the bundled ``jsrt-lungs``
segmenter's mask of that image, dilated by ``--lung-margin-mm`` (nodules sit in the lungs; the
label rectangles and the image border do not). Writes FINDINGS.csv for
``lungcad evaluate --findings FINDINGS.csv --dataset DATASET --out REPORT``.

    python benchmarks/jsrt_heatmap_froc.py --experiment runs/jsrt-nodule-heatmap \
        --out runs/froc/cells.csv [--lungs]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", required=True, type=Path,
                        help="a finished `lungcad experiment` folder of configs/jsrt-nodule-heatmap.yaml")
    parser.add_argument("--out", required=True, type=Path, help="findings CSV to write")
    parser.add_argument("--peaks", type=int, default=5, help="marks per image at most (5)")
    parser.add_argument("--min-distance-mm", type=float, default=20.0,
                        help="marks at least this far apart (20 mm)")
    parser.add_argument("--lungs", action="store_true",
                        help="only cells inside the jsrt-lungs mask (dilated)")
    parser.add_argument("--lung-margin-mm", type=float, default=10.0,
                        help="dilation of the lung mask with --lungs (10 mm)")
    return parser.parse_args()


def peaks(probability: np.ndarray, allowed: np.ndarray, k: int,
          min_cells: float) -> list[tuple[int, int, float]]:
    """Up to ``k`` (row, column, value) maxima of ``probability`` among ``allowed`` cells, each
    at least ``min_cells`` from the ones before (greedy non-maximum suppression)."""
    values = np.where(allowed, probability, -np.inf)
    rows, cols = np.indices(values.shape)
    found: list[tuple[int, int, float]] = []
    while len(found) < k and np.isfinite(values).any():
        r, c = np.unravel_index(int(np.argmax(values)), values.shape)
        found.append((int(r), int(c), float(probability[r, c])))
        values[(rows - r) ** 2 + (cols - c) ** 2 < min_cells ** 2] = -np.inf
    return found


def main() -> int:
    import torch
    from scipy import ndimage

    from lungcad.data.jsrt_geometry import jsrt_mm_per_pixel
    from lungcad.data.splits import load_fold
    from lungcad.inference import load_model
    from lungcad.io import load_image
    from lungcad.preprocess import resize_area

    args = parse_args()
    started = time.time()
    meta = json.loads((args.experiment / "meta.json").read_text())
    lungs = load_model("jsrt-lungs") if args.lungs else None
    rows = []
    for k in range(meta["split"]["folds_run"]):
        view = load_fold(meta["config"]["dataset"], meta["split"]["path"], meta["task"], k)
        model = load_model(args.experiment / f"fold-{k}" / "model")
        for path in view.test:
            image = load_image(view.manifest.image_path(path)).array
            with torch.inference_mode():
                cells = model.network.heatmap(torch.from_numpy(model.prepare(image, path)[None]))
            probability = torch.sigmoid(cells[0, 0].float()).numpy()
            grid = probability.shape[0]
            cell_px = image.shape[1] / grid                      # image pixels per cell
            mm_per_px = jsrt_mm_per_pixel(image.shape[1])
            allowed = np.ones_like(probability, bool)
            if lungs is not None:
                mask = lungs.segment(image).mask
                mask = ndimage.binary_dilation(
                    mask, iterations=max(1, round(args.lung_margin_mm / mm_per_px)))
                allowed = resize_area(mask.astype(np.float32), (grid, grid)) > 0
            for r, c, score in peaks(probability, allowed, args.peaks,
                                     args.min_distance_mm / (cell_px * mm_per_px)):
                rows.append({"path": path, "x": (c + 0.5) * cell_px - 0.5,
                             "y": (r + 0.5) * cell_px - 0.5, "radius_mm": 8.0, "score": score,
                             "frame_size": image.shape[1], "fold": k})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)
    print(describe(("torch",)))
    print(f"{len(rows)} marks on {len({r['path'] for r in rows})} images in "
          f"{time.time() - started:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
