"""Does the saliency map point at the nodule? Scoring maps against known nodule positions (JSRT).

For each nodule image, with the nodule's centre (cx, cy) and diameter from the manifest:

- ``peak_hit``: the map's global maximum lies within (diameter / 2 + margin) of the centre.
  The margin (default 10 mm) allows for the coarse resolution of Grad-CAM maps (a 16x16 map of
  a 512 px image has 32 px = 22 mm cells) and for the radiologists' centre marks.
- ``top3_hit``: any of the map's 3 highest local peaks does; peaks are found by non-maximum
  suppression and lie at least ``peak_distance_mm`` (default 20 mm) apart.
- ``lung_share``: the share of the map's total saliency inside the lung-field mask: the
  dataset's reference mask where it has one, else (where given) a segmentation model's
  predicted mask; ``lung_mask_source`` says which ("reference", "predicted (<model>)" or null).
- ``chance_peak_hit``: the probability that a peak placed uniformly at random in the lung
  fields hits: the baseline a map must beat to show it localises anything.

Hit rates are aggregated overall and per subtlety (JSRT: 1 extremely subtle .. 5 obvious) with
Wilson 95% intervals. Coordinates are (x = column, y = row) pixel indices in a square
``coord_frame`` (JSRT: ``x_512``/``y_512`` in the 512 px frame, where a pixel is 0.7 mm, the
2048 px original's 0.175 mm times 4). Maps of another size are resampled to that frame.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from lungcad.errors import LungcadError

from lungcad.jsrt_geometry import (JSRT_COORD_COLUMNS, JSRT_COORD_FRAME,
                                        JSRT_PIXEL_MM_AT_512)
from lungcad.explain.defaults import DEFAULT_MARGIN_MM, DEFAULT_PEAK_DISTANCE_MM, TOP_K
from lungcad.segmentation import LUNG_MODEL

CI_METHOD = "Wilson score interval, 95%"


def global_peak(saliency: np.ndarray) -> tuple[int, int] | None:
    """(row, column) of the map's maximum (the first in raster order on ties); None for a map
    with no positive value, which points nowhere."""
    saliency = np.nan_to_num(np.asarray(saliency, dtype=np.float64), nan=0.0)
    if saliency.size == 0 or saliency.max() <= 0:
        return None
    y, x = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    return int(y), int(x)


def _inside(y: float, x: float, cx: float, cy: float, radius_px: float) -> bool:
    return (x - cx) ** 2 + (y - cy) ** 2 <= radius_px ** 2


def nodule_hit(saliency: np.ndarray, cx: float, cy: float, radius_px: float) -> bool:
    """True when the map's global maximum lies within ``radius_px`` of (cx, cy) (column, row)."""
    peak = global_peak(saliency)
    return peak is not None and _inside(peak[0], peak[1], cx, cy, radius_px)


def top_k_peaks(saliency: np.ndarray, k: int = TOP_K, min_distance: float = 1) -> list[tuple[int, int]]:
    """Up to ``k`` local maxima (row, column), highest first, each at least ``min_distance`` px
    (Euclidean) from every higher one kept. Local maxima: pixels equal to the maximum of their
    (2 * min_distance + 1)-square neighbourhood (``scipy.ndimage.maximum_filter``), then a
    greedy non-maximum suppression removes plateau twins and near neighbours."""
    from scipy.ndimage import maximum_filter

    if k < 1:
        raise LungcadError(f"top_k_peaks needs k >= 1, got {k}")
    saliency = np.nan_to_num(np.asarray(saliency, dtype=np.float64), nan=0.0)
    if saliency.ndim != 2:
        raise LungcadError(f"top_k_peaks needs a 2-D map, got shape {saliency.shape}")
    reach = max(1, int(math.ceil(min_distance)))
    local_max = (saliency == maximum_filter(saliency, size=2 * reach + 1, mode="nearest"))
    ys, xs = np.nonzero(local_max & (saliency > 0))
    order = np.lexsort((xs, ys, -saliency[ys, xs]))  # highest first; raster order on ties
    kept: list[tuple[int, int]] = []
    for i in order:
        y, x = int(ys[i]), int(xs[i])
        if all((y - ky) ** 2 + (x - kx) ** 2 >= min_distance ** 2 for ky, kx in kept):
            kept.append((y, x))
            if len(kept) == k:
                break
    return kept


def lung_share(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's total saliency inside ``mask`` (nonzero = lung); NaN for an empty map."""
    saliency = np.clip(np.nan_to_num(np.asarray(saliency, dtype=np.float64)), 0.0, None)
    mask = np.asarray(mask)
    if mask.shape != saliency.shape:
        raise LungcadError(f"lung mask shape {mask.shape} differs from the map's {saliency.shape}")
    total = saliency.sum()
    if total <= 0:
        return float("nan")
    return float(saliency[mask > 0].sum() / total)


def chance_peak_hit(shape: tuple[int, int], cx: float, cy: float, radius_px: float,
                    mask: np.ndarray | None = None) -> float:
    """Probability that a peak uniformly placed in ``mask`` (or the whole image) is a hit."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    circle = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius_px ** 2
    region = np.ones(shape, bool) if mask is None else np.asarray(mask) > 0
    area = int(region.sum())
    return float((circle & region).sum() / area) if area else float("nan")


def hit_rate(hits: Iterable[bool]) -> dict:
    """Hits, n, rate and a Wilson 95% interval (``scipy.stats.binomtest``)."""
    from scipy.stats import binomtest

    hits = [bool(h) for h in hits]
    n, k = len(hits), int(sum(hits))
    if n == 0:
        return {"n": 0, "hits": 0, "rate": None, "ci95": None}
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return {"n": n, "hits": k, "rate": k / n, "ci95": [float(ci.low), float(ci.high)]}


def _finite_mean(values: Iterable[float]) -> float | None:
    arr = np.array([v for v in values if v is not None], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else None


def _finite_median(values: Iterable[float]) -> float | None:
    arr = np.array([v for v in values if v is not None], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(np.median(arr)) if arr.size else None


def summarise(records: Sequence[Mapping]) -> dict:
    """Aggregate per-image records (as :func:`score_localisation` makes) into rates and means."""
    return {
        "n": len(records),
        "peak_hit": hit_rate(r["peak_hit"] for r in records),
        "top3_hit": hit_rate(r["top3_hit"] for r in records),
        "chance_peak_hit_mean": _finite_mean(r["chance_peak_hit"] for r in records),
        "lung_share_mean": _finite_mean(r["lung_share"] for r in records),
        "lung_share_median": _finite_median(r["lung_share"] for r in records),
        "peak_distance_mm_median": _finite_median(r["peak_distance_mm"] for r in records),
        "empty_maps": int(sum(bool(r["empty_map"]) for r in records)),
        "lung_mask_sources": {source: sum(r.get("lung_mask_source") == source for r in records)
                              for source in sorted({r.get("lung_mask_source") for r in records}
                                                   - {None})},
    }


def _resample(saliency: np.ndarray, frame: int) -> np.ndarray:
    if saliency.shape == (frame, frame):
        return saliency
    from lungcad.explain.saliency import to_image_shape

    peak = float(np.nanmax(saliency)) if saliency.size else 0.0
    return to_image_shape(saliency, (frame, frame)) * max(peak, 0.0)


def load_mask(path: Path, frame: int) -> np.ndarray:
    """A lung-field mask image (nonzero = lung) as a boolean (frame, frame) array."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            gray = img.convert("L")
            if gray.size != (frame, frame):
                gray = gray.resize((frame, frame), Image.Resampling.NEAREST)
            return np.asarray(gray) > 0
    except (OSError, UnidentifiedImageError) as exc:
        raise LungcadError(f"cannot read the lung mask {path}: {exc}") from None


def load_mask_array(mask: np.ndarray, frame: int) -> np.ndarray:
    """A boolean mask array resampled (nearest) to (frame, frame)."""
    from PIL import Image

    img = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255)
    return np.asarray(img.resize((frame, frame), Image.Resampling.NEAREST)) > 0


def score_localisation(maps: Mapping[str, np.ndarray], manifest_rows: pd.DataFrame,
                       margin_mm: float = DEFAULT_MARGIN_MM,
                       pixel_mm: float = JSRT_PIXEL_MM_AT_512, *,
                       root: str | Path | None = None,
                       masks: Mapping[str, np.ndarray] | None = None,
                       peak_distance_mm: float = DEFAULT_PEAK_DISTANCE_MM,
                       coord_columns: tuple[str, str] = JSRT_COORD_COLUMNS,
                       coord_frame: int = JSRT_COORD_FRAME, k: int = TOP_K,
                       group_by: str = "subtlety",
                       predicted_masks: Mapping[str, np.ndarray] | None = None,
                       predicted_by: str = LUNG_MODEL) -> dict:
    """Score saliency maps (keyed by the manifest's ``path``) against nodule positions.

    ``manifest_rows`` needs ``path``, the two ``coord_columns`` (nodule centre, column and row,
    in the square ``coord_frame``; ``pixel_mm`` is that frame's pixel size) and ``size_mm``
    (diameter). Rows without coordinates (no nodule) are listed under ``skipped``. Lung masks
    come from ``masks`` (keyed by path), else from ``root / row.mask_path`` where ``root`` is
    given; where neither has one, from ``predicted_masks`` (keyed by path: a segmentation
    model's masks, that model named by ``predicted_by``); without any, ``lung_share`` is null
    and the chance baseline uses the whole image. ``lung_mask_source`` records which was used.

    Returns ``{"settings", "overall", "by_<group_by>", "per_image", "skipped"}``, JSON-ready.
    """
    if margin_mm < 0 or pixel_mm <= 0 or peak_distance_mm <= 0:
        raise LungcadError(f"localisation needs margin_mm >= 0, pixel_mm > 0 and "
                           f"peak_distance_mm > 0 (got {margin_mm}, {pixel_mm}, {peak_distance_mm})")
    needed = ["path", *coord_columns, "size_mm"]
    missing = [c for c in needed if c not in manifest_rows.columns]
    if missing:
        raise LungcadError(f"localisation needs the manifest column(s) {', '.join(missing)} "
                           "(nodule centre and diameter), as JSRT's labels.csv has")
    rows = manifest_rows.set_index("path", drop=False)
    unknown = [p for p in maps if p not in rows.index]
    if unknown:
        raise LungcadError(f"{len(unknown)} map(s) have no manifest row, e.g. {unknown[:3]}")
    min_distance_px = peak_distance_mm / pixel_mm
    x_col, y_col = coord_columns
    records: list[dict] = []
    skipped: list[str] = []
    for path, raw in maps.items():
        row = rows.loc[path]
        cx, cy, size = (pd.to_numeric(pd.Series([row[x_col], row[y_col], row["size_mm"]]),
                                      errors="coerce").tolist())
        if not (np.isfinite(cx) and np.isfinite(cy) and np.isfinite(size)):
            skipped.append(path)
            continue
        saliency = _resample(np.asarray(raw, dtype=np.float32), coord_frame)
        mask, source = None, None
        if masks is not None and path in masks:
            mask, source = np.asarray(masks[path]) > 0, "reference"
            if mask.shape != saliency.shape:
                mask = load_mask_array(mask, coord_frame)
        elif root is not None and has_reference_mask(row):
            mask, source = load_mask(Path(root) / row["mask_path"], coord_frame), "reference"
        elif predicted_masks is not None and path in predicted_masks:
            mask, source = np.asarray(predicted_masks[path]) > 0, f"predicted ({predicted_by})"
            if mask.shape != saliency.shape:
                mask = load_mask_array(mask, coord_frame)
        radius_px = (size / 2 + margin_mm) / pixel_mm
        peak = global_peak(saliency)
        peaks = top_k_peaks(saliency, k, min_distance_px)
        records.append({
            "path": path,
            "label": row.get("label"),
            group_by: _plain(row.get(group_by)),
            "size_mm": float(size), "x": float(cx), "y": float(cy),
            "hit_radius_px": radius_px,
            "peak_x": peak[1] if peak else None, "peak_y": peak[0] if peak else None,
            "peak_distance_mm": (math.hypot(peak[1] - cx, peak[0] - cy) * pixel_mm
                                 if peak else None),
            "peak_hit": nodule_hit(saliency, cx, cy, radius_px),
            "top3_hit": any(_inside(y, x, cx, cy, radius_px) for y, x in peaks),
            "top_peaks": ";".join(f"{x},{y}" for y, x in peaks),
            "lung_share": lung_share(saliency, mask) if mask is not None else None,
            "lung_mask_source": source,
            "chance_peak_hit": chance_peak_hit(saliency.shape, cx, cy, radius_px, mask),
            "empty_map": peak is None,
        })
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(str(r[group_by]), []).append(r)
    return _json_ready({
        "settings": {
            "margin_mm": margin_mm, "pixel_mm": pixel_mm, "peak_distance_mm": peak_distance_mm,
            "top_k": k, "coord_columns": list(coord_columns), "coord_frame": coord_frame,
            "hit_rule": "peak within (size_mm / 2 + margin_mm) of the nodule centre",
            "lung_share_rule": "share of total saliency inside the lung-field mask",
            "chance_rule": "probability that a peak uniform over the lung fields hits",
            "ci_method": CI_METHOD, "group_by": group_by,
        },
        "overall": summarise(records),
        f"by_{group_by}": {key: summarise(groups[key]) for key in sorted(groups, key=_sort_key)},
        "per_image": records,
        "skipped": skipped,
    })


def has_reference_mask(row) -> bool:
    """Whether a manifest row names a lung-field mask file (``mask_path``)."""
    value = row.get("mask_path")
    return isinstance(value, str) and bool(value)


def per_image_frame(result: dict) -> pd.DataFrame:
    """The per-image records of :func:`score_localisation` as a table (for a CSV)."""
    return pd.DataFrame(result["per_image"])


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return int(value) if float(value).is_integer() else float(value)
    return value


def _sort_key(key: str):
    try:
        return (0, float(key), key)
    except ValueError:
        return (1, 0.0, key)


def _json_ready(obj):
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if obj is pd.NA or obj is pd.NaT:
        return None
    return obj
