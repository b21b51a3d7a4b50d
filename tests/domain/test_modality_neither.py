"""The modality check's three answers: a chest radiograph (however it was acquired and stored) is
never refused as a CT slice, a CT slice still goes to the CT models, and a picture that is
neither (a colour gradient, a blank page, noise) goes to no model, with the reason; ``lungcad
segment`` flags it as the classifiers do. Radiograph variants are made here from the shared
JSRT images and the RG1_UNCI.dcm sample (nothing derived from them is stored)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pictures import colour_gradient


@pytest.fixture(scope="module")
def gradient_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("neither") / "gradient.png"
    path.write_bytes(colour_gradient())
    return path


def _load(data: bytes, name: str = "x.png") -> np.ndarray:
    import warnings

    from lungcad.io import load_image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the colour note: asserted in the CLI test
        return load_image(data, name=name).array


def test_a_colour_gradient_a_blank_image_and_noise_are_neither():
    from lungcad.domain.modality import guess_modality

    rng = np.random.default_rng(0)
    pictures = {"gradient": _load(colour_gradient()),
                "blank": np.full((600, 800), 0.5, np.float32),
                "noise": rng.uniform(0, 1, (512, 512)).astype(np.float32)}
    for name, image in pictures.items():
        guess = guess_modality(image)
        assert guess.modality == "neither", (name, guess)
        assert guess.reason and "neither" in guess.describe(), name
    assert "uniform" in guess_modality(pictures["blank"]).reason


def _never_refused(images, what):
    from lungcad.domain.modality import guess_modality, refusal

    answers = [guess_modality(image) for image in images]
    for k, guess in enumerate(answers):
        assert refusal(guess, "chest radiograph", "jsrt-nodules") is None, (what, k, guess)
        assert not (guess.modality == "ct" and guess.sure), (what, k, guess)
    return answers


def test_jsrt_radiograph_variants_are_never_refused(shared_data):
    """Every transform family (windowing, processing, inversion, field of view, markers,
    noise, size, JPEG) on a few JSRT images: never refused as CT."""
    from lungcad.domain import variants
    from lungcad.io import load_image

    rng = np.random.default_rng(26)
    paths = sorted((shared_data / "jsrt" / "images").glob("*.png"))[::50]
    images = []
    for path in paths:
        image = load_image(path).array
        images += [variants.apply(image, rng, [family]) for family in variants.FAMILIES]
        images += [variants.radiograph_variant(image, rng, count=4) for _ in range(2)]
    answers = _never_refused(images, "jsrt variants")
    routed = np.mean([g.modality == "radiograph" for g in answers])
    assert routed >= 0.9, routed


def test_a_modern_dicom_radiograph_by_its_pixels_is_never_refused():
    """RG1_UNCI.dcm (a computed radiograph from another site, never trained on) without its
    tag: as read, inverted, 1024 px, RGB-stored JPEG and PNG, and random variants."""
    from pydicom.data import get_testdata_file

    from lungcad.domain import variants
    from lungcad.domain.modality import guess_modality
    from lungcad.io import load_image
    from lungcad.preprocess import resize_area

    found = get_testdata_file("RG1_UNCI.dcm", download=False)
    if not found:
        pytest.skip("RG1_UNCI.dcm is not installed (pydicom-data)")
    image = load_image(found).array
    assert guess_modality(image).modality == "radiograph"
    rng = np.random.default_rng(23)
    small = resize_area(image, (1024, int(1024 * image.shape[1] / image.shape[0])))
    stored = [_load(variants.encode(small, "jpeg", rgb=True, quality=q), "x.jpg")
              for q in (30, 75, 95)]
    stored.append(_load(variants.encode(small, "png", rgb=True)))
    made = [variants.radiograph_variant(small, rng) for _ in range(12)]
    _never_refused([image, 1.0 - image, small, *stored, *made], "RG1_UNCI")


def test_ct_slices_still_go_to_the_ct_models(shared_data):
    from lungcad.domain import variants
    from lungcad.domain.auto import routed
    from lungcad.domain.modality import guess_modality, refusal
    from lungcad.io import load_image

    rng = np.random.default_rng(5)
    paths = [shared_data / "iqothnccd" / p for p in
             pd.read_csv(shared_data / "iqothnccd" / "labels.csv")["path"][::250]]
    paths += [shared_data / "chest_ct_kaggle" / p for p in
              pd.read_csv(shared_data / "chest_ct_kaggle" / "labels.csv")["path"][::200]]
    for path in paths:
        image = load_image(path).array
        for picture in (image, variants.ct_variant(image, rng)):
            guess = guess_modality(picture)
            assert routed(guess) == "ct", (path.name, guess)
        assert refusal(guess_modality(image), "chest radiograph", "jsrt-nodules")


def test_predict_auto_sends_the_gradient_to_no_model_and_says_why(gradient_file, tmp_path,
                                                                   capsys):
    from lungcad.cli import main

    assert main(["predict", "auto", str(gradient_file)]) == 1
    captured = capsys.readouterr()
    assert "sent to no model" in captured.err and "neither" in captured.err
    assert "jsrt" not in captured.out  # no radiograph model answered
    assert ".py:" not in captured.err  # no raw Python warning


@pytest.mark.filterwarnings("ignore::lungcad.io.ImageReadWarning")
def test_load_model_auto_and_the_rest_modality_route_send_it_nowhere(gradient_file):
    import lungcad
    from fastapi.testclient import TestClient

    from lungcad.model_dir import BUNDLED_DIR
    from lungcad.serving.app import create_app

    result = lungcad.load_model("auto").predict(str(gradient_file))
    assert result.modality.modality == "neither" and not result.predictions
    assert "sent to no model" in result.verdict()
    with TestClient(create_app([BUNDLED_DIR / "jsrt-malignant"]),
                    base_url="http://127.0.0.1:8000") as client:
        answer = client.post("/api/v1/modality",
                             files={"file": ("gradient.png", gradient_file.read_bytes())})
    assert answer.status_code == 200
    body = answer.json()
    assert body["modality"] == "neither" and body["models"] == []
    assert "neither" in body["reason"] and "gradient.png" in body["reason"]


@pytest.mark.filterwarnings("ignore::lungcad.io.ImageReadWarning")
def test_a_named_model_answers_the_gradient_flagged_not_refused(gradient_file):
    import lungcad

    prediction = lungcad.load_model("jsrt-malignant").predict(str(gradient_file))
    assert prediction.in_domain is False
    assert "neither a chest radiograph nor a CT slice" in prediction.domain_note


def test_segment_flags_the_gradient_without_a_raw_warning(gradient_file, tmp_path, capsys):
    from lungcad.cli import main
    from lungcad.model_dir import bundled_models

    if "jsrt-lungs" not in bundled_models():
        pytest.skip("the bundled jsrt-lungs model is not installed")
    status = main(["segment", "jsrt-lungs", str(gradient_file), "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert status == 0
    row = pd.read_csv(tmp_path / "segmentation.csv").iloc[0]
    assert not bool(row["in_domain"]) and row["domain_score"] > 0
    assert "OUT OF DOMAIN" in row["warning"] and "neither" in row["warning"]
    assert "OUT OF DOMAIN" in captured.out
    lines = captured.err.splitlines()
    assert any("OUT OF DOMAIN" in line and line.startswith("lungcad segment: warning:")
               for line in lines)
    # the reader's colour note is one line of its own, not Python's warning format
    assert any(line.startswith("lungcad segment: note:") and "colour" in line for line in lines)
    assert not any("ImageReadWarning" in line or ".py:" in line for line in lines)


def test_segment_keeps_a_jsrt_radiograph_in_domain(shared_data, tmp_path):
    import lungcad

    model = lungcad.load_model("jsrt-lungs")
    result = model.segment(shared_data / "jsrt" / "images" / "JPCLN001.png")
    assert result.in_domain is True and result.plausible
    # in domain, so no out-of-domain note; but jsrt-lungs was trained on every JSRT image, and
    # the note says so (lungcad.domain.training_data)
    assert "OUT OF DOMAIN" not in result.domain_note
    assert result.domain_note.startswith("IN TRAINING DATA")


def test_a_refusal_needs_the_classifier_sure_and_the_image_typical_of_the_other_modality():
    """decide(): CT at p = 0.99 is certain only where the image is also typical of the CT
    training slices; 'neither' is never a refusal, however sure."""
    from lungcad.domain.modality import ModalityGuess, decide, refusal

    sure = np.array([0.005, 0.99, 0.005])
    assert decide(sure, np.array([5.0, 0.8])) == ("ct", True)
    assert decide(sure, np.array([5.0, 1.5])) == ("ct", False)  # unlike the CT slices
    assert decide(np.array([0.03, 0.96, 0.01]), np.array([5.0, 0.2])) == ("ct", False)
    assert decide(np.array([0.0, 0.01, 0.99]), np.array([9.0, 9.0])) == ("neither", True)
    certain = ModalityGuess("ct", 0.99, "image classifier", certain=True)
    unsure = ModalityGuess("ct", 0.99, "image classifier", certain=False)
    neither = ModalityGuess("neither", 0.999, "image classifier", "its layout is unlike",
                            certain=True)
    assert refusal(certain, "chest radiograph", "m") is not None
    assert refusal(unsure, "chest radiograph", "m") is None
    assert refusal(neither, "chest radiograph", "m") is None
    assert refusal(neither, "ct", "m") is None
