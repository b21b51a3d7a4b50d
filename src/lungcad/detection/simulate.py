"""Synthetic nodules on chest radiographs: more nodules to learn from than JSRT's 123.

Two kinds, both added to a *training* image (the background keeps its own ribs, vessels and
noise, as a real nodule's projection does):

- ``sphere``: the projection of a sphere or ellipsoid (thickness ``sqrt(1 - rho^2)``), with an
  optional lobulated outline (radius modulated by a few low harmonics), an edge softened by a
  Gaussian blur, and an amplitude set so that its measured contrast (:func:`measure_contrast`)
  is the one drawn;
- ``paste``: a real training nodule, its local background (a plane fitted on a ring around it)
  removed, blended onto another training image through a soft round window.

Sizes and contrasts are drawn from those measured on the fold's real training nodules
(:class:`NoduleSampler`: a smoothed bootstrap of their (diameter, contrast) pairs).
:class:`FoldSimulator` does it for one fold: it reads only the images it is given as training
images, refuses any image of the test part, and places each nodule inside the training image's
lung mask (the whole disc inside), at least ``clearance_mm`` from the image's real nodule.
Contrast is in image intensity units ([0, 1] images), diameters in mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from lungcad.errors import LungcadError

KINDS = ("sphere", "paste")
INNER, RING = 0.5, (1.3, 2.0)   # contrast: mean inside 0.5 r minus mean of the 1.3-2 r ring


def _rho(shape, x: float, y: float, radius_px: float, elongation: float = 1.0,
         angle: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Normalised radius (1 on the outline) and polar angle of every pixel about (x, y)."""
    rows, cols = np.indices(shape, dtype=np.float64)
    dx, dy = cols - x, rows - y
    c, s = np.cos(angle), np.sin(angle)
    u, v = (c * dx + s * dy) / elongation, (-s * dx + c * dy) * elongation
    return np.hypot(u, v) / radius_px, np.arctan2(v, u)


def measure_contrast(image: np.ndarray, x: float, y: float, diameter_px: float) -> float:
    """Mean intensity within half the nodule's radius minus the mean of the ring at 1.3 to 2
    radii: the contrast of the real and of the synthetic nodules alike."""
    rho, _ = _rho(image.shape, x, y, max(diameter_px / 2, 1.0))
    inner, ring = rho <= INNER, (rho >= RING[0]) & (rho <= RING[1])
    if not inner.any() or not ring.any():
        raise LungcadError(f"the nodule at ({x:.0f}, {y:.0f}) lies outside the image")
    return float(image[inner].mean() - image[ring].mean())


def measured_diameter_px(added: np.ndarray, level: float = 0.1) -> float:
    """Diameter of the disc with the area where ``added`` (what a nodule added to an image) is at
    least ``level`` of its peak: the size a sphere projection shows."""
    peak = float(np.max(added))
    if peak <= 0:
        return 0.0
    return float(2 * np.sqrt((added >= level * peak).sum() / np.pi))


def sphere_profile(shape, x: float, y: float, diameter_px: float, edge_px: float = 1.0,
                   lobulation: float = 0.0, elongation: float = 1.0, angle: float = 0.0,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """A unit-peak projected sphere/ellipsoid (thickness sqrt(1 - rho^2)), outline lobulated by
    ``lobulation`` (relative radius change, harmonics 3-6 at random phases), edge blurred by
    ``edge_px``."""
    from scipy import ndimage

    rho, theta = _rho(shape, x, y, diameter_px / 2, elongation, angle)
    if lobulation > 0:
        rng = rng or np.random.default_rng(0)
        wobble = sum(rng.uniform(0.3, 1.0) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
                     for k in range(3, 7))
        rho = rho / (1 + lobulation * wobble / 2.6)
    profile = np.sqrt(np.clip(1 - rho ** 2, 0, None))
    if edge_px > 0:
        profile = ndimage.gaussian_filter(profile, edge_px)
    return profile / max(float(profile.max()), 1e-12)


def background_removed(image: np.ndarray, x: float, y: float, diameter_px: float,
                       window: float = 1.3) -> np.ndarray:
    """A real nodule ready to paste: (image minus the plane fitted on its 1.3-2 r ring) times a
    soft round window (1 within 0.8 r, cosine to 0 at ``window`` r); the patch is square,
    centred on the nodule's pixel, of side 2 * ceil(window * r) + 1."""
    r = max(diameter_px / 2, 1.0)
    half = int(np.ceil(RING[1] * r))
    cx, cy = int(round(x)), int(round(y))
    pad = np.pad(np.asarray(image, np.float64), half, mode="reflect")
    patch = pad[cy:cy + 2 * half + 1, cx:cx + 2 * half + 1]
    rows, cols = np.indices(patch.shape, dtype=np.float64) - half
    rho = np.hypot(rows, cols) / r
    ring = (rho >= RING[0]) & (rho <= RING[1])
    design = np.column_stack([np.ones(ring.sum()), rows[ring], cols[ring]])
    coef, *_ = np.linalg.lstsq(design, patch[ring], rcond=None)
    residual = patch - (coef[0] + coef[1] * rows + coef[2] * cols)
    weight = np.clip((window - rho) / (window - 0.8), 0, 1)
    weight = 0.5 - 0.5 * np.cos(np.pi * weight)
    keep = int(np.ceil(window * r))
    sl = slice(half - keep, half + keep + 1)
    return (residual * weight)[sl, sl]


def support_radius(patch: np.ndarray) -> float:
    """Distance from the centre pixel of a square patch to its farthest non-zero pixel."""
    half = patch.shape[0] // 2
    rows, cols = np.nonzero(patch)
    return float(np.hypot(rows - half, cols - half).max()) if len(rows) else 0.0


def add_patch(image: np.ndarray, patch: np.ndarray, x: float, y: float) -> np.ndarray:
    """``image`` plus ``patch`` centred on pixel (round(x), round(y)), clipped to [0, 1]."""
    out = np.array(image, np.float32, copy=True)
    half = patch.shape[0] // 2
    cx, cy = int(round(x)), int(round(y))
    r0, c0 = cy - half, cx - half
    rs, cs = slice(max(r0, 0), min(r0 + patch.shape[0], out.shape[0])), \
        slice(max(c0, 0), min(c0 + patch.shape[1], out.shape[1]))
    out[rs, cs] += patch[rs.start - r0:rs.stop - r0, cs.start - c0:cs.stop - c0]
    return np.clip(out, 0.0, 1.0)


@dataclass
class NoduleSampler:
    """(diameter_mm, contrast) pairs drawn from the real ones: one picked at random, each
    multiplied by a log-normal jitter (``jitter`` its sigma), contrast kept positive."""

    diameters_mm: np.ndarray
    contrasts: np.ndarray
    jitter: float = 0.15

    def __post_init__(self):
        self.diameters_mm = np.asarray(self.diameters_mm, float)
        self.contrasts = np.asarray(self.contrasts, float)
        if len(self.diameters_mm) == 0 or len(self.diameters_mm) != len(self.contrasts):
            raise LungcadError("the nodule sampler needs real nodules (diameter and contrast "
                               "of each) from the training images")

    def sample(self, rng: np.random.Generator) -> tuple[float, float]:
        i = int(rng.integers(len(self.diameters_mm)))
        d, c = self.diameters_mm[i], abs(self.contrasts[i])
        d, c = d * np.exp(rng.normal(0, self.jitter)), c * np.exp(rng.normal(0, self.jitter))
        return float(d), float(max(c, 1e-3))


def place(lung_mask: np.ndarray, diameter_px: float, avoid_px: Sequence[tuple[float, float]],
          clearance_px: float, rng: np.random.Generator) -> tuple[float, float] | None:
    """A centre (x, y) whose whole disc lies in the lung mask and which is at least
    ``clearance_px`` from every point of ``avoid_px``; None where there is none."""
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(np.asarray(lung_mask, bool))
    ok = depth > diameter_px / 2 + 1   # the disc (and one pixel of rounding) inside
    if len(avoid_px):
        rows, cols = np.indices(ok.shape)
        for ax, ay in avoid_px:
            ok &= np.hypot(cols - ax, rows - ay) >= clearance_px
    where = np.flatnonzero(ok)
    if not len(where):
        return None
    r, c = np.unravel_index(int(where[rng.integers(len(where))]), ok.shape)
    return float(c), float(r)


@dataclass
class SimulatedImage:
    path: str                  # the training image it was drawn on
    image: np.ndarray          # a new array (the loaded image is never changed)
    nodules: pd.DataFrame      # x, y (px), diameter_mm, contrast, kind, source_path


@dataclass
class FoldSimulator:
    """Synthetic nodules for one fold's training images.

    ``rows``: the manifest rows of the training images (``path``, ``x_512``, ``y_512``,
    ``size_mm``; coordinates in a 512 px frame); ``test_paths``: the fold's test part, which is
    refused everywhere; ``load_image(path)`` and ``load_mask(path)`` give an image in [0, 1]
    and its bool lung mask at the same size."""

    rows: pd.DataFrame
    test_paths: Sequence[str]
    load_image: Callable[[str], np.ndarray]
    load_mask: Callable[[str], np.ndarray]
    mm_per_pixel: float
    clearance_mm: float = 30.0
    lobulation: float = 0.15
    max_elongation: float = 1.3
    edge_mm: tuple[float, float] = (0.5, 2.0)
    contrast_scale: tuple[float, float] = (0.5, 2.0)
    jitter: float = 0.15            # the sampler's log-normal sigma (sizes and contrasts)
    real: pd.DataFrame = field(init=False)

    def __post_init__(self):
        self.rows = self.rows.reset_index(drop=True)
        self.paths = [str(p) for p in self.rows["path"]]
        leaked = sorted(set(self.paths) & {str(p) for p in self.test_paths})
        if leaked:
            raise LungcadError(f"{len(leaked)} test image(s) among the simulator's training "
                               f"images, e.g. {leaked[:2]}: synthetic nodules go on training "
                               "images only")
        self.real = self.measure_real()

    def _frame_scale(self, path: str) -> float:
        return self.load_image(path).shape[1] / 512.0

    def _nodule_rows(self) -> pd.DataFrame:
        xy = self.rows[["x_512", "y_512", "size_mm"]].apply(pd.to_numeric, errors="coerce")
        return self.rows[np.isfinite(xy.to_numpy(float)).all(axis=1)]

    def measure_real(self) -> pd.DataFrame:
        """The training nodules: path, x, y (px), diameter_mm, contrast (measured)."""
        out = []
        for _, row in self._nodule_rows().iterrows():
            image = self.load_image(row["path"])
            scale = image.shape[1] / 512.0
            x, y = float(row["x_512"]) * scale, float(row["y_512"]) * scale
            d = float(row["size_mm"])
            out.append({"path": row["path"], "x": x, "y": y, "diameter_mm": d,
                        "contrast": measure_contrast(image, x, y, d / self.mm_per_pixel)})
        if not out:
            raise LungcadError("no nodule with a position among the training images: nothing "
                               "to measure synthetic nodules on")
        return pd.DataFrame(out)

    def sampler(self) -> NoduleSampler:
        return NoduleSampler(self.real["diameter_mm"], self.real["contrast"], self.jitter)

    def avoid(self, path: str) -> list[tuple[float, float]]:
        mine = self.real[self.real["path"] == path]
        return list(zip(mine["x"], mine["y"]))

    def simulate(self, path: str, n: int, rng: np.random.Generator,
                 kinds: Sequence[str] = KINDS) -> SimulatedImage:
        """Up to ``n`` synthetic nodules on the training image ``path`` (fewer where the lungs
        have no room), at least ``clearance_mm`` from its real nodule and from each other."""
        if path in set(map(str, self.test_paths)) or path not in self.paths:
            raise LungcadError(f"{path} is not a training image of this fold: synthetic nodules "
                               "go on training images only")
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise LungcadError(f"unknown synthetic nodule kind(s) {unknown}; known: {KINDS}")
        image = np.array(self.load_image(path), np.float32, copy=True)
        lungs = np.asarray(self.load_mask(path), bool)
        sampler, avoid, placed = self.sampler(), self.avoid(path), []
        clearance = self.clearance_mm / self.mm_per_pixel
        for _ in range(n):
            kind = kinds[int(rng.integers(len(kinds)))]
            if kind == "paste":
                donors = self.real[self.real["path"] != path]
                donor = (donors if len(donors) else self.real).sample(
                    1, random_state=int(rng.integers(2 ** 31))).iloc[0]
                d, c = float(donor["diameter_mm"]), float(donor["contrast"])
                patch = background_removed(self.load_image(donor["path"]), donor["x"],
                                           donor["y"], d / self.mm_per_pixel)
                patch = np.rot90(patch, int(rng.integers(4)))
                patch = patch[:, ::-1] if rng.random() < 0.5 else patch
                source = str(donor["path"])
            else:
                d, c = sampler.sample(rng)
                patch = self.sphere_patch(d, c, rng)
                source = ""
            # the whole patch (not only the nodule's disc) must fall inside the lungs
            at = place(lungs, 2 * support_radius(patch), avoid, clearance, rng)
            if at is None:
                continue
            patch = self.matched(patch, image, at, d / self.mm_per_pixel, c)
            image = add_patch(image, patch, *at)
            avoid.append(at)
            placed.append({"x": at[0], "y": at[1], "diameter_mm": d, "contrast": c,
                           "kind": kind, "source_path": source})
        return SimulatedImage(path, image, pd.DataFrame(
            placed, columns=["x", "y", "diameter_mm", "contrast", "kind", "source_path"]))

    def matched(self, patch: np.ndarray, image: np.ndarray, at: tuple[float, float],
                d_px: float, contrast: float) -> np.ndarray:
        """``patch`` scaled so that the contrast measured on the output (the background's own
        ring-to-centre difference at ``at`` included) is ``contrast``, as the real nodules'
        contrasts were measured on their images; the scale is kept within
        ``contrast_scale``."""
        half = patch.shape[0] // 2
        own = measure_contrast(np.pad(patch, max(0, int(np.ceil(RING[1] * d_px / 2)) - half)),
                               *(2 * [max(half, int(np.ceil(RING[1] * d_px / 2)))]), d_px)
        background = measure_contrast(image, at[0], at[1], d_px)
        low, high = self.contrast_scale
        return patch * float(np.clip((contrast - background) / max(own, 1e-6), low, high))

    def sphere_patch(self, diameter_mm: float, contrast: float,
                     rng: np.random.Generator) -> np.ndarray:
        """A sphere/ellipsoid nodule patch whose size (:func:`measured_diameter_px`) and
        measured contrast on a flat background are ``diameter_mm`` and ``contrast`` (the soft
        edge widens a projected sphere: its outline is shrunk once to make up for it)."""
        d_px = diameter_mm / self.mm_per_pixel
        half = int(np.ceil(RING[1] * d_px / 2)) + 2
        shape = (2 * half + 1, 2 * half + 1)
        args = (rng.uniform(*self.edge_mm) / self.mm_per_pixel, rng.uniform(0, self.lobulation),
                rng.uniform(1.0, self.max_elongation), rng.uniform(0, np.pi),
                int(rng.integers(2 ** 31)))

        def render(d: float) -> np.ndarray:
            return sphere_profile(shape, half, half, d, *args[:4],
                                  rng=np.random.default_rng(args[4]))

        profile = render(d_px)
        profile = render(d_px * d_px / max(measured_diameter_px(profile), 1.0))
        unit = measure_contrast(profile, half, half, d_px)
        return profile * (contrast / max(unit, 1e-6))

    def generate(self, per_image: int, seed: int = 0, kinds: Sequence[str] = KINDS):
        """Every training image once, with up to ``per_image`` synthetic nodules each."""
        rng = np.random.default_rng(seed)
        for path in self.paths:
            yield self.simulate(path, per_image, rng, kinds)
