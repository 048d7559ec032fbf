"""Layer `server`: the Notary-compatible HTTP API (wire spec §7) as a Starlette ASGI app.

GUNs contain slashes, so ``/v2/...`` goes through one dispatcher that applies notary's own
route patterns in notary's order.  Errors use notary's envelope and codes.  Handlers are
synchronous (Starlette runs them in its thread pool) because storage is synchronous.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trustkit.metadata import Metadata
from trustkit.roles import ROOT, SNAPSHOT, TIMESTAMP
from trustkit.server.auth import Access, Authorizer, NoAuth
from trustkit.server.keys import SERVER_ROLES, ServerKeys
from trustkit.server.storage import Storage, StoredFile, VersionConflict
from trustkit.server.validation import Update, UpdateError

LOG = logging.getLogger("trustkit.server")

MESSAGES = {
    "METADATA_NOT_FOUND": (404, "You have requested metadata that does not exist."),
    "INVALID_UPDATE": (400, "Update sent by the client is invalid."),
    "VERSION": (400, "A newer version of metadata is already available."),
    "INVALID_ROLE": (400, "The role you are attempting to operate on is invalid."),
    "MALFORMED_JSON": (400, "JSON sent by the client could not be parsed by the server"),
    "MALFORMED_UPLOAD": (400, "The body of your request is malformed."),
    "NO_FILENAME": (400, "No file/role name provided."),
    "INVALID_GUN": (400, "The server does not support actions on images of this name."),
    "INVALID_PARAMETERS": (400, "The parameters provided are not valid."),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "TOO_LARGE": (413, "The request is larger than the server accepts."),
    "UPDATING": (500, "An error has occurred while updating the TUF repository."),
    "UNKNOWN": (500, "unknown error"),
}

_ROLE = r"root|targets(?:/[^/\s]+)*|snapshot|timestamp"
_GUN = r"[^*]+"
ROUTES: list[tuple[str, re.Pattern[str]]] = [  # notary's order (server/server.go RootHandler)
    ("update", re.compile(rf"(?P<gun>{_GUN})/_trust/tuf/")),
    ("checksum", re.compile(rf"(?P<gun>{_GUN})/_trust/tuf/(?P<role>{_ROLE})\.(?P<checksum>[a-fA-F0-9]{{64}}|"
                            rf"[a-fA-F0-9]{{96}}|[a-fA-F0-9]{{128}})\.json")),
    ("version", re.compile(rf"(?P<gun>{_GUN})/_trust/tuf/(?P<version>[1-9]*[0-9]+)\.(?P<role>{_ROLE})\.json")),
    ("current", re.compile(rf"(?P<gun>{_GUN})/_trust/tuf/(?P<role>{_ROLE})\.json")),
    ("key", re.compile(rf"(?P<gun>{_GUN})/_trust/tuf/(?P<role>snapshot|timestamp)\.key")),
    ("changefeed", re.compile(rf"(?P<gun>{_GUN})/_trust/changefeed")),
    ("settings", re.compile(rf"(?P<gun>{_GUN})/_trust/settings")),
]
METHODS = {"update": ("POST", "DELETE"), "checksum": ("GET",), "version": ("GET",), "current": ("GET",),
           "key": ("GET", "POST"), "changefeed": ("GET",), "settings": ("GET", "PUT")}


@dataclass
class ServerSettings:
    """What the app needs besides storage: limits, caching, GUN prefixes, auth."""

    max_body: int = 64 << 20  # a 100,000-tag targets file is ~10 MB
    max_parts: int = 256
    current_max_age: int = 300
    consistent_max_age: int = 2592000
    gun_prefixes: tuple[str, ...] = ()
    authorizer: Authorizer = field(default_factory=NoAuth)
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)


class NotaryAPI:
    """The handlers, with their shared state."""

    def __init__(self, storage: Storage, keys: ServerKeys, settings: ServerSettings) -> None:
        self.storage = storage
        self.keys = keys
        self.settings = settings
        self._gun_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    # ---- dispatch

    def dispatch(self, request: Request) -> Response:
        # The decoded path as the server received it: ``request.url`` re-parses it with urlsplit,
        # which silently drops tabs and CRs, so "a%09b" would act on the repository "ab".
        rest = request.scope["path"][len("/v2/"):]
        if rest == "" and request.method == "GET":
            return self._authorized(request, [Access("registry", "catalog", ("*",))], lambda: _json({}))
        if rest == "_trust/changefeed" and request.method == "GET":
            return self._authorized(request, [Access("registry", "catalog", ("*",))],
                                    lambda: self.changefeed(request, None))
        for name, pattern in ROUTES:
            match = pattern.fullmatch(rest)
            if match and request.method in METHODS[name]:
                gun = match.group("gun")
                problem = gun_problem(gun)
                if problem:
                    return error("INVALID_GUN", problem)
                handler, access = self._route(name, request.method, match)
                return self._authorized(request, [access], handler)
        return error("METADATA_NOT_FOUND")

    def _route(self, name: str, method: str, match: re.Match[str]) -> tuple[Callable[[], Response], Access]:
        gun = match.group("gun")
        pull, push = Access("repository", gun, ("pull",)), Access("repository", gun, ("push", "pull"))
        star = Access("repository", gun, ("*",))
        if name == "update":
            return (lambda: self.update(gun, self._body)) if method == "POST" else (lambda: self.delete(gun)), (
                push if method == "POST" else star)
        if name == "checksum":  # stored as lower-case hex, matched exactly (notary-server: upper case is a 404)
            return lambda: self.by_checksum(gun, match.group("role"), match.group("checksum")), pull
        if name == "version":
            return lambda: self.by_version(gun, match.group("role"), match.group("version")), pull
        if name == "current":
            return lambda: self.current(gun, match.group("role")), pull
        if name == "key":
            role = match.group("role")
            return (lambda: self.get_key(gun, role)) if method == "GET" else (lambda: self.rotate_key(gun, role)), (
                push if method == "GET" else star)
        if name == "changefeed":
            return lambda: self.changefeed(self._request, gun), pull
        # settings: reading is pull; changing needs the separate admin scope
        if method == "GET":
            return lambda: _json({"immutable": self.storage.is_immutable(gun)}), pull
        return lambda: self.put_settings(gun, self._body), Access("repository", gun, ("admin",))

    def _authorized(self, request: Request, required: list[Access], handler: Callable[[], Response]) -> Response:
        decision = self.settings.authorizer.authorize(request.headers.get("authorization"), required)
        if not decision.allowed:
            headers = {"WWW-Authenticate": decision.challenge} if decision.challenge else {}
            return error("UNAUTHORIZED", decision.detail, headers=headers)
        return handler()

    # The body is read by the async endpoint before dispatch (Starlette cannot read it from the
    # thread pool); these hold it for the handlers of the current request.
    _body: bytes = b""
    _request: Request | None = None

    # ---- reads

    def current(self, gun: str, role: str) -> Response:
        if role == TIMESTAMP:
            stored = self.fresh_timestamp(gun)
        elif role == SNAPSHOT:
            timestamp = self.fresh_timestamp(gun)
            stored = None
            if timestamp is not None:
                digest = Metadata.from_bytes(timestamp.data, role=TIMESTAMP).signed.snapshot_meta.sha256_hex
                stored = self.storage.by_checksum(gun, SNAPSHOT, digest or "")
        else:
            stored = self.storage.current(gun, role)
        return self._metadata(stored, self.settings.current_max_age, current=True)

    def by_checksum(self, gun: str, role: str, checksum: str) -> Response:
        return self._metadata(self.storage.by_checksum(gun, role, checksum), self.settings.consistent_max_age)

    def by_version(self, gun: str, role: str, version: str) -> Response:
        number = int(version)
        if number < 1 or number > 2**31:
            return error("METADATA_NOT_FOUND", {})
        return self._metadata(self.storage.by_version(gun, role, number), self.settings.consistent_max_age)

    def _metadata(self, stored: StoredFile | None, max_age: int, *, current: bool = False) -> Response:
        if stored is None:
            return error("METADATA_NOT_FOUND", {})
        cache = (f"public, max-age={max_age}, s-maxage={max_age}" + (", must-revalidate" if current else "")
                 if max_age else "max-age=0, no-cache, no-store")
        headers = {"Cache-Control": cache,
                   "Last-Modified": stored.created_at.astimezone(timezone.utc).strftime("%a, %d %b %Y %H:%M:%S UTC")}
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
            try:
                version, data = update.timestamp(update.stored_meta(ROOT).signed, snapshot_data)  # type: ignore[union-attr]
            except UpdateError:
                return stored  # no timestamp key here: serve what there is, readers will judge it
            files.append((TIMESTAMP, version, data))
            try:
                self.storage.update_many(gun, files, now=update.now, change=(version, data))
            except VersionConflict:
                pass  # another server process re-signed it first: serve theirs
            return self.storage.current(gun, TIMESTAMP)

    def _stale(self, gun: str, stored: StoredFile) -> bool:
        # Publishes store snapshot and timestamp together, so only expiry makes a timestamp
        # stale; an expired snapshot is re-signed (when held) under the lock with it.
        return Metadata.from_bytes(stored.data, role=TIMESTAMP).signed.is_expired(self.settings.clock())

    def _lock_for(self, gun: str) -> threading.Lock:
        with self._locks_lock:
            return self._gun_locks.setdefault(gun, threading.Lock())

    # ---- writes

    def update(self, gun: str, body: bytes) -> Response:
        if self.settings.gun_prefixes and not gun.startswith(self.settings.gun_prefixes):
            return error("INVALID_GUN", f"Require GUNs with prefix: {list(self.settings.gun_prefixes)}")
        try:
            parts = parse_multipart(self._request.headers.get("content-type", ""), body,  # type: ignore[union-attr]
                                    self.settings.max_parts)
            now = self.settings.clock()
            update = Update(gun, self.storage.latest_all(gun), self.keys, now,
                            immutable=self.storage.is_immutable(gun))
            files, change = update.files(parts)
            self.storage.update_many(gun, files, now=now, change=change)
        except UpdateError as exc:
            return error(exc.code, exc.detail)
        except VersionConflict:
            return error("VERSION", {})
        self.counts["publishes"] += 1
        return Response(b"", status_code=200)

    def delete(self, gun: str) -> Response:
        if self.storage.is_immutable(gun):
            # ErrValidation, a name notary's client knows, so `notary delete --remote` shows the message
            return error("INVALID_UPDATE", {"Name": "ErrValidation",
                                            "Error": {"Msg": f"{gun} is immutable: its trust data cannot be deleted"}})
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
        except ValueError:
            return error("MALFORMED_JSON")
        if not isinstance(data, dict) or set(data) != {"immutable"} or not isinstance(data["immutable"], bool):
            return error("INVALID_PARAMETERS", 'expected {"immutable": true|false}')
        self.storage.set_immutable(gun, data["immutable"], now=self.settings.clock())
        return _json({"immutable": data["immutable"]})

    def changefeed(self, request: Request | None, gun: str | None) -> Response:
        params = request.query_params if request is not None else {}
        try:
            records = int(params.get("records", ""))
        except ValueError:
            return error("INVALID_PARAMETERS", f'invalid records parameter: strconv.ParseInt: parsing '
                                               f'"{params.get("records", "")}": invalid syntax')
        raw_id = params.get("change_id", "") or "0"
        try:
            change_id = int(raw_id)
        except ValueError:
            return error("INVALID_PARAMETERS", {})
        changes = self.storage.changes(gun, change_id, records or 100)
        body = {"count": len(changes), "records": [
            {"ID": str(c.id), "CreatedAt": c.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "GUN": c.gun,
             "Version": c.version, "SHA256": c.sha256, "Category": c.category} for c in changes] or None}
        return _json(body)


# ---- helpers


def gun_problem(gun: str) -> str | None:
    """Path tricks and names no repository can have (stricter than notary's ``[^*]+``)."""
    if len(gun.encode()) > 255:
        return "repository name is longer than 255 bytes"
    segments = gun.split("/")
    if any(seg in ("", ".", "..") for seg in segments):
        return "repository name has an empty, '.' or '..' path segment"
    if any(ch.isspace() or ord(ch) < 0x20 or ch in "\\%" for ch in gun):
        return "repository name has whitespace, control characters, '\\' or '%'"
    return None


def error(code: str, detail: Any = None, *, headers: dict[str, str] | None = None) -> Response:
    """notary's envelope: one error, ``detail`` omitted when None, a trailing newline."""
    status, message = MESSAGES[code]
    entry: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        entry["detail"] = detail
    body = json.dumps({"errors": [entry]}, separators=(",", ":")) + "\n"
    return Response(body, status_code=status, media_type="application/json; charset=utf-8", headers=headers)


def _json(value: Any) -> Response:
    return Response(json.dumps(value, separators=(",", ":")), media_type="application/json")


def _key(key: Any) -> Response:
    # notary's key endpoint writes stdlib JSON in struct order, not canonical order (§7.3).
    body = json.dumps({"keytype": key.keytype, "keyval": {"public": key.public, "private": None}},
                      separators=(",", ":"))
    return Response(body, media_type="text/plain; charset=utf-8")


_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_FILENAME = re.compile(r'filename="((?:[^"\\]|\\.)*)"|filename=([^;\s]+)', re.IGNORECASE)


def parse_multipart(content_type: str, body: bytes, max_parts: int) -> dict[str, bytes]:
    """The parts of a notary publish, by filename (the role, slashes kept: never a basename,
    §7.2), with a trailing ``.json`` removed.  The bytes of each part are kept exactly.

    Raises:
        UpdateError: MALFORMED_UPLOAD, NO_FILENAME or too many parts.
    """
    if not content_type.lower().startswith("multipart/form-data"):
        raise UpdateError("MALFORMED_UPLOAD")
    match = _BOUNDARY.search(content_type)
    if not match:
        raise UpdateError("MALFORMED_UPLOAD")
    delimiter = b"--" + (match.group(1) or match.group(2)).encode("latin-1")
    if not body.startswith(delimiter):
        # A preamble before the first delimiter is allowed (RFC 2046).  Go's multipart.Writer
        # writes "\r\n--<b>--\r\n" for a form with no parts, which the notary CLI sends.
        preamble_end = body.find(b"\r\n" + delimiter)
        if preamble_end < 0:
            raise UpdateError("MALFORMED_UPLOAD")
        body = body[preamble_end + 2:]
    sections = body.split(b"\r\n" + delimiter)
    first = sections[0][len(delimiter):]
    sections = [first, *sections[1:]]
    if not sections[-1].startswith(b"--"):
        raise UpdateError("MALFORMED_UPLOAD")  # no closing delimiter: truncated
    parts: dict[str, bytes] = {}
    for section in sections[:-1]:
        if not section.startswith(b"\r\n"):
            raise UpdateError("MALFORMED_UPLOAD")
        head, sep, data = section[2:].partition(b"\r\n\r\n")
        if not sep:
            raise UpdateError("MALFORMED_UPLOAD")
        disposition = next((line.split(b":", 1)[1].decode("latin-1") for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-disposition:")), "")
        found = _FILENAME.search(disposition)
        if not found:
            raise UpdateError("NO_FILENAME")
        name = found.group(1).replace('\\"', '"') if found.group(1) is not None else found.group(2)
        if len(parts) >= max_parts:
            raise UpdateError("MALFORMED_UPLOAD", f"more than {max_parts} parts")
        role = name.removesuffix(".json")
        if not role:
            raise UpdateError("NO_FILENAME")  # notary: an empty role name is no filename
        if role in parts:
            # notary lets the last one count; which one the client meant is anyone's guess
            raise UpdateError("MALFORMED_UPLOAD", f"the {role} part is sent more than once")
        parts[role] = data
    # No parts at all (just the closing delimiter) is what `notary publish` sends when nothing is
    # dirty, e.g. after `notary key rotate GUN snapshot -r`; notary-server answers 200 and signs a
    # new snapshot and timestamp, so this does too.
    return parts


def create_app(storage: Storage, keys: ServerKeys, settings: ServerSettings | None = None,
               *, extra_routes: list[Route] | None = None) -> Starlette:
    """The ASGI app.  ``extra_routes`` (the web page, a token issuer) are mounted first."""
    settings = settings or ServerSettings()
    api = NotaryAPI(storage, keys, settings)

    async def v2(request: Request) -> Response:
        body = b""
        if request.method in ("POST", "PUT"):
            declared = request.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > settings.max_body:
                return error("TOO_LARGE", f"the body is over {settings.max_body} bytes")
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > settings.max_body:
                    return error("TOO_LARGE", f"the body is over {settings.max_body} bytes")
                chunks.append(chunk)
            body = b"".join(chunks)
        # A per-request view of the API: the handlers read the body and query from it.
        return await run_in_threadpool(_RequestView(api, request, body).dispatch, request)

    async def health(request: Request) -> Response:
        return _json({})

    async def metrics(request: Request) -> Response:
        lines = [f"trustkit_{name}_total {count}" for name, count in sorted(api.counts.items())]
        return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    async def not_found(request: Request) -> Response:
        return error("METADATA_NOT_FOUND")

    routes = list(extra_routes or []) + [
        Route("/_notary_server/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v2/{rest:path}", v2, methods=["GET", "POST", "PUT", "DELETE", "HEAD"]),
        Route("/{rest:path}", not_found, methods=["GET", "POST", "PUT", "DELETE", "HEAD"]),
    ]
    # Paths no route pattern can match (a newline in them: Starlette's ``path`` stops at one)
    # still get notary's envelope, not Starlette's plain-text 404.
    async def unmatched(request: Request, exc: Exception) -> Response:
        return error("METADATA_NOT_FOUND")

    app = Starlette(routes=routes, middleware=[], exception_handlers={404: unmatched})
    app.state.api = api
    return app


class _RequestView(NotaryAPI):
    """The API with one request's body and query attached (handlers run in worker threads)."""

    def __init__(self, api: NotaryAPI, request: Request, body: bytes) -> None:  # noqa: D107
        self.__dict__.update(api.__dict__)
        self._request = request
        self._body = body


class AccessLog:
    """ASGI middleware: one JSON line per request (method, path, status, duration, client)."""

    def __init__(self, app: Any) -> None:
        self.app = app

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
            LOG.info(json.dumps({"method": scope["method"], "path": scope["path"], "status": status["code"],
                                 "ms": round((time.perf_counter() - started) * 1000, 2),
                                 "client": (scope.get("client") or ["-"])[0]}))
