"""Trainer ``linear_probe``: frozen ImageNet EfficientNet-Lite0 features + logistic regression.

``fit_fold(manifest, train_paths, val_paths, task, out_dir, config) -> model_dir`` writes an
ordinary ``efficientnet-lite0`` model directory whose backbone is the untouched ImageNet network
and whose classifier (``backbone._fc``) holds a scikit-learn logistic regression, so that
``lungcad predict``, ``explain``, ``export`` and ``serve`` use it like any other model.

Why: on 2 CPU cores a fine-tuned network costs minutes an epoch, while the frozen features of
one dataset take about a minute once and the regression seconds a fold. The features are the
network's own global-average-pooled last feature map (what its classifier reads), computed
from the same preprocessing that prediction applies. They are cached in memory and on disk
(``<cache>/features``, ``<cache>`` being ``$LUNGCAD_CACHE_DIR`` or ``~/.cache/lungcad``, as
for ONNX exports; keyed by the file's identity, the preprocessing and the
weights' sha256), so the folds of an experiment and its final model compute them once.

Settings (config keys; every value fixed before any test fold is seen):

- ``image_size`` (224), ``threshold`` (binary tasks: ``youden``, chosen on ``val_paths``);
- ``pooling``: ``avg`` (the network's own) or ``max`` (global max of the last feature map);
- ``Cs`` (inverse regularisation strengths tried) and ``inner_folds`` (5): the strength is
  picked by an inner stratified cross-validation on the training part alone (log loss);
- ``class_weight`` (``balanced`` or ``none``), ``seed`` (0), ``torch_threads`` (2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from lungcad.errors import LungcadError

ARCHITECTURE = "efficientnet-lite0"
DEFAULTS: dict = {
    "image_size": 224,
    "pooling": "avg",
    "Cs": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0],
    "inner_folds": 5,
    "class_weight": "balanced",
    "threshold": "youden",
    "seed": 0,
    "torch_threads": 2,
    "batch_size": 32,
}

_FEATURE_MEMO: dict[Path, np.ndarray] = {}


def _config(config: Mapping | None) -> dict:
    return {**DEFAULTS, **(dict(config) if config else {})}


def base_network(num_classes: int, pooling: str = "avg"):
    """The ImageNet EfficientNet-Lite0 (one-channel stem) with a fresh classifier."""
    from lungcad.models.registry import create_model

    return create_model(ARCHITECTURE, num_classes, pretrained=True, freeze_backbone=True,
                        pooling=pooling)


def pooled_features(network, batch: np.ndarray) -> np.ndarray:
    """What the classifier of ``network`` reads: the pooled last feature map, (N, 1280)."""
    import torch

    backbone = network.backbone
    with torch.inference_mode():
        x = backbone.extract_features(torch.from_numpy(np.ascontiguousarray(batch)))
        return backbone._avg_pooling(x).flatten(start_dim=1).numpy()


def _feature_file(image: Path, preprocessing, pooling: str) -> Path:
    import hashlib
    import json
    import os

    from lungcad.data.cache import cache_key
    from lungcad.models.efficientnet_lite import LITE0_WEIGHTS_SHA256

    ident = {"image": cache_key(image, preprocessing.size), "pre": preprocessing.to_dict(),
             "weights": LITE0_WEIGHTS_SHA256, "features": f"lite0-{pooling}-pooled/1"}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    root = os.environ.get("LUNGCAD_CACHE_DIR")
    cache = Path(root) if root else Path.home() / ".cache" / "lungcad"
    return cache / "features" / digest[:2] / f"{digest}.npy"


def _read_cached(file: Path) -> np.ndarray | None:
    try:
        return np.load(file)
    except (OSError, ValueError, EOFError):  # absent, or a damaged entry: compute it again
        return None


def features_for(network, manifest, paths: Sequence[str], preprocessing,
                 batch_size: int = 32, log=print) -> np.ndarray:
    """Pooled features of the manifest images ``paths`` (cached in memory and on disk)."""
    import io

    from lungcad.atomic import atomic_write
    from lungcad.io import load_image

    network.eval()
    pooling = type(network.backbone._avg_pooling).__name__
    files = {p: _feature_file(manifest.image_path(p), preprocessing, pooling)
             for p in dict.fromkeys(paths)}
    todo = []
    for p, file in files.items():
        if file not in _FEATURE_MEMO:
            cached = _read_cached(file)
            if cached is None:
                todo.append(p)
            else:
                _FEATURE_MEMO[file] = cached
    if todo:
        log(f"linear_probe: features of {len(todo)} image(s) at {preprocessing.size} px")
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        batch = np.stack([preprocessing.apply(load_image(manifest.image_path(p)).array, p)
                          for p in chunk])
        for p, f in zip(chunk, pooled_features(network, batch)):
            _FEATURE_MEMO[files[p]] = f
            buffer = io.BytesIO()
            np.save(buffer, f)
            atomic_write(files[p], buffer.getvalue(), durable=False)
    return np.stack([_FEATURE_MEMO[files[p]] for p in paths])


def fit_regression(features: np.ndarray, y: np.ndarray, cfg: Mapping):
    """A standardised logistic regression, its strength picked by inner CV on these data."""
    import warnings

    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    smallest = int(np.bincount(y).min())
    inner = max(2, min(int(cfg["inner_folds"]), smallest))
    weight = None if str(cfg["class_weight"]) == "none" else str(cfg["class_weight"])
    regression = LogisticRegressionCV(
        Cs=[float(c) for c in cfg["Cs"]], cv=StratifiedKFold(inner, shuffle=True,
                                                             random_state=int(cfg["seed"])),
        scoring="neg_log_loss", class_weight=weight, max_iter=5000)
    with warnings.catch_warnings():  # scikit-learn 1.8's notices of its 1.10 API changes
        warnings.simplefilter("ignore", FutureWarning)
        return make_pipeline(StandardScaler(), regression).fit(features, y)


def regression_as_linear(pipeline) -> tuple[np.ndarray, np.ndarray]:
    """(weight (K, F), bias (K,)) of one linear layer equal to scaler + regression logits."""
    scaler, regression = pipeline[0], pipeline[-1]
    coef = regression.coef_ / scaler.scale_
    bias = regression.intercept_ - coef @ scaler.mean_
    return coef.astype(np.float32), bias.astype(np.float32)


def fit_fold(manifest, train_paths: Sequence[str], val_paths: Sequence[str], task,
             out_dir: str | Path, config: Mapping | None = None, *, log=print) -> Path:
    """Fit on ``train_paths``, choose the threshold on ``val_paths``, save ``out_dir/model``."""
    import torch

    from lungcad.data.manifest import Manifest
    from lungcad.data.tasks import get_task
    from lungcad.evaluation.thresholds import choose_threshold
    from lungcad.inference import ModelSpec, save_model_dir
    from lungcad.models.registry import logits_to_probs, model_info
    from lungcad.preprocess import Preprocessing

    cfg = _config(config)
    task = get_task(task) if isinstance(task, str) else task
    if not isinstance(manifest, Manifest):
        manifest = Manifest.load(manifest)
    if not train_paths or not val_paths:
        raise LungcadError("linear_probe: both the training and the validation part need images")
    size = int(cfg["image_size"])
    if size % 32:
        raise LungcadError(f"linear_probe: image_size must be a multiple of 32, got {size}")
    torch.set_num_threads(int(cfg["torch_threads"]))
    info = model_info(ARCHITECTURE)
    preprocessing = Preprocessing(size, 1, info.mean, info.std)
    train_rows = manifest.rows_for(list(train_paths))
    task.check_labels(train_rows["label"])
    y = np.asarray(task.class_index(train_rows["label"]), dtype=int)
    if len(np.unique(y)) < len(task.classes):
        raise LungcadError(f"linear_probe: the training part lacks class(es) of {task.name}")

    network = base_network(len(task.classes), str(cfg["pooling"]))
    batch = int(cfg["batch_size"])
    pipeline = fit_regression(features_for(network, manifest, train_paths, preprocessing,
                                           batch, log), y, cfg)
    weight, bias = regression_as_linear(pipeline)
    with torch.no_grad():
        network.backbone._fc.weight.copy_(torch.from_numpy(weight))
        network.backbone._fc.bias.copy_(torch.from_numpy(bias))

    threshold, rule = None, "most probable class"
    if len(task.classes) == 2:
        val_rows = manifest.rows_for(list(val_paths))
        val_feats = torch.from_numpy(features_for(network, manifest, val_paths, preprocessing,
                                                  batch, log))
        with torch.inference_mode():
            val_probs = logits_to_probs(network.backbone._fc(val_feats)).numpy()[:, 1]
        threshold = float(choose_threshold(np.asarray(task.class_index(val_rows["label"])),
                                           val_probs, cfg["threshold"]))
        rule = str(cfg["threshold"])
    strength = float(np.ravel(pipeline[-1].C_)[0])
    spec = ModelSpec(name=cfg.get("name") or f"{task.name}-linear-probe-lite0",
                     architecture=ARCHITECTURE, task=task.name, classes=list(task.classes),
                     preprocessing=preprocessing, threshold=threshold, threshold_rule=rule,
                     architecture_args={"pretrained": False, "freeze_backbone": True,
                                        "pooling": str(cfg["pooling"])},
                     modality=str(cfg.get("modality") or "ct"),
                     metrics={"n_train": len(train_paths), "n_val": len(val_paths),
                              "regression_C": strength})
    threshold_line = (f"- Threshold {threshold:.4g} ({rule}) chosen on {len(val_paths)} "
                      "validation images\n" if threshold is not None else
                      "- Decision: the most probable class\n")
    card = (f"# {spec.name}\n\nResearch software, not a medical device. Not for diagnosis.\n\n"
            f"- Architecture: `{ARCHITECTURE}` ({size} px), ImageNet backbone frozen; its "
            f"classifier is a logistic regression on the {cfg['pooling']}-pooled features\n"
            f"- Trained on {len(train_paths)} images of `{manifest.root}` (C = {strength:g}, "
            "picked by inner cross-validation on the training images)\n" + threshold_line)
    return save_model_dir(Path(out_dir) / "model", network, spec, card)
