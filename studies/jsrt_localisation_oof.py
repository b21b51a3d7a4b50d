"""Out-of-fold localisation on JSRT: does the saliency peak fall on the nodule?

Each nodule image is scored only by the model that never saw it in training:

- ``--paper-run``: a ``lungcad experiment`` folder of ``paper-cnn-lstm`` (jsrt-malignant). Every
  finished fold (``fold-<k>/model/model.json`` and ``fold-<k>/test_predictions.csv``) maps its
  test part's nodule images (the run's own split file, fold k, part ``test``) with Grad-CAM on
  the registered target layer (``lungcad.explain.dataset.localise_dataset``). Unfinished folds
  are left out and the report says how many folds were pooled.
- ``--best-run``: a ``studies/jsrt_best_method_cv.py`` folder of ``nodule-heatmap-lite0``:
  ``runs/fold<k>/<task>/model`` plus ``<task>_oof.csv`` whose ``fold`` column says which images
  fold k's model was tested on. Two maps per image: the model's own cell map
  (``sigmoid(network.heatmap(x))``, the per-16-px-cell probability behind its image score: the
  primary figure) and Grad-CAM on the registered target layer. As a check that each fold's
  model is the one that made the out-of-fold predictions, its probabilities are recomputed and
  compared with the CSV's.

All maps are scored by ``lungcad.explain.localisation.score_localisation``: a hit is the peak
within (nodule diameter / 2 + margin) of the nodule centre (margin default 10 mm, JSRT pixel
0.7 mm in the 512 px frame); top-3 = any of the 3 highest peaks at least 20 mm apart hits; lung
share = share of the map's total inside the lung-field mask; chance = probability that a peak
uniform over the lung fields hits. Pooled over folds: hit rates with Wilson 95% intervals, mean
lung share with a percentile bootstrap 95% interval (images resampled; a mean of shares is not
a proportion, so no Wilson interval), and a one-sided exact test of the hits against the
per-image chance probabilities (Poisson-binomial), overall and per subtlety (1 extremely subtle
.. 5 obvious).

    .venv/bin/python studies/jsrt_localisation_oof.py --paper-run runs/jsrt-paper-cnn-lstm \\
        --best-run /work/scratch/nh/cv_tuned_c8 --out /work/scratch/loc

Writes ``OUT/summary.json``, ``OUT/summary.md`` (the tables) and ``OUT/<model>_<map>.csv`` (one
row per image, with its fold). Single-threaded torch: the CPU may be shared.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # machine.py
from machine import describe, provisional_note  # noqa: E402

BOOTSTRAP = 2000
SEED = 0


def parse_args() -> argparse.Namespace:
    from lungcad.jsrt_geometry import JSRT_PIXEL_MM_AT_512
    from lungcad.explain.defaults import DEFAULT_MARGIN_MM

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paper-run", type=Path, help="lungcad experiment folder (paper-cnn-lstm)")
    parser.add_argument("--best-run", type=Path, help="jsrt_best_method_cv.py output folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    parser.add_argument("--dataset", type=Path, default=None,
                        help="JSRT folder (default: the paper run's config, else "
                             "../shared/data/jsrt)")
    parser.add_argument("--best-tasks", default="jsrt-nodule,jsrt-malignant",
                        help="tasks of the best run to score (comma-separated)")
    parser.add_argument("--best-maps", default="cells,gradcam",
                        help="maps for the best run: cells (its own cell map), gradcam")
    parser.add_argument("--margin-mm", type=float, default=DEFAULT_MARGIN_MM)
    parser.add_argument("--pixel-mm", type=float, default=JSRT_PIXEL_MM_AT_512)
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP,
                        help="bootstrap resamples for the lung-share interval")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    return parser.parse_args()


# --------------------------------------------------------------------------------------------
# statistics of pooled per-image records

def poisson_binomial_sf(probabilities: np.ndarray, hits: int) -> float:
    """P(at least ``hits`` successes) for independent trials with these probabilities."""
    dist = np.zeros(len(probabilities) + 1)
    dist[0] = 1.0
    for p in probabilities:
        dist[1:] = dist[1:] * (1 - p) + dist[:-1] * p
        dist[0] *= 1 - p
    return float(min(1.0, dist[hits:].sum()))


def bootstrap_mean_ci(values: np.ndarray, resamples: int, seed: int = SEED) -> list[float] | None:
    values = values[np.isfinite(values)]
    if values.size < 2 or resamples < 1:
        return None
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (resamples, values.size))].mean(axis=1)
    return [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]


def block(records: list[dict], resamples: int) -> dict:
    """Rates with intervals, the chance baseline and its test, the mean lung share."""
    from lungcad.explain.localisation import summarise

    out = summarise(records)
    chance = np.array([r["chance_peak_hit"] for r in records], dtype=np.float64)
    chance = np.nan_to_num(chance, nan=0.0)
    out["chance_expected_hits"] = float(chance.sum())
    out["p_peak_above_chance"] = (poisson_binomial_sf(chance, out["peak_hit"]["hits"])
                                  if records else None)
    shares = np.array([np.nan if r["lung_share"] is None else r["lung_share"] for r in records],
                      dtype=np.float64)
    out["lung_share_ci95"] = bootstrap_mean_ci(shares, resamples)
    out["lung_share_ci_method"] = f"percentile bootstrap, {resamples} resamples of the images"
    # a flat map's lung share is the lung fields' share of the image: the share's baseline
    out["lung_area_fraction_mean"] = (float(np.mean([r["lung_area_fraction"] for r in records]))
                                      if records else None)
    return out


def pooled(records: list[dict], resamples: int) -> dict:
    groups: dict[int, list[dict]] = {}
    for r in records:
        groups.setdefault(int(r["subtlety"]), []).append(r)
    return {"overall": block(records, resamples),
            "by_subtlety": {str(k): block(groups[k], resamples) for k in sorted(groups)}}


# --------------------------------------------------------------------------------------------
# the paper model: a lungcad experiment folder, Grad-CAM per finished fold

def finished_folds(run: Path) -> list[tuple[int, Path]]:
    folds = []
    for folder in sorted(run.glob("fold-*"), key=lambda p: int(p.name.split("-")[1])):
        if all((folder / f).is_file() for f in ("model/model.json", "test_predictions.csv")):
            folds.append((int(folder.name.split("-")[1]), folder))
    return folds


def score_paper_run(run: Path, dataset: Path, args: argparse.Namespace) -> dict:
    from lungcad.data.splits import load_split
    from lungcad.explain.dataset import localise_dataset
    from lungcad.inference import load_model

    meta = json.loads((run / "meta.json").read_text())
    split_file = Path(meta["config"]["split"])
    split = load_split(split_file)
    folds = finished_folds(run)
    records: list[dict] = []
    per_fold = []
    target_layer = None
    for k, folder in folds:
        # the fold's held-out images must be the split's test part: else the pooling is wrong
        tested = set(pd.read_csv(folder / "test_predictions.csv", dtype={"path": str})["path"])
        if tested != set(split.part(k, "test")):
            raise SystemExit(f"{folder}: test_predictions.csv does not match {split_file} fold {k}")
        start = time.perf_counter()
        result = localise_dataset(load_model(folder / "model"), dataset, method="gradcam",
                                  split=split_file, fold=k, part="test",
                                  margin_mm=args.margin_mm, pixel_mm=args.pixel_mm).result
        seconds = time.perf_counter() - start
        target_layer = result["target_layer"]
        records += [dict(r, fold=k) for r in result["per_image"]]
        # a collapsed model (the same score for every image) has flat or empty Grad-CAM maps
        positive = [r[f"prob_{result['model']['classes'][-1]}"] for r in result["per_image"]]
        per_fold.append({"fold": k, "n": result["overall"]["n"], "seconds": round(seconds, 1),
                         "peak_hits": result["overall"]["peak_hit"]["hits"],
                         "empty_maps": result["overall"]["empty_maps"],
                         "positive_prob_range": [min(positive), max(positive)]})
        print(f"paper fold {k}: {result['overall']['n']} nodule images, "
              f"{result['overall']['peak_hit']['hits']} peak hits, "
              f"{result['overall']['empty_maps']} empty maps, P(positive) "
              f"{min(positive):.3f}..{max(positive):.3f}, {seconds:.1f} s", flush=True)
    return {"model": "paper-cnn-lstm", "task": meta["config"]["task"], "map": "gradcam",
            "target_layer": target_layer, "run": str(run), "split": str(split_file),
            "folds_pooled": [k for k, _ in folds], "n_folds_split": split.n_folds,
            "per_fold": per_fold, "records": records}


# --------------------------------------------------------------------------------------------
# the best method: per-fold model directories + out-of-fold CSVs

def cell_maps(model, images: list[np.ndarray],
              sources: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """The model's own map: P(nodule [malignant] in this cell), stretched to each image, and
    the image probability (max over cells) for the consistency check."""
    import torch

    from lungcad.explain.saliency import to_image_shape

    batch = np.stack([model.prepare(im, s) for im, s in zip(images, sources)])
    with torch.inference_mode():
        logits = model.network.heatmap(torch.from_numpy(batch))[:, 0].float()
    probs = torch.sigmoid(logits).numpy()
    image_prob = probs.reshape(len(probs), -1).max(axis=1)
    return [to_image_shape(p, im.shape) for p, im in zip(probs, images)], image_prob


def score_best_run(run: Path, dataset: Path, task: str, maps_wanted: list[str],
                   args: argparse.Namespace) -> dict[str, dict]:
    from lungcad.jsrt_geometry import JSRT_COORD_COLUMNS
    from lungcad.data.manifest import Manifest
    from lungcad.explain.dataset import nodule_rows
    from lungcad.explain.localisation import score_localisation
    from lungcad.explain.saliency import Explainer
    from lungcad.inference import load_model
    from lungcad.io import load_image

    manifest = Manifest.load(dataset)
    oof = pd.read_csv(run / f"{task}_oof.csv", dtype={"path": str})
    positive = [c for c in oof.columns if c.startswith("prob_")][-1]
    out = {m: {"records": [], "per_fold": []} for m in maps_wanted}
    max_prob_diff = 0.0
    target_layer = None
    for k in sorted(oof["fold"].unique()):
        model = load_model(run / "runs" / f"fold{k}" / task / "model")
        rows = nodule_rows(manifest.rows_for(oof.loc[oof["fold"] == k, "path"].tolist()),
                           JSRT_COORD_COLUMNS)
        paths = rows["path"].tolist()
        images = [load_image(manifest.image_path(p)).array for p in paths]
        expected = oof.set_index("path").loc[paths, positive].to_numpy(np.float64)
        for method in maps_wanted:
            start = time.perf_counter()
            if method == "cells":
                maps, image_prob = cell_maps(model, images, paths)
                max_prob_diff = max(max_prob_diff, float(np.abs(image_prob - expected).max()))
            else:
                explainer = Explainer(model, method)
                target_layer = explainer.target_layer
                maps = explainer.maps(images, sources=paths)
            seconds = time.perf_counter() - start
            result = score_localisation(dict(zip(paths, maps)), rows, args.margin_mm,
                                        args.pixel_mm, root=manifest.root)
            out[method]["records"] += [dict(r, fold=int(k)) for r in result["per_image"]]
            out[method]["per_fold"].append({"fold": int(k), "n": len(paths),
                                            "seconds": round(seconds, 1),
                                            "peak_hits": result["overall"]["peak_hit"]["hits"]})
            print(f"best {task} fold {k} {method}: {len(paths)} nodule images, "
                  f"{result['overall']['peak_hit']['hits']} peak hits, {seconds:.1f} s", flush=True)
    folds = sorted(int(k) for k in oof["fold"].unique())
    if "cells" in maps_wanted and max_prob_diff > 1e-3:
        raise SystemExit(f"{run}: fold models do not reproduce {task}_oof.csv "
                         f"(max probability difference {max_prob_diff:.4f})")
    return {m: {"model": "nodule-heatmap-lite0", "task": task, "map": m,
                "target_layer": target_layer if m != "cells" else "cell map (sigmoid of heatmap)",
                "run": str(run), "folds_pooled": folds, "n_folds_split": len(folds),
                "oof_probability_max_abs_diff": max_prob_diff if "cells" in maps_wanted else None,
                **out[m]} for m in maps_wanted}


def lung_area_fractions(dataset: Path) -> dict[str, float]:
    """Share of each nodule image's 512 px frame inside its lung-field mask."""
    from lungcad.data.manifest import Manifest
    from lungcad.jsrt_geometry import JSRT_COORD_FRAME
    from lungcad.explain.localisation import load_mask

    manifest = Manifest.load(dataset)
    table = manifest.table
    return {p: float(load_mask(manifest.root / m, JSRT_COORD_FRAME).mean())
            for p, m in zip(table["path"], table["mask_path"]) if isinstance(m, str) and m}


# --------------------------------------------------------------------------------------------
# tables

def _rate(r: dict) -> str:
    if r["rate"] is None:
        return "n/a"
    return f"{r['rate']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] ({r['hits']}/{r['n']})"


def _share(b: dict) -> str:
    if b["lung_share_mean"] is None:
        return "n/a"
    ci = b["lung_share_ci95"]
    return f"{b['lung_share_mean']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def table(entry: dict) -> str:
    lines = [f"### {entry['model']} ({entry['task']}), {entry['map']} "
             f"({entry['target_layer']}): {len(entry['folds_pooled'])} of "
             f"{entry['n_folds_split']} folds pooled, n = {entry['pooled']['overall']['n']}",
             "",
             "| subtlety | n | peak hit [95% CI] | top-3 hit [95% CI] | chance peak hit | "
             "p (peak > chance) | lung share [95% CI] | lung area share | "
             "median peak distance (mm) | empty maps |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    blocks = [("all", entry["pooled"]["overall"])]
    blocks += list(entry["pooled"]["by_subtlety"].items())
    for name, b in blocks:
        p = b["p_peak_above_chance"]
        dist = b["peak_distance_mm_median"]
        lines.append(f"| {name} | {b['n']} | {_rate(b['peak_hit'])} | {_rate(b['top3_hit'])} | "
                     f"{b['chance_peak_hit_mean']:.3f} | {'n/a' if p is None else f'{p:.2g}'} | "
                     f"{_share(b)} | {b['lung_area_fraction_mean']:.2f} | "
                     f"{'n/a' if dist is None else f'{dist:.0f}'} | {b['empty_maps']} |")
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.paper_run is None and args.best_run is None:
        raise SystemExit("give --paper-run and/or --best-run")
    dataset = args.dataset
    if dataset is None and args.paper_run is not None:
        dataset = Path(json.loads((args.paper_run / "meta.json").read_text())["config"]["dataset"])
    dataset = dataset or Path("../shared/data/jsrt")
    print(describe(("lungcad", "torch", "monai", "numpy")))
    print(provisional_note(), flush=True)
    started = time.perf_counter()
    entries: list[dict] = []
    if args.best_run is not None:
        for task in [t for t in args.best_tasks.split(",") if t]:
            found = score_best_run(args.best_run, dataset, task,
                                   [m for m in args.best_maps.split(",") if m], args)
            entries += list(found.values())
    if args.paper_run is not None:
        entries.append(score_paper_run(args.paper_run, dataset, args))
    args.out.mkdir(parents=True, exist_ok=True)
    lung_fraction = lung_area_fractions(dataset)
    for entry in entries:
        for r in entry["records"]:
            r["lung_area_fraction"] = lung_fraction[r["path"]]
        entry["pooled"] = pooled(entry["records"], args.bootstrap)
        name = f"{entry['model']}_{entry['task']}_{entry['map']}"
        pd.DataFrame(entry["records"]).to_csv(args.out / f"{name}.csv", index=False)
    from lungcad.explain.localisation import CI_METHOD
    from lungcad.explain.defaults import DEFAULT_PEAK_DISTANCE_MM, TOP_K

    settings = {"margin_mm": args.margin_mm, "pixel_mm": args.pixel_mm,
                "peak_distance_mm": DEFAULT_PEAK_DISTANCE_MM, "top_k": TOP_K,
                "hit_rule": "peak within (size_mm / 2 + margin_mm) of the nodule centre",
                "rate_ci": CI_METHOD, "dataset": str(dataset),
                "seconds": round(time.perf_counter() - started, 1)}
    summary = {"settings": settings,
               "results": [{k: v for k, v in e.items() if k != "records"} for e in entries]}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = "\n\n".join(
        [f"Out-of-fold localisation on JSRT: hit = peak within nodule radius + "
         f"{args.margin_mm:g} mm (pixel {args.pixel_mm:g} mm in the 512 px frame); top-3 peaks "
         f">= {DEFAULT_PEAK_DISTANCE_MM:g} mm apart; rates with {CI_METHOD}; lung share = mean "
         f"share of the map inside the lung fields, percentile bootstrap CI; chance = mean "
         f"probability that a peak uniform over the lung fields hits; lung area share = the "
         f"lung fields' mean share of the image (a flat map's lung share); an empty map (no "
         f"positive value: it points nowhere) is a miss; p = one-sided exact (Poisson-binomial) "
         f"test of the peak hits against those chances."]
        + [table(e) for e in entries]
        + [f"total time {settings['seconds']:.0f} s"])
    (args.out / "summary.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
