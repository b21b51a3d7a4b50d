"""``lungcad explain`` through ``lungcad.cli.main``: files per image, bad images, every model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from disc_data import disc_image, disc_network
from lungcad.cli import main
from lungcad.explain import write_heatmaps
from lungcad.model_dir import ModelSpec, save_model_dir
from lungcad.models import create_model, list_models, model_info
from lungcad.preprocess import Preprocessing

MODEL_NAMES = [m.name for m in list_models() if m.kind == "classifier"]  # segmenters: below


def offline_args(name: str) -> dict:
    return {"pretrained": False} if "pretrained" in model_info(name).defaults else {}


def save_random_model(folder, name: str, classes: list[str], size: int = 64):
    import torch

    torch.manual_seed(0)
    args = offline_args(name)
    spec = ModelSpec(name=f"{name}-test", architecture=name, task="synthetic", classes=classes,
                     preprocessing=Preprocessing(size=size), architecture_args=args)
    return save_model_dir(folder, create_model(name, len(classes), **args), spec)


def write_png(path, image: np.ndarray):
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def read_png(path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "RGB"
        return np.asarray(img)


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    wide = write_png(folder / "wide.png", disc_image(rng, (80, 120), (30, 20), 6))
    square = write_png(folder / "square.png", disc_image(rng, (64, 64), (40, 40), 5))
    np.save(folder / "array.npy", disc_image(rng, (70, 50), (20, 50), 5))
    broken = folder / "broken.png"
    broken.write_bytes(b"this is not an image")
    return {"wide": wide, "square": square, "npy": folder / "array.npy", "broken": broken}


def check_outputs(out, stem: str, shape: tuple[int, int]) -> np.ndarray:
    overlay = read_png(out / f"{stem}_overlay.png")
    assert overlay.shape == (*shape, 3)
    saliency = np.load(out / f"{stem}_saliency.npy")
    assert saliency.shape == shape and saliency.dtype == np.float32
    assert saliency.min() >= 0.0 and saliency.max() <= 1.0
    return saliency


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_registered_model_explains_through_the_cli(tmp_path, images, name, capsys):
    model_dir = save_random_model(tmp_path / "model", name, ["no_nodule", "nodule"])
    out = tmp_path / "out"
    assert main(["explain", str(model_dir), str(images["wide"]), "--out", str(out)]) == 0
    check_outputs(out, "wide", (80, 120))
    assert "wide.png: " in capsys.readouterr().out


def test_a_segmentation_model_is_refused_in_one_line(tmp_path, images, capsys):
    import torch

    torch.manual_seed(0)
    spec = ModelSpec(name="lungs-test", architecture="lung-unet", task="jsrt-lungs",
                     classes=["background", "lung"], preprocessing=Preprocessing(size=64))
    model_dir = save_model_dir(tmp_path / "lungs", create_model("lung-unet", 2), spec)
    assert main(["explain", str(model_dir), str(images["wide"]), "--out",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "lungcad segment" in err
    assert not (tmp_path / "out").exists()


def test_one_bad_image_is_reported_and_the_rest_go_on(tmp_path, images, capsys):
    model_dir = save_random_model(tmp_path / "model", "ct-cnn", ["no_nodule", "nodule"])
    out = tmp_path / "out"
    status = main(["explain", str(model_dir), str(images["wide"]), str(images["broken"]),
                   str(images["npy"]), str(tmp_path / "missing.png"), "--out", str(out),
                   "--method", "gradcam++"])
    assert status == 1
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "missing.png" in captured.err
    assert "Traceback" not in captured.err
    assert "2 of 4 image(s) failed" in captured.err
    check_outputs(out, "wide", (80, 120))
    check_outputs(out, "array", (70, 50))
    assert not (out / "broken_overlay.png").exists()


def test_run_folder_multiclass_and_class_choice(tmp_path, images, capsys):
    run = tmp_path / "run"
    save_random_model(run / "model", "ct-cnn", ["normal", "benign", "malignant"])
    out = tmp_path / "out"
    assert main(["explain", str(run), str(images["square"]), "--out", str(out),
                 "--class", "benign", "--method", "layercam"]) == 0
    check_outputs(out, "square", (64, 64))
    assert "layercam for benign" in capsys.readouterr().out
    status = main(["explain", str(run), str(images["square"]), "--out", str(out),
                   "--class", "cancer"])
    assert status == 2
    err = capsys.readouterr().err
    assert "cancer" in err and "normal, benign, malignant" in err


def test_argument_errors_are_one_line(tmp_path, capsys):
    model_dir = save_random_model(tmp_path / "model", "ct-cnn", ["a", "b"])
    assert main(["explain", str(model_dir), "--out", str(tmp_path / "o")]) == 2
    assert "give image files" in capsys.readouterr().err
    assert main(["explain", str(model_dir), "x.png", "--localisation",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--localisation needs --dataset" in capsys.readouterr().err
    assert main(["explain", str(tmp_path / "nowhere"), "x.png", "--out", str(tmp_path)]) == 2
    assert "not a model directory" in capsys.readouterr().err


def test_write_heatmaps_api_names_files_uniquely(tmp_path, images):
    from lungcad import load_model

    model = load_model(save_random_model(tmp_path / "model", "ct-cnn", ["a", "b"]))
    other = tmp_path / "other"
    other.mkdir()
    twin = write_png(other / "wide.png", np.asarray(Image.open(images["wide"])) / 255.0)
    errors: list = []
    written = write_heatmaps(model, [images["wide"], twin, images["broken"]], tmp_path / "out",
                             errors=errors)
    names = sorted(p.name for p in written)
    assert names == ["images_wide_overlay.png", "images_wide_saliency.npy",
                     "other_wide_overlay.png", "other_wide_saliency.npy"]
    assert [p.name for p, _ in errors] == ["broken.png"]
    from lungcad.errors import LungcadError

    with pytest.raises(LungcadError):
        write_heatmaps(model, [images["broken"]], tmp_path / "out2")


# -- localisation on a synthetic nodule dataset -------------------------------------------------

FRAME_SCALE = 4  # 128 px images, coordinates in the 512 px frame as JSRT's x_512 / y_512


@pytest.fixture
def disc_dataset(tmp_path):
    """24 images of 128 px: 20 with a disc ("nodule", subtlety 2 or 5), 4 without; lung mask =
    all but a 10 px border."""
    rng = np.random.default_rng(11)
    root = tmp_path / "discs"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    mask = np.zeros((128, 128), np.uint8)
    mask[10:-10, 10:-10] = 255
    rows = []
    for i in range(24):
        nodule = i < 20
        r = rng.uniform(8, 12)
        cx, cy = rng.uniform(r + 12, 128 - r - 12, size=2)
        image = disc_image(rng, (128, 128), (cx, cy) if nodule else None, r)
        write_png(root / "images" / f"case{i:02d}.png", image)
        Image.fromarray(mask).save(root / "masks" / f"case{i:02d}.png")
        rows.append({
            "path": f"images/case{i:02d}.png", "label": "malignant" if nodule else "non_nodule",
            "subtlety": (5 if i % 2 else 2) if nodule else np.nan,
            "size_mm": 2 * r * FRAME_SCALE * 0.7 if nodule else np.nan,
            "x_512": (cx + 0.5) * FRAME_SCALE - 0.5 if nodule else np.nan,
            "y_512": (cy + 0.5) * FRAME_SCALE - 0.5 if nodule else np.nan,
            "mask_path": f"masks/case{i:02d}.png"})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root


@pytest.fixture
def disc_model_dir(tmp_path, disc_model, monkeypatch):
    """The session's trained disc model as a model directory, its architecture registered for
    this test only."""
    from lungcad.models import registry

    info = registry.ModelInfo(name="test-disc-cnn", builder=lambda num_outputs, in_channels:
                              disc_network(), input_size=64, in_channels=1, target_layer="conv3",
                              description="test only")
    monkeypatch.setitem(registry._REGISTRY, "test-disc-cnn", info)
    spec = ModelSpec(**{**disc_model.spec.__dict__, "task": "jsrt-malignant",
                        "classes": ["rest", "malignant"]})
    return save_model_dir(tmp_path / "disc-model", disc_model.network, spec)


def test_localisation_cli_finds_the_discs(tmp_path, disc_dataset, disc_model_dir, capsys):
    out = tmp_path / "loc"
    status = main(["explain", str(disc_model_dir), "--dataset", str(disc_dataset),
                   "--localisation", "--out", str(out), "--overlays", "--margin-mm", "8"])
    assert status == 0, capsys.readouterr().err
    summary = json.loads((out / "localisation.json").read_text())
    table = pd.read_csv(out / "localisation.csv")
    assert len(table) == 20 and summary["overall"]["n"] == 20
    assert summary["settings"]["margin_mm"] == 8.0 and summary["method"] == "gradcam"
    assert summary["target_layer"] == "conv3" and summary["skipped"] == []
    assert summary["overall"]["peak_hit"]["rate"] >= 0.8
    assert summary["overall"]["chance_peak_hit_mean"] < 0.2
    assert summary["overall"]["lung_share_mean"] > 0.8
    assert set(summary["by_subtlety"]) == {"2", "5"}
    assert sum(b["n"] for b in summary["by_subtlety"].values()) == 20
    assert set(table["target_class"]) == {"malignant"}
    assert {"peak_hit", "top3_hit", "lung_share", "prob_malignant", "x", "y"} <= set(table.columns)
    assert table["top3_hit"].sum() >= table["peak_hit"].sum()
    assert len(list((out / "overlays").glob("*_overlay.png"))) == 20
    assert read_png(out / "overlays" / "case00_overlay.png").shape == (128, 128, 3)
    printed = capsys.readouterr().out
    assert "nodule radius + 8 mm" in printed.splitlines()[0]  # the margin is stated
    assert "subtlety 2" in printed and "subtlety 5" in printed


def test_localisation_needs_nodule_positions(tmp_path, disc_model_dir, capsys):
    root = tmp_path / "plain"
    (root / "images").mkdir(parents=True)
    write_png(root / "images" / "a.png", disc_image(np.random.default_rng(0), (64, 64), None, 0))
    pd.DataFrame({"path": ["images/a.png"], "label": ["normal"]}).to_csv(root / "labels.csv",
                                                                          index=False)
    status = main(["explain", str(disc_model_dir), "--dataset", str(root), "--localisation",
                   "--out", str(tmp_path / "o")])
    assert status == 2
    assert "no nodule positions" in capsys.readouterr().err


class TwoBoxLungs:
    """A stand-in segmentation network: two upright boxes, left and right, whatever the image
    (at 64 px: rows 8-55, columns 8-27 and 36-55), so its masks are known in advance."""

    def __new__(cls):
        import torch

        class Boxes(torch.nn.Module):
            def forward(self, x):
                logits = torch.full((x.shape[0], 1, *x.shape[-2:]), -20.0)
                logits[..., 8:56, 8:28] = 20.0
                logits[..., 8:56, 36:56] = 20.0
                return logits

        return Boxes()


@pytest.fixture
def box_lungs_dir(tmp_path, monkeypatch):
    """A segmentation model directory whose masks are the two boxes of TwoBoxLungs."""
    from lungcad.models import registry

    info = registry.ModelInfo(name="test-box-lungs", builder=lambda num_outputs, in_channels:
                              TwoBoxLungs(), input_size=64, in_channels=1, target_layer="",
                              description="test only")
    monkeypatch.setitem(registry._REGISTRY, "test-box-lungs", info)
    spec = ModelSpec(name="box-lungs", architecture="test-box-lungs", task="jsrt-lungs",
                     classes=["background", "lung"], preprocessing=Preprocessing(size=64),
                     threshold=0.5, modality="chest radiograph")
    return save_model_dir(tmp_path / "box-lungs", TwoBoxLungs(), spec)


def test_localisation_without_reference_masks_uses_the_predicted_ones(
        tmp_path, disc_dataset, disc_model_dir, box_lungs_dir, capsys):
    labels = pd.read_csv(disc_dataset / "labels.csv").drop(columns=["mask_path"])
    labels.to_csv(disc_dataset / "labels.csv", index=False)
    out = tmp_path / "loc"
    status = main(["explain", str(disc_model_dir), "--dataset", str(disc_dataset),
                   "--localisation", "--out", str(out), "--lung-mask-model",
                   str(box_lungs_dir)])
    assert status == 0, capsys.readouterr().err
    summary = json.loads((out / "localisation.json").read_text())
    table = pd.read_csv(out / "localisation.csv")
    assert set(table["lung_mask_source"]) == {"predicted (box-lungs)"}
    assert table["lung_share"].notna().all()
    assert summary["lung_masks"] == {"model": "box-lungs", "predicted": 20, "implausible": []}
    assert summary["overall"]["lung_mask_sources"] == {"predicted (box-lungs)": 20}
    assert ("20 image(s) without a reference lung mask use the mask box-lungs predicts"
            in capsys.readouterr().out)


def test_predicted_lung_share_is_the_saliency_inside_the_predicted_mask(
        disc_dataset, disc_model_dir, box_lungs_dir):
    from lungcad.explain.dataset import localise_dataset
    from lungcad.explain.localisation import score_localisation
    from lungcad import load_model

    labels = pd.read_csv(disc_dataset / "labels.csv").drop(columns=["mask_path"])
    labels.to_csv(disc_dataset / "labels.csv", index=False)
    model, lungs = load_model(disc_model_dir), load_model(box_lungs_dir)
    run = localise_dataset(model, disc_dataset, lung_mask_model=lungs)
    masks = {p: lungs.segment(image).mask for p, image in run.images.items()}
    mask = next(iter(masks.values()))
    assert mask[64, 30] and mask[64, 100] and not mask[64, 64] and not mask[2, 30]  # two boxes
    expected = score_localisation(run.maps, labels, masks=masks)
    got = {r["path"]: r["lung_share"] for r in run.result["per_image"]}
    want = {r["path"]: r["lung_share"] for r in expected["per_image"]}
    assert got == pytest.approx(want)
    assert len(set(round(v, 3) for v in got.values())) > 5  # image by image, not a constant

    default = localise_dataset(model, disc_dataset)  # no lung model: as before, no share
    assert {r["lung_share"] for r in default.result["per_image"]} == {None}
    assert "lung_masks" not in default.result


def test_localisation_with_reference_masks_is_unchanged_by_the_lung_model(
        tmp_path, disc_dataset, disc_model_dir, box_lungs_dir, capsys):
    tables = []
    for choice in (str(box_lungs_dir), "none"):
        out = tmp_path / f"loc-{len(tables)}"
        assert main(["explain", str(disc_model_dir), "--dataset", str(disc_dataset),
                     "--localisation", "--out", str(out), "--lung-mask-model", choice]) == 0
        tables.append(pd.read_csv(out / "localisation.csv"))
    assert set(tables[0]["lung_mask_source"]) == {"reference"}
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert "lung share:" not in capsys.readouterr().out
