"""Do the synthetic nodules look like the real ones, in the numbers? Per fold of the committed
``splits/jsrt-nodule-10fold.json``: a :class:`lungcad.detection.simulate.FoldSimulator` on the
fold's training images only (train + val parts; its test part refused) measures the real
training nodules' contrast (mean within half the radius minus the 1.3-2 radius ring) and size,
draws synthetic ones (projected spheres/ellipsoids and pasted real nodules) into the training
images' lungs (``jsrt-lungs`` masks), and measures each synthetic nodule's contrast on the
output image the same way; spheres' sizes are measured on the output too (the disc with the
area where the nodule added >= 10% of its peak). Two-sample Kolmogorov-Smirnov tests compare
them with the real training nodules.

    python studies/simulated_nodules.py --dataset ../shared/data/jsrt --folds 0 1 2 \\
        --per-image 4 --sheet runs/simulated/sheet.png

``--sheet`` writes crops of real and simulated nodules side by side (JSRT pixels: kept under
runs/, never committed). Masks are read from ``runs/candidates/masks`` where
``studies/candidate_recall.py`` cached them, else computed.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def loaders(dataset: Path, mask_cache: Path):
    from lungcad.io import load_image

    @functools.lru_cache(maxsize=None)
    def image(path: str) -> np.ndarray:
        return load_image(dataset / path).array

    @functools.lru_cache(maxsize=None)
    def mask(path: str) -> np.ndarray:
        entry = mask_cache / (path.replace("/", "__") + ".npz")
        if entry.is_file():
            with np.load(entry) as z:
                shape = tuple(z["shape"])
                return np.unpackbits(z["lung"])[:shape[0] * shape[1]].reshape(shape).astype(bool)
        from lungcad.segmentation.predict import bundled_lung_model, segment

        return segment(bundled_lung_model(), image(path)).mask

    return image, mask


def measured(out, original: np.ndarray, mm: float) -> pd.DataFrame:
    """Each synthetic nodule's contrast (and, for spheres, size) measured on the output."""
    from lungcad.detection.simulate import measure_contrast, measured_diameter_px

    rows = []
    added = out.image - original
    for nod in out.nodules.itertuples():
        d_px = nod.diameter_mm / mm
        size = np.nan
        if nod.kind == "sphere":
            half = int(np.ceil(d_px)) + 4
            r0, c0 = int(round(nod.y)), int(round(nod.x))
            size = measured_diameter_px(added[max(r0 - half, 0):r0 + half + 1,
                                              max(c0 - half, 0):c0 + half + 1]) * mm
        rows.append({"kind": nod.kind, "diameter_mm": nod.diameter_mm, "measured_size_mm": size,
                     "contrast": measure_contrast(out.image, nod.x, nod.y, d_px),
                     "x": nod.x, "y": nod.y, "path": out.path})
    return pd.DataFrame(rows)


def sheet(path: Path, real: pd.DataFrame, synthetic: list, image, n: int = 12) -> None:
    """Real (top rows) and simulated (bottom rows) nodule crops, 64 px each, as a PNG."""
    from PIL import Image

    def crop(array, x, y, side=64):
        pad = np.pad(array, side, mode="reflect")
        r, c = int(round(y)) + side, int(round(x)) + side
        return pad[r - side // 2:r + side // 2, c - side // 2:c + side // 2]

    reals = [crop(image(r.path), r.x, r.y) for r in real.head(n).itertuples()]
    sims = [crop(img, r.x, r.y) for img, r in synthetic[:n]]
    rows = [np.hstack(reals[i:i + 6]) for i in range(0, len(reals) - 5, 6)] + \
        [np.hstack(sims[i:i + 6]) for i in range(0, len(sims) - 5, 6)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(np.vstack(rows), 0, 1) * 255).astype(np.uint8)).save(path)


def main(argv=None) -> int:
    from scipy.stats import ks_2samp

    from lungcad.jsrt_geometry import JSRT_PIXEL_MM_AT_512
    from lungcad.data.manifest import Manifest
    from lungcad.data.splits import load_split
    from lungcad.detection.simulate import FoldSimulator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=Path("../shared/data/jsrt"))
    parser.add_argument("--split", type=Path, default=Path("splits/jsrt-nodule-10fold.json"))
    parser.add_argument("--masks", type=Path, default=Path("runs/candidates/masks"))
    parser.add_argument("--folds", type=int, nargs="+", default=[0])
    parser.add_argument("--per-image", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sheet", type=Path, default=None)
    args = parser.parse_args(argv)

    manifest, split = Manifest.load(args.dataset), load_split(args.split)
    image, mask = loaders(args.dataset, args.masks)
    mm = JSRT_PIXEL_MM_AT_512
    lines = ["| fold | real training nodules | synthetic (sphere / paste) | contrast: real median "
             "[IQR] | sphere median [IQR] | KS sphere vs real (D, p) | paste median | KS paste "
             "vs real (D, p) | size: real median [IQR] mm | sphere measured median [IQR] | KS "
             "(D, p) |", "|" + "---|" * 11]
    for k in args.folds:
        train = split.part(k, "train") + split.part(k, "val")
        sim = FoldSimulator(manifest.rows_for(train), split.part(k, "test"), image, mask, mm)
        outs, synthetic = [], []
        for out in sim.generate(args.per_image, seed=args.seed + k):
            outs.append(measured(out, image(out.path), mm))
            synthetic += [(out.image, r) for r in out.nodules.itertuples()]
        syn, real = pd.concat(outs, ignore_index=True), sim.real
        sph, pas = syn[syn["kind"] == "sphere"], syn[syn["kind"] == "paste"]

        def q(v, f="{:.3f}"):
            a = np.percentile(v, [50, 25, 75])
            return f"{f.format(a[0])} [{f.format(a[1])}, {f.format(a[2])}]"

        def ks(a, b):
            r = ks_2samp(a, b)
            return f"{r.statistic:.2f}, {r.pvalue:.2f}"

        lines.append(f"| {k} | {len(real)} | {len(sph)} / {len(pas)} | {q(real['contrast'])} | "
                     f"{q(sph['contrast'])} | {ks(sph['contrast'], real['contrast'])} | "
                     f"{q(pas['contrast'])} | {ks(pas['contrast'], real['contrast'])} | "
                     f"{q(real['diameter_mm'], '{:.1f}')} | "
                     f"{q(sph['measured_size_mm'], '{:.1f}')} | "
                     f"{ks(sph['measured_size_mm'], real['diameter_mm'])} |")
        print(lines[-1], flush=True)
        if args.sheet and k == args.folds[0]:
            sheet(args.sheet, real, synthetic, image)
            print(f"sheet (real top, simulated bottom; JSRT pixels: do not commit): {args.sheet}")
    print("\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
