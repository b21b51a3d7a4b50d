"""lungcad: find signs of lung cancer in chest radiographs and lung CT slices.

Research software, not a medical device.
"""

from lungcad.errors import LungcadError

__version__ = "0.1.0"

__all__ = ["LungcadError", "__version__", "bundled_models", "load_model"]


def load_model(name_or_path: str):
    """A bundled model by name (see :func:`bundled_models`), a model directory or a training run
    folder, loaded: a :class:`lungcad.inference.LungModel` with ``predict(image_or_path)``,
    ``predict_proba(images)`` and ``explain(image_or_path)``."""
    from lungcad.inference import load_model as _load

    return _load(name_or_path)


def bundled_models() -> list[str]:
    """Names of the models shipped inside the package."""
    from lungcad.inference import bundled_models as _bundled

    return _bundled()
