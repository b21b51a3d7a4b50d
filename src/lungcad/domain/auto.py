"""``auto``: the bundled model(s) for each input's modality, so a user need not choose.

An input's modality comes from its DICOM ``Modality`` tag where it has one, else from the
shipped modality classifier (:func:`lungcad.domain.modality.guess_modality`). The models of a
modality are the bundled classifiers and detectors whose model.json names it (segmenters such
as ``jsrt-lungs`` draw masks, not verdicts: ``lungcad segment``). An image the classifier
calls neither a chest radiograph nor a CT slice (a photograph, a gradient, a blank page) goes
to no model (:func:`routed`), and the answer says why (:func:`not_routed`); a named model still
reads it, flagged out of domain.

- ``lungcad.load_model("auto")`` gives an :class:`AutoModel`: ``predict(image)`` returns an
  :class:`AutoPrediction` (the modality, and one prediction per model of that modality);
- ``lungcad predict auto INPUT...`` routes a mixed folder (``lungcad.commands.predict_auto``);
- the web page's default choice is ``auto`` too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from lungcad.domain.check import predict_image
from lungcad.domain.modality import MODALITIES, NAMES, ModalityGuess, canonical, guess_modality
from lungcad.errors import LungcadError
from lungcad.io import read_input

AUTO = "auto"


def bundled_by_modality() -> dict[str, list[str]]:
    """``{"radiograph": [...], "ct": [...]}``: bundled models that give verdicts, by modality
    (read from their model.json only; no model is loaded)."""
    from lungcad.data.tasks import TASKS
    from lungcad.model_dir import BUNDLED_DIR, SPEC_FILE, bundled_models

    out: dict[str, list[str]] = {"radiograph": [], "ct": []}
    for name in bundled_models():
        spec = json.loads((BUNDLED_DIR / name / SPEC_FILE).read_text())
        task = TASKS.get(spec.get("task"))
        if task is not None and task.segmentation:
            continue
        modality = canonical(spec.get("modality"))
        if modality in out:
            out[modality].append(name)
    return out


def routed(guess: ModalityGuess) -> str | None:
    """The modality whose models read an image (``radiograph`` or ``ct``), or None for one that
    is neither: no model of either modality is meant for it."""
    return guess.modality if guess.modality in MODALITIES else None


def not_routed(guess: ModalityGuess, name: str = "image") -> str:
    """Why ``auto`` sent an image to no model, and what to do about it."""
    return (f"{name}: sent to no model: it is {guess.describe()}. The models read chest "
            "radiographs and CT slices; to read it anyway, pick a model by name (the page's "
            "model menu, or `lungcad predict MODEL FILE`): its answer will be flagged out of "
            "domain")


def models_for(modality: str) -> list[str]:
    names = bundled_by_modality().get(modality, [])
    if not names:
        raise LungcadError(f"no bundled model reads {NAMES.get(modality, modality)}s")
    return names


@dataclass
class AutoPrediction:
    """What ``auto`` says about one image: its modality and each chosen model's prediction."""

    modality: ModalityGuess
    predictions: dict = field(default_factory=dict)  # model name -> ImagePrediction

    def verdict(self) -> str:
        if routed(self.modality) is None:
            return not_routed(self.modality)
        head = f"{self.modality.describe()}; models: {', '.join(self.predictions)}"
        return "\n".join([head] + [f"{name}: {p.verdict()}"
                                   for name, p in self.predictions.items()])


class AutoModel:
    """``load_model("auto")``: loads the bundled models of each modality on first need."""

    def __init__(self, loader):
        self._loader = loader  # name -> LungModel (lungcad.inference.load_model, one runtime)
        self._models: dict[str, object] = {}

    def model(self, name: str):
        if name not in self._models:
            self._models[name] = self._loader(name)
        return self._models[name]

    def predict(self, image, modality: str | None = None) -> AutoPrediction:
        """One image (a path, or a 2-D array in [0, 1] with its ``modality`` where known)
        through every bundled model of its modality."""
        given = read_input(image, modality)
        image, modality = given.array, given.meta.modality
        guess = guess_modality(image, modality)
        if routed(guess) is None:
            return AutoPrediction(guess)
        tag = modality if canonical(modality) != "unknown" else guess.modality
        return AutoPrediction(guess, {name: predict_image(self.model(name), image, tag)
                                      for name in models_for(guess.modality)})
