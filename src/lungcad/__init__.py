"""lungcad: find signs of lung cancer in chest radiographs and lung CT slices.

Research software, not a medical device.
"""

from lungcad.errors import LungcadError

__version__ = "0.1.0"

__all__ = ["LungcadError", "__version__", "load_model"]


def load_model(name_or_path: str):
    """Load a bundled model by name, or a model directory (see :mod:`lungcad.inference`)."""
    from lungcad.inference import load_model as _load

    return _load(name_or_path)
