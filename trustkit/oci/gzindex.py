"""Layer `registry` (clients): random access into a gzip file without unpacking it.

``docker save | gzip`` gives one gzip stream over a tar.  Its members (layers, configs) are read
by byte range of the *uncompressed* tar, so one pass over the file records checkpoints: the
inflater's state (``zlib`` decompressor copies, ~40 KB each) every ``SPAN`` compressed bytes.
Reading a range then starts at the nearest checkpoint before it and inflates forward, so no byte
of the archive is written to disk and memory stays bounded (the checkpoints, plus one read).
"""

from __future__ import annotations

import bisect
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from trustkit.errors import SourceError

SPAN = 4 << 20  # compressed bytes between checkpoints: at most this much is inflated to reach a range
_READ = 1 << 20  # compressed bytes read at once
_OUT = 1 << 20  # uncompressed bytes produced per inflate call: bounds memory whatever the ratio
_GZIP = 31  # zlib window bits for a gzip wrapper


@dataclass(frozen=True)
class _Point:
    out: int  # uncompressed offset the state has produced up to
    compressed: int  # compressed offset the state has consumed up to
    inflater: Any  # zlib decompressor at that point (copied before use)


class GzipIndex:
    """Checkpoints into one gzip file, filled by the :meth:`scanner` pass."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._points: list[_Point] = []
        self._outs: list[int] = []

    def scanner(self, handle: IO[bytes]) -> GzipScanner:
        """The uncompressed stream, read once from the start; records the checkpoints."""
        return GzipScanner(handle, self)

    def add(self, point: _Point) -> None:
        self._points.append(point)
        self._outs.append(point.out)

    def open(self, offset: int, length: int) -> GzipRangeReader:
        """A reader over ``length`` uncompressed bytes from ``offset``."""
        if not self._points:
            raise SourceError(f"{self.path} was not scanned")
        point = self._points[bisect.bisect_right(self._outs, offset) - 1]
        return GzipRangeReader(self.path, point, offset, length)


class _Inflating(io.RawIOBase):
    """Inflates from a compressed file handle, ``_OUT`` bytes at a time."""

    def __init__(self, handle: IO[bytes], inflater: Any, compressed: int, path: Path) -> None:
        self._handle = handle
        self._inflater = inflater
        self._compressed = compressed  # consumed so far
        self._path = path
        self._pending = b""  # compressed input not inflated yet
        self._buffer = b""
        self._done = False
        self.produced = 0  # uncompressed bytes inflated from this handle (handed out or buffered)

    def readable(self) -> bool:
        return True

    def _at_boundary(self) -> None:
        """Called when every compressed byte read so far has been inflated."""

    def _fill(self) -> bool:
        """Inflate more output into the buffer; False at the end of the stream."""
        while not self._buffer:
            if self._done:
                return False
            if not self._pending:
                self._at_boundary()
                self._pending = self._handle.read(_READ)
                if not self._pending:
                    raise SourceError(f"{self._path} is truncated: the gzip stream ends early")
                self._compressed += len(self._pending)
            try:
                self._buffer = self._inflater.decompress(self._pending, _OUT)
            except zlib.error as exc:
                raise SourceError(f"{self._path} is not a valid gzip file: {exc}") from None
            self._pending = self._inflater.unconsumed_tail
            self.produced += len(self._buffer)
            if self._inflater.eof:
                self._done = True  # trailing data after the stream (another member, padding) is not tar
        return True

    def read(self, size: int = -1, /) -> bytes:
        if not self._buffer and not self._fill():
            return b""
        take = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        data, self._buffer = self._buffer[:take], self._buffer[take:]
        return data

    def close(self) -> None:
        self._handle.close()
        super().close()


class GzipScanner(_Inflating):
    """The whole uncompressed stream from the start, leaving checkpoints in the index."""

    def __init__(self, handle: IO[bytes], index: GzipIndex) -> None:
        super().__init__(handle, zlib.decompressobj(_GZIP), 0, index.path)
        self._index = index
        self._last = -SPAN

    def _at_boundary(self) -> None:
        if self._compressed - self._last >= SPAN:
            self._index.add(_Point(self.produced, self._compressed, self._inflater.copy()))
            self._last = self._compressed


class GzipRangeReader(_Inflating):
    """``length`` uncompressed bytes from ``offset``, inflated from the checkpoint before them."""

    def __init__(self, path: Path, point: _Point, offset: int, length: int) -> None:
        handle = path.open("rb")
        handle.seek(point.compressed)
        super().__init__(handle, point.inflater.copy(), point.compressed, path)
        self._skip = offset - point.out
        self._left = length

    def read(self, size: int = -1, /) -> bytes:
        while self._skip > 0:
            skipped = super().read(min(self._skip, _OUT))
            if not skipped:
                return b""
            self._skip -= len(skipped)
        if self._left <= 0:
            return b""
        data = super().read(self._left if size < 0 else min(size, self._left))
        self._left -= len(data)
        return data


__all__ = ["SPAN", "GzipIndex", "GzipRangeReader", "GzipScanner"]
