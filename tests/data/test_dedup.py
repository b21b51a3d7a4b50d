"""Hashes, near-duplicate pairs and union-find groups, on synthetic images."""

import io
import itertools

import numpy as np
import pytest
from PIL import Image

from lungcad.data import dedup
from lungcad.data.dedup import (NEAR_DUP_THRESHOLD, PHASH_BITS, compute_hashes, group_duplicates,
                                hash_array, near_pairs, phash_bits)
from lungcad.errors import LungcadError


def texture(seed: int, size: int = 256) -> np.ndarray:
    """Smoothed random texture in [0, 1]: rich structure, different per seed."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(np.random.default_rng(seed).random((size, size)), 4)
    return ((field - field.min()) / (field.max() - field.min())).astype(np.float32)


def distance(a: np.ndarray, b: np.ndarray) -> int:
    bits = phash_bits([hash_array(a).phash, hash_array(b).phash])
    return int((bits[0] != bits[1]).sum())


def test_exact_hash_sees_pixels_not_files():
    a = texture(1)
    assert hash_array(a).pixel_sha256 == hash_array(a.copy()).pixel_sha256
    changed = a.copy()
    changed[5, 5] += 1 / 255
    assert hash_array(changed).pixel_sha256 != hash_array(a).pixel_sha256
    # same values, different shape: not the same image
    assert hash_array(a.reshape(128, 512)).pixel_sha256 != hash_array(a).pixel_sha256


def jpeg_roundtrip(a: np.ndarray, quality: int = 70) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(np.round(a * 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer), dtype=np.float32) / 255


def variants(a: np.ndarray) -> dict[str, np.ndarray]:
    """What a copy of one image goes through: re-encoding, another window, a small shift."""
    rng = np.random.default_rng(0)
    return {"jpeg": jpeg_roundtrip(a), "gamma": a ** 0.8, "shift": np.roll(a, 2, axis=1),
            "noise": np.clip(a + rng.normal(0, 0.01, a.shape), 0, 1).astype(np.float32)}


def test_near_duplicates_survive_reencoding_windowing_and_a_shift_but_strangers_do_not():
    a = texture(1)
    for name, variant in variants(a).items():
        assert distance(a, variant) <= NEAR_DUP_THRESHOLD // 2, name
    for seed in range(2, 6):
        assert distance(a, texture(seed)) > NEAR_DUP_THRESHOLD


def test_copies_of_real_slices_are_near_duplicates(shared_data):
    from lungcad.io import load_image

    for rel in ("iqothnccd/images/malignant/malignant_100.jpg",
                "chest_ct_kaggle/images/train/adenocarcinoma/000005_3.png",
                "jsrt/images/JPCLN010.png"):
        a = load_image(shared_data / rel).array
        for name, variant in variants(a).items():
            assert distance(a, variant) <= NEAR_DUP_THRESHOLD * 2 // 3, (rel, name)
        assert distance(a, a[:, ::-1]) > NEAR_DUP_THRESHOLD  # a mirror image is another image


def test_near_pairs_match_brute_force():
    rng = np.random.default_rng(3)
    bits = (rng.random((40, PHASH_BITS)) < 0.5).astype(np.uint8)
    bits[1] = bits[0]
    bits[2, :] = bits[0]
    bits[2, :100] ^= 1   # 100 bits from row 0
    brute = {(i, j, int((bits[i] != bits[j]).sum())) for i, j in itertools.combinations(range(40), 2)}
    for threshold in (0, 100, 480):
        want = {p for p in brute if p[2] <= threshold}
        assert set(near_pairs(bits, threshold, block=7)) == want


def fake_hash(pixels: str, bits: np.ndarray) -> dedup.ImageHash:
    return dedup.ImageHash(pixels, np.packbits(bits).tobytes().hex())


def test_groups_merge_transitively_and_count_exact_and_near_groups():
    rng = np.random.default_rng(4)
    base = [(rng.random(PHASH_BITS) < 0.5).astype(np.uint8) for _ in range(4)]
    step = base[0].copy()
    step[:200] ^= 1          # 200 bits from base[0]
    further = step.copy()
    further[200:400] ^= 1    # 200 bits from step, 400 from base[0]: joined only through step
    hashes = [fake_hash("a", base[0]), fake_hash("a", base[0]),   # exact copies
              fake_hash("b", step), fake_hash("c", further),
              fake_hash("d", base[1]), fake_hash("e", base[2]), None,
              fake_hash("f", base[3])]
    groups = group_duplicates(hashes, threshold=250,
                              given_groups=[None, None, None, None, "p1", None, None, "p1"])
    g = groups.group_of
    assert g[0] == g[1] == g[2] == g[3]          # chain a=a~b~c
    assert g[4] == g[7] != g[0]                  # same patient id
    assert len({g[0], g[4], g[5], g[6]}) == 4    # strangers and the unreadable image stay apart
    assert groups.exact_groups == [[0, 1]]
    assert groups.near_groups == [[0, 1, 2, 3]]
    assert groups.size_distribution() == {1: 2, 2: 1, 4: 1}
    with pytest.raises(LungcadError, match="threshold"):
        group_duplicates(hashes, threshold=PHASH_BITS)


def test_hashes_are_cached_and_unreadable_files_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGCAD_CACHE_DIR", str(tmp_path / "cache"))
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray((texture(i) * 255).astype(np.uint8)).save(paths[-1])
    (tmp_path / "bad.png").write_bytes(b"garbage")
    first = compute_hashes(paths + [tmp_path / "bad.png"], workers=1, progress=False)
    assert list(first.failures) == [3] and "bad.png" in first.failures[3]
    assert first.hashes[3] is None
    assert len(list((tmp_path / "cache" / "image-hashes").glob("*.json"))) == 3

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached hash was decoded again")

    monkeypatch.setattr("lungcad.io.load_image", no_decoding)
    again = compute_hashes(paths, workers=2, progress=False)
    assert again.hashes == first.hashes[:3] and not again.failures
    # editing a file makes a new key: its stale entry is never read
    Image.fromarray((texture(9) * 255).astype(np.uint8)).save(paths[0])
    monkeypatch.undo()
    monkeypatch.setenv("LUNGCAD_CACHE_DIR", str(tmp_path / "cache"))
    edited = compute_hashes(paths[:1], workers=1, progress=False)
    assert edited.hashes[0] != first.hashes[0]


def test_parallel_hashing_gives_the_same_hashes(tmp_path):
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray((texture(i) * 255).astype(np.uint8)).save(paths[-1])
    serial = compute_hashes(paths, workers=1, use_cache=False, progress=False)
    parallel = compute_hashes(paths, workers=2, use_cache=False, progress=False)
    assert serial.hashes == parallel.hashes and None not in serial.hashes
