"""Export a model to ONNX or TorchScript, checked against PyTorch; run it with ONNX Runtime.

- :func:`~lungcad.export.onnx_export.export_onnx` / ``lungcad export MODEL --format onnx``: a
  self-contained ``.onnx`` file (dynamic batch axis, output = class probabilities) whose
  ``metadata_props`` carry the model.json, the model card and the export details; a copy of the
  model.json (plus an ``export`` block) is written beside it as ``FILE.json``.
- :func:`~lungcad.export.torchscript.export_torchscript`: the same as a TorchScript archive, the
  metadata in its ``_extra_files``.
- :mod:`~lungcad.export.onnx_runtime`: a :class:`~lungcad.lung_model.LungModel` whose forward
  pass runs on ONNX Runtime (CPUExecutionProvider); preprocessing and decision are LungModel's
  own. Load one with ``lungcad.load_model(name_or_path, runtime="onnx")``.

Every export is compared with PyTorch on random inputs (batch sizes 1 and 3) and refused with a
:class:`~lungcad.errors.LungcadError` where the probabilities differ by more than the tolerance.

Importing this package imports neither torch nor onnxruntime.
"""

from __future__ import annotations

DEFAULT_TOLERANCE = 1e-4  # largest allowed |p_torch - p_export| in the equivalence check
