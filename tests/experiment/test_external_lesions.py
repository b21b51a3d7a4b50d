"""A detector experiment on a synthetic two-site lesion dataset (lesions.csv: several lesions an
image, boxes at one site and centres with diameters at the other, each site at its own image size
and pixel spacing; folds grouped by site), then --external on a third site never trained on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from experiment_data import write_config
from lungcad.cli import main
from lungcad.errors import LungcadError

SITES = {"A": dict(width=64, height=64, spacing=0.5, boxes=True),
         "B": dict(width=72, height=64, spacing=0.6, boxes=False),
         "C": dict(width=56, height=56, spacing=0.7, boxes=True)}


def _site_images(root: Path, site: str, n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """n images of one site: even ones hold 1 or 2 bright discs (lesions), odd ones none."""
    geo = SITES[site]
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:geo["height"], :geo["width"]]
    labels, lesions = [], []
    for i in range(n):
        # as tests/experiment/experiment_data.py draws them (a gradient: radiograph-like enough)
        pixels = rng.normal(0.4, 0.08, (geo["height"], geo["width"])) + 0.2 * (yy / geo["height"])
        rel = f"images/{site}{i:02d}.png"
        count = 0 if i % 2 else 1 + (i // 2) % 2
        for k in range(count):
            cx = int(rng.integers(12, geo["width"] - 12))
            cy = 16 + 28 * k + int(rng.integers(-4, 4))
            r = 5
            pixels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] += 0.4
            if geo["boxes"]:
                lesions.append({"path": rel, "x0": cx - r - 0.5, "y0": cy - r - 0.5,
                                "x1": cx + r + 0.5, "y1": cy + r + 0.5,
                                "label": "mass" if k else "nodule"})
            else:
                lesions.append({"path": rel, "x": cx, "y": cy,
                                "diameter_mm": 2 * r * geo["spacing"], "label": "nodule"})
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(root / rel)
        labels.append({"path": rel, "label": "lesion" if count else "no_lesion", "site": site,
                       "group": site, "width": geo["width"], "height": geo["height"],
                       "spacing_mm": geo["spacing"]})
    return labels, lesions


def _write(root: Path, labels: list[dict], lesions: list[dict]) -> Path:
    pd.DataFrame(labels).to_csv(root / "labels.csv", index=False)
    pd.DataFrame(lesions).to_csv(root / "lesions.csv", index=False)
    return root


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory):
    import lungcad.detection.detect as detect_module

    base = tmp_path_factory.mktemp("sites")
    data = base / "ab"
    la, sa = _site_images(data, "A", 8, 0)
    lb, sb = _site_images(data, "B", 8, 1)
    _write(data, la + lb, sa + sb)
    external = base / "site-c"
    _write(external, *_site_images(external, "C", 4, 2))
    paths = [r["path"] for r in la + lb]
    folds = []
    for k, site in enumerate("AB"):  # the site is the group: each fold tests one whole site
        test = [p for p in paths if Path(p).name.startswith(site)]
        rest = [p for p in paths if p not in test]
        folds.append({"fold": k, "train": [p for j, p in enumerate(rest) if j % 3],
                      "val": rest[::3], "test": test})
    split = base / "ab-split.json"
    split.write_text(json.dumps({
        "format": "lungcad-split/1", "dataset": "ab", "task": "lesion", "seed": 0,
        "manifest_sha256": hashlib.sha256((data / "labels.csv").read_bytes()).hexdigest(),
        "n_folds": 2, "val_fraction": 0.3, "grouping": {"method": "site (the group column)"},
        "groups": {p: p[7] for p in paths}, "folds": folds}))
    config = write_config(base / "cfg" / "det.yaml", data, split, trainer="nodule_heatmap",
                          model="nodule-heatmap-lite0", detector=True, task="lesion",
                          image_size=64, epochs=3, batch_size=4, crop_cells=4,
                          model_args={"pretrained": False, "head_channels": 8},
                          torch_threads=1, marks={"peaks": 3, "min_distance_mm": 8})
    out = base / "run"
    with pytest.MonkeyPatch.context() as patch:  # synthetic pictures have no lungs to find
        patch.setattr(detect_module, "bundled_lung_model", lambda: None)
        patch.setenv("LUNGCAD_CACHE_DIR", str(base / "cache"))
        assert main(["experiment", str(config), "--out", str(out), "--bootstrap", "20"]) == 0
        assert main(["experiment", str(config), "--out", str(out), "--final", "--name", "t",
                     "--external", str(external), "--bootstrap", "20"]) == 0
        yield data, external, out, config


def test_the_folds_train_on_lesion_tables_and_score_out_of_fold(two_sites):
    data, _, out, _ = two_sites
    froc = json.loads((out / "froc" / "froc.json").read_text())
    lesions = pd.read_csv(data / "lesions.csv")
    assert froc["n_images"] == 16 and froc["n_nodules"] == len(lesions) == 12
    assert {r["label"] for r in froc["by_label"]} == {"nodule", "mass"}
    assert any("labels.csv spacing_mm" in n for n in froc["lesions_and_spacing"])
    oof = pd.read_csv(out / "oof_findings.csv")
    # each image's marks in its own pixels: site B images are 72 px wide
    b = oof[oof["path"].str.contains("/B")]
    assert len(b) and b["x"].between(0, 71).all() and b["y"].between(0, 63).all()


def test_external_scores_every_fold_model_and_the_final_model(two_sites):
    _, external, out, _ = two_sites
    table = json.loads((out / "external-site-c.json").read_text())
    assert [r["model"] for r in table["models"]] == ["fold-0", "fold-1", "final"]
    assert table["n_images"] == 4 and table["n_lesions"] == 3
    for row in table["models"]:
        assert 0 <= row["sensitivity@0.25"] <= 1 and 0 <= row["image_auc"] <= 1
    text = (out / "external-site-c.md").read_text()
    assert "| final |" in text and "never used for training" in text
    for name in ("fold-0", "fold-1", "final"):
        findings = pd.read_csv(out / "external" / "site-c" / name / "findings.csv")
        assert set(findings["path"]) <= set(pd.read_csv(external / "labels.csv")["path"])


def test_a_set_sharing_an_image_with_training_is_not_external(two_sites, tmp_path):
    from lungcad.experiment.external import score_external

    data, _, out, _ = two_sites
    fake = tmp_path / "fake"
    (fake / "images").mkdir(parents=True)
    (fake / "images" / "x.png").write_bytes((data / "images" / "A00.png").read_bytes())
    (fake / "labels.csv").write_text("path,label\nimages/x.png,lesion\n")
    (fake / "lesions.csv").write_text("path,x,y,diameter_mm\nimages/x.png,5,5,3\n")
    with pytest.raises(LungcadError, match="is not external: 1 of its image"):
        score_external(out, fake, data)
