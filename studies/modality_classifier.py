"""Train the modality check that ships in ``src/lungcad/domain/`` (chest radiograph, CT slice, or
neither) and report its grouped cross-validated and held-out rates.

Data, all made at run time (nothing derived from the shared images is written, except the
descriptor cache under --cache, outside the repository's tracked files):

- radiographs: the shared JSRT images and, per image, ``--variants`` realistic variants
  (:func:`lungcad.domain.variants.radiograph_variant`: windowing and gamma, equalisation and
  edge enhancement, crops, borders and markers, 256-2048 px, JPEG, noise or blur, inversion);
- CT slices: both shared CT sets (IQ-OTH/NCCD, Kaggle chest CT) and a variant of every
  ``--ct-every``-th slice;
- neither: ``--neither`` synthetic pictures of each kind (gradients grey and colour, blank,
  noise, smooth fields, stripes, shapes, text pages).

Each image is described by :func:`lungcad.domain.descriptors.describe` on a 224 px grid; the
classifier is a multinomial logistic regression on the standardised descriptors; beside it, a
domain reference (:mod:`lungcad.domain.reference`) of each modality's unaltered images, so that
a refusal needs the image to be typical of the other modality too
(:func:`lungcad.domain.modality.decide`).

Checks (each source image's variants stay in its group; CT near-duplicates share a group):
5-fold GroupKFold; **leave-one-family-out** (trained without any variant of a transform family,
tested on the held-out fold's variants that use it); leave-one-kind-out for the neither
pictures; leave-one-CT-dataset-out; and **held-out inputs never trained on**: the DICOM
radiograph RG1_UNCI.dcm by its pixels alone (``--external-variants`` variants of it, stored
grey, RGB-stored and JPEG, read back through ``load_image``), photographs and MR / ultrasound
images shipped with matplotlib, scikit-learn and pydicom-data, and the CT DICOMs' pixels.

    python studies/modality_classifier.py [--data ../shared/data] \\
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
from lungcad.domain.modality import (CLASSES, REFERENCE_FILES, REFUSE_CONFIDENCE,  # noqa: E402
                                     decide, typicality)
from lungcad.domain.reference import fit_with_threshold  # noqa: E402
from lungcad.io import load_image  # noqa: E402
from lungcad.preprocess import resize_area  # noqa: E402

SIZE = 224
C = 0.1
CT_SETS = ("iqothnccd", "chest_ct_kaggle")


def _part(cache: Path, name: str, key: str, make) -> dict:
    """One part of the descriptor table, from ``cache/name.npz`` where made with ``key``."""
    path = cache / f"{name}.npz"
    if path.is_file():
        with np.load(path) as stored:
            if str(stored["key"]) == key:
                return {k: stored[k] for k in stored.files if k != "key"}
    rows = make()
    x, y, groups, sources, kinds = zip(*rows)
    part = {"x": np.stack(x), "y": np.array(y), "group": np.array(groups),
            "source": np.array(sources), "kind": np.array(kinds)}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, key=key, **part)
    print(f"{name}: {len(rows)} descriptors", file=sys.stderr, flush=True)
    return part


def build(data: Path, n_variants: int, ct_every: int, n_neither: int, seed: int,
          cache: Path) -> dict:
    jsrt = list(pd.read_csv(data / "jsrt" / "labels.csv")["path"])
    ct = []
    for name in CT_SETS:
        table = pd.read_csv(data / name / "labels.csv")
        dup = table["dup_group"] if "dup_group" in table else pd.Series([np.nan] * len(table))
        ct += [(name, path, f"{name}:{g}" if pd.notna(g) else f"{name}:{path}")
               for path, g in zip(table["path"], dup)]

    def describe_row(image, y, group, source, kind):
        return describe(image, SIZE), y, group, source, kind

    def originals():
        rows = [describe_row(load_image(data / "jsrt" / p).array, 0, f"jsrt:{p}", "jsrt",
                             "original") for p in jsrt]
        return rows + [describe_row(load_image(data / n / p).array, 1, g, n, "original")
                       for n, p, g in ct]

    def radiograph_variants():
        rng, rows = np.random.default_rng(seed), []
        for p in jsrt:
            image = load_image(data / "jsrt" / p).array
            for _ in range(n_variants):
                chosen = V.choose(rng)
                rows.append(describe_row(V.apply(image, rng, chosen), 0, f"jsrt:{p}", "jsrt",
                                         "+".join(chosen)))
        return rows

    def ct_variants():
        rng = np.random.default_rng(seed + 1)
        return [describe_row(V.ct_variant(load_image(data / n / p).array, rng), 1, g, n,
                             "variant") for n, p, g in ct[::ct_every]]

    def neither():
        rng = np.random.default_rng(seed + 2)
        return [describe_row(V.neither_picture(kind, rng), 2, f"neither:{kind}:{i}", "neither",
                             kind) for kind in V.NEITHER_KINDS for i in range(n_neither)]

    version = f"{N_DESCRIPTORS}-{seed}"
    parts = [_part(cache, "originals", version, originals),
             _part(cache, "radiograph_variants", f"{version}-{n_variants}", radiograph_variants),
             _part(cache, "ct_variants", f"{version}-{ct_every}", ct_variants),
             _part(cache, "neither", f"{version}-{n_neither}", neither)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def model():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))


def fit(x: np.ndarray, y: np.ndarray, original: np.ndarray, groups: np.ndarray) -> dict:
    """The classifier (all rows) and each modality's domain reference (its unaltered images
    only, threshold out of fold over 5 groups of images): what
    :func:`lungcad.domain.modality.decide` needs, fitted on these rows only."""
    from sklearn.model_selection import GroupKFold

    references = []
    for k in range(2):
        rows = (y == k) & original
        folds = np.zeros(int(rows.sum()), dtype=int)
        for f, (_, held) in enumerate(GroupKFold(5).split(x[rows], groups=groups[rows])):
            folds[held] = f
        references.append(fit_with_threshold(x[rows], folds, SIZE)[0])
    floor = 0.1 * x.std(axis=0) + 1e-9  # class spreads, for saying why an image is neither
    return {"model": model().fit(x, y), "references": references,
            "mean": np.stack([x[y == k].mean(axis=0) for k in range(len(CLASSES))]),
            "scale": np.stack([np.maximum(x[y == k].std(axis=0), floor)
                               for k in range(len(CLASSES))])}


def fit_rows(d: dict, rows: np.ndarray) -> dict:
    return fit(d["x"][rows], d["y"][rows], d["kind"][rows] == "original", d["group"][rows])


def answer(fitted: dict, x: np.ndarray) -> np.ndarray:
    """(N, 3 + 2): the probabilities and the typicality of each row."""
    return np.hstack([fitted["model"].predict_proba(x), typicality(x, fitted["references"])])


def rates(answers: np.ndarray, truth: int) -> dict:
    """How a set of inputs of class ``truth`` were answered by the shipped decision rule."""
    decided = [decide(a[:3], a[3:5]) for a in answers]
    called = np.array([CLASSES.index(d[0]) for d in decided])
    sure = np.array([d[1] for d in decided])
    out = {"n": int(len(answers)), "correct": round(float(np.mean(called == truth)), 4)}
    for k, name in enumerate(CLASSES):
        if k != truth:
            out[f"called_{name}"] = int(np.sum(called == k))
    if truth != 2:  # refused: called the other modality, certain enough to refuse
        out["refused"] = int(np.sum((called == 1 - truth) & sure))
        out["refused_by_probability_alone"] = int(np.sum(
            (called == 1 - truth) & (answers[:, 1 - truth] >= REFUSE_CONFIDENCE)))
    return out


def cross_validate(d: dict, seed: int) -> dict:
    from sklearn.model_selection import GroupKFold

    x, y, groups = d["x"], d["y"], d["group"]
    oof = np.zeros((len(y), 5))
    folds = np.zeros(len(y), dtype=int)
    for k, (train, test) in enumerate(GroupKFold(5, shuffle=True, random_state=seed)
                                      .split(x, y, groups)):
        oof[test] = answer(fit_rows(d, train), x[test])
        folds[test] = k
    original = d["kind"] == "original"
    report = {"jsrt_original": rates(oof[(d["source"] == "jsrt") & original], 0),
              "jsrt_variants": rates(oof[(d["source"] == "jsrt") & ~original], 0)}
    for name in CT_SETS:
        report[f"{name}_original"] = rates(oof[(d["source"] == name) & original], 1)
        report[f"{name}_variants"] = rates(oof[(d["source"] == name) & ~original], 1)
    report["neither"] = rates(oof[y == 2], 2)
    return {"oof": oof, "folds": folds, "report": report}


def leave_family_out(d: dict, folds: np.ndarray) -> dict:
    """Radiograph variants using a family, by models trained with no variant of that family."""
    x, kinds = d["x"], d["kind"]
    out = {}
    for family in V.FAMILIES:
        uses = np.array([family in k.split("+") for k in kinds]) & (d["source"] == "jsrt")
        answers = [answer(fit_rows(d, (folds != k) & ~uses), x[(folds == k) & uses])
                   for k in np.unique(folds)]
        out[family] = rates(np.concatenate(answers), 0)
    return out


def leave_kind_out(d: dict) -> dict:
    x = d["x"]
    out = {}
    for kind in V.NEITHER_KINDS:
        held = d["kind"] == kind
        out[kind] = rates(answer(fit_rows(d, ~held), x[held]), 2)
    return out


def leave_ct_dataset_out(d: dict) -> dict:
    x = d["x"]
    out = {}
    for name in CT_SETS:
        held = d["source"] == name
        out[name] = rates(answer(fit_rows(d, ~held), x[held]), 1)
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
        made, small = [], resize_area(rg1[0], (1024, 964))
        for i in range(n_variants):
            picture = V.radiograph_variant(small, rng)
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


def external(final: dict, inputs: dict) -> dict:
    out = {}
    for name, (truth, images) in inputs.items():
        if not images:
            continue
        answers = answer(final, np.stack([describe(a, SIZE) for a in images]))
        if truth >= 0:
            out[name] = rates(answers, truth)
        else:
            out[name] = {"n": len(images),
                         "called": [decide(a[:3], a[3:5])[0] for a in answers]}
    return out


def main() -> None:
    global C
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "LUNGCAD_SHARED_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--variants", type=int, default=6, help="variants per JSRT image")
    parser.add_argument("--ct-every", type=int, default=2,
                        help="one variant of every N-th CT slice")
    parser.add_argument("--neither", type=int, default=40, help="pictures per neither kind")
    parser.add_argument("--external-variants", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--C", type=float, default=C, help="inverse regularisation strength")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "modality_descriptors",
                        help="descriptor cache folder (each part re-used where its settings "
                             "match)")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    C = args.C
    start = time.time()
    d = build(args.data, args.variants, args.ct_every, args.neither, args.seed, args.cache)
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
    final = fit_rows(d, np.ones(len(d["y"]), dtype=bool))
    report["held_out_inputs"] = external(final, external_inputs(args.external_variants,
                                                                args.seed))
    report["seconds"] = round(time.time() - start, 1)
    print(json.dumps(report, indent=1))
    if args.write:
        scaler, logistic = final["model"].steps[0][1], final["model"].steps[1][1]
        shipped = {"format": "lungcad-modality/2", "size": SIZE, "n_descriptors": N_DESCRIPTORS,
                   "classes": list(CLASSES), "refuse_confidence": REFUSE_CONFIDENCE,
                   "trained_on": (f"shared JSRT (198 radiographs, {args.variants} variants "
                                  "each), IQ-OTH/NCCD (1,097 CT slices) and Kaggle chest CT "
                                  f"(685), a variant of every {args.ct_every}th slice; "
                                  f"{args.neither * len(V.NEITHER_KINDS)} synthetic pictures "
                                  "that are neither"),
                   "method": f"multinomial logistic regression (C={C}) on standardised image "
                             "descriptors",
                   "command": ("python studies/modality_classifier.py --write "
                               "src/lungcad/domain/modality_classifier.json"
                               f" --variants {args.variants} --ct-every {args.ct_every} "
                               f"--neither {args.neither} --seed {args.seed} --C {C}"),
                   **{k: v for k, v in report.items() if k != "seconds"},
                   "mean": scaler.mean_.round(8).tolist(), "scale": scaler.scale_.round(8).tolist(),
                   "coef": logistic.coef_.round(8).tolist(),
                   "intercept": logistic.intercept_.round(8).tolist(),
                   "class_mean": final["mean"].round(6).tolist(),
                   "class_scale": final["scale"].round(6).tolist(),
                   "typicality": "domain references of the unaltered radiographs and CT "
                                 "slices: modality_radiograph.npz, modality_ct.npz"}
        args.write.write_text(json.dumps(shipped) + "\n")
        for modality, reference in zip(("radiograph", "ct"), final["references"]):
            reference.save(args.write.with_name(REFERENCE_FILES[modality].name))
        print(f"wrote {args.write} ({args.write.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
