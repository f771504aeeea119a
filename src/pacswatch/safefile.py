"""Files pacswatch writes (notices for review, exports, scan output), created so that a symbolic
link planted where the file goes is never followed.

An output folder is often shared or world-writable (/tmp, a team's review folder). Whoever can
write there can plant a link at the name we are about to write, or at the temporary name we
would use, and have us overwrite a file of theirs choosing with our permissions. So:

- a whole file (`write_atomic`) is written to a temporary file with a random name in the target
  folder, created with O_EXCL|O_NOFOLLOW (never an existing file, never through a link), then
  renamed over the target, which replaces a name and never follows it; a link already at the
  target is refused with a clear error rather than silently replaced;
- a stream (`open_stream`, scan's `-o FILE`, appended to on resume) is opened with O_NOFOLLOW.

Only the last component is protected: the folder named by the operator is theirs to choose.
This module is a leaf: it imports nothing of pacswatch.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from pathlib import Path
from typing import IO

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class UnsafePath(OSError):
    """The output path is a symbolic link (or not a regular file where one is written whole)."""


def _refuse_link(path: Path) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath(f"refusing to write {path}: it is a symbolic link (remove it, or choose another path)")
    if stat.S_ISDIR(info.st_mode):
        raise UnsafePath(f"cannot write {path}: it is a folder")


def write_atomic(path: str | Path, data: bytes | str, *, mode: int = 0o644) -> Path:
    """Write `data` whole to `path` (a reader sees the old file or the new one, never half of
    one), without following a link at `path` or at the temporary name. Returns the path."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    folder = path.parent
    _refuse_link(path)
    tmp = folder / f".{path.name}.{secrets.token_hex(8)}.tmp"  # random: no name to plant a link at
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # rename(2) replaces the name; it does not follow a link there
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def open_stream(path: str | Path, *, append: bool = False, encoding: str = "utf-8") -> IO[str]:
    """A text file for writing bit by bit (scan's `-o FILE`), opened without following a link:
    truncated, or appended to with `append`. A link to something that is not a file (/dev/stdout,
    /dev/null, /proc/self/fd/N: a terminal, a pipe, a device) is followed: writing there
    overwrites nothing, and a planted link has nothing to gain."""
    own = _own_descriptor(path)
    if own is not None:
        # /dev/stdout is the shell's redirection, perhaps to a file: write where it points,
        # sharing its offset (`-o /dev/stdout >> log` appends), as '-' does.
        return os.fdopen(os.dup(own), "a" if append else "w", encoding=encoding)
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | _NOFOLLOW | _CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno != errno.ELOOP:  # ELOOP: what O_NOFOLLOW says when the last component is a link
            raise
        fd = _open_link_to_stream(path, append)
    return os.fdopen(fd, "a" if append else "w", encoding=encoding)


_STANDARD = {"/dev/stdout": 1, "/dev/stderr": 2}
_OWN_FD = re.compile(r"/(?:dev/fd|proc/self/fd)/([0-9]+)")


def _own_descriptor(path: str | Path) -> int | None:
    """The descriptor a path names when it is one of this process's own (/dev/stdout,
    /dev/fd/N, /proc/self/fd/N): the kernel's names, which no one can plant in a shared folder."""
    text = os.fspath(path)
    if text in _STANDARD:
        return _STANDARD[text]
    match = _OWN_FD.fullmatch(text)
    return int(match.group(1)) if match else None


def _open_link_to_stream(path: Path, append: bool) -> int:
    """Open the link at `path` only if it leads to an existing non-regular file. Opened without
    O_CREAT (a dangling link creates nothing) or O_TRUNC (nothing is cut before the check), then
    checked on the descriptor itself: a link swapped to a file meanwhile is still refused."""
    refused = UnsafePath(f"refusing to write {path}: it is a symbolic link to a file or to nothing (remove it, "
                         "or choose another path; '-' is standard output)")
    try:
        fd = os.open(path, os.O_WRONLY | _CLOEXEC | (os.O_APPEND if append else 0))
    except FileNotFoundError:
        raise refused from None
    if stat.S_ISREG(os.fstat(fd).st_mode) or stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise refused
    return fd
