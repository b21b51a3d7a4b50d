"""Age and sex: accepted forms, missing values, nonsense refused, and the fitted model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lungcad.detection.clinical import ClinicalModel, parse_age, parse_sex
from lungcad.errors import LungcadError


@pytest.mark.parametrize("value, years", [(63, 63.0), ("63", 63.0), (" 41.5 ", 41.5),
                                          ("063Y", 63.0), ("006M", 0.5), ("000D", 0.0),
                                          (np.int64(70), 70.0)])
def test_ages_in_every_accepted_form(value, years):
    assert parse_age(value) == pytest.approx(years)


@pytest.mark.parametrize("value", [None, "", "  ", float("nan")])
def test_a_missing_age_is_none(value):
    assert parse_age(value) is None


@pytest.mark.parametrize("value, message", [("sixty", "is not an age"), (-1, "out of range"),
                                            (130, "out of range"), ("inf", "out of range"),
                                            ("63X", "is not an age"), (True, "is not an age")])
def test_nonsense_ages_are_refused_with_a_message(value, message):
    with pytest.raises(LungcadError, match=message):
        parse_age(value, "--age")


@pytest.mark.parametrize("value, male", [("M", 1.0), ("male", 1.0), ("F", 0.0),
                                         ("Female", 0.0), (" f ", 0.0), (None, None),
                                         ("", None), ("O", None)])
def test_sexes(value, male):
    assert parse_sex(value) == male


@pytest.mark.parametrize("value", ["X", "2", "yes", "mf"])
def test_nonsense_sexes_are_refused(value):
    with pytest.raises(LungcadError, match="is not a sex"):
        parse_sex(value, "--sex")


def _cohort(n=400, seed=0):
    rng = np.random.default_rng(seed)
    age = rng.uniform(30, 85, n)
    male = (rng.random(n) < 0.5).astype(float)
    score = rng.uniform(0.05, 0.95, n)
    z = 2 * np.log(score / (1 - score)) + 0.08 * (age - 60) + 0.5 * male
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return score, age, male, y


def test_the_fitted_model_uses_age_and_sex_and_round_trips():
    score, age, male, y = _cohort()
    model = ClinicalModel.fit(score, age, male, y)
    assert model.coef_score > 0 and model.coef_age > 0
    older = model.predict([0.5, 0.5], [40, 80], [0, 0])
    assert older[1] > older[0]
    again = ClinicalModel.from_dict(model.to_dict())
    np.testing.assert_allclose(again.predict(score, age, male), model.predict(score, age, male))


def test_missing_values_take_the_training_means_and_say_so():
    score, age, male, y = _cohort()
    age[:5] = np.nan
    model = ClinicalModel.fit(score, age, male, y)
    assert model.mean_age == pytest.approx(np.nanmean(age))
    p_missing = model.predict([0.5], [np.nan], [np.nan])[0]
    p_mean = model.predict([0.5], [model.mean_age], [model.share_male])[0]
    assert p_missing == pytest.approx(p_mean) and 0 < p_missing < 1
    assert "age" in model.missing_note(None, 1.0) and "sex" not in model.missing_note(None, 1.0)
    assert model.missing_note(60.0, 0.0) == ""
    assert math.isfinite(model.predict([0.0], [60], [1])[0])  # a zero score is clipped


def test_a_damaged_entry_or_one_class_is_a_clear_error():
    with pytest.raises(LungcadError, match="damaged"):
        ClinicalModel.from_dict({"intercept": 1.0})
    with pytest.raises(LungcadError, match="malignant and other"):
        ClinicalModel.fit([0.2, 0.3], [50, 60], [1, 0], [0, 0])


def test_dicom_patient_age_and_sex_reach_the_image_metadata():
    from pydicom.data import get_testdata_file

    from lungcad.io import load_image

    ct = load_image(get_testdata_file("CT_small.dcm")).meta
    assert (ct.patient_age, ct.patient_sex) == ("000Y", "O")
    assert parse_age(ct.patient_age) == 0.0 and parse_sex(ct.patient_sex) is None
    radiograph = load_image(get_testdata_file("RG1_UNCI.dcm")).meta
    assert radiograph.patient_age is None and parse_sex(radiograph.patient_sex) == 0.0
