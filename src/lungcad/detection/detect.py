"""One radiograph end to end: the detector's cell maps, the lung mask, the marks.

Pixel spacing, for the marks' radii and spacing rules: the DICOM's (or ``spacing_mm`` given),
else the JSRT field of view (a 2048 px, 0.175 mm film resized to the image's width), which is
what a shared JSRT PNG is; other images without a spacing get that assumption too, and the
result says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from lungcad.detection.marks import MarkSettings, allowed_cells, marks_from_cells
from lungcad.errors import LungcadError
from lungcad.findings import Finding
from lungcad.io import read_input
from lungcad.segmentation.predict import bundled_lung_model, segment

ASSUMED_SPACING = ("no pixel spacing known: assumed the JSRT field of view "
                   "(358 mm across the image's width)")
NO_LUNG_MODEL = ("the lung segmenter jsrt-lungs is not installed: marks may fall anywhere in "
                 "the image, not only in the lungs")


@dataclass
class Detection:
    """The marks on one image (iterating gives them, strongest first) and what they came from."""

    findings: list[Finding]
    nodule_map: np.ndarray            # (G, G) P(nodule) per cell
    malignant_map: np.ndarray         # (G, G) P(malignant | nodule) per cell
    lung_mask: np.ndarray | None      # bool (H, W), None without a lung segmenter
    mm_per_pixel: float
    warnings: list[str] = field(default_factory=list)
    malignancy_age_sex: float | None = None  # P(malignant) with age and sex (see clinical)
    age_sex_note: str = ""                   # which of age/sex were missing, and what was used
    # a two-stage detector's candidates (score: stage 1's P(nodule)) and stage 2's P(nodule)
    # of each; empty for a one-stage detector
    candidates: list[Finding] = field(default_factory=list)
    candidate_p2: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __iter__(self):
        return iter(self.findings)

    def __len__(self) -> int:
        return len(self.findings)

    @property
    def nodule_probability(self) -> float:
        """P(any nodule): the strongest cell anywhere, as the image-level output gives it."""
        return float(self.nodule_map.max())

    @property
    def malignancy(self) -> float:
        """Image-only malignancy score: the strongest cell of P(nodule) * P(malignant | nodule)."""
        return float((self.nodule_map * self.malignant_map).max())


def add_age_sex(detection: Detection, clinical: dict | None, age=None, sex=None) -> Detection:
    """Fill ``malignancy_age_sex`` from the model's age/sex model (model.json ``detection.
    clinical``), where it has one; ``age``/``sex`` as :mod:`lungcad.detection.clinical` reads
    them (nonsense is refused), missing ones replaced by the training means (said in the note)."""
    from lungcad.detection.clinical import ClinicalModel, parse_age, parse_sex

    years, male = parse_age(age), parse_sex(sex)
    if not clinical:
        return detection
    model = ClinicalModel.from_dict(clinical)
    detection.malignancy_age_sex = float(model.predict(
        [detection.malignancy], [np.nan if years is None else years],
        [np.nan if male is None else male])[0])
    detection.age_sex_note = model.missing_note(years, male)
    return detection


def detect_image(model, image: np.ndarray, source: str = "image",
                 spacing_mm: tuple[float, float] | None = None, modality: str = "unknown",
                 settings: MarkSettings | None = None, lungs=None,
                 second_stage: dict | None = None) -> Detection:
    """Marks on ``image`` (2-D, [0, 1]) by the detector ``model`` (a :class:`LungModel`), inside
    the lung mask of the segmenter ``lungs`` (a LungModel; None: anywhere, with a warning);
    ``second_stage``: :class:`~lungcad.detection.second_stage.SecondStageSettings` fields to
    change (a two-stage detector only)."""
    from lungcad.jsrt_geometry import jsrt_mm_per_pixel

    if not getattr(model, "marks_nodules", False):
        why = ("its ONNX file has no cell maps (exported by an older lungcad): export it again "
               "with `lungcad export`, or use --runtime torch"
               if getattr(model, "kind", None) == "detector" else "it has no cell maps to mark")
        raise LungcadError(f"{model.spec.name} cannot mark nodules: {why}")
    scorer = getattr(model, "candidate_scorer", None)
    if second_stage and scorer is None:
        raise LungcadError(f"{model.spec.name} is a one-stage detector: it has no second-stage "
                           "settings to change")
    if settings is None:
        settings = MarkSettings.from_mapping((model.spec.detection or {}).get("marks"))
    image = np.asarray(image, dtype=np.float32)
    prepared = model.prepare(image, source)
    cells = model.cell_maps(prepared[None])
    nodule, malignant = cells[0, 0], cells[0, 1]
    warnings: list[str] = []
    if spacing_mm is not None:
        mm_per_pixel = float(np.sqrt(float(spacing_mm[0]) * float(spacing_mm[1])))
    else:
        mm_per_pixel = jsrt_mm_per_pixel(image.shape[1])
        warnings.append(ASSUMED_SPACING)
    lung_mask = None
    if lungs is None:
        warnings.append(NO_LUNG_MODEL)
    else:
        segmentation = segment(lungs, image, spacing_mm, modality)
        lung_mask = segmentation.mask
        warnings += segmentation.warnings
    allowed = allowed_cells(lung_mask, nodule.shape, mm_per_pixel, settings.lung_margin_mm)
    candidates, p2 = [], np.zeros(0)
    if scorer is not None:   # a two-stage detector: candidates, re-scored
        from lungcad.detection.second_stage import (SecondStageSettings,
                                                    candidate_probabilities, rescored)

        second = SecondStageSettings.from_mapping(
            {**dict((model.spec.detection or {}).get("second_stage") or {}),
             **dict(second_stage or {})})
        looked = replace(settings, peaks=second.candidates, min_score=0.0,
                         min_distance_mm=second.candidate_distance_mm)
        candidates = marks_from_cells(nodule, malignant, allowed, image.shape, mm_per_pixel,
                                      looked)
        p2 = candidate_probabilities(scorer, prepared, candidates, image.shape, mm_per_pixel)
        findings = rescored(candidates, p2, mm_per_pixel, settings)
    else:
        findings = marks_from_cells(nodule, malignant, allowed, image.shape, mm_per_pixel,
                                    settings)
    return Detection(findings, nodule, malignant, lung_mask, mm_per_pixel, warnings,
                     candidates=candidates, candidate_p2=p2)


_BUNDLED_LUNGS = object()  # default of detect(lungs=...): the bundled jsrt-lungs


def detect(model, image, spacing_mm: tuple[float, float] | None = None,
           modality: str | None = None, marks: dict | None = None, age=None, sex=None,
           lungs=_BUNDLED_LUNGS, second_stage: dict | None = None) -> Detection:
    """Nodule marks on one image (a path, or a 2-D array in [0, 1]) by ``model`` (a detector
    LungModel): a :class:`Detection` whose ``findings`` (iterating it gives them) are
    :class:`~lungcad.findings.Finding` in the image's own pixel coordinates, strongest first;
    only inside the lungs of ``lungs`` (a segmenter; default the bundled ``jsrt-lungs`` where it
    is installed, None for no lung mask). ``spacing_mm`` (row, column) where the image has none
    of its own (DICOM has); ``marks``: :class:`~lungcad.detection.marks.MarkSettings` fields to
    change; ``second_stage``: a two-stage detector's
    :class:`~lungcad.detection.second_stage.SecondStageSettings` fields to change (e.g. how
    many candidates it looks at); ``age`` (years, or DICOM ``063Y``) and ``sex`` (M/F) for the
    malignancy with age and sex (from the DICOM's PatientAge/PatientSex where the image is a
    DICOM path and they are None)."""
    if model.kind != "detector":
        raise LungcadError(f"{model.spec.name} is a {model.kind}: it does not mark nodules; "
                           "use a detector such as jsrt-nodules")
    given = read_input(image, modality, spacing_mm)
    age = given.meta.patient_age if age is None else age
    sex = given.meta.patient_sex if sex is None else sex
    if lungs is _BUNDLED_LUNGS:
        lungs = bundled_lung_model()
    extra = model.spec.detection or {}
    settings = MarkSettings.from_mapping({**dict(extra.get("marks") or {}), **dict(marks or {})})
    detection = detect_image(model, given.array, given.source, given.meta.pixel_spacing_mm,
                             given.meta.modality, settings, lungs, second_stage)
    return add_age_sex(detection, extra.get("clinical"), age, sex)
