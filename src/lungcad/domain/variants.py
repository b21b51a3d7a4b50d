"""Realistic acquisition variants of an image, and pictures that are neither modality.

The radiograph-vs-CT check (:mod:`lungcad.domain.modality`) is trained and tested on these,
made at run time from the shared images (nothing derived from them is stored):

- :func:`radiograph_variant`: the same chest radiograph as another site might store it:
  other windowing and gamma, histogram equalisation and edge enhancement (modern digital
  processing), another field of view (crops, zoom out with a border, other aspect ratios, a
  burned-in side marker), another size (256 to 1536 px), JPEG compression, quantum noise or
  blur, and inverted grey levels (a MONOCHROME1 image exported without its tag). Each
  variant draws a few transforms, each from one named *family* (:data:`FAMILIES`), so that a
  family can be held out of training and tested on;
- :func:`ct_variant`: the milder changes a CT slice meets (window, gamma, crop or border, size,
  JPEG, noise);
- :func:`neither_picture`: pictures that are neither: gradients (grey and colour), blank
  images, noise, smooth random fields, stripes and checkerboards, drawn shapes and text pages.

Arrays are 2-D float32 in [0, 1] (what :func:`lungcad.io.load_image` returns); ``encode``
gives file bytes (PNG, JPEG, grey or RGB-stored grey) to read back through ``load_image``.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from lungcad.preprocess import resize_area

FAMILIES = ("tone", "processing", "inversion", "geometry", "marker", "noise", "size",
            "compression")
NEITHER_KINDS = ("gradient", "colour_gradient", "blank", "noise", "smooth_field", "stripes",
                 "shapes", "text")


def _clip(a: np.ndarray) -> np.ndarray:
    return np.clip(a, 0.0, 1.0).astype(np.float32)


def gamma(a, rng):
    return _clip(a ** rng.uniform(0.5, 2.0))


def window(a, rng):
    lo, hi = np.percentile(a, [rng.uniform(0, 15), rng.uniform(85, 100)])
    out = (a - lo) / max(hi - lo, 1e-3)
    if rng.random() < 0.3:  # a narrow output range (a flat, low-contrast export)
        low = rng.uniform(0, 0.3)
        out = low + out * rng.uniform(0.4, 1.0 - low)
    return _clip(out)


def equalise(a, rng):
    hist, edges = np.histogram(a, bins=256, range=(0, 1))
    cdf = np.cumsum(hist) / a.size
    flat = np.interp(a, edges[1:], cdf)
    mix = rng.uniform(0.3, 1.0)
    return _clip(mix * flat + (1 - mix) * a)


def enhance(a, rng):
    """Unsharp masking, as digital radiography processing does."""
    sigma = rng.uniform(1.0, 8.0) * a.shape[0] / 512
    return _clip(a + rng.uniform(0.3, 1.5) * (a - ndimage.gaussian_filter(a, sigma)))


def crop(a, rng):
    h, w = a.shape
    ch, cw = int(h * rng.uniform(0.6, 0.95)), int(w * rng.uniform(0.6, 0.95))
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return a[y:y + ch, x:x + cw]


def pad(a, rng):
    h, w = a.shape
    top, bottom, left, right = (int(s * rng.uniform(0, 0.2)) for s in (h, h, w, w))
    value = rng.choice([0.0, 1.0, float(np.median(a[:5])), rng.uniform(0, 1)])
    return np.pad(a, ((top, bottom), (left, right)), constant_values=value).astype(np.float32)


def aspect(a, rng):
    h, w = a.shape
    return resize_area(a, (h, max(32, int(w * rng.uniform(0.75, 1.25)))))


def rotate(a, rng):
    return _clip(ndimage.rotate(a, rng.uniform(-8, 8), reshape=False, order=1,
                                mode="constant", cval=float(np.median(a[:5]))))


def resize(a, rng):
    side = int(rng.choice([256, 384, 1024, 1536]))
    h, w = a.shape
    return resize_area(a, (side, max(32, int(round(side * w / h)))))


def jpeg(a, rng):
    buffer = io.BytesIO()
    Image.fromarray((a * 255).round().astype(np.uint8)).save(
        buffer, "JPEG", quality=int(rng.integers(15, 96)))
    return np.asarray(Image.open(buffer), dtype=np.float32) / 255.0


def noise(a, rng):
    return _clip(a + rng.normal(0, rng.uniform(0.005, 0.04), a.shape))


def blur(a, rng):
    return _clip(ndimage.gaussian_filter(a, rng.uniform(0.5, 2.0) * a.shape[0] / 512))


def invert(a, rng):
    return (1.0 - a).astype(np.float32)


def marker(a, rng):
    """A burned-in side marker or label (bright or dark), as many sites print."""
    h, w = a.shape
    picture = Image.fromarray((a * 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    size = max(8, int(h * rng.uniform(0.03, 0.08)))
    x, y = int(rng.uniform(0.02, 0.85) * w), int(rng.uniform(0.02, 0.2) * h)
    shade = int(rng.choice([0, 255]))
    if rng.random() < 0.5:
        draw.rectangle([x, y, x + 2 * size, y + size], fill=255 - shade)
    draw.text((x + 2, y), str(rng.choice(["L", "R", "PA", "AP", "ERECT"])), fill=shade,
              font_size=size)
    return np.asarray(picture, dtype=np.float32) / 255.0


# in the order they are applied (resizing and JPEG last, as a site's export does)
TRANSFORMS = {"tone": (gamma, window), "processing": (equalise, enhance),
              "inversion": (invert,), "geometry": (crop, pad, aspect, rotate),
              "marker": (marker,), "noise": (noise, blur), "size": (resize,),
              "compression": (jpeg,)}
CT_TRANSFORMS = {"tone": (gamma, window), "geometry": (crop, pad), "size": (resize,),
                 "compression": (jpeg,), "noise": (noise, blur)}


def choose(rng: np.random.Generator, families=FAMILIES, count: int | None = None,
           table: dict = TRANSFORMS) -> list[str]:
    """``count`` (default 1 to 4) of ``families`` drawn at random, in the order they apply."""
    names = [f for f in table if f in families]
    count = int(rng.integers(1, 5)) if count is None else count
    chosen = set(rng.choice(names, size=min(count, len(names)), replace=False)) if names else set()
    return [f for f in table if f in chosen]


def apply(image, rng: np.random.Generator, chosen, table: dict = TRANSFORMS) -> np.ndarray:
    """``image`` through one transform (drawn at random) of each family in ``chosen``."""
    a = np.asarray(image, dtype=np.float32)
    for family in chosen:
        options = table[family]
        a = options[int(rng.integers(len(options)))](a, rng)
    return _clip(a)


def radiograph_variant(image, rng: np.random.Generator, families=FAMILIES,
                       count: int | None = None) -> np.ndarray:
    """One variant of a radiograph: ``count`` (default 1 to 4) transforms from ``families``."""
    return apply(image, rng, choose(rng, families, count))


def ct_variant(image, rng: np.random.Generator, count: int | None = None) -> np.ndarray:
    count = int(rng.integers(1, 3)) if count is None else count
    return apply(image, rng, choose(rng, CT_TRANSFORMS, count, CT_TRANSFORMS), CT_TRANSFORMS)


def _smooth(rng, h, w, scale):
    field = ndimage.gaussian_filter(rng.normal(size=(h, w)), scale)
    return (field - field.min()) / max(float(np.ptp(field)), 1e-6)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return (rgb @ np.array([0.299, 0.587, 0.114])).astype(np.float32)


def neither_picture(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One picture of ``kind`` (one of :data:`NEITHER_KINDS`) at a random size, grey [0, 1]."""
    h, w = (int(v) for v in rng.integers(200, 1000, size=2))
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    y, x = y / h, x / w
    if kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        t = np.cos(angle) * x + np.sin(angle) * y
        if rng.random() < 0.4:  # radial
            t = np.hypot(x - rng.uniform(0, 1), y - rng.uniform(0, 1))
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        a = rng.uniform(0, 0.4) + t * rng.uniform(0.3, 0.6)
    elif kind == "colour_gradient":
        channels = []
        for _ in range(3):
            angle = rng.uniform(0, 2 * np.pi)
            t = np.cos(angle) * x + np.sin(angle) * y
            channels.append((t - t.min()) / max(float(np.ptp(t)), 1e-6))
        a = _luminance(np.stack(channels, axis=-1))
    elif kind == "blank":
        a = np.full((h, w), rng.uniform(0, 1), np.float32)
        if rng.random() < 0.5:
            a = a + rng.normal(0, rng.uniform(0, 0.01), a.shape)
    elif kind == "noise":
        a = (rng.uniform(0, 1, (h, w)) if rng.random() < 0.5
             else rng.normal(rng.uniform(0.3, 0.7), rng.uniform(0.05, 0.3), (h, w)))
    elif kind == "smooth_field":
        a = _smooth(rng, h, w, rng.uniform(3, 60))
    elif kind == "stripes":
        period = rng.uniform(4, 80)
        if rng.random() < 0.5:
            a = ((np.floor(x * w / period) + np.floor(y * h / period)) % 2).astype(np.float32)
        else:
            a = 0.5 + 0.5 * np.sin(2 * np.pi * (x * w * np.cos(rng.uniform(0, 3)) + y * h) / period)
    elif kind == "shapes":
        picture = Image.new("L", (w, h), int(rng.integers(0, 256)))
        draw = ImageDraw.Draw(picture)
        for _ in range(int(rng.integers(3, 25))):
            box = sorted(rng.integers(0, w, 2).tolist()), sorted(rng.integers(0, h, 2).tolist())
            shape = [box[0][0], box[1][0], box[0][1], box[1][1]]
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(
                shape, fill=int(rng.integers(0, 256)))
        a = np.asarray(picture, dtype=np.float32) / 255.0
    elif kind == "text":
        picture = Image.new("L", (w, h), int(rng.integers(200, 256)))
        draw = ImageDraw.Draw(picture)
        size = int(rng.integers(10, 30))
        for row in range(0, h - size, int(size * 1.5)):
            words = " ".join("lorem ipsum dolor sit amet"[: int(rng.integers(3, 26))]
                             for _ in range(6))
            draw.text((10, row), words, fill=int(rng.integers(0, 80)), font_size=size)
        a = np.asarray(picture, dtype=np.float32) / 255.0
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return _clip(a)


def encode(image: np.ndarray, fmt: str = "png", rgb: bool = False,
           quality: int = 90) -> bytes:
    """File bytes of a [0, 1] image: 8-bit PNG or JPEG, grey or stored as RGB (three equal
    channels), to read back with :func:`lungcad.io.load_image`."""
    pixels = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    picture = Image.fromarray(np.stack([pixels] * 3, axis=-1) if rgb else pixels)
    buffer = io.BytesIO()
    if fmt == "jpeg":
        picture.save(buffer, "JPEG", quality=quality)
    else:
        picture.save(buffer, "PNG")
    return buffer.getvalue()
