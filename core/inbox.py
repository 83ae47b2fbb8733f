"""Each session's inbox: where files from a person land before the agent is told their path.

`<state dir>/inbox/<session id>/`, the directory 0700 and every file 0600.
A file keeps the name it was sent with, cleaned so that it can never leave
the inbox, hide, or clobber another: no separators, no control characters,
no leading dots, a bounded length, and a suffix when the name is taken.
Files older than the retention are removed (at start and daily).
"""

from __future__ import annotations

import os
import time
import unicodedata
from pathlib import Path
from typing import Callable

MAX_NAME = 120  # characters of a cleaned name, its extension included
MAX_EXT = 16


def split_ext(name: str) -> tuple[str, str]:
    """(stem, extension without the dot); an extension is short and alphanumeric, or there is none."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or not ext.isalnum() or len(ext) > MAX_EXT:
        return name, ""
    return stem, ext


def clean_name(name: str, fallback: str = "file") -> str:
    """A file name that stays in its directory: one path component, printable, visible, bounded."""
    name = unicodedata.normalize("NFC", name or "")
    # Separators (and the NUL a path can't hold) become "_"; other control characters go.
    name = "".join("_" if ch in "/\\\0" else ch for ch in name)
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip().lstrip(".").strip()
    if not name or name in (".", ".."):
        name = fallback
    stem, ext = split_ext(name)
    if len(name) > MAX_NAME:
        keep = MAX_NAME - (len(ext) + 1 if ext else 0)
        name = stem[:keep].rstrip() + ("." + ext if ext else "")
    return name


class Inbox:
    def __init__(self, root: Path, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self._clock = clock

    def dir(self, session_id: str) -> Path:
        """The session's inbox directory, made (0700) if it is not there yet."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.root / session_id
        path.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
        return path

    def reserve(self, session_id: str, name: str) -> Path:
        """A new, empty 0600 file for `name` (cleaned) in the session's inbox; never an existing one."""
        directory = self.dir(session_id)
        cleaned = clean_name(name)
        stem, ext = split_ext(cleaned)
        for n in range(1, 10000):
            candidate = cleaned if n == 1 else f"{stem}-{n}" + (f".{ext}" if ext else "")
            path = directory / candidate
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except FileExistsError:
                continue
            os.close(fd)
            return path
        raise FileExistsError(f"no free name for {cleaned} in {directory}")

    def holds(self, session_id: str, path: Path) -> bool:
        """True when `path` is a file directly in the session's inbox (symlinks resolved)."""
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return False
        return real.parent == (self.root / session_id).resolve() and real.is_file()

    def size(self) -> tuple[int, int]:
        """(files, bytes) in every inbox."""
        files = total = 0
        for _dirpath, _dirs, names, dirfd in _walk(self.root):
            for name in names:
                try:
                    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                except OSError:
                    continue
                files += 1
                total += st.st_size
        return files, total

    def prune(self, max_age_seconds: float) -> int:
        """Remove files older than `max_age_seconds`, and inboxes left empty; how many files went."""
        if not self.root.is_dir():
            return 0
        cutoff = self._clock() - max_age_seconds
        removed = 0
        for session_dir in self.root.iterdir():
            if not session_dir.is_dir() or session_dir.is_symlink():
                continue
            for path in session_dir.iterdir():
                try:
                    st = path.lstat()
                    if st.st_mtime < cutoff:
                        path.unlink()
                        removed += 1
                except OSError:
                    continue
            try:
                session_dir.rmdir()  # only when empty
            except OSError:
                pass
        return removed


def _walk(root: Path):  # type: ignore[no-untyped-def]
    if not root.is_dir():
        return iter(())
    return os.fwalk(root)
