"""Saliency and localisation scoring on the real JSRT radiographs (../shared/data/jsrt)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from known_networks import SIZE, make_model
from lungcad.cli import main
from lungcad.data.manifest import Manifest
from lungcad.explain import saliency_map
from lungcad.explain.localisation import score_localisation
from lungcad.io import load_image

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def jsrt(shared_data) -> Manifest:
    return Manifest.load(shared_data / "jsrt")


def bump(shape, x: float, y: float, sigma: float = 6.0) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def test_oracle_maps_hit_and_mirrored_maps_miss(jsrt):
    """Maps peaking at the manifest's nodule centres all hit; the same maps mirrored left-right
    (what a flipped map would be) mostly land in the other lung and miss. This pins the
    coordinate convention (x_512 = column, y_512 = row) and the mask reading."""
    rows = jsrt.table[jsrt.table["has_nodule"] == 1]
    assert len(rows) == 123
    oracle = {r.path: bump((512, 512), r.x_512, r.y_512) for r in rows.itertuples()}
    mirrored = {p: m[:, ::-1].copy() for p, m in oracle.items()}
    scored = score_localisation(oracle, rows, root=jsrt.root)
    assert scored["overall"]["peak_hit"]["rate"] == 1.0
    assert scored["overall"]["top3_hit"]["rate"] == 1.0
    assert set(scored["by_subtlety"]) == {"1", "2", "3", "4", "5"}
    # nodules lie in the lung fields: most of a narrow bump at the centre is inside the mask
    assert scored["overall"]["lung_share_median"] > 0.9
    # a random peak in the lungs would hit rarely: the chance baseline is small
    assert scored["overall"]["chance_peak_hit_mean"] < 0.15
    flipped = score_localisation(mirrored, rows, root=jsrt.root)
    assert flipped["overall"]["peak_hit"]["rate"] < 0.25


def test_identity_map_lines_up_with_a_radiograph(jsrt):
    """A network whose Grad-CAM is the (resized) input: on real radiographs the map must match
    the image, not its mirror image."""
    model = make_model(np.ones((1, SIZE, SIZE)), ["a", "b"])
    for rel in jsrt.paths[:3] + jsrt.paths[-2:]:
        image = load_image(jsrt.image_path(rel)).array
        heat = saliency_map(model, image)
        assert heat.shape == image.shape == (512, 512)
        r = np.corrcoef(heat.ravel(), image.ravel())[0, 1]
        r_mirror = np.corrcoef(heat[:, ::-1].ravel(), image.ravel())[0, 1]
        r_upside = np.corrcoef(heat[::-1, :].ravel(), image.ravel())[0, 1]
        assert r > 0.95 and r > r_mirror + 0.05 and r > r_upside + 0.3


def test_localisation_cli_on_jsrt(jsrt, tmp_path, capsys):
    """End to end on the real data with a small random network: every nodule image is scored,
    the masks are read, the numbers are self-consistent."""
    import torch

    from lungcad.model_dir import ModelSpec, save_model_dir
    from lungcad.models import create_model
    from lungcad.preprocess import Preprocessing

    torch.manual_seed(0)
    spec = ModelSpec(name="random", architecture="ct-cnn", task="jsrt-nodule",
                     classes=["no_nodule", "nodule"], preprocessing=Preprocessing(size=64))
    model_dir = save_model_dir(tmp_path / "m", create_model("ct-cnn", 2), spec)
    out = tmp_path / "loc"
    status = main(["explain", str(model_dir), "--dataset", str(jsrt.root), "--localisation",
                   "--out", str(out), "--batch-size", "16"])
    assert status == 0, capsys.readouterr().err
    summary = json.loads((out / "localisation.json").read_text())
    table = pd.read_csv(out / "localisation.csv")
    assert summary["overall"]["n"] == len(table) == 123
    assert summary["settings"]["margin_mm"] == 10.0 and summary["settings"]["pixel_mm"] == 0.7
    assert table["lung_share"].notna().all() or summary["overall"]["empty_maps"] > 0
    assert summary["overall"]["peak_hit"]["hits"] == int(table["peak_hit"].sum())
    assert (table["top3_hit"] >= table["peak_hit"]).all()
    by = summary["by_subtlety"]
    assert sum(v["n"] for v in by.values()) == 123
    expected = (table["size_mm"] / 2 + 10.0) / 0.7
    np.testing.assert_allclose(table["hit_radius_px"], expected)
