"""From cell maps to marks: order, spacing, the lung region, coordinates and radius."""

from __future__ import annotations

import numpy as np
import pytest

from lungcad.detection.marks import MarkSettings, allowed_cells, marks_from_cells
from lungcad.errors import LungcadError


def blob(grid: int, r: int, c: int, height: float, width: float = 1.0) -> np.ndarray:
    rows, cols = np.indices((grid, grid))
    return height * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * width ** 2))


def test_marks_are_the_strongest_maxima_in_order_and_in_image_pixels():
    cells = blob(64, 10, 20, 0.9) + blob(64, 40, 50, 0.6)
    marks = marks_from_cells(cells, None, np.ones((64, 64), bool), (512, 512), 0.7,
                             MarkSettings(peaks=2, min_distance_mm=20))
    assert [round(m.score, 3) for m in marks] == [0.9, 0.6]
    # cell (10, 20) of a 64-cell grid over 512 px: centre at pixel (20 * 8 + 3.5, 10 * 8 + 3.5)
    assert (marks[0].x, marks[0].y) == (163.5, 83.5)
    assert (marks[1].x, marks[1].y) == (403.5, 323.5)
    assert marks[0].malignancy is None


def test_coordinates_follow_the_image_size_not_the_grid():
    cells = blob(64, 32, 16, 0.8)
    small = marks_from_cells(cells, None, np.ones((64, 64), bool), (512, 512), 0.7)[0]
    big = marks_from_cells(cells, None, np.ones((64, 64), bool), (2048, 1024), 0.7)[0]
    assert big.x == pytest.approx((small.x + 0.5) * 2 - 0.5)
    assert big.y == pytest.approx((small.y + 0.5) * 4 - 0.5)


def test_marks_closer_than_the_minimum_distance_are_suppressed():
    cells = blob(64, 30, 30, 0.9) + blob(64, 30, 33, 0.8, 0.5)  # 3 cells = 16.8 mm apart
    near = marks_from_cells(cells, None, np.ones((64, 64), bool), (512, 512), 0.7,
                            MarkSettings(peaks=5, min_distance_mm=20))
    assert all(np.hypot(m.x - near[0].x, m.y - near[0].y) * 0.7 >= 20 for m in near[1:])
    close = marks_from_cells(cells, None, np.ones((64, 64), bool), (512, 512), 0.7,
                             MarkSettings(peaks=5, min_distance_mm=10))
    assert any(abs(m.score - 0.8) < 0.02 and m.x == 30 * 8 + 3.5 + 3 * 8 for m in close)


def test_only_allowed_cells_are_marked_and_min_score_stops():
    cells = blob(64, 5, 5, 0.95) + blob(64, 40, 40, 0.5)
    allowed = np.zeros((64, 64), bool)
    allowed[30:50, 30:50] = True
    marks = marks_from_cells(cells, blob(64, 40, 40, 0.7), allowed, (512, 512), 0.7)
    assert marks[0].score == pytest.approx(0.5) and marks[0].malignancy == pytest.approx(0.7)
    assert all(30 * 8 <= m.x < 50 * 8 and 30 * 8 <= m.y < 50 * 8 for m in marks)
    assert marks_from_cells(cells, None, allowed, (512, 512), 0.7,
                            MarkSettings(min_score=0.6)) == []


def test_the_radius_grows_with_the_blob_and_stays_in_range():
    narrow = marks_from_cells(blob(64, 32, 32, 0.9, 1.0), None, np.ones((64, 64), bool),
                              (512, 512), 0.7)[0]
    wide = marks_from_cells(blob(64, 32, 32, 0.9, 4.0), None, np.ones((64, 64), bool),
                            (512, 512), 0.7)[0]
    assert 3.0 <= narrow.radius_mm < wide.radius_mm <= 30.0


def test_allowed_cells_dilate_the_lung_mask_by_the_margin():
    mask = np.zeros((512, 512), bool)
    mask[200:300, 100:200] = True
    none = allowed_cells(mask, (64, 64), 0.7, 0.0)
    wide = allowed_cells(mask, (64, 64), 0.7, 20.0)
    assert none.sum() < wide.sum()
    assert not none[10, 10] and not wide[10, 10]
    assert wide[25 - 3, 20] and not none[25 - 3, 20]  # 3 cells (17 mm) above the mask
    assert allowed_cells(None, (4, 4), 0.7, 20.0).all()


def test_a_large_mask_is_dilated_as_at_full_resolution_give_or_take_the_pooling():
    """A 2,000 px mask is max-pooled before the dilation: the cells it allows are those the
    full-resolution dilation allows, plus at most a rim of 2 * sqrt(2) * factor px outside."""
    from scipy import ndimage

    yy, xx = np.mgrid[:2000, :1900]
    mask = ((yy - 900) / 700) ** 2 + ((xx - 500) / 300) ** 2 <= 1
    mask |= ((yy - 1000) / 650) ** 2 + ((xx - 1400) / 280) ** 2 <= 1
    grid, mm = (32, 32), 0.2
    got = allowed_cells(mask, grid, mm, 20.0)
    full = ndimage.distance_transform_edt(~mask) <= 100  # 20 mm at 0.2 mm a pixel
    rows = ((np.arange(32) + 0.5) * 2000 / 32).astype(int)
    cols = ((np.arange(32) + 0.5) * 1900 / 32).astype(int)
    exact = full[np.ix_(rows, cols)]
    assert (got >= exact).all()  # nothing the full dilation allows is lost
    near = ndimage.distance_transform_edt(~mask) <= 100 + 4 * 2 * np.sqrt(2)  # factor 4
    assert (got <= near[np.ix_(rows, cols)]).all()
    assert 0.3 < exact.mean() < 0.9 and not got.all()


def test_settings_are_checked():
    assert MarkSettings.from_mapping({"peaks": 3}).peaks == 3
    assert MarkSettings.from_mapping({"radius_range_mm": [2, 9]}).radius_range_mm == (2.0, 9.0)
    with pytest.raises(LungcadError, match="unknown mark setting"):
        MarkSettings.from_mapping({"peak": 3})
    with pytest.raises(LungcadError, match="out of range"):
        MarkSettings.from_mapping({"peaks": 0})
