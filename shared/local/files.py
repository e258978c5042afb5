"""The local data directory is its owner's alone: the directory 0700, every file in it 0600.

Files are created with those modes (`os.open(..., 0o600)`, and the local processes run with umask 077 so
that nothing they create is wider); `private_dir` also narrows a directory made by an older version.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import IO, Any

DIR_MODE = 0o700
FILE_MODE = 0o600
UMASK = 0o077


def private_dir(path: Path) -> Path:
    """Create `path` (0700) or narrow an existing one: the directory to 0700, what it holds to 0600/0700.

    Symbolic links are left alone (changing a link's mode would change its target's, which may be anywhere).
    """
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    path.chmod(DIR_MODE)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            entry = Path(root, name)
            if not entry.is_symlink():
                entry.chmod(DIR_MODE)
        for name in files:
            entry = Path(root, name)
            if not entry.is_symlink() and stat.S_IMODE(entry.lstat().st_mode) & ~FILE_MODE:
                entry.chmod(FILE_MODE)
    return path


def open_private(path: Path, mode: str = "ab") -> IO[Any]:
    """Open a file for writing (`ab`, `wb`, `a` or `w`), creating it 0600 whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, FILE_MODE), mode)


def write_private_json(path: Path, data: Any) -> None:
    """Replace `path` atomically with `data` as JSON, mode 0600."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open_private(tmp, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
