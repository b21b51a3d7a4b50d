"""Two-process DDP training on the CPU (gloo), as `--devices 2 --strategy ddp` runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
from training_data import make_dataset

from lungcad import load_model


def test_two_process_ddp_run_on_cpu(tmp_path):
    dataset, split = make_dataset(tmp_path / "synth", n=24, size=32)
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(f"model: paper-cnn-lstm\ndataset: {dataset}\ntask: jsrt-malignant\n"
                   f"split: {split}\nimage_size: 32\nbatch_size: 4\nlr: 1e-3\naccelerator: cpu\n"
                   "torch_threads: 1\nprogress_bar: false\n")
    run = tmp_path / "run"
    env = {**os.environ, "LUNGCAD_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "lungcad", "train", str(cfg), "--out", str(run),
                           "--epochs", "2", "--devices", "2", "--num-nodes", "1",
                           "--strategy", "ddp"],
                          env=env, capture_output=True, text=True, timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "distributed_backend=gloo" in output and "All distributed processes registered" in output
    meta = json.loads((run / "meta.json").read_text())
    assert meta["device"]["devices"] == 2 and meta["device"]["strategy"] == "ddp"
    assert meta["device"]["num_nodes"] == 1
    assert meta["status"] == "finished"
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [0, 1]
    model = load_model(run)
    assert len(pd.read_csv(run / "val_predictions.csv")) == meta["split"]["n_val"]
    assert model.predict(dataset / "images" / "case000.png").label in model.classes
