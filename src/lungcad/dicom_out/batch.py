"""``lungcad predict ... --dicom-out DIR``: the SR and overlay of every predicted DICOM image."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from lungcad.errors import LungcadError


def write_for_prediction(model, inp, result, out_dir: Path,
                         on_failure: Callable[[str, str], None], heatmap: bool = True) -> int:
    """Write DICOM results for the images ``result`` (``predict_input``'s) predicted from
    ``inp`` (``collect_input``'s) into ``out_dir``; each image that fails (not DICOM, ...) is
    passed to ``on_failure(path, message)`` and the rest go on. Returns the number failed."""
    from lungcad.dicom_out import dicom_results, write_dicom_results

    if not len(result.table):
        return 0
    done = set(result.table["path"])
    files = [f for f, k in zip(inp.files, inp.keys) if k in done]
    failed = written = 0
    for path in files:
        try:
            datasets = dicom_results(model, path, heatmap=heatmap)
            written += len(write_dicom_results(datasets, out_dir))
        except LungcadError as exc:
            on_failure(str(path), f"--dicom-out: {exc}")
            failed += 1
        except OSError as exc:
            on_failure(str(path), f"--dicom-out: cannot write into {out_dir} ({exc})")
            failed += 1
    print(f"wrote {written} DICOM result(s) (SR and overlay) to {out_dir}", file=sys.stdout)
    return failed

