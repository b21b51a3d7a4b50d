"""examples/quickstart.ipynb runs from top to bottom on the bundled models, offline."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "quickstart.ipynb"


def test_quickstart_notebook_runs_top_to_bottom(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs)
    for name in ("jsrt-malignant", "ct-normal-vs-abnormal", "iqothnccd-3class", "chest-ct-4class"):
        assert name in text
    assert "segmenter plausible: True []" in text and "'right_area_px'" in text  # jsrt-lungs
    assert "threshold" in text and "research software, not a medical device" in text.lower()
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= 2  # the heatmap and the lung outline
