"""JSRT geometry, in one place: the original matrix, its pixel spacing, and the 512 px frame the
shared copies (and their nodule coordinates ``x_512``/``y_512``) use. No imports, so the CLI's
parsers can read the defaults cheaply."""

JSRT_MATRIX = 2048                 # originals: 2048 x 2048 pixels
JSRT_PIXEL_SPACING_MM = 0.175      # at 2048 px
JSRT_COORD_FRAME = 512             # the shared copies, and the frame of x_512 / y_512
JSRT_COORD_COLUMNS = ("x_512", "y_512")


def jsrt_mm_per_pixel(side: int) -> float:
    """Millimetres per pixel of a JSRT image resized to ``side`` x ``side`` (0.7 at 512 px)."""
    return JSRT_PIXEL_SPACING_MM * JSRT_MATRIX / side


JSRT_PIXEL_MM_AT_512 = jsrt_mm_per_pixel(JSRT_COORD_FRAME)
