"""efficientnet-lite0's ``pooling`` option: global average (the network's own) or global max."""

from __future__ import annotations

import pytest
import torch

from lungcad.errors import LungcadError
from lungcad.models import create_model


@pytest.mark.parametrize("pooling, reduce", [("avg", torch.mean), ("max", torch.amax)])
def test_classifier_reads_the_chosen_pooling_of_the_last_feature_map(pooling, reduce):
    torch.manual_seed(0)
    network = create_model("efficientnet-lite0", 2, pretrained=False, pooling=pooling).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        features = network.backbone.extract_features(x)
        expected = network.backbone._fc(reduce(features, dim=(2, 3)))
        assert torch.allclose(network(x), expected, atol=1e-5)


def test_unknown_pooling_is_a_clear_error():
    with pytest.raises(LungcadError, match="pooling must be one of"):
        create_model("efficientnet-lite0", 2, pretrained=False, pooling="median")
