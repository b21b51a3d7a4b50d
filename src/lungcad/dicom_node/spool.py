"""The DICOM node's durable folders, as production DICOM routers keep them: a received instance
is on disk (written, fsynced, renamed) before its C-STORE is answered Success, and leaves only
once the destination has accepted every result of it.

Under the spool folder (``lungcad listen --spool DIR``)::

    incoming/<key>.dcm          received instances, not yet delivered (the spool proper)
    outbox/<key>/NN.dcm         the results of one instance, waiting for the destination
    outbox/<key>/state.json     its delivery attempts: how many, the last error, the next try
    failed/<key>/               given up: source.dcm, the results made, reason.txt
    lock                        held by the one node that uses the folder

``<key>`` is the instance's SOP Instance UID (or a hash of it where it is not a plain UID). The
number of instances and the bytes held in ``incoming`` and ``outbox`` together are bounded:
:meth:`Spool.accept` raises :class:`SpoolFull` beyond either (the node answers 0xA700).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lungcad.atomic import atomic_write, sync_folder
from lungcad.errors import LungcadError

_PLAIN_UID = re.compile(r"^[0-9][0-9.]{0,63}$")
MB = 1024 * 1024


class SpoolFull(LungcadError):
    """The spool holds its limit of instances or bytes: refuse (0xA700) until it drains."""


@dataclass
class Delivery:
    """Where one instance stands: its results (None until made) and its attempts."""
    key: str
    results: list[Path] | None
    attempts: int = 0
    next_try: float = 0.0     # time.time() of the next attempt
    last_error: str = ""


def spool_key(sop_instance_uid: str) -> str:
    uid = str(sop_instance_uid).strip().rstrip("\x00")
    if _PLAIN_UID.match(uid) and ".." not in uid:
        return uid
    return "h" + hashlib.sha256(uid.encode("utf-8", "replace")).hexdigest()[:40]


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return path.stat().st_size if path.exists() else 0


class Spool:
    def __init__(self, root: str | Path, *, max_instances: int = 500,
                 max_bytes: int = 4096 * MB, durable: bool = True):
        if max_instances < 1 or max_bytes < 1:
            raise LungcadError("the spool limits must be positive (--spool-max-instances, "
                               "--spool-max-mb)")
        self.root = Path(root)
        self.max_instances, self.max_bytes, self.durable = max_instances, max_bytes, durable
        self.incoming, self.outbox, self.failed = (self.root / n for n in
                                                   ("incoming", "outbox", "failed"))
        try:
            for folder in (self.incoming, self.outbox, self.failed):
                folder.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self.root / "lock", "a+")
        except OSError as exc:
            raise LungcadError(f"cannot use the spool folder {self.root} ({exc.strerror or exc}); "
                               "give a writable folder with --spool") from None
        self._take_lock()
        self._mutex = threading.Lock()
        self.write_seconds = 0.0  # time spent making received instances durable
        self.writes = 0
        for leftover in [*self.outbox.glob(".*.part"), *self.incoming.glob(".*.tmp")]:
            if leftover.is_dir():  # a crash while it was written: made again from the source
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        self._sizes = {k: self._held_bytes(k) for k in self.keys()}

    def _take_lock(self) -> None:
        import fcntl

        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            raise LungcadError(f"the spool folder {self.root} is in use by another lungcad "
                               "listen; give each node its own --spool") from None

    def close(self) -> None:
        self._lock_file.close()

    # -- what is held --------------------------------------------------------------------
    def keys(self) -> list[str]:
        """Instances not yet delivered, oldest first (received, or results in the outbox)."""
        found = {p.stem: p.stat().st_mtime for p in self.incoming.glob("*.dcm")}
        for folder in self.outbox.iterdir():
            if folder.is_dir() and not folder.name.startswith("."):
                found.setdefault(folder.name, folder.stat().st_mtime)
        return sorted(found, key=lambda k: (found[k], k))

    def usage(self) -> tuple[int, int]:
        with self._mutex:
            return len(self._sizes), sum(self._sizes.values())

    def failed_keys(self) -> list[str]:
        return sorted(p.name for p in self.failed.iterdir() if p.is_dir())

    def failure_reason(self, key: str) -> str:
        try:
            return (self.failed / key / "reason.txt").read_text().strip()
        except OSError:
            return "?"

    def _held_bytes(self, key: str) -> int:
        return _size(self.incoming / f"{key}.dcm") + _size(self.outbox / key)

    # -- receiving -----------------------------------------------------------------------
    def accept(self, key: str, data: bytes) -> None:
        """Make ``data`` durable as ``incoming/<key>.dcm`` (write, fsync, rename, fsync the
        folder); SpoolFull past the limits, OSError where the disk fails."""
        with self._mutex:
            count = len(self._sizes) + (key not in self._sizes)
            total = sum(self._sizes.values()) - self._sizes.get(key, 0) + len(data)
            if count > self.max_instances or total > self.max_bytes:
                raise SpoolFull(f"spool full ({len(self._sizes)} instances, "
                                f"{sum(self._sizes.values()) / MB:.0f} MB held)")
            self._sizes[key] = self._sizes.get(key, 0) + len(data)
        started = time.perf_counter()
        try:
            atomic_write(self.incoming / f"{key}.dcm", data, durable=self.durable)
        except BaseException:
            with self._mutex:
                self._sizes[key] -= len(data)
                if not (self.incoming / f"{key}.dcm").exists() and not (self.outbox / key).exists():
                    self._sizes.pop(key, None)
            raise
        with self._mutex:
            self._sizes[key] = self._held_bytes(key)
            self.write_seconds += time.perf_counter() - started
            self.writes += 1

    def source(self, key: str) -> bytes | None:
        path = self.incoming / f"{key}.dcm"
        return path.read_bytes() if path.exists() else None

    # -- results and delivery ------------------------------------------------------------
    def delivery(self, key: str) -> Delivery:
        folder = self.outbox / key
        if not folder.is_dir():
            return Delivery(key, None)
        state = {}
        try:
            state = json.loads((folder / "state.json").read_text())
        except (OSError, ValueError):
            pass
        return Delivery(key, sorted(folder.glob("*.dcm")), int(state.get("attempts", 0)),
                        float(state.get("next_try", 0.0)), str(state.get("last_error", "")))

    def put_results(self, key: str, encoded: list[bytes]) -> Delivery:
        """The results of ``key`` into ``outbox/<key>/`` all at once (a folder renamed into
        place): a crash leaves all of them or none."""
        part = self.outbox / f".{key}.part"
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir()
        for i, data in enumerate(encoded):
            atomic_write(part / f"{i:02d}.dcm", data, durable=self.durable)
        atomic_write(part / "state.json", b'{"attempts": 0}', durable=self.durable)
        shutil.rmtree(self.outbox / key, ignore_errors=True)
        os.replace(part, self.outbox / key)
        if self.durable:
            sync_folder(self.outbox)
        with self._mutex:
            self._sizes[key] = self._held_bytes(key)
        return self.delivery(key)

    def record_attempt(self, key: str, error: str, next_try: float) -> Delivery:
        current = self.delivery(key)
        state = {"attempts": current.attempts + 1, "next_try": next_try, "last_error": error}
        atomic_write(self.outbox / key / "state.json", json.dumps(state).encode(),
                     durable=self.durable)
        return self.delivery(key)

    def delivered(self, key: str) -> None:
        """Every result was accepted: the instance leaves the spool, then its outbox."""
        (self.incoming / f"{key}.dcm").unlink(missing_ok=True)
        if self.durable:
            sync_folder(self.incoming)
        shutil.rmtree(self.outbox / key, ignore_errors=True)
        with self._mutex:
            self._sizes.pop(key, None)

    def fail(self, key: str, reason: str) -> Path:
        """Give up on ``key``: its source, results and ``reason.txt`` go to ``failed/<key>/``."""
        target = self.failed / key
        shutil.rmtree(target, ignore_errors=True)
        if (self.outbox / key).is_dir():
            os.replace(self.outbox / key, target)
        else:
            target.mkdir()
        source = self.incoming / f"{key}.dcm"
        if source.exists():
            os.replace(source, target / "source.dcm")
        atomic_write(target / "reason.txt", (reason.strip() + "\n").encode(),
                     durable=self.durable)
        with self._mutex:
            self._sizes.pop(key, None)
        return target
