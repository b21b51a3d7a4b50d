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
