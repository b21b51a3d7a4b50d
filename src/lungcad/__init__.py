"""lungcad: find signs of lung cancer in chest radiographs and lung CT slices.

Research software, not a medical device.

``lungcad.load_model(name_or_path, runtime="torch", threads=None)`` loads a model (the one
loader, :func:`lungcad.inference.load_model`, its services as methods: :mod:`lungcad.api`);
``lungcad.bundled_models()`` names the models shipped inside the package. Both are imported on first use, so ``import lungcad`` stays light.
"""

from lungcad.errors import LungcadError
from lungcad.version import __version__

__all__ = ["LungcadError", "__version__", "bundled_models", "load_model"]


def __getattr__(name: str):
    if name == "load_model":
        from lungcad.api import load_model

        return load_model
    if name == "bundled_models":
        from lungcad.model_dir import bundled_models

        return bundled_models
    raise AttributeError(f"module 'lungcad' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
