"""Train the modality check that ships in ``src/lungcad/domain/`` (chest radiograph, CT slice, or
neither) and report its grouped cross-validated and held-out rates.

Data, all made at run time (nothing derived from the shared images is written, except the
descriptor cache under --cache, outside the repository's tracked files):

- radiographs: the shared JSRT images and, per image, ``--variants`` realistic variants
  (:func:`lungcad.domain.variants.radiograph_variant`: windowing and gamma, equalisation and
  edge enhancement, crops, borders and markers, 256-2048 px, JPEG, noise or blur, inversion);
- CT slices: both shared CT sets (IQ-OTH/NCCD, Kaggle chest CT) and one variant per slice;
- neither: ``--neither`` synthetic pictures of each kind (gradients grey and colour, blank,
  noise, smooth fields, stripes, shapes, text pages).

Each image is described by :func:`lungcad.domain.descriptors.describe` on a 224 px grid; the
classifier is a multinomial logistic regression on the standardised descriptors.

Checks (each source image's variants stay in its group; CT near-duplicates share a group):
5-fold GroupKFold; **leave-one-family-out** (trained without any variant of a transform family,
tested on the held-out fold's variants that use it); leave-one-kind-out for the neither
pictures; leave-one-CT-dataset-out; and **held-out inputs never trained on**: the DICOM
radiograph RG1_UNCI.dcm by its pixels alone (``--external-variants`` variants of it, stored
grey, RGB-stored and JPEG, read back through ``load_image``), photographs and MR / ultrasound
images shipped with matplotlib, scikit-learn and pydicom-data, and the CT DICOMs' pixels.

    python benchmarks/modality_classifier.py [--data ../shared/data] \\
        [--write src/lungcad/domain/modality_classifier.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from lungcad.domain import variants as V  # noqa: E402
from lungcad.domain.descriptors import N_DESCRIPTORS, describe  # noqa: E402
from lungcad.domain.modality import CLASSES, REFUSE_CONFIDENCE, decide  # noqa: E402
from lungcad.io import load_image  # noqa: E402

SIZE = 224
C = 0.1
CT_SETS = ("iqothnccd", "chest_ct_kaggle")


def _row(table, image, y, group, source, kind):
    table.append((describe(image, SIZE), y, group, source, kind))


def build(data: Path, n_variants: int, n_neither: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    rows: list = []
    jsrt = pd.read_csv(data / "jsrt" / "labels.csv")
    for path in jsrt["path"]:
        image = load_image(data / "jsrt" / path).array
        _row(rows, image, 0, f"jsrt:{path}", "jsrt", "original")
        for _ in range(n_variants):
            chosen = V.choose(rng)
            _row(rows, V.apply(image, rng, chosen), 0, f"jsrt:{path}", "jsrt", "+".join(chosen))
    for name in CT_SETS:
        table = pd.read_csv(data / name / "labels.csv")
        dup = table["dup_group"] if "dup_group" in table else pd.Series([np.nan] * len(table))
        for path, group in zip(table["path"], dup):
            group = f"{name}:{group}" if pd.notna(group) else f"{name}:{path}"
            image = load_image(data / name / path).array
            _row(rows, image, 1, group, name, "original")
            _row(rows, V.ct_variant(image, rng), 1, group, name, "variant")
    for kind in V.NEITHER_KINDS:
        for i in range(n_neither):
            _row(rows, V.neither_picture(kind, rng), 2, f"neither:{kind}:{i}", "neither", kind)
    x, y, groups, sources, kinds = zip(*rows)
    return {"x": np.stack(x), "y": np.array(y), "group": np.array(groups),
            "source": np.array(sources), "kind": np.array(kinds)}


def model():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))


def rates(probs: np.ndarray, truth: int) -> dict:
    """How a set of inputs of class ``truth`` were answered by the shipped decision rule."""
    answers = [decide(p) for p in probs]
    called = np.array([CLASSES.index(a[0]) for a in answers])
    sure = np.array([a[1] for a in answers])
    out = {"n": int(len(probs)), "correct": float(np.mean(called == truth))}
    for k, name in enumerate(CLASSES):
        if k != truth:
            out[f"called_{name}"] = int(np.sum(called == k))
    if truth != 2:  # refused: called the other modality, sure enough to refuse
        out["refused"] = int(np.sum((called == 1 - truth) & sure))
    return out


def cross_validate(d: dict, seed: int) -> dict:
    from sklearn.model_selection import GroupKFold

    x, y, groups = d["x"], d["y"], d["group"]
    oof = np.zeros((len(y), 3))
    folds = np.zeros(len(y), dtype=int)
    for k, (train, test) in enumerate(GroupKFold(5, shuffle=True, random_state=seed)
                                      .split(x, y, groups)):
        oof[test] = model().fit(x[train], y[train]).predict_proba(x[test])
        folds[test] = k
    report = {"all": rates(oof[y == 0], 0) | {"what": "radiographs, originals and variants"}}
    original = d["kind"] == "original"
    report["jsrt_original"] = rates(oof[(d["source"] == "jsrt") & original], 0)
    report["jsrt_variants"] = rates(oof[(d["source"] == "jsrt") & ~original], 0)
    for name in CT_SETS:
        report[f"{name}_original"] = rates(oof[(d["source"] == name) & original], 1)
        report[f"{name}_variants"] = rates(oof[(d["source"] == name) & ~original], 1)
    report["neither"] = rates(oof[y == 2], 2)
    del report["all"]
    return {"oof": oof, "folds": folds, "report": report}


def leave_family_out(d: dict, folds: np.ndarray) -> dict:
    """Radiograph variants using a family, by models trained with no variant of that family."""
    x, y, kinds = d["x"], d["y"], d["kind"]
    out = {}
    for family in V.FAMILIES:
        uses = np.array([family in k.split("+") for k in kinds]) & (d["source"] == "jsrt")
        probs = []
        for k in np.unique(folds):
            train = (folds != k) & ~uses
            test = (folds == k) & uses
            probs.append(model().fit(x[train], y[train]).predict_proba(x[test]))
        out[family] = rates(np.concatenate(probs), 0)
    return out


def leave_kind_out(d: dict) -> dict:
    x, y = d["x"], d["y"]
    out = {}
    for kind in V.NEITHER_KINDS:
        held = d["kind"] == kind
        out[kind] = rates(model().fit(x[~held], y[~held]).predict_proba(x[held]), 2)
    return out


def leave_ct_dataset_out(d: dict) -> dict:
    x, y = d["x"], d["y"]
    out = {}
    for name in CT_SETS:
        held = d["source"] == name
        out[name] = rates(model().fit(x[~held], y[~held]).predict_proba(x[held]), 1)
    return out


def external_inputs(n_variants: int, seed: int) -> dict[str, tuple[int, list[np.ndarray]]]:
    """Inputs never trained on: (truth, images) by name."""
    import pydicom.data
    from sklearn.datasets import load_sample_images
    import matplotlib.cbook

    def sample(name):
        found = pydicom.data.get_testdata_file(name, download=False)
        return [load_image(found).array] if found else []

    rng = np.random.default_rng(seed + 1)
    rg1 = sample("RG1_UNCI.dcm")
    out = {"RG1_UNCI.dcm pixels": (0, rg1)}
    if rg1:
        made = []
        for i in range(n_variants):
            picture = V.radiograph_variant(rg1[0], rng)
            fmt, rgb = ("jpeg", "png")[i % 2], i % 3 == 0
            made.append(load_image(V.encode(picture, fmt, rgb, int(rng.integers(30, 96))),
                                   name=f"v.{fmt}").array)
        out["RG1_UNCI.dcm variants (PNG/JPEG, grey/RGB)"] = (0, made)
        out["RG1_UNCI.dcm inverted (MONOCHROME1 exported without its tag)"] = (
            0, [1.0 - rg1[0]])
    out["CT DICOM pixels (CT_small, 693_UNCI)"] = (1, sample("CT_small.dcm")
                                                   + sample("693_UNCI.dcm"))
    photos = [np.asarray(p, dtype=np.float32).mean(axis=-1) / 255.0
              for p in load_sample_images().images]
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        photos.append(load_image(handle.read(), name="g.jpg").array)
    out["photographs (scikit-learn, matplotlib samples)"] = (2, photos)
    out["MR and ultrasound DICOM pixels (pydicom-data)"] = (
        2, sample("MR2_UNCI.dcm") + sample("US1_UNCI.dcm")
        + sample("MR-SIEMENS-DICOM-WithOverlays.dcm"))
    out["extremity radiograph (RG3_UNCI.dcm tibia; not a chest)"] = (-1, sample("RG3_UNCI.dcm"))
    return out


def external(final, inputs: dict) -> dict:
    out = {}
    for name, (truth, images) in inputs.items():
        if not images:
            continue
        probs = final.predict_proba(np.stack([describe(a, SIZE) for a in images]))
        if truth >= 0:
            out[name] = rates(probs, truth)
        else:
            out[name] = {"n": len(images), "called": [decide(p)[0] for p in probs]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "LUNGCAD_SHARED_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--variants", type=int, default=8, help="variants per JSRT image")
    parser.add_argument("--neither", type=int, default=60, help="pictures per neither kind")
    parser.add_argument("--external-variants", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "modality_descriptors.npz",
                        help="descriptor cache (re-used when its settings match)")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    start = time.time()
    key = f"{args.variants}-{args.neither}-{args.seed}-{N_DESCRIPTORS}"
    if args.cache.is_file() and str(np.load(args.cache)["key"]) == key:
        with np.load(args.cache) as cached:
            d = {k: cached[k] for k in ("x", "y", "group", "source", "kind")}
    else:
        d = build(args.data, args.variants, args.neither, args.seed)
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.cache, key=key, **d)
    print(f"{len(d['y'])} descriptors ({time.time() - start:.0f} s)", file=sys.stderr)
    cv = cross_validate(d, args.seed)
    report = {"cv": "5-fold GroupKFold (each source image's variants, and CT near-duplicates, "
                    "in one group)",
              "n_images": int(len(d["y"])),
              "n_by_class": {c: int(np.sum(d["y"] == k)) for k, c in enumerate(CLASSES)},
              "cross_validated": cv["report"],
              "leave_one_family_out": leave_family_out(d, cv["folds"]),
              "leave_one_neither_kind_out": leave_kind_out(d),
              "leave_one_ct_dataset_out": leave_ct_dataset_out(d)}
    final = model().fit(d["x"], d["y"])
    report["held_out_inputs"] = external(final, external_inputs(args.external_variants,
                                                                args.seed))
    report["seconds"] = round(time.time() - start, 1)
    print(json.dumps(report, indent=1))
    if args.write:
        scaler, logistic = final.steps[0][1], final.steps[1][1]
        floor = 0.1 * scaler.scale_  # class spreads, for saying why an image is neither
        class_mean = [d["x"][d["y"] == k].mean(axis=0) for k in range(len(CLASSES))]
        class_scale = [np.maximum(d["x"][d["y"] == k].std(axis=0), floor)
                       for k in range(len(CLASSES))]
        shipped = {"format": "lungcad-modality/2", "size": SIZE, "n_descriptors": N_DESCRIPTORS,
                   "classes": list(CLASSES), "refuse_confidence": REFUSE_CONFIDENCE,
                   "trained_on": (f"shared JSRT (198 radiographs, {args.variants} variants "
                                  "each), IQ-OTH/NCCD (1,097 CT slices) and Kaggle chest CT "
                                  "(685), one variant per slice; "
                                  f"{args.neither * len(V.NEITHER_KINDS)} synthetic pictures "
                                  "that are neither"),
                   "method": f"multinomial logistic regression (C={C}) on standardised image "
                             "descriptors",
                   "command": ("python benchmarks/modality_classifier.py --write "
                               "src/lungcad/domain/modality_classifier.json"
                               f" --variants {args.variants} --neither {args.neither} "
                               f"--seed {args.seed}"),
                   **{k: v for k, v in report.items() if k != "seconds"},
                   "mean": scaler.mean_.round(8).tolist(), "scale": scaler.scale_.round(8).tolist(),
                   "coef": logistic.coef_.round(8).tolist(),
                   "intercept": logistic.intercept_.round(8).tolist(),
                   "class_mean": np.round(class_mean, 6).tolist(),
                   "class_scale": np.round(class_scale, 6).tolist()}
        args.write.write_text(json.dumps(shipped) + "\n")
        print(f"wrote {args.write} ({args.write.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
