"""Pretrained weights: EfficientNet-Lite0's one-channel stem, VGG16's offline paths."""

from __future__ import annotations

import hashlib

import pytest
import torch

from lungcad.errors import LungcadError
from lungcad.models import create_model
from lungcad.models.efficientnet_lite import LITE0_WEIGHTS_SHA256, build_lite0_backbone, lite0_weights_path


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_lite0_weights_file_is_the_published_one():
    from pathlib import Path

    assert sha256(Path(lite0_weights_path())) == LITE0_WEIGHTS_SHA256


def test_lite0_gray_stem_equals_rgb_stem_on_replicated_gray():
    rgb = build_lite0_backbone(in_channels=3, pretrained=True).eval()
    gray = build_lite0_backbone(in_channels=1, pretrained=True).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        want = rgb._conv_stem(x.repeat(1, 3, 1, 1))
        got = gray._conv_stem(x)
        assert torch.allclose(got, want, atol=1e-5)
        # and the whole network, since every later layer is shared
        assert torch.allclose(gray(x), rgb(x.repeat(1, 3, 1, 1)), atol=1e-4)
    # the pretrained stem is not random: summing the kernels over RGB is what we load
    assert torch.allclose(gray._conv_stem.weight, rgb._conv_stem.weight.sum(1, keepdim=True))


def test_lite0_pretrained_differs_from_random_and_freeze_backbone_freezes():
    torch.manual_seed(0)
    pre = create_model("efficientnet-lite0", 2, pretrained=True, freeze_backbone=True)
    rand = create_model("efficientnet-lite0", 2, pretrained=False)
    assert not torch.allclose(pre.backbone._conv_head.weight, rand.backbone._conv_head.weight)
    trainable = {n for n, p in pre.named_parameters() if p.requires_grad}
    assert trainable == {"backbone._fc.weight", "backbone._fc.bias"}


def test_lite0_sha_mismatch_is_an_error(tmp_path):
    bad = tmp_path / "lite0.pth"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(LungcadError, match="sha256 mismatch"):
        create_model("efficientnet-lite0", 2, weights_path=str(bad), weights_sha256="0" * 64)


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(3)
    # the keys of torchvision's vgg16().state_dict() for its features (the classifier, 120M
    # parameters that vgg16-lstm does not use, is left out to keep the test light)
    state = {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)  # ignored by vgg16-lstm
    path = tmp_path_factory.mktemp("vgg") / "vgg16_random.pt"
    torch.save(state, path)
    return path, state


def test_vgg16_loads_a_local_state_dict_with_its_sha256(vgg16_file):
    path, state = vgg16_file
    network = create_model("vgg16-lstm", 2, pretrained=str(path), weights_sha256=sha256(path))
    assert torch.equal(network.features[28].weight, state["features.28.weight"])
    # the one-channel first conv is the RGB kernels summed
    assert torch.allclose(network.features[0].weight,
                          state["features.0.weight"].sum(1, keepdim=True))


def test_vgg16_sha256_mismatch_is_an_error(vgg16_file):
    path, _ = vgg16_file
    with pytest.raises(LungcadError, match="sha256 mismatch"):
        create_model("vgg16-lstm", 2, pretrained=str(path), weights_sha256="f" * 64)
    with pytest.raises(LungcadError, match="weights_sha256"):
        create_model("vgg16-lstm", 2, pretrained=str(path))


def test_vgg16_offline_download_failure_names_the_choices(monkeypatch):
    from urllib.error import URLError

    def no_network(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    # the download torchvision's weights API makes, failing as it does offline
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", no_network)
    with pytest.raises(LungcadError) as info:
        create_model("vgg16-lstm", 2)  # default: ImageNet weights
    message = str(info.value)
    assert "offline" in message and 'pretrained="none"' in message and "weights_sha256" in message


def test_vgg16_freeze_backbone(vgg16_file):
    network = create_model("vgg16-lstm", 2, pretrained="none", freeze_backbone=True)
    assert not any(p.requires_grad for p in network.features.parameters())
    assert all(p.requires_grad for p in network.head.parameters())
