"""Layer `server`: the Notary-compatible HTTP API (wire spec §7) as a Starlette ASGI app.

GUNs contain slashes, so ``/v2/...`` goes through one dispatcher (``notary_api.match``, notary's
routes in notary's order).  A request is routed and authorised from its method, path and
headers alone; only then is its body read, capped, and (for a publish) parsed as it arrives.
Errors use notary's envelope and codes (``notary_api.ERROR_CODES``).  Handlers are synchronous
(Starlette runs them in its thread pool) because storage is synchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from trustkit import notary_api
from trustkit.metadata import Metadata, Timestamp
from trustkit.notary_api import RouteMatch, envelope, stored_version
from trustkit.roles import ROOT, SNAPSHOT, TIMESTAMP, role_name_problem
from trustkit.server.auth import Access, Authorizer, NoAuth
from trustkit.server.cache import CurrentCache, Prepared
from trustkit.server.health import HealthCheck
from trustkit.server.keys import SERVER_ROLES, ServerKeys
from trustkit.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from trustkit.server.metrics import OPERATIONS, Metrics, RequestMetrics, request_size
from trustkit.server.multipart import PublishForm
from trustkit.server.staging import StagingRoutes
from trustkit.server.storage import Storage, StoredFile, VersionConflict
from trustkit.server.validation import Update, UpdateError

LOG = logging.getLogger("trustkit.server")

MAX_SETTINGS_BODY = 64 << 10  # {"immutable": true} is 19 bytes
_MAX_REMEMBERED_ROUTES = 10_000  # paths of current role files whose route is remembered
_MAX_REMEMBERED_PATH = 512  # longer paths are routed every time
_INT32 = (-(2**31), 2**31 - 1)  # notary parses changefeed numbers as 32-bit; so are the database's IDs


@dataclass
class ServerSettings:
    """What the app needs besides storage: limits, caching, GUN prefixes, auth."""

    max_body: int = 64 << 20  # a 100,000-tag targets file is ~10 MB
    max_parts: int = 256
    current_max_age: int = 300
    consistent_max_age: int = 2592000
    gun_prefixes: tuple[str, ...] = ()
    authorizer: Authorizer = field(default_factory=NoAuth)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


class NotaryAPI:
    """The handlers, with their shared state."""

    def __init__(self, storage: Storage, keys: ServerKeys, settings: ServerSettings) -> None:
        self.storage = storage
        self.keys = keys
        self.settings = settings
        self._gun_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self.cache = CurrentCache()
        self._current_routes: dict[str, tuple[RouteMatch, list[Access]]] = {}

    # ---- routing and authorisation: method, path and headers only

    def route(self, method: str, rest: str) -> tuple[RouteMatch, list[Access]] | Response:
        """The route of ``/v2/<rest>`` and the access it needs, or the answer that refuses it."""
        found = notary_api.match(method, rest)
        if found is None:
            return error("METADATA_NOT_FOUND")
        if found.gun is not None:
            problem = gun_problem(found.gun)
            if problem:
                return error("INVALID_GUN", problem)
            prefixes = self.settings.gun_prefixes
            if prefixes and not found.gun.startswith(prefixes):
                # notary checks the prefixes on every route, before auth: a publish is told why,
                # anything else is not found (server/server.go filterImagePrefixes)
                if found.name == "update" and method == "POST":
                    return error("INVALID_GUN", f"Require GUNs with prefix: [{' '.join(prefixes)}]")
                return error("METADATA_NOT_FOUND")
        return found, [_access(found, method)]

    def authorize(self, authorization: str | None, required: list[Access]) -> Response | None:
        """None when allowed, else notary's 401 with the challenge."""
        decision = self.settings.authorizer.authorize(authorization, required)
        if decision.allowed:
            return None
        headers = {"WWW-Authenticate": decision.challenge} if decision.challenge else {}
        return error("UNAUTHORIZED", decision.detail, headers=headers)

    def serve(
        self,
        found: RouteMatch,
        method: str,
        required: list[Access],
        authorization: str | None,
        query: Mapping[str, str],
    ) -> Response:
        """A request without a body: authorise it, then answer it."""
        return self.authorize(authorization, required) or self.handle(found, method, None, query)

    # ---- dispatch

    def handle(self, found: RouteMatch, method: str, body: Any, query: Mapping[str, str]) -> Response:
        """Answer an authorised request; ``body`` is a publish's parts, or a settings body."""
        try:
            return self._handle(found, method, body, query)
        except Exception:  # a server fault: client input is answered with 4xx before this
            LOG.exception("request failed: %s %s", method, found.name)
            return error("UNKNOWN")

    def _handle(self, found: RouteMatch, method: str, body: Any, query: Mapping[str, str]) -> Response:
        role, name = found.role, found.name
        if name == "catalog":
            return _json({})
        if name == "changefeed":
            return self.changefeed(query, found.gun)
        gun = found.gun or ""  # every other route has one
        if name == "update":
            return self.update(gun, body) if method == "POST" else self.delete(gun)
        if name == "key":
            return self.get_key(gun, role) if method == "GET" else self.rotate_key(gun, role)
        if name == "settings":
            return (
                _json({"immutable": self.storage.is_immutable(gun)})
                if method == "GET"
                else self.put_settings(gun, body)
            )
        if role_name_problem(role):
            return error("METADATA_NOT_FOUND", {})  # never stored, so never found
        if name == "checksum":  # stored as lower-case hex, matched exactly (notary-server: upper case is a 404)
            return self.by_checksum(gun, role, found.checksum)
        if name == "version":
            return self.by_version(gun, role, found.version)
        return self.current(gun, role)

    # ---- reads

    def current_route(self, path: str) -> tuple[RouteMatch, list[Access]] | None:
        """The route of a GET of ``/v2/<path>`` if it asks for a current role file, else None
        (remembered for short paths: routing and the GUN rules cost more than a cached answer)."""
        known = self._current_routes.get(path)
        if known is not None:
            return known
        routed = self.route("GET", path[len("/v2/") :])
        if isinstance(routed, Response) or routed[0].name != "current":
            return None
        if len(path) <= _MAX_REMEMBERED_PATH:
            if len(self._current_routes) >= _MAX_REMEMBERED_ROUTES:
                self._current_routes.clear()  # hostile or huge traffic: start again, memory stays bounded
            self._current_routes[path] = routed
        return routed

    def cached_now(self, found: RouteMatch, required: list[Access], authorization: str | None) -> Prepared | None:
        """The cached answer to an allowed GET of a current role file, when it can be had without
        waiting (SQLite's counter is a local read), else None: the usual way then answers it."""
        if not self.storage.local or self.authorize(authorization, required) is not None:
            return None
        gun, role = found.gun or "", found.role
        if role_name_problem(role):
            return None
        try:
            counter = self.storage.change_counter(gun)
        except Exception:  # noqa: BLE001 - the usual way reads it again and answers the fault
            return None
        return self.cache.get(gun, role, counter, self.settings.clock())

    async def serve_current(self, found: RouteMatch, required: list[Access], authorization: str | None) -> Response:
        """GET of a current role file: from the cache while the GUN's change counter and the
        timestamp's expiry allow it, else read (and re-signed when due) in the thread pool."""
        refused = self.authorize(authorization, required)
        if refused is not None:
            return refused
        gun, role = found.gun or "", found.role
        if role_name_problem(role):
            return error("METADATA_NOT_FOUND", {})  # never stored, so never found
        try:
            # SQLite answers in microseconds from a local file; a database server is a round trip
            # that must not stall the event loop.
            counter = (
                self.storage.change_counter(gun)
                if self.storage.local
                else await run_in_threadpool(self.storage.change_counter, gun)
            )
        except Exception:
            LOG.exception("request failed: reading the change counter of %s", gun[:256])
            return error("UNKNOWN")
        hit = self.cache.get(gun, role, counter, self.settings.clock())
        if hit is not None:
            return hit.response()
        return await run_in_threadpool(self._current_filling_cache, gun, role, counter)

    def _current_filling_cache(self, gun: str, role: str, counter: int) -> Response:
        try:
            return self.current(gun, role, counter)
        except Exception:  # a server fault, as in handle()
            LOG.exception("request failed: GET current %s", role[:256])
            return error("UNKNOWN")

    def current(self, gun: str, role: str, counter: int | None = None) -> Response:
        """The current ``role`` file; kept in the cache when ``counter`` (the GUN's change counter,
        read before the file) is given."""
        expires = None  # when the answer must be made again: the timestamp's expiry
        if role == TIMESTAMP:
            stored = self.fresh_timestamp(gun)
            if stored is not None:
                expires = Metadata.from_bytes(stored.data, role=TIMESTAMP).signed.expires_at
        elif role == SNAPSHOT:
            timestamp = self.fresh_timestamp(gun)
            stored = None
            if timestamp is not None:
                signed = Metadata.from_bytes(timestamp.data, role=TIMESTAMP).signed
                stored = self.storage.by_checksum(gun, SNAPSHOT, signed.snapshot_meta.sha256_hex or "")
                expires = signed.expires_at
        else:
            stored = self.storage.current(gun, role)
        response = self._metadata(stored, self.settings.current_max_age, current=True)
        if stored is not None and counter is not None:
            self.cache.put(gun, role, Prepared(counter, bytes(response.body), tuple(response.raw_headers), expires))
        return response

    def by_checksum(self, gun: str, role: str, checksum: str) -> Response:
        return self._metadata(self.storage.by_checksum(gun, role, checksum), self.settings.consistent_max_age)

    def by_version(self, gun: str, role: str, version: str) -> Response:
        number = stored_version(version)
        if number is None:
            return error("METADATA_NOT_FOUND", {})
        return self._metadata(self.storage.by_version(gun, role, number), self.settings.consistent_max_age)

    def _metadata(self, stored: StoredFile | None, max_age: int, *, current: bool = False) -> Response:
        if stored is None:
            return error("METADATA_NOT_FOUND", {})
        cache = (
            f"public, max-age={max_age}, s-maxage={max_age}" + (", must-revalidate" if current else "")
            if max_age
            else "max-age=0, no-cache, no-store"
        )
        headers = {
            "Cache-Control": cache,
            "Last-Modified": stored.created_at.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S UTC"),
        }
        if not max_age:
            headers["Pragma"] = "no-cache"
        return Response(stored.data, media_type="text/plain; charset=utf-8", headers=headers)

    def fresh_timestamp(self, gun: str) -> StoredFile | None:
        """The current timestamp, re-signed once if it expired; concurrent requests wait for
        that one signature and get the same bytes."""
        stored = self.storage.current(gun, TIMESTAMP)
        if stored is None or not self._stale(gun, stored):
            return stored
        with self._lock_for(gun):
            # Judge and re-sign the same stored version (one read): the new one is that version
            # + 1, so another process that re-signed or published meanwhile wins the unique
            # index and this one serves theirs.  Judging a separate, earlier read let a process
            # re-sign the version another had just stored: two new versions, different bytes.
            latest = self.storage.latest_all(gun)
            stored = latest.get(TIMESTAMP)
            if stored is None or not self._stale(gun, stored):
                return stored
            update = Update(gun, latest, self.keys, self.settings.clock())
            files = []
            snapshot = update.resigned_snapshot()
            snapshot_data = snapshot or update.stored[SNAPSHOT].data
            if snapshot is not None:
                files.append((SNAPSHOT, Metadata.from_bytes(snapshot, role=SNAPSHOT).signed.version, snapshot))
            root = update.stored_meta(ROOT)
            if root is None:
                return stored  # a timestamp without a root is nothing to re-sign
            try:
                version, data = update.timestamp(root.signed, snapshot_data)
            except UpdateError:
                return stored  # no timestamp key here: serve what there is, readers will judge it
            files.append((TIMESTAMP, version, data))
            with contextlib.suppress(VersionConflict):  # another process re-signed it first: serve theirs
                self.storage.update_many(gun, files, now=update.now, change=(version, data))
            return self.storage.current(gun, TIMESTAMP)

    def _stale(self, gun: str, stored: StoredFile) -> bool:
        # Publishes store snapshot and timestamp together, so only expiry makes a timestamp
        # stale; an expired snapshot is re-signed (when held) under the lock with it.
        timestamp: Metadata[Timestamp] = Metadata.from_bytes(stored.data, role=TIMESTAMP)
        return timestamp.signed.is_expired(self.settings.clock())

    def _lock_for(self, gun: str) -> threading.Lock:
        with self._locks_lock:
            return self._gun_locks.setdefault(gun, threading.Lock())

    # ---- writes

    def update(self, gun: str, parts: dict[str, bytes]) -> Response:
        try:
            now = self.settings.clock()
            update = Update(gun, self.storage.latest_all(gun), self.keys, now, immutable=self.storage.is_immutable(gun))
            files, change = update.files(parts)
            self.storage.update_many(gun, files, now=now, change=change)
        except UpdateError as exc:
            return error(exc.code, exc.detail)
        except VersionConflict:
            return error("VERSION", {})
        return Response(b"", status_code=200)

    def delete(self, gun: str) -> Response:
        if self.storage.is_immutable(gun):
            # ErrValidation, a name notary's client knows, so `notary delete --remote` shows the message
            return error(
                "INVALID_UPDATE",
                {"Name": "ErrValidation", "Error": {"Msg": f"{gun} is immutable: its trust data cannot be deleted"}},
            )
        self.storage.delete(gun, now=self.settings.clock())
        return Response(b"", status_code=200)

    def get_key(self, gun: str, role: str) -> Response:
        root = self.storage.current(gun, ROOT)
        listed = Metadata.from_bytes(root.data, role=ROOT).signed.roles[role].keyids if root else []
        return _key(self.keys.public_key(gun, role, listed, now=self.settings.clock()))

    def rotate_key(self, gun: str, role: str) -> Response:
        if role not in SERVER_ROLES:
            return error("INVALID_ROLE", role)
        return _key(self.keys.create(gun, role, now=self.settings.clock()))

    def put_settings(self, gun: str, body: bytes) -> Response:
        try:
            data = json.loads(body or b"null")
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            return error("MALFORMED_JSON")
        if not isinstance(data, dict) or set(data) != {"immutable"} or not isinstance(data["immutable"], bool):
            return error("INVALID_PARAMETERS", 'expected {"immutable": true|false}')
        self.storage.set_immutable(gun, data["immutable"], now=self.settings.clock())
        return _json({"immutable": data["immutable"]})

    def changefeed(self, query: Mapping[str, str], gun: str | None) -> Response:
        raw_records = query.get("records", "")
        records, problem = go_int32(raw_records)
        if problem:
            shown = raw_records if len(raw_records) <= 100 else raw_records[:100] + "..."
            return error(
                "INVALID_PARAMETERS", f'invalid records parameter: strconv.ParseInt: parsing "{shown}": {problem}'
            )
        change_id, problem = go_int32(query.get("change_id", "") or "0")
        if problem:
            return error("INVALID_PARAMETERS", {})
        changes = self.storage.changes(gun, change_id, records or 100)
        body = {
            "count": len(changes),
            "records": [
                {
                    "ID": str(c.id),
                    "CreatedAt": c.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "GUN": c.gun,
                    "Version": c.version,
                    "SHA256": c.sha256,
                    "Category": c.category,
                }
                for c in changes
            ]
            or None,
        }
        return _json(body)


# ---- helpers


def _access(found: RouteMatch, method: str) -> Access:
    """What a route needs (wire spec §7, notary's table); settings are trustkit's own."""
    if found.gun is None:
        return Access("registry", "catalog", ("*",))
    gun, name = found.gun, found.name
    pull, push, star = ("pull",), ("push", "pull"), ("*",)
    if name == "update":
        return Access("repository", gun, push if method == "POST" else star)
    if name == "key":
        return Access("repository", gun, push if method == "GET" else star)
    if name == "settings" and method == "PUT":
        return Access("repository", gun, ("admin",))  # changing settings needs the separate admin scope
    return Access("repository", gun, pull)


def _takes_body(found: RouteMatch, method: str) -> bool:
    return (found.name, method) in (("update", "POST"), ("settings", "PUT"))


def gun_problem(gun: str) -> str | None:
    """The API's GUN rule (``notary_api.gun_problem``), and path tricks on top of it: notary-server
    takes ``\\`` and ``%`` (measured), which proxies and file paths may read as separators or
    escapes."""
    problem = notary_api.gun_problem(gun)
    if problem is None and any(ch in "\\%" for ch in gun):
        problem = "repository name has '\\' or '%'"
    return problem


def go_int32(text: str) -> tuple[int, str | None]:
    """``text`` as Go's ``strconv.ParseInt(text, 10, 32)`` reads it (notary's changefeed):
    the number, or why not (``invalid syntax``, ``value out of range``).  Stops at the first
    digit that overflows, so a 5,000-digit number costs eleven steps."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    value = 0
    for char in digits:
        if not "0" <= char <= "9":
            return 0, "invalid syntax"
        value = value * 10 + ord(char) - ord("0")
        if value > 2**32 - 1:  # Go parses the unsigned part first
            return 0, "value out of range"
    if not digits:
        return 0, "invalid syntax"
    value = -value if text[0] == "-" else value
    if not _INT32[0] <= value <= _INT32[1]:
        return 0, "value out of range"
    return value, None


def error(code: str, detail: Any = None, *, headers: dict[str, str] | None = None) -> Response:
    """notary's envelope as a response (see :func:`envelope`)."""
    status, body = envelope(code, detail)
    return Response(body, status_code=status, media_type="application/json; charset=utf-8", headers=headers)


def _json(value: Any) -> Response:
    return Response(json.dumps(value, separators=(",", ":")), media_type="application/json")


def _key(key: Any) -> Response:
    # notary's key endpoint writes stdlib JSON in struct order, not canonical order (§7.3).
    body = json.dumps(
        {"keytype": key.keytype, "keyval": {"public": key.public, "private": None}}, separators=(",", ":")
    )
    return Response(body, media_type="text/plain; charset=utf-8")


class _TooLarge(Exception):
    pass


def _refuse_declared_size(request: Request, limit: int) -> Response | None:
    """413 for a Content-Length over ``limit``, before a byte of the body is read."""
    declared = request.headers.get("content-length", "")
    if re.fullmatch(r"[0-9]+", declared) and (len(declared) > 20 or int(declared) > limit):
        return error("TOO_LARGE", f"the body is over {limit} bytes")
    return None


async def _read_capped(request: Request, limit: int, feed: Callable[[bytes], None]) -> None:
    """Hand the body to ``feed`` as it arrives; ``_TooLarge`` past ``limit`` bytes."""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        feed(chunk)


async def _read_body(request: Request, found: RouteMatch, settings: ServerSettings) -> Any:
    """A publish's parts (parsed as they arrive), or a settings body."""
    if found.name == "update":
        form = PublishForm(request.headers.get("content-type", ""), settings.max_parts)
        await _read_capped(request, settings.max_body, form.feed)
        return form.finish()
    chunks: list[bytes] = []
    await _read_capped(request, min(settings.max_body, MAX_SETTINGS_BODY), chunks.append)
    return b"".join(chunks)


def create_app(
    storage: Storage,
    keys: ServerKeys,
    settings: ServerSettings | None = None,
    *,
    extra_routes: list[Route] | None = None,
) -> CurrentReads:
    """The ASGI app.  ``extra_routes`` (the web page, a token issuer) are mounted first."""
    settings = settings or ServerSettings()
    api = NotaryAPI(storage, keys, settings)
    staging = StagingRoutes(api)

    async def v2(request: Request) -> Response:
        # The decoded path as the server received it: ``request.url`` re-parses it with urlsplit,
        # which silently drops tabs and CRs, so "a%09b" would act on the repository "ab".
        method, routed = request.method, api.route(request.method, request.scope["path"][len("/v2/") :])
        if isinstance(routed, Response):
            return routed
        found, required = routed
        if found.name == "staged":  # trustkit's co-signing area: its own access rules, body and answers
            return await staging.serve(request, found)
        authorization = request.headers.get("authorization")
        if not _takes_body(found, method):
            return await run_in_threadpool(api.serve, found, method, required, authorization, request.query_params)
        # Nothing of the body is read before the request is known to be allowed: a refused one
        # leaves it to the server, which discards it.
        limit = settings.max_body if found.name == "update" else min(settings.max_body, MAX_SETTINGS_BODY)
        # Authorising is CPU only (a token's signature at most), as for cached reads: no thread hop.
        refused = _refuse_declared_size(request, limit) or api.authorize(authorization, required)
        if refused is not None:
            return refused
        try:
            body = await _read_body(request, found, settings)
        except UpdateError as exc:
            return error(exc.code, exc.detail)
        except _TooLarge:
            return error("TOO_LARGE", f"the body is over {limit} bytes")
        except ClientDisconnect:
            return error("MALFORMED_UPLOAD", "the client went away")  # nobody reads this
        return await run_in_threadpool(api.handle, found, method, body, request.query_params)

    health_check = HealthCheck(storage, keys)
    series = Metrics()

    async def health(request: Request) -> Response:
        # notary's body: {} when healthy, else each failing check's name and why (503)
        problems = await health_check.answer()
        return Response(json.dumps(problems), status_code=503 if problems else 200, media_type="application/json")

    async def metrics(request: Request) -> Response:
        return Response(await run_in_threadpool(series.exposition), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def not_found(request: Request) -> Response:
        return error("METADATA_NOT_FOUND")

    routes_ = list(extra_routes or []) + [
        Route("/_notary_server/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v2/{rest:path}", v2, methods=["GET", "POST", "PUT", "DELETE", "HEAD"]),
        Route("/{rest:path}", not_found, methods=["GET", "POST", "PUT", "DELETE", "HEAD"]),
    ]

    # Paths no route pattern can match (a newline in them: Starlette's ``path`` stops at one)
    # still get notary's envelope, not Starlette's plain-text 404.
    async def unmatched(request: Request, exc: Exception) -> Response:
        return error("METADATA_NOT_FOUND")

    app = Starlette(
        routes=routes_,
        middleware=[Middleware(RequestMetrics, metrics=series)],
        exception_handlers={404: unmatched},
    )
    app.state.api = api
    return CurrentReads(app, api, series)


class CurrentReads:
    """The server's outermost ASGI app: a GET of a current role file is answered here
    (``NotaryAPI.serve_current``, from memory when it can) and counted for ``/metrics`` here,
    ahead of Starlette's error middleware, routing and request objects (together more than the
    rest of a cached GET); everything else goes on to the Starlette app."""

    def __init__(self, app: Starlette, api: NotaryAPI, metrics: Metrics) -> None:
        self.app = app
        self.api = api
        self.metrics = metrics
        self.state = app.state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        routed = (
            self.api.current_route(scope["path"])
            if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].startswith("/v2/")
            else None
        )
        if routed is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        authorization = next(
            (value.decode("latin-1") for name, value in scope["headers"] if name == b"authorization"), None
        )
        try:
            response = await self.api.serve_current(routed[0], routed[1], authorization)
        except Exception:  # a server fault: Starlette's error middleware is not around this
            LOG.exception("request failed: GET current %s", (routed[0].role or "")[:256])
            response = error("UNKNOWN")
        await response(scope, receive, send)
        self._count(response.status_code, started, request_size(scope), len(response.body))

    def answer_now(self, path: str, headers: list[tuple[bytes, bytes]], request_bytes: int) -> Prepared | None:
        """For the HTTP protocol's fast path (server/protocol.py): the cached answer to a plain GET
        of ``path``, counted for ``/metrics``, or None when the request must go the usual way."""
        started = time.perf_counter()
        routed = self.api.current_route(path) if path.startswith("/v2/") else None
        if routed is None:
            return None
        authorization = next((value.decode("latin-1") for name, value in headers if name == b"authorization"), None)
        prepared = self.api.cached_now(routed[0], routed[1], authorization)
        if prepared is not None:
            self._count(200, started, request_bytes, len(prepared.body))
        return prepared

    def _count(self, status: int, started: float, request_bytes: int, response_bytes: int) -> None:
        self.metrics.observe(
            OPERATIONS["current", "GET"],
            "GET",
            status,
            seconds=time.perf_counter() - started,
            request_bytes=request_bytes,
            response_bytes=response_bytes,
        )


class AccessLog:
    """ASGI middleware: one JSON line per request (method, path, status, duration, client).

    The lines of the requests one turn of the event loop finished are handed to logging together,
    as one record of several lines: a record and a write per request cost more than the rest of a
    cached GET.  (The server's log format is the bare message, so each line stays one JSON line.)"""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._pending: deque[str] = deque()  # appends and pops are atomic: apps in test threads share it
        self._flush_scheduled = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            if LOG.isEnabledFor(logging.INFO):
                self._pending.append(
                    _access_line(
                        scope["method"],
                        scope["path"],
                        status["code"],
                        time.perf_counter() - started,
                        (scope.get("client") or ["-"])[0],
                    )
                )
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    asyncio.get_running_loop().call_soon(self._flush)

    def answer_now(
        self, path: str, headers: list[tuple[bytes, bytes]], request_bytes: int, client: str
    ) -> Prepared | None:
        """The protocol's fast path through the app (``CurrentReads.answer_now``), logged here."""
        started = time.perf_counter()
        prepared: Prepared | None = self.app.answer_now(path, headers, request_bytes)
        if prepared is not None and LOG.isEnabledFor(logging.INFO):
            self._pending.append(_access_line("GET", path, 200, time.perf_counter() - started, client))
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
        return prepared

    def _flush(self) -> None:
        self._flush_scheduled = False  # first: a line added while draining schedules its own flush
        lines = []
        while self._pending:
            lines.append(self._pending.popleft())
        if lines:
            # A record made here, not by LOG.info: that one walks the stack for the caller's file
            # and line, which the line never shows.
            LOG.handle(LOG.makeRecord(LOG.name, logging.INFO, "access", 0, "\n".join(lines), (), None))


def _access_line(method: str, path: str, status: int, seconds: float, client: str) -> str:
    """The access log's JSON line, as ``json.dumps`` of the dict would write it, built by hand:
    a dict and its encoder cost more than the rest of a cached GET.  The path is cut short: one
    long path must not make a long log line per request."""
    return (
        f'{{"method": {encode_basestring_ascii(method)}, "path": {encode_basestring_ascii(path[:1024])}, '
        f'"status": {int(status)}, "ms": {round(seconds * 1000, 2)!r}, "client": {encode_basestring_ascii(client)}}}'
    )
