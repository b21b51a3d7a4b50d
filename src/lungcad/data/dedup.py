"""Exact and near-duplicate images, and the groups of images that must never be split apart.

Two hashes per image, both of the pixels as :func:`lungcad.io.load_image` decodes them:

* exact: SHA-256 of the decoded float32 pixels and their shape, so a copy saved under another
  name, or re-encoded losslessly, is found, while metadata and file-format differences are not.
* perceptual: DCT hash (``imagehash.phash``, hash_size 32, so 1024 bits) of the image after
  histogram equalisation. Two images are near duplicates when their hashes differ in at most
  :data:`NEAR_DUP_THRESHOLD` bits. Equalising first makes the hash ignore brightness and
  windowing, so the same CT slice shown in a lung and a soft-tissue window still matches.

How the hash and the threshold were chosen: by drawing pairs of the three shared datasets side
by side at distances around each candidate threshold and looking at them (and by counting
cross-class pairs, which in these sets are different patients, as a check on false merges).

* IQ-OTH/NCCD (CT slices, several neighbouring slices per patient, no patient id). With the
  default 64-bit pHash, cross-class pairs (different patients) already appear at 10-14 of 64
  bits, so no threshold separates neighbouring slices from strangers. Longer hashes separate
  better, the 1024-bit hash of the equalised image best. Every pair viewed at 285-300 bits was
  two neighbouring slices of one patient (same body outline, table and tumour, anatomy moved on
  by a slice); between 300 and 325 most still were, with the odd stranger; from 326 bits pairs of
  plainly different patients (malignant_043 / normal_204 at 326) join, and above ~340 transitive
  merging snowballs (a group of 81 slices at 340, of 400 at 380). The one mixed-class group at
  300 (3 benign + 7 normal slices) is one patient filed under two classes (benign_033 and
  normal_083 are 98 bits apart and look the same).
* JSRT (radiographs, one image per patient, so every pair is two people): the closest two
  equalised hashes are 334 bits apart. Without equalisation strangers come within 272-300 bits,
  alike only through the shared layout (anonymisation boxes, outline).
* Chest CT (Kaggle): many "normal" files are one slice in two windows or with drawn marks (they
  match at 200-300 bits), and pairs of neighbouring slices of one patient, some across the
  published train/valid split, sit at 164-300 bits; the first cross-class pair beyond the one
  exact copy is at 330.

So 300 of 1024 bits: 26 bits below the first pair of different patients seen in any of the three
sets. At 300, IQ-OTH/NCCD forms 203 groups (138 of several slices, 65 single slices, largest
38), JSRT none, chest CT 498 groups (66 of several images, largest 36: one slice copied in many
windows). Neighbouring slices further apart than 300 bits stay in separate groups: in the
committed IQ-OTH/NCCD folds, 2-5% of test slices have a training slice 300-320 bits away.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from lungcad.atomic import atomic_write
from lungcad.errors import LungcadError

PHASH_SIZE = 32  # 32 x 32 DCT coefficients: 1024 bits
PHASH_BITS = PHASH_SIZE * PHASH_SIZE
NEAR_DUP_THRESHOLD = 300
EXACT_HASH = "sha256 of decoded float32 pixels (lungcad.io.load_image) and shape"
PERCEPTUAL_HASH = f"imagehash.phash(hash_size={PHASH_SIZE}) of the histogram-equalised 8-bit image"
HASH_VERSION = 1  # bump when either hash changes: old cache entries are then never read


@dataclass(frozen=True)
class ImageHash:
    pixel_sha256: str
    phash: str  # hex, PHASH_BITS bits


def hash_array(array: np.ndarray) -> ImageHash:
    """Both hashes of a decoded image (2-D float32 in [0, 1])."""
    import imagehash
    from PIL import Image, ImageOps

    pixels = np.ascontiguousarray(array, dtype=np.float32)
    digest = hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()
    gray = Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8))
    phash = imagehash.phash(ImageOps.equalize(gray), hash_size=PHASH_SIZE)
    return ImageHash(pixel_sha256=digest, phash=str(phash))


def hash_cache_dir() -> Path:
    from lungcad.array_cache import cache_root

    return cache_root() / "image-hashes"


def _cache_entry(path: Path) -> Path:
    # Keyed like the array cache: the file's identity plus the hash method's version.
    from lungcad.array_cache import file_identity

    ident = {**file_identity(path),
             "hash": "pixel-sha256+phash", "phash_size": PHASH_SIZE, "version": HASH_VERSION}
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    return hash_cache_dir() / f"{key}.json"


def _read_cached(path: Path) -> ImageHash | None:
    try:
        entry = _cache_entry(path)
        if entry.is_file():
            stored = json.loads(entry.read_text())
            return ImageHash(str(stored["pixel_sha256"]), str(stored["phash"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # a missing file is reported by the hashing itself; a damaged entry is rebuilt
    return None


def _write_cached(path: Path, value: ImageHash) -> None:
    try:
        atomic_write(_cache_entry(path), json.dumps(
            {"pixel_sha256": value.pixel_sha256, "phash": value.phash}).encode(), durable=False)
    except OSError:
        pass  # the cache only saves time; a read-only home must not stop a check


def hash_file(path: str | Path, use_cache: bool = True) -> ImageHash:
    """Both hashes of the image file at ``path``; raises LungcadError if it cannot be read."""
    from lungcad.io import load_image

    path = Path(path)
    if use_cache:
        cached = _read_cached(path) if path.is_file() else None
        if cached is not None:
            return cached
    value = hash_array(load_image(path).array)
    if use_cache:
        _write_cached(path, value)
    return value


def _hash_worker(path: str, use_cache: bool) -> tuple[ImageHash | None, str | None]:
    try:
        return hash_file(path, use_cache), None
    except LungcadError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
        return None, f"{path}: {type(exc).__name__}: {exc}"


@dataclass
class HashResult:
    hashes: list[ImageHash | None]  # one per path, None where unreadable
    failures: dict[int, str] = field(default_factory=dict)  # index -> message


def compute_hashes(paths: Sequence[str | Path], workers: int = 1, use_cache: bool = True,
                   progress: bool = True, desc: str = "hashing images") -> HashResult:
    """Hashes of many files, cached entries first, the rest in ``workers`` processes."""
    from tqdm import tqdm

    paths = [Path(p) for p in paths]
    hashes: list[ImageHash | None] = [None] * len(paths)
    failures: dict[int, str] = {}
    todo = []
    for i, p in enumerate(paths):
        cached = _read_cached(p) if use_cache and p.is_file() else None
        if cached is None:
            todo.append(i)
        else:
            hashes[i] = cached
    bar = tqdm(total=len(todo), desc=desc, unit="img", file=sys.stderr,
               disable=None if progress else True, leave=False)

    def record(i: int, result: tuple[ImageHash | None, str | None]) -> None:
        hashes[i], error = result
        if error is not None:
            failures[i] = error
        bar.update(1)

    try:
        if workers <= 1 or len(todo) < 2 * workers:
            for i in todo:
                record(i, _hash_worker(str(paths[i]), use_cache))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(_hash_worker, str(paths[i]), use_cache): i for i in todo}
                for future in as_completed(futures):
                    record(futures[future], future.result())
    finally:
        bar.close()
    return HashResult(hashes=hashes, failures=failures)


def phash_bits(hex_hashes: Sequence[str]) -> np.ndarray:
    """(n, PHASH_BITS) array of 0/1 from hex hashes."""
    if not hex_hashes:
        return np.zeros((0, PHASH_BITS), dtype=np.uint8)
    packed = np.frombuffer(b"".join(bytes.fromhex(h) for h in hex_hashes), dtype=np.uint8)
    return np.unpackbits(packed.reshape(len(hex_hashes), -1), axis=1)


def near_pairs(bits: np.ndarray, threshold: int, block: int = 1024) -> list[tuple[int, int, int]]:
    """All pairs (i, j, distance), i < j, whose Hamming distance is at most ``threshold``.

    Computed as matrix products in row blocks, so memory stays O(block x n)."""
    n = len(bits)
    ones = bits.astype(np.float32)
    zeros = 1.0 - ones
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, n, block):
        stop = min(n, start + block)
        # Hamming distance = bits set in a but not b + bits set in b but not a
        dist = ones[start:stop] @ zeros.T + zeros[start:stop] @ ones.T
        rows, cols = np.nonzero(np.rint(dist) <= threshold)
        for r, c in zip(rows.tolist(), cols.tolist()):
            i = start + r
            if i < c:
                pairs.append((i, c, int(round(float(dist[r, c])))))
    return pairs


class UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:  # path compression
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class DuplicateGroups:
    """Groups over a list of images (indices into that list)."""

    group_of: list[int]               # group id per image, 0.. in order of first member
    exact_groups: list[list[int]]     # pixel-identical sets of two or more
    near_groups: list[list[int]]      # groups of two or more holding more than one distinct image
    near_pairs: list[tuple[int, int, int]]  # (i, j, distance) at or below threshold, i < j
    threshold: int

    @property
    def n_groups(self) -> int:
        return max(self.group_of) + 1 if self.group_of else 0

    def members(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(self.n_groups)]
        for i, g in enumerate(self.group_of):
            out[g].append(i)
        return out

    def size_distribution(self) -> dict[int, int]:
        """How many groups have each size."""
        return dict(sorted(Counter(len(m) for m in self.members()).items()))


def group_duplicates(hashes: Sequence[ImageHash | None], threshold: int = NEAR_DUP_THRESHOLD,
                     given_groups: Sequence[str | None] | None = None) -> DuplicateGroups:
    """Union-find over exact copies, near duplicates and ``given_groups`` (e.g. patient ids).

    Unreadable images (None) join only through ``given_groups``."""
    if not 0 <= threshold < PHASH_BITS:
        raise LungcadError(f"near-duplicate threshold must be 0 to {PHASH_BITS - 1} bits, "
                           f"not {threshold}")
    n = len(hashes)
    uf = UnionFind(n)
    by_pixels: dict[str, list[int]] = {}
    for i, h in enumerate(hashes):
        if h is not None:
            by_pixels.setdefault(h.pixel_sha256, []).append(i)
    exact_groups = [m for m in by_pixels.values() if len(m) > 1]
    for members in exact_groups:
        for j in members[1:]:
            uf.union(members[0], j)
    # one representative per distinct image keeps the pairwise step small
    reps = [m[0] for m in by_pixels.values()]
    bits = phash_bits([hashes[i].phash for i in reps])  # type: ignore[union-attr]
    pairs = [(reps[a], reps[b], d) for a, b, d in near_pairs(bits, threshold)]
    for a, b, _ in pairs:
        uf.union(a, b)
    if given_groups is not None:
        first: dict[str, int] = {}
        for i, g in enumerate(given_groups):
            if g is None or (isinstance(g, float) and np.isnan(g)) or str(g) == "":
                continue
            uf.union(first.setdefault(str(g), i), i)
    roots = [uf.find(i) for i in range(n)]
    ids: dict[int, int] = {}
    group_of = [ids.setdefault(r, len(ids)) for r in roots]
    members: dict[int, list[int]] = {}
    for i, g in enumerate(group_of):
        members.setdefault(g, []).append(i)
    near_roots = {uf.find(a) for a, _, _ in pairs}
    near_groups = [m for g, m in members.items()
                   if len(m) > 1 and roots[m[0]] in near_roots]
    return DuplicateGroups(group_of=group_of, exact_groups=sorted(exact_groups),
                           near_groups=near_groups, near_pairs=pairs, threshold=threshold)
