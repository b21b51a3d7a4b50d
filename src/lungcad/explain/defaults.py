"""Default settings of localisation scoring (no imports, so the CLI parser reads them cheaply).
JSRT's geometry (pixel size, coordinate frame) is :mod:`lungcad.jsrt_geometry`'s."""

DEFAULT_MARGIN_MM = 10.0          # a peak hits within nodule radius + this
DEFAULT_PEAK_DISTANCE_MM = 20.0   # minimum distance between the top peaks
TOP_K = 3
