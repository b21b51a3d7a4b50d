"""Architectures. Importing this package registers every model in the registry."""

from lungcad.models.registry import create_model, list_models, logits_to_probs, model_info

# Each import registers its architecture(s) by name.
from lungcad.models import paper_cnn_lstm  # noqa: E402,F401  isort: skip
from lungcad.models import vgg16_lstm  # noqa: E402,F401  isort: skip
from lungcad.models import ct_cnn  # noqa: E402,F401  isort: skip
from lungcad.models import efficientnet_lite  # noqa: E402,F401  isort: skip
from lungcad.models import nodule_heatmap  # noqa: E402,F401  isort: skip

__all__ = ["create_model", "list_models", "logits_to_probs", "model_info"]
