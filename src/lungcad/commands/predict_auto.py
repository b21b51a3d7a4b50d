"""``lungcad predict auto INPUT...``: each image through the bundled model(s) of its modality.

Not a verb of its own: ``lungcad predict`` hands its arguments here when MODEL is ``auto``.
Each image's modality comes from its DICOM Modality tag, else from the shipped modality
classifier (an image that is neither a chest radiograph nor a CT slice goes to no model: it is
named on stderr with the reason, and the exit status is 1); its rows (one per model that read it) carry ``modality`` and ``modality_source``,
and ``prob_<class>`` columns of every model (blank where a model has no such class).
"""

from __future__ import annotations

import sys
from pathlib import Path


def route(inp, failures: list) -> tuple[dict[str, list[int]], dict]:
    """Positions of ``inp``'s images by modality, and each position's
    :class:`~lungcad.domain.modality.ModalityGuess`; unreadable images, and those that are
    neither modality (:func:`lungcad.domain.auto.routed`), go to ``failures``."""
    from lungcad.domain.auto import not_routed, routed
    from lungcad.domain.modality import guess_modality
    from lungcad.errors import LungcadError
    from lungcad.io import load_image

    groups: dict[str, list[int]] = {}
    guesses: dict = {}
    for i, (path, key) in enumerate(zip(inp.files, inp.keys)):
        try:
            loaded = load_image(path)
        except (LungcadError, OSError) as exc:
            failures.append((key, str(exc)))
            continue
        guess = guess_modality(loaded.array, loaded.meta.modality)
        if routed(guess) is None:
            failures.append((key, not_routed(guess, Path(key).name)))
            continue
        guesses[i] = guess
        groups.setdefault(guess.modality, []).append(i)
    return groups, guesses


def run_auto(args, report_failure) -> int:
    import pandas as pd

    from lungcad.domain.auto import bundled_by_modality
    from lungcad.errors import LungcadError
    from lungcad.inference import load_model
    from lungcad.prediction import (PredictionInput, check_output, file_input, predict_input,
                                    write_predictions)

    if (args.split is not None or args.heatmaps is not None or args.frame is not None
            or getattr(args, "dicom_out", None) is not None):
        raise LungcadError("auto takes image files and folders only: --split, --heatmaps, "
                           "--frame and --dicom-out need a named model")
    if args.out is not None:
        check_output(args.out)
    if args.findings is not None:
        check_output(args.findings, "--findings")
    inp = file_input(args.inputs)
    for note in inp.notes:
        print(f"lungcad predict: note: {note}", file=sys.stderr)
    for path, reason in inp.skipped:
        print(f"lungcad predict: skipped: {path}: {reason}", file=sys.stderr)
    if len(inp) == 0:
        raise LungcadError("no images to predict in " + ", ".join(map(str, args.inputs)))
    verdict = len(inp) == 1 and not inp.skipped and args.out is None
    if not verdict and args.out is None:
        check_output(Path("predictions.csv"))
    failures: list = []
    groups, guessed = route(inp, failures)
    for key, message in failures:
        report_failure(key, message)
    by_modality = bundled_by_modality()
    tables, lines, marks = [], [], []
    for modality, positions in groups.items():
        names = by_modality.get(modality, [])
        if not names:
            for i in positions:
                failures.append((inp.keys[i], f"no bundled model reads {modality} images"))
                report_failure(inp.keys[i], failures[-1][1])
        part = PredictionInput(files=[inp.files[i] for i in positions],
                               keys=[inp.keys[i] for i in positions])
        for name in names:
            model = load_model(name, args.runtime)
            result = predict_input(model, part, batch_size=args.batch_size,
                                   on_failure=report_failure)
            failures += result.failures
            if result.findings is not None:  # a detector: its marks, one row a mark
                marks.append(result.findings)
            table = result.table
            guesses = [guessed[positions[part.keys.index(k)]] for k in table["path"]]
            table.insert(1, "modality", [g.modality for g in guesses])
            table.insert(2, "modality_source", [g.source for g in guesses])
            tables.append(table)
            for k, path in enumerate(table["path"]):
                lines.append(f"{name}: " + result.prediction(model, k).line(Path(path).name))
    if verdict:
        for line in lines:
            print(line)
    elif tables:
        out = args.out or Path("predictions.csv")
        combined = pd.concat(tables, ignore_index=True, sort=False)
        if "n_marks" in combined.columns:  # a count, blank for the rows of non-detectors
            combined["n_marks"] = combined["n_marks"].astype("Int64")
        write_predictions(combined, out)
        print(f"wrote {sum(len(t) for t in tables)} prediction(s) of {len(inp)} image(s) to "
              f"{out} (models chosen by modality: "
              + "; ".join(f"{m}: {', '.join(by_modality.get(m, [])) or 'none'}" for m in groups)
              + ")")
    if marks and (not verdict or args.findings is not None):
        from lungcad.detection.batch import findings_path_for, write_findings

        marks_out = args.findings or findings_path_for(args.out or Path("predictions.csv"))
        write_findings(pd.concat(marks, ignore_index=True), marks_out)
        print(f"wrote {sum(len(m) for m in marks)} mark(s) to {marks_out}")
    if failures or inp.skipped:
        print(f"lungcad predict: {len(failures)} failure(s), {len(inp.skipped)} entry(ies) "
              "skipped (named above)", file=sys.stderr)
        return 1
    return 0
