"""Read a DICOM source (a path, bytes, or a pydicom dataset), choose the model for it, and run
the model: class probabilities, saliency heatmap, detector findings."""

from __future__ import annotations

import io
import threading
import warnings
from pathlib import Path
from typing import Sequence, Union

from lungcad.dicom_out.common import Analysis, dataset_spacing
from lungcad.errors import LungcadError

DicomSource = Union[str, Path, bytes, "pydicom.Dataset"]  # noqa: F821

# The DICOM Modality values --model auto takes (radiograph or CT), and the one model each gets
# where lungcad.load_model("auto") (every bundled model of the modality) is not available.
MODEL_BY_MODALITY = {"CR": "jsrt-malignant", "DX": "jsrt-malignant", "DR": "jsrt-malignant",
                     "RG": "jsrt-malignant", "CT": "ct-normal-vs-abnormal"}


def read_source(source: DicomSource, label: str | None = None):
    """(pydicom dataset, encoded bytes, label) of a DICOM source; a LungcadError that says it
    needs DICOM for anything else."""
    import pydicom

    if isinstance(source, pydicom.Dataset):
        buf = io.BytesIO()
        try:
            pydicom.dcmwrite(buf, _with_file_meta(source), enforce_file_format=True)
        except Exception as exc:  # noqa: BLE001  pydicom raises many types on bad datasets
            raise LungcadError(f"{label or 'dataset'}: cannot be encoded as DICOM ({exc})") from None
        data = buf.getvalue()
        label = label or f"SOP instance {source.get('SOPInstanceUID', '?')}"
    elif isinstance(source, (bytes, bytearray)):
        data, label = bytes(source), label or "DICOM data"
    else:
        path = Path(source)
        label = label or str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise LungcadError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    if data[128:132] != b"DICM":
        raise LungcadError(f"{label}: DICOM results (--dicom-out, listen, pacs) need DICOM input; "
                           "this file is not DICOM")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = (source if isinstance(source, pydicom.Dataset)
                  else pydicom.dcmread(io.BytesIO(data), force=True))
    except Exception as exc:  # noqa: BLE001
        raise LungcadError(f"{label} is not a readable DICOM file ({exc})") from None
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if not ds.get(keyword):
            raise LungcadError(f"{label}: DICOM without {keyword}; results cannot reference it")
    return ds, data, label


def _with_file_meta(ds):
    """``ds``, or a shallow copy with a file meta header (a data set built in memory or
    received without one is written as Explicit VR Little Endian)."""
    import copy

    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return ds
    ds = copy.copy(ds)
    ds.file_meta = FileMetaDataset(meta or {})
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


class ModelChooser:
    """The model(s) for each image: one named model, or with ``auto`` the models of the image's
    modality from its DICOM Modality tag: every bundled model of that modality where
    ``lungcad.load_model("auto")`` gives an AutoModel (:mod:`lungcad.domain.auto`), else the
    one in :data:`MODEL_BY_MODALITY`. Loaded models are kept; hold :attr:`lock` to run them."""

    def __init__(self, name: str = "auto", loader=None):
        if loader is None:
            from lungcad.inference import load_model as loader
        self.name, self._load, self._models = str(name), loader, {}
        self._auto = None if self.name == "auto" else False
        self.lock = threading.Lock()  # one model run at a time: torch on a small CPU

    def _auto_model(self):
        if self._auto is None:
            try:
                auto = self._load("auto")
            except LungcadError:
                auto = None
            self._auto = auto if hasattr(auto, "model") else False
        return self._auto

    def model_names_for(self, ds) -> list[str]:
        """The names of the models that run on ``ds`` (a LungcadError where none suits it)."""
        if self.name != "auto":
            return [self.name]
        modality = str(ds.get("Modality", "") or "").upper()
        if modality not in MODEL_BY_MODALITY:
            raise LungcadError(f"no model for DICOM Modality {modality or 'missing'!r} "
                               f"(--model auto knows {', '.join(sorted(MODEL_BY_MODALITY))}); "
                               "name a model with --model")
        if self._auto_model():
            try:
                from lungcad.domain.auto import models_for

                return list(models_for("ct" if modality == "CT" else "radiograph"))
            except (ImportError, LungcadError):
                pass
        return [MODEL_BY_MODALITY[modality]]

    def models_for(self, ds) -> list:
        """The loaded models for ``ds``."""
        auto = self._auto_model() if self.name == "auto" else None
        out = []
        for name in self.model_names_for(ds):
            if name not in self._models:
                self._models[name] = auto.model(name) if auto else self._load(name)
            out.append(self._models[name])
        return out

    def model_for(self, ds):
        """The first of :meth:`models_for`."""
        return self.models_for(ds)[0]


_EXPLAINERS: dict[int, object] = {}


def _heatmap(model, image, method: str):
    """Saliency map at the image's shape; an Explainer is kept per model (the first is slow)."""
    from lungcad.explain import Explainer

    key = id(model)
    explainer = _EXPLAINERS.get(key)
    if explainer is None or getattr(explainer, "model", None) is not model \
            or explainer.method != method:
        explainer = _EXPLAINERS[key] = Explainer(model, method)
    return explainer(image)


def analyse(model, source: DicomSource, *, findings: Sequence | None = None,
            in_domain: bool | None = None, heatmap: bool = True,
            heatmap_method: str = "gradcam", label: str | None = None):
    """(source dataset, :class:`Analysis`) of one DICOM image with ``model``."""
    from lungcad.io import load_image

    ds, data, label = read_source(source, label)
    kind = getattr(model, "kind", "classifier")
    if kind not in ("classifier", "detector"):
        raise LungcadError(f"{model.spec.name} is a {kind}; DICOM results are written for "
                           "classifiers and detectors")
    loaded = load_image(data, name=label)
    image, modality = loaded.array, loaded.meta.modality
    spacing = dataset_spacing(ds) or loaded.meta.pixel_spacing_mm
    if findings is None and kind == "detector":
        from lungcad.detection.detect import detect

        findings = list(detect(model, image, spacing_mm=spacing, modality=modality))
    spec = model.spec
    result = Analysis(model_name=spec.name, model_version=str(spec.version), kind=kind,
                      probabilities={}, label=None, threshold=None,
                      threshold_rule=getattr(spec, "threshold_rule", ""),
                      in_domain=in_domain, findings=list(findings or []), image=image,
                      pixel_spacing_mm=spacing)
    if hasattr(model, "predict_proba"):
        from lungcad.domain.check import predict_image

        prediction = predict_image(model, image, modality)
        result.probabilities = dict(prediction.probabilities)
        result.label, result.threshold = prediction.label, prediction.threshold
        if getattr(prediction, "in_domain", None) is not None and result.in_domain is None:
            result.in_domain = bool(prediction.in_domain)
        if len(model.classes) == 2:
            result.positive_class = model.classes[-1]
    if heatmap:
        try:
            result.heatmap = _heatmap(model, image, heatmap_method)
        except LungcadError:
            if kind == "classifier":
                raise  # a detector may have no saliency; its marks are drawn anyway
    return ds, result
