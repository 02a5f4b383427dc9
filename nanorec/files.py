"""The one way nanorec writes a file: atomically.

Every output (weights, checkpoints, tables, metrics, configs, submissions,
leaderboards) is written to a temporary file in the destination's folder,
flushed to disk, given the permissions an ordinary `open(path, "w")` would
(0666 minus the user's umask), and renamed over the destination. A reader, or
a run killed at any instant, sees the old file or the new one, never half of
one, and a failed write leaves the old file untouched.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Callable

from .errors import DataError, UsageError


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)` to produce the file, then move it to `path`.

    Raises DataError naming `path` when its folder is missing or not writable,
    or when `path` is a folder."""
    path = os.fspath(path)
    if not path.strip():
        raise UsageError("empty output path")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder, expected a file path")
    _check_folder(path, folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    except OSError as e:
        raise DataError(f"{path}: cannot write here ({e.strerror})") from None
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:  # the bytes reach the disk before the rename makes them visible
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        raise DataError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _check_folder(path: str, folder: str) -> None:
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise DataError(f"{path}: {folder} is a file, not a folder")
    if not os.path.isdir(folder):
        raise DataError(f"{path}: folder {folder} does not exist")


def write_text(path: str, text: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    atomic_write(path, write)


def write_json(path: str, obj, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent) + "\n")


def check_writable_folder(path: str, what: str = "output") -> None:
    """Fail before the work, not after it: `path`'s folder must exist and accept files."""
    if not os.fspath(path).strip():
        raise UsageError(f"empty path for the {what}")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder, expected a file path for the {what}")
    _check_folder(path, folder)
    if not os.access(folder, os.W_OK):
        raise DataError(f"{path}: folder {folder} is not writable")


def check_output_folder(path: str, what: str = "output folder") -> None:
    """Fail before the work: `path` must be a folder, or a path where one can be created."""
    if not os.fspath(path).strip():
        raise UsageError(f"empty path for the {what}")
    if os.path.exists(path) and not os.path.isdir(path):
        raise DataError(f"{path}: exists and is not a folder")
    ancestor = os.path.abspath(path)  # its first existing ancestor must be a folder
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise DataError(f"{path}: cannot create the {what} ({ancestor} is a file)")
