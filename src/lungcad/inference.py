"""Load a model to run it: :func:`load_model`, the one loader (``lungcad.load_model`` is this
function), for both runtimes.

A model is named by a model directory, a training run folder or a bundled model's name
(:func:`~lungcad.model_dir.resolve_model_dir`), or, for ONNX Runtime, an ``.onnx`` file written
by ``lungcad export``. Either runtime gives a :class:`~lungcad.lung_model.LungModel` (``spec``,
``classes``, ``predict_proba``, ``decide``, ``prediction``): the services (screened prediction,
segment, detect, explain) take it as their first argument. ``lungcad.load_model``
(:mod:`lungcad.api`) wraps it with those services as methods for the Python API.

The model directory format itself (``ModelSpec``, ``save_model_dir``, ...) lives in
:mod:`lungcad.model_dir`.
"""

from __future__ import annotations

from pathlib import Path

from lungcad.errors import LungcadError
from lungcad.lung_model import LungModel, read_model_dir
from lungcad.model_dir import resolve_model_dir

RUNTIMES = ("torch", "onnx")

__all__ = ["RUNTIMES", "load_model"]


def load_model(name_or_path: str | Path, runtime: str = "torch",
               threads: int | None = None) -> LungModel:
    """A bundled model by name (see :func:`bundled_models`), a model directory or a training run
    folder, loaded: a :class:`~lungcad.lung_model.LungModel`.

    ``runtime``: ``torch`` (default) runs the PyTorch network; ``onnx`` runs the forward pass on
    ONNX Runtime (no saliency maps): ``name_or_path`` may then also be an exported ``.onnx``
    file, and a model directory is read through its own ``model.onnx`` or exported on the fly,
    checked and cached (see :mod:`lungcad.export.onnx_runtime`).

    ``"auto"`` gives a :class:`~lungcad.domain.auto.AutoModel` instead: its ``predict(image)``
    runs every bundled model of the image's modality (DICOM tag, else the shipped radiograph-
    vs-CT classifier) and returns their predictions together.

    ``threads``: ONNX Runtime's intra-op threads (default: its own choice). PyTorch's threads
    are process-wide (``torch.set_num_threads``), so the torch runtime leaves them as they are.
    """
    if runtime not in RUNTIMES:
        raise LungcadError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if str(name_or_path) == "auto":  # the bundled models of each input's modality
        from lungcad.domain.auto import AutoModel

        return AutoModel(lambda name: load_model(name, runtime, threads))  # type: ignore[return-value]
    if runtime == "onnx":
        return _load_onnx(name_or_path, threads)
    return read_model_dir(resolve_model_dir(name_or_path))


def _load_onnx(name_or_path: str | Path, threads: int | None) -> LungModel:
    try:
        from lungcad.export.onnx_runtime import onnx_model_for_dir, read_onnx_file

        path = Path(name_or_path)
        if path.suffix.lower() == ".onnx" or path.is_file():
            return read_onnx_file(path, threads)
        return onnx_model_for_dir(resolve_model_dir(name_or_path), threads)
    except ImportError as error:  # onnxruntime, onnx or lungcad.export missing here
        raise LungcadError(f"--runtime onnx needs ONNX Runtime, which cannot be imported here "
                           f"({error}); install onnxruntime, or use --runtime torch") from None
