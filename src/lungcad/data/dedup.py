"""Exact and near-duplicate images, merged into groups that a split must never cut.

Exact duplicates share the MD5 of their decoded pixels (so a PNG and a re-encoded copy with the
same pixels match). Near-duplicates are pairs whose 64-bit perceptual hashes (``imagehash.phash``,
8x8 DCT) differ in at most ``NEAR_DUP_THRESHOLD`` bits. Groups merge transitively.

How the threshold was chosen (by looking at pairs; IQ-OTH/NCCD, 1,097 slices, 601k pairs):
at distance 4 and 6 the sampled pairs were almost all neighbouring slices of one patient (3 of 4
at 6; the fourth showed two patients at the same level); at 8 most still were, but merging
transitively at 8 joins 654 of the 1,097 images into one group, which would leave no usable
split; at 10 the pairs were mostly different patients. At 6 the data fall into 404 groups
(largest 75 images, 137 groups with more than one image). IQ-OTH/NCCD has 110 patients, so some
patients still span several groups: slices far apart in one patient can look unalike, and no
image-based rule can find every such pair. Results on that set say so.

Chest radiographs are another matter: every PA film looks alike to an 8x8 DCT hash, and JSRT
pairs at distance 2 were plainly different patients (looked at: JPCLN068/JPCLN148,
JPCLN086/JPCLN143, JPCNN062/JPCNN068), so at 6 one group swallowed 52 patients. JSRT has one
image per patient, so its splits use ``--near-dup-threshold 0`` (identical hashes only).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcad.errors import LungcadError

NEAR_DUP_THRESHOLD = 6
HASH_METHOD = "imagehash.phash(hash_size=8) on the 8-bit image; Hamming distance"


@dataclass(frozen=True)
class ImageHash:
    pixel_md5: str | None   # None where the file could not be read
    phash: int | None
    error: str | None = None


def hash_image(path: str | Path) -> ImageHash:
    import imagehash
    from PIL import Image

    from lungcad.io import load_image

    try:
        array = load_image(path).array
    except LungcadError as exc:
        return ImageHash(None, None, str(exc))
    md5 = hashlib.md5(np.ascontiguousarray(array).tobytes() + str(array.shape).encode()).hexdigest()
    gray = Image.fromarray(np.round(array * 255).astype(np.uint8))
    return ImageHash(md5, int(str(imagehash.phash(gray, hash_size=8)), 16))


def hash_images(paths: list[Path], workers: int = 2) -> list[ImageHash]:
    if workers <= 1 or len(paths) < 64:
        return [hash_image(p) for p in paths]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(hash_image, paths, chunksize=32))


def hamming_matrix(phashes: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances of 64-bit hashes (uint64 array) as a uint8 matrix."""
    x = phashes[:, None] ^ phashes[None, :]
    return np.unpackbits(x.view(np.uint8).reshape(len(phashes), len(phashes), 8), axis=-1).sum(-1,
                                                                                              dtype=np.uint8)


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


@dataclass
class Duplicates:
    exact_groups: list[list[int]]     # indices sharing decoded pixels (2 or more)
    near_groups: list[list[int]]      # indices joined by near-duplicate pairs (2 or more)
    group_of: list[int]               # final group id per index (explicit groups, exact, near)
    near_pairs: int
    threshold: int


def find_duplicates(hashes: list[ImageHash], threshold: int = NEAR_DUP_THRESHOLD,
                    explicit_groups: list[str | None] | None = None) -> Duplicates:
    n = len(hashes)
    uf_exact, uf_all = _UnionFind(n), _UnionFind(n)
    first: dict[str, int] = {}
    for i, h in enumerate(hashes):
        if h.pixel_md5 is None:
            continue
        if h.pixel_md5 in first:
            uf_exact.union(first[h.pixel_md5], i)
            uf_all.union(first[h.pixel_md5], i)
        else:
            first[h.pixel_md5] = i
    readable = [i for i, h in enumerate(hashes) if h.phash is not None]
    near_pairs = 0
    uf_near = _UnionFind(n)
    if readable and threshold >= 0:
        d = hamming_matrix(np.array([hashes[i].phash for i in readable], dtype=np.uint64))
        a, b = np.nonzero(np.triu(d <= threshold, k=1))
        for i, j in zip(a.tolist(), b.tolist()):
            ri, rj = readable[i], readable[j]
            if hashes[ri].pixel_md5 != hashes[rj].pixel_md5:
                near_pairs += 1
            uf_near.union(ri, rj)
            uf_all.union(ri, rj)
    if explicit_groups is not None:
        seen: dict[str, int] = {}
        for i, g in enumerate(explicit_groups):
            if g is None or (isinstance(g, float) and np.isnan(g)) or g == "":
                continue
            if g in seen:
                uf_all.union(seen[g], i)
            else:
                seen[g] = i

    def groups(uf: _UnionFind) -> list[list[int]]:
        members: dict[int, list[int]] = {}
        for i in range(n):
            members.setdefault(uf.find(i), []).append(i)
        return sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])

    return Duplicates(groups(uf_exact), groups(uf_near), [uf_all.find(i) for i in range(n)],
                      near_pairs, threshold)
