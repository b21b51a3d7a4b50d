"""Default settings of localisation scoring (no imports, so the CLI parser reads them cheaply)."""

DEFAULT_MARGIN_MM = 10.0          # a peak hits within nodule radius + this
DEFAULT_PEAK_DISTANCE_MM = 20.0   # minimum distance between the top peaks
JSRT_PIXEL_MM_AT_512 = 0.7        # JSRT: 0.175 mm at 2048 px, times 4
JSRT_COORD_COLUMNS = ("x_512", "y_512")
JSRT_COORD_FRAME = 512
TOP_K = 3
