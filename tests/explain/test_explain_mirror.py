"""Saliency of flip-averaged networks (issue 23): the heatmap lies on the image, not its mirror.

A flip-averaged network runs its saliency layer on the image and then on its mirror image; the
hooks used to keep only the mirrored pass, so the jsrt-nodules heatmap came out mirrored left to
right. Each network with flip averaging is tested here with weights set by hand so that its cell
logits grow with local brightness (the network's own mirror-averaging code is kept): the saliency
peak of an image with one bright blob must lie on the blob's side. With ../shared, the bundled
jsrt-nodules model's heatmap peak and top mark must both lie on a real nodule, also in the DICOM
overlay.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lungcad.explain import saliency_map
from lungcad.explain.localisation import global_peak
from lungcad.lung_model import LungModel
from lungcad.model_dir import ModelSpec
from lungcad.preprocess import Preprocessing

SIDE = 256


def _conv(cin: int, cout: int, k: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0 / (cin * k * k))
    return conv


def _brightness_head(network) -> None:
    """Every conv of the head averages its input (positive weights), BatchNorm is the identity:
    the cell logits grow with the brightness around the cell."""
    with torch.no_grad():
        for module in network.head.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.fill_(1.0 / module.weight[0].numel())
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
                module.reset_running_stats()


def heatmap_network():
    """nodule-heatmap-lite0 with flip averaging: stride-16 cells of the image's brightness."""
    from lungcad.models import create_model

    net = create_model("nodule-heatmap-lite0", 2, pretrained=False, flip_average=True,
                       head_channels=8)
    net.stem = nn.Sequential(nn.AvgPool2d(8), _conv(1, 40))           # stride 8, 40 channels
    net.blocks8 = nn.ModuleList()
    net.blocks16 = nn.ModuleList([nn.AvgPool2d(2), _conv(40, 80)])   # stride 16, 80 channels
    net.blocks_tuned = nn.ModuleList([_conv(80, 112)])
    _brightness_head(net)
    with torch.no_grad():
        net.cells.weight.fill_(1.0 / 8)
        net.cells.bias.zero_()
    return net.eval()


NETWORKS = {"nodule-heatmap-lite0": heatmap_network}  # the one flip-averaged network


def as_model(architecture: str) -> LungModel:
    spec = ModelSpec(name=f"mirror-{architecture}", architecture=architecture, task="blob",
                     classes=["none", "blob"],
                     preprocessing=Preprocessing(size=SIDE, channels=1, mean=0.5, std=0.25))
    return LungModel(spec, NETWORKS[architecture]())


def blob_image(x: int, y: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = 0.45 + 0.02 * rng.random((SIDE, SIDE))  # just below the mean: ReLUs keep the blob
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    image[(xx - x) ** 2 + (yy - y) ** 2 <= 12 ** 2] = 0.95
    return image.astype(np.float32)


def test_every_flip_averaged_network_is_tested_here():
    from lungcad.models import create_model

    for name in NETWORKS:
        assert getattr(create_model(name, 2, pretrained=False, head_channels=8,
                                    flip_average=True), "flip_average") is True
    assert getattr(create_model("nodule-heatmap-lite0", 2, pretrained=False, head_channels=8),
                   "flip_average") is False


@pytest.mark.parametrize("architecture", sorted(NETWORKS))
@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam"])
@pytest.mark.parametrize("blob_x", [60, 196])
def test_saliency_peak_is_on_the_blobs_side(architecture, method, blob_x):
    model = as_model(architecture)
    image = blob_image(blob_x, 100)
    with torch.no_grad():  # the blob really is the strongest cell of both passes' mean
        heat = model.network.heatmap(torch.from_numpy(model.prepare(image))[None])[0, 0]
    cell_y, cell_x = np.unravel_index(int(heat.argmax()), heat.shape)
    assert abs((cell_x + 0.5) * SIDE / heat.shape[1] - blob_x) < 20
    peak_y, peak_x = global_peak(saliency_map(model, image, method))
    assert abs(peak_x - blob_x) < 20, (peak_x, blob_x)
    assert (peak_x < SIDE / 2) == (blob_x < SIDE / 2)


@pytest.mark.parametrize("architecture", sorted(NETWORKS))
def test_saliency_of_the_mirror_image_is_the_mirrored_saliency(architecture):
    """The flip-averaged score is symmetric, so the map of the mirror image must be the mirror of
    the map (it would not be if one pass's map were left out or left unflipped)."""
    model = as_model(architecture)
    image = blob_image(60, 80)
    image[180:220, 140:240] = 0.6  # a second, asymmetric structure
    heat = saliency_map(model, image)
    heat_of_mirror = saliency_map(model, image[:, ::-1].copy())
    assert np.allclose(heat_of_mirror, heat[:, ::-1], atol=1e-4)


# -- the bundled detector on a real JSRT nodule ----------------------------------------------

MM_PER_PX = 0.7  # JSRT at 512 px


@pytest.fixture(scope="module")
def jsrt_nodule(shared_data):
    import pandas as pd

    table = pd.read_csv(shared_data / "jsrt" / "labels.csv")
    row = table[table["path"] == "images/JPCLN004.png"].iloc[0]  # the image issue 23 cites
    return shared_data / "jsrt" / row["path"], float(row["x_512"]), float(row["y_512"]), \
        float(row["size_mm"]) / 2


def _within(x: float, y: float, nodule) -> bool:
    _, nx, ny, radius_mm = nodule
    return np.hypot(x - nx, y - ny) * MM_PER_PX <= radius_mm + 10.0


@pytest.mark.data
def test_jsrt_nodules_heatmap_peak_and_top_mark_lie_on_the_nodule(jsrt_nodule):
    import lungcad
    from lungcad.io import load_image

    model = lungcad.load_model("jsrt-nodules")
    image = load_image(jsrt_nodule[0]).array
    peak_y, peak_x = global_peak(model.explain(image))
    top = max(model.detect(image, spacing_mm=(MM_PER_PX, MM_PER_PX)), key=lambda f: f.score)
    assert _within(top.x, top.y, jsrt_nodule), (top.x, top.y, jsrt_nodule)
    assert _within(peak_x, peak_y, jsrt_nodule), (peak_x, peak_y, jsrt_nodule)
    assert not _within(image.shape[1] - peak_x, peak_y, jsrt_nodule)  # not its mirror place


@pytest.mark.data
def test_jsrt_nodules_dicom_overlay_heat_lies_on_the_nodule(jsrt_nodule, tmp_path):
    """The same image as a DICOM radiograph: the overlay's heat (red over blue) is on the nodule,
    its mirror place is cooler, and the SR's top finding is on the nodule."""
    import pydicom
    from pydicom.data import get_testdata_file

    import lungcad
    from lungcad.dicom_out import dicom_results, read_sr
    from lungcad.dicom_out.analysis import analyse
    from lungcad.io import load_image

    pixels = np.round(load_image(jsrt_nodule[0]).array * 4095).astype(np.uint16)
    ds = pydicom.dcmread(get_testdata_file("RG1_UNCI.dcm"))  # a real radiograph's header
    ds.Rows, ds.Columns = pixels.shape
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [MM_PER_PX, MM_PER_PX]
    for keyword in ("ImagerPixelSpacing", "WindowCenter", "WindowWidth", "VOILUTSequence"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.PixelData = pixels.tobytes()
    path = tmp_path / "jsrt.dcm"
    ds.save_as(path, enforce_file_format=True)

    model = lungcad.load_model("jsrt-nodules")
    _, analysis = analyse(model, path)
    peak_y, peak_x = global_peak(analysis.heatmap)
    assert _within(peak_x, peak_y, jsrt_nodule), (peak_x, peak_y)
    sr, overlay = dicom_results(model, path)
    findings = read_sr(sr)["findings"]
    top = max(findings, key=lambda f: f["score"])
    centre = top["points"][0]  # SCOORD (column, row) of the ring's centre
    assert _within(centre[0], centre[1], jsrt_nodule), top
    rgb = overlay.pixel_array.astype(int)
    heat = rgb[..., 0] - rgb[..., 2]
    _, nx, ny, _ = jsrt_nodule
    here = heat[int(ny) - 5:int(ny) + 6, int(nx) - 5:int(nx) + 6].mean()
    mirror_x = rgb.shape[1] - nx
    there = heat[int(ny) - 5:int(ny) + 6, int(mirror_x) - 5:int(mirror_x) + 6].mean()
    assert here > there + 20, (here, there)
