"""The service's own store for uploaded photos: content-addressed, atomic, no leftovers.

Uploads never go into the indexed photo folder (that folder belongs to whoever built the
index). A file is written as ``.tmp/<pid>-<random>.part``, fsynced, then renamed to
``<sha[:2]>/<sha><suffix>``, so a reader never sees half a photo. Between that rename and the
index commit a crash could leave a photo no item points at; a marker in ``.pending/`` is
written first and removed once the add is committed or undone, so :meth:`UploadStore.recover`
(called when a writer starts) can tell those orphans from real items. ``.part`` files of
processes that no longer exist are removed at the same time.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["StoredFile", "UploadStore", "image_suffix"]

SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp"}


def image_suffix(data: bytes) -> str:
    """File suffix from the image header (``.img`` when the format is unknown)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as probe:
            return SUFFIXES.get(probe.format or "", ".img")
    except Exception:  # noqa: BLE001 - only called on images that decoded already
        return ".img"


@dataclass(frozen=True)
class StoredFile:
    relative: str  # what the item's metadata records ("image")
    created: bool  # False when the same photo was already stored


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class UploadStore:
    """Photos by content hash under ``root``; see the module docstring for the protocol."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.tmp = self.root / ".tmp"
        self.pending = self.root / ".pending"

    def _ensure(self) -> None:
        for folder in (self.root, self.tmp, self.pending):
            folder.mkdir(parents=True, exist_ok=True)

    def path_of(self, relative: str) -> Path:
        return self.root / relative

    def put(self, data: bytes, suffix: str) -> StoredFile:
        """Store ``data`` durably; the caller must :meth:`commit` or :meth:`discard` it."""
        self._ensure()
        digest = hashlib.sha256(data).hexdigest()
        relative = f"{digest[:2]}/{digest}{suffix}"
        target = self.root / relative
        if target.is_file():
            return StoredFile(relative, created=False)
        marker = self.pending / f"{digest}{suffix}"
        temporary = self.tmp / f"{os.getpid()}-{secrets.token_hex(8)}.part"
        try:
            marker.write_bytes(relative.encode())
            _fsync_dir(self.pending)  # the marker is on disk before the photo can be
            with open(temporary, "xb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temporary, target)
            _fsync_dir(target.parent)
        except BaseException:
            temporary.unlink(missing_ok=True)
            marker.unlink(missing_ok=True)
            raise
        return StoredFile(relative, created=True)

    def commit(self, stored: StoredFile) -> None:
        """The item that points at ``stored`` is committed: it is no longer pending."""
        if stored.created:
            self._marker(stored).unlink(missing_ok=True)

    def discard(self, stored: StoredFile) -> None:
        """The add failed: remove the photo if this add created it (nothing else uses it)."""
        if stored.created:
            (self.root / stored.relative).unlink(missing_ok=True)
            self._marker(stored).unlink(missing_ok=True)

    def _marker(self, stored: StoredFile) -> Path:
        return self.pending / Path(stored.relative).name

    def recover(self, is_referenced: Callable[[str], bool | None]) -> dict[str, int]:
        """Undo what crashed writers left: dead processes' ``.part`` files, orphan photos.

        ``is_referenced(relative)`` says whether a committed item records that photo (None:
        cannot tell, so the photo is kept). Returns how many files of each kind were removed.
        """
        removed = {"partial": 0, "orphans": 0}
        if self.tmp.is_dir():
            for part in self.tmp.glob("*.part"):
                pid_text = part.name.split("-", 1)[0]
                if pid_text.isdigit() and _pid_alive(int(pid_text)) and int(pid_text) != 0:
                    if int(pid_text) != os.getpid():
                        continue  # another live process is writing it
                part.unlink(missing_ok=True)
                removed["partial"] += 1
        if self.pending.is_dir():
            for marker in self.pending.iterdir():
                try:
                    relative = marker.read_text().strip()
                except (OSError, UnicodeDecodeError):
                    relative = ""
                target = (self.root / relative).resolve() if relative else None
                inside = target is not None and target.is_relative_to(self.root)
                if inside and target.is_file() and is_referenced(relative) is False:
                    target.unlink()
                    removed["orphans"] += 1
                marker.unlink(missing_ok=True)
        return removed
