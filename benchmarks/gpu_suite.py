"""The GPU suite: full fine-tuning of the CT and JSRT configs, and the VGG16-LSTM, on one GPU.

Runs ``lungcad experiment`` (every fold of each config's committed split) for:

- ``ct-cnn``: the CT reference CNN at its faithful 256 px (``configs/ct-cnn.yaml``);
- ``iq2-lite0-ft``, ``iq3-lite0-ft``, ``chest4-lite0-ft``, ``jsrt-lite0-ft``: ImageNet
  EfficientNet-Lite0 fine-tuned end to end (``configs/iqothnccd-efficientnet-lite0.yaml``,
  ``iqothnccd-3class-efficientnet-lite0.yaml``, ``chest-ct-efficientnet-lite0.yaml``,
  ``jsrt-efficientnet-lite0.yaml``): the GPU variants of the CT and JSRT recipes;
- ``jsrt-vgg16-lstm``: the reference paper's VGG16-LSTM. ImageNet VGG16 weights cannot be
  installed offline, so it starts from ``--vgg16-weights FILE`` (a torchvision VGG16 state
  dict; its sha256 is recorded) where one is given, and from random initialisation otherwise;
  its row says which.

Experiments run ``--jobs`` at a time (one GPU holds them all; each gets ``--workers`` data
loader processes), each with its own folder under ``--out``, log and wall time; ``suite.json``
and ``suite.md`` in ``--out`` list every run with its pooled out-of-fold figures. A run that
fails is listed as failed and the others go on (exit status 1).

    benchmarks/gpu_suite.sh --out runs/gpu-suite                  # on a GPU machine
    benchmarks/gpu_suite.sh --out runs/gpu-suite --vgg16-weights vgg16.pth
    python benchmarks/gpu_suite.py --smoke --out /tmp/suite-smoke  # CPU, synthetic, 2 tiny folds

``--smoke`` checks the plumbing on a CPU in well under a minute: it writes small synthetic
datasets (a JSRT-like one and two CT-like ones) with 2-fold splits, and runs every experiment
of the suite on them at 32 px for one epoch (random initialisation, no ImageNet weights
loaded). Its figures mean nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE_SIZE = 32

# name, config, dataset kind (for --smoke), what the row is
SUITE = [
    ("ct-cnn", "configs/ct-cnn.yaml", "ct3", "CT reference CNN, faithful 256 px"),
    ("iq2-lite0-ft", "configs/iqothnccd-efficientnet-lite0.yaml", "ct3",
     "Lite0 fine-tuned end to end, IQ-OTH/NCCD normal vs abnormal"),
    ("iq3-lite0-ft", "configs/iqothnccd-3class-efficientnet-lite0.yaml", "ct3",
     "Lite0 fine-tuned end to end, IQ-OTH/NCCD 3-class"),
    ("chest4-lite0-ft", "configs/chest-ct-efficientnet-lite0.yaml", "chest4",
     "Lite0 fine-tuned end to end, chest CT 4-class"),
    ("jsrt-lite0-ft", "configs/jsrt-efficientnet-lite0.yaml", "jsrt",
     "Lite0 fine-tuned end to end, JSRT malignant vs rest"),
    ("jsrt-vgg16-lstm", "configs/jsrt-vgg16-lstm.yaml", "jsrt",
     "VGG16-LSTM (reference paper), JSRT malignant vs rest"),
]
KIND_LABELS = {"jsrt": ("malignant", "benign", "non_nodule"),
               "ct3": ("normal", "benign", "malignant"),
               "chest4": ("normal", "adenocarcinoma", "large_cell_carcinoma",
                          "squamous_cell_carcinoma")}
KIND_TASKS = {"jsrt": "jsrt-malignant", "ct3": "iqothnccd-3class", "chest4": "chest-ct-4class"}


def make_smoke_dataset(root: Path, kind: str, task_name: str, per_class: int = 6,
                       size: int = 40, seed: int = 0) -> tuple[Path, Path]:
    """A tiny labelled dataset of ``kind`` and a 2-fold split file for ``task_name`` (every
    class in each part)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows, by_class = ["path,label"], {}
    for c, label in enumerate(KIND_LABELS[kind]):
        for i in range(per_class):
            pixels = rng.normal(0.3 + 0.1 * c, 0.1, (size, size))
            rel = f"images/{label}_{i:02d}.png"
            Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(root / rel)
            rows.append(f"{rel},{label}")
            by_class.setdefault(label, []).append(rel)
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    folds = []
    for k in range(2):
        test, val, train = [], [], []
        for paths in by_class.values():
            test += paths[k::2]
            rest = [p for p in paths if p not in test]
            val.append(rest[0])
            train += rest[1:]
        folds.append({"fold": k, "train": train, "val": val, "test": test})
    from lungcad.data.tasks import get_task

    task = get_task(task_name)
    paths = [p for ps in by_class.values() for p in ps]
    labels = {p: task.map_label(p.split("/")[1].rsplit("_", 1)[0]) for p in paths}
    split = {"format": "lungcad-split/1", "dataset": root.name,
             "manifest_sha256": hashlib.sha256((root / "labels.csv").read_bytes()).hexdigest(),
             "task": task.name, "seed": seed, "n_folds": 2, "val_fraction": 0.2,
             "grouping": {"method": "one image per group (synthetic smoke data)"},
             "groups": {p: f"g{i}" for i, p in enumerate(paths)}, "labels": labels,
             "folds": folds}
    split_path = root.parent / f"{root.name}-{task.name}-split.json"
    split_path.write_text(json.dumps(split, indent=1))
    return root, split_path


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plan(args) -> list[dict]:
    """One entry per experiment: name, label, command."""
    lungcad = [sys.executable, "-m", "lungcad"]
    runs = []
    for name, config, kind, label in SUITE:
        if args.only and name not in args.only:
            continue
        cmd = lungcad + ["experiment", str(ROOT / config), "--out", str(Path(args.out) / name),
                         "--bootstrap", str(args.bootstrap), "--set", "progress_bar=false",
                         "--set", f"num_workers={args.workers}"]
        if name == "jsrt-vgg16-lstm":
            if args.vgg16_weights:
                cmd += ["--set", f"model_args.pretrained={Path(args.vgg16_weights).resolve()}",
                        "--set", f"model_args.weights_sha256={_sha256(args.vgg16_weights)}"]
                label += f", ImageNet weights from {Path(args.vgg16_weights).name}"
            else:
                cmd += ["--set", "model_args.pretrained=none"]
                label += ", random initialisation (no VGG16 weights file given)"
        if args.smoke:
            task = {"ct-cnn": "ct-normal-vs-abnormal",
                    "iq2-lite0-ft": "ct-normal-vs-abnormal"}.get(name, KIND_TASKS[kind])
            data, split = make_smoke_dataset(Path(args.out) / "data" / kind, kind, task)
            cmd += ["--data", str(data), "--split", str(split), "--set", f"task={task}",
                    "--set", f"image_size={SMOKE_SIZE}", "--set", "epochs=1",
                    "--set", "batch_size=4", "--set", "accelerator=cpu",
                    "--set", "torch_threads=1", "--set", "precision=32-true"]
            if "lite0" in name:
                cmd += ["--set", "model_args.pretrained=false"]
        for override in args.set or []:
            cmd += ["--set", override]
        runs.append({"name": name, "label": label, "config": config, "command": cmd})
    return runs


def run_one(entry: dict, out: Path, timeout_s: float | None) -> dict:
    log = out / f"{entry['name']}.log"
    start = time.time()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as f:
        try:
            rc = subprocess.run(entry["command"], stdout=f, stderr=subprocess.STDOUT, env=env,
                                cwd=ROOT, timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    result = {**{k: v for k, v in entry.items() if k != "command"},
              "command": " ".join(entry["command"]), "returncode": rc,
              "wall_s": round(time.time() - start, 1), "log": str(log)}
    summary = out / entry["name"] / "summary.json"
    if rc == 0 and summary.is_file():
        data = json.loads(summary.read_text())
        result["pooled"] = data.get("pooled")
        result["n_out_of_fold"] = data.get("n_out_of_fold")
        result["report"] = str(out / entry["name"] / "report" / "report.html")
    return result


def _cell(pooled: dict | None, name: str) -> str:
    record = (pooled or {}).get(name)
    if not isinstance(record, dict) or record.get("value") is None:
        return "—"
    text = f"{record['value']:.3f}"
    if record.get("ci_low") is not None:
        text += f" [{record['ci_low']:.3f}, {record['ci_high']:.3f}]"
    return text


def write_summary(out: Path, results: list[dict], device: str, wall_s: float) -> None:
    payload = {"device": device, "wall_s": round(wall_s, 1), "runs": results}
    (out / "suite.json").write_text(json.dumps(payload, indent=1) + "\n")
    lines = [f"# GPU suite ({device}, {wall_s:.0f} s in all)", "",
             "| run | what | status | wall s | n | ROC AUC (macro if multi-class) | accuracy |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        pooled = r.get("pooled")
        auc = _cell(pooled, "roc_auc") if pooled and "roc_auc" in pooled \
            else _cell(pooled, "macro_roc_auc")
        status = "ok" if r["returncode"] == 0 else f"failed ({r['returncode']})"
        lines.append(f"| {r['name']} | {r['label']} | {status} | {r['wall_s']} | "
                     f"{r.get('n_out_of_fold', '—')} | {auc} | {_cell(pooled, 'accuracy')} |")
    (out / "suite.md").write_text("\n".join(lines) + "\n")


def _device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return "CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for every run and suite.md")
    parser.add_argument("--smoke", action="store_true",
                        help="synthetic data, 2 tiny folds, 32 px, 1 epoch, CPU")
    parser.add_argument("--vgg16-weights", metavar="FILE",
                        help="ImageNet VGG16 state dict for the VGG16-LSTM (else random init)")
    parser.add_argument("--jobs", type=int, default=3, help="experiments at once (default 3)")
    parser.add_argument("--workers", type=int, default=4,
                        help="data loader processes per experiment (default 4)")
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--timeout-s", type=float, default=None,
                        help="stop any one experiment after this many seconds")
    parser.add_argument("--only", nargs="*", help="run only these names")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="extra config override for every run")
    args = parser.parse_args(argv)
    if args.smoke:
        args.jobs, args.workers, args.bootstrap = 3, 0, 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = "CPU (smoke)" if args.smoke else _device()
    if device == "CPU" and not args.smoke:
        print("gpu_suite: no CUDA GPU found; the full suite would take hours on a CPU "
              "(use --smoke to check the plumbing)", file=sys.stderr)
    runs = plan(args)
    start = time.time()
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = list(pool.map(lambda e: run_one(e, out, args.timeout_s), runs))
    wall = time.time() - start
    write_summary(out, results, device, wall)
    for r in results:
        print(f"{r['name']}: {'ok' if r['returncode'] == 0 else 'FAILED'} in {r['wall_s']} s "
              f"({r['log']})")
    print(f"suite: {out / 'suite.md'} ({wall:.0f} s)")
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
