"""The one code path from a config to a model directory, whatever the trainer.

:func:`train` loads the fold once (:func:`lungcad.data.splits.load_fold`), runs the registered
trainer, and :func:`finish` then does what every trainer needs the same way: the decision
threshold is decided by :func:`lungcad.evaluation.thresholds.decide_threshold` on the trainer's
unrounded validation probabilities, and the run folder gets::

    OUT/val_predictions.csv   the fold's validation part: path, true_label, prob_<class>...
    OUT/model/                the model directory, its threshold in model.json
    OUT/threshold.json        the threshold and how it was decided; written last, it marks the
                              fold as trained
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from lungcad.errors import LungcadError
from lungcad.training.registry import TrainedFold

VAL_PREDICTIONS = "val_predictions.csv"
THRESHOLD_FILE = "threshold.json"
MODEL_DIR = "model"


def train(config: dict, out_dir: str | Path, *, fold: int | None = None, resume: bool = True,
          log: Callable[[str], None] = print) -> Path:
    """Train fold ``fold`` (default: the config's) as ``config`` says; return the model directory.

    ``config`` is what :func:`lungcad.training.config.load_config` returns. ``resume`` lets a
    trainer that keeps checkpoints continue an interrupted run in ``out_dir``.
    """
    from lungcad.data.splits import load_fold
    from lungcad.training.trainers import get_trainer

    config = copy.deepcopy(config)
    if fold is not None:
        config["fold"] = int(fold)
    config.setdefault("fold", 0)
    trainer = get_trainer(config.get("trainer"))
    view = load_fold(config["dataset"], config["split"], config["task"], int(config["fold"]))
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        for name in (VAL_PREDICTIONS, THRESHOLD_FILE):
            (out_dir / name).unlink(missing_ok=True)
    with torch_state_kept():
        trained = trainer.fit(view, out_dir, config, resume=resume, log=log)
        if trained is None:  # a DDP worker: rank 0 finishes the run
            return out_dir / MODEL_DIR
        return finish(trained, view, out_dir, str(config.get("threshold") or "youden"))


@contextlib.contextmanager
def torch_state_kept():
    """Give back the process-wide state as it was: trainers set torch's thread count and seed
    the global random generators (torch, NumPy, ``random``: Lightning's ``seed_everything``)
    for their own run, and what runs after them in the same process (the next fold, a caller's
    own code, the next test) must not inherit them."""
    import random

    import torch

    threads = torch.get_num_threads()
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(threads)
        np.random.set_state(numpy_state)
        random.setstate(python_state)


def finish(trained: "TrainedFold", view, out_dir: Path, rule: str) -> Path:
    """Decide the threshold on the validation part; write val_predictions.csv, the model
    directory and threshold.json (last)."""
    from lungcad.domain.training_data import record_view
    from lungcad.evaluation.thresholds import ValidationPredictions, decide_threshold
    from lungcad.model_dir import save_model_dir
    from lungcad.provenance import write_json

    if view.task.segmentation:
        return _finish_segmenter(trained, view, Path(out_dir))
    probs = trained.val_probs
    if probs is None:
        probs = predict_part(trained.network, trained.spec, view, "val")
    val_file = Path(out_dir) / VAL_PREDICTIONS
    validation = ValidationPredictions.for_fold(view, probs, source=str(val_file))
    choice = decide_threshold(validation, rule)
    spec = replace(trained.spec, threshold=choice.value, threshold_rule=choice.description,
                   metrics={**trained.spec.metrics,
                            **validation_metrics(validation.y, validation.probs, choice.value)})
    write_validation_predictions(val_file, validation)
    card = trained.card(spec) if callable(trained.card) else trained.card
    model_dir = save_model_dir(Path(out_dir) / MODEL_DIR, trained.network, spec, card)
    record_view(model_dir, view)  # what it trained on: predict and evaluate say so
    write_json(Path(out_dir) / THRESHOLD_FILE, choice.to_dict())
    return model_dir


def _finish_segmenter(trained: TrainedFold, view, out_dir: Path) -> Path:
    """A segmenter's pixel threshold is fixed at 0.5: nothing is decided on validation."""
    from lungcad.atomic import atomic_write
    from lungcad.domain.training_data import record_view
    from lungcad.evaluation.thresholds import ThresholdChoice
    from lungcad.model_dir import save_model_dir
    from lungcad.provenance import write_json
    from lungcad.segmentation.masks import PIXEL_RULE, PIXEL_THRESHOLD

    choice = ThresholdChoice(PIXEL_THRESHOLD, f"{PIXEL_THRESHOLD:g}", "none", None,
                             len(view.val), PIXEL_RULE)
    spec = replace(trained.spec, threshold=choice.value, threshold_rule=choice.description)
    if trained.val_table is not None:
        atomic_write(out_dir / VAL_PREDICTIONS,
                     trained.val_table.to_csv(index=False, float_format="%.17g").encode())
    card = trained.card(spec) if callable(trained.card) else trained.card
    model_dir = save_model_dir(out_dir / MODEL_DIR, trained.network, spec, card)
    record_view(model_dir, view)
    write_json(out_dir / THRESHOLD_FILE, choice.to_dict())
    return model_dir


def is_trained(out_dir: Path) -> bool:
    """A run folder whose model and threshold are written (:func:`finish` has completed)."""
    return (Path(out_dir) / THRESHOLD_FILE).is_file() and \
        (Path(out_dir) / MODEL_DIR / "model.json").is_file()


def predict_part(network, spec, view, part: str, batch_size: int = 16) -> np.ndarray:
    """Probabilities (N, C) of a fold's part, by the network as prediction would run it."""
    from lungcad.lung_model import LungModel
    from lungcad.io import load_image

    model = LungModel(spec, network)
    paths = list(getattr(view, part))
    arrays = []
    for p in paths:
        try:
            arrays.append(load_image(view.manifest.image_path(p)).array)
        except LungcadError as exc:
            raise LungcadError(f"fold {view.fold}: the {part} image {p} cannot be read: "
                               f"{exc}") from None
    return np.asarray(model.predict_proba(arrays, batch_size=batch_size, sources=paths))


def write_validation_predictions(path: Path, validation) -> None:
    """path, true_label, prob_<class>... at full precision (the threshold was decided on them)."""
    import pandas as pd

    from lungcad.atomic import atomic_write

    table = pd.DataFrame({"path": list(validation.paths),
                          "true_label": [validation.classes[i] for i in validation.y]})
    for i, name in enumerate(validation.classes):
        table[f"prob_{name}"] = validation.probs[:, i]
    atomic_write(path, table.to_csv(index=False, float_format="%.17g").encode())


def validation_metrics(y: np.ndarray, probs: np.ndarray, threshold: float | None) -> dict:
    """AUROC and accuracy of the validation part, for model.json (optimistic: the threshold was
    chosen on these images)."""
    from sklearn.metrics import roc_auc_score

    binary = probs.shape[1] == 2
    metrics: dict = {"n_val": int(len(y))}
    try:
        if binary:
            metrics["val_auroc"] = float(roc_auc_score(y, probs[:, 1]))
        else:
            metrics["val_auroc"] = float(roc_auc_score(y, probs, multi_class="ovr",
                                                       average="macro",
                                                       labels=list(range(probs.shape[1]))))
    except ValueError:  # one class only in validation: AUROC undefined
        metrics["val_auroc"] = None
    if binary:
        from lungcad.evaluation.thresholds import DEFAULT_THRESHOLD

        t = DEFAULT_THRESHOLD if threshold is None else threshold
        metrics["val_accuracy_at_threshold"] = float(((probs[:, 1] >= t).astype(int) == y).mean())
    metrics["val_accuracy_argmax"] = float((probs.argmax(1) == y).mean())
    return metrics
