"""Layer `server`: verifying registry bearer tokens, as docker/distribution's token access
controller does (what notary-server runs; wire spec §7.7, issue 5 item 6).

``Authorization: Bearer <JWT>``: the signature is checked against a root certificate bundle (an
``x5c`` chain that ends in the bundle, or a ``kid`` that is the libtrust key ID of a bundle
certificate's key, or an embedded ``jwk`` whose key is in the bundle), then ``iss``, ``aud``,
``exp``/``nbf`` (with leeway) and the ``access`` claim against what the route needs.  A refusal
carries the ``WWW-Authenticate: Bearer ...`` challenge and notary's ``UNAUTHORIZED`` detail.

The header and the claims are read by :func:`trustkit.encoding.loads_strict`, as trust metadata
is: duplicate members, members that differ only in case (Go matches them case-insensitively),
NaN/Infinity, fractions and integers beyond 2^53 are refused.  distribution reads ``exp``,
``nbf`` and ``iat`` as Go ``int64`` and refuses fractions too.  The ``x5c`` chain is walked by
:func:`trustkit.keys.certs.verified_chain`, the one strict chain walk.

Nothing here logs a token or a key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from trustkit.encoding import loads_strict
from trustkit.errors import AuthConfigError, EncodingError, KeyFormatError
from trustkit.keys.certs import MAX_CHAIN_LENGTH, verified_chain
from trustkit.server.auth.access import NOTHING, Access, Decision, Principal, bearer_token
from trustkit.server.auth.keys import libtrust_key_id, verify_algorithms

log = logging.getLogger(__name__)

_MAX_TOKEN_CHARS = 32 * 1024  # an x5c chain of three RSA-4096 certificates is ~10 KiB
_TOKEN_CACHE_SIZE = 4096  # verified tokens remembered (by SHA-256), so a request costs no signature check


class _Rejected(Exception):
    """A token that is not acceptable; the message is for logs and never holds the token."""


def _json_object(segment: str, what: str) -> dict[str, Any]:
    """A base64url JWS segment holding one JSON object, read strictly."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", segment) or len(segment) % 4 == 1:
        raise _Rejected(f"the {what} is not base64url")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    try:
        value = loads_strict(raw, what=f"the {what}")
    except EncodingError as exc:
        raise _Rejected(exc.message[:200]) from None
    if not isinstance(value, dict):
        raise _Rejected(f"the {what} is not a JSON object")
    return value


def _integer(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class _Verified:
    """What a token proved, kept (by the token's hash) so the next request skips the crypto."""

    subject: str | None
    grants: Mapping[tuple[str, str], frozenset[str]]
    not_before: float  # nbf (0 when absent); checked with leeway
    expires: float  # exp; checked with leeway
    chain_from: float  # the x5c chain's latest notBefore (-inf without a chain); checked exactly
    chain_until: float  # its earliest notAfter (+inf without a chain)


class TokenAuthorizer:
    """docker/distribution's token access controller (what notary-server runs), for one service.

    ``root_certs_pem`` is the ``rootcertbundle``: a token's signing key is trusted when the JWT
    header's ``x5c`` chain (base64 DER, leaf first) leads to one of these certificates, every
    certificate valid now; or when its ``kid`` (or embedded ``jwk``) names the key of one of
    them by libtrust key ID.  ``clock`` returns Unix seconds; ``leeway`` (seconds) widens
    ``exp``/``nbf``.
    """

    def __init__(
        self,
        *,
        realm: str,
        service: str,
        issuer: str,
        root_certs_pem: bytes,
        clock: Callable[[], float] = time.time,
        leeway: int = 30,
    ) -> None:
        for what, value in (("realm", realm), ("service", service), ("issuer", issuer)):
            if not isinstance(value, str) or not value:
                raise AuthConfigError(f"token auth needs a non-empty {what}")
        if leeway < 0:
            raise AuthConfigError("token auth leeway must not be negative")
        self.realm = realm
        self.service = service
        self.issuer = issuer
        self._clock = clock
        self._leeway = leeway
        try:
            roots = x509.load_pem_x509_certificates(root_certs_pem)
        except ValueError:
            raise AuthConfigError(
                "the token root certificate bundle holds no PEM certificate",
                hint="give the certificate(s) of the token issuer, as notary-server's rootcertbundle",
            ) from None
        self._roots = roots
        self._trusted_keys: dict[str, Any] = {}
        for cert in roots:
            try:
                key = cert.public_key()
            except (ValueError, UnsupportedAlgorithm):
                continue  # a key type we cannot use; it can still anchor an x5c chain
            self._trusted_keys[libtrust_key_id(key)] = key
        self._cache: OrderedDict[bytes, _Verified] = OrderedDict()
        self._lock = threading.Lock()

    # ---- the Authorizer protocol

    def authorize(self, authorization: str | None, required: list[Access]) -> Decision:
        token = bearer_token(authorization)
        if token is None:
            return self.refuse(required, None, None)
        try:
            principal = self._principal(token)
        except _Rejected as exc:
            log.info("bearer token refused: %s", exc)
            return self.refuse(required, "invalid_token", None)
        missing = [
            (access, action)
            for access in required
            for action in access.actions
            if not principal.holds(access.type, access.name, action)
        ]
        if missing:
            log.info(
                "token of %r lacks %s",
                principal.subject,
                " ".join(f"{a.type}:{a.name}:{action}" for a, action in missing)[:500],
            )
            return self.refuse(required, "insufficient_scope", principal.subject)
        return Decision(allowed=True, subject=principal.subject)

    def principal(self, authorization: str | None) -> Principal | None:
        """Who the bearer token in ``authorization`` names and what it grants; None without a
        valid one (the reason is logged)."""
        token = bearer_token(authorization)
        if token is None:
            return None
        try:
            return self._principal(token)
        except _Rejected as exc:
            log.info("bearer token refused: %s", exc)
            return None

    def refuse(self, required: Sequence[Access], error: str | None = None, subject: str | None = None) -> Decision:
        """The refusal for a request that needed ``required``: the ``Bearer`` challenge (naming
        ``error``, e.g. ``invalid_token``) and notary's ``UNAUTHORIZED`` detail."""
        parts = [f"realm={_quote(self.realm)}", f"service={_quote(self.service)}"]
        scope = _scope_param(required)
        if scope:
            parts.append(f"scope={_quote(scope)}")
        if error:
            parts.append(f"error={_quote(error)}")
        detail = [
            {"Type": access.type, "Class": "", "Name": access.name, "Action": action}
            for access in required
            for action in access.actions
        ]
        return Decision(allowed=False, subject=subject, challenge="Bearer " + ",".join(parts), detail=detail)

    # ---- internals

    def _principal(self, token: str) -> Principal:
        verified = self._verify(token, self._clock())
        grants = verified.grants
        return Principal(verified.subject, lambda kind, name: grants.get((kind, name), NOTHING))

    def _verify(self, token: str, now: float) -> _Verified:
        if len(token) > _MAX_TOKEN_CHARS:
            raise _Rejected("token too large")
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        with self._lock:
            cached = self._cache.get(digest)
            if cached is not None:
                self._cache.move_to_end(digest)
        if cached is None:
            cached = self._verify_uncached(token, now)
            with self._lock:
                self._cache[digest] = cached
                while len(self._cache) > _TOKEN_CACHE_SIZE:
                    self._cache.popitem(last=False)
        if now > cached.expires + self._leeway:
            raise _Rejected(f"token of {cached.subject!r} has expired")
        if now + self._leeway < cached.not_before:
            raise _Rejected(f"token of {cached.subject!r} is not valid yet")
        if not cached.chain_from <= now <= cached.chain_until:
            raise _Rejected(f"a certificate of the x5c chain in the token of {cached.subject!r} is not valid now")
        return cached

    def _verify_uncached(self, token: str, now: float) -> _Verified:
        segments = token.split(".")
        if len(segments) != 3:
            raise _Rejected("not a JWS compact token")
        header = _json_object(segments[0], "token header")
        claims = _json_object(segments[1], "token claims")
        if "crit" in header or "b64" in header:
            raise _Rejected("token header uses crit/b64, which this server does not support")
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise _Rejected("token header has no alg")

        key, chain_from, chain_until = self._signing_key(header, now)
        if alg not in verify_algorithms(key):
            raise _Rejected(f"token alg {alg[:20]!r} does not fit the signing key")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", segments[2]):
            raise _Rejected("the token signature is not base64url")
        try:
            jwt.PyJWS().decode_complete(token, key=key, algorithms=[alg])
        except (jwt.PyJWTError, ValueError, TypeError):
            raise _Rejected("token signature does not verify") from None

        if claims.get("iss") != self.issuer:
            raise _Rejected("token issuer is not the configured one")
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or self.service not in [a for a in audiences if isinstance(a, str)]:
            raise _Rejected("token audience does not name this service")
        expires = claims.get("exp")
        if not _integer(expires):
            raise _Rejected("token has no integer exp")
        not_before = claims.get("nbf", 0)
        if not _integer(not_before):
            raise _Rejected("token nbf is not an integer")
        subject = claims.get("sub")
        if subject is not None and not isinstance(subject, str):
            raise _Rejected("token sub is not a string")
        return _Verified(
            subject=subject,
            grants=_grants_of(claims.get("access")),
            not_before=float(not_before),
            expires=float(expires),
            chain_from=chain_from,
            chain_until=chain_until,
        )

    def _signing_key(self, header: Mapping[str, Any], now: float) -> tuple[Any, float, float]:
        """The trusted key that must have signed the token, and the window its chain is valid in."""
        if "x5c" in header:
            return self._key_from_chain(header["x5c"], now)
        if "jwk" in header:
            try:
                embedded = jwt.PyJWK(header["jwk"]).key
            except (jwt.PyJWTError, TypeError, ValueError, KeyError):
                raise _Rejected("token header jwk is not a usable public key") from None
            if not hasattr(embedded, "public_bytes") or hasattr(embedded, "private_bytes"):
                raise _Rejected("token header jwk is not a public key")
            embedded_id = libtrust_key_id(embedded)
            if embedded_id not in self._trusted_keys:
                raise _Rejected("token header jwk is not a key of the root bundle")
            return self._trusted_keys[embedded_id], float("-inf"), float("inf")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise _Rejected("token header has neither x5c nor kid")
        key = self._trusted_keys.get(kid)
        if key is None:
            raise _Rejected(f"token kid {kid[:80]!r} is not a key of the root bundle")
        # distribution does not look at the bundle certificate's dates on this path; neither do we
        return key, float("-inf"), float("inf")

    def _key_from_chain(self, x5c: Any, now: float) -> tuple[Any, float, float]:
        """The leaf's key, once the chain leads to the bundle, and the window the chain is valid in."""
        if (
            not isinstance(x5c, list)
            or not 1 <= len(x5c) <= MAX_CHAIN_LENGTH
            or not all(isinstance(c, str) for c in x5c)
        ):
            raise _Rejected(f"token header x5c must be a list of 1 to {MAX_CHAIN_LENGTH} base64 certificates")
        certs: list[x509.Certificate] = []
        for text in x5c:
            try:
                certs.append(x509.load_der_x509_certificate(base64.b64decode(text, validate=True)))
            except (binascii.Error, ValueError):
                raise _Rejected("token header x5c holds something that is not a DER certificate") from None
        try:
            chain = verified_chain(certs[0], certs[1:], self._roots, now=datetime.fromtimestamp(now, UTC))
        except KeyFormatError as exc:
            raise _Rejected(f"the x5c chain does not lead to a root bundle certificate: {exc.message}") from None
        try:
            key = certs[0].public_key()
        except (ValueError, UnsupportedAlgorithm):
            raise _Rejected("the x5c leaf holds a key that cannot be used") from None
        return (
            key,
            max(c.not_valid_before_utc.timestamp() for c in chain),
            min(c.not_valid_after_utc.timestamp() for c in chain),
        )


def _grants_of(access: Any) -> dict[tuple[str, str], frozenset[str]]:
    if access is None:
        return {}
    if not isinstance(access, list):
        raise _Rejected("token access claim is not a list")
    grants: dict[tuple[str, str], set[str]] = {}
    for entry in access:
        if not isinstance(entry, dict):
            raise _Rejected("token access entry is not an object")
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        klass = entry.get("class", "")
        if not isinstance(kind, str) or not isinstance(name, str) or not isinstance(klass, str):
            raise _Rejected("token access entry needs string type and name")
        if actions is None:
            actions = []
        if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            raise _Rejected("token access actions are not a list of strings")
        if klass:
            continue  # a resource class (e.g. "plugin") never matches the class-less resources here
        grants.setdefault((kind, name), set()).update(actions)
    return {key: frozenset(value) for key, value in grants.items()}


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _scope_param(required: Iterable[Access]) -> str:
    """distribution's scope parameter: one ``type:name:actions`` per resource, space-separated."""
    merged: dict[tuple[str, str], list[str]] = {}
    for access in required:
        actions = merged.setdefault((access.type, access.name), [])
        actions.extend(a for a in access.actions if a not in actions)
    return " ".join(f"{kind}:{name}:{','.join(actions)}" for (kind, name), actions in merged.items())
