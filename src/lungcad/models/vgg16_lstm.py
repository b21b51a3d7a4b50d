"""``vgg16-lstm``: torchvision VGG16 convolutional features read as a sequence by an LSTM.

The last feature map of ``vgg16().features`` (N, 512, H/32, W/32) becomes a sequence with one
step per spatial position (raster order), read by an LSTM whose last hidden state gives the
logits. ImageNet weights come through torchvision's weights API
(``VGG16_Weights.IMAGENET1K_V1``, cached in the torch hub folder) for users who are online.

``pretrained``:
  ``"imagenet"`` (or True): torchvision's ImageNet weights (downloads once; offline this fails
  with a LungcadError that names the choices below);
  ``"none"`` (or False / None): random initialisation;
  a path to a saved VGG16 state dict (``features.*`` keys, as ``vgg16().state_dict()`` or
  ``vgg16().features`` with a ``features.`` prefix): loaded with ``weights_only=True`` after its
  sha256 is checked against ``weights_sha256`` (required).

One-channel input: the first conv's kernels are summed over RGB, so a gray image gives what the
RGB network gives on that image replicated to three channels. Normalise gray with the mean of
ImageNet's channel means and stds (0.449, 0.226).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lungcad.errors import LungcadError
from lungcad.models._heads import (LSTMHead, feature_map_to_sequence, freeze,
                                   load_checked_state_dict, sum_rgb_conv_to_channels)
from lungcad.models.registry import register_model

IMAGENET_GRAY_MEAN = (0.485 + 0.456 + 0.406) / 3
IMAGENET_GRAY_STD = (0.229 + 0.224 + 0.225) / 3
OFFLINE_CHOICES = ('pretrained="none" (random initialisation; --set model_args.pretrained=none) '
                   'or pretrained="/path/to/vgg16_state_dict.pt" with weights_sha256="<its sha256>"')


def _imagenet_state_dict() -> dict:
    from torchvision.models import VGG16_Weights

    try:
        return VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # noqa: BLE001 - URLError, OSError, hash errors: all mean "no weights"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LungcadError(
            f"vgg16-lstm: cannot download torchvision's ImageNet VGG16 weights ({reason}); "
            f"are you offline? Use {OFFLINE_CHOICES}") from None


def _features_only(state: dict) -> dict:
    out = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    if not out:
        raise LungcadError("vgg16-lstm: the weights file has no 'features.*' entries; save "
                           "torchvision's vgg16().state_dict()")
    return out


class Vgg16Lstm(nn.Module):
    def __init__(self, num_outputs: int = 1, in_channels: int = 1, pretrained="imagenet",
                 weights_sha256: str | None = None, freeze_backbone: bool = False,
                 lstm_hidden: int = 256, dropout: float = 0.3):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        # vgg16().features, without building (and initialising) the 120M-parameter classifier
        features = make_layers(cfgs["D"], batch_norm=False)
        for layer in features.modules():  # torchvision VGG's own initialisation of its convs
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        source = _resolve_pretrained(pretrained)
        if source == "imagenet":
            features.load_state_dict(_features_only(_imagenet_state_dict()))
        elif isinstance(source, Path):
            try:
                features.load_state_dict(_features_only(
                    load_checked_state_dict(source, weights_sha256, "vgg16-lstm")))
            except RuntimeError as exc:
                raise LungcadError(f"vgg16-lstm: {source} does not fit VGG16 "
                                   f"({str(exc).splitlines()[0]})") from None
        if in_channels != 3:
            first: nn.Conv2d = features[0]
            adapted = nn.Conv2d(in_channels, first.out_channels, first.kernel_size,
                                first.stride, first.padding)
            with torch.no_grad():
                adapted.weight.copy_(sum_rgb_conv_to_channels(first, in_channels))
                adapted.bias.copy_(first.bias)
            features[0] = adapted
        if freeze_backbone:
            freeze(features)
        self.features = features
        self.head = LSTMHead(512, lstm_hidden, num_outputs, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(feature_map_to_sequence(self.features(x)))


def _resolve_pretrained(pretrained) -> str | Path | None:
    if pretrained is True or (isinstance(pretrained, str) and pretrained.lower() == "imagenet"):
        return "imagenet"
    if pretrained in (False, None) or (isinstance(pretrained, str)
                                       and pretrained.lower() in ("none", "false", "")):
        return None
    if isinstance(pretrained, (str, Path)):
        return Path(pretrained)
    raise LungcadError(f"vgg16-lstm: pretrained={pretrained!r} is not understood; use "
                       f'"imagenet", {OFFLINE_CHOICES}')


@register_model(
    "vgg16-lstm", input_size=256, in_channels=1, target_layer="features.28",
    description="torchvision VGG16 features, one LSTM step per position of the last feature map",
    mean=IMAGENET_GRAY_MEAN, std=IMAGENET_GRAY_STD, size_multiple=32,
    defaults={"pretrained": "imagenet", "freeze_backbone": False})
def vgg16_lstm(num_outputs: int = 1, in_channels: int = 1, **kwargs) -> Vgg16Lstm:
    return Vgg16Lstm(num_outputs=num_outputs, in_channels=in_channels, **kwargs)
