"""Which files may go to the phone: the rules of `sm share` and `/send`, without any I/O but stat.

`/send` reads only inside the session's working directory (symlinks and `..`
resolved first) and holds back secrets (`.env`, `*.pem`, `id_*`, `*.key`)
until a person confirms. `sm share` takes an agent's own paths, never sm's
state (tokens, database), never a secret, and nothing over the size limit.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from pathlib import Path

from core.errors import Forbidden, Invalid, NeedsConfirmation, NotFound, TooLarge

SECRET_PATTERNS = (".env", ".env.*", "*.env", "*.pem", "id_*", "*.key", "*.p12", "*.pfx")
MB = 1024 * 1024
MAX_FILES = 20  # one share: two albums of ten


def secret_files(paths: list[Path]) -> NeedsConfirmation:
    """The refusal of files that look like secrets; a person may confirm sending them anyway."""
    names = ", ".join(p.name for p in paths)
    return NeedsConfirmation(f"{names}: looks like a secret ({', '.join(SECRET_PATTERNS[:5])})",
                             [str(p) for p in paths])


def is_secret(path: Path) -> bool:
    return any(fnmatch.fnmatch(path.name, pattern) for pattern in SECRET_PATTERNS)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def in_workdir(workdir: str, pattern: str) -> list[Path]:
    """The regular files `pattern` (a path or a glob, relative to `workdir`) names there.

    Every match is resolved (symlinks, `..`) before it is judged, so neither
    can lead outside; one that does is refused, naming it.
    """
    pattern = pattern.strip()
    if not pattern:
        raise Invalid("name a file or a glob: /send report.pdf, /send out/*.png")
    if any(ord(ch) < 32 for ch in pattern):
        raise Invalid("the path holds control characters")
    try:
        return _in_workdir(workdir, pattern)
    except OSError as exc:
        raise Invalid(f"{pattern}: {exc.strerror or exc}") from None


def _in_workdir(workdir: str, pattern: str) -> list[Path]:
    root = Path(os.path.realpath(workdir))
    full = pattern if os.path.isabs(pattern) else os.path.join(root, pattern)
    matches = sorted(glob.glob(full, recursive=False)) if glob.has_magic(pattern) else [full]
    found: list[Path] = []
    for match in matches:
        real = Path(os.path.realpath(match))
        if not _inside(real, root):
            raise Forbidden(f"{pattern} leads outside the session's directory ({root}); /send reads only there")
        if real.is_file():
            found.append(real)
    if not found:
        raise NotFound(f"no file matches {pattern} in {root}")
    return found


def check_files(paths: list[Path], max_bytes: int, state_dir: Path, inbox: Path) -> list[Path]:
    """Regular files, readable, within the size limit, none of sm's own; resolved."""
    if not paths:
        raise Invalid("name at least one file")
    if len(paths) > MAX_FILES:
        raise Invalid(f"{len(paths)} files at once; at most {MAX_FILES}")
    state = Path(os.path.realpath(state_dir))
    inbox_real = Path(os.path.realpath(inbox))
    out: list[Path] = []
    for path in paths:
        try:
            out.append(_check_file(path, max_bytes, state, inbox_real))
        except OSError as exc:
            raise Invalid(f"{path}: {exc.strerror or exc}") from None
    return out


def _check_file(path: Path, max_bytes: int, state: Path, inbox_real: Path) -> Path:
    real = Path(os.path.realpath(path))
    if not real.exists():
        raise NotFound(f"{path}: no such file")
    if not real.is_file():
        raise Invalid(f"{path}: not a regular file")
    if _inside(real, state) and not _inside(real, inbox_real):
        raise Forbidden(f"{path}: sm's own state (tokens, database) is never shared")
    if not os.access(real, os.R_OK):
        raise Forbidden(f"{path}: not readable")
    size = real.stat().st_size
    if size == 0:
        raise Invalid(f"{path}: empty; Telegram refuses empty files")
    if size > max_bytes:
        raise TooLarge(f"{path}: {size / MB:.1f} MB, over the {max_bytes / MB:.0f} MB upload limit "
                       "(SM_SHARE_MAX_MB); compress or split it")
    return real
