"""Layer `server`: the built-in token server for a standalone deployment.

HTTP Basic against an htpasswd file (bcrypt only), JWTs in the shape the docker registry token
spec describes, signed with a key from :func:`trustkit.server.auth.keys.generate_token_keypair`,
for the scopes asked and what the user may do.  Failed logins are rate limited per client address
(:class:`trustkit.server.auth.throttle.LoginThrottle`).

Nothing here logs a password, a token or a key.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bcrypt
import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from trustkit.errors import AuthConfigError, InvalidScopeError
from trustkit.server.auth.access import NOTHING, PUBLIC_READER, Access, Principal, basic_credentials, parse_scope
from trustkit.server.auth.htpasswd import bcrypt_cost, load_htpasswd
from trustkit.server.auth.keys import libtrust_key_id, token_signing_key
from trustkit.server.auth.throttle import LoginThrottle, client_address

log = logging.getLogger(__name__)

_MAX_SCOPES = 32  # scopes in one token request
_MIN_TOKEN_TTL = 60  # the token spec: never hand out a token with less than 60 s to live
_BCRYPT_MAX_PASSWORD = 72  # bcrypt reads 72 bytes; htpasswd truncates there, bcrypt>=5 raises instead

BASIC_CHALLENGE = 'Basic realm="trustkit"'
_USER_ACTIONS = frozenset({"pull", "push"})
_ADMIN_ACTIONS = frozenset({"pull", "push", "*", "admin"})
_CATALOG_ACTIONS = frozenset({"*"})


class HtpasswdTokenIssuer:
    """Built-in token server for standalone deployments: HTTP Basic against an htpasswd file
    (bcrypt ``$2y$``/``$2b$`` entries only; other schemes refused with a clear error at load time),
    issues JWTs for the scopes asked, granting per user: pull+push on every repository for any
    valid user; ``*`` (delete, key rotation) and ``admin`` (repository settings) only for users
    listed in ``admins``; ``registry:catalog:*`` only for admins.  With ``public_read`` a request
    without credentials gets a token too, for pull only (notary's read-only commands ask so).

    The htpasswd file is read again when it changes (mtime, size or inode).  If it becomes
    unusable, token requests fail with 503 until it is fixed: a broken edit never leaves a
    removed user able to log in.  bcrypt's ``$2a$`` (what Go's bcrypt writes) is accepted too.
    Failed logins are rate limited per client address by ``throttle`` (429 with ``Retry-After``).
    """

    def __init__(
        self,
        *,
        htpasswd_path: Path,
        issuer: str,
        service: str,
        signing_key_pem: bytes,
        cert_pem: bytes,
        admins: frozenset[str] = frozenset(),
        token_ttl: int = 300,
        public_read: bool = False,
        throttle: LoginThrottle | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not issuer or not service:
            raise AuthConfigError("the token issuer needs a non-empty issuer and service")
        if isinstance(token_ttl, bool) or not isinstance(token_ttl, int) or token_ttl < _MIN_TOKEN_TTL:
            raise AuthConfigError(f"token_ttl must be at least {_MIN_TOKEN_TTL} seconds (the token spec's minimum)")
        self.htpasswd_path = Path(htpasswd_path)
        self.issuer = issuer
        self.service = service
        self.admins = frozenset(admins)
        self.token_ttl = token_ttl
        self.public_read = public_read
        self.throttle = throttle if throttle is not None else LoginThrottle()
        self._clock = clock
        try:
            loaded = serialization.load_pem_private_key(signing_key_pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise AuthConfigError("the token signing key is not an unencrypted PEM private key") from None
        key, self._algorithm = token_signing_key(loaded)
        self._key = key
        try:
            cert = x509.load_pem_x509_certificates(cert_pem)[0]
        except ValueError:
            raise AuthConfigError("the token certificate is not a PEM certificate") from None

        def spki(public: PublicKeyTypes) -> bytes:
            return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

        if spki(cert.public_key()) != spki(key.public_key()):
            raise AuthConfigError("the token certificate is not for the token signing key")
        self.key_id = libtrust_key_id(key.public_key())
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._entries: dict[str, bytes] = {}
        self._broken: str | None = None
        self._dummy_hash: bytes | None = None
        self._reload_if_changed(initial=True)
        unknown = sorted(self.admins - set(self._entries))
        if unknown:
            log.warning("token issuer: admins not in %s: %s", self.htpasswd_path, ", ".join(unknown)[:500])

    # ---- credentials

    def _reload_if_changed(self, *, initial: bool = False) -> dict[str, bytes]:
        """The current entries; raises AuthConfigError while the file is unusable."""
        try:
            st = os.stat(self.htpasswd_path)
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        with self._lock:
            if stamp is not None and stamp == self._stamp:
                if self._broken:
                    raise AuthConfigError(self._broken)
                return self._entries
            try:
                entries = load_htpasswd(self.htpasswd_path)
            except AuthConfigError as exc:
                if initial:
                    raise
                if self._broken != str(exc):
                    log.error("token issuer: htpasswd file unusable, refusing all logins: %s", exc)
                self._broken, self._stamp, self._entries = str(exc), stamp, {}
                raise
            if not initial:
                log.info("token issuer: reloaded %s (%d users)", self.htpasswd_path, len(entries))
            self._entries, self._stamp, self._broken = entries, stamp, None
            self._dummy_hash = self._dummy_for(entries)
            return entries

    def _dummy_for(self, entries: Mapping[str, bytes]) -> bytes:
        """What an unknown user's password is checked against: the costliest entry's own hash
        (its result is thrown away), so the answer for a name that does not exist takes as long
        as the slowest one that does.  Nothing to hash at (re)load, even for a cost-17 entry."""
        if entries:
            return max(entries.values(), key=bcrypt_cost)
        if self._dummy_hash is None:  # no users at all: nothing to tell apart, any cost does
            self._dummy_hash = bcrypt.hashpw(secrets.token_bytes(16).hex().encode(), bcrypt.gensalt(10))
        return self._dummy_hash

    def check_password(self, user: str, password: str) -> bool:
        """bcrypt check (timing-safe; an unknown user costs the same as the costliest entry)."""
        entries = self._reload_if_changed()
        hashed = entries.get(user)
        candidate = password.encode("utf-8")[:_BCRYPT_MAX_PASSWORD]  # what htpasswd hashed
        if hashed is None:
            bcrypt.checkpw(candidate, self._dummy_hash or self._dummy_for(entries))
            return False
        try:
            return bcrypt.checkpw(candidate, hashed)
        except ValueError:
            return False

    async def login(self, request: Request) -> str | Response | None:
        """HTTP Basic against the htpasswd file, rate limited per client address: the user, None
        when the request carries no Basic credentials, or the refusal to send (401 wrong
        credentials, 429 too many failures from this address, 503 unusable htpasswd file)."""
        try:
            self._reload_if_changed()
        except AuthConfigError:
            return error_response(503, "UNAVAILABLE", "the token service is misconfigured; see the server log")
        credentials = basic_credentials(request.headers.get("authorization"))
        if credentials is None:
            return None
        user, password = credentials
        address = client_address(request)
        wait = self.throttle.take(address)
        if wait:
            log.info("login of %r from %s refused: too many failed logins", user[:100], address)
            return error_response(
                429,
                "TOOMANYREQUESTS",
                f"too many failed logins from this address; try again in {wait} s",
                {"Retry-After": str(wait)},
            )
        try:
            ok = await run_in_threadpool(self.check_password, user, password)
        except AuthConfigError:
            self.throttle.give_back(address)
            return error_response(503, "UNAVAILABLE", "the token service is misconfigured; see the server log")
        if not ok:
            log.info("login refused: wrong credentials for user %r from %s", user[:100], address)
            return self._unauthorized()
        self.throttle.give_back(address)
        return user

    # ---- grants and tokens

    def actions_for(self, user: str | None, kind: str, name: str) -> frozenset[str]:
        """What ``user`` (None: anonymous) may do on one resource; tokens and the web page both ask here."""
        if user is None:
            return PUBLIC_READER.actions(kind, name) if self.public_read else NOTHING
        admin = user in self.admins
        if kind == "repository":
            return _ADMIN_ACTIONS if admin else _USER_ACTIONS
        if kind == "registry" and name == "catalog" and admin:
            return _CATALOG_ACTIONS
        return NOTHING

    def principal(self, user: str | None) -> Principal:
        """``user`` (logged in, or None: anonymous) with what the issuer would grant them."""
        return Principal(user, functools.partial(self.actions_for, user))

    def grant(self, user: str | None, requested: Sequence[Access]) -> list[dict[str, Any]]:
        """The ``access`` claim for ``user``: what was asked, intersected with what they may do."""
        merged: dict[tuple[str, str], list[str]] = {}
        for access in requested:
            may = self.actions_for(user, access.type, access.name)
            actions = merged.setdefault((access.type, access.name), [])
            actions.extend(a for a in access.actions if a in may and a not in actions)
        return [{"type": kind, "name": name, "actions": actions} for (kind, name), actions in merged.items() if actions]

    def issue(self, user: str | None, requested: Sequence[Access]) -> tuple[str, int]:
        """A signed JWT for ``user`` (None: an anonymous token, no ``sub``) and the scopes asked;
        returns ``(token, issued_at)``."""
        now = int(self._clock())
        claims = {
            "iss": self.issuer,
            **({"sub": user} if user is not None else {}),
            "aud": self.service,
            "exp": now + self.token_ttl,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_urlsafe(18),
            "access": self.grant(user, requested),
        }
        token = jwt.encode(claims, self._key, algorithm=self._algorithm, headers={"kid": self.key_id, "typ": "JWT"})
        return token, now

    async def endpoint(self, request: Request) -> Response:
        """``GET /auth/token?service=&scope=...&account=``: HTTP Basic in, a token out.

        Answers ``{"token", "access_token", "expires_in", "issued_at"}``; 401 with
        ``WWW-Authenticate: Basic realm="trustkit"`` for wrong credentials, or missing ones unless
        ``public_read`` (then an anonymous pull-only token); 429 with ``Retry-After`` after too
        many failed logins from the address; 400 for a malformed scope or another service; 503
        while the htpasswd file is unusable.
        """
        if request.method != "GET":
            return error_response(405, "UNSUPPORTED", "the token endpoint answers GET only", {"Allow": "GET"})
        user = await self.login(request)
        if isinstance(user, Response):
            return user
        if user is None and not self.public_read:
            return self._unauthorized()

        requested = self._requested(request.query_params, user)
        if isinstance(requested, Response):
            return requested

        token, issued = self.issue(user, requested)
        who = "anonymous" if user is None else repr(user[:100])
        log.info("token issued to %s for %s", who, " ".join(a.scope for a in requested)[:500] or "no scope")
        return JSONResponse(
            {
                "token": token,
                "access_token": token,
                "expires_in": self.token_ttl,
                "issued_at": datetime.fromtimestamp(issued, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    def _requested(self, params: QueryParams, user: str | None) -> list[Access] | Response:
        """The scopes a token request asks for, or the 400 that refuses it (another service,
        another account, too many or malformed scopes)."""
        service = params.get("service")
        if service is not None and service != self.service:
            message = f"this token server issues tokens for service {self.service!r} only"
            return error_response(400, "INVALID_PARAMETERS", message)
        account = params.get("account")
        if account is not None and account != user:
            return error_response(400, "INVALID_PARAMETERS", "account does not match the authenticated user")
        scopes = [part for value in params.getlist("scope") for part in value.split()]
        if len(scopes) > _MAX_SCOPES:
            return error_response(400, "INVALID_PARAMETERS", f"at most {_MAX_SCOPES} scopes per token request")
        try:
            return [parse_scope(scope) for scope in scopes]
        except InvalidScopeError as exc:
            return error_response(400, "INVALID_PARAMETERS", exc.message)

    @staticmethod
    def _unauthorized() -> JSONResponse:
        return error_response(401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": BASIC_CHALLENGE})


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """notary's error envelope, never cached (the token endpoint and the web page answer with it)."""
    return JSONResponse(
        {"errors": [{"code": code, "message": message}]},
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )
