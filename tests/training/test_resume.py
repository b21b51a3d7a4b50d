"""A run killed with SIGKILL mid-epoch resumes from its last checkpoint when the same command is
run again: one continuous metrics.csv, and every checkpoint loads with weights_only=True."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from training_data import make_dataset

EPOCHS = 4


def train_command(cfg: Path, run: Path) -> list[str]:
    return [sys.executable, "-m", "lungcad", "train", str(cfg), "--out", str(run),
            "--epochs", str(EPOCHS)]


def rows(run: Path) -> int:
    path = run / "metrics.csv"
    return len(pd.read_csv(path)) if path.is_file() else 0


def test_sigkill_mid_epoch_then_resume(tmp_path):
    dataset, split = make_dataset(tmp_path / "synth", n=48, size=64)
    cfg = tmp_path / "run.yaml"
    # 64 px, batch 2: an epoch of 18 steps lasts long enough to be killed in the middle
    cfg.write_text(f"model: paper-cnn-lstm\ndataset: {dataset}\ntask: jsrt-malignant\n"
                   f"split: {split}\nimage_size: 64\nbatch_size: 2\nlr: 1e-3\nmonitor: val_loss\n"
                   "torch_threads: 1\nprogress_bar: false\n")
    run = tmp_path / "run"
    env = {**os.environ, "LUNGCAD_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "first.log", "w")
    process = subprocess.Popen(train_command(cfg, run), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while rows(run) < 1 or not (run / "checkpoints" / "last.ckpt").is_file():
            assert process.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the first epoch never finished"
            time.sleep(0.05)
        epoch_seconds = float(pd.read_csv(run / "metrics.csv")["epoch_time_s"].iloc[0])
        time.sleep(min(0.4 * epoch_seconds, 5.0))  # into the middle of the second epoch
        killed_at_rows = rows(run)
        assert process.poll() is None, "the run finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    assert process.returncode == -signal.SIGKILL
    assert 1 <= killed_at_rows < EPOCHS
    assert not (run / "model").exists()
    checkpoint_epoch = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"]
    assert checkpoint_epoch == killed_at_rows - 1  # the kill came mid-epoch, after a checkpoint

    resumed = subprocess.run(train_command(cfg, run), env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restoring states from the checkpoint" in resumed.stderr + resumed.stdout
    table = pd.read_csv(run / "metrics.csv")
    assert table["epoch"].tolist() == list(range(EPOCHS))  # each epoch once, in order
    assert table["val_loss"].notna().all()
    for path in (run / "checkpoints").iterdir():
        assert path.suffix == ".ckpt", f"left-over file {path.name}"
        assert "state_dict" in torch.load(path, weights_only=True)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == EPOCHS - 1
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "finished" and len(meta["sessions"]) == 2
    assert meta["sessions"][1]["resumed_from"].endswith("last.ckpt")
    assert (run / "model" / "weights.pt").is_file()
