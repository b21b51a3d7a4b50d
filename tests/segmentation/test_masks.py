"""Lung masks as a user expects them: two largest regions, holes filled, sides, the plausibility
check and the measures, on hand-made masks."""

from __future__ import annotations

import numpy as np

from lungcad.segmentation.masks import (clean_lung_mask, filled, lung_measures,
                                        plausibility_problems, side_masks)


def two_lungs(size: int = 100) -> np.ndarray:
    """Two upright ellipses left and right of the centre, about 14% of the image each."""
    yy, xx = np.mgrid[:size, :size]
    right = ((yy - 50) / 35) ** 2 + ((xx - 28) / 13) ** 2 <= 1   # image left: patient's right
    left = ((yy - 50) / 35) ** 2 + ((xx - 72) / 13) ** 2 <= 1
    return right | left


def test_cleaning_keeps_the_two_largest_regions_and_fills_holes():
    lungs = two_lungs()
    probability = lungs.astype(np.float32) * 0.9
    probability[48:52, 26:30] = 0.1           # a hole inside the patient's right lung
    probability[2:5, 2:5] = 0.95              # a speck in the corner
    mask = clean_lung_mask(probability)
    assert mask[50, 28] and not mask[3, 3]
    assert (mask == lungs).all()


def test_holes_are_filled_exactly_as_scipy_fills_them():
    """The labelling shortcut gives binary_fill_holes' answer, on noisy shapes with holes,
    holes touching the border, diagonal gaps and regions inside holes, and the cleaning gives
    what filling each kept region with scipy gives."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for trial in range(40):
        shape = tuple(rng.integers(5, 60, size=2))
        noisy = ndimage.gaussian_filter(rng.random(shape), rng.uniform(0.5, 3)) > 0.5
        assert (filled(noisy) == ndimage.binary_fill_holes(noisy)).all(), trial
        probability = noisy.astype(float)
        labels, n = ndimage.label(noisy, structure=np.ones((3, 3), bool))
        keep = np.argsort(np.bincount(labels.ravel())[1:])[::-1][:2] + 1 if n else []
        expected = np.zeros(shape, bool)
        for label in keep:
            expected |= ndimage.binary_fill_holes(labels == label)
        assert (clean_lung_mask(probability) == (expected if n else noisy)).all(), trial
    ring = np.ones((7, 7), bool)
    ring[2:5, 2:5] = False
    ring[3, 3] = True                          # a region inside the hole
    ring[3, 0] = False                         # a dent open to the border: not a hole
    assert filled(ring).sum() == 48 and not filled(ring)[3, 0]


def test_sides_follow_the_radiological_convention():
    sides = side_masks(two_lungs())
    assert sides["right"][50, 28] and not sides["right"][50, 72]
    assert sides["left"][50, 72] and not sides["left"][50, 28]


def test_a_pair_of_lungs_is_plausible_and_other_shapes_are_not():
    assert plausibility_problems(two_lungs()) == []
    one = two_lungs()
    one[:, 50:] = False
    assert any("no left lung" in p for p in plausibility_problems(one))
    assert plausibility_problems(np.zeros((100, 100), bool))  # nothing found
    blob = np.zeros((100, 100), bool)
    blob[5:95, 5:95] = True                   # one huge region: not lungs
    assert plausibility_problems(clean_lung_mask(blob.astype(float)))


def test_measures_per_side_in_pixels_and_mm():
    lungs = two_lungs()
    m = lung_measures(lungs, spacing_mm=(0.5, 0.25))
    right = side_masks(lungs)["right"]
    assert m["right_area_px"] == int(right.sum()) and m["right_height_px"] == 71
    assert m["right_area_mm2"] == round(right.sum() * 0.125, 1)
    assert m["right_height_mm"] == 35.5
    assert abs(m["lung_fraction"] - lungs.mean()) < 1e-9
    assert "left_area_mm2" not in lung_measures(lungs)  # no spacing, no mm
