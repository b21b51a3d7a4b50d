"""``lungcad predict MODEL INPUT... --engine ray --out DIR``: the same prediction on a Ray
cluster, or on a local Ray started for the run.

The inputs (files, folders, a file list, or a dataset's labels.csv: as a local run takes them,
:func:`lungcad.prediction.collect_input`) become a Ray Dataset of paths. A first pass of Ray
tasks hashes every file (sha256 of its bytes, :func:`lungcad.engine.ray_worker.hash_files`);
the inputs whose (path, hash) a shard in ``DIR/shards`` already holds are skipped; the rest go
through ``map_batches`` with :class:`~lungcad.engine.ray_worker.Predictor` on a fixed pool of
``workers`` actors (``ray.data.ActorPoolStrategy``), each loading the model once. Ray restarts
an actor whose process dies and runs its batch again; a batch is kept once (shards are named
by their content). Last, the shards become ``DIR/predictions.csv``, ``DIR/findings.csv``
(detectors) and ``DIR/errors.csv``, the same rows and columns as a local ``lungcad predict``.

Ray is imported only here, inside the functions: ``pip install 'lungcad[ray]'``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from lungcad.engine.shards import ERROR_COLUMNS, collect, done_inputs
from lungcad.errors import LungcadError, first_line

RUN_FILE = "run.json"
HASH_BLOCK = 64  # files hashed per Ray task
INSTALL = "pip install 'lungcad[ray]'"


@dataclass
class RayRun:
    """What :func:`predict_on_ray` did: the tables it wrote and the counts."""

    out_dir: Path
    predictions: pd.DataFrame
    findings: pd.DataFrame | None
    errors: pd.DataFrame
    n_inputs: int
    n_done_before: int   # skipped: a shard already held them (same path, same bytes)
    n_run: int           # given to the model in this run
    notes: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def require_ray():
    """The ``ray`` module with Ray Data, or a LungcadError that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise LungcadError(f"--engine ray needs Ray Data ({exc}): {INSTALL}") from None
    return ray


def _check_run_file(out_dir: Path, settings: dict) -> None:
    """A folder keeps one model's results: a re-run must use the same model and options."""
    path = out_dir / RUN_FILE
    if not path.is_file():
        return
    try:
        before = json.loads(path.read_text())["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        raise LungcadError(f"{path} is damaged; give a new --out folder") from None
    changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
    if changed:
        raise LungcadError(f"{out_dir} holds results made with other settings "
                           f"({', '.join(f'{k}: {before.get(k)!r}' for k in changed)}); give a "
                           "new --out folder, or the same options to finish that run")


def _start_ray(ray, address: str | None) -> bool:
    """Join the cluster at ``address``, or start a local Ray; True if this call started it
    (then the run shuts it down). A Ray already started in this process is used as it is."""
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise LungcadError(f"could not start {where}: {exc}") from None
    return True


def _hash_inputs(ray, inp) -> pd.DataFrame:
    """position, path, file, content_hash, reason of every input (Ray tasks)."""
    rows = pd.DataFrame({"position": range(len(inp)), "path": list(inp.keys),
                         "file": [str(f) for f in inp.files]})
    from lungcad.engine.ray_worker import hash_files

    blocks = [rows.iloc[i:i + HASH_BLOCK] for i in range(0, len(rows), HASH_BLOCK)]
    hashed = (ray.data.from_pandas(blocks)
              .map_batches(hash_files, batch_format="pandas", batch_size=None, num_cpus=0.5)
              .to_pandas())
    return hashed.sort_values("position").reset_index(drop=True)


def _predict(ray, todo: pd.DataFrame, source, out_dir: Path, *, model: str, runtime: str,
             workers: int, cpus: float, gpus: float, batch_size: int, options: dict,
             predictor) -> int:
    """Run the actor pool over ``todo`` (position, content_hash); the number of inputs done."""
    todo = todo[["position", "content_hash"]].reset_index(drop=True)
    blocks = [todo.iloc[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    dataset = ray.data.from_pandas(blocks).map_batches(
        predictor, batch_format="pandas", batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus,
        num_gpus=gpus or None,
        fn_constructor_kwargs={"model": model, "runtime": runtime, "source": [source],
                               "out_dir": str(out_dir), "batch_size": batch_size,
                               "threads": max(1, int(cpus)), **options})
    done = 0
    try:
        for batch in dataset.iter_batches(batch_format="pandas", batch_size=None):
            done += len(batch)
    except ray.exceptions.RayError as exc:
        first = first_line(exc)
        raise LungcadError(f"the Ray job stopped ({first}); the finished batches are kept in "
                           f"{out_dir / 'shards'}: run the same command again to finish") from None
    return done


def predict_on_ray(model: str | Path, inputs: Sequence[str | Path], out_dir: str | Path, *,
                   workers: int = 2, cpus_per_worker: float = 1.0,
                   gpus_per_worker: float = 0.0, batch_size: int = 16,
                   address: str | None = None, runtime: str = "torch",
                   split_path: Path | None = None, part: str = "test", fold: int | None = None,
                   frame: int | None = None, age=None, sex=None, progress: bool = True,
                   predictor=None) -> RayRun:
    """Predict ``inputs`` with ``model`` on Ray into the folder ``out_dir`` (see the module
    text); a re-run into the same folder does only what is not done yet.

    ``workers``: actors, each with ``cpus_per_worker`` CPUs (its torch threads) and
    ``gpus_per_worker`` GPUs. ``address``: a running cluster (``ray start --head``, KubeRay;
    ``auto``, ``HOST:6379`` or ``ray://HOST:10001``); without it a Ray already started in
    this process is used, else a local one is started and shut down after. ``predictor``:
    the actor class (default :class:`~lungcad.engine.ray_worker.Predictor`)."""
    from lungcad import provenance
    from lungcad.inference import load_model
    from lungcad.prediction import check_output, collect_input, model_label, model_task

    if str(model) == "auto":
        raise LungcadError("--engine ray takes one model, not auto: run each bundled model")
    for name, value, least in (("--workers", workers, 1), ("--batch-size", batch_size, 1)):
        if int(value) != value or value < least:
            raise LungcadError(f"{name} must be a whole number of at least {least}, not {value}")
    if cpus_per_worker <= 0 or gpus_per_worker < 0:
        raise LungcadError("--cpus-per-worker must be above 0 and --gpus-per-worker 0 or more")
    ray = require_ray()
    out_dir = Path(out_dir)
    check_output(out_dir, "--out", folder=True)
    loaded = load_model(model, runtime)
    if getattr(loaded, "kind", None) == "segmenter":
        raise LungcadError(f"{model} is a lung segmenter: use lungcad segment")
    label = model_label(loaded)
    inp = collect_input(inputs, model_task(loaded), split_path=split_path, part=part, fold=fold)
    del loaded
    if len(inp) == 0:
        raise LungcadError("no images to predict in " + ", ".join(map(str, inputs)))
    settings = {"model": label, "runtime": runtime, "frame": frame, "age": age, "sex": sex,
                "split": None if split_path is None else str(split_path),
                "part": part if split_path is not None else None, "fold": inp.fold}
    _check_run_file(out_dir, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance.write_json(out_dir / RUN_FILE, {"format": "lungcad-ray-run/1",
                                               "settings": settings, "started": provenance.now()})
    from lungcad.engine.ray_worker import Predictor

    started = _start_ray(ray, address)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = progress
        hashed = _hash_inputs(ray, inp)
        done = done_inputs(out_dir)
        readable = hashed["content_hash"] != ""
        pending = [bool(ok) and (key, h) not in done
                   for ok, key, h in zip(readable, hashed["path"], hashed["content_hash"])]
        todo = hashed[pending]
        n_run = 0
        if len(todo):
            n_run = _predict(ray, todo, ray.put(inp), out_dir, model=str(model),
                             runtime=runtime, workers=workers, cpus=cpus_per_worker,
                             gpus=gpus_per_worker, batch_size=batch_size,
                             options={"frame": frame, "age": age, "sex": sex},
                             predictor=predictor or Predictor)
    finally:
        if started:
            ray.shutdown()
    unread = hashed.loc[~readable, ["path", "content_hash", "reason"]]
    collected = collect(out_dir, list(zip(hashed["path"], hashed["content_hash"])), unread)
    write_tables(out_dir, collected)
    return RayRun(out_dir, collected.predictions, collected.findings, collected.errors,
                  n_inputs=len(inp), n_done_before=int(readable.sum()) - len(todo),
                  n_run=n_run, notes=list(inp.notes), skipped=list(inp.skipped))


def write_tables(out_dir: Path, collected) -> None:
    """``predictions.csv``, ``findings.csv`` (a detector's) and ``errors.csv`` in ``out_dir``,
    written as a local ``lungcad predict`` writes them."""
    from lungcad.atomic import atomic_write
    from lungcad.csvsafe import neutralise_formulas
    from lungcad.detection.batch import FINDINGS_FILE, write_findings
    from lungcad.prediction import write_predictions

    write_predictions(collected.predictions, out_dir / "predictions.csv")
    if collected.findings is not None:
        write_findings(collected.findings, out_dir / FINDINGS_FILE)
    errors = neutralise_formulas(collected.errors[ERROR_COLUMNS].copy())
    atomic_write(out_dir / "errors.csv", errors.to_csv(index=False, lineterminator="\n").encode())
