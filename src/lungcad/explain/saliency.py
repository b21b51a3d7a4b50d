"""Saliency maps (where in the image the model's score comes from), built on ``monai.visualize``.

A map is a 2-D float32 array in [0, 1] with the shape of the image that was given, aligned to it
pixel for pixel: the network sees the image squeezed to a square (``Preprocessing``: no crop, no
padding), so the model-resolution map is stretched back over the whole image with the same
half-pixel-centre geometry (bilinear, ``align_corners=False``).

Methods:

- ``gradcam`` (Selvaraju et al. 2017) and ``gradcam++`` (Chattopadhyay et al. 2018): MONAI's
  ``GradCAM`` / ``GradCAMpp`` on the model's registered ``target_layer``.
- ``layercam`` (Jiang et al. 2021): positive gradients weight each position, not each channel;
  sharper on earlier layers. A three-line ``compute_map`` on MONAI's Grad-CAM hooks.
- ``occlusion``: MONAI's ``OcclusionSensitivity``: how much the target class's probability drops
  when a Gaussian-weighted patch of the image is blanked. Model-agnostic, ~100x slower.

The score explained: binary networks give one logit z (sigmoid), so the positive class is z and
the negative class is -z; multi-class networks give a logit per class. Default target: the
positive class of a binary model, the predicted class of a multi-class one.

The network is never touched: each :class:`Explainer` works on a private deep copy (hooks,
in-place ReLUs switched off, parameters frozen), with BatchNorm and Dropout in eval mode. RNN
layers stay in train mode with their dropout set to zero (cuDNN can only backpropagate through an
RNN in train mode; with no dropout that computes exactly what eval mode does). Build one
Explainer per model and reuse it: each costs a copy of the network. After every pass it drops the
tensors the hooks kept (their autograd graph points back at the hooks, and so at the copy: a cycle
through PyTorch's C++ graph that the garbage collector cannot see), and :meth:`Explainer.close`
(or a ``with`` block, as :func:`saliency_map` uses) frees the copy at once.

The model is taken duck-typed (``spec``, ``classes``, ``network``, ``prepare``).
"""

from __future__ import annotations

import copy
import functools
import warnings
from typing import TYPE_CHECKING, Sequence

import numpy as np

from lungcad.errors import LungcadError

if TYPE_CHECKING:  # pragma: no cover
    import torch

METHODS: dict[str, str] = {
    "gradcam": "Grad-CAM (MONAI GradCAM) on the model's target layer",
    "gradcam++": "Grad-CAM++ (MONAI GradCAMpp) on the model's target layer",
    "layercam": "LayerCAM: positive gradients x activations, per position, on the target layer",
    "occlusion": "occlusion sensitivity (MONAI OcclusionSensitivity): drop in the target "
                 "class's probability when a patch is blanked",
}
CAM_METHODS = ("gradcam", "gradcam++", "layercam")
# Occlusion patch: an eighth of the model's input side, moved by half a patch.
OCCLUSION_FRACTION = 8
OCCLUSION_OVERLAP = 0.5

NEEDS_TORCH = ("saliency maps need the PyTorch network; load the model with the torch "
               "runtime (lungcad.load_model / --runtime torch)")


def check_method(method: str) -> str:
    key = method.lower().strip()
    if key not in METHODS:
        raise LungcadError(f"unknown saliency method {method!r}; choose one of {', '.join(METHODS)}")
    return key


def default_target_layer(architecture: str, network) -> str:
    """The registered architecture's ``target_layer``; for an unregistered network, its last
    Conv2d (the usual Grad-CAM choice: the last layer that still has spatial positions)."""
    import torch.nn as nn

    from lungcad.models import model_info

    try:
        return model_info(architecture).target_layer
    except LungcadError:
        pass

    convs = [name for name, module in network.named_modules() if isinstance(module, nn.Conv2d)]
    if not convs:
        raise LungcadError(f"{architecture}: not a registered architecture and it has no Conv2d "
                           "layer; pass target_layer= (a dotted module name) for saliency maps")
    return convs[-1]


def _check_layer(network, layer: str) -> None:
    names = dict(network.named_modules())
    if layer not in names or layer == "":
        convs = [n for n, m in names.items() if type(m).__name__.endswith("Conv2d")]
        raise LungcadError(f"saliency target layer {layer!r} is not a module of this network; "
                           f"convolution layers it has: {', '.join(convs[-6:]) or 'none'}")


def _target_score_module(network, binary: bool):
    """The network with one output column: the score of a chosen class, per sample.

    ``targets`` (set before each call, a LongTensor of class indices, one per sample or one for
    all) picks the class; ``probability`` switches the output from the class's logit-level score
    (what Grad-CAM differentiates) to its probability (what occlusion measures)."""
    return _target_score_class()(network, binary)


@functools.cache
def _target_score_class():
    """The class of :func:`_target_score_module`, made once (torch is imported on first use); it
    closes over no network, so nothing but its instances keeps a network copy alive."""
    import torch
    from torch import nn

    class TargetScore(nn.Module):
        def __init__(self, network: nn.Module, binary: bool) -> None:
            super().__init__()
            self.network = network
            self.binary = binary
            self.targets = torch.zeros(1, dtype=torch.long)
            self.probability = False

        def train(self, mode: bool = True) -> "TargetScore":
            # MONAI switches the network to eval for its pass; cuDNN cannot backpropagate
            # through an RNN in eval mode, so RNNs (their dropout set to zero) stay in train mode
            super().train(mode)
            for module in self.modules():
                if isinstance(module, nn.RNNBase):
                    module.train(True)
            return self

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = self.network(x).float()
            targets = self.targets.to(logits.device).expand(logits.shape[0])[:, None]
            if self.binary:
                # one logit z: the positive class is z, the negative class is -z
                score = torch.where(targets == 1, logits[:, :1], -logits[:, :1])
                return torch.sigmoid(score) if self.probability else score
            if self.probability:
                return torch.softmax(logits, dim=1).gather(1, targets)
            return logits.gather(1, targets)

    return TargetScore


def _private_network(network):
    """A deep copy ready for hooks: frozen, in-place activations off, RNN dropout off."""
    from torch import nn

    private = copy.deepcopy(network)
    for p in private.parameters():
        p.requires_grad_(False)  # gradients flow to the input and the activations only
    for module in private.modules():
        # a full backward hook fails when the hooked output is then modified in place
        if getattr(module, "inplace", False) is True:
            module.inplace = False
        if isinstance(module, nn.RNNBase):
            module.dropout = 0.0
    return private


class Explainer:
    """Saliency maps for one model and method; reuse one for many images (one network copy)."""

    def __init__(self, model, method: str = "gradcam",
                 target_layer: str | None = None, occlusion_patch: int | None = None) -> None:
        import torch

        if getattr(model, "network", None) is None:  # ONNX Runtime: no gradients
            raise LungcadError(NEEDS_TORCH)
        self.model = model
        self.method = check_method(method)
        self.classes = list(model.classes)
        self.binary = model.spec.binary
        with torch.inference_mode(False):  # a copy made in inference mode cannot backpropagate
            network = _private_network(model.network)
        self.target_layer = target_layer or default_target_layer(model.spec.architecture, network)
        _check_layer(network, self.target_layer)
        self.wrapped = _target_score_module(network, self.binary).eval()
        # flip averaging runs the target layer more than once per forward, some runs on the
        # mirror image: which ones the network says (lungcad.explain.mirror_hooks)
        passes = getattr(network, "mirror_passes", None)
        self.passes = tuple(passes(self.target_layer)) if callable(passes) else (False,)
        self.device = next((p.device for p in network.parameters()), torch.device("cpu"))
        size = model.spec.preprocessing.size
        self.occlusion_patch = occlusion_patch or max(4, size // OCCLUSION_FRACTION)
        self._cam = self._build_cam() if self.method in CAM_METHODS else None

    # -- target classes -------------------------------------------------------------------
    def target_index(self, target_class: str | None) -> int | None:
        """Index in ``classes`` of a named class; None means the default rule."""
        if target_class is None:
            return len(self.classes) - 1 if self.binary else None
        if target_class not in self.classes:
            raise LungcadError(f"class {target_class!r} is not one of this model's classes "
                               f"({', '.join(self.classes)})")
        return self.classes.index(target_class)

    def _targets_for(self, batch: "torch.Tensor", target: int | None) -> "torch.Tensor":
        import torch

        if target is not None:
            return torch.tensor([target], dtype=torch.long)
        with torch.no_grad():  # multi-class default: each image's predicted class
            logits = self.wrapped.network(batch)
        return logits.argmax(dim=1).cpu()

    # -- the maps --------------------------------------------------------------------------
    def _build_cam(self):
        from monai.visualize import GradCAM, GradCAMpp

        class LayerCAM(GradCAM):
            def compute_map(self, x, class_idx=None, retain_graph=False, layer_idx=-1, **kwargs):
                import torch.nn.functional as F

                _, acti, grad = self.nn_module(x, class_idx=class_idx, retain_graph=retain_graph,
                                               **kwargs)
                return F.relu((F.relu(grad[layer_idx]) * acti[layer_idx]).sum(1, keepdim=True))

        cam_class = {"gradcam": GradCAM, "gradcam++": GradCAMpp, "layercam": LayerCAM}[self.method]
        layer = f"network.{self.target_layer}"
        hooked = self.wrapped
        if len(self.passes) > 1:  # keep every run of the layer, not only the last
            from lungcad.explain.mirror_hooks import MirrorAwareHooks

            hooked = MirrorAwareHooks(self.wrapped, layer)
        # keep the raw feature-resolution map: this module resizes it to each image's own shape,
        # and MONAI's default post-processing would invert it (it maps the maximum to 0)
        return cam_class(hooked, layer,
                         upsampler=lambda spatial: (lambda x: x), postprocessing=lambda x: x)

    def raw_maps(self, batch: np.ndarray, target: int | None = None) -> np.ndarray:
        """Unnormalised non-negative maps (N, h, w) for preprocessed inputs (N, C, S, S): at the
        target layer's resolution (CAM methods) or the input's (occlusion)."""
        import torch

        with torch.inference_mode(False), torch.enable_grad():  # callers may be in either
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            self.wrapped.targets = self._targets_for(x, target)
            try:
                if self._cam is not None:
                    return self._cam_maps(x)
                return self._occlusion_maps(x)
            finally:
                self._release()

    def _release(self) -> None:
        """Drop what MONAI's hooks kept from the last pass (activations, gradients, score): the
        activations' autograd graph holds the hooks, which hold this network copy, a cycle the
        garbage collector cannot see through; kept, it would never be freed."""
        if self._cam is not None:
            hooked = self._cam.nn_module
            hooked.activations.clear()
            hooked.gradients.clear()
            hooked.score = None

    def close(self) -> None:
        """Free the network copy now rather than at the next garbage collection; the explainer
        cannot be used afterwards."""
        if self._cam is not None:
            self._release()
            self._cam.nn_module.model = None  # the hooks on the copy's layers point back here
            self._cam = None
        self.wrapped = None

    def __enter__(self) -> "Explainer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _cam_maps(self, x: "torch.Tensor") -> np.ndarray:
        import torch

        try:
            x = x.clone().requires_grad_(True)  # gradients reach frozen layers through the input
            if self.method == "gradcam++" and x.shape[0] > 1:
                # MONAI's GradCAMpp broadcasts the (N,) class scores against the map's last
                # axis, which is right only for one image at a time
                maps = torch.cat([self._cam_maps_one(x, i) for i in range(x.shape[0])])
            else:
                maps = self._cam_pass(x)
        except RuntimeError as exc:
            raise LungcadError(f"saliency ({self.method}) failed on layer {self.target_layer!r}: "
                               f"{str(exc).splitlines()[0]}") from None
        if maps.ndim != 4:
            raise LungcadError(f"saliency layer {self.target_layer!r} gives {maps.ndim - 1}-D "
                               "output, not a (channels, height, width) feature map; choose a "
                               "convolution layer")
        return torch.nan_to_num(maps[:, 0].detach().float()).cpu().numpy()

    def _cam_pass(self, x: "torch.Tensor") -> "torch.Tensor":
        """CAM maps for the batch ``x``; a flip-averaged network's passes folded into one map."""
        maps = self._cam.compute_map(x, class_idx=0)
        if len(self.passes) > 1:
            from lungcad.explain.mirror_hooks import fold_passes

            maps = fold_passes(maps, x.shape[0], self.passes)
        return maps

    def _cam_maps_one(self, x: "torch.Tensor", i: int) -> "torch.Tensor":
        targets = self.wrapped.targets
        try:
            self.wrapped.targets = targets[i:i + 1] if len(targets) > 1 else targets
            return self._cam_pass(x[i:i + 1])
        finally:
            self.wrapped.targets = targets

    def _occlusion_maps(self, x: "torch.Tensor") -> np.ndarray:
        import torch
        from monai.visualize import OcclusionSensitivity

        self.wrapped.probability = True
        try:
            occlusion = OcclusionSensitivity(self.wrapped, mask_size=self.occlusion_patch,
                                             n_batch=16, verbose=False, overlap=OCCLUSION_OVERLAP,
                                             activate=False)
            targets = self.wrapped.targets
            out = []
            with torch.no_grad():
                for i in range(x.shape[0]):
                    self.wrapped.targets = targets[i:i + 1] if len(targets) > 1 else targets
                    item = x[i:i + 1]
                    baseline = self.wrapped(item)[0, 0]
                    with warnings.catch_warnings():  # MONAI's own indexing, deprecated in torch
                        warnings.filterwarnings("ignore", "Using a non-tuple sequence",
                                                UserWarning)
                        occluded, _ = occlusion(item)  # (1, 1, S, S): probability, patch blanked
                    out.append(torch.clamp(baseline - occluded[0, 0].as_tensor(), min=0))
        finally:
            self.wrapped.probability = False
        return torch.stack(out).float().cpu().numpy()

    def maps(self, images: Sequence[np.ndarray], target_class: str | None = None,
             batch_size: int = 8, sources: Sequence[str] | None = None) -> list[np.ndarray]:
        """One map per image (2-D [0, 1] display arrays), each at its image's shape, in [0, 1]."""
        target = self.target_index(target_class)
        out: list[np.ndarray] = []
        names = list(sources) if sources is not None else ["image"] * len(images)
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            batch = np.stack([self.model.prepare(np.asarray(im, np.float32), name)
                              for im, name in zip(chunk, names[start:start + batch_size])])
            raw = self.raw_maps(batch, target)
            out.extend(to_image_shape(m, np.shape(im)) for m, im in zip(raw, chunk))
        return out

    def __call__(self, image: np.ndarray, target_class: str | None = None) -> np.ndarray:
        return self.maps([image], target_class)[0]


def to_image_shape(raw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Stretch a square model-resolution map over an image of ``shape`` and scale it to [0, 1].

    The preprocessing squeezed the whole image into the square, so stretching back is the exact
    inverse geometry; bilinear with half-pixel centres (``align_corners=False``) puts each
    feature cell over the image region it was computed from. An all-zero map (no evidence for
    the class anywhere) stays all zero.
    """
    import torch
    import torch.nn.functional as F

    h, w = int(shape[0]), int(shape[1])
    t = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))[None, None]
    shrinking = t.shape[-2] > h or t.shape[-1] > w
    resized = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False,
                            antialias=shrinking)[0, 0].numpy()
    resized = np.clip(resized, 0.0, None)
    top = float(resized.max())
    if not np.isfinite(top) or top <= 0:
        return np.zeros((h, w), np.float32)
    return (resized / top).astype(np.float32)


def saliency_map(model, image: np.ndarray, method: str = "gradcam",
                 target_class: str | None = None, target_layer: str | None = None) -> np.ndarray:
    """A 2-D float32 map in [0, 1], the shape of ``image`` (a [0, 1] display array as
    :func:`lungcad.io.load_image` returns), aligned to it.

    ``target_class``: a class name of the model; default the positive class (binary) or the
    predicted class (multi-class). ``target_layer``: a dotted module name; default the
    architecture's registered layer.
    """
    image = np.asarray(image, dtype=np.float32)
    with Explainer(model, method, target_layer) as explainer:
        return explainer(image, target_class)


def saliency_maps(model, images: Sequence[np.ndarray], method: str = "gradcam",
                  target_class: str | None = None, batch_size: int = 8,
                  target_layer: str | None = None) -> list[np.ndarray]:
    """:func:`saliency_map` for many images, sharing one network copy and batching the passes."""
    with Explainer(model, method, target_layer) as explainer:
        return explainer.maps(list(images), target_class, batch_size)


def explain(model, image, method: str = "gradcam", target_class: str | None = None) -> np.ndarray:
    """Saliency map of one image (a path, or an array as ``load_image`` returns) by ``model`` (a
    LungModel on PyTorch): 2-D float32 in [0, 1] at the image's shape (:func:`saliency_map`)."""
    from lungcad.io import read_input

    return saliency_map(model, read_input(image).array, method, target_class)
