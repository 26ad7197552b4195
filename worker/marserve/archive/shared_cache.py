"""A model directory shared by all replicas of a model, filled by the first one only.

With `spec.archive.cache`, every replica's init container runs `marserve extract --shared` on
the same directory of a ReadWriteMany volume (named by the archive's sha256). The first takes a
lock and fills it; the others wait on the lock and find it complete: a cold start then costs
one download and one unpack per archive, not one per pod. The directory only ever appears whole
(the extractor publishes it with one rename), so a reader never sees a partial model, and a
filler that dies mid-way releases the lock with its process and leaves nothing behind.
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from marserve.manifest import MANIFEST_PATH


def fill_once(dest: Path, fill: Callable[[Path], object]) -> bool:
    """Makes `dest` hold the model, calling `fill(dest)` unless another run already did.

    Returns True on a cache hit (the model was there), False when this call filled it.
    """
    if is_complete(dest):
        return True
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest.parent / f".{dest.name}.lock"):
        if is_complete(dest):
            return True
        if dest.exists():  # not made by a fill (fills rename a whole tree into place)
            shutil.rmtree(dest)
        fill(dest)
        return False


def is_complete(dest: Path) -> bool:
    return (dest / MANIFEST_PATH).is_file()


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive lock held while filling; flock works across pods on NFS-backed volumes and
    is released by the kernel if the holder dies."""
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
