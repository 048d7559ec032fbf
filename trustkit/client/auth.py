"""Layer `client`: the docker registry token flow.

* :class:`TokenAuth` is an ``httpx.Auth``: on a ``401`` with a ``Bearer`` challenge it fetches a
  token from the challenge's realm (HTTP Basic GET, anonymous GET, or the OAuth refresh-token
  POST when an identity token exists), caches it per (realm, service, scope) and retries the
  request once.  The token request is yielded from the auth flow, so it goes through the same
  ``httpx.Client`` and therefore the same TLS settings as the request it authorises.
  Credentials go only to the registry they belong to and to the realm *its own* challenge names:
  a challenge from any other host (storage a blob read was redirected to, an upload location on
  another host) is refused with a clear error and gets nothing.
* :func:`parse_www_authenticate` reads the challenges (RFC 7235).

The credentials themselves come from :mod:`trustkit.client.docker_config`.
Wire details: ../shared/reference/notary-v1-wire.md §7.7.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable
from dataclasses import dataclass

import httpx

from trustkit.client.docker_config import Credentials
from trustkit.client.http import read_buffered
from trustkit.encoding import loads_strict
from trustkit.errors import EncodingError, NotAuthorizedError, OversizedError, ServerError, TrustkitError
from trustkit.reference import is_loopback_host

__all__ = [
    "SCOPE_EXTENSION",
    "Challenge",
    "Credentials",
    "TokenAuth",
    "parse_www_authenticate",
    "repository_scope",
]

#: Request extension that names the scope to ask for when a challenge does not name one.
SCOPE_EXTENSION = "trustkit.scope"

_TOKEN_BODY_LIMIT = 1 << 20  # a token response is a few KiB; never buffer more than this
_DEFAULT_EXPIRES_IN = 60  # seconds, as the registry token spec says when expires_in is absent
_EXPIRY_MARGIN = 5  # seconds: a token is refreshed slightly before it expires
#: The token answer is capped on the wire, so it must come uncompressed (see http.read_buffered).
_TOKEN_HEADERS = {"Accept-Encoding": "identity"}


# --------------------------------------------------------------------------------------------
# WWW-Authenticate


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header; ``params`` keys are lower case."""

    scheme: str  # lower case: "bearer", "basic", ...
    params: dict[str, str]


_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _skip(text: str, pos: int, chars: str = " \t") -> int:
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def _token(text: str, pos: int) -> tuple[str, int]:
    start = pos
    while pos < len(text) and text[pos] in _TCHARS:
        pos += 1
    return text[start:pos], pos


def _quoted(text: str, pos: int) -> tuple[str, int]:
    """A quoted-string starting at ``text[pos] == '"'``; an unterminated one runs to the end."""
    out: list[str] = []
    pos += 1
    while pos < len(text):
        char = text[pos]
        if char == "\\" and pos + 1 < len(text):
            out.append(text[pos + 1])
            pos += 2
        elif char == '"':
            return "".join(out), pos + 1
        else:
            out.append(char)
            pos += 1
    return "".join(out), pos


def parse_www_authenticate(headers: str | Iterable[str]) -> list[Challenge]:
    """Every challenge in one or more ``WWW-Authenticate`` values (RFC 7235 grammar).

    Quoted values may hold commas and escaped quotes; several challenges may share one header
    (``Bearer realm="a,b",service="s", Basic realm="r"``).  Garbage is skipped, never raised.
    """
    values = [headers] if isinstance(headers, str) else list(headers)
    challenges: list[Challenge] = []
    for text in values:
        pos = 0
        current: Challenge | None = None
        while pos < len(text):
            pos = _skip(text, pos, " \t,")
            word, after = _token(text, pos)
            if not word:
                pos += 1  # a character no rule allows here: skip it
                continue
            eq = _skip(text, after)
            if current is not None and eq < len(text) and text[eq] == "=":
                value_pos = _skip(text, eq + 1)
                if value_pos < len(text) and text[value_pos] == '"':
                    value, pos = _quoted(text, value_pos)
                else:  # an unquoted value: lenient, up to the next comma or blank
                    end = value_pos
                    while end < len(text) and text[end] not in ", \t":
                        end += 1
                    value, pos = text[value_pos:end], end
                current.params.setdefault(word.lower(), value)
                continue
            current = Challenge(word.lower(), {})
            challenges.append(current)
            pos = _token68(text, after, current)
    return challenges


_TOKEN68 = re.compile(r"[ \t]+([A-Za-z0-9\-._~+/]+=*)[ \t]*(?=,|$)")


def _token68(text: str, pos: int, challenge: Challenge) -> int:
    """A token68 credential right after the scheme (``Basic dXNlcg==``), if there is one."""
    match = _TOKEN68.match(text, pos)
    if match is None:
        return pos
    challenge.params["token68"] = match.group(1)
    return match.end()


# --------------------------------------------------------------------------------------------
# Token auth


def repository_scope(name: str, *, push: bool = False) -> str:
    """``repository:<name>:pull`` or ``repository:<name>:push,pull`` (docker's order)."""
    return f"repository:{name}:{'push,pull' if push else 'pull'}"


@dataclass
class _Token:
    value: str
    expires_at: float


_TokenKey = tuple[str, str, str]  # (realm, service, scope)


class TokenAuth(httpx.Auth):
    """The docker registry auth flow for a synchronous ``httpx.Client``.

    * A request first carries the newest still-valid token obtained for its origin (or Basic
      credentials, once the origin asked for them), so repeated calls cost one token request.
    * ``401`` + ``Bearer realm=...,service=...,scope=...``: a token for exactly that
      (realm, service, scope) comes from the cache or from the realm, then the request is
      retried once.  ``401`` + ``Basic``: the request is retried with Basic credentials.
    * A retry that still gets ``401``/``403`` raises :class:`NotAuthorizedError` naming the
      registry and ``trustkit login``.  A first answer of ``403`` (no challenge) is returned for
      the caller to map.

    ``registry`` names the registry in messages (default: the request's host); ``kind`` says what
    it is ("trust server"), ``login_host`` which login the credentials came from (default: it).  ``hosts``
    (``host[:port]``) are the only origins whose challenges are answered; without it, any origin a
    request addresses directly.  A ``401`` from another origin, or from a host a redirect led to,
    raises :class:`NotAuthorizedError` and sends nothing there: httpx already strips our
    ``Authorization`` header on a cross-origin redirect, and a token or password fetched for the
    challenger would go to a realm the registry never named.  ``clock`` is ``time.monotonic``
    unless a test injects another.
    """

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        registry: str | None = None,
        hosts: Iterable[str] | None = None,
        client_id: str = "trustkit",
        clock: Callable[[], float] = time.monotonic,
        kind: str = "",
        login_host: str | None = None,
    ) -> None:
        self.credentials = credentials
        self.registry = registry
        # How messages name the server ("trust server" for a Notary server) and the host whose
        # login the credentials are (a trust server may take its registry's login).
        self.kind = kind
        self.login_host = login_host
        # Both schemes: a loopback or insecure registry may be reached over http as well.
        self.hosts = (
            None
            if hosts is None
            else frozenset(_origin(httpx.URL(f"{scheme}://{host}")) for host in hosts for scheme in ("https", "http"))
        )
        self.client_id = client_id
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[_TokenKey, _Token] = {}
        self._origin_token: dict[str, _TokenKey] = {}
        self._origin_basic: set[str] = set()
        self.token_requests = 0  # how many tokens were fetched (observable in tests and --debug)

    # ---- httpx.Auth

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:  # pragma: no cover
        raise RuntimeError("TokenAuth supports only the synchronous httpx.Client")

    def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:  # pragma: no cover
        raise RuntimeError("TokenAuth supports only the synchronous httpx.Client")

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        origin = _origin(request.url)
        owned = self.hosts is None or origin in self.hosts
        sent = self._apply_cached(request, origin) if owned else None
        response = yield request
        if response.status_code != 401:
            return
        registry = self.registry or origin
        if not owned or _origin(response.request.url) != origin:
            raise self._foreign_challenge(response, registry)
        challenges = parse_www_authenticate(response.headers.get_list("www-authenticate"))
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.params.get("realm")), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)

        if bearer is not None:
            scope = bearer.params.get("scope") or request.extensions.get(SCOPE_EXTENSION) or ""
            key = (bearer.params["realm"], bearer.params.get("service", ""), str(scope))
            token = self._cached(key)
            if token is None or token == sent:
                token_request = self._token_request(key, registry)
                token_response = yield token_request
                token = self._store_token(key, token_response, registry)
            request.headers["Authorization"] = f"Bearer {token}"
            retried = yield request
            self._check_answered_by(origin, retried, registry)
            if retried.status_code in (401, 403):
                again = parse_www_authenticate(retried.headers.get_list("www-authenticate"))
                if any(c.params.get("error") == "insufficient_scope" for c in again):
                    # The credentials were good; the token just does not grant this.
                    who = (
                        f'"{self.credentials.username}"'
                        if self.credentials and self.credentials.username
                        else ("anonymous access")
                    )
                    login = self.login_host or registry
                    raise NotAuthorizedError(
                        f"{self._name(registry)} does not allow {who} to do this ({scope or 'this request'})",
                        hint=f"ask an administrator of {self._name(registry)} for that access, or run "
                        f"`trustkit login {login}` (or `docker login {login}`) as a user who has it",
                    )
                raise self._refused(registry, retried.status_code)
            with self._lock:
                self._origin_token[origin] = key
            return

        if basic is not None and self.credentials is not None and self.credentials.has_basic:
            if sent == "basic":  # the credentials we sent are the ones refused
                raise self._refused(registry, 401)
            request.headers["Authorization"] = self._basic_header()
            retried = yield request
            self._check_answered_by(origin, retried, registry)
            if retried.status_code in (401, 403):
                raise self._refused(registry, retried.status_code)
            with self._lock:
                self._origin_basic.add(origin)

    # ---- internals

    def _check_answered_by(self, origin: str, response: httpx.Response, registry: str) -> None:
        """A retry that a redirect took elsewhere: that host's 401 is not the registry's refusal."""
        if response.status_code == 401 and _origin(response.request.url) != origin:
            raise self._foreign_challenge(response, registry)

    def _foreign_challenge(self, response: httpx.Response, registry: str) -> NotAuthorizedError:
        host = _origin(response.request.url)
        how = f"where {registry} redirected the request" if response.history else f"which is not {registry}"
        return NotAuthorizedError(
            f"{host} ({how}) asks for credentials; trustkit sends the credentials for {registry} only to "
            f"{registry} and to the token server it names, so nothing was sent to {host}",
            hint=f"ask the administrator of {registry} to let its storage serve without a login",
        )

    def _apply_cached(self, request: httpx.Request, origin: str) -> str | None:
        """Put the origin's current token (or Basic credentials) on ``request``; return what was sent."""
        if "authorization" in request.headers:
            return None
        with self._lock:
            key = self._origin_token.get(origin)
            basic = origin in self._origin_basic
        token = self._cached(key) if key is not None else None
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token}"
            return token
        if basic and self.credentials is not None and self.credentials.has_basic:
            request.headers["Authorization"] = self._basic_header()
            return "basic"
        return None

    def _cached(self, key: _TokenKey) -> str | None:
        with self._lock:
            entry = self._tokens.get(key)
            if entry is None:
                return None
            if entry.expires_at <= self._clock():
                del self._tokens[key]
                return None
            return entry.value

    def _basic_header(self) -> str:
        if self.credentials is None:  # callers check first; this is the type's guarantee, not a user error
            raise RuntimeError("Basic credentials asked for without credentials")
        pair = f"{self.credentials.username}:{self.credentials.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def _token_request(self, key: _TokenKey, registry: str) -> httpx.Request:
        realm, service, scope = key
        try:
            realm_url = httpx.URL(realm)
        except httpx.InvalidURL:
            raise ServerError(f"{registry} sent an invalid token realm {realm[:200]!r}") from None
        creds = self.credentials
        if realm_url.scheme not in ("https", "http") or (
            realm_url.scheme == "http" and creds is not None and not is_loopback_host(realm_url.host)
        ):
            raise NotAuthorizedError(
                f"{registry} asks for credentials at {realm}, which is not https; refusing to send them there"
            )
        scopes = scope.split()
        self.token_requests += 1
        if creds is not None and creds.identity_token:
            form: dict[str, str | list[str]] = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "service": service,
                "client_id": self.client_id,
            }
            if scopes:
                form["scope"] = " ".join(scopes)
            return httpx.Request("POST", realm_url, data=form, headers=_TOKEN_HEADERS)
        params: list[tuple[str, str]] = []
        if service:
            params.append(("service", service))
        params.extend(("scope", s) for s in scopes)
        headers = dict(_TOKEN_HEADERS)
        if creds is not None and creds.has_basic:
            params.append(("account", creds.username))
            headers["Authorization"] = self._basic_header()
        return httpx.Request("GET", realm_url.copy_merge_params(tuple(params)), headers=headers)

    def _store_token(self, key: _TokenKey, response: httpx.Response, registry: str) -> str:
        # httpx reads every response of an auth flow once more after the flow has seen it, so
        # the body is read its way (response.read()), under a cap.
        try:
            body = read_buffered(response, _TOKEN_BODY_LIMIT, f"the answer of the token server of {registry}")
        except OversizedError:
            raise ServerError(f"the token server of {registry} sent more than {_TOKEN_BODY_LIMIT} bytes") from None
        except TrustkitError as exc:
            raise ServerError(str(exc)) from None
        if response.status_code in (401, 403):
            raise self._refused(registry, response.status_code, token_server=True)
        if response.status_code != 200:
            raise ServerError(f"the token server of {registry} ({key[0]}) answered HTTP {response.status_code}")
        try:
            data = loads_strict(body, what="token response", fold_case=False)
        except EncodingError:
            raise ServerError(f"the token server of {registry} sent a response that is not JSON") from None
        token = None
        if isinstance(data, dict):
            token = data.get("token") or data.get("access_token")
        if not isinstance(token, str) or not token:
            raise ServerError(f"the token server of {registry} sent no token")
        expires_in = data.get("expires_in")
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
            expires_in = _DEFAULT_EXPIRES_IN
        lifetime = max(float(expires_in) - _EXPIRY_MARGIN, 1.0)
        with self._lock:
            self._tokens[key] = _Token(token, self._clock() + lifetime)
        return token

    def _refused(self, registry: str, status: int, *, token_server: bool = False) -> NotAuthorizedError:
        creds = self.credentials
        if creds is None:
            who = "anonymous access"
        elif creds.identity_token:
            who = "the stored identity token"
        else:
            who = f'the credentials of "{creds.username}"'
        name = self._name(registry)
        where = "the token server of " + name if token_server else name
        login = self.login_host or registry
        if creds is None:
            hint = f"run `trustkit login {login}` (or `docker login {login}`)"
        elif login != registry:
            hint = (
                f"those are your login for {login}; if {name} has its own accounts, "
                f"run `trustkit login {registry}` (tried first), else ask its administrator"
            )
        else:
            hint = (
                f"the password stored for {login} is wrong or no longer valid: run `trustkit login {login}` "
                "with the current one, or `trustkit logout " + login + "` to go on anonymously"
            )
        return NotAuthorizedError(f"{where} refused {who} (HTTP {status})", hint=hint)

    def _name(self, registry: str) -> str:
        return f"the {self.kind} {registry}" if self.kind else registry


def _origin(url: httpx.URL) -> str:
    """``host[:port]`` as the user would name the registry."""
    host = url.host
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{host}:{url.port}" if url.port else host
