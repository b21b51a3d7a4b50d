"""Load the models a server will serve, once, at start-up."""

from __future__ import annotations

from pathlib import Path

from lungcad.errors import LungcadError


def load_serving_model(name_or_path: str | Path, runtime: str = "torch",
                       threads: int | None = None):
    """A model directory, run folder or bundled name, loaded for the chosen runtime.

    ``torch`` gives a :class:`lungcad.inference.LungModel`; ``onnx`` gives one whose forward pass
    runs on ONNX Runtime (:func:`lungcad.export.load_onnx_model`: also takes an exported
    ``.onnx`` file; a model directory is exported on the fly, checked, and cached), with
    ``threads`` intra-op threads.
    """
    if runtime == "torch":
        from lungcad.inference import load_model

        return load_model(name_or_path)
    if runtime == "onnx":
        try:
            from lungcad.export import load_onnx_model

            return load_onnx_model(name_or_path, threads=threads)
        except ImportError as error:  # onnxruntime (or onnx) missing from this installation
            raise LungcadError(f"--runtime onnx needs ONNX Runtime, which cannot be imported "
                               f"here ({error}); install onnxruntime, or use --runtime torch"
                               ) from None
    raise LungcadError(f"unknown runtime {runtime!r}; use torch or onnx")


def default_model_names() -> list[str]:
    """The bundled models, or an error telling the user to name a model directory."""
    from lungcad.inference import bundled_models

    names = bundled_models()
    if not names:
        raise LungcadError("no bundled models are installed; pass a model directory (a folder "
                           "with model.json, as `lungcad train` writes) or a run folder, e.g. "
                           "`lungcad serve runs/ct-cnn/model`")
    return names
