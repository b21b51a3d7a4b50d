"""Tasks: named mappings from a dataset's labels to the classes a model learns.

For binary tasks the classes are ordered (negative, positive): the positive class is last, and
probability columns ``prob_<class>`` follow the same order everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from lungcad.errors import LungcadError


@dataclass(frozen=True)
class Task:
    name: str
    classes: tuple[str, ...]
    description: str
    mapping: dict[str, str] = field(default_factory=dict)
    default: str | None = None  # class for any source label not in mapping (None: excluded)
    kind: str = "classification"   # or "segmentation": the target is a mask image
    mask_column: str | None = None  # segmentation: the manifest column naming each mask

    @property
    def segmentation(self) -> bool:
        return self.kind == "segmentation"

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    @property
    def positive(self) -> str | None:
        return self.classes[-1] if self.binary else None

    def map_label(self, label: str) -> str | None:
        return self.mapping.get(label, self.default)

    def map_labels(self, labels: pd.Series) -> pd.Series:
        """Task class per row; None where the source label has no place in this task."""
        return labels.map(lambda v: self.map_label(str(v)))

    def class_index(self, labels: pd.Series) -> list[int]:
        mapped = self.map_labels(labels)
        if mapped.isna().any():
            bad = sorted(set(labels[mapped.isna()].astype(str)))
            raise LungcadError(f"task {self.name} has no class for label(s) {bad}")
        return [self.classes.index(c) for c in mapped]

    def check_labels(self, labels: pd.Series) -> None:
        """Raise unless every class of the task is present among the mapped labels (a
        segmentation task's classes are pixels, present in every mask)."""
        if self.segmentation:
            return
        present = set(self.map_labels(labels).dropna())
        absent = [c for c in self.classes if c not in present]
        if absent:
            raise LungcadError(
                f"task {self.name} needs the class(es) {absent}, which no label in this dataset maps "
                f"to (labels found: {sorted(set(labels.astype(str)))}); is it the right dataset?"
            )


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("jsrt-malignant", ("rest", "malignant"),
             "JSRT: malignant nodule vs benign nodule or no nodule",
             {"malignant": "malignant", "benign": "rest", "non_nodule": "rest"}),
        Task("jsrt-nodule", ("no_nodule", "nodule"), "JSRT: any nodule vs none",
             {"malignant": "nodule", "benign": "nodule", "non_nodule": "no_nodule"}),
        Task("lesion", ("no_lesion", "lesion"),
             "Radiograph: any lesion (nodule, mass...) vs none; imported sets (lungcad data "
             "import: labels lesion / no_lesion) and JSRT (its labels), so several sets combine",
             {"lesion": "lesion", "no_lesion": "no_lesion", "malignant": "lesion",
              "benign": "lesion", "non_nodule": "no_lesion"}),
        Task("jsrt-3class", ("non_nodule", "benign", "malignant"),
             "JSRT: no nodule, benign nodule, malignant nodule",
             {"malignant": "malignant", "benign": "benign", "non_nodule": "non_nodule"}),
        Task("ct-normal-vs-abnormal", ("normal", "abnormal"),
             "CT slice: normal vs anything else (the CT reference system's task; both CT sets)",
             {"normal": "normal"}, default="abnormal"),
        Task("iqothnccd-3class", ("normal", "benign", "malignant"),
             "IQ-OTH/NCCD CT slice: normal, benign, malignant",
             {"normal": "normal", "benign": "benign", "malignant": "malignant"}),
        Task("chest-ct-4class",
             ("normal", "adenocarcinoma", "large_cell_carcinoma", "squamous_cell_carcinoma"),
             "Chest CT (Kaggle) slice: normal or one of three carcinoma types",
             {c: c for c in ("normal", "adenocarcinoma", "large_cell_carcinoma",
                             "squamous_cell_carcinoma")}),
        Task("jsrt-lungs", ("background", "lung"),
             "JSRT radiograph -> lung-field mask (the manifest's mask_path images)",
             default="lung", kind="segmentation", mask_column="mask_path"),
    ]
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise LungcadError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None
