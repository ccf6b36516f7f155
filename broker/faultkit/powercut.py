"""A power-cut simulator built on the StorageIO seam.

What survives a power cut is what was made durable, and nothing else is
promised. :class:`PowerCutIO` passes every call through to the OS and keeps a
model of durability beside it:

* File contents. On ``fsync``/``fdatasync`` of an fd, the file's whole
  content is copied as its *durable content* (read before the real call, so
  the copy never holds more than the call covered: what the broker appends
  meanwhile is not claimed durable). Bytes stored through an mmap count
  like any write: they are in the page cache, ``fdatasync`` on the fd writes
  them, and reading the file sees them. Size changes (``fallocate``,
  ``ftruncate``) are durable the same way, at the next sync of the file.
* Names. Creating a file (``open`` with O_CREAT), ``mkdir``, ``rename``,
  ``unlink`` and ``rmtree`` are logged, in order, as operations on directory
  entries. An operation is durable once a directory it changes was
  ``fsync_dir``-ed after it (a rename: either of its directories). A file
  whose name is not durable is gone after the cut, however often its data
  was fsynced.

At the cut (:meth:`cut`: at a named crash point, at the n-th seam call, or
whenever a test calls it) the model is frozen: the current content of every
file is read (what the page cache held), and every later seam call raises
:class:`PowerCut` (an OSError, EIO: the broker handles it as a failed
syscall, and nothing it does afterwards counts). The test then stops the
broker and calls :meth:`materialize`, which rewrites the directory tree as
one possible post-cut state, chosen by a seeded RNG:

* names: the durable operations, plus a random prefix of all operations
  (0: only what was fsynced, the POSIX minimum; all: a journal that happened
  to commit everything), replayed in order over the tree as it was at
  :meth:`arm` (an operation whose source no longer exists is skipped);
* each file whose current content differs from its durable content gets one
  of: the durable content (unsynced writes lost), the current content (all
  written back), or torn: the current content up to a random byte inside the
  changed range (often half a batch), the durable content after it, then
  nothing more, zeros, or random garbage (inside the changed range, or as a
  block added past the end of the file). Bytes both versions share are never
  touched: that is durable data, and damaging it is corruption at rest
  (a different scenario).

:meth:`materialize` returns a text description of the choices; print it
with the seed on failure to replay the exact image.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import stat
import threading
from dataclasses import dataclass

from ..log.storage_io import StorageIO

__all__ = ["PowerCut", "PowerCutIO"]

#: Files made outside the seam that a materialized image keeps as they are
#: (the data-directory lock has no content; the cluster id is written with
#: its own fsyncs).
OUTSIDE_KEPT = ("~lock", "~cluster-id")


class PowerCut(OSError):
    """A seam call after the cut: the machine is off."""

    def __init__(self) -> None:
        super().__init__(errno.EIO, "simulated power cut")


@dataclass(slots=True)
class _Op:
    kind: str  # "link", "unlink", "rename"
    parent: int
    name: str
    node: int
    dst_parent: int = -1
    dst_name: str = ""


class PowerCutIO(StorageIO):
    """See the module docstring. ``cut_at_point``/``cut_after_calls`` arm an
    automatic cut; :meth:`cut` cuts at once."""

    def __init__(
        self,
        root: str,
        *,
        cut_at_point: str | None = None,
        cut_point_hit: int = 0,
        cut_after_calls: int | None = None,
    ) -> None:
        self.root = os.path.abspath(root)
        self.cut_at_point = cut_at_point
        self.cut_point_hit = cut_point_hit
        self.cut_after_calls = cut_after_calls
        self._lock = threading.RLock()
        self.armed = False
        self.is_cut = False
        self.calls = 0
        self.point_hits: dict[str, int] = {}
        self.syncs = 0
        #: names of files found under root that no seam call made
        self.outside: set[str] = set()
        self._reset()

    # --- model state ---------------------------------------------------------

    def _reset(self) -> None:
        self._next_id = 0
        self._ids: dict[tuple[int, int], int] = {}
        self._is_dir: dict[int, bool] = {}
        self._base: dict[int, dict[str, int]] = {}
        self._ops: list[_Op] = []
        self._dir_synced: dict[int, int] = {}
        self._durable: dict[int, bytes] = {}
        self._current: dict[int, bytes] = {}
        self._root_id = -1
        self._outside_nodes: set[int] = set()
        self._force_contents: str | None = None

    def _new_node(self, st: os.stat_result) -> int:
        node = self._next_id
        self._next_id += 1
        self._ids[(st.st_dev, st.st_ino)] = node
        self._is_dir[node] = stat.S_ISDIR(st.st_mode)
        return node

    def _node(self, path: str) -> int:
        st = os.lstat(path)
        node = self._ids.get((st.st_dev, st.st_ino))
        if node is None:
            node = self._new_node(st)
            self._outside_nodes.add(node)
            self.outside.add(os.path.relpath(path, self.root))
        return node

    def arm(self) -> None:
        """Take the baseline: everything under root now counts as durable."""
        with self._lock:
            self._reset()
            self.is_cut = False
            self.calls = 0
            self.point_hits = {}
            self.outside = set()
            self._root_id = self._new_node(os.lstat(self.root))
            self._base[self._root_id] = {}
            for dirpath, dirnames, filenames in os.walk(self.root):
                parent = self._ids[_key(os.lstat(dirpath))]
                for name in dirnames + filenames:
                    full = os.path.join(dirpath, name)
                    node = self._new_node(os.lstat(full))
                    self._base[parent][name] = node
                    if self._is_dir[node]:
                        self._base[node] = {}
                    else:
                        self._durable[node] = _read(full)
            self.armed = True

    def _tick(self, point: str | None = None) -> None:
        """Every seam call: refuse after the cut, and cut when armed to."""
        if not self.armed:
            return
        with self._lock:
            if self.is_cut:
                raise PowerCut()
            self.calls += 1
            fire = self.cut_after_calls is not None and self.calls > self.cut_after_calls
            if point is not None:
                hit = self.point_hits.get(point, 0)
                self.point_hits[point] = hit + 1
                fire = fire or (point == self.cut_at_point and hit >= self.cut_point_hit)
            if fire:
                self._cut_locked()
                raise PowerCut()

    def cut(self) -> None:
        """Cut the power now (from the thread that holds the log's state)."""
        with self._lock:
            if not self.is_cut:
                self._cut_locked()

    def _cut_locked(self) -> None:
        self.is_cut = True
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in filenames:
                full = os.path.join(dirpath, name)
                try:
                    node = self._node(full)
                    self._current[node] = _read(full)
                except FileNotFoundError:
                    continue
            del dirnames  # all walked

    def _op(self, op: _Op) -> None:
        self._ops.append(op)

    # --- the seam ------------------------------------------------------------

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        self._tick()
        if not self.armed or not flags & os.O_CREAT:
            return super().open(path, flags, mode)
        with self._lock:
            existed = os.path.lexists(path)
            fd = super().open(path, flags, mode)
            if not existed:
                parent = self._node(os.path.dirname(path))
                node = self._new_node(os.fstat(fd))
                self._op(_Op("link", parent, os.path.basename(path), node))
            return fd

    def mkdir(self, path: str) -> None:
        self._tick()
        super().mkdir(path)
        if self.armed:
            with self._lock:
                parent = self._node(os.path.dirname(path))
                node = self._new_node(os.lstat(path))
                self._op(_Op("link", parent, os.path.basename(path), node))

    def rename(self, src: str, dst: str) -> None:
        self._tick()
        if not self.armed:
            super().rename(src, dst)
            return
        with self._lock:
            node = self._node(src)
            sparent = self._node(os.path.dirname(src))
            dparent = self._node(os.path.dirname(dst))
            if os.path.isfile(dst):
                replaced = self._node(dst)
                self._current[replaced] = _read(dst)
                self._forget(dst)
            super().rename(src, dst)
            self._op(
                _Op("rename", sparent, os.path.basename(src), node, dparent, os.path.basename(dst))
            )

    def unlink(self, path: str) -> None:
        self._tick()
        if not self.armed:
            super().unlink(path)
            return
        with self._lock:
            node = self._node(path)
            parent = self._node(os.path.dirname(path))
            self._current[node] = _read(path)
            self._forget(path)
            super().unlink(path)
            self._op(_Op("unlink", parent, os.path.basename(path), node))

    def rmtree(self, path: str) -> None:
        self._tick()
        if not self.armed:
            super().rmtree(path)
            return
        with self._lock:
            for dirpath, dirnames, filenames in os.walk(path, topdown=False):
                parent = self._node(dirpath)
                for name in filenames + dirnames:
                    full = os.path.join(dirpath, name)
                    node = self._node(full)
                    if not self._is_dir[node]:
                        self._current[node] = _read(full)
                    self._op(_Op("unlink", parent, name, node))
            top = self._node(path)
            self._op(_Op("unlink", self._node(os.path.dirname(path)), os.path.basename(path), top))
            for dirpath, dirnames, filenames in os.walk(path, topdown=False):
                for name in filenames + dirnames:
                    self._forget(os.path.join(dirpath, name))
            self._forget(path)
            super().rmtree(path)

    def _forget(self, path: str) -> None:
        """The inode number may be reused once the file is gone."""
        self._ids.pop(_key(os.lstat(path)), None)

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        self._tick()
        super().fallocate(fd, offset, length)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        self._tick()
        super().pwrite(fd, data, offset)

    def ftruncate(self, fd: int, length: int) -> None:
        self._tick()
        super().ftruncate(fd, length)

    def fdatasync(self, fd: int) -> None:
        self._sync(fd, super().fdatasync)

    def fsync(self, fd: int) -> None:
        self._sync(fd, super().fsync)

    def _sync(self, fd: int, real) -> None:  # type: ignore[no-untyped-def]
        self._tick()
        if not self.armed:
            real(fd)
            return
        content = _read_fd(fd)  # before the call: never more than it covers
        real(fd)
        with self._lock:
            if self.is_cut:
                raise PowerCut()  # died during the call: it did not return
            st = os.fstat(fd)
            node = self._ids.get(_key(st))
            if node is None:
                node = self._new_node(st)
                self._outside_nodes.add(node)
            if not stat.S_ISDIR(st.st_mode):
                self._durable[node] = content
                self.syncs += 1

    def fsync_dir(self, path: str) -> None:
        self._tick()
        if not self.armed:
            super().fsync_dir(path)
            return
        with self._lock:
            upto = len(self._ops)
            node = self._node(path)
        super().fsync_dir(path)
        with self._lock:
            if self.is_cut:
                raise PowerCut()
            self._dir_synced[node] = max(self._dir_synced.get(node, 0), upto)

    def crash_point(self, name: str) -> None:
        self._tick(name)

    # --- after the cut -------------------------------------------------------

    def materialize(
        self, seed: int, *, names: str | None = None, contents: str | None = None
    ) -> str:
        """Rewrite the tree under root as one post-cut state (see the module
        docstring); returns a description of the choices made. ``names``
        ("durable only", "everything", "prefix") and ``contents``
        ("durable", "current", "torn") force a choice (regression tests)."""
        with self._lock:
            if not self.is_cut:
                raise RuntimeError("materialize() before the cut")
            rng = random.Random(seed)
            self._force_contents = contents
            n = len(self._ops)
            mode = names or rng.choice(("durable only", "everything", "prefix", "prefix"))
            k = {"durable only": 0, "everything": n}.get(mode, rng.randint(0, n))
            entries = {d: dict(e) for d, e in self._base.items()}
            skipped = 0
            for i, op in enumerate(self._ops):
                durable = self._dir_synced.get(op.parent, 0) > i or (
                    op.kind == "rename" and self._dir_synced.get(op.dst_parent, 0) > i
                )
                if i < k or durable:
                    skipped += not _apply(entries, op, self._is_dir)
            lines = [
                f"seed {seed}: names: {mode}, {k} of {n} operations (plus the durable ones), "
                f"{skipped} skipped"
            ]
            for name in os.listdir(self.root):
                full = os.path.join(self.root, name)
                if name in OUTSIDE_KEPT:
                    continue
                if os.path.isdir(full) and not os.path.islink(full):
                    shutil.rmtree(full)
                else:
                    os.unlink(full)
            self._write_dir(self.root, self._root_id, entries, rng, lines, set())
            self.armed = False
            return "\n".join(lines)

    def _write_dir(
        self,
        path: str,
        node: int,
        entries: dict[int, dict[str, int]],
        rng: random.Random,
        lines: list[str],
        seen: set[int],
    ) -> None:
        seen.add(node)
        for name, child in sorted(entries.get(node, {}).items()):
            if child in seen:
                continue
            full = os.path.join(path, name)
            if path == self.root and name in OUTSIDE_KEPT:
                continue
            if self._is_dir[child]:
                os.mkdir(full)
                self._write_dir(full, child, entries, rng, lines, seen)
                continue
            seen.add(child)
            data, how = self._choose_content(child, rng)
            with open(full, "wb") as f:
                f.write(data)
            if how:
                lines.append(f"  {os.path.relpath(full, self.root)}: {how}")

    def _choose_content(self, node: int, rng: random.Random) -> tuple[bytes, str]:
        durable = self._durable.get(node, b"")
        current = self._current.get(node, durable)
        if current == durable:
            return durable, ""
        p = _common_prefix(durable, current)
        e = _common_suffix_start(durable, current)
        choice = self._force_contents or rng.choice(("durable", "current", "torn", "torn", "torn"))
        if choice == "durable":
            return durable, f"unsynced changes lost ({len(current)} -> {len(durable)} bytes)"
        if choice == "current":
            return current, "everything written back"
        q = rng.randint(p, max(p, e))
        size = rng.choice((len(durable), len(current)))
        out = bytearray(size)
        out[: min(len(durable), size)] = durable[:size]
        m = min(q, len(current), size)
        out[:m] = current[:m]
        junk = rng.choice(("nothing", "zeros", "garbage"))
        how = f"torn at byte {q} (changed range {p}..{e}), size {size}, then {junk}"
        if junk == "zeros" and q < size:
            z = rng.randint(1, max(1, min(size, e) - q))
            out[q : q + z] = bytes(len(out[q : q + z]))
        elif junk == "garbage":
            g = rng.randint(1, 8192)
            if e > q:
                g = min(g, e - q)
                start = q
            else:
                start = len(out)  # a nonsense block added past the end
            blob = rng.randbytes(g)
            if start + g > len(out):
                out.extend(bytes(start + g - len(out)))
            out[start : start + g] = blob
            how += f" ({g} bytes at {start})"
        return bytes(out), how


def _apply(entries: dict[int, dict[str, int]], op: _Op, is_dir: dict[int, bool]) -> bool:
    if op.kind == "link":
        parent = entries.get(op.parent)
        if parent is None:
            return False
        parent[op.name] = op.node
        if is_dir[op.node]:
            entries.setdefault(op.node, {})
        return True
    if op.kind == "unlink":
        parent = entries.get(op.parent)
        if parent is None or parent.get(op.name) != op.node:
            return False
        del parent[op.name]
        return True
    src = entries.get(op.parent)
    dst = entries.get(op.dst_parent)
    if src is None or dst is None or src.get(op.name) != op.node:
        return False
    del src[op.name]
    dst[op.dst_name] = op.node
    return True


def _key(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _read_fd(fd: int) -> bytes:
    """The whole content of an open file, whatever its open mode."""
    with open(f"/proc/self/fd/{fd}", "rb") as f:
        return f.read()


_CHUNK = 1 << 16


def _common_prefix(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix (chunk compares run in C)."""
    n = min(len(a), len(b))
    pos = 0
    while pos < n and a[pos : pos + _CHUNK] == b[pos : pos + _CHUNK]:
        pos += _CHUNK
    if pos >= n:
        return n
    end = min(pos + _CHUNK, n)
    while pos < end and a[pos] == b[pos]:
        pos += 1
    return pos


def _common_suffix_start(a: bytes, b: bytes) -> int:
    """The end of the changed range: where the longest suffix that both hold
    at the same positions starts (the longer length if sizes differ)."""
    if len(a) != len(b):
        return max(len(a), len(b))
    pos = len(a)
    while pos > 0 and a[max(0, pos - _CHUNK) : pos] == b[max(0, pos - _CHUNK) : pos]:
        pos -= _CHUNK
    if pos <= 0:
        return 0
    start = max(0, pos - _CHUNK)
    while pos > start and a[pos - 1] == b[pos - 1]:
        pos -= 1
    return pos
