"""Every registered model: forward and backward on a tiny input, binary and 3-class."""

from __future__ import annotations

import functools

import pytest
import torch

from lungcad.errors import LungcadError
from lungcad.models import create_model, list_models, logits_to_probs, model_info

MODEL_NAMES = [m.name for m in list_models("classifier")]
SEGMENTERS = [m.name for m in list_models("segmenter")]
EXPECTED = {"paper-cnn-lstm", "vgg16-lstm", "ct-cnn", "efficientnet-lite0", "efficientnet-lite0-lstm"}


def offline_kwargs(name: str) -> dict:
    """Pretrained weights off: fast, and never a download."""
    return {"pretrained": False} if "pretrained" in model_info(name).defaults else {}


def first_parameter(network: torch.nn.Module) -> torch.nn.Parameter:
    return next(p for p in network.parameters() if p.dim() == 4)


def test_all_reference_models_are_registered():
    assert EXPECTED <= set(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("num_classes", [2, 3])
def test_forward_backward_shapes_and_gradients(name: str, num_classes: int):
    torch.manual_seed(0)
    info = model_info(name)
    network = create_model(name, num_classes, **offline_kwargs(name)).train()
    x = torch.randn(2, info.in_channels, 64, 64)
    logits = network(x)
    assert logits.shape == (2, 1 if num_classes == 2 else num_classes)
    assert torch.isfinite(logits).all()
    probs = logits_to_probs(logits)
    assert probs.shape == (2, num_classes)
    assert torch.allclose(probs.sum(1), torch.ones(2), atol=1e-5)
    logits.sum().backward()
    first = first_parameter(network)
    assert first.shape[1] == info.in_channels  # the first conv reads the model's channels
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_target_layer_resolves_to_a_conv(name: str):
    info = model_info(name)
    network = create_model(name, 2, **offline_kwargs(name))
    by_getattr = functools.reduce(getattr, info.target_layer.split("."), network)
    assert by_getattr is network.get_submodule(info.target_layer)
    assert isinstance(by_getattr, torch.nn.Conv2d)
    assert info.input_size % info.size_multiple == 0
    assert info.std > 0 and info.description


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_does_not_depend_on_the_rest_of_the_batch(name: str):
    """Eval mode: each image's logits are its own (no batch statistics leak between images)."""
    torch.manual_seed(1)
    network = create_model(name, 2, **offline_kwargs(name)).eval()
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        together = network(x)
        alone = network(x[:1])
    assert torch.allclose(together[:1], alone, atol=1e-4)


def test_every_model_is_a_classifier_or_a_segmenter():
    """A detector is a role of a model directory (model.json "detection"), not a network: the
    heatmap network is registered once, whichever role it plays."""
    assert sorted(MODEL_NAMES + SEGMENTERS) == sorted(m.name for m in list_models())
    assert "lung-unet" in SEGMENTERS
    assert list_models("detector") == [] and "nodule-heatmap-lite0" in MODEL_NAMES


@pytest.mark.parametrize("name", SEGMENTERS)
def test_segmenter_gives_one_logit_per_pixel_and_gradients(name: str):
    torch.manual_seed(0)
    info = model_info(name)
    network = create_model(name, 2).train()
    x = torch.randn(2, info.in_channels, 64, 64)
    logits = network(x)
    assert logits.shape == (2, 1, 64, 64) and torch.isfinite(logits).all()
    logits.sum().backward()
    first = first_parameter(network)
    assert first.grad is not None and first.grad.abs().sum() > 0
    network.eval()
    with torch.no_grad():  # eval mode: each image's map is its own
        assert torch.allclose(network(x)[:1], network(x[:1]), atol=1e-4)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(LungcadError, match="registered models"):
        create_model("no-such-model", 2)
