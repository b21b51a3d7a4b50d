"""What runs on the Ray workers: :func:`hash_files` (a stateless task over a batch of paths)
and :class:`Predictor` (the callable class of the actor pool: it loads the model once, then
predicts batch after batch with :func:`lungcad.prediction.predict_input`, the code of a local
``lungcad predict``, and keeps each finished batch as a shard, :mod:`lungcad.engine.shards`).

This module does not import Ray: Ray Data calls these with pandas batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from lungcad.engine.shards import ERROR_COLUMNS, shard_name, write_shard
from lungcad.prediction import PredictionInput


def hash_files(batch: pd.DataFrame) -> pd.DataFrame:
    """``batch`` (columns position, path, file) with ``content_hash`` (sha256 of the file's
    bytes; empty where it cannot be read) and ``reason`` (why not, else empty)."""
    from lungcad.hashing import file_sha256

    hashes, reasons = [], []
    for file in batch["file"]:
        try:
            hashes.append(file_sha256(file))
            reasons.append("")
        except OSError as exc:
            hashes.append("")
            reasons.append(f"{file}: could not be read ({exc.strerror or exc})")
    return batch.assign(content_hash=hashes, reason=reasons)


def subset(inp: PredictionInput, positions: Sequence[int]) -> PredictionInput:
    """The images at ``positions`` of ``inp``, with their labels and metadata."""
    positions = list(positions)
    return PredictionInput(
        files=[inp.files[p] for p in positions], keys=[inp.keys[p] for p in positions],
        true_labels=(None if inp.true_labels is None
                     else [inp.true_labels[p] for p in positions]),
        metadata=(None if inp.metadata is None
                  else inp.metadata.iloc[positions].reset_index(drop=True)),
        fold=inp.fold)


class Predictor:
    """One actor of the pool: the model loaded once; each call predicts one batch (columns
    position and content_hash), writes its shard and returns (path, status) per input.

    ``source``: the :class:`PredictionInput` of the whole run, or a one-element list holding
    its Ray object reference (put once in the object store, not copied into every batch).
    ``threads``: torch threads of this actor (its CPUs)."""

    def __init__(self, model: str, runtime: str, source, out_dir: str, batch_size: int = 16,
                 frame: int | None = None, age=None, sex=None, threads: int | None = None):
        from lungcad.inference import load_model

        if threads:
            import torch

            torch.set_num_threads(int(threads))
        if isinstance(source, list):
            import ray

            source = ray.get(source[0])
        self.inp: PredictionInput = source
        self.model = load_model(model, runtime)
        self.out_dir = Path(out_dir)
        self.options = {"batch_size": batch_size, "frame": frame, "age": age, "sex": sex}

    def predict(self, inp: PredictionInput):
        """The prediction of one batch: :func:`lungcad.prediction.predict_input`."""
        from lungcad.prediction import predict_input

        return predict_input(self.model, inp, progress=False, **self.options)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        part = subset(self.inp, batch["position"].tolist())
        hashes = [str(h) for h in batch["content_hash"]]
        result = self.predict(part)
        content = dict(zip(part.keys, hashes))
        failed = {key for key, _ in result.failures}
        status = ["failed" if key in failed else "predicted" for key in part.keys]
        errors = pd.DataFrame([(key, content.get(key, ""), message)
                               for key, message in result.failures], columns=ERROR_COLUMNS)
        write_shard(self.out_dir, shard_name(part.keys, hashes), {
            "inputs": pd.DataFrame({"path": part.keys, "content_hash": hashes,
                                    "status": status}),
            "predictions": result.table if len(result.table) else None,
            "findings": result.findings,
            "errors": errors})
        return pd.DataFrame({"path": part.keys, "status": status})
