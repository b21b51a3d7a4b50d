"""lungcad predict --engine ray on a small local Ray (2 CPUs, 150 MB object store, no
dashboard; started once for this module): the same tables as a local run, an unreadable image
in errors.csv, a re-run that calls no model, a re-run that finishes what is missing, and a
killed actor that loses nothing (every input exactly once)."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'lungcad[ray]'")
pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'lungcad[ray]'")
pytest.importorskip("pyarrow", reason="pyarrow is not installed: pip install 'lungcad[ray]'")

from detector_testing import chest_png  # noqa: E402

from lungcad.cli import main  # noqa: E402
from lungcad.engine.ray_predict import predict_on_ray  # noqa: E402
from lungcad.engine.ray_worker import Predictor  # noqa: E402
from lungcad.hashing import file_sha256  # noqa: E402

MODEL = "jsrt-nodules"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, object_store_memory=150 * 2**20, include_dashboard=False,
             log_to_driver=False)
    # the test predictors below travel to the actors by value (this module is not importable
    # by Ray's workers)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-images")
    for i in range(4):
        chest_png(root / f"chest{i}.png", 160, 160, seed=i)
    (root / "broken.png").write_bytes(b"not an image at all")
    return root


@pytest.fixture(scope="module")
def local_run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "predictions.csv"
    assert main(["predict", MODEL, str(folder), "--out", str(out)]) == 1  # broken.png fails
    return out.parent


@pytest.fixture(scope="module")
def ray_run(local_ray, folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("ray") / "run"
    code = main(["predict", MODEL, str(folder), "--engine", "ray", "--workers", "2",
                 "--out", str(out)])
    assert code == 1  # broken.png is in errors.csv
    return out


@pytest.fixture(scope="module")
def local_tables(folder):
    """The local prediction in memory, unrounded: what `lungcad predict` writes, before CSV."""
    from lungcad.inference import load_model
    from lungcad.prediction import collect_input, model_task, predict_input

    model = load_model(MODEL)
    return predict_input(model, collect_input([str(folder)], model_task(model)), progress=False)


# Ray's actors run the float32 networks on 1 torch thread each, the local run on the machine's
# default: other summation orders, so outputs differ in the sixth decimal (1.3e-6 seen on a
# mark's malignancy). A wrong image, model or mark differs by orders of magnitude more.
FLOAT32_ATOL = 1e-5


def assert_same_table(left: pd.DataFrame, right: pd.DataFrame, atol: float = FLOAT32_ATOL) -> None:
    """Same columns, rows and text; numbers within ``atol``."""
    assert list(left.columns) == list(right.columns)
    assert left["path"].tolist() == right["path"].tolist()
    for column in left.columns:
        if pd.api.types.is_float_dtype(left[column]):
            np.testing.assert_allclose(left[column].astype(float), right[column].astype(float),
                                       rtol=0, atol=atol, err_msg=column)
        else:
            assert left[column].tolist() == right[column].tolist(), column


def test_ray_tables_equal_the_local_run(local_run, ray_run, local_tables):
    local = pd.read_csv(local_run / "predictions.csv")
    assert len(local) == 4
    assert_same_table(pd.read_csv(ray_run / "predictions.csv"), local)
    # findings.csv writes 6 significant digits: the float32 tolerance plus half its last digit
    assert_same_table(pd.read_csv(ray_run / "findings.csv"),
                      pd.read_csv(local_run / "findings.csv"), atol=FLOAT32_ATOL + 5e-7)


def test_unrounded_results_equal_the_local_ones_to_float32_precision(ray_run, folder, local_tables):
    """The Parquet shards (a re-run reads them back; nothing is predicted again) against the
    local tables in memory, before any CSV rounding."""
    again = predict_on_ray(MODEL, [str(folder)], ray_run, progress=False)
    assert again.n_run == 0
    assert_same_table(again.predictions, local_tables.table)
    assert_same_table(again.findings, local_tables.findings)
    assert again.errors["path"].tolist() == [k for k, _ in local_tables.failures]


def test_an_unreadable_image_is_one_row_of_errors(ray_run, folder):
    errors = pd.read_csv(ray_run / "errors.csv")
    assert errors["path"].tolist() == [str(folder / "broken.png")]
    assert "unrecognised image format" in errors["reason"][0]
    assert errors["content_hash"][0] == file_sha256(folder / "broken.png")


class Recording(Predictor):
    """Writes one line per model load and per batch into LOG (a file the test reads)."""

    log = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        with open(self.log, "a") as f:
            f.write("load\n")

    def __call__(self, batch):
        keys = [self.inp.keys[p] for p in batch["position"]]
        with open(self.log, "a") as f:
            f.write("".join(f"predict {k}\n" for k in keys))
        return super().__call__(batch)


def recording(log: Path) -> type:
    return type("RecordingHere", (Recording,), {"log": str(log)})


def test_a_rerun_calls_no_model_and_a_lost_shard_is_done_again(ray_run, folder, tmp_path):
    before = pd.read_csv(ray_run / "predictions.csv")
    log = tmp_path / "calls.log"
    again = predict_on_ray(MODEL, [str(folder)], ray_run, workers=1, progress=False,
                           predictor=recording(log))
    assert not log.exists()  # no actor was made, no model loaded, nothing predicted
    assert (again.n_run, again.n_done_before, len(again.errors)) == (0, 5, 1)
    assert_same_table(pd.read_csv(ray_run / "predictions.csv"), before)

    shards = sorted((ray_run / "shards").iterdir())
    lost = shards[0]
    lost_keys = set(pd.read_parquet(lost / "inputs.parquet")["path"])
    shutil.rmtree(lost)
    finished = predict_on_ray(MODEL, [str(folder)], ray_run, workers=1, progress=False,
                              predictor=recording(log))
    lines = log.read_text().splitlines()
    assert lines.count("load") == 1
    assert {line.removeprefix("predict ") for line in lines if line != "load"} == lost_keys
    assert finished.n_run == len(lost_keys)
    assert_same_table(pd.read_csv(ray_run / "predictions.csv"), before)


class KillsItselfOnce(Predictor):
    """The first actor to reach its second batch kills its own process (SIGKILL) there."""

    marker = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        if self.calls == 2:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(batch)


def test_a_killed_actor_loses_nothing(local_ray, folder, local_run, tmp_path):
    marker = tmp_path / "killed"
    killer = type("KillsHere", (KillsItselfOnce,), {"marker": str(marker)})
    out = tmp_path / "run"
    result = predict_on_ray(MODEL, [str(folder)], out, workers=2, batch_size=1, progress=False,
                            predictor=killer)
    assert marker.exists()  # one actor's process was killed mid-run
    table = pd.read_csv(out / "predictions.csv")
    assert table["path"].is_unique and len(table) == 4
    assert_same_table(table, pd.read_csv(local_run / "predictions.csv"))
    assert pd.read_csv(out / "errors.csv")["path"].tolist() == [str(folder / "broken.png")]
    assert result.n_run == 5
