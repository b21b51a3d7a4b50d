"""Nodule marks on chest radiographs: a detector's cell maps turned into findings.

- :mod:`~lungcad.detection.marks`: local maxima of the nodule map inside the (dilated) lung mask,
  in the input's own pixel coordinates (:class:`lungcad.findings.Finding`);
- :mod:`~lungcad.detection.detect`: one image end to end (network, lungs, marks).
"""
