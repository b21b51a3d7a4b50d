from pathlib import Path

import pandas as pd
import pytest

from lungcad.data.manifest import Manifest
from lungcad.data.tasks import TASKS, get_task
from lungcad.errors import LungcadError


def write_manifest(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.csv").write_text(text)
    return root


def test_manifest_loads_and_keeps_metadata(tmp_path):
    root = write_manifest(tmp_path / "ds", "path,label,group,age\na.png,normal,p1,50\nb.png,malignant,p1,\n")
    m = Manifest.load(root)
    assert len(m) == 2
    assert m.label_counts() == {"malignant": 1, "normal": 1}
    assert m.image_path("a.png") == root / "a.png"
    assert m.table.loc[0, "group"] == "p1"
    assert list(m.rows_for(["b.png"])["label"]) == ["malignant"]
    assert len(m.sha256()) == 64


@pytest.mark.parametrize("text, message", [
    ("path,diagnosis\na.png,x\n", "lacks the column(s) label"),
    ("path,label\na.png,x\na.png,y\n", "listed twice"),
    ("path,label\n../a.png,x\n", "must be relative"),
    ("path,label\n/etc/passwd,x\n", "must be relative"),
    ("path,label\na.png,\n", "empty path or label"),
])
def test_manifest_rejects_bad_tables(tmp_path, text, message):
    root = write_manifest(tmp_path / "ds", text)
    with pytest.raises(LungcadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Manifest.load(root)


def test_manifest_missing_folder_and_file(tmp_path):
    with pytest.raises(LungcadError, match="not found"):
        Manifest.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LungcadError, match="no labels.csv"):
        Manifest.load(tmp_path / "empty")


def test_rows_for_unknown_path(tmp_path):
    m = Manifest.load(write_manifest(tmp_path / "ds", "path,label\na.png,x\n"))
    with pytest.raises(LungcadError, match="not in"):
        m.rows_for(["zzz.png"])


def test_tasks_map_jsrt_and_ct_labels():
    labels = pd.Series(["malignant", "benign", "non_nodule"])
    assert list(get_task("jsrt-malignant").map_labels(labels)) == ["malignant", "rest", "rest"]
    assert list(get_task("jsrt-nodule").map_labels(labels)) == ["nodule", "nodule", "no_nodule"]
    assert get_task("jsrt-3class").class_index(labels) == [2, 1, 0]
    ct = get_task("ct-normal-vs-abnormal")
    assert list(ct.map_labels(pd.Series(["normal", "benign", "adenocarcinoma", "not_normal"]))) == [
        "normal", "abnormal", "abnormal", "abnormal"]
    assert ct.binary and ct.positive == "abnormal"
    assert not get_task("chest-ct-4class").binary


def test_binary_tasks_put_the_positive_class_last():
    for task in TASKS.values():
        if task.binary:
            assert task.positive == task.classes[1]


def test_task_errors():
    with pytest.raises(LungcadError, match="unknown task"):
        get_task("nope")
    with pytest.raises(LungcadError, match="no class for label"):
        get_task("iqothnccd-3class").class_index(pd.Series(["normal", "adenocarcinoma"]))
    with pytest.raises(LungcadError, match="needs the class"):
        get_task("jsrt-malignant").check_labels(pd.Series(["benign", "non_nodule"]))


def test_shared_datasets_load_as_they_are(shared_data):
    counts = Manifest.load(shared_data / "jsrt").label_counts()
    assert counts == {"benign": 44, "malignant": 79, "non_nodule": 75}
    assert len(Manifest.load(shared_data / "iqothnccd")) == 1097
    assert len(Manifest.load(shared_data / "chest_ct_kaggle")) == 685
    for name, task in [("jsrt", "jsrt-3class"), ("iqothnccd", "iqothnccd-3class"),
                       ("chest_ct_kaggle", "chest-ct-4class"), ("iqothnccd", "ct-normal-vs-abnormal")]:
        get_task(task).check_labels(Manifest.load(shared_data / name).table["label"])
