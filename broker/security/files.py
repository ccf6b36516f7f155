"""Small durable files: whole-file atomic replacement and bounded reads.

The users file and the ACL file are small and change rarely, so each change
rewrites the whole file, never in place:

1. write the new contents to a temporary file in the same directory
   (``.<name>.<random>.tmp``, created with O_EXCL and the final mode, so the
   contents are never readable by others even for a moment);
2. fsync it; 3. rename it over the old file (atomic on POSIX);
4. fsync the directory, so the rename itself survives a power loss.

A crash at any point leaves either the old file or the new one, never a mix;
a failure removes the temporary file and leaves the old file as it was.
Readers never lock: they see one whole version or the other.

:func:`read_bounded` refuses anything that is not a regular file or is
larger than the caller's limit, before reading it; :func:`load_json` parses
what it read strictly (UTF-8, no duplicate keys, nesting too deep for the
parser is an error, not a crash).

If the final directory fsync fails, the error propagates although the new
file is already in place: whether it survives a power loss is then unknown,
which is what the error says.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tailrace.client.errors import InvalidConfigError

__all__ = ["load_json", "locked_directory", "read_bounded", "write_atomically"]


def write_atomically(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` durably and atomically (see the module doc).

    OSErrors (no space, no permission) propagate after clean-up.
    """
    path = Path(path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        tmp = f".{path.name}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode, dir_fd=dir_fd)
        try:
            try:
                os.fchmod(fd, mode)  # the umask may have narrowed it; never widened
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_bounded(path: str | os.PathLike[str], limit: int) -> tuple[bytes, os.stat_result]:
    """Read a whole regular file of at most ``limit`` bytes; return its
    contents and the ``fstat`` of the very file read.

    A missing file raises FileNotFoundError (callers decide what absence
    means); anything else wrong raises :class:`InvalidConfigError`.
    """
    where = repr(os.fspath(path))
    try:
        # O_NONBLOCK: opening a FIFO planted at the path must not hang us.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise InvalidConfigError(f"cannot open {where}: {exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidConfigError(f"{where} is not a regular file")
        if st.st_size > limit:
            raise InvalidConfigError(f"{where} is {st.st_size} bytes, over the {limit}-byte limit")
        chunks = []
        remaining = limit + 1
        while remaining and (chunk := os.read(fd, remaining)):
            chunks.append(chunk)
            remaining -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:  # grew between fstat and read
        raise InvalidConfigError(f"{where} is over the {limit}-byte limit")
    return data, st


@contextlib.contextmanager
def locked_directory(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive advisory lock (flock) on ``path``'s directory.

    Serializes read-modify-write cycles of files in it between processes
    (two ``tailrace users add`` at once must not lose one of the users).
    Readers do not take it: atomic replacement already protects them.
    """
    fd = os.open(Path(path).parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def load_json(data: bytes, where: str) -> Any:
    """Parse a JSON document strictly; any problem raises :class:`InvalidConfigError`."""
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_refuse_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidConfigError(f"{where} is not valid JSON: {exc}") from None
