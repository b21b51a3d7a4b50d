"""A segmentation task end to end on synthetic radiographs: `lungcad train` and `lungcad
experiment` with the segmentation trainer (tiny U-Net, 2 epochs), the out-of-fold masks scored
against their references, the report with the worst cases, and `--final` with its model card."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lungcad.cli import main


def make_lungs_dataset(root: Path, n: int = 12, size: int = 64) -> tuple[Path, Path]:
    """Bright images with two dark elliptic 'lungs' at jittered places, their masks, a 3-fold
    split file (one image per patient)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:size, :size]
    rows = []
    for i in range(n):
        dy, dx = rng.integers(-3, 4, 2)
        mask = np.zeros((size, size), bool)
        for cx in (0.3 * size, 0.7 * size):
            mask |= ((yy - size / 2 - dy) / (0.35 * size)) ** 2 \
                + ((xx - cx - dx) / (0.13 * size)) ** 2 <= 1
        image = np.clip(0.8 - 0.5 * mask + rng.normal(0, 0.05, mask.shape), 0, 1)
        name = f"case{i:03d}.png"
        Image.fromarray((image * 255).astype(np.uint8)).save(root / "images" / name)
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / name)
        rows.append(f"images/{name},{'malignant' if i % 2 else 'non_nodule'},masks/{name}")
    (root / "labels.csv").write_text("path,label,mask_path\n" + "\n".join(rows) + "\n")
    paths = [r.split(",")[0] for r in rows]
    folds = []
    for k in range(3):
        test = paths[k::3]
        rest = [p for p in paths if p not in test]
        folds.append({"fold": k, "train": rest[2:], "val": rest[:2], "test": test})
    split = {"format": "lungcad-split/1", "dataset": root.name, "task": "jsrt-lungs",
             "manifest_sha256": hashlib.sha256((root / "labels.csv").read_bytes()).hexdigest(),
             "seed": 0, "n_folds": 3, "val_fraction": 0.2, "grouping": {},
             "groups": {p: i for i, p in enumerate(paths)}, "folds": folds}
    split_path = root.parent / "lungs-split.json"
    split_path.write_text(json.dumps(split))
    return root, split_path


def write_config(path: Path, dataset: Path, split: Path) -> Path:
    keys = {"trainer": "segmentation", "model": "lung-unet", "dataset": str(dataset),
            "split": str(split), "task": "jsrt-lungs", "image_size": 64, "epochs": 2,
            "batch_size": 4, "model_args": {"channels": [4, 8, 16]}, "torch_threads": 1}
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in keys.items()))
    return path


@pytest.fixture(scope="module")
def lungs_experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("lungs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LUNGCAD_CACHE_DIR", str(root / "cache"))
        dataset, split = make_lungs_dataset(root / "jsrt-synth")
        config = write_config(root / "lungs.yaml", dataset, split)
        out = root / "exp"
        cv = main(["experiment", str(config), "--out", str(out), "--bootstrap", "100"])
        final = main(["experiment", str(config), "--out", str(out), "--final",
                      "--name", "lungs-final"])
    return {"out": out, "status": (cv, final), "dataset": dataset, "split": split,
            "config": config}


def test_every_image_is_segmented_out_of_fold_and_scored(lungs_experiment):
    assert lungs_experiment["status"] == (0, 0)
    out = lungs_experiment["out"]
    oof = pd.read_csv(out / "oof_segmentation.csv")
    folds = json.loads(lungs_experiment["split"].read_text())["folds"]
    assert sorted(oof["path"]) == sorted(p for f in folds for p in f["test"])
    for k, f in enumerate(folds):
        assert sorted(oof.loc[oof["fold"] == k, "path"]) == sorted(f["test"])
        threshold = json.loads((out / f"fold-{k}" / "threshold.json").read_text())
        assert threshold["value"] == 0.5 and threshold["chosen_on"] == "none"
        assert len(pd.read_csv(out / f"fold-{k}" / "val_predictions.csv")) == len(f["val"])
    assert oof["dice"].between(0, 1).all() and oof["iou"].between(0, 1).all()
    assert (oof["iou"] <= oof["dice"] + 1e-9).all()  # IoU never exceeds Dice
    # the stored mask is the one that was scored
    from lungcad.evaluation.segmentation import mask_metrics
    from lungcad.io import load_image

    row = oof.iloc[0]
    predicted = load_image(out / f"fold-{row['fold']}" / row["mask_file"]).array > 0.5
    reference = load_image(lungs_experiment["dataset"] / "masks" / Path(row["path"]).name).array
    scored = mask_metrics(predicted, reference > 0.5, spacing_mm=0.7 * 512 / 64)
    assert scored["dice"] == pytest.approx(row["dice"])


def test_summary_and_report_give_intervals_and_the_worst_cases(lungs_experiment):
    out = lungs_experiment["out"]
    summary = json.loads((out / "summary.json").read_text())
    oof = pd.read_csv(out / "oof_segmentation.csv")
    dice = summary["metrics"]["dice"]
    assert dice["value"] == pytest.approx(oof["dice"].mean())
    assert dice["ci_low"] <= dice["value"] <= dice["ci_high"]
    assert [w["path"] for w in summary["worst"]] == \
        oof.sort_values("dice")["path"].head(5).tolist()
    html = (out / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and "hd95_mm" in html
    assert "Dice" in (out / "summary.md").read_text()


def test_final_model_segments_and_its_card_has_the_cross_validated_dice(lungs_experiment):
    import lungcad

    out = lungs_experiment["out"]
    model = lungcad.load_model(out / "final" / "model")
    assert model.kind == "segmenter" and model.spec.threshold == 0.5
    image = lungs_experiment["dataset"] / "images" / "case000.png"
    result = model.segment(image)
    assert result.mask.shape == (64, 64) and result.mask.dtype == bool
    card = (out / "final" / "model" / "MODEL_CARD.md").read_text()
    dice = json.loads((out / "summary.json").read_text())["metrics"]["dice"]
    assert f"| dice | {dice['value']:.3f} [{dice['ci_low']:.3f}, {dice['ci_high']:.3f}] |" in card
    assert "PA view only" in card and "not a medical device" in card.lower()


def test_a_classifier_cannot_segment_and_train_runs_the_segmentation_config(lungs_experiment,
                                                                           tmp_path):
    import lungcad
    from lungcad.errors import LungcadError

    with pytest.raises(LungcadError, match="is a classifier"):
        lungcad.load_model("ct-normal-vs-abnormal").segment(np.zeros((64, 64), np.float32))
    run = tmp_path / "run"
    assert main(["train", str(lungs_experiment["config"]), "--out", str(run)]) == 0
    assert (run / "model" / "model.json").is_file() and (run / "threshold.json").is_file()
