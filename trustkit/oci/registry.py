"""Layer `registry` (clients): the OCI distribution API, as docker push/pull use it.

* :func:`connect` picks the endpoint the way docker does: ``https://`` always first; plain
  ``http://`` only for a loopback registry or one named with ``--insecure-registry`` (those two
  also accept an unverified certificate, docker's "insecure registry" rule).  It sends nothing
  itself: the client's first request is sent to each endpoint in turn until one answers, and the
  others wait for that choice (so a re-push of blobs that are all there is their ``HEAD``s and
  the manifest ``PUT``, no ``GET /v2/`` first).  CAs come from
  ``$DOCKER_CONFIG/tls/<host:port>/`` and ``/etc/docker/certs.d/<host:port>/``.
  Credentials come from ``$DOCKER_CONFIG/config.json`` (helpers and stores included) through
  :func:`trustkit.client.docker_config.load_credentials`; token challenges are answered by
  :class:`trustkit.client.auth.TokenAuth`; TLS, proxies, retries and capped reads are
  :mod:`trustkit.client.http`'s.
* :class:`RegistryClient`: HEAD/GET blobs, cross-repository mounts, monolithic and chunked
  uploads that stream from a file-like object and verify the digest while streaming (an upload
  whose bytes do not hash to the declared digest is never committed), GET/PUT manifests with
  their media types, retries of transient failures with backoff.  Every HTTP answer becomes a
  trustkit error in one place, :meth:`RegistryClient._status_error`.

It never prints; progress is reported through callbacks.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Protocol, overload

import httpx

from trustkit.client.auth import SCOPE_EXTENSION, TokenAuth, repository_scope
from trustkit.client.docker_config import DOCKER_HUB_HOSTS, Credentials, load_credentials
from trustkit.client.http import (
    DOCKER_CERTS_D,
    ERROR_BODY_LIMIT,
    RETRY_STATUSES,
    describe_failure,
    error_envelope,
    http_client,
    is_tls_failure,
    may_retry,
    read_capped,
    retry_after,
    retry_delay,
    tls_settings,
    unverified_context,
)
from trustkit.encoding import loads_strict
from trustkit.errors import (
    EncodingError,
    HashMismatchError,
    NetworkError,
    NotAuthorizedError,
    NotFoundError,
    OversizedError,
    ServerError,
    ServerRejectedError,
    TrustkitError,
)
from trustkit.reference import is_loopback_host

__all__ = [
    "ACCEPT_MANIFESTS",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Manifest",
    "RegistryClient",
    "connect",
    "registry_api_host",
    "registry_auth",
    "registry_tls_context",
    "sha256_digest",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_LIST)
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
ACCEPT_MANIFESTS = ", ".join(MANIFEST_TYPES)

READ_TIMEOUT = 120.0  # a registry may take a while to commit a large blob
MANIFEST_LIMIT = 4 * 1024 * 1024  # distribution refuses larger manifests too
READ_SIZE = 256 * 1024  # bytes read from a source per step: memory stays flat
#: Blobs larger than this go up in PATCH chunks of CHUNK_SIZE; smaller ones in one PUT.
CHUNK_THRESHOLD = 64 * 1024 * 1024
CHUNK_SIZE = 32 * 1024 * 1024


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def registry_api_host(registry: str) -> str:
    """Where the API of ``registry`` lives: Docker Hub's is ``registry-1.docker.io``."""
    return "registry-1.docker.io" if registry.lower() in DOCKER_HUB_HOSTS else registry


def registry_auth(registry: str, credentials: Credentials | None) -> TokenAuth:
    """The token flow for ``registry``, bound to its API host: storage it redirects to, or an
    upload location on another host, never gets its credentials (see :class:`TokenAuth`)."""
    return TokenAuth(credentials, registry=registry, hosts=[registry_api_host(registry)])


def _host_only(host_port: str) -> str:
    if host_port.startswith("["):
        return host_port[1:].split("]", 1)[0]
    return host_port.rsplit(":", 1)[0] if host_port.count(":") == 1 else host_port


# --------------------------------------------------------------------------------------------
# Manifests


@dataclass(frozen=True)
class Manifest:
    """A manifest's exact bytes, media type and digest (``sha256:HEX``)."""

    raw: bytes
    media_type: str
    digest: str

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def json(self) -> dict[str, Any]:
        try:
            data = loads_strict(self.raw, what=f"manifest {self.digest}")
        except EncodingError as exc:
            raise TrustkitError(f"manifest {self.digest} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise TrustkitError(f"manifest {self.digest} is not a JSON object")
        return data

    @classmethod
    def from_bytes(cls, raw: bytes, media_type: str | None = None, *, what: str = "manifest") -> Manifest:
        """A manifest from its bytes; the media type is the declared one, else the JSON's
        ``mediaType``, else guessed from the shape (OCI)."""
        digest = sha256_digest(raw)
        if len(raw) > MANIFEST_LIMIT:
            raise OversizedError(f"{what} is {len(raw)} bytes; registries refuse manifests over {MANIFEST_LIMIT}")
        manifest = cls(raw, media_type or "", digest)
        data = manifest.json()
        declared = data.get("mediaType")
        kind = (
            media_type
            or (declared if isinstance(declared, str) else "")
            or (OCI_INDEX if "manifests" in data else OCI_MANIFEST)
        )
        if kind in DOCKER_SCHEMA1 or data.get("schemaVersion") == 1:
            raise TrustkitError(
                f"{what} is a docker schema 1 manifest, which registries no longer accept",
                hint="convert it with a current docker or skopeo first",
            )
        if kind not in MANIFEST_TYPES:
            raise TrustkitError(f"{what} has media type {kind!r}; trustkit pushes {', '.join(MANIFEST_TYPES)}")
        return cls(raw, kind, digest)


# --------------------------------------------------------------------------------------------
# Readers


class BlobReader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


#: Opens a fresh reader on a blob's bytes, from the start (called again when an upload restarts).
Opener = Callable[[], BlobReader]
#: Called with the number of bytes of a blob sent so far (it goes back to 0 when an upload restarts).
ByteProgress = Callable[[int], None]


class ResponseReader(io.RawIOBase):
    """A readable file over a streaming ``httpx.Response`` (raw bytes, no decoding)."""

    def __init__(self, response: httpx.Response, context: Any) -> None:
        self._response = response
        self._context = context
        self._chunks: Iterator[bytes] = response.iter_raw(READ_SIZE)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        cut = len(self._buffer) if size < 0 else size
        out, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return out

    def close(self) -> None:
        if not self.closed:
            self._context.__exit__(None, None, None)
        super().close()


class _Digester:
    """Reads a blob in steps, hashing and counting; ``verify`` says whether it is what was declared."""

    def __init__(self, reader: BlobReader, digest: str, size: int, progress: ByteProgress | None) -> None:
        self.reader = reader
        self.digest = digest
        self.size = size
        self.hasher = hashlib.sha256()
        self.sent = 0
        self.progress = progress
        self.eof = False
        self.extra = False  # bytes past the declared size

    def take(self, limit: int) -> Iterator[bytes]:
        """Up to ``limit`` bytes, in READ_SIZE pieces.  The final piece of the blob is held back
        until the whole blob verifies, so a blob that does not match its digest is never
        completely sent (a raise here aborts the request mid-body)."""
        left = limit
        pending = None
        while left > 0:
            chunk = self.reader.read(min(READ_SIZE, left))
            if not chunk:
                self.eof = True  # shorter than declared
                break
            self.hasher.update(chunk)
            self.sent += len(chunk)
            left -= len(chunk)
            if pending is not None:
                yield pending
            pending = chunk
            if self.progress is not None:
                self.progress(self.sent)
        if self.eof or self.sent >= self.size:
            self.eof = True
            if self.sent == self.size and self.reader.read(1):
                self.extra = True
            self.check()
        if pending is not None:
            yield pending

    def mark(self) -> tuple[Any, int]:
        """The hash state and count now: where a failed chunk can be resumed from."""
        return self.hasher.copy(), self.sent

    def resume(self, reader: BlobReader, mark: tuple[Any, int], offset: int) -> None:
        """Continue on a fresh ``reader`` from ``offset`` (at or after ``mark``): the bytes before
        the mark are skipped, those from the mark to ``offset`` hashed again but not sent."""
        self.reader.close()
        self.reader = reader
        hasher, sent = mark
        self.hasher, self.sent, self.eof, self.extra = hasher.copy(), 0, False, False
        while self.sent < sent:
            skipped = reader.read(min(READ_SIZE, sent - self.sent))
            if not skipped:
                raise HashMismatchError(f"blob {self.digest} is shorter on a second read", hint="the source changed")
            self.sent += len(skipped)
        while self.sent < offset:
            piece = reader.read(min(READ_SIZE, offset - self.sent))
            if not piece:
                raise HashMismatchError(f"blob {self.digest} is shorter on a second read", hint="the source changed")
            self.hasher.update(piece)
            self.sent += len(piece)
        if self.progress is not None:
            self.progress(self.sent)

    def check(self) -> None:
        if self.sent != self.size or self.extra:
            raise HashMismatchError(
                f"blob {self.digest} is {'shorter' if self.sent < self.size else 'longer'} than the "
                f"{self.size} bytes its descriptor declares",
                hint="the image source is corrupt; nothing references the partial upload",
            )
        actual = "sha256:" + self.hasher.hexdigest()
        if actual != self.digest:
            raise HashMismatchError(
                f"blob {self.digest} does not match its digest: its bytes hash to {actual}",
                hint="the image source is corrupt; the upload was not committed",
            )


class _Restart(Exception):
    """A transient failure inside an upload: start the blob again from the beginning."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


# --------------------------------------------------------------------------------------------
# TLS and the endpoint


def registry_tls_context(host: str, *, insecure: bool, config_dir: Path | None = None) -> ssl.SSLContext:
    """Docker's rules: CAs and client certificates from ``$DOCKER_CONFIG/tls/<host>/`` and
    ``/etc/docker/certs.d/<host>/`` on top of the system CAs; no verification for an
    insecure registry (``--insecure-registry`` or loopback)."""
    if insecure:
        return unverified_context()
    context, _ = tls_settings(f"https://{host}", None, config_dir, certs_d=DOCKER_CERTS_D)
    return context


def connect(
    registry: str,
    *,
    insecure_registries: Iterable[str] = (),
    config_dir: Path | None = None,
    credentials: Credentials | None | bool = True,
    environ: Mapping[str, str] | None = None,
    pool: int = 8,
) -> RegistryClient:
    """A client for ``registry`` (``host[:port]`` as in an image reference), its endpoint
    chosen the way docker chooses it (see the module docstring).

    ``credentials``: True loads them from the docker config; None/False is anonymous.

    Raises:
        NetworkError: no endpoint answered (the message says what was tried).
    """
    api_host = registry_api_host(registry)
    insecure = {
        name.strip().lower().removeprefix("https://").removeprefix("http://").rstrip("/")
        for name in insecure_registries
    }
    allow_plain = is_loopback_host(_host_only(api_host)) or api_host.lower() in insecure or registry.lower() in insecure
    creds = load_credentials(registry, config_dir, environ) if credentials is True else credentials or None
    auth = registry_auth(registry, creds)
    schemes = ["https", "http"] if allow_plain else ["https"]
    # One client serves both schemes: its TLS context only matters for https.
    context = registry_tls_context(api_host, insecure=allow_plain, config_dir=config_dir)
    http = http_client(f"https://{api_host}", context, auth=auth, timeout=READ_TIMEOUT, connections=pool + 4)
    base, *fallbacks = [f"{scheme}://{api_host}" for scheme in schemes]
    return RegistryClient(registry, http, base, auth=auth, fallbacks=fallbacks)


# --------------------------------------------------------------------------------------------
# The client


@dataclass(frozen=True)
class _Answer:
    status_code: int
    headers: httpx.Headers
    content: bytes


class _Unreachable(Exception):
    """The endpoint being tried did not answer at all (its first request failed to connect)."""

    def __init__(self, cause: httpx.TransportError) -> None:
        super().__init__(str(cause))
        self.cause = cause


class RegistryClient:
    """The distribution API of one registry.  ``http`` is any ``httpx.Client`` (a real one from
    :func:`connect`, or one on an ``httpx.MockTransport`` in tests); ``base_url`` is
    ``scheme://host[:port]``, and ``fallbacks`` the endpoints to try, in order, if it does not
    answer the first request (docker's plain-HTTP fallback for an insecure registry).  It is safe
    to use from several threads at once."""

    def __init__(
        self,
        registry: str,
        http: httpx.Client,
        base_url: str,
        *,
        auth: TokenAuth | None = None,
        retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        chunk_threshold: int = CHUNK_THRESHOLD,
        chunk_size: int = CHUNK_SIZE,
        fallbacks: Iterable[str] = (),
    ) -> None:
        self.registry = registry
        self.http = http
        self.base_url = base_url.rstrip("/")
        self._fallbacks = [url.rstrip("/") for url in fallbacks]
        # Until a request got an answer, the endpoint is not chosen: the first request tries
        # each in turn while the others wait (connect() sends nothing of its own).
        self._endpoint_chosen = not self._fallbacks
        self._endpoint_lock = threading.Lock()
        self.auth = auth
        self.retries = retries
        self._sleep = sleep
        self.chunk_threshold = chunk_threshold
        self.chunk_size = chunk_size

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- API

    def ping(self, *, authenticate: bool = True) -> None:
        """``GET /v2/``, through the token flow when ``authenticate``: raises
        NotAuthorizedError when the registry refuses the credentials we have."""
        self._call("GET", "/v2/", what=f"checking the credentials for {self.registry}", scope=None, auth=authenticate)

    def blob_size(self, repository: str, digest: str) -> int | None:
        """``HEAD`` the blob: its size when ``repository`` has it, else None.  A redirect to
        storage is followed, as docker does (without our credentials: see :class:`TokenAuth`)."""
        response = self._call(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            what=f"checking blob {_short(digest)} in {repository}",
            scope=repository_scope(repository),
            missing_ok=True,
            follow_redirects=True,
        )
        if response is None:
            return None
        length = response.headers.get("content-length", "")
        return int(length) if length.isdigit() else -1

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> str | None:
        """Cross-repository mount.  None when mounted (201); else the location of the upload
        session the registry opened instead (202), for the caller to use or cancel."""
        scope = f"{repository_scope(repository, push=True)} {repository_scope(from_repository)}"
        response = self._call(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            what=f"mounting {_short(digest)} from {from_repository} into {repository}",
            scope=scope,
            params={"mount": digest, "from": from_repository},
        )
        if response.status_code == 201:
            return None
        return self._location(response, "a mount")

    def start_upload(self, repository: str) -> str:
        response = self._call(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            what=f"starting an upload to {repository}",
            scope=repository_scope(repository, push=True),
        )
        return self._location(response, "an upload")

    def cancel_upload(self, location: str) -> None:
        """Best effort: ``DELETE`` an upload session (never raises)."""
        # e.g. a location on another host that asks for a login: the session expires by itself
        with contextlib.suppress(httpx.HTTPError, TrustkitError):
            self.http.delete(location).close()

    def upload_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        opener: Opener,
        *,
        progress: ByteProgress | None = None,
        location: str | None = None,
    ) -> None:
        """Upload a blob from ``opener``'s reader, verifying its digest while streaming.

        Blobs up to ``chunk_threshold`` bytes go in one ``PUT``; larger ones in ``PATCH``
        chunks of ``chunk_size`` bytes, then an empty ``PUT ?digest=``.  Either way the last
        bytes are only sent (the upload only committed) once the content has hashed to
        ``digest``.  A chunk that fails transiently goes on from the offset the upload session
        reports (``GET`` on it); other transient failures restart the blob, with backoff.

        Raises:
            HashMismatchError: the bytes are not the declared blob (never retried).
            NetworkError, ServerError, NotAuthorizedError, ServerRejectedError.
        """
        scope = repository_scope(repository, push=True)
        for attempt in range(self.retries + 1):
            if attempt and progress is not None:
                progress(0)
            try:
                if location is None:
                    location = self.start_upload(repository)
                self._upload_once(location, digest, size, opener, progress=progress, scope=scope)
                return
            except _Restart as restart:
                if location is not None:
                    self.cancel_upload(location)
                location = None
                if attempt == self.retries:
                    raise NetworkError(
                        f"uploading blob {_short(digest)} to {self.registry}/{repository} failed "
                        f"{attempt + 1} times; last: {restart}",
                        hint="try again later",
                    ) from None
                self._backoff(attempt, restart.retry_after)
            except BaseException:
                if location is not None:
                    self.cancel_upload(location)
                raise

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest of a tag or digest: exact bytes, media type, digest (checked against
        the reference when it is a digest)."""
        what = (
            f"the manifest {repository}:{reference}"
            if not reference.startswith("sha256:")
            else f"manifest {_short(reference)} of {repository}"
        )
        response = self._call(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            what=what,
            scope=repository_scope(repository),
            headers={"Accept": ACCEPT_MANIFESTS},
            body_limit=MANIFEST_LIMIT,
        )
        raw = response.content
        media_type = response.headers.get("content-type", "").split(";", 1)[0].strip()
        manifest = Manifest.from_bytes(raw, media_type if media_type in MANIFEST_TYPES else None, what=what)
        if reference.startswith("sha256:") and manifest.digest != reference:
            raise HashMismatchError(f"{self.registry} sent {what} whose bytes hash to {manifest.digest}")
        return manifest

    def find_manifest(self, repository: str, reference: str) -> str | None:
        """The digest the registry serves for a tag or digest now (what ``docker pull`` resolves
        it to), or None when it has no such manifest."""
        response = self._call(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            what=f"the manifest {repository}:{reference}",
            scope=repository_scope(repository),
            headers={"Accept": ACCEPT_MANIFESTS},
            body_limit=MANIFEST_LIMIT,
            missing_ok=True,
        )
        if response is None:
            return None
        return "sha256:" + hashlib.sha256(response.content).hexdigest()

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> str:
        """``PUT`` the exact bytes under a tag or digest; returns the digest, checked against
        what the registry says it stored."""
        response = self._call(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            what=f"pushing the manifest {repository}:{reference}",
            scope=repository_scope(repository, push=True),
            headers={"Content-Type": manifest.media_type},
            content=manifest.raw,
        )
        stored = response.headers.get("docker-content-digest")
        if stored and stored != manifest.digest:
            raise ServerError(
                f"{self.registry} stored {repository}:{reference} as {stored}, "
                f"not {manifest.digest} (it rewrote the manifest)"
            )
        return manifest.digest

    def open_blob(self, repository: str, digest: str) -> ResponseReader:
        """A streaming reader over a blob (redirects to storage followed, without our credentials)."""
        what = f"reading blob {_short(digest)} of {self.registry}/{repository}"
        if not self._endpoint_chosen:  # (a source is read after its manifest, so this is rare)
            self._call("GET", "/v2/", what=what, scope=None, missing_ok=True, auth=False)
        url = f"{self.base_url}/v2/{repository}/blobs/{digest}"
        for attempt in range(self.retries + 1):
            context = self.http.stream(
                "GET", url, follow_redirects=True, extensions={SCOPE_EXTENSION: repository_scope(repository)}
            )
            try:
                response = context.__enter__()
            except httpx.TransportError as exc:
                if attempt < self.retries and may_retry(exc, idempotent=True):
                    self._backoff(attempt, None)
                    continue
                raise self._network_error(exc, what) from None
            if response.status_code == 200:
                return ResponseReader(response, context)
            body = read_capped(response, ERROR_BODY_LIMIT, what, truncate=True)
            after = retry_after(response)
            context.__exit__(None, None, None)
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                self._backoff(attempt, after)
                continue
            raise self._status_error(response.status_code, body, what)
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- internals

    def _upload_once(
        self, location: str, digest: str, size: int, opener: Opener, *, progress: ByteProgress | None, scope: str
    ) -> None:
        digester = _Digester(opener(), digest, size, progress)
        try:
            what = f"uploading blob {_short(digest)}"
            if size > self.chunk_threshold and self.chunk_size > 0:
                offset, resumed = 0, 0
                while not digester.eof and offset < size:
                    length = min(self.chunk_size, size - offset)
                    end = offset + length - 1
                    mark = digester.mark()
                    try:
                        response = self._send_body(
                            "PATCH",
                            location,
                            digester.take(length),
                            what,
                            scope,
                            headers={
                                "Content-Type": "application/octet-stream",
                                "Content-Length": str(length),
                                "Content-Range": f"{offset}-{end}",
                            },
                        )
                    except _Restart as failure:
                        # Ask the registry how much it kept and go on from there, not from byte 0.
                        if resumed == self.retries:
                            raise
                        self._backoff(resumed, failure.retry_after)
                        resumed += 1
                        kept = self._upload_offset(location, scope, low=offset, high=offset + length)
                        if kept is None:
                            raise
                        offset, location = kept
                        digester.resume(opener(), mark, offset)
                        continue
                    location = self._location(response, "a chunk")
                    offset += length
                digester.check()  # the commit below happens only for a verified blob
                self._send_body(
                    "PUT", _with_digest(location, digest), b"", what, scope, headers={"Content-Length": "0"}, expect=201
                )
            else:
                self._send_body(
                    "PUT",
                    _with_digest(location, digest),
                    digester.take(size),
                    what,
                    scope,
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                    expect=201,
                )
        finally:
            digester.reader.close()

    def _upload_offset(self, location: str, scope: str, *, low: int, high: int) -> tuple[int, str] | None:
        """How many bytes an upload session holds (``GET`` it: ``Range: 0-<last>``) and its
        location now; None when it cannot say or says something outside ``low..high`` (then
        the blob starts again)."""
        try:
            response = self.http.get(location, extensions={SCOPE_EXTENSION: scope})
        except httpx.HTTPError:
            return None
        with contextlib.closing(response):
            if response.status_code != 204:
                return None
            match = re.fullmatch(r"0-(\d{1,18})", response.headers.get("range", "").strip())
            new_location = response.headers.get("location") or location
        if match is None:
            return None
        last = int(match.group(1))
        # An empty session says 0-0 (the registry's quirk): at the first chunk, read it as nothing.
        kept = 0 if last == 0 and low == 0 else last + 1
        if not low <= kept <= high:
            return None
        return kept, str(httpx.URL(location).join(new_location))

    def _send_body(
        self,
        method: str,
        url: str,
        body: Iterator[bytes] | bytes,
        what: str,
        scope: str,
        *,
        headers: dict[str, str],
        expect: int | None = None,
    ) -> httpx.Response:
        """One body-carrying upload request.  Transient failures raise _Restart."""
        try:
            with self.http.stream(
                method, url, content=body, headers=headers, extensions={SCOPE_EXTENSION: scope}
            ) as response:
                status = response.status_code
                if 200 <= status < 300 and (expect is None or status == expect or status in (201, 202, 204)):
                    response.read()
                    return response
                error_body = read_capped(response, ERROR_BODY_LIMIT, what, truncate=True)
                after = retry_after(response)
        except HashMismatchError:
            raise
        except httpx.StreamConsumed:
            raise _Restart("the registry asked to authenticate again mid-upload") from None
        except httpx.TransportError as exc:
            if is_tls_failure(exc):
                raise self._network_error(exc, what) from None
            raise _Restart(describe_failure(exc)) from None
        if status in RETRY_STATUSES or status == 500:
            raise _Restart(f"HTTP {status}", after)
        raise self._status_error(status, error_body, what)

    @overload
    def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        scope: str | None,
        missing_ok: Literal[False] = False,
        auth: bool = True,
        body_limit: int = ERROR_BODY_LIMIT,
        **kwargs: Any,
    ) -> _Answer: ...

    @overload
    def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        scope: str | None,
        missing_ok: bool,
        auth: bool = True,
        body_limit: int = ERROR_BODY_LIMIT,
        **kwargs: Any,
    ) -> _Answer | None: ...

    def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        scope: str | None,
        missing_ok: bool = False,
        auth: bool = True,
        body_limit: int = ERROR_BODY_LIMIT,
        **kwargs: Any,
    ) -> _Answer | None:
        """A request without a streamed body: retried on connection failures, 429 and 502/503/504.
        Every request sent here may be repeated: reads, a manifest PUT, and a POST that opens an
        upload session (one left behind is harmless).  The first request chooses the endpoint."""
        call = dict(what=what, scope=scope, missing_ok=missing_ok, auth=auth, body_limit=body_limit, **kwargs)
        if not self._endpoint_chosen:
            with self._endpoint_lock:
                if not self._endpoint_chosen:
                    return self._choose_endpoint(method, path, call)
        return self._call_at(self.base_url, method, path, **call)

    def _choose_endpoint(self, method: str, path: str, call: dict[str, Any]) -> _Answer | None:
        """Send the first request to each endpoint in turn; the first that answers (whatever
        the status) is the registry's.  Called with the endpoint lock held."""
        attempts: list[str] = []
        last: httpx.TransportError | None = None
        for base in [self.base_url, *self._fallbacks]:
            try:
                answer = self._call_at(base, method, path, probing=True, **call)
            except _Unreachable as exc:
                last = exc.cause
                attempts.append(f"{base}: {describe_failure(exc.cause)}")
                continue
            except BaseException:
                self._choose(base)  # it answered, with an error status
                raise
            self._choose(base)
            return answer
        hint = None
        if not self._fallbacks:
            hint = (
                f"if {self.registry} serves plain HTTP, name it with --insecure-registry {self.registry}"
                if last is not None and is_tls_failure(last)
                else "check the registry name and that it is running"
            )
        raise NetworkError(f"cannot reach the registry {self.registry} ({'; '.join(attempts)})", hint=hint)

    def _choose(self, base: str) -> None:
        self.base_url = base
        self._fallbacks = []
        self._endpoint_chosen = True

    def _call_at(
        self,
        base: str,
        method: str,
        path: str,
        *,
        what: str,
        scope: str | None,
        missing_ok: bool = False,
        auth: bool = True,
        body_limit: int = ERROR_BODY_LIMIT,
        probing: bool = False,
        **kwargs: Any,
    ) -> _Answer | None:
        url = f"{base}{path}"
        extensions = {SCOPE_EXTENSION: scope} if scope else {}
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                request_kwargs = dict(kwargs)
                if not auth:
                    request_kwargs["auth"] = None
                with self.http.stream(method, url, extensions=extensions, **request_kwargs) as response:
                    status = response.status_code
                    if status in RETRY_STATUSES and not last:
                        after = retry_after(response)
                        response.close()
                        self._backoff(attempt, after)
                        continue
                    if 200 <= status < 300:
                        content = read_capped(response, body_limit, what)
                        return _Answer(status, response.headers, content)
                    body = read_capped(response, ERROR_BODY_LIMIT, what, truncate=True)
            except httpx.TransportError as exc:
                if probing and attempt == 0:
                    raise _Unreachable(exc) from None  # not this endpoint: the caller tries the next
                if not last and may_retry(exc, idempotent=True):
                    self._backoff(attempt, None)
                    continue
                raise self._network_error(exc, what) from None
            if status == 404 and missing_ok:
                return None
            raise self._status_error(status, body, what)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int, after: float | None) -> None:
        """Wait before the retry that follows failed attempt ``attempt`` (0, 1, ...)."""
        self._sleep(retry_delay(attempt + 1, after))

    def _location(self, response: httpx.Response | _Answer, what: str) -> str:
        location = response.headers.get("location")
        if not location:
            raise ServerError(f"{self.registry} opened {what} without a Location header")
        return str(httpx.URL(self.base_url + "/").join(location))

    def _status_error(self, status: int, body: bytes, what: str) -> TrustkitError:
        """The one place a registry answer becomes a trustkit error."""
        envelope = error_envelope(body)
        code, message, detail = envelope if envelope else ("", "", None)
        said = f": {message}" if message else ""
        registry = self.registry
        if status in (401, 403) or code in ("UNAUTHORIZED", "DENIED"):
            return NotAuthorizedError(
                f"the registry {registry} refused access (HTTP {status}{said}) while {what}",
                hint=f"run `trustkit login {registry}` with an account that may do this",
            )
        if status == 429 or code == "TOOMANYREQUESTS":
            return ServerError(f"the registry {registry} refused {what}: too many requests", hint="try again later")
        if code in ("DIGEST_INVALID", "SIZE_INVALID"):
            return HashMismatchError(
                f"the registry {registry} refused {what}: the content does not match its digest or size{said}"
            )
        if code == "MANIFEST_BLOB_UNKNOWN":
            blob = f" {detail}" if isinstance(detail, str) else ""
            return ServerRejectedError(
                f"the registry {registry} refused {what}: it references a blob{blob} the repository does not have",
                status=status,
                code=code,
                detail=detail,
            )
        if code in ("NAME_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "BLOB_UPLOAD_UNKNOWN") or status == 404:
            return NotFoundError(f"the registry {registry} has no such thing ({what}){said}")
        if code == "UNSUPPORTED" or status in (405, 415):
            return ServerRejectedError(
                f"the registry {registry} does not support {what}{said}", status=status, code=code, detail=detail
            )
        if 400 <= status < 500:
            text = f" ({code}{said})" if code else f" (HTTP {status})"
            return ServerRejectedError(
                f"the registry {registry} refused {what}{text}", status=status, code=code, detail=detail
            )
        if status >= 500:
            return ServerError(
                f"the registry {registry} failed (HTTP {status}) while {what}{said}", hint="try again later"
            )
        return ServerError(f"the registry {registry} answered an unexpected HTTP {status} while {what}")

    def _network_error(self, exc: BaseException, what: str) -> NetworkError:
        if is_tls_failure(exc):
            return NetworkError(
                f"TLS failure talking to the registry {self.registry} while {what}: {str(exc)[:160]}",
                hint=f"put its CA in $DOCKER_CONFIG/tls/{self.registry}/ca.crt",
            )
        if isinstance(exc, httpx.TimeoutException):
            return NetworkError(f"the registry {self.registry} did not answer in time while {what}")
        return NetworkError(f"cannot reach the registry {self.registry} while {what}: {describe_failure(exc)}")


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _with_digest(location: str, digest: str) -> str:
    return str(httpx.URL(location).copy_add_param("digest", digest))


# --------------------------------------------------------------------------------------------
# Openers


def open_file(path: Path) -> Opener:
    """An opener over a whole file."""
    return lambda: path.open("rb")


def open_range(path: Path, offset: int, length: int) -> Opener:
    """An opener over ``length`` bytes of ``path`` from ``offset`` (a member of a tar file)."""

    def opener() -> BlobReader:
        return _RangeReader(path.open("rb"), offset, length)

    return opener


class _RangeReader(io.RawIOBase):
    def __init__(self, handle: IO[bytes], offset: int, length: int) -> None:
        self._handle = handle
        handle.seek(offset)
        self._left = length

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if size < 0 else min(size, self._left)
        data = self._handle.read(want)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._handle.close()
        super().close()
