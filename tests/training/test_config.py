"""Config files: defaults, relative paths, overrides, checks; the shipped configs load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lungcad.data.tasks import get_task
from lungcad.errors import LungcadError
from lungcad.models import model_info
from lungcad.training.config import load_config
from lungcad.training.lightning_config import DEFAULTS

ALL_CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
# the Lightning configs (others name another registered trainer)
CONFIGS = [p for p in ALL_CONFIGS
           if (yaml.safe_load(p.read_text()) or {}).get("trainer", "lightning") == "lightning"]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    cfg = write(tmp_path / "cfgs" / "a.yaml",
                "model: ct-cnn\ndataset: ../data/x\ntask: jsrt-malignant\nsplit: s.json\n"
                "model_args: {pretrained: ../w.pt}\n")
    monkeypatch.chdir(tmp_path / "cfgs" / "..")
    config = load_config(cfg, ["split=other.json"])
    assert config["dataset"] == str((tmp_path / "data" / "x").resolve())
    assert config["model_args"]["pretrained"] == str((tmp_path / "w.pt").resolve())
    # a path given on the command line is relative to the current folder
    assert config["split"] == str((tmp_path / "other.json").resolve())


def test_overrides_are_typed_and_dotted(tmp_path):
    cfg = write(tmp_path / "a.yaml", "model: ct-cnn\ndataset: d\ntask: jsrt-malignant\nsplit: s.json\n"
                "lr: 1e-4\naugment: {rotation: 2}\n")
    config = load_config(cfg, ["epochs=3", "augment.enabled=false", "augment.scale=[0.9, 1.2]",
                               "model_args.pretrained=none", "threshold=0.5"])
    assert config["lr"] == pytest.approx(1e-4)  # YAML reads 1e-4 as a string; it is a number here
    assert config["epochs"] == 3
    assert config["augment"]["enabled"] is False and config["augment"]["rotation"] == 2
    assert config["augment"]["scale"] == [0.9, 1.2]
    assert config["augment"]["shear"] == DEFAULTS["augment"]["shear"]  # defaults fill the rest
    assert config["model_args"] == {"pretrained": "none"}
    assert config["threshold"] == "0.5"


@pytest.mark.parametrize("override, message", [
    ("monitor=val_f1", "monitor must be one of"),
    ("epochs=two", "epochs must be an integer"),
    ("batch_size=0", "batch_size must be at least 1"),
    ("threshold=best", "unknown threshold rule"),
    ("class_balance=oversample", "class_balance must be one of"),
    ("augment.flip=true", "unknown augment key"),
    ("colour=red", "unknown key"),
    ("novalue", "expected key=value"),
    ("num_nodes=0", "num_nodes must be at least 1"),
])
def test_bad_values_are_clear_errors(tmp_path, override, message):
    cfg = write(tmp_path / "a.yaml", "model: ct-cnn\ndataset: d\ntask: jsrt-malignant\nsplit: s.json\n")
    with pytest.raises(LungcadError, match=message):
        load_config(cfg, [override])


def test_devices_num_nodes_and_strategy_reach_the_config_as_given(tmp_path):
    """lungcad train/experiment --devices --num-nodes --strategy: Lightning gets them as typed."""
    import argparse

    from lungcad.commands.train import hardware_overrides

    cfg = write(tmp_path / "a.yaml", "model: ct-cnn\ndataset: d\ntask: jsrt-malignant\nsplit: s.json\n")
    assert load_config(cfg)["num_nodes"] == 1
    args = argparse.Namespace(devices=4, num_nodes=2, strategy="ddp_find_unused_parameters_true")
    config = load_config(cfg, hardware_overrides(args))
    assert (config["devices"], config["num_nodes"], config["strategy"]) == (
        4, 2, "ddp_find_unused_parameters_true")


def test_missing_required_key_and_bad_yaml(tmp_path):
    with pytest.raises(LungcadError, match="split is required"):
        load_config(write(tmp_path / "a.yaml", "model: ct-cnn\ndataset: d\ntask: jsrt-malignant\n"))
    with pytest.raises(LungcadError, match="not valid YAML"):
        load_config(write(tmp_path / "b.yaml", "model: [ct-cnn\n"))
    with pytest.raises(LungcadError, match="not found"):
        load_config(tmp_path / "none.yaml")


def test_every_trainer_config_loads_with_its_own_defaults(tmp_path):
    cfg = write(tmp_path / "other.yaml", "trainer: nodule_heatmap\ndataset: d\n"
                "task: jsrt-nodule\nsplit: s.json\ncrop_cells: 16\n")
    config = load_config(cfg)
    assert config["trainer"] == "nodule_heatmap" and config["crop_cells"] == 16
    assert config["epochs"] == 20 and config["model_args"]["head_channels"] == 64  # its defaults
    assert config["dataset"] == str((tmp_path / "d").resolve())
    with pytest.raises(LungcadError, match="unknown trainer 'nope'"):
        load_config(write(tmp_path / "bad.yaml", "trainer: nope\ndataset: d\ntask: jsrt-nodule\n"
                          "split: s.json\n"))
    with pytest.raises(LungcadError, match="split is required"):
        load_config(write(tmp_path / "s.yaml", "trainer: linear_probe\ndataset: d\n"
                          "task: jsrt-nodule\n"))
    # experiment-only keys in a Lightning config do not stop `lungcad train`
    cfg = write(tmp_path / "exp.yaml", "trainer: lightning\nlocalisation: true\nmodel: ct-cnn\n"
                "dataset: d\ntask: jsrt-malignant\nsplit: s.json\n")
    assert "localisation" not in load_config(cfg)


def test_there_are_reference_and_own_configs():
    names = {p.stem for p in CONFIGS}
    assert {"jsrt-paper-cnn-lstm", "jsrt-vgg16-lstm", "ct-cnn", "jsrt-efficientnet-lite0",
            "iqothnccd-efficientnet-lite0", "chest-ct-efficientnet-lite0"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_load_and_name_real_things(path: Path):
    config = load_config(path)
    info = model_info(config["model"])
    get_task(config["task"])
    dataset = Path(config["dataset"])
    # default dataset location: ../../shared/data/<name> from configs/
    assert dataset.parent == (path.parent / ".." / ".." / "shared" / "data").resolve()
    assert Path(config["split"]).parent == (path.parent.parent / "splits").resolve()
    size = config["image_size"] or info.input_size
    assert size % info.size_multiple == 0


def test_paper_config_matches_the_paper():
    config = load_config(next(p for p in CONFIGS if p.stem == "jsrt-paper-cnn-lstm"))
    assert (config["image_size"], config["batch_size"], config["lr"], config["optimizer"],
            config["epochs"], config["monitor"], config["threshold"]) == (
        256, 12, 1e-4, "adam", 38, "val_acc", "0.5")


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=[p.stem for p in ALL_CONFIGS])
def test_every_shipped_config_loads_through_its_trainer(path: Path):
    from lungcad.training.trainers import get_trainer

    config = load_config(path)
    trainer = get_trainer(config["trainer"])
    assert config["trainer"] == trainer.name
    for key in trainer.defaults:  # the trainer's defaults are filled in
        assert key in config
    get_task(config["task"])
    assert Path(config["split"]).is_file()
