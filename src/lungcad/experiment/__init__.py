"""Cross-validation of one config, fold by fold (``lungcad experiment``), and the model to ship
after it (``--final``), in one-job modules:

- :mod:`~lungcad.experiment.config`: the config and the experiment's own keys;
- :mod:`~lungcad.experiment.folds`: one fold: train (through :func:`lungcad.training.fit.train`),
  read the threshold decided on its validation part, predict its test part;
- :mod:`~lungcad.experiment.run`: every fold, the out-of-fold pool, meta.json;
- :mod:`~lungcad.experiment.summary`: per-fold metrics, mean ± SD, the pooled report;
- :mod:`~lungcad.experiment.final`: the final model on every image, with its model card.

The experiment folder ``DIR``::

    DIR/fold-<k>/                      the training run folder (config.yaml, model/ ...)
    DIR/fold-<k>/val_predictions.csv   the fold's validation part, predicted by its model
    DIR/fold-<k>/threshold.json        the decision threshold, decided on those alone
    DIR/fold-<k>/test_predictions.csv  the fold's held-out test part at that threshold
    DIR/fold-<k>/localisation.json     saliency peaks against nodule positions (if asked)
    DIR/oof_predictions.csv, DIR/report/, DIR/summary.json, summary.md, meta.json

The one rule: no threshold is ever chosen on test predictions. A fold's threshold is decided by
:func:`lungcad.evaluation.thresholds.decide_threshold`, which accepts nothing but
:class:`~lungcad.evaluation.thresholds.ValidationPredictions` (built from the fold's validation
part, refusing any test image), before any test image is predicted; the pooled report scores
each fold's ``predicted_label`` as written.
"""
