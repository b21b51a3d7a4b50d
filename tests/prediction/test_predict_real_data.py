"""`lungcad predict` on the real shared data: the JSRT dataset folder (labels and metadata
passed through) and real DICOM files. The model is untrained: the plumbing is tested."""

from __future__ import annotations

import pandas as pd
import pytest

from lungcad.cli import main
from lungcad.evaluation.predictions import read_predictions

pytestmark = pytest.mark.data


def test_jsrt_dataset_folder(shared_data, model_dir, tmp_path, capsys):
    out = tmp_path / "jsrt.csv"
    assert main(["predict", str(model_dir), str(shared_data / "jsrt"), "--out", str(out),
                 "--batch-size", "32"]) == 0
    table = pd.read_csv(out)
    labels = pd.read_csv(shared_data / "jsrt" / "labels.csv")
    assert table["path"].tolist() == labels["path"].tolist()
    assert (table["true_label"] == "malignant").sum() == (labels["label"] == "malignant").sum()
    for column in ("subtlety", "size_mm", "age", "sex", "x_512", "y_512", "mask_path"):
        assert column in table.columns, column
    assert table["mask_path"].tolist() == labels["mask_path"].tolist()
    assert len(read_predictions(out)) == len(labels)


def test_real_dicom_files(shared_data, model_dir, tmp_path, capsys):
    files = [shared_data / "dicom_samples" / "CT_small.dcm",
             shared_data / "dicom_samples" / "RG1_UNCI.dcm",
             shared_data / "jsrt" / "images" / "JPCLN001.png"]
    out = tmp_path / "mixed.csv"
    assert main(["predict", str(model_dir), *map(str, files), "--out", str(out)]) == 0
    assert pd.read_csv(out)["path"].tolist() == [str(f) for f in files]


def test_dataset_whose_labels_have_no_class_is_explained(shared_data, model_dir, capsys):
    status = main(["predict", str(model_dir), str(shared_data / "dicom_samples")])
    err = capsys.readouterr().err
    assert status == 2
    assert "left out 2 image(s) whose label (unlabelled) has no class in task jsrt-malignant" in err
    assert "no images to predict" in err
