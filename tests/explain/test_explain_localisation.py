"""Localisation scoring against hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lungcad.errors import LungcadError
from lungcad.explain.localisation import (chance_peak_hit, global_peak, hit_rate, lung_share,
                                          nodule_hit, score_localisation, top_k_peaks)


def peak_map(shape, peaks: list[tuple[int, int, float]], sigma: float = 2.0) -> np.ndarray:
    """Sum of Gaussian bumps at (x, y) with the given heights."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    out = np.zeros(shape, np.float64)
    for x, y, height in peaks:
        out = np.maximum(out, height * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2)))
    return out.astype(np.float32)


def test_nodule_hit_inside_and_outside_the_circle():
    heat = np.zeros((50, 60), np.float32)
    heat[20, 30] = 1.0  # row 20, column 30
    assert nodule_hit(heat, cx=30, cy=20, radius_px=0.5)
    assert nodule_hit(heat, cx=33, cy=24, radius_px=5.0)       # distance exactly 5
    assert not nodule_hit(heat, cx=33, cy=24, radius_px=4.99)
    assert not nodule_hit(heat, cx=20, cy=30, radius_px=5.0)   # x and y swapped: a miss
    assert not nodule_hit(np.zeros((50, 60)), cx=0, cy=0, radius_px=100)  # empty map: no peak
    assert global_peak(np.zeros((5, 5))) is None


def test_top_k_peaks_on_a_crafted_map():
    heat = peak_map((80, 100), [(10, 10, 1.0), (12, 11, 0.95), (80, 60, 0.8), (40, 70, 0.6),
                                (90, 10, 0.3)])
    # (12, 11) is a shoulder of the highest peak, not a peak of its own at distance 10
    assert top_k_peaks(heat, 3, min_distance=10) == [(10, 10), (60, 80), (70, 40)]
    assert top_k_peaks(heat, 5, min_distance=10) == [(10, 10), (60, 80), (70, 40), (10, 90)]
    assert top_k_peaks(heat, 1, min_distance=10) == [(10, 10)]
    # a plateau gives one peak, not one per pixel
    plateau = np.zeros((30, 30), np.float32)
    plateau[5:8, 5:8] = 1.0
    plateau[20, 20] = 0.5
    assert top_k_peaks(plateau, 3, min_distance=4) == [(5, 5), (20, 20)]
    assert top_k_peaks(np.zeros((10, 10)), 3, 2) == []


def test_lung_share_on_a_crafted_mask():
    heat = np.zeros((10, 10), np.float32)
    heat[2, 2], heat[7, 7], heat[0, 9] = 3.0, 1.0, 4.0
    mask = np.zeros((10, 10), np.uint8)
    mask[:5, :5] = 255
    mask[5:, 5:] = 255
    assert lung_share(heat, mask) == pytest.approx(4.0 / 8.0)
    assert np.isnan(lung_share(np.zeros((10, 10)), mask))
    with pytest.raises(LungcadError):
        lung_share(heat, mask[:5])


def test_chance_of_a_random_peak():
    mask = np.zeros((100, 100), bool)
    mask[:, :50] = True
    # a circle of radius 10 entirely inside the mask: area ~ 317 of 5000 mask pixels
    assert chance_peak_hit((100, 100), 25, 50, 10, mask) == pytest.approx(np.pi * 100 / 5000,
                                                                           rel=0.03)
    assert chance_peak_hit((100, 100), 75, 50, 10, mask) == 0.0  # outside the lungs
    assert chance_peak_hit((100, 100), 50, 50, 10) == pytest.approx(np.pi * 100 / 10000, rel=0.03)


def test_hit_rate_uses_a_wilson_interval():
    r = hit_rate([True] * 8 + [False] * 2)
    assert (r["n"], r["hits"], r["rate"]) == (10, 8, 0.8)
    # Wilson 95% for 8/10 (z = 1.959964): centre (8 + z^2/2) / (10 + z^2), half width ...
    z = 1.959963984540054
    centre = (8 + z * z / 2) / (10 + z * z)
    half = z / (10 + z * z) * np.sqrt(8 * 2 / 10 + z * z / 4)
    assert r["ci95"] == pytest.approx([centre - half, centre + half], abs=1e-9)
    assert hit_rate([])["rate"] is None


def make_rows() -> tuple[dict, pd.DataFrame, dict]:
    """Six nodule images in a 100 px frame (1 mm pixels) plus one without a nodule."""
    frame = 100
    rows = pd.DataFrame({
        "path": [f"img{i}.png" for i in range(7)],
        "label": ["malignant"] * 3 + ["benign"] * 3 + ["non_nodule"],
        "subtlety": [5, 5, 5, 2, 2, 2, np.nan],
        "size_mm": [10, 10, 20, 10, 10, 10, np.nan],
        "x_512": [20, 70, 50, 30, 30, 80, np.nan],
        "y_512": [20, 30, 50, 80, 80, 20, np.nan],
    })
    maps = {
        "img0.png": peak_map((frame, frame), [(22, 18, 1.0)]),                 # hit (2.8 px off)
        "img1.png": peak_map((frame, frame), [(70, 49, 1.0)]),                 # 19 px: miss
        "img2.png": peak_map((frame, frame), [(50, 69, 1.0)]),                 # 19 < 10 + 10: hit
        "img3.png": peak_map((frame, frame), [(80, 20, 1.0), (31, 82, 0.7)]),  # top-3 only
        "img4.png": peak_map((frame, frame), [(80, 20, 1.0), (60, 60, 0.9)]),  # miss, miss
        "img5.png": np.zeros((frame, frame), np.float32),                      # empty: miss
        "img6.png": peak_map((frame, frame), [(10, 10, 1.0)]),                 # no nodule: skipped
    }
    masks = {p: np.ones((frame, frame), bool) for p in maps}
    masks["img0.png"] = np.zeros((frame, frame), bool)
    masks["img0.png"][:, :50] = True  # the bump at x=22 lies inside; nothing on the right
    return maps, rows, masks


def test_score_localisation_overall_and_per_subtlety():
    maps, rows, masks = make_rows()
    result = score_localisation(maps, rows, margin_mm=10.0, pixel_mm=1.0, masks=masks,
                                peak_distance_mm=15, coord_frame=100)
    per = {r["path"]: r for r in result["per_image"]}
    assert result["skipped"] == ["img6.png"]
    assert [per[f"img{i}.png"]["peak_hit"] for i in range(6)] == [True, False, True, False,
                                                                 False, False]
    assert [per[f"img{i}.png"]["top3_hit"] for i in range(6)] == [True, False, True, True,
                                                                 False, False]
    assert per["img0.png"]["peak_distance_mm"] == pytest.approx(np.hypot(2, 2))
    assert per["img0.png"]["hit_radius_px"] == pytest.approx(15.0)
    assert per["img0.png"]["lung_share"] == pytest.approx(1.0, abs=1e-6)
    assert per["img5.png"]["empty_map"] and per["img5.png"]["lung_share"] is None
    overall = result["overall"]
    assert overall["n"] == 6
    assert (overall["peak_hit"]["hits"], overall["top3_hit"]["hits"]) == (2, 3)
    assert overall["peak_hit"]["rate"] == pytest.approx(2 / 6)
    assert overall["empty_maps"] == 1
    by = result["by_subtlety"]
    assert list(by) == ["2", "5"]
    assert (by["5"]["n"], by["5"]["peak_hit"]["hits"], by["5"]["top3_hit"]["hits"]) == (3, 2, 2)
    assert (by["2"]["n"], by["2"]["peak_hit"]["hits"], by["2"]["top3_hit"]["hits"]) == (3, 0, 1)
    assert by["2"]["peak_hit"]["ci95"][0] == 0.0 and by["2"]["peak_hit"]["ci95"][1] > 0.4
    s = result["settings"]
    assert (s["margin_mm"], s["pixel_mm"], s["peak_distance_mm"], s["top_k"]) == (10.0, 1.0, 15, 3)
    json.dumps(result, allow_nan=False)  # JSON-ready: no NaN, no numpy types


def test_margin_changes_the_verdict():
    maps, rows, masks = make_rows()
    tight = score_localisation(maps, rows, margin_mm=0.0, pixel_mm=1.0, masks=masks,
                               coord_frame=100)
    per = {r["path"]: r for r in tight["per_image"]}
    assert per["img0.png"]["peak_hit"]          # 2.8 px from the centre of a 5 px radius
    assert not per["img2.png"]["peak_hit"]      # 19 px from the centre of a 10 px radius
    assert tight["settings"]["margin_mm"] == 0.0


def test_maps_at_another_size_are_resampled_to_the_coordinate_frame():
    """A map at 50 px for a 100 px coordinate frame: peak (x=11, y=9) at 50 px is about
    (22.5, 18.5) in the frame, a hit for a nodule at (22, 18)."""
    rows = pd.DataFrame({"path": ["a"], "subtlety": [3], "size_mm": [4.0], "x_512": [22.5],
                         "y_512": [18.5]})
    small = peak_map((50, 50), [(11, 9, 1.0)], sigma=1.5)
    result = score_localisation({"a": small}, rows, margin_mm=1.0, pixel_mm=1.0, coord_frame=100)
    record = result["per_image"][0]
    assert record["peak_hit"]
    assert abs(record["peak_x"] - 22.5) <= 1 and abs(record["peak_y"] - 18.5) <= 1
    assert record["lung_share"] is None  # no mask given


def test_bad_inputs_are_lungcad_errors():
    maps, rows, masks = make_rows()
    with pytest.raises(LungcadError, match="size_mm"):
        score_localisation(maps, rows.drop(columns=["size_mm"]))
    with pytest.raises(LungcadError, match="no manifest row"):
        score_localisation({"other.png": maps["img0.png"]}, rows)
    with pytest.raises(LungcadError):
        score_localisation(maps, rows, margin_mm=-1)


def test_predicted_masks_fill_in_only_where_no_reference_mask_exists():
    maps, rows, masks = make_rows()
    reference = score_localisation(maps, rows, margin_mm=10.0, pixel_mm=1.0, masks=masks,
                                   coord_frame=100)
    # A predicted mask for every image that would put img0's bump outside the lungs.
    left_out = np.zeros((100, 100), bool)
    left_out[:, 50:] = True
    predicted = {p: left_out for p in maps}
    both = score_localisation(maps, rows, margin_mm=10.0, pixel_mm=1.0, masks=masks,
                              coord_frame=100, predicted_masks=predicted, predicted_by="seg")
    assert both["per_image"] == reference["per_image"]  # reference masks win, unchanged
    assert {r["lung_mask_source"] for r in both["per_image"]} == {"reference"}
    assert both["overall"]["lung_mask_sources"] == {"reference": 6}

    partial = {p: m for p, m in masks.items() if p != "img0.png"}
    mixed = score_localisation(maps, rows, margin_mm=10.0, pixel_mm=1.0, masks=partial,
                               coord_frame=100, predicted_masks=predicted, predicted_by="seg")
    per = {r["path"]: r for r in mixed["per_image"]}
    assert per["img0.png"]["lung_mask_source"] == "predicted (seg)"
    assert per["img0.png"]["lung_share"] == pytest.approx(0.0, abs=1e-6)  # bump at x=22 is out
    assert per["img0.png"]["chance_peak_hit"] == 0.0  # the nodule lies outside that mask
    assert per["img1.png"]["lung_mask_source"] == "reference"
    assert mixed["overall"]["lung_mask_sources"] == {"predicted (seg)": 1, "reference": 5}

    none = score_localisation(maps, rows, margin_mm=10.0, pixel_mm=1.0, coord_frame=100)
    assert {r["lung_mask_source"] for r in none["per_image"]} == {None}
    assert none["overall"]["lung_mask_sources"] == {}
