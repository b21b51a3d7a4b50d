"""Synthetic nodules: only on training images, inside the lungs, at the size and contrast drawn,
away from real nodules; a blob candidate finds them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lungcad.detection.candidates import blob_candidates
from lungcad.detection.simulate import (FoldSimulator, NoduleSampler, background_removed,
                                        measure_contrast, measured_diameter_px, place,
                                        sphere_profile)
from lungcad.errors import LungcadError

SIDE, MM = 256, 1.4   # a 256 px JSRT-like frame: 1.4 mm per pixel


def lungs(side: int = SIDE) -> np.ndarray:
    rows, cols = np.indices((side, side)) / side
    left = ((cols - 0.3) / 0.17) ** 2 + ((rows - 0.5) / 0.35) ** 2 <= 1
    right = ((cols - 0.7) / 0.17) ** 2 + ((rows - 0.5) / 0.35) ** 2 <= 1
    return left | right


def picture(seed: int, flat: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((SIDE, SIDE), 0.45) + (0 if flat else rng.normal(0, 0.01, (SIDE, SIDE)))
    return image.astype(np.float32)


class Fold:
    """Six images: a..d train (a, b with a real nodule), t1, t2 test; loading is spied on."""

    def __init__(self, flat: bool = False):
        self.images = {p: picture(i, flat) for i, p in enumerate(["a", "b", "c", "d", "t1", "t2"])}
        for p, (x, y) in (("a", (70, 110)), ("b", (190, 150)), ("t1", (70, 120))):
            self.images[p] += sphere_profile((SIDE, SIDE), x, y, 10.0, 1.0) * 0.05
        self.rows = pd.DataFrame({
            "path": ["a", "b", "c", "d", "t1", "t2"],
            "x_512": [140.0, 380.0, np.nan, np.nan, 140.0, np.nan],
            "y_512": [220.0, 300.0, np.nan, np.nan, 240.0, np.nan],
            "size_mm": [14.0, 14.0, np.nan, np.nan, 14.0, np.nan]})
        self.read: list[str] = []
        self.before = {p: a.copy() for p, a in self.images.items()}

    def load_image(self, path):
        self.read.append(path)
        return self.images[path]

    def load_mask(self, path):
        self.read.append(path)
        return lungs()

    def simulator(self, **kwargs) -> FoldSimulator:
        return FoldSimulator(self.rows[self.rows["path"].isin(list("abcd"))], ["t1", "t2"],
                             self.load_image, self.load_mask, MM, **kwargs)


def test_the_simulator_never_touches_a_test_image():
    fold = Fold()
    sim = fold.simulator()
    out = list(sim.generate(per_image=4, seed=1))
    assert [o.path for o in out] == list("abcd")
    assert sum(len(o.nodules) for o in out) >= 12
    assert not {"t1", "t2"} & set(fold.read)                # never read, so never written to
    pasted = pd.concat([o.nodules for o in out])
    assert not {"t1", "t2"} & set(pasted["source_path"])    # no donor from the test part
    for p, before in fold.before.items():                   # loaded arrays are never changed
        np.testing.assert_array_equal(fold.images[p], before)
    with pytest.raises(LungcadError, match="training images only"):
        sim.simulate("t1", 1, np.random.default_rng(0))
    with pytest.raises(LungcadError, match="test image"):
        FoldSimulator(fold.rows, ["t1"], fold.load_image, fold.load_mask, MM)


def test_nodules_land_inside_the_lungs_away_from_real_ones():
    fold = Fold()
    sim = fold.simulator(clearance_mm=30.0)
    for out in sim.generate(per_image=5, seed=2, kinds=("sphere",)):
        added = out.image - fold.images[out.path]
        assert (np.abs(added[~lungs()]) < 1e-6).all()         # nothing written outside the lungs
        for nod in out.nodules.itertuples():
            # the whole disc is inside the mask
            rows, cols = np.indices((SIDE, SIDE))
            disc = np.hypot(cols - nod.x, rows - nod.y) <= nod.diameter_mm / 2 / MM
            assert lungs()[disc].all()
            for x, y in sim.avoid(out.path)[:1 if out.path in "ab" else 0]:
                assert np.hypot(nod.x - x, nod.y - y) * MM >= 30.0


@pytest.mark.parametrize("diameter_mm", [8.0, 15.0, 25.0])
def test_a_sphere_nodule_has_the_requested_size_and_contrast(diameter_mm):
    fold = Fold(flat=True)
    sim = fold.simulator(lobulation=0.0, max_elongation=1.0, edge_mm=(0.5, 0.5))
    patch = sim.sphere_patch(diameter_mm, 0.04, np.random.default_rng(0))
    image = np.full((SIDE, SIDE), 0.45, np.float32)
    from lungcad.detection.simulate import add_patch

    out = add_patch(image, patch, 100, 120)
    added = out - image
    # measured on the output: size within 1.5 px, contrast within 5 %
    assert measured_diameter_px(added) == pytest.approx(diameter_mm / MM, abs=1.5)
    assert measure_contrast(out, 100, 120, diameter_mm / MM) == pytest.approx(0.04, rel=0.05)


def test_a_pasted_nodule_keeps_its_contrast_and_loses_its_background():
    rows, cols = np.indices((SIDE, SIDE))
    ramp = (0.3 + 0.001 * cols + 0.0005 * rows).astype(np.float32)  # a sloped background
    source = ramp + sphere_profile((SIDE, SIDE), 120, 100, 12.0, 1.0).astype(np.float32) * 0.05
    patch = background_removed(source, 120, 100, 12.0)
    target = np.full((SIDE, SIDE), 0.5, np.float32)
    from lungcad.detection.simulate import add_patch

    out = add_patch(target, patch, 60, 60)
    assert measure_contrast(out, 60, 60, 12.0) == pytest.approx(
        measure_contrast(source, 120, 100, 12.0), rel=0.05)
    # the sloped background alone leaves nothing to paste
    assert np.abs(background_removed(ramp, 120, 100, 12.0)).max() < 1e-4


def test_sampler_and_placement():
    sampler = NoduleSampler([10.0, 20.0], [0.02, 0.05], jitter=0.0)
    draws = {sampler.sample(np.random.default_rng(s)) for s in range(20)}
    assert draws == {(10.0, 0.02), (20.0, 0.05)}
    mask = np.zeros((50, 50), bool)
    mask[10:20, 10:20] = True
    assert place(mask, 20.0, [], 0.0, np.random.default_rng(0)) is None  # no room for 20 px
    assert place(mask, 4.0, [(15.0, 15.0)], 4.0, np.random.default_rng(0)) is None  # too near
    mask[10:40, 10:40] = True
    for seed in range(20):
        x, y = place(mask, 4.0, [(25.0, 25.0)], 8.0, np.random.default_rng(seed))
        assert 12 <= x <= 37 and 12 <= y <= 37              # the 4 px disc inside the square
        assert np.hypot(x - 25, y - 25) >= 8


def test_blob_candidates_find_simulated_nodules():
    fold = Fold()
    sim = fold.simulator(clearance_mm=40.0)
    out = sim.simulate("c", 3, np.random.default_rng(5), kinds=("sphere",))
    found = blob_candidates(out.image, lungs(), MM, 10)
    for nod in out.nodules.itertuples():
        near = np.hypot(found["x"] - nod.x, found["y"] - nod.y) * MM
        assert (near <= nod.diameter_mm / 2 + 5).any()      # the FROC hit rule
