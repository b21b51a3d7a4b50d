"""Training: configs, the trainer registry, the one code path from a config to a model
directory (:func:`lungcad.training.fit.train`), and the trainers (Lightning, linear probe,
nodule heatmap). Heavy libraries are imported inside functions: this package must not pull in
torch when the CLI starts.
"""
