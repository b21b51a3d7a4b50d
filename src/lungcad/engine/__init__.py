"""Engines that run ``lungcad predict`` beyond one process: :mod:`lungcad.engine.ray_predict`
(Ray Data, an actor pool; ``lungcad predict --engine ray``). The prediction itself is
:func:`lungcad.prediction.predict_input`, the same code as a local run; what an engine adds is
where it runs and how finished work is kept (:mod:`lungcad.engine.shards`)."""
