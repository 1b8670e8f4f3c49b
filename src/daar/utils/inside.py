"""Files that one of our folders names stay inside that folder.

A `datasets` folder's state.json lists its data files, a fitted folder's daar.json its weights: a
name such as `../outside.arrow`, an absolute path, or a symbolic link that leads elsewhere would
make daar read (or copy into a run folder) a file the user never gave it. Such a name is refused
with an error naming the folder and the entry, never followed.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from daar.errors import UserError


def inside(folder: Path, name: object, where: str, error: type[UserError] = UserError) -> Path:
    """`folder / name` when `name` is a relative path with no `..` that stays in `folder` once
    symbolic links are followed; otherwise `error`, naming `where` (the file and entry that named it)."""
    text = name if isinstance(name, str) else ""
    parts = PurePosixPath(text).parts
    if (
        not text
        or "\x00" in text
        or "\\" in text
        or PurePosixPath(text).is_absolute()
        or PureWindowsPath(text).drive
        or ".." in parts
    ):
        raise error(f"{where}: {name!r} is not a plain name of a file inside {folder}; daar reads nothing outside it")
    path = Path(folder) / text
    if not within(path, folder):
        raise error(f"{where}: {text!r} is a symbolic link leading out of {folder}; daar reads nothing outside it")
    return path


def within(path: Path, folder: Path) -> bool:
    """Whether `path`, with every symbolic link followed, lies in `folder` (itself resolved)."""
    base = os.path.realpath(folder)
    return os.path.commonpath([os.path.realpath(path), base]) == base
