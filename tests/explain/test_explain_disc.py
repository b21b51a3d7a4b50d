"""A model whose only evidence is a bright disc must get saliency peaks on the disc."""

from __future__ import annotations

import numpy as np
import pytest

from disc_data import disc_image, make_disc_set
from lungcad.explain import Explainer, saliency_map
from lungcad.explain.localisation import chance_peak_hit, global_peak, nodule_hit

# A peak "hits" within disc radius + this many pixels: a cell of the 16x16 Grad-CAM map of a
# 64 px image is 4 px wide.
MARGIN_PX = 4.0


def hit_rates(maps, discs) -> tuple[float, float, float]:
    """(hit rate, hit rate of the left-right mirrored maps, mean chance of a random peak)."""
    hits, mirrored, chance = [], [], []
    for m, (cx, cy), r in zip(maps, discs.centres, discs.radii):
        hits.append(nodule_hit(m, cx, cy, r + MARGIN_PX))
        mirrored.append(nodule_hit(m[:, ::-1], cx, cy, r + MARGIN_PX))
        chance.append(chance_peak_hit(m.shape, cx, cy, r + MARGIN_PX))
    return float(np.mean(hits)), float(np.mean(mirrored)), float(np.mean(chance))


def test_the_disc_model_learned_the_disc(disc_model, held_out_discs):
    negatives = make_disc_set(40, seed=3, positive_fraction=0.0)
    p_pos = disc_model.predict_proba(list(held_out_discs.images))[:, 1]
    p_neg = disc_model.predict_proba(list(negatives.images))[:, 1]
    assert (p_pos > 0.5).mean() >= 0.9 and (p_neg < 0.5).mean() >= 0.9


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam"])
def test_cam_peak_lies_on_the_disc(disc_model, held_out_discs, method):
    maps = Explainer(disc_model, method).maps(list(held_out_discs.images))
    assert all(m.shape == im.shape and m.dtype == np.float32 for m, im in
               zip(maps, held_out_discs.images))
    rate, mirrored_rate, chance = hit_rates(maps, held_out_discs)
    assert chance < 0.15  # a random peak rarely hits, so a high rate means localisation
    assert rate >= 0.8, f"{method}: peak on the disc in only {rate:.0%} of images"
    assert rate >= chance + 0.6
    # a mirrored map (what a flipped resize would give) misses: the maps are not symmetric blobs
    assert mirrored_rate <= 0.4


def test_occlusion_peak_lies_on_the_disc(disc_model, held_out_discs):
    subset = make_disc_set(8, seed=4, positive_fraction=1.0)
    maps = Explainer(disc_model, "occlusion").maps(list(subset.images))
    rate, _, chance = hit_rates(maps, subset)
    assert rate >= 0.75 and rate >= chance + 0.5


def test_non_square_image_keeps_its_shape_and_orientation(disc_model):
    rng = np.random.default_rng(7)
    for shape, (cx, cy) in [((96, 160), (28.0, 20.0)),    # wide, disc upper left
                            ((160, 96), (70.0, 130.0))]:  # tall, disc lower right
        image = disc_image(rng, shape, (cx, cy), 8.0)
        heat = saliency_map(disc_model, image)
        assert heat.shape == shape and heat.dtype == np.float32
        assert 0.0 <= heat.min() and heat.max() == pytest.approx(1.0)
        y, x = global_peak(heat)
        # the peak is on the disc (the map is stretched back exactly as the image was squeezed)
        assert np.hypot(x - cx, y - cy) <= 8.0 + 1.5 * MARGIN_PX * max(shape) / 64
        assert (x < shape[1] / 2) == (cx < shape[1] / 2) and (y < shape[0] / 2) == (cy < shape[0] / 2)


def test_model_explain_method_gives_the_same_map(disc_model, held_out_discs, tmp_path):
    from PIL import Image

    image = held_out_discs.images[0]
    direct = saliency_map(disc_model, image)
    np.testing.assert_allclose(disc_model.explain(image), direct, atol=1e-6)
    # through a file: 8-bit PNG, so the map differs slightly but peaks in the same place
    path = tmp_path / "disc.png"
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(path)
    from_file = disc_model.explain(path)
    assert from_file.shape == image.shape
    assert np.corrcoef(from_file.ravel(), direct.ravel())[0, 1] > 0.95


def test_the_negative_class_map_shows_the_other_evidence(disc_model, held_out_discs):
    """Binary networks have one logit z: the positive class explains z, the negative class -z.
    Evidence for "disc" lies on the disc; evidence for "no disc" lies off it."""
    on_pos, off_pos, on_neg, off_neg = [], [], [], []
    yy, xx = np.mgrid[0:held_out_discs.images.shape[1], 0:held_out_discs.images.shape[2]]
    for image, (cx, cy), r in list(zip(held_out_discs.images, held_out_discs.centres,
                                       held_out_discs.radii))[:10]:
        positive = saliency_map(disc_model, image, target_class="disc")
        negative = saliency_map(disc_model, image, target_class="no_disc")
        assert not np.allclose(positive, negative)
        on_disc = np.hypot(xx - cx, yy - cy) <= r
        on_pos.append(positive[on_disc].mean())
        off_pos.append(positive[~on_disc].mean())
        on_neg.append(negative[on_disc].mean())
        off_neg.append(negative[~on_disc].mean())
    assert np.mean(on_pos) > 5 * np.mean(off_pos)
    assert np.mean(on_neg) < 0.5 * np.mean(off_neg)
    # the default target of a binary model is its positive class
    np.testing.assert_array_equal(saliency_map(disc_model, held_out_discs.images[0]),
                                  saliency_map(disc_model, held_out_discs.images[0], "gradcam",
                                               "disc"))


@pytest.mark.slow
def test_registered_ct_cnn_trained_on_discs_points_at_them():
    """The same check on a registered architecture (its registered target layer), ~20 s."""
    import torch

    from disc_data import train_binary
    from lungcad.lung_model import LungModel
    from lungcad.model_dir import ModelSpec
    from lungcad.models import create_model
    from lungcad.preprocess import Preprocessing

    torch.manual_seed(0)
    train = make_disc_set(200, seed=1)
    preprocessing = Preprocessing(size=64)
    network = train_binary(create_model("ct-cnn", 2), train.images, train.labels,
                           preprocessing.apply, epochs=5)
    spec = ModelSpec(name="ct-disc", architecture="ct-cnn", task="synthetic-disc",
                     classes=["no_disc", "disc"], preprocessing=preprocessing)
    held_out = make_disc_set(40, seed=2, positive_fraction=1.0)
    maps = Explainer(LungModel(spec, network), "gradcam").maps(list(held_out.images))
    rate, mirrored_rate, chance = hit_rates(maps, held_out)
    assert rate >= 0.8 and rate >= chance + 0.6 and mirrored_rate <= 0.4
