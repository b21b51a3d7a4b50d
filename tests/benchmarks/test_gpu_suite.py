"""The GPU suite's CPU smoke test: every experiment of benchmarks/gpu_suite.py, on synthetic
data with two tiny folds (32 px, one epoch, random initialisation), end to end through
``lungcad experiment``. It needs no GPU and no shared data; its figures mean nothing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_suite.py"


def _suite_module():
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_suite_smoke_runs_every_experiment_on_two_tiny_folds(tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGCAD_CACHE_DIR", str(tmp_path / "cache"))
    suite = _suite_module()
    out = tmp_path / "suite"
    assert suite.main(["--smoke", "--out", str(out)]) == 0
    result = json.loads((out / "suite.json").read_text())
    names = [r["name"] for r in result["runs"]]
    assert names == [name for name, *_ in suite.SUITE]
    for run in result["runs"]:
        assert run["returncode"] == 0, run["log"]
        assert run["n_out_of_fold"] > 0
        assert Path(run["report"]).is_file()
        assert "--set epochs=1" in run["command"]
    vgg = next(r for r in result["runs"] if r["name"] == "jsrt-vgg16-lstm")
    assert "random initialisation" in vgg["label"]  # no weights file given: labelled so
    assert "| jsrt-vgg16-lstm |" in (out / "suite.md").read_text()


def test_vgg16_weights_file_is_passed_with_its_sha256(tmp_path):
    suite = _suite_module()
    weights = tmp_path / "vgg16.pth"
    weights.write_bytes(b"not really weights")
    args = type("Args", (), {"smoke": False, "only": ["jsrt-vgg16-lstm"], "out": str(tmp_path),
                             "bootstrap": 0, "workers": 2, "vgg16_weights": str(weights),
                             "set": None})()
    [entry] = suite.plan(args)
    command = " ".join(entry["command"])
    assert f"model_args.pretrained={weights.resolve()}" in command
    assert "model_args.weights_sha256=" in command
    assert "ImageNet weights from vgg16.pth" in entry["label"]
