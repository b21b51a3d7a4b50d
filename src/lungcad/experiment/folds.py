"""One fold of a cross-validation: train it (unless trained), read the threshold decided on
its validation part, predict its held-out test part."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lungcad.errors import LungcadError
from lungcad.training.fit import THRESHOLD_FILE

TEST_PREDICTIONS = "test_predictions.csv"


@dataclass
class FoldOutcome:
    fold: int
    directory: Path
    trained_now: bool
    predicted_now: bool
    threshold: dict
    n_train: int
    n_val: int
    n_test: int


def fold_is_trained(fold_dir: Path) -> bool:
    """Model and threshold written (a Lightning run also marks itself finished in meta.json)."""
    from lungcad.training.fit import is_trained

    if not is_trained(fold_dir):
        return False
    meta = fold_dir / "meta.json"
    if meta.is_file():
        try:
            return json.loads(meta.read_text()).get("status") == "finished"
        except json.JSONDecodeError:
            return False
    return True


def predict_test_part(model, view, fold_dir: Path):
    """A classifier's predictions table for the fold's test part (at the model's threshold)."""
    from lungcad.prediction import dataset_input, predict_input

    result = predict_input(model, dataset_input(view.manifest, view.task, list(view.test),
                                                fold=view.fold), progress=False)
    if result.failures:
        raise LungcadError(f"fold {view.fold}: {len(result.failures)} test image(s) could not "
                           f"be predicted, e.g. {result.failures[0][1]}")
    return result.table


def run_fold(config: dict, view, fold_dir: Path, log: Callable[[str], None] = print, *,
             test_file: str = TEST_PREDICTIONS,
             score_test: Callable = predict_test_part,
             also_written: tuple[str, ...] = ()) -> FoldOutcome:
    """Train (unless trained), then score the test part with the model whose threshold
    training decided on the validation part (:func:`lungcad.training.fit.finish`):
    ``score_test(model, view, fold_dir)`` gives the table written to ``fold_dir/test_file``
    (a classifier's predictions by default; a segmenter's scored masks for segmentation; a
    detector's predictions, its marks written to ``also_written`` files by ``score_test``).
    The fold is done when ``test_file`` and every ``also_written`` file exist."""
    from lungcad.inference import load_model
    from lungcad.prediction import write_predictions
    from lungcad.training.fit import train

    if not view.test:
        raise LungcadError(f"fold {view.fold} of the split has no test image with a class of "
                           f"task {view.task.name}")
    test_path = fold_dir / test_file
    threshold_file = fold_dir / THRESHOLD_FILE
    counts = dict(n_train=len(view.train), n_val=len(view.val), n_test=len(view.test))
    if (test_path.is_file() and threshold_file.is_file()
            and all((fold_dir / name).is_file() for name in also_written)):
        log(f"fold {view.fold}: done already ({test_path}); skipped")
        return FoldOutcome(view.fold, fold_dir, False, False,
                           json.loads(threshold_file.read_text()), **counts)

    trained_now = not fold_is_trained(fold_dir)
    if trained_now:
        log(f"fold {view.fold}: training ({config['trainer']}) into {fold_dir}")
        train(config, fold_dir, fold=view.fold, resume=True, log=log)
    else:
        log(f"fold {view.fold}: model trained already; not training again")
    model = load_model(fold_dir / "model")
    if list(model.classes) != list(view.task.classes):
        raise LungcadError(f"{fold_dir / 'model'}: classes {model.classes} differ from task "
                           f"{view.task.name}'s {list(view.task.classes)}")
    threshold = json.loads(threshold_file.read_text())
    if threshold["value"] != model.spec.threshold:
        raise LungcadError(f"{fold_dir}: model.json's threshold {model.spec.threshold} is not "
                           f"the one in {THRESHOLD_FILE} ({threshold['value']}); train the fold "
                           "again (delete the folder)")
    table = score_test(model, view, fold_dir)
    write_predictions(table, test_path)  # written last: marks the fold done
    log(f"fold {view.fold}: {len(table)} test rows in {test_path}")
    return FoldOutcome(view.fold, fold_dir, trained_now, True, threshold, **counts)
