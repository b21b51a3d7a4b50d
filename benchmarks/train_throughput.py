"""Training throughput of ``paper-cnn-lstm`` (256 px, batch 12): ``lungcad train`` (Lightning)
against a bare PyTorch loop of the same model and a Keras 3 implementation of the same
architecture, side by side in one run on the same images.

All three train on the same JSRT images (``../shared/data/jsrt``, read only; the first
``--train-images`` of a fixed shuffle, validation on the next ``--val-images``), Adam at 1e-4,
binary cross-entropy on one logit, no augmentation, ``--threads`` torch threads, and each epoch
ends with a pass over the validation images. Figures are training images per second of epoch
wall time (validation included), from the steady-state epochs: the first epoch (warm-up,
preprocessing cache fill, Keras tracing) is left out.

- Lightning: ``python -m lungcad train CONFIG --out RUN`` as a user runs it (checkpoints,
  metrics.csv, curves.png, callbacks); steady epoch times are the periods between the moments
  its metrics.csv gains a row (watched from outside every 10 ms), so all per-epoch work counts.
- bare PyTorch: the same network (``create_model``), the same ``ImageDataset`` /
  ``DataLoader`` (the lungcad preprocessing cache), a plain loop; no logging, no checkpoints.
- Keras 3 on its torch backend (``KERAS_BACKEND=torch``; ``pip install lungcad[bench]``): the
  same layers (Conv2D, SeparableConv2D + BatchNorm blocks, additive attention over the 64
  positions, LSTM(128), Dense), ``model.fit`` on the same preprocessed arrays held in memory.

Each runs in its own process, in the order bare, Lightning, Keras, then (``--rounds 2``) the
reverse, and the rounds are averaged, so a shared machine's load falls on all alike.
Goals: Lightning overhead <= 10% of the bare loop's throughput; Lightning faster than Keras.

    .venv/bin/python benchmarks/train_throughput.py [--threads 1] [--epochs 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, provisional_note  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LUNGCAD_SHARED_DATA", ROOT.parent / "shared" / "data"))
ARCHITECTURE = "paper-cnn-lstm"
SIZE, BATCH, LR, TASK = 256, 12, 1e-4, "jsrt-malignant"
GOAL_OVERHEAD = 0.10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (the first is "
                        "left out of the figures; default 4)")
    parser.add_argument("--train-images", type=int, default=72)
    parser.add_argument("--val-images", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2, help="1: bare, Lightning, Keras once; "
                        "2 (default): then again in reverse order")
    parser.add_argument("--skip-keras", action="store_true")
    parser.add_argument("--worker", choices=("bare", "keras"), help=argparse.SUPPRESS)
    parser.add_argument("--setup", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


# ---------------------------------------------------------------------------------------------
# setup shared by the three runs

def write_setup(folder: Path, args: argparse.Namespace) -> Path:
    """A split file (one fold: the chosen train / val images) and a lungcad train config."""
    import numpy as np
    import yaml

    from lungcad.data.manifest import Manifest

    dataset = SHARED / "jsrt"
    manifest = Manifest.load(dataset)
    paths = manifest.table["path"].tolist()
    order = np.random.default_rng(0).permutation(len(paths))
    chosen = [paths[i] for i in order[:args.train_images + args.val_images]]
    train, val = chosen[:args.train_images], chosen[args.train_images:]
    split = {"format": "lungcad-split/1", "dataset": "jsrt", "manifest_sha256": manifest.sha256(),
             "task": TASK, "seed": 0, "n_folds": 1, "val_fraction": 0.2,
             "grouping": {"method": "benchmark: one image per patient (JSRT)"},
             "groups": {p: i for i, p in enumerate(paths)},
             "folds": [{"fold": 0, "train": train, "val": val,
                        "test": [p for p in paths if p not in chosen]}]}
    (folder / "split.json").write_text(json.dumps(split))
    config = {"name": "bench", "model": ARCHITECTURE, "model_args": {}, "dataset": str(dataset),
              "task": TASK, "split": str(folder / "split.json"), "fold": 0, "image_size": SIZE,
              "batch_size": BATCH, "optimizer": "adam", "lr": LR, "weight_decay": 0.0,
              "epochs": args.epochs, "monitor": "val_acc", "augment": {"enabled": False},
              "class_balance": "none", "threshold": "0.5", "seed": 42, "num_workers": 0,
              "precision": "32-true", "accelerator": "cpu", "torch_threads": args.threads,
              "progress_bar": False}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    setup = {"dataset": str(dataset), "split": str(folder / "split.json"),
             "config": str(folder / "config.yaml"), "threads": args.threads,
             "epochs": args.epochs}
    (folder / "setup.json").write_text(json.dumps(setup))
    return folder / "setup.json"


def fold_datasets(setup: dict):
    from lungcad.models import model_info
    from lungcad.preprocess import Preprocessing
    from lungcad.data.splits import load_fold
    from lungcad.training.data import ImageDataset

    info = model_info(ARCHITECTURE)
    fold = load_fold(setup["dataset"], setup["split"], TASK, 0)
    prep = Preprocessing(SIZE, info.in_channels, info.mean, info.std)
    return (ImageDataset(fold.manifest, list(fold.train), fold.labels("train"), prep),
            ImageDataset(fold.manifest, list(fold.val), fold.labels("val"), prep))


# ---------------------------------------------------------------------------------------------
# the three runs

def bare_worker(setup: dict) -> list[float]:
    import torch
    from torch.nn import functional as F
    from torch.utils.data import DataLoader

    from lungcad.models import create_model

    torch.set_num_threads(setup["threads"])
    torch.manual_seed(42)
    train_set, val_set = fold_datasets(setup)
    train = DataLoader(train_set, batch_size=BATCH, shuffle=True)
    val = DataLoader(val_set, batch_size=BATCH)
    network = create_model(ARCHITECTURE, num_classes=2)
    optimiser = torch.optim.Adam(network.parameters(), lr=LR)
    times = []
    for _ in range(setup["epochs"]):
        started = time.perf_counter()
        network.train()
        for x, y in train:
            loss = F.binary_cross_entropy_with_logits(network(x)[:, 0], y.float())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        network.eval()
        with torch.no_grad():
            for x, _ in val:
                network(x)
        times.append(time.perf_counter() - started)
    return times


def keras_model(steps_side: int = SIZE // 32):
    """The paper's network in Keras 3 layers (the PyTorch one: lungcad.models.paper_cnn_lstm)."""
    import keras
    from keras import layers

    steps = steps_side * steps_side
    image = keras.Input((SIZE, SIZE, 1))
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(image)
    x = layers.MaxPooling2D(2)(x)
    for filters, dropout in ((32, 0), (64, 0), (128, 0.2), (256, 0.2)):
        x = layers.SeparableConv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(2)(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    sequence = layers.Reshape((steps, 256))(x)            # one step per position, raster order
    scores = layers.Dense(1, use_bias=False)(layers.Dense(128, activation="tanh")(sequence))
    weights = layers.Softmax(axis=1)(scores)             # (N, steps, 1)
    weighted = layers.Rescaling(float(steps))(layers.Multiply()([sequence, weights]))
    x = layers.Dropout(0.2)(layers.LSTM(128)(weighted))
    return keras.Model(image, layers.Dense(1)(x))


def keras_worker(setup: dict) -> list[float]:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import numpy as np
    import torch

    torch.set_num_threads(setup["threads"])
    import keras

    if keras.backend.backend() != "torch":
        raise SystemExit(f"expected the torch backend, got {keras.backend.backend()}")
    keras.utils.set_random_seed(42)
    train_set, val_set = fold_datasets(setup)

    def arrays(dataset):  # NCHW tensors -> NHWC arrays, as Keras wants
        items = [dataset[i] for i in range(len(dataset))]
        x = np.stack([t.numpy() for t, _ in items]).transpose(0, 2, 3, 1)
        return x, np.array([y for _, y in items], np.float32)

    (x, y), (xv, yv) = arrays(train_set), arrays(val_set)
    model = keras_model()
    model.compile(optimizer=keras.optimizers.Adam(LR),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # after the validation pass
            self.times.append(time.perf_counter() - self.started)

    timer = EpochTimer()
    model.fit(x, y, batch_size=BATCH, epochs=setup["epochs"], validation_data=(xv, yv),
              callbacks=[timer], verbose=0, shuffle=True)
    return timer.times


def run_worker(kind: str, setup_path: Path, env: dict) -> tuple[list[float], float]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--worker", kind, "--setup", str(setup_path)],
                         capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1]), wall


def run_lightning(setup_path: Path, run_dir: Path, env: dict) -> tuple[list[float], float]:
    """Epoch periods of ``lungcad train``, seen from outside: the moments its metrics.csv gains
    a row (written at each epoch end), so whatever Lightning and lungcad's callbacks do between
    epochs (checkpoints, curves.png) counts. The first entry is metrics.csv's own
    ``epoch_time_s`` of epoch 1 (it is left out of the figures anyway)."""
    import pandas as pd

    setup = json.loads(setup_path.read_text())
    metrics = run_dir / "metrics.csv"
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "lungcad", "train", setup["config"],
                                "--out", str(run_dir), "--restart"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, env=env)
    row_seen: dict[int, float] = {}
    last_stamp = None
    while process.poll() is None:
        time.sleep(0.01)
        try:
            stamp = metrics.stat().st_mtime_ns, metrics.stat().st_size
        except OSError:
            continue
        if stamp != last_stamp:
            last_stamp = stamp
            now = time.perf_counter()
            try:
                rows = len(pd.read_csv(metrics))
            except (OSError, ValueError):  # caught mid-replace: look again
                last_stamp = None
                continue
            row_seen.setdefault(rows, now)
    stderr = process.stderr.read() if process.stderr else ""
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"lungcad train failed:\n{stderr[-3000:]}")
    table = pd.read_csv(metrics)
    seen = sorted(k for k in row_seen if k > 0)  # 0 rows: the header written at the start
    if seen != list(range(1, setup["epochs"] + 1)):
        raise SystemExit(f"missed an epoch end while watching {metrics}: saw rows {seen}")
    periods = [row_seen[k + 1] - row_seen[k] for k in range(1, setup["epochs"])]
    inside = table["epoch_time_s"].astype(float).tolist()
    print(f"  (lightning: metrics.csv epoch_time_s {', '.join(f'{t:.2f}' for t in inside)}; "
          "periods between epoch ends follow)", flush=True)
    return [inside[0], *periods], wall


def steady_ips(times: list[float], images: int) -> float:
    steady = times[1:] if len(times) > 1 else times
    return images / statistics.mean(steady)


def main() -> int:
    args = parse_args()
    if args.worker:
        setup = json.loads(args.setup.read_text())
        times = bare_worker(setup) if args.worker == "bare" else keras_worker(setup)
        print(json.dumps(times))
        return 0
    if not (SHARED / "jsrt" / "labels.csv").is_file():
        print(f"the JSRT data is not at {SHARED / 'jsrt'}; set LUNGCAD_SHARED_DATA")
        return 1
    if args.epochs < 2:
        raise SystemExit("--epochs must be at least 2 (the first is left out)")
    print(describe(("lungcad", "torch", "lightning", "keras", "numpy")))
    print(f"model {ARCHITECTURE}, {SIZE} px, batch {BATCH}, {args.train_images} training + "
          f"{args.val_images} validation JSRT images, {args.epochs} epochs per run (first left "
          f"out), {args.threads} torch thread(s), {args.rounds} round(s)")
    kinds = ["bare", "lightning"] + ([] if args.skip_keras else ["keras"])
    order = kinds + (kinds[::-1] if args.rounds > 1 else [])
    results: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="lungcad-train-bench-") as tmp:
        folder = Path(tmp)
        env = {**os.environ, "LUNGCAD_CACHE_DIR": str(folder / "cache"), "KERAS_BACKEND": "torch",
               "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        setup_path = write_setup(folder, args)
        for i, kind in enumerate(order):
            if kind == "lightning":
                times, wall = run_lightning(setup_path, folder / f"run{i}", env)
            else:
                times, wall = run_worker(kind, setup_path, env)
            ips = steady_ips(times, args.train_images)
            results[kind].append(ips)
            print(f"  {kind:9s} epochs (s): {', '.join(f'{t:.2f}' for t in times)} -> "
                  f"{ips:.2f} img/s steady; process wall {wall:.1f} s", flush=True)
    mean = {k: statistics.mean(v) for k, v in results.items()}
    overhead = 1 - mean["lightning"] / mean["bare"]
    print()
    print("| implementation | train img/s (steady epochs, mean of rounds) | relative to bare |")
    print("|---|---|---|")
    for kind in kinds:
        print(f"| {kind} | {mean[kind]:.2f} | {mean[kind] / mean['bare']:.2f} |")
    print()
    print(f"Lightning overhead: {overhead * 100:.1f}% of the bare loop's throughput "
          f"(goal <= {GOAL_OVERHEAD * 100:.0f}%): {'met' if overhead <= GOAL_OVERHEAD else 'NOT met'}")
    if "keras" in mean:
        ratio = mean["lightning"] / mean["keras"]
        print(f"Lightning / Keras: {ratio:.2f}x (goal > 1): {'met' if ratio > 1 else 'NOT met'}")
    print(provisional_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
