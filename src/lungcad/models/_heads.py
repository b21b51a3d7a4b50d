"""Pieces the architectures share: feature map -> sequence -> LSTM -> logits, and weight files."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lungcad.errors import LungcadError
from lungcad.hashing import file_sha256


def feature_map_to_sequence(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H*W, C): one step per spatial position, row by row (raster order)."""
    return features.flatten(2).transpose(1, 2)


class LSTMHead(nn.Module):
    """An LSTM over the steps of a sequence; its last hidden state -> dropout -> linear logits."""

    def __init__(self, in_features: int, hidden: int, num_outputs: int, dropout: float = 0.3):
        super().__init__()
        self.lstm = nn.LSTM(in_features, hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_outputs)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        _, (h_n, _) = self.lstm(sequence)
        return self.classifier(self.dropout(h_n[-1]))


def sum_rgb_conv_to_channels(conv: nn.Conv2d, in_channels: int) -> torch.Tensor:
    """Weights for a copy of an RGB first conv that reads ``in_channels`` channels.

    For one channel the RGB kernels are summed, so a gray image gives exactly what the RGB
    network gives on that image replicated to three channels. For other counts the summed kernel
    is spread evenly (sum over channels unchanged for an input replicated across channels).
    """
    summed = conv.weight.detach().sum(dim=1, keepdim=True)
    return summed.repeat(1, in_channels, 1, 1) / in_channels


def load_checked_state_dict(path: str | Path, expected_sha256: str | None, what: str) -> dict:
    """A state dict from a local file whose sha256 must match ``expected_sha256``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise LungcadError(f"{what}: weights file not found: {path}")
    actual = file_sha256(path)
    if expected_sha256 is None:
        raise LungcadError(
            f"{what}: pass weights_sha256= with the expected sha256 of {path} so a wrong or "
            f"damaged file is caught (this file's sha256 is {actual}; check it against its source)")
    if actual.lower() != expected_sha256.strip().lower():
        raise LungcadError(f"{what}: sha256 mismatch for {path}: expected {expected_sha256}, "
                           f"got {actual}; the file is damaged or not the one intended")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise LungcadError(f"{what}: cannot read {path} as a state dict "
                           f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise LungcadError(f"{what}: {path} holds a {type(state).__name__}, not a state dict")
    return state


def freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)
