"""Layer `server`: what the registry serves for the signed tags, for the web page's badges.

``trustkit server --registry URL`` asks that registry, for each signed tag a page shows, which
manifest the tag points at now (``GET /v2/<name>/manifests/<tag>``, hashed as a pull would), and
compares it with the signed digest through :mod:`trustkit.trust.drift`, the comparison
``trustkit verify`` uses.  The server never trusts what it reads here: it only labels rows.

Bounded, because a page view must not hang on the registry or flood it: at most
``MAX_CHECKED`` tags per view, eight requests at a time, each with a timeout, the whole check
within ``CHECK_BUDGET`` seconds; answers are kept for ``TTL`` seconds; manifests over 4 MiB are
not read.  Authentication: anonymous, basic, or the registry token flow (``Bearer realm=...``)
with the configured user.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from email.message import Message

from trustkit.errors import TrustkitError
from trustkit.trust.drift import RegistryCheck, compare_with_registry

# What a pull asks for (docker and containerd send these; the digest is of the bytes served).
ACCEPT_MANIFESTS = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)
MANIFEST_LIMIT = 4 << 20  # the registry's own limit for a manifest
TOKEN_LIMIT = 64 << 10
MAX_CHECKED = 200  # tags checked per page view; the filter narrows which
CHECK_BUDGET = 10.0  # seconds one page view may spend asking the registry
REQUEST_TIMEOUT = 5.0
TTL = 30.0  # seconds an answer is reused
CACHE_SIZE = 20_000
PARALLEL = 8
DOCKER_HUB_HOSTS = ("registry-1.docker.io", "index.docker.io")


class RegistryProblem(TrustkitError):
    """The registry could not answer (unreachable, refused, or an unexpected reply)."""


@dataclass
class RegistryReport:
    """What one page view learned: a check per tag asked about, how many were left unchecked,
    and the problem that stopped the checks, if one did."""

    registry: str
    checks: dict[tuple[str, str], RegistryCheck] = field(default_factory=dict)  # (tag, digest hex)
    unchecked: int = 0
    problem: str | None = None


class RegistryReader:
    """Reads one registry's manifests (thread-safe; one per server process)."""

    def __init__(
        self,
        url: str,
        *,
        ca_file: str | None = None,
        username: str | None = None,
        password: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parsed = urllib.parse.urlsplit(url.rstrip("/"))
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise TrustkitError(f"--registry {url!r} must be an http(s):// URL")
        self.url = f"{parsed.scheme}://{parsed.netloc}"
        self.host = parsed.netloc
        # for an https registry and for its token service, which may be https behind a plain registry
        self._context = ssl.create_default_context(cafile=ca_file)
        self._basic = (
            "Basic " + base64.b64encode(f"{username}:{password or ''}".encode()).decode() if username else None
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str, str], tuple[float, RegistryCheck]] = OrderedDict()
        self._tokens: dict[str, str] = {}  # scope -> bearer token (refetched on the next 401)
        self._pool = ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="registry-check")
        # HTTP(S)_PROXY and NO_PROXY apply as for any client; redirects are refused (see below).
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=self._context), _NoRedirects)

    # ---- which registry repository a GUN names

    def repository_for(self, gun: str) -> str | None:
        """The repository's name in this registry, or None when the GUN names another registry."""
        host, _, name = gun.partition("/")
        if not name:
            return None
        if host == self.host or (host == "docker.io" and self.host in DOCKER_HUB_HOSTS):
            return name
        return None

    # ---- checks

    def check(self, gun: str, rows: Sequence[tuple[str, str]]) -> RegistryReport:
        """Compare each (tag, signed digest hex) with what the registry serves, within the
        limits above.  Never raises: a problem is reported for the page to show."""
        report = RegistryReport(self.url)
        repository = self.repository_for(gun)
        if repository is None:
            report.problem = f"{gun} is not a repository of {self.host}: nothing to compare"
            report.unchecked = len(rows)
            return report
        asked = list(dict.fromkeys(rows))[:MAX_CHECKED]
        report.unchecked = len(set(rows)) - len(asked)
        futures = {self._pool.submit(self._check_one, repository, tag, digest): (tag, digest) for tag, digest in asked}
        done, late = wait(futures, timeout=CHECK_BUDGET)
        for future in late:
            future.cancel()
        report.unchecked += len(late)
        for future in done:
            error = future.exception()
            if error is None:
                report.checks[futures[future]] = future.result()
            else:
                report.unchecked += 1
                report.problem = report.problem or (
                    error.message if isinstance(error, TrustkitError) else f"{type(error).__name__}: {error}"
                )
        return report

    def _check_one(self, repository: str, tag: str, digest: str) -> RegistryCheck:
        key = (repository, tag, digest)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and now - cached[0] < TTL:
                return cached[1]
        result = compare_with_registry(
            f"sha256:{digest}", tag, lambda reference: self.find_manifest(repository, reference)
        )
        with self._lock:
            self._cache[key] = (now, result)
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return result

    # ---- HTTP

    def find_manifest(self, repository: str, reference: str) -> str | None:
        """The digest of the manifest the registry serves for a tag or digest, or None (404)."""
        scope = f"repository:{repository}:pull"
        path = f"/v2/{urllib.parse.quote(repository)}/manifests/{urllib.parse.quote(reference, safe=':')}"
        status, headers, body = self._get(path, scope, {"Accept": ACCEPT_MANIFESTS}, MANIFEST_LIMIT)
        if status == 401:
            self._authenticate(headers.get("WWW-Authenticate", ""), scope)
            status, headers, body = self._get(path, scope, {"Accept": ACCEPT_MANIFESTS}, MANIFEST_LIMIT)
        if status == 404:
            return None
        if status != 200:
            raise RegistryProblem(f"{self.host} answered {status} for the manifest {repository}:{reference}")
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def _authorization(self, scope: str) -> str | None:
        with self._lock:
            token = self._tokens.get(scope)
        return f"Bearer {token}" if token else self._basic

    def _authenticate(self, challenge: str, scope: str) -> None:
        kind, _, params = challenge.partition(" ")
        if kind.lower() == "basic":
            if self._basic is None:
                raise RegistryProblem(f"{self.host} wants a login: give the server --registry-user")
            raise RegistryProblem(f"{self.host} refused the configured registry login")
        if kind.lower() != "bearer":
            raise RegistryProblem(f"{self.host} answered 401 without a usable challenge")
        values = _challenge_params(params)
        realm = values.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise RegistryProblem(f"{self.host} names no usable token realm")
        query = urllib.parse.urlencode({"service": values.get("service", ""), "scope": scope})
        headers = {"Authorization": self._basic} if self._basic else {}
        status, _, body = self._request(f"{realm}{'&' if '?' in realm else '?'}{query}", headers, TOKEN_LIMIT)
        if status != 200:
            raise RegistryProblem(f"the token service of {self.host} answered {status}")
        try:
            answer = json.loads(body)
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryProblem(f"the token service of {self.host} sent no token")
        with self._lock:
            self._tokens[scope] = token

    def _get(self, path: str, scope: str, headers: dict[str, str], limit: int) -> tuple[int, Message, bytes]:
        authorization = self._authorization(scope)
        if authorization:
            headers = {**headers, "Authorization": authorization}
        return self._request(self.url + path, headers, limit)

    def _request(self, url: str, headers: dict[str, str], limit: int) -> tuple[int, Message, bytes]:
        request = urllib.request.Request(url, headers=headers, method="GET")  # noqa: S310 - http(s) only, checked above
        try:
            with self._opener.open(request, timeout=REQUEST_TIMEOUT) as response:
                return response.status, response.headers, _read(response, limit, url)
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers, b""
        except (OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise RegistryProblem(f"cannot reach {self.host}: {reason}") from None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Registries redirect blob reads, never manifests; a redirect here would carry the login
    to another host, so it is an error instead."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _read(response: object, limit: int, url: str) -> bytes:
    read = response.read  # type: ignore[attr-defined]  # http.client.HTTPResponse
    data: bytes = read(limit + 1)
    if len(data) > limit:
        raise RegistryProblem(f"{urllib.parse.urlsplit(url).netloc} sent more than {limit} bytes")
    return data


def _challenge_params(text: str) -> dict[str, str]:
    """``realm="...",service="..."`` as a dict (quoted values may hold commas)."""
    values: dict[str, str] = {}
    rest = text.strip()
    while rest:
        name, sep, rest = rest.partition("=")
        if not sep:
            break
        rest = rest.lstrip()
        if rest.startswith('"'):
            value, _, rest = rest[1:].partition('"')
        else:
            value, _, rest = rest.partition(",")
        values[name.strip().lstrip(",").strip().lower()] = value
        rest = rest.lstrip().lstrip(",").lstrip()
    return values


__all__ = ["MAX_CHECKED", "RegistryProblem", "RegistryReader", "RegistryReport"]
