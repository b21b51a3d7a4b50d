"""Grad-CAM hooks for networks that average the image with its mirror image (flip averaging).

A flip-averaged network (``nodule-heatmap-lite0`` with ``flip_average=True``) reads the image
and its mirror image (``x.flip(-1)``) and averages the two cell maps after flipping the second back, so its saliency target layer may run more than
once per forward, some runs on the mirror image. MONAI's ``ModelWithHooks`` keeps one activation
and one gradient per layer, the last run's: for ``nodule-heatmap-lite0`` the mirrored pass, so
the jsrt-nodules heatmap came out mirrored left to right.

Such a network says, per run of a layer, whether the run's output is mirrored:
``network.mirror_passes(layer) -> tuple[bool, ...]``. :class:`MirrorAwareHooks` keeps every run's
activation and gradient and hands them to the CAM as one batch (in call order; a run on a batch
of images then their mirror images counts as two runs); :func:`fold_passes` flips each mirrored
run's maps back and adds the runs' maps, so the heatmap shows the evidence of both passes on the
image's own geometry.
"""

from __future__ import annotations

from monai.visualize.class_activation_maps import ModelWithHooks


class MirrorAwareHooks(ModelWithHooks):
    """A ``ModelWithHooks`` that keeps every call of each target layer, in call order, and hands
    them to the CAM as one batch (activations and their gradients concatenated)."""

    def __init__(self, nn_module, target_layer_names) -> None:
        self._calls: dict[str, list] = {}
        self._grads: dict[str, dict] = {}
        super().__init__(nn_module, target_layer_names, register_forward=True,
                         register_backward=False)
        self.register_backward = True  # gradients come from tensor hooks set in forward_hook

    def forward_hook(self, name):
        def _hook(_module, _input, output):
            calls = self._calls.setdefault(name, [])
            index = len(calls)
            calls.append(output)
            if output.requires_grad:
                output.register_hook(
                    lambda grad, i=index: self._grads.setdefault(name, {}).__setitem__(i, grad))
        return _hook

    def __call__(self, x, class_idx=None, retain_graph=False, **kwargs):
        import torch

        self._calls.clear()
        self._grads.clear()
        train = self.model.training
        self.model.eval()
        try:
            logits = self.model(x, **kwargs)
            self.class_idx = logits.max(1)[-1] if class_idx is None else class_idx
            self.score = self.class_score(logits, self.class_idx)
            self.model.zero_grad()
            self.score.sum().backward(retain_graph=retain_graph)
            acti, grad = [], []
            for layer in self.target_layers:
                calls = self._calls.get(layer, [])
                grads = self._grads.get(layer, {})
                acti.append(torch.cat(calls))
                grad.append(torch.cat([grads.get(i, torch.zeros_like(c))
                                       for i, c in enumerate(calls)]))
            self.activations = {n: a for n, a in zip(self.target_layers, acti)}
            self.gradients = {n: g for n, g in zip(self.target_layers, grad)}
            return logits, tuple(acti), tuple(grad)
        finally:
            self._calls.clear()
            self._grads.clear()
            if train:
                self.model.train()


def fold_passes(maps, n: int, passes: tuple[bool, ...]):
    """(n, ...) maps: the sum over the layer's runs of each image's map, a run on the mirror
    image flipped back. ``maps`` holds the runs' maps in call order, n each; ``passes`` says, per
    run, whether it saw the mirror image (the network's ``mirror_passes``)."""
    from lungcad.errors import LungcadError

    if maps.shape[0] != len(passes) * n:
        raise LungcadError(f"a flip-averaged network gave {maps.shape[0]} saliency maps for {n} "
                           f"images; its mirror_passes promised {len(passes)} runs of the target "
                           "layer per image")
    runs = [maps[k * n:(k + 1) * n] for k in range(len(passes))]
    return sum(run.flip(-1) if mirrored else run for run, mirrored in zip(runs, passes))
