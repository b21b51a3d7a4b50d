"""Nodule candidates: blob filters find round bright blobs (not ridges), the union keeps both
sources' order and spacing, and the recall table counts what a hand case says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lungcad.detection.candidates import (BlobSettings, allowed_pixels, blob_candidates,
                                          candidate_recall, merge_candidates, peaks)
from lungcad.errors import LungcadError
from lungcad.evaluation.froc import Truth

MM = 0.7  # mm per pixel of a 512 px JSRT image


def disc(shape, x, y, diameter_mm, height):
    rows, cols = np.indices(shape)
    rho = np.hypot(cols - x, rows - y) / (diameter_mm / 2 / MM)
    return height * np.sqrt(np.clip(1 - rho ** 2, 0, None))


def hand_image(seed: int = 0):
    """256 px: noise, a bright horizontal 'rib' (a ridge), nodules of 8 and 20 mm."""
    rng = np.random.default_rng(seed)
    image = 0.4 + rng.normal(0, 0.004, (256, 256))
    image[60:70, :] += 0.08                                 # a rib: a long bright band
    image += disc(image.shape, 70, 150, 8.0, 0.06) + disc(image.shape, 180, 170, 20.0, 0.05)
    return image.astype(np.float32)


@pytest.mark.parametrize("method", ["dot", "log"])
def test_blob_candidates_put_both_nodules_first(method):
    image = hand_image()
    found = blob_candidates(image, None, MM, 10, BlobSettings(method=method))
    first = found.head(2)
    assert set(zip(first["x"].round(), first["y"].round())) <= {
        (x, y) for x0, y0 in ((70, 150), (180, 170)) for x in range(x0 - 2, x0 + 3)
        for y in range(y0 - 2, y0 + 3)}
    assert sorted(first["x"].round()) != [70.0, 70.0]        # one on each nodule
    # the diameter of the best scale is the nodule's, within one scale step
    big = first[first["x"].round().between(178, 182)].iloc[0]
    assert 2 * big["radius_mm"] == pytest.approx(20.0, rel=0.35)
    assert list(found["rank"]) == list(range(len(found)))


def test_candidates_stay_in_the_dilated_lung_mask_and_apart():
    image = hand_image()
    lungs = np.zeros(image.shape, bool)
    lungs[120:220, 140:230] = True                          # holds only the 20 mm nodule
    found = blob_candidates(image, lungs, MM, 50, BlobSettings(lung_margin_mm=7.0))
    allowed = allowed_pixels(lungs, image.shape, MM, 7.0)
    assert allowed[found["y"].astype(int), found["x"].astype(int)].all()
    assert (found.iloc[0][["x", "y"]].round() - [180, 170]).abs().max() <= 2
    xy = found[["x", "y"]].to_numpy()
    gaps = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1)) * MM
    assert (gaps[np.triu_indices(len(xy), 1)] >= 7.0).all()
    with pytest.raises(LungcadError, match="empty"):
        blob_candidates(image, np.zeros(image.shape, bool), MM)


def test_peaks_are_greedy_by_strength():
    strength = np.zeros((50, 50))
    strength[10, 10], strength[10, 13], strength[40, 40] = 3.0, 2.0, 1.0
    at = peaks(strength, np.ones_like(strength, bool), 1.0, 5.0, 10)
    assert at.tolist()[:2] == [[10, 10], [40, 40]]          # (10, 13) is within 5 px of the first


def test_merge_interleaves_sources_and_drops_near_repeats():
    a = pd.DataFrame({"x": [10.0, 100.0, 200.0], "y": [10.0, 10.0, 10.0], "radius_mm": 5.0,
                      "score": [0.9, 0.8, 0.7], "source": "map", "rank": [0, 1, 2]})
    b = pd.DataFrame({"x": [12.0, 300.0], "y": [10.0, 300.0], "radius_mm": 5.0,
                      "score": [5.0, 4.0], "source": "blob", "rank": [0, 1]})
    merged = merge_candidates([a, b], MM, limit=10, min_distance_mm=7.0)
    # a0, (b0 is 1.4 mm from a0: dropped), a1, b1, a2
    assert list(zip(merged["x"], merged["source"])) == [
        (10.0, "map"), (100.0, "map"), (300.0, "blob"), (200.0, "map")]
    assert list(merged["rank"]) == [0, 1, 2, 3]
    assert merged["score"].is_monotonic_decreasing
    assert len(merge_candidates([a, b], MM, limit=2)) == 2


def test_recall_on_a_hand_case():
    # image a: nodule 1 (10 mm at (100, 100) px) found by rank 3; nodule 2 missed;
    # image b: nodule 3 (subtlety 5) found by rank 0; image c: no nodule
    nodules = pd.DataFrame({"path": ["a", "a", "b"], "x_mm": [70.0, 280.0, 70.0],
                            "y_mm": [70.0, 280.0, 70.0], "radius_mm": [5.0, 5.0, 5.0],
                            "size_mm": [10.0] * 3, "subtlety": [1.0, 1.0, 5.0]})
    truth = Truth(("a", "b", "c"), nodules)
    cand = pd.DataFrame({"path": ["a"] * 4 + ["b", "b"],
                         "x": [300.0, 0.0, 50.0, 100.0 + 14.0, 100.0, 10.0],
                         "y": [300.0, 0.0, 50.0, 100.0, 100.0, 10.0],
                         "radius_mm": 5.0, "rank": [0, 1, 2, 3, 0, 1]})
    # a's rank 3 mark is 14 px = 9.8 mm from nodule 1: within its 5 mm radius + 5 mm margin
    table = candidate_recall(cand, truth, ks=(1, 4, 10)).set_index("nodules")
    assert table.loc["all", "n"] == 3
    assert table.loc["all", "top 1"] == pytest.approx(1 / 3)
    assert table.loc["all", "top 4"] == pytest.approx(2 / 3)
    assert table.loc["subtlety 1", "top 4"] == pytest.approx(1 / 2)
    assert table.loc["subtlety 5", "top 1"] == 1.0
    assert table.loc["candidates per image (mean)", "top 4"] == pytest.approx((4 + 2 + 0) / 3)
    # one step further (10.2 mm) misses
    cand.loc[3, "x"] = 100.0 + 14.6
    assert candidate_recall(cand, truth, ks=(4,)).set_index("nodules").loc[
        "all", "top 4"] == pytest.approx(1 / 3)


def test_a_fitted_ranker_puts_bright_round_candidates_first():
    from lungcad.detection.candidate_rank import (CandidateRanker, candidate_features,
                                                  reranked)

    image = hand_image()
    found = blob_candidates(image, None, MM, 30).assign(path="img")
    features = found.join(candidate_features(image, found, MM).drop(columns=["radius_mm"]))
    # train on a label that the contrast feature decides: the two nodules are the hits
    hits = ((features["x"] - 70).abs() + (features["y"] - 150).abs() < 5) | \
        ((features["x"] - 180).abs() + (features["y"] - 170).abs() < 5)
    assert hits.sum() == 2
    flipped = features.assign(rank=features["rank"][::-1].to_numpy())  # hide the filter order
    ranker = CandidateRanker("logistic").fit(flipped, hits)
    out = reranked(flipped, ranker.score(flipped))
    assert list(out["rank"]) == list(range(len(out)))
    assert set(out.head(2)["x"].round()) == set(features[hits]["x"].round())
    with pytest.raises(LungcadError, match="hit a nodule and others"):
        CandidateRanker().fit(features, np.zeros(len(features)))


def test_map_candidates_are_the_detector_marks_in_image_pixels():
    from lungcad.detection.candidates import map_candidates

    rows, cols = np.indices((32, 32))
    cells = 0.9 * np.exp(-((rows - 10) ** 2 + (cols - 20) ** 2) / 2.0) + \
        0.5 * np.exp(-((rows - 25) ** 2 + (cols - 5) ** 2) / 2.0)
    found = map_candidates(cells, None, (512, 512), MM, limit=2, min_distance_mm=20.0)
    assert list(zip(found["x"], found["y"])) == [(20 * 16 + 7.5, 10 * 16 + 7.5),
                                                 (5 * 16 + 7.5, 25 * 16 + 7.5)]
    assert list(found["source"]) == ["map", "map"] and list(found["rank"]) == [0, 1]
