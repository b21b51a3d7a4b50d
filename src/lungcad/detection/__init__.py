"""Nodule marks on chest radiographs: a detector's cell maps turned into findings.

- :mod:`~lungcad.detection.marks`: local maxima of the nodule map inside the (dilated) lung mask,
  in the input's own pixel coordinates (:class:`lungcad.findings.Finding`);
- :mod:`~lungcad.detection.detect`: one image end to end (network, lungs, marks);
- :mod:`~lungcad.detection.candidates`: candidates for a second stage (multi-scale blob filters,
  map maxima, their union) and their recall; :mod:`~lungcad.detection.candidate_rank` re-ranks
  them with a small model fitted on training images;
- :mod:`~lungcad.detection.simulate`: synthetic nodules (projected spheres, pasted real ones) on
  a fold's training images only.
"""
