"""Know when not to answer: the modality of an input, and whether it looks like a model's
training images.

- :mod:`lungcad.domain.descriptors`: cheap image statistics (numpy only, runtime-independent);
- :mod:`lungcad.domain.modality`: radiograph, CT slice or neither (DICOM tag, else a shipped
  classifier; a refusal only where the input is certainly the other modality);
- :mod:`lungcad.domain.variants`: realistic acquisition variants and neither-modality pictures,
  made at run time to train and test the modality check;
- :mod:`lungcad.domain.reference`: a model's training inputs summarised, the out-of-domain score
  and its out-of-fold threshold (``domain.npz`` in the model directory);
- :mod:`lungcad.domain.check`: what every prediction runs (refusal, score, ``in_domain``);
- :mod:`lungcad.domain.fit`: adds the reference and the calibration to a model directory
  (``lungcad experiment --final``, ``lungcad calibrate``);
- :mod:`lungcad.domain.auto`: the ``auto`` model choice by modality (none for ``neither``).
"""
