"""The LightningModule: a registered network, a class-balanced loss, accuracy and AUROC."""

from __future__ import annotations

import lightning as L
import torch
import torchmetrics
from torch import nn

from lungcad.models import logits_to_probs


def class_weights(labels: list[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, mean 1 over the classes (n / (C * n_c))."""
    counts = torch.bincount(torch.as_tensor(labels), minlength=num_classes).double()
    return (counts.sum() / (num_classes * counts.clamp(min=1))).float()


class LungClassifier(L.LightningModule):
    """Binary tasks: one logit, BCE (``pos_weight`` = negatives / positives when weighted).
    Multi-class: C logits, cross-entropy (inverse-frequency class weights when weighted)."""

    def __init__(self, network: nn.Module, num_classes: int, train_labels: list[int],
                 class_balance: str = "weighted_loss", optimizer: str = "adam", lr: float = 1e-4,
                 weight_decay: float = 0.0):
        super().__init__()
        self.network = network
        self.num_classes = num_classes
        self.binary = num_classes == 2
        self.optimizer_name, self.lr, self.weight_decay = optimizer, lr, weight_decay
        weighted = class_balance == "weighted_loss"
        if self.binary:
            counts = torch.bincount(torch.as_tensor(train_labels), minlength=2).float()
            pos_weight = counts[0] / counts[1].clamp(min=1) if weighted else torch.tensor(1.0)
            self.register_buffer("pos_weight", pos_weight.reshape(1))
        else:
            weights = class_weights(train_labels, num_classes) if weighted else torch.ones(num_classes)
            self.register_buffer("class_weight", weights)
        self.train_acc = self._accuracy()
        self.val_acc = self._accuracy()
        self.val_auroc = (torchmetrics.classification.BinaryAUROC() if self.binary else
                          torchmetrics.classification.MulticlassAUROC(num_classes, average="macro"))

    def _accuracy(self) -> torchmetrics.Metric:
        if self.binary:
            return torchmetrics.classification.BinaryAccuracy(threshold=0.5)
        return torchmetrics.classification.MulticlassAccuracy(self.num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.binary:
            return nn.functional.binary_cross_entropy_with_logits(
                logits[:, 0], y.float(), pos_weight=self.pos_weight)
        return nn.functional.cross_entropy(logits, y, weight=self.class_weight)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """What the metrics read: the positive probability (binary) or all probabilities."""
        probs = logits_to_probs(logits.float())
        return probs[:, 1] if self.binary else probs

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y)
        self.train_acc(self.scores(logits.detach()), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=len(y), sync_dist=True)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        scores = self.scores(logits)
        self.val_acc(scores, y)
        self.val_auroc(scores, y)
        self.log("val_loss", self.loss(logits, y), on_epoch=True, prog_bar=True,
                 batch_size=len(y), sync_dist=True)
        self.log("val_acc", self.val_acc, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("val_auroc", self.val_auroc, on_epoch=True, prog_bar=True, batch_size=len(y))

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        if self.optimizer_name == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
