"""Trainer ``lightning``: any registered architecture trained end to end on Lightning.

Run folder layout (``val_predictions.csv``, ``model/`` and ``threshold.json`` are written by
:func:`lungcad.training.fit.finish`, as for every trainer)::

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
      threshold.json         that threshold and how it was decided
"""

from __future__ import annotations

import copy
import os
import platform
import socket
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from lungcad import provenance
from lungcad.errors import LungcadError
from lungcad.training.config_io import config_differences, dump_config
from lungcad.training.lightning_config import MONITORS, check_config, lightning_config
from lungcad.training.registry import TrainedFold, register_trainer

RUN_FILES = ("metrics.csv", "curves.png", "val_predictions.csv", "threshold.json", "meta.json")


def _device_info(accelerator: str, devices: int, strategy: str, precision: str,
                 num_nodes: int = 1) -> dict:
    import torch

    info = {"accelerator": accelerator, "devices": devices, "num_nodes": num_nodes,
            "strategy": strategy,
            "precision": precision, "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "host": socket.gethostname(),
            "platform": platform.platform()}
    if accelerator == "gpu":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


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


def network_state(checkpoint: dict) -> dict:
    prefix = "network."
    return {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}


def predict_dataset(network, dataset, batch_size: int, device: str) -> np.ndarray:
    """Probabilities (N, C) for every item of an (unaugmented) ImageDataset, in order."""
    import torch
    from torch.utils.data import DataLoader

    from lungcad.models import logits_to_probs

    network = network.to(device).eval()
    out = []
    with torch.inference_mode():
        for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            out.append(logits_to_probs(network(x.to(device)).float()).cpu().numpy())
    network.to("cpu")
    return np.concatenate(out)


def _model_card(spec, config: dict, view) -> str:
    metrics = spec.metrics
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
        f"- Trained on: `{view.manifest.root}` (labels.csv sha256 {view.manifest.sha256()[:12]}...), "
        f"split `{view.split_path.name}` fold {view.fold} of {view.n_folds} "
        f"({len(view.train)} training, {len(view.val)} validation images; "
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


@register_trainer("lightning", check_config=lightning_config, selects_on_validation=True,
                  description="any registered architecture trained end to end on Lightning "
                              "(checkpoint picked by the config's monitor on validation)")
def fit(view, out_dir: Path, config: dict, *, resume: bool = True,
        log: Callable[[str], None] = print):
    """Train the config's architecture on ``view``'s training part into the run folder
    ``out_dir``; return a :class:`~lungcad.training.fit.TrainedFold` (None on a DDP worker).

    With ``resume``, an interrupted run in ``out_dir`` continues from
    ``checkpoints/last.ckpt``; without it, the folder's previous run files are replaced.
    """
    import json

    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.utilities import rank_zero_only

    from lungcad.model_dir import ModelSpec
    from lungcad.models import create_model, loading_args, model_info
    from lungcad.preprocess import Preprocessing
    from lungcad.training.callbacks import MetricsCSV, read_metrics
    from lungcad.training.checkpoint_io import AtomicCheckpointIO, load_checkpoint_file
    from lungcad.training.data import FoldDataModule

    started = time.monotonic()
    config = check_config(copy.deepcopy(config))
    config["fold"] = view.fold
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
    task = view.task
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
        "trainer": "lightning", "model": info.name, "task": task.name,
        "classes": list(task.classes),
        "dataset": {"path": str(view.manifest.root), "manifest_sha256": view.manifest.sha256(),
                    "n_images": len(view.manifest)},
        "split": {"path": str(view.split_path), "sha256": view.split_sha256,
                  "fold": view.fold, "n_folds": view.n_folds,
                  "n_train": len(view.train), "n_val": len(view.val),
                  "train_class_counts": view.class_counts("train"),
                  "val_class_counts": view.class_counts("val")},
        "seed": config["seed"], "deterministic": config["deterministic"],
        "preprocessing": preprocessing.to_dict(),
        "device": _device_info(accelerator, config["devices"], strategy, precision,
                               config["num_nodes"]),
        "versions": provenance.versions(), "git_commit": provenance.git_commit(),
        "started": old_meta.get("started", provenance.now()),
        "sessions": old_meta.get("sessions", []) + [
            {"started": provenance.now(),
             "resumed_from": str(resume_from) if resume_from else None}],
    }
    if is_zero:
        provenance.write_json(meta_path, meta)

    L.seed_everything(config["seed"], workers=True, verbose=False)
    network = create_model(info.name, len(task.classes), in_channels=info.in_channels,
                           **config["model_args"])
    module = _build_module(network, task, view, config)
    datamodule = FoldDataModule(view, preprocessing, config["batch_size"], config["augment"],
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
        num_nodes=config["num_nodes"], strategy=strategy, precision=precision, deterministic=deterministic,
        callbacks=callbacks, plugins=[AtomicCheckpointIO()], logger=False,
        default_root_dir=out_dir, enable_progress_bar=config["progress_bar"],
        enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    if trainer.interrupted:
        raise KeyboardInterrupt  # the last checkpoint stays: re-running the command resumes
    if not trainer.is_global_zero:
        return None

    best_path = Path(checkpoints.best_model_path) if checkpoints.best_model_path else None
    if best_path is None or not best_path.is_file():
        best_path = out_dir / "checkpoints" / "last.ckpt"
    best = load_checkpoint_file(best_path)
    network.load_state_dict(network_state(best))
    best_epoch = int(best.get("epoch", -1))

    device = "cuda" if accelerator == "gpu" else "cpu"
    probs = predict_dataset(network, datamodule.val_set, config["batch_size"], device)
    spec = ModelSpec(name=config["name"], architecture=info.name, task=task.name,
                     classes=list(task.classes), preprocessing=preprocessing,
                     architecture_args=loading_args(info.name, config["model_args"]),
                     modality=config["modality"] or ("radiograph" if task.name.startswith("jsrt") else "ct"),
                     metrics={"best_epoch": best_epoch, "monitor": monitor, "fold": view.fold,
                              "split_sha256": view.split_sha256})

    table = read_metrics(out_dir / "metrics.csv")
    meta.update({
        "status": "finished", "finished": provenance.now(),
        "epochs_completed": int(len(table)),
        "stopped_early": bool(len(table) < config["epochs"]),
        "wall_time_per_epoch_s": [float(t) for t in table["epoch_time_s"]],
        "mean_epoch_time_s": float(table["epoch_time_s"].mean()) if len(table) else None,
        "session_wall_time_s": round(time.monotonic() - started, 1),
        "best_checkpoint": {"path": str(best_path), "epoch": best_epoch, "monitor": monitor,
                            "score": float(checkpoints.best_model_score)
                            if checkpoints.best_model_score is not None else None},
    })
    provenance.write_json(meta_path, meta)
    return TrainedFold(network.cpu().eval(), spec,
                       lambda final: _model_card(final, config, view), probs)


def _build_module(network, task, view, config: dict):
    from lungcad.training.module import LungClassifier

    return LungClassifier(network, len(task.classes), view.labels("train"),
                          class_balance=config["class_balance"], optimizer=config["optimizer"],
                          lr=config["lr"], weight_decay=config["weight_decay"])
