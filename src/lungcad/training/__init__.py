"""Training on Lightning: config files, data, the LightningModule, callbacks and the run folder.

Entry points: :func:`lungcad.training.run.train_run` and :func:`lungcad.training.config.load_config`
(imported lazily: this package must not pull in torch when the CLI starts).
"""
