"""Saliency over a dataset's nodule images, scored against the known nodule positions.

``localise_dataset`` computes one map per nodule image (a split's part, or the whole dataset),
scores them with :func:`lungcad.explain.localisation.score_localisation`, and returns the
result with the model, data and options it came from. ``write_localisation`` writes
``localisation.json`` (settings, overall and per-subtlety rates) and ``localisation.csv``
(one row per image).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from lungcad.jsrt_geometry import JSRT_COORD_COLUMNS, JSRT_COORD_FRAME, JSRT_PIXEL_MM_AT_512
from lungcad.errors import LungcadError
from lungcad.explain import localisation as loc
from lungcad.explain.saliency import Explainer
from lungcad.segmentation.predict import segment
from lungcad.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from lungcad.data.manifest import Manifest
    from lungcad.lung_model import LungModel

LOCALISATION_FORMAT = "lungcad-localisation/1"


@dataclass
class LocalisationRun:
    result: dict                       # score_localisation's output, plus provenance
    maps: dict[str, np.ndarray]        # path -> map at the image's size
    images: dict[str, np.ndarray]      # path -> the image (for overlays)
    failed: list[tuple[str, str]] = field(default_factory=list)


def select_rows(dataset, split: str | Path | None = None, fold: int = 0, part: str = "test",
                paths: Sequence[str] | None = None) -> tuple["Manifest", pd.DataFrame, dict | None]:
    """The manifest (``dataset``: a folder or a loaded Manifest), its rows (``paths`` of it, or
    a split's part as the file lists it, checked through its :class:`FoldView`), and a split
    description."""
    from lungcad.data.manifest import Manifest

    manifest = dataset if isinstance(dataset, Manifest) else Manifest.load(dataset)
    if paths is not None:
        return manifest, manifest.rows_for(list(paths)), None
    if split is None:
        return manifest, manifest.table, None
    from lungcad.data.splits import load_fold, load_split

    loaded = load_split(split)
    view = load_fold(manifest, split, loaded.task, fold)
    return manifest, manifest.rows_for(view.raw_part(part)), {
        "file": str(split), "fold": fold, "part": part, "task": loaded.task}


def nodule_rows(rows: pd.DataFrame, coord_columns: tuple[str, str]) -> pd.DataFrame:
    """Rows with a nodule centre and diameter."""
    needed = [*coord_columns, "size_mm"]
    missing = [c for c in needed if c not in rows.columns]
    if missing:
        raise LungcadError(f"the dataset has no nodule positions: column(s) {', '.join(missing)} "
                           "missing (JSRT's labels.csv has x_512, y_512, size_mm)")
    known = rows[needed].apply(pd.to_numeric, errors="coerce").notna().all(axis=1)
    return rows[known].reset_index(drop=True)


def _true_class(model: "LungModel", label: str) -> str | None:
    from lungcad.data.tasks import TASKS

    task = TASKS.get(model.spec.task)
    mapped = task.map_label(str(label)) if task is not None else str(label)
    return mapped if mapped in model.classes else None


def localise_dataset(model: "LungModel", dataset, *, method: str = "gradcam",
                     target_class: str | None = None, split: str | Path | None = None,
                     fold: int = 0, part: str = "test", paths: Sequence[str] | None = None,
                     margin_mm: float = loc.DEFAULT_MARGIN_MM,
                     pixel_mm: float = JSRT_PIXEL_MM_AT_512,
                     peak_distance_mm: float = loc.DEFAULT_PEAK_DISTANCE_MM,
                     coord_columns: tuple[str, str] = JSRT_COORD_COLUMNS,
                     coord_frame: int = JSRT_COORD_FRAME, batch_size: int = 8,
                     target_layer: str | None = None, progress=None,
                     lung_mask_model=None) -> LocalisationRun:
    """Maps for the nodule images of ``dataset`` (a folder or a Manifest; or of a split's part,
    or of ``paths`` of it) and their scores.

    Target class: ``target_class`` where given; else the positive class of a binary model, or
    for a multi-class model the image's own class (its label through the model's task) where the
    model has it, and the predicted class otherwise.

    Lung masks: the dataset's own (``mask_path``) where a row has one. ``lung_mask_model`` (a
    segmentation model, or its name, e.g. the bundled ``jsrt-lungs``; loaded only if needed)
    gives the others a predicted mask, where it finds a plausible pair of lungs; without it
    (the default) such images have no ``lung_share``.
    """
    from lungcad.io import load_image

    manifest, rows, split_info = select_rows(dataset, split, fold, part, paths)
    rows = nodule_rows(rows, coord_columns)
    if rows.empty:
        raise LungcadError(f"{dataset}: no nodule images (rows with {coord_columns[0]}, "
                           f"{coord_columns[1]} and size_mm) among the selected images")
    explainer = Explainer(model, method, target_layer)
    if target_class is not None:
        explainer.target_index(target_class)
    images: dict[str, np.ndarray] = {}
    failed: list[tuple[str, str]] = []
    for rel in rows["path"]:
        try:
            images[rel] = load_image(manifest.image_path(rel)).array
        except LungcadError as exc:
            failed.append((rel, str(exc)))
    if not images:
        raise LungcadError(f"{dataset}: none of the {len(rows)} nodule images could be read "
                           f"(first error: {failed[0][1]})")
    paths = list(images)
    probs = model.predict_proba([images[p] for p in paths], sources=paths)
    predicted = model.decide(probs)
    labels = rows.set_index("path")["label"]
    targets: dict[str, str | None] = {}
    for p, pred_probs in zip(paths, probs):
        if target_class is not None:
            targets[p] = target_class
        elif model.spec.binary:
            targets[p] = model.classes[-1]
        else:
            targets[p] = _true_class(model, labels[p]) or model.classes[int(np.argmax(pred_probs))]
    maps: dict[str, np.ndarray] = {}
    for target in sorted(set(targets.values())):
        group = [p for p in paths if targets[p] == target]
        for start in range(0, len(group), batch_size):
            chunk = group[start:start + batch_size]
            for p, m in zip(chunk, explainer.maps([images[q] for q in chunk], target,
                                                  batch_size, sources=chunk)):
                maps[p] = m
            if progress is not None:
                progress(len(maps), len(paths))
    maps = {p: maps[p] for p in paths}  # manifest order
    lung_predicted, lung_masks = predicted_lung_masks(lung_mask_model, rows, images,
                                                      coord_frame)
    result = loc.score_localisation(
        maps, rows, margin_mm, pixel_mm, root=manifest.root, peak_distance_mm=peak_distance_mm,
        coord_columns=coord_columns, coord_frame=coord_frame, predicted_masks=lung_predicted,
        predicted_by=lung_masks.get("model") or "")
    by_path = {p: i for i, p in enumerate(paths)}
    for record in result["per_image"]:
        i = by_path[record["path"]]
        record["target_class"] = targets[record["path"]]
        record["predicted"] = predicted[i]
        record.update({f"prob_{c}": float(v) for c, v in zip(model.classes, probs[i])})
    result = {
        "format": LOCALISATION_FORMAT,
        "model": {"name": model.spec.name, "architecture": model.spec.architecture,
                  "task": model.spec.task, "classes": list(model.classes),
                  "directory": str(model.directory) if model.directory else None},
        "dataset": str(manifest.root), "manifest_sha256": manifest.sha256(), "split": split_info,
        "method": explainer.method, "target_layer": explainer.target_layer,
        "target_class_rule": (f"fixed: {target_class}" if target_class is not None else
                              "positive class" if model.spec.binary else
                              "the image's own class where the model has it, else predicted"),
        "failed": [{"path": p, "error": e} for p, e in failed],
        **({"lung_masks": lung_masks} if lung_mask_model is not None else {}),
        **result,
    }
    return LocalisationRun(result=result, maps=maps, images=images, failed=failed)


def predicted_lung_masks(lung_mask_model, rows: pd.DataFrame, images: dict[str, np.ndarray],
                         frame: int) -> tuple[dict[str, np.ndarray] | None, dict]:
    """Masks (``frame`` x ``frame``) that ``lung_mask_model`` predicts for the images whose rows
    have no reference mask, keeping only plausible pairs of lungs; and what was done."""
    if lung_mask_model is None:
        return None, {}
    by_path = rows.set_index("path")
    needed = [p for p in images if not loc.has_reference_mask(by_path.loc[p])]
    if not needed:
        name = (str(lung_mask_model) if isinstance(lung_mask_model, (str, Path))
                else lung_mask_model.spec.name)
        return {}, {"model": name, "predicted": 0, "implausible": []}
    segmenter = lung_mask_model
    if isinstance(lung_mask_model, (str, Path)):
        from lungcad.lung_model import read_model_dir
        from lungcad.model_dir import resolve_model_dir

        segmenter = read_model_dir(resolve_model_dir(lung_mask_model))
    if getattr(segmenter, "kind", "classifier") != "segmenter":
        raise LungcadError(f"the lung-mask model {segmenter.spec.name} is a classifier; give a "
                           "segmentation model such as jsrt-lungs")
    masks, implausible = {}, []
    for path in needed:
        segmentation = segment(segmenter, images[path])
        if segmentation.plausible:
            masks[path] = loc.load_mask_array(segmentation.mask, frame)
        else:
            implausible.append(path)
    name = segmenter.spec.name
    return masks, {"model": name, "predicted": len(masks), "implausible": implausible}


def write_localisation(run: LocalisationRun, out_dir: str | Path,
                       overlays: bool = False) -> list[Path]:
    """``localisation.json`` (everything but the per-image rows), ``localisation.csv`` (those
    rows) and, with ``overlays``, ``overlays/<stem>_overlay.png`` showing the map, the nodule's
    hit circle (white) and the map's peak (magenta)."""
    from lungcad.explain.files import output_stems
    from lungcad.explain.render import mark_circle, mark_cross, overlay, png_bytes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {k: v for k, v in run.result.items() if k != "per_image"}
    summary["lungcad_version"] = __version__
    json_path, csv_path = out / "localisation.json", out / "localisation.csv"
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    loc.per_image_frame(run.result).to_csv(csv_path, index=False)
    written = [json_path, csv_path]
    if overlays:
        folder = out / "overlays"
        folder.mkdir(exist_ok=True)
        records = run.result["per_image"]
        frame = run.result["settings"]["coord_frame"]
        for record, stem in zip(records, output_stems([r["path"] for r in records])):
            image = run.images[record["path"]]
            sy, sx = image.shape[0] / frame, image.shape[1] / frame
            text = (f"{Path(record['path']).name}: subtlety {record.get('subtlety')}, "
                    f"{record['size_mm']:.3g} mm\npeak {'HIT' if record['peak_hit'] else 'miss'}, "
                    f"top-3 {'HIT' if record['top3_hit'] else 'miss'}\n"
                    f"{run.result['method']} for {record['target_class']}")
            rgb = overlay(image, run.maps[record["path"]], text)
            rgb = mark_circle(rgb, (record["x"] + 0.5) * sx - 0.5, (record["y"] + 0.5) * sy - 0.5,
                              record["hit_radius_px"] * (sx + sy) / 2)
            if record["peak_x"] is not None:
                rgb = mark_cross(rgb, (record["peak_x"] + 0.5) * sx - 0.5,
                                 (record["peak_y"] + 0.5) * sy - 0.5)
            path = folder / f"{stem}_overlay.png"
            path.write_bytes(png_bytes(rgb))
            written.append(path)
    return written


def format_summary(result: dict) -> str:
    """A few lines for the terminal: the rates overall and per subtlety, with the settings."""
    s = result["settings"]

    def rate(block: dict, key: str) -> str:
        r = block[key]
        if r["rate"] is None:
            return "n/a"
        return f"{r['rate']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] ({r['hits']}/{r['n']})"

    lines = [f"localisation of {result['method']} maps (layer {result['target_layer']}): hit = "
             f"peak within nodule radius + {s['margin_mm']:g} mm; top-{s['top_k']} peaks "
             f">= {s['peak_distance_mm']:g} mm apart; {s['ci_method']}"]
    blocks = [("all", result["overall"])]
    blocks += [(f"subtlety {k}", v) for k, v in result.get(f"by_{s['group_by']}", {}).items()]
    for name, block in blocks:
        chance = block["chance_peak_hit_mean"]
        share = block["lung_share_mean"]
        lines.append(f"  {name:<11} n={block['n']:<4} peak {rate(block, 'peak_hit')}  "
                     f"top-3 {rate(block, 'top3_hit')}  chance {chance:.2f}" if chance is not None
                     else f"  {name:<11} n={block['n']}")
        if share is not None:
            lines[-1] += f"  lung share {share:.2f}"
    return "\n".join(lines)
