"""One dataset format: a folder holding images and ``labels.csv``.

``labels.csv`` has the columns ``path`` (relative to the folder) and ``label``, an optional
``group`` (images that must never be split apart, such as one patient's), and any metadata
columns (kept as they are, used for subgroup tables and localisation scoring).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lungcad.errors import LungcadError

LABELS_FILE = "labels.csv"
REQUIRED_COLUMNS = ("path", "label")


@dataclass
class Manifest:
    root: Path
    table: pd.DataFrame

    @classmethod
    def load(cls, folder: str | Path) -> "Manifest":
        root = Path(folder)
        if not root.is_dir():
            raise LungcadError(f"dataset folder not found: {root}")
        csv_path = root / LABELS_FILE
        if not csv_path.is_file():
            raise LungcadError(
                f"{root} is not a lungcad dataset: it has no {LABELS_FILE} "
                "(columns path,label; make one with `lungcad data prepare`)"
            )
        try:
            table = pd.read_csv(csv_path, dtype={"path": str, "label": str, "group": str},
                                keep_default_na=True)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise LungcadError(f"cannot read {csv_path}: {exc}") from exc
        missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
        if missing:
            raise LungcadError(f"{csv_path} lacks the column(s) {', '.join(missing)}; "
                               f"it has {', '.join(map(str, table.columns))}")
        if table["path"].isna().any() or table["label"].isna().any():
            bad = table.index[table["path"].isna() | table["label"].isna()].tolist()[:5]
            raise LungcadError(f"{csv_path}: empty path or label on data row(s) {[i + 2 for i in bad]}")
        dups = table["path"][table["path"].duplicated()].tolist()
        if dups:
            raise LungcadError(f"{csv_path}: the same path is listed twice: {dups[:3]}")
        for p in table["path"]:
            if Path(p).is_absolute() or ".." in Path(p).parts:
                raise LungcadError(f"{csv_path}: path {p!r} must be relative and inside the dataset folder")
        return cls(root=root, table=table.reset_index(drop=True))

    def __len__(self) -> int:
        return len(self.table)

    @property
    def paths(self) -> list[str]:
        return self.table["path"].tolist()

    def image_path(self, rel: str) -> Path:
        return self.root / rel

    def label_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.table["label"].value_counts().sort_index().items()}

    def sha256(self) -> str:
        """Hash of labels.csv, recorded in run metadata so a result names the exact manifest."""
        return hashlib.sha256((self.root / LABELS_FILE).read_bytes()).hexdigest()

    def rows_for(self, paths: list[str]) -> pd.DataFrame:
        indexed = self.table.set_index("path", drop=False)
        unknown = [p for p in paths if p not in indexed.index]
        if unknown:
            raise LungcadError(f"{len(unknown)} path(s) are not in {self.root / LABELS_FILE}, "
                               f"e.g. {unknown[:3]}; was the split made for another dataset?")
        return indexed.loc[paths].reset_index(drop=True)
