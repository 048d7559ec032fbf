"""Layer `server`: failed logins per client address.  A token bucket that slows password guessing
down, shared by the token endpoint and the web page."""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.requests import Request

from trustkit.errors import AuthConfigError


def client_address(request: Request) -> str:
    """The address a login attempt is counted against: the peer's IP, or its /64 for IPv6 (one
    host usually holds a whole /64, so single addresses would cost an attacker nothing)."""
    host = request.client.host if request.client else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class LoginThrottle:
    """A token bucket of failed logins per client address: ``burst`` attempts at once, then one
    more every ``interval`` seconds.  An attempt takes its token *before* the password is checked,
    so concurrent guesses cannot overrun the bucket, and a right password gives it back.

    At most ``max_addresses`` buckets are kept (the least recently used goes first); a bucket that
    has filled up again is dropped, since it says nothing a missing one does not.  ``burst`` 0
    turns the limit off.  Each server process keeps its own table.
    """

    def __init__(
        self,
        burst: int = 10,
        interval: float = 6.0,
        *,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
            raise AuthConfigError("the login burst must be a whole number of attempts, 0 or more")
        if not interval > 0 or max_addresses < 1:
            raise AuthConfigError("the login interval must be positive and the address table hold at least one")
        self.burst = burst
        self.interval = float(interval)
        self.max_addresses = max_addresses
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, address: str) -> int:
        """Spend one attempt: 0 when it may go ahead, else the seconds until one is available."""
        if not self.burst:
            return 0
        now = self._clock()
        with self._lock:
            tokens = self._level(address, now)
            wait = 0 if tokens >= 1 else max(1, math.ceil((1 - tokens) * self.interval))
            self._buckets[address] = (tokens - 1 if not wait else tokens, now)
            self._buckets.move_to_end(address)
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)
            return wait

    def give_back(self, address: str) -> None:
        """The attempt succeeded: it does not count."""
        now = self._clock()
        with self._lock:
            if address not in self._buckets:
                return
            tokens = self._level(address, now) + 1
            if tokens >= self.burst:
                del self._buckets[address]
            else:
                self._buckets[address] = (tokens, now)

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, address: str, now: float) -> float:
        found = self._buckets.get(address)
        if found is None:
            return float(self.burst)
        tokens, then = found
        return min(float(self.burst), tokens + max(0.0, now - then) / self.interval)
