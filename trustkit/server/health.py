"""Layer `server`: ``/_notary_server/health``, checking what notary-server checks: the database
answers and the server can sign (its keys decrypt with the passphrase).

The result is kept for a few seconds, so load balancers that probe every second cost one
database round trip and one key decryption per interval, whatever the number of probes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from trustkit.server.keys import ServerKeys
from trustkit.server.storage import TUF_FILES, Storage

LOG = logging.getLogger("trustkit.server")
CACHE_SECONDS = 5.0
TIMEOUT_SECONDS = 10.0  # a probe's answer, even while the database hangs


class HealthCheck:
    """The failing checks (name -> why), computed at most once per ``cache_seconds``."""

    def __init__(
        self,
        storage: Storage,
        keys: ServerKeys,
        *,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.keys = keys
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._problems: dict[str, str] = {}
        self._running: str | None = None  # the check under way, named when a probe times out
        self._started_at: float | None = None  # when the checks under way started

    async def answer(self, timeout: float = TIMEOUT_SECONDS) -> dict[str, str]:
        """:meth:`problems` from a worker thread, or after ``timeout`` the check that has not finished."""
        running = asyncio.get_running_loop().run_in_executor(None, self.problems)
        try:
            # shielded: the check goes on in its thread and its result serves the next probes
            return await asyncio.wait_for(asyncio.shield(running), timeout)
        except TimeoutError:
            return self._unfinished(timeout)

    def _unfinished(self, waited: float) -> dict[str, str]:
        return {self._running or "DB operational": f"the check did not finish in {waited:g} s"}

    def problems(self) -> dict[str, str]:
        """What fails now (empty when healthy).  Probes arriving while a check runs get the last
        answer, or once the check has run for ``TIMEOUT_SECONDS`` the check that hangs: a database
        that hangs holds one thread, not one per probe."""
        first = self._checked_at is None  # no answer yet to give: wait for the one under way, a while
        if self._lock.acquire(timeout=TIMEOUT_SECONDS if first else 0):
            try:
                if self._checked_at is None or self.clock() - self._checked_at >= self.cache_seconds:
                    self._problems = self._run()
                    self._checked_at = self.clock()
                return dict(self._problems)
            finally:
                self._lock.release()
        started = self._started_at
        if self._checked_at is None or started is not None and self.clock() - started >= TIMEOUT_SECONDS:
            return self._unfinished(TIMEOUT_SECONDS)
        return dict(self._problems)

    def _run(self) -> dict[str, str]:
        problems: dict[str, str] = {}
        # notary-server's check names (cmd/notary-server/config.go): monitors that read the body keep working
        checks: tuple[tuple[str, Callable[[], None], str], ...] = (
            ("DB operational", self._storage, "the database does not answer"),
            ("Trust operational", self.keys.check_can_sign, "the server's keys do not decrypt: it cannot sign"),
        )
        self._started_at = self.clock()
        for name, check, failure in checks:
            self._running = name
            try:
                check()
            except Exception as exc:  # noqa: BLE001 - any failure is the answer; the log keeps the detail
                LOG.warning("health check %r failed: %s", name, exc)
                # The body is public: it names the failure, not the database's address or error text.
                problems[name] = f"{failure} ({type(exc).__name__})"
        self._running = self._started_at = None
        return problems

    def _storage(self) -> None:
        # the table every read uses, not just "SELECT 1": a database restored empty is not healthy
        with self.storage.engine.connect() as conn:
            conn.execute(sa.select(TUF_FILES.c.id).limit(1)).all()
