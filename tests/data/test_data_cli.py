"""`lungcad data check | split | prepare` on synthetic data and on the shared real data."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lungcad.cli import main
from lungcad.data.manifest import Manifest
from lungcad.data.splits import load_split, make_split
from lungcad.errors import LungcadError


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def synthetic_dataset(root: Path, n_per_class: int = 12, groups: bool = False) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for label in ("normal", "malignant"):
        for i in range(n_per_class):
            # each image a distinct random texture, so no two are near duplicates
            write_png(root / f"{label}_{i}.png", rng.integers(0, 255, (64, 64), dtype=np.uint8))
            rows.append({"path": f"{label}_{i}.png", "label": label,
                         **({"group": f"p{i // 3}-{label}"} if groups else {})})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root


def test_split_groups_never_straddle_parts_and_copies_are_grouped(tmp_path, capsys):
    root = synthetic_dataset(tmp_path / "ds", groups=True)
    # an exact copy under another name must land in the same part as its original
    Image.open(root / "normal_0.png").save(root / "copy.png")
    table = pd.read_csv(root / "labels.csv")
    table.loc[len(table)] = {"path": "copy.png", "label": "normal", "group": "lonely"}
    table.to_csv(root / "labels.csv", index=False)
    out = tmp_path / "split.json"
    assert main(["data", "split", str(root), "--task", "ct-normal-vs-abnormal", "--folds", "3",
                 "--out", str(out)]) == 0
    split = load_split(out)
    assert split.n_folds == 3 and split.grouping["exact_duplicate_groups"] == 1
    for k in range(3):
        parts = {name: set(split.part(k, name)) for name in ("train", "val", "test")}
        assert set().union(*parts.values()) == set(table["path"])
        assert sum(map(len, parts.values())) == len(table)
        where = {p: name for name, ps in parts.items() for p in ps}
        assert where["copy.png"] == where["normal_0.png"]
        for g, members in table.groupby("group")["path"]:
            if g != "lonely":
                assert len({where[p] for p in members}) == 1, g
    assert main(["data", "check", str(root), "--split", str(out)]) == 0
    assert "leaks between parts: 0" in capsys.readouterr().out


def test_check_finds_a_leak_and_a_conflict(tmp_path, capsys):
    root = synthetic_dataset(tmp_path / "ds")
    Image.open(root / "normal_1.png").save(root / "twin.png")
    table = pd.read_csv(root / "labels.csv")
    table.loc[len(table)] = {"path": "twin.png", "label": "malignant"}
    table.to_csv(root / "labels.csv", index=False)
    split, warnings = make_split(Manifest.load(root), "ct-normal-vs-abnormal", n_folds=2)
    assert any("label conflict" in w for w in warnings)
    # force the twin into another part than its original, as a careless split would
    fold = split.folds[0]
    for name in ("train", "val", "test"):
        fold[name] = [p for p in fold[name] if p != "twin.png"]
    where = next(n for n in ("train", "val", "test") if "normal_1.png" in fold[n])
    fold["test" if where != "test" else "train"].append("twin.png")
    split.save(tmp_path / "bad.json")
    assert main(["data", "check", str(root), "--split", str(tmp_path / "bad.json")]) == 1
    out = capsys.readouterr().out
    assert "label conflicts (identical pixels, different labels): 1" in out
    assert "exact duplicate" in out and "PROBLEMS FOUND" in out


def test_check_reports_unreadable_files_and_fails(tmp_path, capsys):
    root = synthetic_dataset(tmp_path / "ds", n_per_class=3)
    (root / "normal_0.png").write_bytes(b"not an image at all")
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "unreadable files: 1" in out and "normal_0.png" in out


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "missing")]) == 2
    assert main(["data", "split", str(synthetic_dataset(tmp_path / "ds", 3)), "--task", "nope",
                 "--out", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("lungcad data: error: dataset folder not found")
    assert "unknown task" in err[1]


def test_prepare_folders_normalises_class_names_and_survives_a_bad_file(tmp_path, capsys):
    src = tmp_path / "src"
    rng = np.random.default_rng(1)
    for folder in ("Bengin cases", "Malignant cases", "Normal cases"):
        for i in range(2):
            write_png(src / folder / f"{folder.split()[0]} case ({i}).jpg",
                      rng.integers(0, 255, (80, 60), dtype=np.uint8))
    (src / "Normal cases" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    assert main(["data", "prepare", str(src), "--format", "folders", "--size", "32", "--out", str(out),
                 "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert "prepared 6 image(s)" in captured.out and "1 failed" in captured.out
    assert "broken.png" in captured.err
    m = Manifest.load(out)
    assert m.label_counts() == {"benign": 2, "malignant": 2, "normal": 2}
    assert all(Image.open(m.image_path(p)).size == (32, 32) for p in m.paths)


def test_prepare_jsrt_from_raw_img_scales_coordinates(shared_data, tmp_path, capsys):
    from lungcad.io import load_image
    from lungcad.io.jsrt import write_jsrt_raw
    from lungcad.preprocess import resize_area

    labels = pd.read_csv(shared_data / "jsrt" / "labels.csv")
    picked = labels[labels.path.str.contains("JPCLN00[1-3]|JPCNN001")]
    src = tmp_path / "raw"
    src.mkdir()
    meta_rows = []
    for _, r in picked.iterrows():
        stem = Path(r.path).stem
        image = load_image(shared_data / "jsrt" / r.path).array
        write_jsrt_raw(resize_area(image, 2048), src / f"{stem}.IMG")
        nodule = r.label != "non_nodule"
        meta_rows.append({"study_id": f"{stem}.IMG", "subtlety": r.subtlety if nodule else "",
                          "size": r.size_mm if nodule else "", "age": "?" if stem == "JPCLN002" else r.age,
                          "gender": r.sex.lower(), "x": r.x_2048 if nodule else "",
                          "y": r.y_2048 if nodule else "", "state": r.label.replace("_", "-"),
                          "position": r.position if nodule else "", "diagnosis": r.diagnosis})
    pd.DataFrame(meta_rows).to_csv(src / "jsrt_metadata.csv", index=False)
    out = tmp_path / "prepared"
    assert main(["data", "prepare", str(src), "--format", "jsrt", "--size", "512", "--out", str(out),
                 "--workers", "1"]) == 0
    got = Manifest.load(out).table.set_index("path")
    for _, r in picked.iterrows():
        row = got.loc[r.path]
        assert row.label == r.label
        if r.label != "non_nodule":
            assert row.x_512 == pytest.approx(r.x_512) and row.y_512 == pytest.approx(r.y_512)
            assert row.size_mm == r.size_mm
    assert np.isnan(got.loc["images/JPCLN002.png", "age"])
    img = load_image(out / "images/JPCLN001.png")
    assert img.array.shape == (512, 512) and img.meta.bit_depth == 16
    original = load_image(shared_data / "jsrt/images/JPCLN001.png").array
    assert np.abs(img.array - original).mean() < 0.01


def test_shared_jsrt_check_counts(shared_data, capsys):
    assert main(["data", "check", str(shared_data / "jsrt")]) == 0
    out = capsys.readouterr().out
    assert "198 images" in out and "benign 44, malignant 79, non_nodule 75" in out
    # one radiograph per patient: no two are near duplicates
    assert "exact duplicate groups (identical pixels): 0" in out
    assert re.search(r"near-duplicate groups \(.*\): 0 ", out)


def test_shared_chest_ct_check_reports_duplicates_copies_and_conflict(shared_data, capsys):
    root = shared_data / "chest_ct_kaggle"
    assert main(["data", "check", str(root), "--json"]) == 1  # its published split leaks
    report = json.loads(capsys.readouterr().out)
    # the README's duplicate groups (pixel_md5 / dup_group) are exactly the exact groups found
    table = pd.read_csv(root / "labels.csv")
    published = {frozenset(g["path"]) for _, g in table.dropna(subset=["dup_group"]).groupby("dup_group")}
    assert {frozenset(g) for g in report["exact_duplicate_groups"]} == published
    split_of = dict(zip(table["path"], table["split"]))
    across = {g for g in published if len({split_of[p] for p in g}) > 1}
    assert {frozenset(c["paths"]) for c in report["cross_split_copies"]} == across and across
    assert all(c["splits"] == ["train", "valid"] for c in report["cross_split_copies"])
    assert len(report["label_conflicts"]) == 1
    assert set(report["label_conflicts"][0]["labels"]) == {"large_cell_carcinoma", "squamous_cell_carcinoma"}
    assert any("published split" in p for p in report["problems"])
    assert main(["data", "check", str(root)]) == 1
    text = capsys.readouterr().out
    assert f"exact duplicate groups (identical pixels): {len(published)}" in text
    assert f"copies across the published split column: {len(across)} exact duplicate group(s)" in text
    assert "label conflicts (identical pixels, different labels): 1" in text
    assert "large_cell_carcinoma / squamous_cell_carcinoma" in text


def test_shared_iqothnccd_split_is_leak_free(shared_data, tmp_path, capsys):
    out = tmp_path / "iq.json"
    assert main(["data", "split", str(shared_data / "iqothnccd"), "--task", "iqothnccd-3class",
                 "--folds", "5", "--out", str(out)]) == 0
    assert main(["data", "check", str(shared_data / "iqothnccd"), "--split", str(out)]) == 0
    text = capsys.readouterr().out
    assert "leaks between parts: 0 (0 exact or same image, 0 near duplicate)" in text
    grouping = load_split(out).grouping
    assert grouping["exact_duplicate_groups"] == 42 and grouping["near_duplicate_groups"] > 100
    # neighbouring slices are joined, yet no giant group swallows the set (110 patients)
    assert 110 <= grouping["groups"] <= 400 and grouping["largest_group"] <= 60


def test_split_is_deterministic_and_leaves_out_rows_the_task_excludes(tmp_path, capsys):
    root = tmp_path / "ds"
    rng = np.random.default_rng(2)
    rows = []
    for label in ("normal", "benign", "malignant", "unsure"):
        for i in range(10):
            write_png(root / f"{label}_{i}.png", rng.integers(0, 255, (64, 64), dtype=np.uint8))
            rows.append({"path": f"{label}_{i}.png", "label": label})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    args = ["data", "split", str(root), "--task", "iqothnccd-3class", "--folds", "5", "--workers", "1"]
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert main(args + ["--seed", seed, "--out", str(tmp_path / f"{name}.json")]) == 0
    a, b, c = (load_split(tmp_path / f"{n}.json") for n in "abc")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert a.folds != c.folds
    assert len(a.groups) == 30 and not any(p.startswith("unsure") for p in a.groups)
    assert a.labels["benign_3.png"] == "benign"
    for k in range(5):  # stratified: 2 of each class in every test part
        assert sorted(a.labels[p] for p in a.part(k, "test")) == ["benign"] * 2 + ["malignant"] * 2 + ["normal"] * 2
    with pytest.raises(LungcadError, match="fold 5 does not exist"):
        a.part(5, "test")
    with pytest.raises(LungcadError, match="unknown split part"):
        a.part(0, "validation")


def test_check_finds_a_patient_split_across_parts_and_a_stale_manifest(tmp_path, capsys):
    root = synthetic_dataset(tmp_path / "ds", groups=True)
    split, _ = make_split(Manifest.load(root), "ct-normal-vs-abnormal", n_folds=2, val_fraction=0.5,
                          progress=False)
    fold = split.folds[1]
    # move one image of patient p0-normal (3 images) away from its companions
    where = next(n for n in ("train", "val", "test") if "normal_0.png" in fold[n])
    other = "test" if where != "test" else "train"
    fold[where].remove("normal_0.png")
    fold[other].append("normal_0.png")
    split.save(tmp_path / "moved.json")
    assert main(["data", "check", str(root), "--split", str(tmp_path / "moved.json"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert {x["kind"] for x in report["leaks"]} == {"same group"}
    assert {x["fold"] for x in report["leaks"]} == {1}
    assert all("normal_0.png" in x["paths"] for x in report["leaks"])
    assert report["split"]["folds"][0]["leaks"] == 0 and report["split"]["folds"][1]["leaks"] == 2
    # a split made for another labels.csv is refused, not silently trusted
    table = pd.read_csv(root / "labels.csv")
    table.loc[0, "label"] = "malignant"
    table.to_csv(root / "labels.csv", index=False)
    split.save(tmp_path / "stale.json")
    assert main(["data", "check", str(root), "--split", str(tmp_path / "stale.json")]) == 1
    assert "manifest hash DIFFERS" in capsys.readouterr().out


def test_load_split_refuses_other_files(tmp_path):
    (tmp_path / "x.json").write_text('{"format": "something-else"}')
    (tmp_path / "y.json").write_text("not json")
    for name in ("x.json", "y.json", "missing.json"):
        with pytest.raises(LungcadError):
            load_split(tmp_path / name)


def test_shared_iqothnccd_split_by_image_leaks_patients(shared_data, tmp_path, capsys):
    """A split by image, as a careless study would make, puts neighbouring slices of one patient
    in training and test: the check must say so."""
    from sklearn.model_selection import StratifiedKFold

    from lungcad.data.splits import Split

    manifest = Manifest.load(shared_data / "iqothnccd")
    paths = np.array(manifest.paths)
    labels = manifest.table["label"].to_numpy()
    folds = []
    for k, (rest, test) in enumerate(StratifiedKFold(5, shuffle=True, random_state=0).split(paths, labels)):
        cut = len(rest) // 5
        folds.append({"fold": k, "train": paths[rest[cut:]].tolist(), "val": paths[rest[:cut]].tolist(),
                      "test": paths[test].tolist()})
    naive = Split(folds=folds, task="iqothnccd-3class", n_folds=5, manifest_sha256=manifest.sha256(),
                  groups={p: p for p in paths})
    naive.save(tmp_path / "naive.json")
    assert main(["data", "check", str(shared_data / "iqothnccd"), "--split", str(tmp_path / "naive.json"),
                 "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    kinds = [x["kind"] for x in report["leaks"]]
    assert kinds.count("exact duplicate") > 10 and kinds.count("near duplicate") > 1000
    assert all(f["leaks"] > 0 for f in report["split"]["folds"])


def test_shared_chest_ct_split_file_is_audited_instead_of_the_published_split(shared_data, capsys):
    root = shared_data / "chest_ct_kaggle"
    committed = Path(__file__).resolve().parents[2] / "splits" / "chest-ct-4class-5fold.json"
    assert main(["data", "check", str(root), "--split", str(committed)]) == 0
    out = capsys.readouterr().out
    assert "manifest hash matches" in out and "not counted as a problem" in out
    assert "leaks between parts: 0 (0 exact or same image, 0 near duplicate)" in out
