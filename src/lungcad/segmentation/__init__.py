"""Lung-field segmentation of chest radiographs: the network's mask cleaned as a user expects
(the two largest regions, holes filled), checked for a plausible pair of lungs, and measured
per side (:mod:`~lungcad.segmentation.masks`); one image segmented end to end
(:mod:`~lungcad.segmentation.predict`)."""
