"""Saliency maps: geometry (shape, alignment, no flip), target classes, and the network untouched.

Most tests use hand-built networks whose Grad-CAM is known exactly: a 1x1 convolution with
weight 1 (so its output is the preprocessed image itself), then a fixed layer ``regions`` whose
channel k is that image within region k, and logit k = the mean of channel k. The Grad-CAM of
class k on ``regions`` is the image within region k (and on the convolution, the whole image).
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from lungcad.errors import LungcadError
from lungcad.explain import Explainer, explain, overlay, png_bytes, saliency_map, saliency_maps
from lungcad.explain.localisation import global_peak
from lungcad.lung_model import LungModel
from lungcad.model_dir import ModelSpec
from lungcad.preprocess import Preprocessing

from known_networks import SIZE, make_model


@pytest.fixture
def whole_image_model() -> LungModel:
    """Binary: the logit is the mean brightness, so Grad-CAM of the positive class is the image."""
    return make_model(np.ones((1, SIZE, SIZE)), ["dark", "bright"])


@pytest.fixture
def thirds_model() -> LungModel:
    """Three classes: logit k is the mean brightness of the k-th vertical third."""
    masks = np.zeros((3, SIZE, SIZE))
    for k in range(3):
        masks[k][:, k * SIZE // 3:(k + 1) * SIZE // 3] = 1
    return make_model(masks, ["left", "middle", "right"])


def structured_image(shape: tuple[int, int], spot: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A dim gradient with a bright square spot centred at ``spot`` (x, y)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    image = 0.1 + 0.1 * np.linspace(0, 1, w)[None, :] * np.ones((h, 1))
    image += 0.02 * rng.random(shape)
    x, y = spot
    half = max(3, min(shape) // 12)
    image[y - half:y + half + 1, x - half:x + half + 1] = 0.95
    return image.astype(np.float32)


@pytest.mark.parametrize("shape,spot", [((100, 180), (30, 20)), ((180, 100), (80, 150)),
                                        ((64, 64), (10, 50)), ((333, 257), (200, 40))])
def test_map_is_aligned_with_the_image(whole_image_model, shape, spot):
    image = structured_image(shape, spot)
    heat = saliency_map(whole_image_model, image)
    assert heat.shape == shape and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
    # the map is the image squeezed to SIZE and stretched back: it lines up with the image ...
    assert np.corrcoef(heat.ravel(), image.ravel())[0, 1] > 0.9
    # ... and not with a flipped or transposed-then-resized copy
    assert np.corrcoef(heat[::-1, :].ravel(), image.ravel())[0, 1] < 0.5
    assert np.corrcoef(heat[:, ::-1].ravel(), image.ravel())[0, 1] < 0.5
    y, x = global_peak(heat)
    spot_half = max(3, min(shape) // 12)
    assert abs(x - spot[0]) <= spot_half + 1 and abs(y - spot[1]) <= spot_half + 1


def test_spot_centre_is_not_shifted(whole_image_model):
    """The centroid of the map's bright part matches the spot to within a model pixel."""
    shape, spot = (240, 400), (301, 77)
    image = structured_image(shape, spot)
    heat = saliency_map(whole_image_model, image)
    ys, xs = np.nonzero(heat > 0.5)
    weights = heat[ys, xs]
    cell = (shape[0] / SIZE, shape[1] / SIZE)
    assert abs(np.average(xs, weights=weights) - spot[0]) < cell[1]
    assert abs(np.average(ys, weights=weights) - spot[1]) < cell[0]


def test_multiclass_default_target_is_the_predicted_class(thirds_model):
    image = np.full((90, 120), 0.2, np.float32)
    image[:, 85:] = 0.9  # the right third is brightest: predicted "right"
    assert thirds_model.predict(image).label == "right"
    default = saliency_map(thirds_model, image, target_layer="regions")
    assert default[:, 85:].sum() > 0.95 * default.sum()
    left = saliency_map(thirds_model, image, target_class="left", target_layer="regions")
    assert left[:, :40].sum() > 0.95 * left.sum()
    # each image of a batch gets its own predicted class
    other = np.full((90, 120), 0.2, np.float32)
    other[:, :35] = 0.9
    maps = saliency_maps(thirds_model, [image, other, image], target_layer="regions")
    assert maps[1][:, :40].sum() > 0.95 * maps[1].sum()
    np.testing.assert_allclose(maps[0], default, atol=1e-6)
    np.testing.assert_allclose(maps[2], default, atol=1e-6)


def test_binary_negative_class_is_the_negated_logit(whole_image_model):
    """Grad-CAM of -mean(image) weights the activation negatively everywhere: an empty map
    (no evidence for "dark" anywhere), never the positive class's map."""
    image = structured_image((80, 80), (40, 40))
    assert saliency_map(whole_image_model, image, target_class="bright").max() == 1.0
    dark = saliency_map(whole_image_model, image, target_class="dark")
    assert dark.shape == image.shape and not dark.any()


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam"])
def test_batches_give_the_same_maps_as_single_images(thirds_model, method):
    rng = np.random.default_rng(3)
    images = [rng.random((70 + 10 * i, 90)).astype(np.float32) for i in range(5)]
    explainer = Explainer(thirds_model, method, target_layer="regions")
    batched = explainer.maps(images, batch_size=4)
    for image, heat in zip(images, batched):
        np.testing.assert_allclose(heat, explainer(image), atol=1e-5)
    # dropout(0.9) would make repeated maps differ were it not in eval mode
    np.testing.assert_array_equal(explainer.maps(images, batch_size=4)[0], batched[0])


def _hook_counts(network) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
               for m in network.modules())


def test_the_served_network_is_left_untouched():
    import torch

    from lungcad.models import create_model

    network = create_model("paper-cnn-lstm", 2)
    spec = ModelSpec(name="p", architecture="paper-cnn-lstm", task="synthetic",
                     classes=["a", "b"], preprocessing=Preprocessing(size=64))
    model = LungModel(spec, network)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    inplace = [m.inplace for m in network.modules() if hasattr(m, "inplace")]
    image = np.random.default_rng(0).random((70, 90)).astype(np.float32)
    with torch.inference_mode():  # as a web server might call it
        first = saliency_map(model, image)
    assert _hook_counts(network) == 0
    assert [m.inplace for m in network.modules() if hasattr(m, "inplace")] == inplace
    assert all(p.requires_grad for p in network.parameters()) and not network.training
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
    np.testing.assert_array_equal(saliency_map(model, image), first)


def test_lstm_network_scores_match_eval_mode():
    """RNNs stay in train mode for cuDNN's backward, with dropout off: same scores as eval."""
    import torch

    from lungcad.models import create_model

    network = create_model("paper-cnn-lstm", 2).eval()
    spec = ModelSpec(name="p", architecture="paper-cnn-lstm", task="synthetic",
                     classes=["a", "b"], preprocessing=Preprocessing(size=64))
    explainer = Explainer(LungModel(spec, network), "gradcam")
    explainer.wrapped.eval()
    assert any(m.training for m in explainer.wrapped.modules()
               if isinstance(m, torch.nn.LSTM))
    x = torch.randn(3, 1, 64, 64)
    explainer.wrapped.targets = torch.tensor([1])
    with torch.no_grad():
        torch.testing.assert_close(explainer.wrapped(x), network(x))


def test_user_errors_are_lungcad_errors(whole_image_model):
    image = structured_image((64, 64), (30, 30))
    with pytest.raises(LungcadError, match="unknown saliency method"):
        saliency_map(whole_image_model, image, method="magic")
    with pytest.raises(LungcadError, match="not one of this model's classes"):
        saliency_map(whole_image_model, image, target_class="nodule")
    with pytest.raises(LungcadError, match="not a module of this network"):
        saliency_map(whole_image_model, image, target_layer="features.block9")
    with pytest.raises(LungcadError, match=r"\[0, 1\]"):
        saliency_map(whole_image_model, image * 255)
    with pytest.raises(LungcadError, match="2-D"):
        saliency_map(whole_image_model, np.stack([image] * 3, axis=-1))


def test_a_non_spatial_target_layer_is_refused():
    from torch import nn

    network = nn.Sequential()
    network.add_module("conv", nn.Conv2d(1, 2, 3, padding=1))
    network.add_module("flat", nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten()))
    network.add_module("out", nn.Linear(32, 1))
    spec = ModelSpec(name="f", architecture="test-flat", task="synthetic", classes=["a", "b"],
                     preprocessing=Preprocessing(size=SIZE))
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    with pytest.raises(LungcadError, match="feature map"):
        saliency_map(LungModel(spec, network), image, target_layer="flat")
    # the default for an unregistered architecture is its last Conv2d, which works
    assert saliency_map(LungModel(spec, network), image).shape == image.shape


def test_overlay_and_png():
    from PIL import Image

    image = structured_image((90, 150), (40, 30))
    heat = np.zeros_like(image)
    heat[60:80, 100:140] = 1.0
    rgb = overlay(image, heat)
    assert rgb.shape == (90, 150, 3) and rgb.dtype == np.uint8
    hot, cold = rgb[70, 120].astype(int), rgb[10, 10].astype(int)
    assert hot[0] > hot[2] and cold[2] > cold[0]  # jet: red where hot, blue where cold
    # alpha 0 is the plain grayscale image
    plain = overlay(image, heat, alpha=0.0)
    np.testing.assert_array_equal(plain[..., 0], np.round(image * 255).astype(np.uint8))
    written = overlay(image, heat, text="malignant 0.91")
    assert written.shape == rgb.shape and not np.array_equal(written[:20, :80], rgb[:20, :80])
    np.testing.assert_array_equal(written[60:, 100:], rgb[60:, 100:])  # text stays top-left
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(written))).convert("RGB"))
    np.testing.assert_array_equal(decoded, written)
    with pytest.raises(LungcadError):
        overlay(image, heat[:-1])
    with pytest.raises(LungcadError):
        png_bytes(rgb.astype(np.float32))


def _live_copies(cls) -> int:
    import gc

    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is cls)


def test_one_shot_maps_leave_no_network_copy():
    """saliency_map / LungModel.explain make a private copy per call; it must be freed after the
    call (the hooks' saved tensors used to keep it alive through PyTorch's autograd graph), and
    without waiting for the garbage collector."""
    import gc

    from lungcad.models import create_model

    network = create_model("ct-cnn", 2)
    spec = ModelSpec(name="c", architecture="ct-cnn", task="synthetic", classes=["a", "b"],
                     preprocessing=Preprocessing(size=64, channels=1))
    model = LungModel(spec, network)
    image = np.random.default_rng(0).random((70, 90)).astype(np.float32)
    before = _live_copies(type(network))
    gc.disable()
    try:
        for _ in range(3):
            saliency_map(model, image)
            explain(model, image, method="gradcam++")
            saliency_maps(model, [image, image], method="layercam")
        assert sum(1 for obj in gc.get_objects() if type(obj) is type(network)) == before
    finally:
        gc.enable()
    assert _live_copies(type(network)) == before


def test_a_reused_explainer_keeps_no_tensors_between_calls(whole_image_model):
    image = np.random.default_rng(1).random((40, 50)).astype(np.float32)
    explainer = Explainer(whole_image_model)
    first = explainer(image)
    hooked = explainer._cam.nn_module
    assert not hooked.activations and not hooked.gradients and hooked.score is None
    np.testing.assert_array_equal(explainer(image), first)
    np.testing.assert_array_equal(saliency_map(whole_image_model, image), first)
    explainer.close()
    with pytest.raises(Exception):
        explainer(image)
