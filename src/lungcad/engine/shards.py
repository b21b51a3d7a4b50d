"""Finished work of an engine run, kept so that nothing is lost and nothing is done twice.

Each batch that a worker finishes is one folder ``OUT/shards/<name>/`` holding Parquet files:
``inputs.parquet`` (path, content_hash, status ``predicted`` or ``failed``),
``predictions.parquet`` (the rows ``lungcad predict`` writes), ``findings.parquet`` (a
detector's marks) and ``errors.parquet`` (path, content_hash, reason). The folder is written
under a temporary name and renamed into place, so a worker killed part-way leaves no half
shard; ``<name>`` is a hash of the batch's paths and content hashes, so a batch run again
after its worker died lands on the same name and is kept once.

An input is done when some shard lists its (path, content hash): a re-run skips it. An input
whose bytes changed since is done again; one that could not be read has no hash and is tried
again on every run. :func:`collect` puts the tables back together in input order.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from lungcad.errors import LungcadError
from lungcad.findings import FINDINGS_COLUMNS

SHARDS = "shards"
ERROR_COLUMNS = ["path", "content_hash", "reason"]
TABLES = ("inputs", "predictions", "findings", "errors")


def shard_name(keys: Sequence[str], hashes: Sequence[str]) -> str:
    """The shard of a batch: the same inputs (path and bytes) give the same name."""
    digest = hashlib.sha256()
    for key, content in zip(keys, hashes):
        digest.update(f"{key}\t{content}\n".encode())
    return digest.hexdigest()[:24]


def write_shard(out_dir: Path, name: str, tables: dict[str, pd.DataFrame | None]) -> Path:
    """Write one batch's tables as ``OUT/shards/<name>/`` (atomically: a temporary folder
    renamed). A shard of that name already there (the batch finished before its worker died)
    is kept as it is."""
    root = Path(out_dir) / SHARDS
    final = root / name
    if final.is_dir():
        return final
    temporary = root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    temporary.mkdir(parents=True)
    try:
        for table_name, table in tables.items():
            if table is not None:
                table.to_parquet(temporary / f"{table_name}.parquet", index=False)
        os.rename(temporary, final)
    except OSError:
        if not final.is_dir():
            raise
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    return final


def _shard_folders(out_dir: Path) -> list[Path]:
    root = Path(out_dir) / SHARDS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read(folder: Path, table: str) -> pd.DataFrame | None:
    path = folder / f"{table}.parquet"
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise LungcadError(f"cannot read {path} ({exc}); remove that shard folder and run the "
                           "same command again: its images are predicted again") from None


def done_inputs(out_dir: Path) -> dict[tuple[str, str], Path]:
    """(path, content hash) of every finished input -> the shard folder that holds it (the
    first by name where a batch was, exceptionally, kept twice)."""
    done: dict[tuple[str, str], Path] = {}
    for folder in _shard_folders(out_dir):
        inputs = _read(folder, "inputs")
        if inputs is None:
            continue
        for key, content in zip(inputs["path"], inputs["content_hash"]):
            done.setdefault((str(key), str(content)), folder)
    return done


@dataclass
class Collected:
    """The tables of a run, in input order: every input exactly once (predicted or in
    ``errors``)."""

    predictions: pd.DataFrame
    findings: pd.DataFrame | None
    errors: pd.DataFrame


def collect(out_dir: Path, wanted: Sequence[tuple[str, str]],
            unread: pd.DataFrame | None = None) -> Collected:
    """The rows of the inputs ``wanted`` ((path, content hash), in input order) from the
    shards, and ``unread`` (inputs that could not be hashed) added to the errors."""
    done = done_inputs(out_dir)
    order = {key: i for i, (key, _) in enumerate(wanted)}
    by_folder: dict[Path, set[str]] = {}
    for key, content in wanted:
        folder = done.get((key, content))
        if folder is not None:
            by_folder.setdefault(folder, set()).add(key)
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLES[1:]}
    for folder, keys in sorted(by_folder.items()):
        for name in parts:
            table = _read(folder, name)
            if table is not None and len(table):
                parts[name].append(table[table["path"].astype(str).isin(keys)])
    if unread is not None and len(unread):
        parts["errors"].append(unread[ERROR_COLUMNS])

    def ordered(tables: list[pd.DataFrame], columns: Sequence[str] = ()) -> pd.DataFrame:
        tables = [t for t in tables if len(t)]
        if not tables:
            return pd.DataFrame(columns=list(columns))
        table = pd.concat(tables, ignore_index=True)
        position = table["path"].astype(str).map(order)
        return (table.assign(_position=position).sort_values("_position", kind="stable")
                .drop(columns="_position").reset_index(drop=True))

    has_findings = any((folder / "findings.parquet").is_file() for folder in by_folder)
    return Collected(predictions=ordered(parts["predictions"]),
                     findings=(ordered(parts["findings"], FINDINGS_COLUMNS) if has_findings
                               else None),
                     errors=ordered(parts["errors"], ERROR_COLUMNS))
