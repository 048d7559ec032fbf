"""Layer `client`: the HTTP plumbing the Notary client and the registry client share.

* TLS the docker way: :func:`tls_settings` (``$DOCKER_CONFIG/tls/<host:port>/``, for a registry
  also ``/etc/docker/certs.d/<host:port>/``: ``*.crt`` CAs on top of the system ones, a
  ``*.cert``/``*.key`` client pair), :func:`unverified_context` for an insecure registry.
* :func:`http_client`: the one ``httpx.Client`` builder (proxy from the environment, a short
  connect timeout, our User-Agent, no redirects unless a call asks, no retries in the transport:
  the callers retry by :func:`may_retry` and :func:`retry_delay`).
* Failures: :func:`is_tls_failure` (the one heuristic) and :func:`describe_failure`.
* Bodies: :func:`read_capped` never buffers past a limit; :func:`read_buffered` does the same for
  a response httpx reads again itself (one handed to an auth flow); :func:`error_envelope` reads
  the ``{"errors": [{"code", "message", "detail"}]}`` body that notary and registries send.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpx

from trustkit import __version__
from trustkit.client.docker_config import docker_config_dir
from trustkit.encoding import loads_strict
from trustkit.errors import EncodingError, OversizedError, TrustkitError
from trustkit.reference import is_loopback_host

__all__ = [
    "CONNECT_TIMEOUT",
    "DOCKER_CERTS_D",
    "ERROR_BODY_LIMIT",
    "RETRY_BACKOFF",
    "RETRY_STATUSES",
    "ErrorEnvelope",
    "describe_failure",
    "error_envelope",
    "host_port",
    "http_client",
    "is_tls_failure",
    "may_retry",
    "proxy_for",
    "read_buffered",
    "read_capped",
    "retry_after",
    "retry_delay",
    "tls_settings",
    "unverified_context",
]

CONNECT_TIMEOUT = 5.0
#: Error answers are read up to this size only (notary's and registries' are a few hundred bytes).
ERROR_BODY_LIMIT = 64 * 1024
#: Where the docker daemon finds a registry's certificates: ``<this>/<host:port>/``.
DOCKER_CERTS_D = Path("/etc/docker/certs.d")

#: Answers worth asking again: too many requests, and a gateway or server that is briefly away.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Seconds to wait before retry 1, 2, 3 (later ones wait the last); a longer Retry-After wins.
RETRY_BACKOFF = (0.5, 1.0, 2.0)
#: A Retry-After is obeyed up to this many seconds, so a server cannot park us for hours.
MAX_RETRY_AFTER = 30.0


# --------------------------------------------------------------------------------------------
# TLS


def host_port(url: str) -> str:
    """``host[:port]`` exactly as in the URL: docker's name for a server's certificate folder."""
    return urlsplit(url).netloc.rsplit("@", 1)[-1]


def _system_context() -> ssl.SSLContext:
    """The system CAs.  Where OpenSSL has a hashed CA directory (Debian's /etc/ssl/certs), load
    only that: certificates are then read when a handshake needs them, instead of parsing the
    whole bundle (~20 ms) on every command.  Elsewhere, OpenSSL's default paths."""
    paths = ssl.get_default_verify_paths()
    capath = paths.capath
    if (
        not os.environ.get(paths.openssl_cafile_env)
        and capath
        and os.path.isdir(capath)
        and any(name.endswith(".0") for name in os.listdir(capath))
    ):
        return ssl.create_default_context(capath=capath)
    return ssl.create_default_context()


def unverified_context() -> ssl.SSLContext:
    """TLS without any verification: docker's rule for an insecure (or loopback) registry."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CA loading: nothing is verified
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _client_pair(directories: Iterable[Path]) -> tuple[Path, Path] | None:
    """The first ``*.cert`` with its ``*.key``; either one without the other is an error
    (docker's ReadCertsDirectory rule)."""
    pair: tuple[Path, Path] | None = None
    for directory in directories:
        for cert in sorted(directory.glob("*.cert")):
            key = cert.with_suffix(".key")
            if not key.exists():
                raise TrustkitError(f"client certificate {cert} has no matching key {key.name}")
            pair = pair or (cert, key)
        for key in sorted(directory.glob("*.key")):
            if not key.with_suffix(".cert").exists():
                raise TrustkitError(f"client key {key} has no matching certificate {key.with_suffix('.cert').name}")
    return pair


def tls_settings(
    server_url: str, tls_ca: str | None = None, config_dir: Path | None = None, *, certs_d: Path | None = None
) -> tuple[ssl.SSLContext, tuple[Path, Path] | None]:
    """The SSL context for ``server_url`` and the client certificate pair it loaded, if any.

    The folders are ``<config dir>/tls/<host:port>/`` and, when given, ``<certs_d>/<host:port>/``
    (docker reads ``/etc/docker/certs.d`` for registries only).

    * CAs: ``tls_ca`` (that file only) if given; else every ``*.crt`` in the folders *added to*
      the system CAs (docker's rule).
    * Client certificate: a ``*.cert`` with the matching ``*.key`` (docker's convention),
      loaded into the context.

    Raises:
        TrustkitError: an unreadable or invalid CA file, or a ``.cert`` without its ``.key``
            (or the reverse).
    """
    name = host_port(server_url)
    config = config_dir if config_dir is not None else docker_config_dir()
    folders = [config / "tls" / name] + ([certs_d / name] if certs_d is not None else [])
    directories = [folder for folder in folders if folder.is_dir()]
    pair = _client_pair(directories)
    try:
        if tls_ca is not None:
            if not Path(tls_ca).is_file():
                raise TrustkitError(f"TLS CA file {tls_ca} does not exist")
            context = ssl.create_default_context(cafile=str(tls_ca))
        else:
            context = _system_context()
            for crt in (crt for directory in directories for crt in sorted(directory.glob("*.crt"))):
                context.load_verify_locations(cafile=str(crt))
    except ssl.SSLError as exc:
        raise TrustkitError(f"cannot load the CA certificates for {name}: {exc.reason or exc}") from None
    except OSError as exc:
        raise TrustkitError(f"cannot read a CA certificate: {exc}") from None
    if pair is not None:
        try:
            context.load_cert_chain(str(pair[0]), str(pair[1]))
        except (ssl.SSLError, OSError) as exc:
            raise TrustkitError(f"cannot load the client certificate {pair[0]} with {pair[1].name}: {exc}") from None
    return context, pair


# --------------------------------------------------------------------------------------------
# The client


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for this URL (HTTPS_PROXY / HTTP_PROXY / NO_PROXY);
    never one for a loopback host."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if is_loopback_host(host):
        return None
    import urllib.request  # only here: it costs ~6 ms at start-up

    proxy = urllib.request.getproxies().get(parts.scheme.lower())
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return proxy


def http_client(
    url: str,
    context: ssl.SSLContext,
    *,
    auth: httpx.Auth | None = None,
    timeout: float,
    connections: int | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` for the server at ``url``: ``context`` for TLS, the environment's
    proxy, a 5 s connect timeout and ``timeout`` seconds for everything else, at most
    ``connections`` connections (httpx's default when None).  The transport never retries:
    every retry is the caller's, by :func:`may_retry`, so a TLS failure is never repeated."""
    limits = (
        httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        if connections is not None
        else httpx.Limits()
    )
    transport = httpx.HTTPTransport(verify=context, proxy=proxy_for(url), trust_env=False, limits=limits)
    return httpx.Client(
        transport=transport,
        auth=auth,
        timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
        headers={"User-Agent": f"trustkit/{__version__}"},
        follow_redirects=False,
    )


# --------------------------------------------------------------------------------------------
# Failures and retries


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it (httpx wraps httpcore's error, which wraps the ssl one)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__


#: How OpenSSL and the ssl module spell their errors, for a failure whose cause was not kept.
_TLS_MARKERS = ("[SSL", "CERTIFICATE_VERIFY_FAILED", "(_ssl.c:")


def is_tls_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a TLS failure: an untrusted certificate, a handshake that failed (plain
    HTTP on a TLS port, a refused client certificate).  Such a failure repeats on every retry."""
    return any(
        isinstance(seen, ssl.SSLError) or any(mark in str(seen) for mark in _TLS_MARKERS) for seen in _chain(exc)
    )


def describe_failure(exc: BaseException) -> str:
    """A short reason for a failed request, for a message."""
    if is_tls_failure(exc):
        text = str(exc)
        return "TLS failure" + (f": {text[:160]}" if text else "")
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return str(exc)[:200] or type(exc).__name__


def may_retry(exc: httpx.HTTPError, *, idempotent: bool) -> bool:
    """Whether a request that failed with ``exc`` may be sent again.

    Never after a TLS failure (it fails the same way again) or a timeout (the wait would only
    grow).  After a refused or reset connection, always: nothing was sent.  After a connection
    that broke mid-exchange, only an ``idempotent`` request, since the server may have acted."""
    if is_tls_failure(exc):
        return False
    if isinstance(exc, httpx.ConnectError):
        return True
    return idempotent and isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError)


def retry_after(response: httpx.Response) -> float | None:
    """The answer's ``Retry-After`` in seconds, when it gives a number."""
    value = response.headers.get("retry-after", "").strip()
    try:
        return float(value) if value else None
    except ValueError:
        return None


def retry_delay(retry: int, after: float | None = None) -> float:
    """Seconds to wait before retry number ``retry`` (1, 2, ...), at least the server's
    ``Retry-After`` (``after``) up to :data:`MAX_RETRY_AFTER`."""
    delay = RETRY_BACKOFF[min(max(retry, 1), len(RETRY_BACKOFF)) - 1]
    if after is not None and after > 0:
        delay = max(delay, min(after, MAX_RETRY_AFTER))
    return delay


# --------------------------------------------------------------------------------------------
# Bodies


def read_capped(response: httpx.Response, limit: int, what: str, *, truncate: bool = False) -> bytes:
    """The (decoded) body of a streamed response, refusing (or, with ``truncate``, cutting)
    anything past ``limit`` bytes; an announced length past it is refused before reading (but
    for a HEAD, whose Content-Length is the size of what a GET would send).

    Raises:
        OversizedError: the body is larger than ``limit`` (without ``truncate``).
    """
    declared = response.headers.get("content-length", "")
    if not truncate and declared.isdigit() and int(declared) > limit and response.request.method != "HEAD":
        raise OversizedError(f"{what} is larger than {limit} bytes (the server announced {declared})")
    buffer = bytearray()
    for chunk in response.iter_bytes():
        buffer += chunk
        if len(buffer) > limit:
            if truncate:
                return bytes(buffer[:limit])
            raise OversizedError(f"{what} is larger than {limit} bytes")
    return bytes(buffer)


class _CappedStream(httpx.SyncByteStream):
    """A response body that raises instead of going past ``limit`` bytes."""

    def __init__(self, inner: httpx.SyncByteStream, limit: int, what: str) -> None:
        self._inner = inner
        self._limit = limit
        self._what = what

    def __iter__(self) -> Iterator[bytes]:
        size = 0
        for chunk in self._inner:
            size += len(chunk)
            if size > self._limit:
                raise OversizedError(f"{self._what} is larger than {self._limit} bytes")
            yield chunk

    def close(self) -> None:
        self._inner.close()


def read_buffered(response: httpx.Response, limit: int, what: str) -> bytes:
    """Read the whole body the way httpx does (``response.read()``, so that ``response.content``
    holds it and httpx's own later read is free), but never past ``limit`` bytes.

    For a response that httpx reads again itself, as it does with every response an auth flow
    answers.  The cap counts the bytes on the wire, so a compressed body (which could decode to
    far more) is refused: ask for ``Accept-Encoding: identity``.

    Raises:
        OversizedError: the body is larger than ``limit``.
        TrustkitError: the body is compressed.
    """
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise OversizedError(f"{what} is larger than {limit} bytes (the server announced {declared})")
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise TrustkitError(f"{what} came compressed ({encoding[:40]}), which was not asked for")
    stream = response.stream
    if not response.is_stream_consumed and isinstance(stream, httpx.SyncByteStream):
        response.stream = _CappedStream(stream, limit, what)
    body = response.read()
    if len(body) > limit:  # a body httpx had read before it reached us (an in-memory response)
        raise OversizedError(f"{what} is larger than {limit} bytes")
    return body


class ErrorEnvelope(NamedTuple):
    """The first error of a ``{"errors": [...]}`` body."""

    code: str
    message: str
    detail: Any


def error_envelope(body: bytes) -> ErrorEnvelope | None:
    """The first error of notary's (and the distribution API's) ``{"errors":[{...}]}``, or None
    for any other body."""
    try:
        data = loads_strict(body, what="error body")
    except EncodingError:
        return None
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None
    first = errors[0]
    code, message = first.get("code"), first.get("message")
    return ErrorEnvelope(
        code if isinstance(code, str) else "", message if isinstance(message, str) else "", first.get("detail")
    )
