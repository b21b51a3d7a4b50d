"""Trainer ``linear_probe``: frozen ImageNet EfficientNet-Lite0 features + logistic regression.

A registered trainer (:mod:`lungcad.training.registry`): its model is an ordinary
``efficientnet-lite0`` whose backbone is the untouched ImageNet network and whose classifier
(``backbone._fc``) holds a scikit-learn logistic regression, so that ``lungcad predict``,
``explain``, ``export`` and ``serve`` use it like any other model.

Why: on 2 CPU cores a fine-tuned network costs minutes an epoch, while the frozen features of
one dataset take about a minute once and the regression seconds a fold. The features are the
network's own global-average-pooled last feature map (what its classifier reads), computed
from the same preprocessing that prediction applies. They are cached in memory and on disk
(the ``lite0-features`` namespace of the array cache, :mod:`lungcad.array_cache`, under
``$LUNGCAD_CACHE_DIR``; keyed by the file's identity, the preprocessing and the weights'
sha256), so the folds of an experiment and its final model compute them once.

Settings (config keys; every value fixed before any test fold is seen):

- ``image_size`` (224), ``threshold`` (binary tasks: ``youden``, chosen on the validation part
  by :func:`lungcad.training.fit.finish`);
- ``pooling``: ``avg`` (the network's own) or ``max`` (global max of the last feature map);
- ``Cs`` (inverse regularisation strengths tried) and ``inner_folds`` (5): the strength is
  picked by an inner stratified cross-validation on the training part alone (log loss);
- ``class_weight`` (``balanced`` or ``none``), ``seed`` (0), ``torch_threads`` (2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from lungcad.array_cache import ArrayCache, file_identity
from lungcad.errors import LungcadError
from lungcad.training.registry import TrainedFold, register_trainer

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

_FEATURE_MEMO: dict[str, np.ndarray] = {}  # by entry path: one memo per cache root


def _config(config: Mapping | None) -> dict:
    return {**DEFAULTS, **(dict(config) if config else {})}


def base_network(num_classes: int, pooling: str = "avg"):
    """The ImageNet EfficientNet-Lite0 (one-channel stem) with a fresh classifier."""
    from lungcad.models import create_model

    return create_model(ARCHITECTURE, num_classes, pretrained=True, freeze_backbone=True,
                        pooling=pooling)


def pooled_features(network, batch: np.ndarray) -> np.ndarray:
    """What the classifier of ``network`` reads: the pooled last feature map, (N, 1280)."""
    import torch

    backbone = network.backbone
    with torch.inference_mode():
        x = backbone.extract_features(torch.from_numpy(np.ascontiguousarray(batch)))
        return backbone._avg_pooling(x).flatten(start_dim=1).numpy()


FEATURES = ArrayCache("lite0-features", version=1)


def _feature_key(image: Path, preprocessing, pooling: str) -> str:
    from lungcad.models.efficientnet_lite import LITE0_WEIGHTS_SHA256

    return FEATURES.key(image=file_identity(image), pre=preprocessing.to_dict(),
                        weights=LITE0_WEIGHTS_SHA256, pooling=pooling)


def features_for(network, manifest, paths: Sequence[str], preprocessing,
                 batch_size: int = 32, log=print) -> np.ndarray:
    """Pooled features of the manifest images ``paths`` (cached in memory and on disk)."""
    from lungcad.io import load_image

    network.eval()
    pooling = type(network.backbone._avg_pooling).__name__
    files = {p: _feature_key(manifest.image_path(p), preprocessing, pooling)
             for p in dict.fromkeys(paths)}
    todo = []
    memo = {p: str(FEATURES.path(key)) for p, key in files.items()}  # per cache root
    for p, key in files.items():
        if memo[p] not in _FEATURE_MEMO:
            cached = FEATURES.get(key)
            if cached is None:
                todo.append(p)
            else:
                _FEATURE_MEMO[memo[p]] = cached
    if todo:
        log(f"linear_probe: features of {len(todo)} image(s) at {preprocessing.size} px")
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        batch = np.stack([preprocessing.apply(load_image(manifest.image_path(p)).array, p)
                          for p in chunk])
        for p, f in zip(chunk, pooled_features(network, batch)):
            _FEATURE_MEMO[memo[p]] = f
            FEATURES.put(files[p], f)
    return np.stack([_FEATURE_MEMO[memo[p]] for p in paths])


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


@register_trainer("linear_probe", defaults=DEFAULTS,
                  description="frozen ImageNet EfficientNet-Lite0 features + logistic regression "
                              "(strength by inner cross-validation on the training part)")
def fit(view, out_dir: str | Path, config: Mapping | None = None, *, resume: bool = True,
        log=print):
    """Fit on ``view``'s training part; its validation probabilities come back unrounded."""
    import torch

    from lungcad.model_dir import ModelSpec
    from lungcad.models import logits_to_probs, model_info
    from lungcad.preprocess import Preprocessing

    cfg = _config(config)
    manifest, task = view.manifest, view.task
    train_paths, val_paths = list(view.train), list(view.val)
    size = int(cfg["image_size"])
    if size % 32:
        raise LungcadError(f"linear_probe: image_size must be a multiple of 32, got {size}")
    torch.set_num_threads(int(cfg["torch_threads"]))
    info = model_info(ARCHITECTURE)
    preprocessing = Preprocessing(size, 1, info.mean, info.std)
    y = np.asarray(view.labels("train"), dtype=int)
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
    val_feats = torch.from_numpy(features_for(network, manifest, val_paths, preprocessing,
                                              batch, log))
    with torch.inference_mode():
        val_probs = logits_to_probs(network.backbone._fc(val_feats)).numpy()

    strength = float(np.ravel(pipeline[-1].C_)[0])
    spec = ModelSpec(name=cfg.get("name") or f"{task.name}-linear-probe-lite0",
                     architecture=ARCHITECTURE, task=task.name, classes=list(task.classes),
                     preprocessing=preprocessing,
                     architecture_args={"pretrained": False, "freeze_backbone": True,
                                        "pooling": str(cfg["pooling"])},
                     modality=str(cfg.get("modality") or "ct"),
                     metrics={"n_train": len(train_paths), "regression_C": strength})

    def card(final) -> str:
        decision = (f"- Threshold {final.threshold:.4g} ({final.threshold_rule})\n"
                    if final.threshold is not None else "- Decision: the most probable class\n")
        return (f"# {final.name}\n\nResearch software, not a medical device. Not for "
                f"diagnosis.\n\n- Architecture: `{ARCHITECTURE}` ({size} px), ImageNet backbone "
                f"frozen; its classifier is a logistic regression on the {cfg['pooling']}-pooled "
                f"features\n- Trained on {len(train_paths)} images of `{manifest.root}` "
                f"(C = {strength:g}, picked by inner cross-validation on the training images)\n"
                + decision)

    return TrainedFold(network, spec, card, val_probs)
