"""Layer `server`: ``/_notary_server/health``, checking what notary-server checks: the database
answers and the server can sign (its keys decrypt with the passphrase).

The result is kept for a few seconds, so load balancers that probe every second cost one
database round trip and one key decryption per interval, whatever the number of probes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from trustkit.server.keys import ServerKeys
from trustkit.server.storage import TUF_FILES, Storage

LOG = logging.getLogger("trustkit.server")
CACHE_SECONDS = 5.0


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

    def problems(self) -> dict[str, str]:
        """What fails now (empty when healthy).  Probes arriving while a check runs wait for it."""
        with self._lock:
            now = self.clock()
            if self._checked_at is None or now - self._checked_at >= self.cache_seconds:
                self._problems = self._run()
                self._checked_at = self.clock()
            return dict(self._problems)

    def _run(self) -> dict[str, str]:
        problems: dict[str, str] = {}
        # notary-server's check names (cmd/notary-server/config.go): monitors that read the body keep working
        checks: tuple[tuple[str, Callable[[], None], str], ...] = (
            ("DB operational", self._storage, "the database does not answer"),
            ("Trust operational", self.keys.check_can_sign, "the server's keys do not decrypt: it cannot sign"),
        )
        for name, check, failure in checks:
            try:
                check()
            except Exception as exc:  # noqa: BLE001 - any failure is the answer; the log keeps the detail
                LOG.warning("health check %r failed: %s", name, exc)
                # The body is public: it names the failure, not the database's address or error text.
                problems[name] = f"{failure} ({type(exc).__name__})"
        return problems

    def _storage(self) -> None:
        # the table every read uses, not just "SELECT 1": a database restored empty is not healthy
        with self.storage.engine.connect() as conn:
            conn.execute(sa.select(TUF_FILES.c.id).limit(1)).all()
