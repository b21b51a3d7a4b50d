"""``paper-cnn-lstm``: the chest-radiograph reference paper's CNN + attention + LSTM.

Layers (Keras terms in the paper, PyTorch here):

- Block 1: Conv2D(16, 3x3, ReLU, same) + MaxPool(2x2).
- Blocks 2-5: SeparableConv2D (depthwise 3x3 then pointwise 1x1, ReLU, same) + BatchNorm +
  MaxPool(2x2), filters 32, 64, 128, 256; Dropout(0.2) after blocks 4 and 5.
- The last feature map (N, 256, H/32, W/32) becomes a sequence with ONE STEP PER SPATIAL
  POSITION, in raster order: H/32 * W/32 steps of 256 features (64 steps at the default 256 px).
- Attention: additive (Bahdanau-style) self-attention over the steps. Each step t gets a score
  ``v . tanh(W x_t + b)``; a softmax over the steps gives weights a_t, and each step is scaled
  by ``a_t * T`` (T = number of steps, so uniform attention leaves the sequence unchanged). The
  re-weighted sequence keeps its length and goes to the LSTM. The last weights are kept in
  ``attention.last_weights`` (N, T) for inspection.
- LSTM (128 hidden units); its last hidden state -> Dropout -> Linear: 1 logit (binary, sigmoid)
  or C logits (softmax).

Input: (N, in_channels, H, W) with H and W divisible by 32; default 256 px, one channel.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from lungcad.models._heads import LSTMHead, feature_map_to_sequence
from lungcad.models.registry import register_model


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D: a depthwise 3x3 conv per channel, then a pointwise 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, padding=kernel_size // 2,
                                   groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class AdditiveSelfAttention(nn.Module):
    """Bahdanau-style additive attention weighting the steps of a sequence (length kept)."""

    def __init__(self, features: int, hidden: int = 128):
        super().__init__()
        self.project = nn.Linear(features, hidden)
        self.score = nn.Linear(hidden, 1, bias=False)
        self.last_weights: torch.Tensor | None = None

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        scores = self.score(torch.tanh(self.project(sequence))).squeeze(-1)   # (N, T)
        weights = torch.softmax(scores, dim=1)
        self.last_weights = weights.detach()
        return sequence * (weights * sequence.shape[1]).unsqueeze(-1)


def _separable_block(in_ch: int, out_ch: int, dropout: float) -> nn.Sequential:
    layers = OrderedDict(conv=SeparableConv2d(in_ch, out_ch), relu=nn.ReLU(inplace=True),
                         bn=nn.BatchNorm2d(out_ch), pool=nn.MaxPool2d(2))
    if dropout:
        layers["drop"] = nn.Dropout(dropout)
    return nn.Sequential(layers)


class PaperCnnLstm(nn.Module):
    def __init__(self, num_outputs: int = 1, in_channels: int = 1, lstm_hidden: int = 128,
                 attention_hidden: int = 128, dropout: float = 0.2):
        super().__init__()
        blocks = OrderedDict(block1=nn.Sequential(OrderedDict(
            conv=nn.Conv2d(in_channels, 16, 3, padding=1), relu=nn.ReLU(inplace=True),
            pool=nn.MaxPool2d(2))))
        filters = [16, 32, 64, 128, 256]
        for i in range(1, 5):
            blocks[f"block{i + 1}"] = _separable_block(filters[i - 1], filters[i],
                                                       dropout if i >= 3 else 0.0)
        self.features = nn.Sequential(blocks)
        self.attention = AdditiveSelfAttention(256, attention_hidden)
        self.head = LSTMHead(256, lstm_hidden, num_outputs, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sequence = feature_map_to_sequence(self.features(x))
        return self.head(self.attention(sequence))


@register_model(
    "paper-cnn-lstm", input_size=256, in_channels=1,
    target_layer="features.block5.conv.pointwise",
    description="Reference paper: conv + 4 separable-conv blocks, additive attention over the "
                "H/32*W/32 positions, LSTM",
    mean=0.5, std=0.25, size_multiple=32)
def paper_cnn_lstm(num_outputs: int = 1, in_channels: int = 1, **kwargs) -> PaperCnnLstm:
    return PaperCnnLstm(num_outputs=num_outputs, in_channels=in_channels, **kwargs)
