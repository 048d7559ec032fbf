"""Layer `server`: current metadata held in memory, ready to send.

A GUN's current role files are answered from here once they have been read: the bytes and the
response headers are prepared once per (GUN, role, version), so a hit costs no database read
of the file, no thread-pool hand-off and no JSON work.  Each entry records the GUN's change
counter (``Storage.change_counter``) it was read under; a hit is only served while the counter
is the same, so a publish through any worker or server on the same database is seen by the
next request.  Timestamp and snapshot entries also end when the timestamp expires: that
request takes the slow path, which re-signs it (``NotaryAPI.fresh_timestamp``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from starlette.responses import Response

MAX_BYTES = 256 << 20  # what the cache may hold in file bytes, newest hits kept


@dataclass(frozen=True, slots=True)
class Prepared:
    """A current role file as it is sent, and how long it may be sent."""

    counter: int  # the GUN's change counter it was read under
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...]  # raw ASGI headers, content-length included
    expires: datetime | None  # the timestamp's expiry (timestamp and snapshot), else None

    def usable(self, counter: int, now: datetime) -> bool:
        # ``expires <= now`` is ``Signed.is_expired``: the slow path re-signs exactly then.
        return counter == self.counter and (self.expires is None or now < self.expires)

    def response(self) -> Response:
        return PreparedResponse(self)


class PreparedResponse(Response):
    """A 200 from prepared bytes and headers (skips ``Response.__init__``'s header building)."""

    def __init__(self, prepared: Prepared) -> None:
        self.status_code = 200
        self.body = prepared.body
        self.background = None
        self.raw_headers = list(prepared.headers)  # a list of its own: middleware may add to it


class CurrentCache:
    """``(gun, role) -> Prepared``, least recently used first out past ``max_bytes``.

    Shared by the event loop (hits) and the thread pool (fills): one lock around the dict."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], Prepared] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, gun: str, role: str, counter: int, now: datetime) -> Prepared | None:
        key = (gun, role)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or not entry.usable(counter, now):
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, gun: str, role: str, entry: Prepared) -> None:
        if len(entry.body) > self.max_bytes:
            return  # would push out everything else
        key = (gun, role)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old.body)
            self._entries[key] = entry
            self._bytes += len(entry.body)
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted.body)

    def __len__(self) -> int:
        return len(self._entries)
