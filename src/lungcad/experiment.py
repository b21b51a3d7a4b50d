"""The library side of ``lungcad experiment``: cross-validation of one config, fold by fold.

For each fold k of the config's split file (``DIR`` is the experiment folder)::

    DIR/fold-<k>/                 the training run folder (config.yaml, checkpoints/, model/ ...)
    DIR/fold-<k>/val_predictions.csv   the fold's validation part, predicted by its model
    DIR/fold-<k>/threshold.json   the decision threshold, chosen on val_predictions.csv only
    DIR/fold-<k>/test_predictions.csv  the fold's held-out test part at that threshold
    DIR/fold-<k>/localisation.json     saliency peaks against nodule positions (if asked)

then ``DIR/oof_predictions.csv`` (every test row of every fold, once), ``DIR/report/`` (the
evaluation of the pooled out-of-fold predictions), ``DIR/summary.json`` and ``summary.md``
(per-fold mean ± SD beside the pooled figures) and ``DIR/meta.json`` (command, config, split
hash, versions).

The one rule: no threshold is ever chosen on test predictions. :func:`choose_validation_threshold`
is the only place a fold's threshold is chosen; it accepts nothing but a
:class:`ValidationPredictions`, which :func:`load_validation_predictions` builds only after
checking that every row is in the fold's validation part and none is in its test part. The test
part is predicted after the threshold is fixed, and the pooled report uses each fold's
``predicted_label`` as written (no threshold is chosen on the pooled test rows either).

A fold whose ``test_predictions.csv`` exists is done and skipped; a fold whose model is trained
is not trained again; an interrupted training resumes from its last checkpoint.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import platform
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pandas as pd

from lungcad.errors import LungcadError
from lungcad.evaluation.thresholds import choose_threshold, parse_threshold_rule

if TYPE_CHECKING:  # pragma: no cover
    from lungcad.data.manifest import Manifest
    from lungcad.data.tasks import Task

EXPERIMENT_FORMAT = "lungcad-experiment/1"
SUMMARY_FORMAT = "lungcad-experiment-summary/1"
LIGHTNING = "lightning"
# Config keys that the experiment reads and the Lightning trainer's config does not know.
EXPERIMENT_KEYS = ("localisation", "trainer")
DEFAULT_THRESHOLD_RULE = "youden"
THRESHOLD_TOLERANCE = 1e-4  # val_predictions.csv rounds probabilities to 6 decimals
BINARY_FOLD_METRICS = ("accuracy", "roc_auc", "log_loss", "sensitivity", "specificity")
MULTICLASS_FOLD_METRICS = ("accuracy", "macro_roc_auc", "log_loss", "balanced_accuracy",
                           "macro_f1")
COORD_COLUMNS = ("x_512", "y_512")
TEST_PREDICTIONS = "test_predictions.csv"
VAL_PREDICTIONS = "val_predictions.csv"


# ---------------------------------------------------------------------------------------------
# config

@dataclass(frozen=True)
class ExperimentOptions:
    """What the experiment does beside training: the trainer, and localisation scoring."""

    trainer: str = LIGHTNING
    localisation: bool = False
    saliency_method: str = "gradcam"
    margin_mm: float = 10.0


def _parse_localisation(value) -> dict:
    if value is None or isinstance(value, bool):
        return {"localisation": bool(value)}
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"method", "margin_mm"})
        if unknown:
            raise LungcadError(f"config: localisation has unknown key(s) {unknown}; use "
                               "localisation: true, or {method: gradcam, margin_mm: 10}")
        from lungcad.explain.saliency import check_method

        try:
            margin = float(value.get("margin_mm", 10.0))
        except (TypeError, ValueError):
            raise LungcadError(f"config: localisation.margin_mm must be a number, got "
                               f"{value.get('margin_mm')!r}") from None
        if margin < 0:
            raise LungcadError(f"config: localisation.margin_mm must be >= 0, got {margin}")
        return {"localisation": True,
                "saliency_method": check_method(str(value.get("method", "gradcam"))),
                "margin_mm": margin}
    raise LungcadError(f"config: localisation must be true, false or a mapping, got {value!r}")


def load_experiment_config(path: str | Path,
                           overrides: Sequence[str] = ()) -> tuple[dict, ExperimentOptions]:
    """The training config of ``path`` with ``key=value`` overrides, and the experiment options.

    ``trainer`` (default ``lightning``) and ``localisation`` are experiment keys. A Lightning
    config is checked by :func:`lungcad.training.config.load_config`; another trainer gets the
    file's keys as written (paths made absolute), since it has defaults of its own.
    """
    from lungcad.training.config import _resolve_paths, apply_overrides, load_config, read_yaml

    path = Path(path)
    data = read_yaml(path)
    _resolve_paths(data, path.resolve().parent)
    own = [o for o in overrides if o.split("=", 1)[0].strip() in EXPERIMENT_KEYS]
    rest = [o for o in overrides if o not in own]
    experiment = {k: data.pop(k) for k in EXPERIMENT_KEYS if k in data}
    apply_overrides(experiment, own)
    trainer = str(experiment.get("trainer") or LIGHTNING)
    options = ExperimentOptions(trainer=trainer,
                                **_parse_localisation(experiment.get("localisation")))
    if trainer == LIGHTNING:
        # load_config resolves the file's relative paths against its folder: they are absolute
        # now, so a checked copy of the file without the experiment keys reads the same
        with tempfile.TemporaryDirectory() as tmp:
            copy_path = Path(tmp) / path.name
            copy_path.write_text(json.dumps(data))  # JSON is YAML
            return load_config(copy_path, rest), options
    resolve_trainer(trainer)  # an unknown trainer fails now, before any folder is written
    changed = apply_overrides(data, rest)
    _resolve_paths(data, Path.cwd(), changed)
    for key in ("dataset", "split", "task"):
        if not data.get(key):
            raise LungcadError(f"config: {key} is required (trainer {trainer})")
    data.setdefault("threshold", DEFAULT_THRESHOLD_RULE)
    parse_threshold_rule(str(data["threshold"]))
    return data, options


# ---------------------------------------------------------------------------------------------
# folds

@dataclass(frozen=True)
class FoldParts:
    """The manifest paths of one fold's parts, keeping only images with a class in the task."""

    fold: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]


def fold_parts(split, manifest: "Manifest", task: "Task", fold: int) -> FoldParts:
    def labelled(part: str) -> tuple[str, ...]:
        paths = list(split.part(fold, part))
        rows = manifest.rows_for(paths)
        return tuple(rows.loc[task.map_labels(rows["label"]).notna().to_numpy(), "path"])

    parts = FoldParts(fold, labelled("train"), labelled("val"), labelled("test"))
    for a, b in (("train", "test"), ("val", "test"), ("train", "val")):
        shared = set(getattr(parts, a)) & set(getattr(parts, b))
        if shared:
            raise LungcadError(f"fold {fold} of the split has {len(shared)} image(s) in both its "
                               f"{a} and {b} parts, e.g. {sorted(shared)[:2]}; remake the split")
    if not parts.val or not parts.test:
        raise LungcadError(f"fold {fold} of the split has no {'val' if not parts.val else 'test'} "
                           f"image with a class of task {task.name}")
    return parts


def resolve_trainer(name: str) -> Callable:
    """``fit_fold`` of a non-Lightning trainer: ``lungcad.training.<name>`` (dashes as
    underscores), or ``package.module:function``."""
    import importlib

    module_name, _, function = name.partition(":")
    if not function:
        module_name, function = f"lungcad.training.{name.replace('-', '_')}", "fit_fold"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise LungcadError(f"config: unknown trainer {name!r} (no module {module_name}); use "
                               f"{LIGHTNING} (the default) or a module with fit_fold") from None
        raise
    fit = getattr(module, function, None)
    if not callable(fit):
        raise LungcadError(f"config: trainer {name!r}: {module_name} has no function {function}")
    return fit


def train_fold(config: dict, fold: int, out_dir: Path, trainer: str = LIGHTNING,
               resume: bool = True) -> Path:
    """Train fold ``fold`` into the run folder ``out_dir``; return its model directory.

    ``lightning``: :func:`lungcad.training.run.train_run` (resumes from the last checkpoint);
    any other trainer: its ``fit_fold(manifest, train_paths, val_paths, task, out_dir, config)``.
    Neither sees the fold's test part.
    """
    if trainer == LIGHTNING:
        from lungcad.training.run import train_run

        return Path(train_run(config, out_dir, fold=fold, resume=resume))
    from lungcad.data.manifest import Manifest
    from lungcad.data.splits import load_split
    from lungcad.data.tasks import get_task

    fit_fold = resolve_trainer(trainer)
    manifest, task = Manifest.load(config["dataset"]), get_task(config["task"])
    parts = fold_parts(load_split(config["split"]), manifest, task, fold)
    out_dir.mkdir(parents=True, exist_ok=True)
    fold_config = {**config, "fold": fold}
    return Path(fit_fold(manifest, list(parts.train), list(parts.val), task, out_dir, fold_config))


def fold_is_trained(fold_dir: Path) -> bool:
    """A finished model directory (a Lightning run also marks itself finished in meta.json)."""
    if not (fold_dir / "model" / "model.json").is_file():
        return False
    meta = fold_dir / "meta.json"
    if meta.is_file():
        try:
            return json.loads(meta.read_text()).get("status") == "finished"
        except json.JSONDecodeError:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# the threshold: chosen on validation predictions only

@dataclass(frozen=True)
class ValidationPredictions:
    """A fold's validation predictions, checked to hold its validation part and nothing of its
    test part. Only :func:`load_validation_predictions` makes one."""

    fold: int
    source: str
    paths: tuple[str, ...]
    y: np.ndarray        # class index of each row
    probs: np.ndarray    # (rows, classes)
    classes: tuple[str, ...]


def load_validation_predictions(path: Path, parts: FoldParts,
                                classes: Sequence[str]) -> ValidationPredictions:
    """Read ``path`` (path, true_label, prob_<class>...) and check its rows are exactly the
    fold's validation part: any test image in it is refused."""
    if not path.is_file():
        raise LungcadError(f"{path} is missing: the fold's validation predictions are needed to "
                           "choose its threshold")
    table = pd.read_csv(path, dtype={"path": str, "true_label": str})
    columns = [f"prob_{c}" for c in classes]
    missing = [c for c in ("path", "true_label", *columns) if c not in table.columns]
    if missing:
        raise LungcadError(f"{path}: missing column(s) {missing}")
    paths = tuple(table["path"])
    leaked = set(paths) & set(parts.test)
    if leaked:
        raise LungcadError(f"{path} holds {len(leaked)} image(s) of fold {parts.fold}'s TEST part "
                           f"(e.g. {sorted(leaked)[:2]}); a threshold is never chosen on test "
                           "images")
    if set(paths) != set(parts.val) or len(paths) != len(parts.val):
        raise LungcadError(f"{path} does not hold exactly the validation part of fold "
                           f"{parts.fold} ({len(paths)} rows, {len(parts.val)} validation images)")
    unknown = sorted(set(table["true_label"]) - set(classes))
    if unknown:
        raise LungcadError(f"{path}: true_label {unknown} not among the classes {list(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    return ValidationPredictions(parts.fold, str(path), paths,
                                 table["true_label"].map(index).to_numpy(dtype=int),
                                 table[columns].to_numpy(dtype=np.float64), tuple(classes))


@dataclass
class FoldThreshold:
    value: float | None       # None: multi-class, the most probable class
    rule: str
    chosen_on: str            # "validation" (or "none" for a fixed number or multi-class)
    source: str | None
    n_validation: int
    model_value: float | None = None   # what the trained model directory carries
    matches_model: bool | None = None


def choose_validation_threshold(validation: ValidationPredictions, rule: str) -> FoldThreshold:
    """The fold's decision threshold by ``rule``, from its validation predictions alone.

    A rule that cannot be applied (one class only in validation) falls back to 0.5, as
    training does.
    """
    if not isinstance(validation, ValidationPredictions):  # the guarantee is in the type
        raise TypeError("a threshold is chosen on ValidationPredictions only, "
                        f"not {type(validation).__name__}")
    n = len(validation.paths)
    if len(validation.classes) != 2:
        return FoldThreshold(None, "most probable class (multi-class task)", "none", None, n)
    parsed = parse_threshold_rule(rule)
    try:
        value = choose_threshold(validation.y, validation.probs[:, 1], parsed)
    except LungcadError as exc:
        return FoldThreshold(0.5, f"0.5 (rule {parsed.text} failed on validation: {exc})",
                             "none", validation.source, n)
    chosen_on = "validation" if parsed.needs_data else "none"
    return FoldThreshold(float(value), parsed.text, chosen_on, validation.source, n)


def reconcile_with_model(choice: FoldThreshold, model) -> FoldThreshold:
    """Compare with the threshold the trained model carries; keep the model's exact value
    where they agree (so the fold's decisions equal `lungcad predict` with that model), and the
    validation choice where they do not."""
    model_value = model.spec.threshold if len(model.classes) == 2 else None
    choice.model_value = model_value
    if choice.value is None or model_value is None:
        choice.matches_model = choice.value is None and model_value is None
        return choice
    choice.matches_model = abs(float(model_value) - choice.value) <= THRESHOLD_TOLERANCE
    if choice.matches_model:
        choice.value = float(model_value)
    return choice


def write_validation_predictions(model, manifest: "Manifest", task: "Task", parts: FoldParts,
                                 path: Path) -> None:
    """For trainers that do not write val_predictions.csv themselves."""
    from lungcad.prediction import dataset_input, predict_input, write_predictions

    result = predict_input(model, dataset_input(manifest, task, parts.val), progress=False)
    if result.failures:
        raise LungcadError(f"fold {parts.fold}: {len(result.failures)} validation image(s) could "
                           f"not be predicted, e.g. {result.failures[0][1]}")
    write_predictions(result.table, path)


# ---------------------------------------------------------------------------------------------
# one fold

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


def _write_json(path: Path, data) -> None:
    from lungcad.atomic import atomic_write

    atomic_write(path, (json.dumps(data, indent=2, default=str, allow_nan=False)
                               + "\n").encode())


def run_fold(config: dict, options: ExperimentOptions, manifest: "Manifest", task: "Task",
             parts: FoldParts, fold_dir: Path, log: Callable[[str], None] = print) -> FoldOutcome:
    """Train (unless trained), choose the threshold on validation, predict the test part."""
    from lungcad.inference import load_model
    from lungcad.prediction import dataset_input, predict_input, write_predictions

    test_file = fold_dir / TEST_PREDICTIONS
    threshold_file = fold_dir / "threshold.json"
    counts = dict(n_train=len(parts.train), n_val=len(parts.val), n_test=len(parts.test))
    if test_file.is_file() and threshold_file.is_file():
        log(f"fold {parts.fold}: done already ({test_file}); skipped")
        return FoldOutcome(parts.fold, fold_dir, False, False,
                           json.loads(threshold_file.read_text()), **counts)

    trained_now = not fold_is_trained(fold_dir)
    if trained_now:
        log(f"fold {parts.fold}: training ({options.trainer}) into {fold_dir}")
        train_fold(config, parts.fold, fold_dir, options.trainer, resume=True)
    else:
        log(f"fold {parts.fold}: model trained already; not training again")
    model = load_model(fold_dir / "model")
    if list(model.classes) != list(task.classes):
        raise LungcadError(f"{fold_dir / 'model'}: classes {model.classes} differ from task "
                           f"{task.name}'s {list(task.classes)}")
    val_file = fold_dir / VAL_PREDICTIONS
    if not val_file.is_file():
        write_validation_predictions(model, manifest, task, parts, val_file)

    # the threshold, from the validation predictions alone, before any test image is predicted
    validation = load_validation_predictions(val_file, parts, task.classes)
    rule = str(config.get("threshold") or DEFAULT_THRESHOLD_RULE)
    choice = reconcile_with_model(choose_validation_threshold(validation, rule), model)
    if choice.matches_model is False:
        log(f"fold {parts.fold}: WARNING the model's threshold {choice.model_value} differs from "
            f"the one its validation predictions give ({choice.value}); using the latter")
    model.spec.threshold = choice.value
    threshold = asdict(choice)
    _write_json(threshold_file, threshold)

    result = predict_input(model, dataset_input(manifest, task, parts.test, fold=parts.fold),
                           progress=False)
    if result.failures:
        raise LungcadError(f"fold {parts.fold}: {len(result.failures)} test image(s) could not be "
                           f"predicted, e.g. {result.failures[0][1]}")
    write_predictions(result.table, test_file)  # written last: marks the fold done
    log(f"fold {parts.fold}: {len(result.table)} test predictions in {test_file}")
    return FoldOutcome(parts.fold, fold_dir, trained_now, True, threshold, **counts)


# ---------------------------------------------------------------------------------------------
# localisation, out of fold

def has_nodule_coordinates(manifest: "Manifest") -> bool:
    table = manifest.table
    return all(c in table.columns for c in (*COORD_COLUMNS, "size_mm")) and bool(
        table[list(COORD_COLUMNS)].apply(pd.to_numeric, errors="coerce").notna().all(axis=1).any())


def fold_localisation(model, manifest: "Manifest", test_paths: Sequence[str],
                      options: ExperimentOptions, batch_size: int = 8) -> dict:
    """Saliency maps of the fold's test images that have a nodule position, scored against it."""
    from lungcad.explain.localisation import score_localisation
    from lungcad.explain.saliency import Explainer
    from lungcad.io import load_image

    rows = manifest.rows_for(list(test_paths))
    coords = rows[list(COORD_COLUMNS) + ["size_mm"]].apply(pd.to_numeric, errors="coerce")
    rows = rows[coords.notna().all(axis=1).to_numpy()].reset_index(drop=True)
    explainer = Explainer(model, options.saliency_method)
    maps: dict[str, np.ndarray] = {}
    paths = rows["path"].tolist()
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        arrays = [load_image(manifest.image_path(p)).array for p in chunk]
        for p, m in zip(chunk, explainer.maps(arrays, sources=chunk)):
            maps[p] = m
    return score_localisation(maps, rows, options.margin_mm, root=manifest.root)


def pooled_localisation(results: Sequence[dict]) -> dict:
    """Every fold's per-image records together: overall and per subtlety."""
    from lungcad.explain.localisation import summarise

    records = [dict(r, fold=k) for k, result in enumerate(results) for r in result["per_image"]]
    group_by = results[0]["settings"]["group_by"] if results else "subtlety"
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(str(r.get(group_by)), []).append(r)

    def order(key: str):
        try:
            return (0, float(key), key)
        except ValueError:
            return (1, 0.0, key)

    return {"settings": results[0]["settings"] if results else None,
            "overall": summarise(records),
            f"by_{group_by}": {k: summarise(groups[k]) for k in sorted(groups, key=order)},
            "n_per_fold": [len(r["per_image"]) for r in results]}


# ---------------------------------------------------------------------------------------------
# metrics per fold, mean ± SD, pooled

def fold_metric_values(test: pd.DataFrame) -> dict[str, float | None]:
    """Accuracy, AUC, log loss, sensitivity and specificity (binary) or their multi-class
    counterparts, of one fold's test predictions at its own validation threshold."""
    from lungcad.evaluation.metrics import binary_metric_values, multiclass_metric_values
    from lungcad.evaluation.predictions import validate_predictions

    preds = validate_predictions(test, require_labels=True)
    with np.errstate(all="ignore"):
        if preds.binary:
            values = binary_metric_values(preds.y, preds.positive_scores, preds.predicted)
            names = BINARY_FOLD_METRICS
        else:
            values = multiclass_metric_values(preds.y, preds.probs, preds.predicted,
                                              len(preds.classes))
            names = MULTICLASS_FOLD_METRICS
    return {n: (float(values[n]) if np.isfinite(values[n]) else None) for n in names}


def mean_sd(values: Sequence[float | None]) -> dict:
    """Mean and sample SD (n - 1) over the folds where the metric is defined."""
    defined = [float(v) for v in values if v is not None and math.isfinite(v)]
    mean = float(np.mean(defined)) if defined else None
    sd = float(np.std(defined, ddof=1)) if len(defined) > 1 else None
    return {"mean": mean, "sd": sd, "n_folds": len(defined), "values": list(values)}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("lungcad", "torch", "torchvision", "lightning", "monai", "numpy", "pandas",
                 "scikit-learn", "scipy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def _git_commit() -> str | None:
    import subprocess

    import lungcad

    try:
        out = subprocess.run(["git", "-C", str(Path(lungcad.__file__).resolve().parents[2]),
                              "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _check_same_experiment(out_dir: Path, config: dict, options: ExperimentOptions,
                           split_sha: str) -> dict:
    """The previous meta.json of ``out_dir``, refusing a different config or split file."""
    from lungcad.training.config import RESUMABLE_CHANGES

    meta_path = out_dir / "meta.json"
    if not meta_path.is_file():
        return {}
    old = json.loads(meta_path.read_text())
    if old.get("split", {}).get("sha256") != split_sha:
        raise LungcadError(f"{out_dir} holds an experiment on another split file (sha256 "
                           f"{str(old.get('split', {}).get('sha256'))[:12]}...); use another --out")
    old_config = old.get("config", {})
    keys = (set(old_config) | set(config)) - RESUMABLE_CHANGES
    differ = sorted(k for k in keys if old_config.get(k) != config.get(k))
    if old.get("options", {}).get("trainer", LIGHTNING) != options.trainer:
        differ.append("trainer")
    if differ:
        raise LungcadError(f"{out_dir} holds an experiment with a different config (differs in: "
                           f"{', '.join(differ)}); use another --out")
    return old


@dataclass
class ExperimentResult:
    out_dir: Path
    folds: list[FoldOutcome]
    summary: dict
    trained_folds: list[int] = field(default_factory=list)


def run_experiment(config: dict, options: ExperimentOptions, out_dir: str | Path, *,
                   n_folds: int | None = None, n_bootstrap: int = 2000, seed: int = 0,
                   command: str | None = None, config_path: str | Path | None = None,
                   log: Callable[[str], None] = print) -> ExperimentResult:
    """Cross-validate ``config`` fold by fold into ``out_dir`` (see the module's docstring)."""
    from lungcad.data.manifest import Manifest
    from lungcad.data.splits import load_split
    from lungcad.data.tasks import get_task
    from lungcad.prediction import check_split_matches, write_predictions

    out_dir = Path(out_dir).resolve()
    config = copy.deepcopy(config)
    split_path = Path(config["split"])
    split = load_split(split_path)
    manifest = Manifest.load(config["dataset"])
    check_split_matches(split, manifest, split_path)
    task = get_task(config["task"])
    total = split.n_folds
    n_run = total if n_folds is None else int(n_folds)
    if not 1 <= n_run <= total:
        raise LungcadError(f"--folds {n_run}: {split_path} has {total} fold(s); give 1 to {total}")
    split_sha = _sha256(split_path)

    out_dir.mkdir(parents=True, exist_ok=True)
    old_meta = _check_same_experiment(out_dir, config, options, split_sha)
    from lungcad.training.config import dump_config

    (out_dir / "config.yaml").write_text(dump_config(config))
    meta = {
        "format": EXPERIMENT_FORMAT, "status": "running",
        "command": command, "cwd": os.getcwd(),
        "config_path": str(Path(config_path).resolve()) if config_path else None,
        "config": config, "options": asdict(options),
        "split": {"path": str(split_path), "sha256": split_sha, "n_folds": total,
                  "folds_run": n_run},
        "dataset": {"path": str(manifest.root), "manifest_sha256": manifest.sha256(),
                    "n_images": len(manifest)},
        "task": task.name, "bootstrap": {"n_resamples": n_bootstrap, "seed": seed},
        "versions": _versions(), "git_commit": _git_commit(), "host": platform.node(),
        "started": old_meta.get("started", _now()),
        "sessions": old_meta.get("sessions", []) + [{"started": _now(), "command": command}],
    }
    _write_json(out_dir / "meta.json", meta)

    localise = options.localisation and has_nodule_coordinates(manifest)
    warnings: list[str] = []
    if options.localisation and not localise:
        warnings.append("localisation was asked for, but the manifest has no nodule "
                        f"coordinates ({', '.join(COORD_COLUMNS)}, size_mm): not scored")

    outcomes: list[FoldOutcome] = []
    localisations: list[dict] = []
    for k in range(n_run):
        parts = fold_parts(split, manifest, task, k)
        fold_dir = out_dir / f"fold-{k}"
        outcome = run_fold(config, options, manifest, task, parts, fold_dir, log)
        outcomes.append(outcome)
        if outcome.threshold.get("matches_model") is False:
            warnings.append(f"fold {k}: the model's threshold {outcome.threshold['model_value']} "
                            "differs from the one chosen on its validation predictions "
                            f"({outcome.threshold['value']}); the latter was applied")
        if localise:
            loc_file = fold_dir / "localisation.json"
            if not loc_file.is_file():
                from lungcad.inference import load_model

                log(f"fold {k}: localisation ({options.saliency_method}) on its test images")
                _write_json(loc_file, fold_localisation(load_model(fold_dir / "model"), manifest,
                                                        parts.test, options))
            localisations.append(json.loads(loc_file.read_text()))

    from lungcad.evaluation.predictions import read_predictions

    frames = [pd.read_csv(o.directory / TEST_PREDICTIONS, dtype={"path": str}) for o in outcomes]
    oof = pd.concat(frames, ignore_index=True)
    repeated = oof["path"][oof["path"].duplicated()].tolist()
    if repeated:
        raise LungcadError(f"{len(repeated)} image(s) are in the test part of more than one fold, "
                           f"e.g. {repeated[:2]}; the split file is inconsistent")
    oof_path = write_predictions(oof, out_dir / "oof_predictions.csv")
    summary = summarise_experiment(read_predictions(oof_path), outcomes, frames, task,
                                   localisations if localise else None, out_dir, total,
                                   n_bootstrap, seed, warnings)
    meta.update({"status": "finished", "finished": _now()})
    meta["sessions"][-1].update({"finished": meta["finished"],
                                 "trained_folds": [o.fold for o in outcomes if o.trained_now]})
    _write_json(out_dir / "meta.json", meta)
    return ExperimentResult(out_dir, outcomes, summary,
                            [o.fold for o in outcomes if o.trained_now])


def summarise_experiment(oof: pd.DataFrame, outcomes: Sequence[FoldOutcome],
                         frames: Sequence[pd.DataFrame], task: "Task",
                         localisation: Sequence[dict] | None, out_dir: Path, total_folds: int,
                         n_bootstrap: int, seed: int, warnings: list[str]) -> dict:
    """Evaluate the pooled out-of-fold predictions (DIR/report/) and write summary.json/.md."""
    from lungcad.evaluation.render import write_report
    from lungcad.evaluation.report import evaluate_predictions

    # threshold None: each row's predicted_label as its fold wrote it, at that fold's own
    # validation threshold; nothing is chosen on the pooled test rows
    names = BINARY_FOLD_METRICS if task.binary else MULTICLASS_FOLD_METRICS
    per_fold = [fold_metric_values(f) for f in frames]
    folds = []
    for o, values in zip(outcomes, per_fold):
        folds.append({"fold": o.fold, "directory": str(o.directory), "n_train": o.n_train,
                      "n_val": o.n_val, "n_test": o.n_test, "trained_this_run": o.trained_now,
                      "threshold": o.threshold, "metrics": values})
    fold_stats = {n: mean_sd([v[n] for v in per_fold]) for n in names}
    pooled_loc = pooled_localisation(localisation) if localisation else None
    sections = [_folds_section(folds, fold_stats, names, task)]
    if pooled_loc is not None:
        sections.append(_localisation_section(pooled_loc))
    report = evaluate_predictions(oof, None, None, n_bootstrap, seed, extra_sections=sections)
    write_report(report, out_dir / "report")
    pooled = {n: {k: report["metrics"][n][k] for k in ("value", "ci_low", "ci_high")}
              for n in names}
    summary = {
        "format": SUMMARY_FORMAT,
        "task": task.name, "classes": list(task.classes),
        "folds_run": len(outcomes), "folds_in_split": total_folds,
        "n_out_of_fold": int(len(oof)),
        "threshold_policy": "Each fold's threshold was chosen on that fold's validation "
                            "predictions only and applied unchanged to its test part; the "
                            "pooled figures score those decisions (no threshold is chosen on "
                            "test predictions)",
        "folds": folds,
        "per_fold_mean_sd": fold_stats,
        "pooled": pooled,
        "pooled_report": {"path": str(out_dir / "report" / "report.json"),
                          "threshold": report["threshold"], "n_bootstrap": n_bootstrap},
        "localisation": pooled_loc,
        "warnings": warnings + list(report["warnings"]),
    }
    _write_json(out_dir / "summary.json", summary)
    from lungcad.atomic import atomic_write

    atomic_write(out_dir / "summary.md", summary_markdown(summary).encode())
    return summary


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_mean_sd(stat: dict) -> str:
    if stat["mean"] is None:
        return "n/a"
    return _fmt(stat["mean"]) + (f" ± {_fmt(stat['sd'])}" if stat["sd"] is not None else "")


def _format_pooled(record: dict) -> str:
    text = _fmt(record["value"])
    if record.get("ci_low") is not None and record.get("ci_high") is not None:
        text += f" ({_fmt(record['ci_low'])} to {_fmt(record['ci_high'])})"
    return text


def _folds_section(folds: list[dict], stats: dict, names: Sequence[str], task: "Task") -> dict:
    from lungcad.evaluation.report import make_section

    rows = []
    for f in folds:
        t = f["threshold"]["value"]
        rows.append({"fold": str(f["fold"]), "n test": str(f["n_test"]),
                     "n val": str(f["n_val"]), "threshold (val)": _fmt(t, 4),
                     **{n: _fmt(f["metrics"][n]) for n in names}})
    rows.append({"fold": "mean ± SD", "n test": "", "n val": "", "threshold (val)": "",
                 **{n: format_mean_sd(stats[n]) for n in names}})
    rule = "its own validation threshold" if task.binary else "its most probable class"
    return make_section(
        "Cross-validation folds",
        [f"Each fold's model was trained on the fold's training part and scored on its held-out "
         f"test part at {rule}, chosen on the fold's validation part only. The figures above "
         "pool every fold's test predictions (out of fold); below, each fold on its own, with "
         "the mean and sample standard deviation across folds."],
        [{"title": "Per-fold test metrics", "columns": list(rows[0]), "rows": rows}],
        section_id="cross-validation")


def _localisation_section(pooled: dict) -> dict:
    from lungcad.evaluation.report import make_section

    def row(group: str, s: dict) -> dict:
        rate = s["peak_hit"]
        ci = rate["ci95"]
        return {"group": group, "n": str(s["n"]),
                "peak hit": (f"{_fmt(rate['rate'])} ({_fmt(ci[0])} to {_fmt(ci[1])})"
                             if rate["rate"] is not None else "n/a"),
                "top-3 hit": _fmt(s["top3_hit"]["rate"]),
                "chance": _fmt(s["chance_peak_hit_mean"]),
                "lung share": _fmt(s["lung_share_mean"])}

    group_key = next(k for k in pooled if k.startswith("by_"))
    rows = [row("all", pooled["overall"])]
    rows += [row(f"{group_key[3:]} {k}", s) for k, s in pooled[group_key].items()]
    settings = pooled["settings"] or {}
    return make_section(
        "Localisation (out of fold)",
        ["Saliency maps of each fold's model on its own test images with a known nodule "
         f"position: a hit is the map's peak within the nodule's radius plus "
         f"{settings.get('margin_mm')} mm of its centre. 'chance' is the hit rate of a peak "
         "placed at random in the lung fields; Wilson 95% intervals."],
        [{"title": "Peak hit rates", "columns": list(rows[0]), "rows": rows}],
        section_id="localisation")


def summary_markdown(summary: dict) -> str:
    names = list(summary["per_fold_mean_sd"])
    lines = [f"# Cross-validation: {summary['task']}", "",
             "Research software, not a medical device.", "",
             f"{summary['folds_run']} of {summary['folds_in_split']} fold(s), "
             f"{summary['n_out_of_fold']} out-of-fold test predictions. "
             + summary["threshold_policy"] + ".", "",
             "| metric | per-fold mean ± SD | pooled (95% CI) |", "|---|---|---|"]
    for n in names:
        lines.append(f"| {n} | {format_mean_sd(summary['per_fold_mean_sd'][n])} | "
                     f"{_format_pooled(summary['pooled'][n])} |")
    lines += ["", "| fold | n test | threshold (val) | " + " | ".join(names) + " |",
              "|---" * (3 + len(names)) + "|"]
    for f in summary["folds"]:
        lines.append(f"| {f['fold']} | {f['n_test']} | {_fmt(f['threshold']['value'], 4)} | "
                     + " | ".join(_fmt(f["metrics"][n]) for n in names) + " |")
    loc = summary.get("localisation")
    if loc:
        peak = loc["overall"]["peak_hit"]
        lines += ["", f"Localisation (out of fold): peak hit rate {_fmt(peak['rate'])} on "
                      f"{peak['n']} nodule image(s); chance "
                      f"{_fmt(loc['overall']['chance_peak_hit_mean'])}."]
    if summary["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in summary["warnings"]]
    lines += ["", "Full report of the pooled predictions: report/report.html", ""]
    return "\n".join(lines)
