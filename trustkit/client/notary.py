"""Layer `notary`: the HTTP client for a Notary v1 server (notary-server 0.7.0 and ours).

* :func:`resolve_server_url` picks the trust server the way docker does (``--server``,
  ``$DOCKER_CONTENT_TRUST_SERVER``, ``https://notary.docker.io`` for Docker Hub, else the
  registry's own host); :func:`make_http_client` builds its ``httpx.Client`` with the TLS
  settings docker would use (``$DOCKER_CONFIG/tls/<host:port>/``, see :mod:`trustkit.client.http`).
* :class:`NotaryClient` speaks the API of wire spec §7: metadata GETs (current, by checksum, by
  version) that return the exact body bytes under a size cap, the server-managed key endpoints,
  the atomic multipart publish, delete and the changefeed.  Every HTTP answer is turned into a
  trustkit error in one place, :meth:`NotaryClient._status_error`.

It never reads or writes trust metadata semantics; that is the `trust`/`repository` layers' job.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, overload
from urllib.parse import urlsplit

import httpx

from trustkit.client.auth import SCOPE_EXTENSION, repository_scope
from trustkit.client.docker_config import DOCKER_HUB_HOSTS
from trustkit.client.http import (
    ERROR_BODY_LIMIT,
    RETRY_STATUSES,
    error_envelope,
    host_port,
    http_client,
    is_tls_failure,
    may_retry,
    read_capped,
    retry_after,
    retry_delay,
    tls_settings,
)
from trustkit.encoding import loads_strict
from trustkit.errors import (
    EncodingError,
    KeyFormatError,
    MetadataError,
    NetworkError,
    NotAuthorizedError,
    NotFoundError,
    ServerError,
    ServerRejectedError,
    TrustkitError,
)
from trustkit.keys.public import PublicKey
from trustkit.notary_api import (
    changefeed_path,
    key_file,
    metadata_file,
    role_path,
    settings_path,
    tuf_path,
)
from trustkit.reference import is_loopback_host

__all__ = [
    "DOCKER_HUB_NOTARY",
    "NotaryClient",
    "make_http_client",
    "resolve_server_url",
]

DOCKER_HUB_NOTARY = "https://notary.docker.io"

#: A server key or a changefeed page is small; cap what we buffer.
_KEY_BODY_LIMIT = 64 * 1024
_CHANGEFEED_LIMIT = 16 * 1024 * 1024


# --------------------------------------------------------------------------------------------
# Server URL, TLS, the httpx.Client


def resolve_server_url(
    registry_host: str, explicit: str | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """The trust server for a registry: ``explicit``, else ``$DOCKER_CONTENT_TRUST_SERVER``, else
    ``https://notary.docker.io`` for Docker Hub, else ``https://<registry host>``.

    Docker accepts only ``https://``.  We also accept ``http://`` to a loopback host (for our
    own server in tests); anything else is refused.

    Raises:
        TrustkitError: not an http(s) URL, plain http to a non-loopback host, no host.
    """
    env = os.environ if environ is None else environ
    if explicit:
        url, source = explicit, "--server"
    elif env.get("DOCKER_CONTENT_TRUST_SERVER"):
        url, source = env["DOCKER_CONTENT_TRUST_SERVER"], "DOCKER_CONTENT_TRUST_SERVER"
    elif registry_host.lower() in DOCKER_HUB_HOSTS:
        return DOCKER_HUB_NOTARY
    else:
        url, source = f"https://{registry_host}", "the registry host"
    url = url.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise TrustkitError(f"trust server URL {url!r} (from {source}) is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise TrustkitError(
            f"trust server URL {url!r} (from {source}) must be https://host[:port]",
        )
    if parts.username is not None or parts.query or parts.fragment:
        raise TrustkitError(
            f"trust server URL {url!r} (from {source}) must not hold credentials, a query or a fragment"
        )
    if scheme == "http" and not is_loopback_host(parts.hostname):
        raise TrustkitError(
            f"trust server URL {url!r} (from {source}) uses plain http; only https is allowed "
            "(plain http is accepted for loopback hosts only: localhost, 127.0.0.0/8, ::1)"
        )
    return url


def make_http_client(
    server_url: str,
    *,
    tls_ca: str | None = None,
    config_dir: Path | None = None,
    auth: httpx.Auth | None = None,
    timeout: float = 30.0,
) -> httpx.Client:
    """An ``httpx.Client`` for the trust server: docker's TLS settings for it (``tls_ca``, else
    ``<config dir>/tls/<host:port>/`` on top of the system CAs), a 5 s connect timeout and
    ``timeout`` seconds for everything else (see :func:`trustkit.client.http.http_client`)."""
    context, _ = tls_settings(server_url, tls_ca, config_dir)
    return http_client(server_url, context, auth=auth, timeout=timeout)


# --------------------------------------------------------------------------------------------
# The client


def _invalid_update(message: str, detail: Any, gun: str) -> str:
    name = msg = ""
    if isinstance(detail, dict):
        name = str(detail.get("Name") or "")
        error = detail.get("Error")
        if isinstance(error, dict):
            msg = str(error.get("Msg") or "")
    text = f"the trust server rejected the update of {gun}"
    if name or msg:
        text += ": " + (f"{msg} ({name})" if name and msg else msg or name)
    return text


def _malformed(message: str, detail: Any, gun: str) -> str:
    return f"the trust server refused the upload for {gun} as malformed: {message}"


def _quoted_role(detail: Any) -> str:
    return f' "{detail}"' if isinstance(detail, str) and detail else ""


def _in_parentheses(detail: Any) -> str:
    return f" ({detail})" if isinstance(detail, str) and detail else ""


def _after_colon(detail: Any) -> str:
    return f": {detail}" if isinstance(detail, str) and detail else ""


#: What a notary error code (notary_api.ERROR_CODES) means for the user: (message, detail, gun) -> text.
_HINTS: dict[str, Callable[[str, Any, str], str]] = {
    "VERSION": lambda message, detail, gun: (
        f"the trust server already has a newer version of {gun} (someone published meanwhile); run the command again"
    ),
    "INVALID_UPDATE": _invalid_update,
    "MALFORMED_JSON": lambda message, detail, gun: f"the trust server could not parse the metadata sent for {gun}",
    "MALFORMED_UPLOAD": _malformed,
    "NO_FILENAME": _malformed,
    "INVALID_ROLE": lambda message, detail, gun: (
        f"the trust server does not accept role{_quoted_role(detail)} for {gun}"
    ),
    "INVALID_GUN": lambda message, detail, gun: (
        f"the trust server does not serve repository {gun}{_in_parentheses(detail)}"
    ),
    "INVALID_PARAMETERS": lambda message, detail, gun: (
        f"the trust server refused the request parameters for {gun}{_after_colon(detail)}"
    ),
}


def _human_code_message(code: str, message: str, detail: Any, gun: str) -> str:
    """What a notary error code means for the user (wire spec §7.6)."""
    hint = _HINTS.get(code)
    return hint(message, detail, gun) if hint else f"the trust server refused the request for {gun}: {message or code}"


class NotaryClient:
    """The Notary v1 API for one GUN on one server.

    ``client`` is any ``httpx.Client`` (a real one from :func:`make_http_client`, or one with an
    ``httpx.MockTransport`` in tests).  A request is retried up to ``retries`` times with
    backoff when nothing was sent (a refused connection); a GET also on a broken connection and
    on 429/502/503/504.  A POST, PUT or DELETE that reached the server is never sent twice.
    """

    def __init__(
        self,
        base_url: str,
        gun: str,
        client: httpx.Client,
        *,
        retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.gun = gun
        self.client = client
        self.retries = retries
        self._sleep = sleep
        self._tuf = f"{self.base_url}/v2/{tuf_path(gun)}"

    # ---- API

    def ping(self) -> None:
        """``GET /v2/``: 200 or 401 means a server is there.  Never retried, never authenticated
        (the 401 challenge of the ping is expected and not an error).

        Raises:
            NetworkError: unreachable, TLS failure, or an answer that is not 200/401.
        """
        url = f"{self.base_url}/v2/"
        try:
            with self.client.stream("GET", url, auth=None) as response:
                status = response.status_code
        except httpx.TransportError as exc:
            raise self._network_error(exc, url) from None
        if status not in (200, 401):
            raise ServerError(
                f"{url} answered HTTP {status}; it does not look like a trust server",
                hint="check --server / DOCKER_CONTENT_TRUST_SERVER",
            )

    def get(self, role: str, *, checksum: str | None = None, version: int | None = None, max_size: int) -> bytes | None:
        """The exact bytes of ``<role>.json`` (or ``<role>.<checksum>.json``, or
        ``<version>.<role>.json``); None when the server has no such file.

        Raises:
            ServerError: the body is larger than ``max_size`` bytes (it is never buffered beyond
                that), or a 5xx.
            NetworkError, NotAuthorizedError, ServerRejectedError: see :meth:`_status_error`.
        """
        file = metadata_file(role, checksum=checksum, version=version)
        return self._call(
            "GET", self._tuf + file, what=f"{role}.json of {self.gun}", max_size=max_size, missing_ok=True, push=False
        )

    def get_key(self, role: str) -> PublicKey:
        """The server-managed key of ``timestamp`` or ``snapshot`` (``GET .../<role>.key``).

        Before the GUN has a root, the real server makes a new key on *every* call: fetch it once.
        """
        return self._key("GET", role)

    def rotate_key(self, role: str) -> PublicKey:
        """A new server-managed key for ``timestamp`` or ``snapshot`` (``POST .../<role>.key``)."""
        return self._key("POST", role)

    def publish(self, files: Mapping[str, bytes]) -> None:
        """One atomic update: a multipart part per role, field ``files``, filename = the role
        name with its slashes (``targets/releases``), the exact bytes as the part body."""
        if not files:
            raise ValueError("nothing to publish")
        parts = []
        for role, data in files.items():
            role_path(role)  # validates
            if not isinstance(data, bytes | bytearray):
                raise TypeError(f"the {role} file must be bytes")
            parts.append(("files", (role, bytes(data), "application/octet-stream")))
        self._call("POST", self._tuf, what=f"publishing {self.gun}", max_size=ERROR_BODY_LIMIT, files=parts, push=True)

    def delete(self) -> None:
        """Delete all trust data of the GUN on the server."""
        self._call(
            "DELETE", self._tuf, what=f"deleting the trust data of {self.gun}", max_size=ERROR_BODY_LIMIT, push=True
        )

    def changefeed(self, change_id: str = "0", records: int = 100) -> dict[str, Any]:
        """One page of the GUN's changefeed: ``{"count": N, "records": [...] | null}``."""
        url = f"{self.base_url}/v2/{changefeed_path(self.gun)}"
        body = self._call(
            "GET",
            url,
            what=f"the changefeed of {self.gun}",
            max_size=_CHANGEFEED_LIMIT,
            params={"change_id": change_id, "records": str(records)},
            push=False,
        )
        try:
            data = loads_strict(body, what="changefeed")
        except EncodingError as exc:
            raise ServerError(f"the trust server sent an invalid changefeed for {self.gun}: {exc}") from None
        if not isinstance(data, dict):
            raise ServerError(f"the trust server sent an invalid changefeed for {self.gun}")
        return data

    def settings(self) -> dict[str, Any]:
        """Repository settings on a trustkit server (``{"immutable": bool}``); a notary-server
        has none, which reads as the defaults."""
        url = f"{self.base_url}/v2/{settings_path(self.gun)}"
        body = self._call(
            "GET", url, what=f"the settings of {self.gun}", max_size=ERROR_BODY_LIMIT, push=False, missing_ok=True
        )
        if body is None:
            return {"immutable": False}
        try:
            data = loads_strict(body, what="settings")
        except EncodingError as exc:
            raise ServerError(f"the trust server sent invalid settings for {self.gun}: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("immutable", False), bool):
            raise ServerError(f"the trust server sent invalid settings for {self.gun}")
        return data

    def set_settings(self, settings: Mapping[str, Any]) -> None:
        """Change repository settings (needs the admin scope on a trustkit server)."""
        url = f"{self.base_url}/v2/{settings_path(self.gun)}"
        try:
            self._call(
                "PUT",
                url,
                what=f"changing the settings of {self.gun}",
                max_size=ERROR_BODY_LIMIT,
                push=True,
                content=json.dumps(dict(settings)).encode(),
                headers={"Content-Type": "application/json"},
            )
        except NotFoundError:
            raise TrustkitError(
                f"the trust server for {self.gun} has no repository settings",
                hint="repository settings need a trustkit server",
            ) from None

    # ---- internals

    def _key(self, method: str, role: str) -> PublicKey:
        file = key_file(role)
        action = "rotating" if method == "POST" else "fetching"
        body = self._call(
            method, self._tuf + file, what=f"{action} the {role} key of {self.gun}", max_size=_KEY_BODY_LIMIT, push=True
        )
        try:
            key = PublicKey.from_dict(loads_strict(body, what=f"{role} key"), path=f"{role}.key")
            key.crypto_key  # noqa: B018 - refuse a key we could not verify with
        except (EncodingError, MetadataError, KeyFormatError) as exc:
            raise ServerError(f"the trust server sent an invalid {role} key for {self.gun}: {exc}") from None
        return key

    @overload
    def _call(
        self,
        method: str,
        url: str,
        *,
        what: str,
        max_size: int,
        push: bool,
        missing_ok: Literal[False] = False,
        **kwargs: Any,
    ) -> bytes: ...

    @overload
    def _call(
        self, method: str, url: str, *, what: str, max_size: int, push: bool, missing_ok: bool, **kwargs: Any
    ) -> bytes | None: ...

    def _call(
        self,
        method: str,
        url: str,
        *,
        what: str,
        max_size: int,
        push: bool,
        missing_ok: bool = False,
        **kwargs: Any,
    ) -> bytes | None:
        """Send, retry what may be retried (see the class), read the body under ``max_size``, map errors."""
        idempotent = method == "GET"
        extensions = {SCOPE_EXTENSION: repository_scope(self.gun, push=push)}
        delay: float | None = None
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            if delay is not None:
                self._sleep(delay)
            try:
                with self.client.stream(method, url, extensions=extensions, **kwargs) as response:
                    status = response.status_code
                    if idempotent and status in RETRY_STATUSES and not last:
                        delay = retry_delay(attempt + 1, retry_after(response))
                        continue
                    if 200 <= status < 300:
                        return read_capped(response, max_size, what)
                    body = read_capped(response, ERROR_BODY_LIMIT, what, truncate=True)
            except httpx.TransportError as exc:
                if not last and may_retry(exc, idempotent=idempotent):
                    delay = retry_delay(attempt + 1)
                    continue
                raise self._network_error(exc, url) from None
            except httpx.HTTPError as exc:
                raise ServerError(f"bad answer from the trust server while {what}: {exc}") from None
            if status == 404 and missing_ok:
                return None
            raise self._status_error(status, body, what)
        raise AssertionError("unreachable")  # pragma: no cover

    def _status_error(self, status: int, body: bytes, what: str) -> TrustkitError:
        """The one place an HTTP status becomes a trustkit error."""
        envelope = error_envelope(body)
        code, message, detail = envelope if envelope else ("", "", None)
        server = self.base_url
        if status in (401, 403):
            return NotAuthorizedError(
                f"the trust server {server} refused access to {self.gun} (HTTP {status}) while {what}",
                hint=f"run `trustkit login {host_port(server)}` (the trust server's own login, tried first) or "
                "log in to the registry with an account that may access it",
            )
        if status == 404:
            return NotFoundError(f"the trust server {server} has no such resource ({what})")
        if 400 <= status < 500:
            if envelope:
                text = _human_code_message(code, message, detail, self.gun)
            else:
                text = f"the trust server {server} refused the request (HTTP {status}) while {what}"
            return ServerRejectedError(text, status=status, code=code, detail=detail)
        if status >= 500:
            extra = f": {message} ({code})" if envelope else ""
            return ServerError(
                f"the trust server {server} failed (HTTP {status}) while {what}{extra}", hint="try again later"
            )
        return ServerError(f"the trust server {server} answered an unexpected HTTP {status} while {what}")

    def _network_error(self, exc: BaseException, url: str) -> NetworkError:
        if is_tls_failure(exc):
            return NetworkError(
                f"TLS with the trust server at {url} failed: {str(exc)[:160] or type(exc).__name__}",
                hint=f"if its certificate is not trusted here, pass --tls-ca FILE or put its CA in "
                f"$DOCKER_CONFIG/tls/{host_port(url)}/ca.crt",
            )
        if isinstance(exc, httpx.TimeoutException):
            return NetworkError(f"the trust server at {url} did not answer in time ({type(exc).__name__})")
        reason = str(exc) or type(exc).__name__
        return NetworkError(f"cannot reach the trust server at {url}: {reason}")
