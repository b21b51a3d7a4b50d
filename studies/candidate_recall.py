"""How many JSRT nodules are among the first K candidates an image (K = 10, 20, 50, 100), by
subtlety: blob candidates (:mod:`lungcad.detection.candidates`, no training), optionally the
detector map's maxima and their union (round robin), and the blobs re-ranked by a small model
(:mod:`lungcad.detection.candidate_rank`) fitted per fold on its training images' candidates.

Folds: the committed patient-disjoint ``splits/jsrt-nodule-10fold.json``. What is chosen from
data, the blob filter (``dot`` or ``log``) and the union's order, is chosen per fold on that
fold's training images only (highest recall at 50 there) and applied to its test images; the
pooled test recall is reported. Maps: with ``--maps DIR`` (a ``lungcad experiment`` of
``configs/jsrt-nodule-heatmap-detector.yaml``) each image's map comes from the fold model that
never saw it (out of fold); with ``--maps bundled``, from the bundled ``jsrt-nodules``, which
was trained on all 198 images, so its map rows are an IN-SAMPLE diagnostic only (labelled so).
Lung masks: the bundled ``jsrt-lungs`` (trained on all 198 masks; the masks carry no nodule
label).

    python studies/candidate_recall.py --dataset ../shared/data/jsrt --out runs/candidates

The masks, maps and candidates are cached under ``--out`` (the first run took about 35 min on
the shared 2-core CPU, most of it the blob filters; later runs about 2 min).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

KS = (10, 20, 50, 100)
POOL = 100
VARIANTS = {"dot": {"method": "dot"}, "log": {"method": "log"}}
ORDERS = ("map first", "blob first")


def markdown(frame: pd.DataFrame) -> str:
    """A recall table as Markdown (shares to 3 decimals)."""
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
             for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |",
             "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])


def _load_entry(entry: Path) -> dict:
    with np.load(entry) as z:
        shape = tuple(z["shape"])
        out = {"lung": np.unpackbits(z["lung"])[:shape[0] * shape[1]].reshape(shape)
               .astype(bool)}
        if "nodule_map" in z:
            out["nodule_map"] = z["nodule_map"]
        return out


def cache_masks(dataset: Path, paths: list[str], folds: dict, maps: str | None,
                out: Path) -> dict:
    """{path: {"lung": mask[, "nodule_map": cells]}}: the bundled jsrt-lungs mask; with
    ``maps`` ("bundled" or an experiment folder) also the detector's nodule map, from the fold
    model that never saw the image (experiment) or the bundled jsrt-nodules (in sample)."""
    import lungcad
    from lungcad.io import load_image
    from lungcad.segmentation.predict import bundled_lung_model, segment

    out.mkdir(parents=True, exist_ok=True)
    models: dict = {}
    result, t0 = {}, time.time()
    for i, path in enumerate(paths):
        entry = out / (path.replace("/", "__") + ".npz")
        have = _load_entry(entry) if entry.is_file() else {}
        if "lung" not in have or (maps and "nodule_map" not in have):
            image = load_image(dataset / path).array
            if maps:
                key = "bundled" if maps == "bundled" else folds[path]
                if key not in models:
                    models[key] = lungcad.load_model(
                        "jsrt-nodules" if key == "bundled"
                        else Path(maps) / f"fold-{key}" / "model")
                det = models[key].detect(image)
                have = {"lung": det.lung_mask, "nodule_map": det.nodule_map.astype(np.float32)}
            else:
                have = {"lung": segment(bundled_lung_model(), image).mask}
            np.savez_compressed(entry, lung=np.packbits(have["lung"]),
                                shape=have["lung"].shape,
                                **({"nodule_map": have["nodule_map"]} if maps else {}))
            if i % 20 == 0:
                print(f"  masks/maps {i + 1}/{len(paths)} ({time.time() - t0:.0f} s)", flush=True)
        result[path] = have
    return result


def all_candidates(dataset: Path, masks: dict, out: Path, name: str,
                   pool: int = POOL) -> pd.DataFrame:
    """Every image's ``pool`` strongest candidates of each source (cached in ``out``)."""
    from lungcad.jsrt_geometry import jsrt_mm_per_pixel
    from lungcad.detection.candidates import BlobSettings, blob_candidates, map_candidates
    from lungcad.io import load_image

    cache = out / (f"candidates-{name}.csv" if pool == POOL else f"candidates-{name}-{pool}.csv")
    if cache.is_file():
        return pd.read_csv(cache, dtype={"path": str})
    frames, t0 = [], time.time()
    for i, (path, have) in enumerate(masks.items()):
        image = load_image(dataset / path).array
        mm = jsrt_mm_per_pixel(image.shape[1])
        parts = {}
        if name == "map":
            parts["map"] = map_candidates(have["nodule_map"], have["lung"], image.shape, mm,
                                          pool)
        else:
            parts[name] = blob_candidates(image, have["lung"], mm, pool,
                                          BlobSettings(**VARIANTS[name]))
        for variant, frame in parts.items():
            frames.append(frame.assign(path=path, variant=variant))
        if i % 20 == 0:
            print(f"  {name} {i + 1}/{len(masks)} ({time.time() - t0:.0f} s)", flush=True)
    table = pd.concat(frames, ignore_index=True)
    table.to_csv(cache, index=False)
    return table


def select(table: pd.DataFrame, paths, blob: str, order: str | None) -> pd.DataFrame:
    """The candidates of ``paths``: blob filter ``blob`` alone (order None) or its union with
    the map's maxima (round robin, ``order`` saying which comes first)."""
    if order is None:
        return table[table["path"].isin(set(paths)) & (table["variant"] == blob)]
    return union(table, paths, blob, order)


def union(table: pd.DataFrame, paths, blob: str, order: str) -> pd.DataFrame:
    from lungcad.jsrt_geometry import JSRT_PIXEL_MM_AT_512
    from lungcad.detection.candidates import merge_candidates

    frames = []
    for path, group in table[table["path"].isin(set(paths))].groupby("path"):
        parts = [group[group["variant"] == "map"], group[group["variant"] == blob]]
        if order == "blob first":
            parts = parts[::-1]
        frames.append(merge_candidates(parts, JSRT_PIXEL_MM_AT_512, POOL).assign(path=path))
    return pd.concat(frames, ignore_index=True)


def main(argv=None) -> int:
    from lungcad.data.manifest import Manifest
    from lungcad.data.splits import load_split
    from lungcad.detection.candidates import candidate_recall
    from lungcad.evaluation.froc import truth_from_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=Path("../shared/data/jsrt"))
    parser.add_argument("--split", type=Path, default=Path("splits/jsrt-nodule-10fold.json"))
    parser.add_argument("--maps", default=None,
                        help="add the detector map's maxima: an experiment folder with "
                             "fold-K/model (out of fold), or 'bundled' (jsrt-nodules, IN SAMPLE)")
    parser.add_argument("--out", type=Path, default=Path("runs/candidates"))
    parser.add_argument("--filters", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--pool", type=int, default=POOL,
                        help="candidates kept an image before any re-ranking (default 100)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    manifest = Manifest.load(args.dataset)
    split = load_split(args.split)
    folds = {p: k for k in range(split.n_folds) for p in split.part(k, "test")}
    paths = sorted(folds)
    masks = cache_masks(args.dataset, paths, folds, args.maps,
                        args.out / ("maps-" + ("bundled" if args.maps == "bundled" else "oof")
                                    if args.maps else "masks"))
    table = pd.concat([all_candidates(args.dataset, masks, args.out, name, args.pool)
                       for name in ([*args.filters, "map"] if args.maps else args.filters)],
                      ignore_index=True)
    truth = lambda images: truth_from_table(manifest.table, list(images))  # noqa: E731
    map_label = ("map maxima of the bundled jsrt-nodules (IN-SAMPLE: trained on every image)"
                 if args.maps == "bundled" else "map maxima (out of fold)")

    ks = KS + ((args.pool,) if args.pool > KS[-1] else ())

    def show(title: str, frame: pd.DataFrame):
        rec = candidate_recall(frame, truth(paths), ks)
        print(f"\n{title}\n" + markdown(rec))
        return rec

    for name in args.filters:
        show(f"blobs, {name} (no training: out of sample)", table[table["variant"] == name])
    # the blob filter (and the union's order) chosen per fold on its training images only
    blob_only = [(b, None) for b in args.filters]
    options = [(b, o) for b in args.filters for o in ORDERS] if args.maps else blob_only
    chosen, pooled = [], []
    for k in range(split.n_folds):
        train = [p for p in split.part(k, "train") + split.part(k, "val") if p in masks]
        best = max(options, key=lambda bo: (candidate_recall(
            select(table, train, *bo), truth(train), (50,))["top 50"].iloc[0], bo))
        chosen.append(best)
        pooled.append(select(table, split.part(k, "test"), *best))
    print("\nper fold (filter, order):", chosen)
    show(("union with the map, " if args.maps else "") + "blob filter chosen per fold on its "
         "training images (pooled test folds)", pd.concat(pooled, ignore_index=True))
    if args.maps:
        show(map_label, table[table["variant"] == "map"])
    # re-ranked: a small model fitted per fold on its training images' candidates only
    blobs = pd.concat([select(table, split.part(k, "test"), chosen[k][0], None)
                       for k in range(split.n_folds)], ignore_index=True)
    blobs = labelled(with_features(blobs, args.dataset), truth(paths))
    from lungcad.detection.candidate_rank import MODELS, CandidateRanker, reranked

    for model in MODELS:
        pooled = []
        for k in range(split.n_folds):
            test = blobs["path"].isin(set(split.part(k, "test")))
            ranker = CandidateRanker(model).fit(blobs[~test], blobs.loc[~test, "hit"])
            pooled.append(reranked(blobs[test], ranker.score(blobs[test])))
        show(f"blobs re-ranked ({model}, fitted per fold on its training images' candidates)",
             pd.concat(pooled, ignore_index=True))
    return 0


def with_features(candidates: pd.DataFrame, dataset: Path) -> pd.DataFrame:
    from lungcad.jsrt_geometry import jsrt_mm_per_pixel
    from lungcad.detection.candidate_rank import candidate_features
    from lungcad.io import load_image

    frames = []
    for path, group in candidates.groupby("path", sort=False):
        image = load_image(dataset / path).array
        features = candidate_features(image, group, jsrt_mm_per_pixel(image.shape[1]))
        frames.append(group.join(features.drop(columns=[c for c in features if c in group])))
    return pd.concat(frames)


def labelled(candidates: pd.DataFrame, truth) -> pd.DataFrame:
    """``hit``: 1 where the candidate hits a nodule by the FROC hit rule."""
    from lungcad.evaluation.froc import match, validate_findings

    frame = candidates.reset_index(drop=True)
    events = match(validate_findings(frame.assign(score=-frame["rank"].astype(float)),
                                     "candidates"), truth)
    return frame.assign(hit=(events.mark_nodule >= 0).astype(int))


if __name__ == "__main__":
    sys.exit(main())
