"""An experiment's config: a training config (any registered trainer) plus the experiment's
own key, ``localisation``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from lungcad.errors import LungcadError

EXPERIMENT_KEYS = ("localisation",)


@dataclass(frozen=True)
class ExperimentOptions:
    """What the experiment does beside training: localisation scoring."""

    trainer: str = "lightning"
    localisation: bool = False
    saliency_method: str = "gradcam"
    margin_mm: float = 10.0


def parse_localisation(value) -> dict:
    if value is None or isinstance(value, bool):
        return {"localisation": bool(value)}
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"method", "margin_mm"})
        if unknown:
            raise LungcadError(f"config: localisation has unknown key(s) {unknown}; use "
                               "localisation: true, or {method: gradcam, margin_mm: 10}")
        from lungcad.explain.saliency import check_method

        try:
            margin = float(value.get("margin_mm", 10.0))
        except (TypeError, ValueError):
            raise LungcadError(f"config: localisation.margin_mm must be a number, got "
                               f"{value.get('margin_mm')!r}") from None
        if margin < 0:
            raise LungcadError(f"config: localisation.margin_mm must be >= 0, got {margin}")
        return {"localisation": True,
                "saliency_method": check_method(str(value.get("method", "gradcam"))),
                "margin_mm": margin}
    raise LungcadError(f"config: localisation must be true, false or a mapping, got {value!r}")


def load_experiment_config(path: str | Path,
                           overrides: Sequence[str] = ()) -> tuple[dict, ExperimentOptions]:
    """The training config of ``path`` with ``key=value`` overrides (checked by its trainer,
    as ``lungcad train`` checks it), and the experiment options."""
    from lungcad.training.config import config_from_mapping
    from lungcad.training.config_io import apply_overrides, read_yaml

    path = Path(path)
    data = read_yaml(path)
    own = [o for o in overrides if o.split("=", 1)[0].strip() in EXPERIMENT_KEYS]
    rest = [o for o in overrides if o not in own]
    experiment = {k: data.pop(k) for k in EXPERIMENT_KEYS if k in data}
    apply_overrides(experiment, own)
    config = config_from_mapping(data, path.resolve().parent, rest, source=path)
    options = ExperimentOptions(trainer=config["trainer"],
                                **parse_localisation(experiment.get("localisation")))
    return config, options
