"""Experiment configs: the experiment's own keys beside the training config."""

from __future__ import annotations

import pytest
from experiment_data import make_dataset, write_config

from lungcad.cli import main
from lungcad.errors import LungcadError
from lungcad.experiment.config import ExperimentOptions, load_experiment_config
from lungcad.experiment.summary import mean_sd
from lungcad.training.trainers import get_trainer


def test_experiment_keys_are_taken_out_and_paths_resolved(tmp_path):
    dataset, split = make_dataset(tmp_path / "synth", n=6)
    config_path = write_config(tmp_path / "configs" / "c.yaml", dataset, split,
                               localisation={"method": "gradcam++", "margin_mm": 5})
    config, options = load_experiment_config(config_path, ["epochs=3"])
    assert options == ExperimentOptions(trainer="lightning", localisation=True,
                                        saliency_method="gradcam++", margin_mm=5.0)
    assert "localisation" not in config and config["trainer"] == "lightning"
    assert config["dataset"] == str(dataset.resolve())  # relative to the config's folder
    assert config["split"] == str(split.resolve())
    assert config["epochs"] == 3 and config["image_size"] == 32

    _, options = load_experiment_config(config_path, ["localisation=false"])
    assert options.localisation is False


def test_bad_experiment_keys_are_clear_errors(tmp_path):
    dataset, split = make_dataset(tmp_path / "synth", n=6)
    config_path = write_config(tmp_path / "c.yaml", dataset, split, localisation="yes please")
    with pytest.raises(LungcadError, match="localisation must be true, false or a mapping"):
        load_experiment_config(config_path)
    with pytest.raises(LungcadError, match="unknown saliency method"):
        load_experiment_config(config_path, ["localisation={method: magic}"])
    with pytest.raises(LungcadError, match="unknown key"):
        load_experiment_config(config_path, ["localisation=true", "learning_rate=1"])


def test_unknown_trainer_is_a_one_line_error(tmp_path, capsys):
    dataset, split = make_dataset(tmp_path / "synth", n=6)
    config_path = write_config(tmp_path / "c.yaml", dataset, split)
    status = main(["experiment", str(config_path), "--out", str(tmp_path / "out"),
                   "--set", "trainer=no-such-trainer"])
    err = capsys.readouterr().err
    assert status == 2 and "unknown trainer 'no-such-trainer'" in err
    assert len(err.strip().splitlines()) == 1


def test_named_trainer_resolves_to_its_registered_fit():
    from lungcad.training import linear_probe, nodule_heatmap

    assert get_trainer("nodule_heatmap").fit is nodule_heatmap.fit
    assert get_trainer("nodule-heatmap").fit is nodule_heatmap.fit  # dashes read as underscores
    assert get_trainer("linear_probe").fit is linear_probe.fit
    assert get_trainer(None).name == "lightning" and get_trainer(None).selects_on_validation


def test_mean_sd_uses_the_sample_sd_over_defined_folds():
    stats = mean_sd([0.5, None, 0.7, 0.9])
    assert stats["mean"] == pytest.approx(0.7)
    assert stats["sd"] == pytest.approx(0.2)  # n - 1 in the denominator
    assert stats["n_folds"] == 3
    assert mean_sd([0.4])["sd"] is None
