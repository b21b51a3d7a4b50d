"""Which models a server serves when none is named. (Loading itself: :func:`lungcad.load_model`,
called once per model by :func:`lungcad.serving.app.create_app`.)"""

from __future__ import annotations

from lungcad.errors import LungcadError


def default_model_names() -> list[str]:
    """The bundled models, or an error telling the user to name a model directory."""
    from lungcad.model_dir import bundled_models

    names = bundled_models()
    if not names:
        raise LungcadError("no bundled models are installed; pass a model directory (a folder "
                           "with model.json, as `lungcad train` writes) or a run folder, e.g. "
                           "`lungcad serve runs/ct-cnn/model`")
    return names


def runtime_for(name_or_path, runtime: str) -> str:
    """The runtime to load a model with: ``runtime``, except that a segmentation model always
    runs on PyTorch (its masks come from the network itself, which ONNX Runtime does not
    hold)."""
    import json

    from lungcad.data.tasks import TASKS
    from lungcad.model_dir import SPEC_FILE, resolve_model_dir

    if runtime == "torch":
        return runtime
    try:
        task = json.loads((resolve_model_dir(name_or_path) / SPEC_FILE).read_text()).get("task")
    except (LungcadError, OSError, ValueError, AttributeError):
        return runtime  # an .onnx file, or a directory the loader will report on
    found = TASKS.get(task)
    return "torch" if found is not None and found.segmentation else runtime
