"""Layer `server`: ``/metrics`` with the series notary-server exposes, so dashboards and alerts
written for it keep working.

notary-server wraps each API route in client_golang's ``InstrumentHandlerWithOpts`` (namespace
``notary_server``, subsystem ``http``, constant label ``operation``): a counter
``notary_server_http_requests_total{code,method,operation}`` (method in lower case) and three
summaries labelled ``operation``: ``request_duration_microseconds``, ``request_size_bytes`` (an
approximation from the request line, headers and Content-Length) and ``response_size_bytes``.
The Python client has no summary quantiles, so the summaries carry ``_count`` and ``_sum``.

With several worker processes, the client's multi-process mode (``PROMETHEUS_MULTIPROC_DIR``,
set up by ``config.prepare`` before the workers start) makes every worker's scrape report the
totals of all of them.  ``process_*`` are summed over the workers the same way.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Summary, generate_latest, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from trustkit import notary_api

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# notary's operation names (server/server.go), by trustkit's route name and method
OPERATIONS: dict[tuple[str, str], str] = {
    ("update", "POST"): "UpdateTUF",
    ("update", "DELETE"): "DeleteTUF",
    ("checksum", "GET"): "GetRoleByHash",
    ("version", "GET"): "GetRoleByVersion",
    ("current", "GET"): "GetRole",
    ("key", "GET"): "GetKey",
    ("key", "POST"): "RotateKey",
    ("changefeed", "GET"): "Changefeed",
}


def operation(method: str, path: str) -> str | None:
    """notary's operation name for a request, or None for what notary does not instrument."""
    # Clients ask for the same few paths: remembered, a lookup costs 0.1 us instead of one routing
    # (~10 us).  Only short paths are kept, so hostile long ones cannot fill memory (4096 x 1 KiB).
    return _remembered_operation(method, path) if len(path) <= 1024 else _operation(method, path)


@functools.lru_cache(maxsize=4096)
def _remembered_operation(method: str, path: str) -> str | None:
    return _operation(method, path)


def _operation(method: str, path: str) -> str | None:
    if not path.startswith("/v2/"):
        return None
    found = notary_api.match(method, path[len("/v2/") :])
    return OPERATIONS.get((found.name, method)) if found is not None else None


class Metrics:
    """The series, and the text a scrape answers."""

    def __init__(self) -> None:
        # The client chose its mode when first imported; follow it (a folder named later is not used).
        self.multiprocess = values.ValueClass is not values.MutexValue and bool(os.environ.get(MULTIPROC_ENV))
        own = None if self.multiprocess else CollectorRegistry()  # multi-process values live in files
        common: dict[str, Any] = {"namespace": "notary_server", "subsystem": "http", "registry": own}
        self.requests = Counter(
            "requests_total", "Total number of HTTP requests made.", ("code", "method", "operation"), **common
        )
        self.duration = Summary(
            "request_duration_microseconds", "The HTTP request latencies in microseconds.", ("operation",), **common
        )
        self.request_size = Summary("request_size_bytes", "The HTTP request sizes in bytes.", ("operation",), **common)
        self.response_size = Summary(
            "response_size_bytes", "The HTTP response sizes in bytes.", ("operation",), **common
        )
        # notary registers every operation's summaries up front; their children are looked up once
        self._summaries = {
            name: (self.duration.labels(name), self.request_size.labels(name), self.response_size.labels(name))
            for name in set(OPERATIONS.values())
        }
        self._counters: dict[tuple[int, str, str], Any] = {}
        # Requests counted since the last write to the client's values: (code, method, operation)
        # -> [requests, microseconds, request bytes, response bytes].
        self._pending: dict[tuple[int, str, str], list[float]] = {}
        self._pending_lock = threading.Lock()
        self._flush_scheduled = False
        if own is None:
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]  # the client's untyped constructor
            self.registry.register(WorkerProcesses(Path(os.environ[MULTIPROC_ENV])))
        else:
            self.registry = own
            ProcessCollector(registry=own)

    def observe(
        self, name: str, method: str, code: int, *, seconds: float, request_bytes: int, response_bytes: int
    ) -> None:
        """Count one request.  On an event loop the requests one loop turn finished are added up
        and written to the client's values together (each write takes a lock and, with several
        workers, touches an mmap file: seven per request cost more than the rest of a cached
        GET); elsewhere at once.  A scrape writes what is pending first."""
        key = (code, method, name)
        micros = seconds * 1e6
        with self._pending_lock:
            entry = self._pending.get(key)
            if entry is None:
                self._pending[key] = [1, micros, request_bytes, response_bytes]
            else:
                entry[0] += 1
                entry[1] += micros
                entry[2] += request_bytes
                entry[3] += response_bytes
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no loop in this thread: write now
            self.flush()

    def flush(self) -> None:
        """Write the pending counts to the client's values."""
        with self._pending_lock:
            pending, self._pending = self._pending, {}
            self._flush_scheduled = False
        for (code, method, name), (count, micros, request_bytes, response_bytes) in pending.items():
            counter = self._counters.get((code, method, name))
            if counter is None:  # a few dozen at most: statuses x methods x operations
                counter = self._counters[code, method, name] = self.requests.labels(str(code), method.lower(), name)
            counter.inc(count)
            for summary, total in zip(self._summaries[name], (micros, request_bytes, response_bytes), strict=True):
                _observe_many(summary, int(count), total)

    def exposition(self) -> bytes:
        self.flush()
        return generate_latest(self.registry)


def _observe_many(summary: Summary, count: int, total: float) -> None:
    """``count`` observations adding up to ``total`` in two writes.  The client has no public
    call for it; its ``Summary.observe`` is exactly ``_count.inc(1)`` and ``_sum.inc(amount)``
    (tests/unit/test_server_ops.py checks the scraped series against known requests)."""
    summary._count.inc(count)  # noqa: SLF001 - see above
    summary._sum.inc(total)  # noqa: SLF001 - see above


class WorkerProcesses(Collector):
    """``process_*`` summed over the worker processes that write to the multi-process folder
    (the client's own process collector reports only the process answering the scrape)."""

    _PID = re.compile(r"_(\d+)\.db$")
    _SUMMED = ("process_virtual_memory_bytes", "process_resident_memory_bytes", "process_open_fds")

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def collect(self) -> Iterable[Metric]:
        values: dict[str, list[float]] = {}
        helps: dict[str, str] = {}
        for pid in self._pids():
            for family in _process_families(pid):
                helps[family.name] = family.documentation
                values.setdefault(family.name, []).extend(sample.value for sample in family.samples)
        for name, found in sorted(values.items()):
            if name == "process_cpu_seconds":
                yield CounterMetricFamily(name, helps[name], value=sum(found))
            else:  # the first worker's start, the lowest descriptor limit, the rest summed
                least = name in ("process_start_time_seconds", "process_max_fds")
                yield GaugeMetricFamily(name, helps[name], value=min(found) if least else sum(found))

    def _pids(self) -> set[int]:
        pids = {int(match[1]) for path in self.folder.glob("*.db") if (match := self._PID.search(path.name))}
        return {pid for pid in pids if Path(f"/proc/{pid}").exists()}  # workers that exited report nothing


def _process_families(pid: int) -> Iterable[Metric]:
    """The client's process metrics of another process (nothing once it has exited)."""
    return ProcessCollector(pid=lambda: pid, registry=None).collect()


class RequestMetrics:
    """ASGI middleware: one observation per request on a notary API route, as notary's
    instrumentation makes them (the status the response started with, the body bytes sent)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        name = operation(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if name is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        sent = {"status": 500, "bytes": 0}

        async def counting(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting)
        finally:
            self.metrics.observe(
                name,
                scope["method"],
                sent["status"],
                seconds=time.perf_counter() - started,
                request_bytes=request_size(scope),
                response_bytes=sent["bytes"],
            )


def request_size(scope: dict[str, Any]) -> int:
    """client_golang's approximate request size: URL, method, protocol, header names and
    values (Go keeps Host apart, counted once) and the declared Content-Length."""
    return head_size(
        scope.get("raw_path") or scope["path"].encode(),
        scope["method"],
        scope.get("query_string") or b"",
        scope.get("http_version", "1.1"),
        scope["headers"],
    )


def head_size(raw_path: bytes, method: str, query: bytes, http_version: str, headers: list[tuple[bytes, bytes]]) -> int:
    """:func:`request_size` from a request's parts (the HTTP protocol's fast path has no scope)."""
    size = len(raw_path) + len(method) + (1 + len(query) if query else 0) + len("HTTP/") + len(http_version)
    for name, value in headers:
        size += len(value) + (len(name) if name != b"host" else 0)
        if name == b"content-length" and value.isdigit() and len(value) <= 19:
            size += int(value)
    return size
