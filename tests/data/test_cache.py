"""The preprocessing cache serves stored arrays and never a stale one."""

import os

import numpy as np
from PIL import Image

from lungcad.data import cache


def test_cache_hits_and_invalidates_on_source_or_size_change(tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGCAD_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "a.png"
    Image.fromarray(np.full((64, 64), 200, np.uint8)).save(path)
    first = cache.load_resized(path, 32)
    assert first.shape == (32, 32) and np.allclose(first, 200 / 255)
    entries = list((tmp_path / "cache" / "images").rglob("*.npy"))
    assert len(entries) == 1

    # a hit reads the stored array: prove it by planting a marker in the entry
    np.save(entries[0], np.zeros((32, 32), np.float32))
    assert np.all(cache.load_resized(path, 32) == 0)

    # another size is another key
    assert cache.load_resized(path, 16).shape == (16, 16)
    # editing the source (new content and mtime) gives a fresh read, not the stale entry
    Image.fromarray(np.full((64, 64), 50, np.uint8)).save(path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert np.allclose(cache.load_resized(path, 32), 50 / 255)


def test_damaged_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGCAD_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "a.png"
    Image.fromarray(np.full((40, 40), 100, np.uint8)).save(path)
    cache.load_resized(path, 32)
    entry = next((tmp_path / "cache" / "images").rglob("*.npy"))
    entry.write_bytes(b"garbage")
    assert np.allclose(cache.load_resized(path, 32), 100 / 255)


def test_every_array_cache_lives_under_the_one_root(tmp_path, monkeypatch):
    """Namespaces and versions share one root: another version is another key, and a damaged
    entry reads as missing (and is gone)."""
    from lungcad.array_cache import ArrayCache, cache_root

    monkeypatch.setenv("LUNGCAD_CACHE_DIR", str(tmp_path / "root"))
    assert cache_root() == tmp_path / "root"
    v1, v2 = ArrayCache("features", 1), ArrayCache("features", 2)
    assert v1.key(image="a") != v2.key(image="a") != ArrayCache("images", 2).key(image="a")
    v1.put(v1.key(image="a"), np.arange(3))
    assert np.array_equal(v1.get(v1.key(image="a")), np.arange(3))
    assert v2.get(v2.key(image="a")) is None
    assert v1.path(v1.key(image="a")).is_relative_to(tmp_path / "root" / "features")
    v1.path(v1.key(image="a")).write_bytes(b"garbage")
    assert v1.get(v1.key(image="a")) is None and not v1.path(v1.key(image="a")).exists()
