"""Layer `server`: who may do what on the trust server (wire spec §7.7, issue 5 item 6).

* :class:`TokenAuthorizer` is the docker registry token access controller that notary-server
  uses: ``Authorization: Bearer <JWT>``, the signature checked against a root certificate bundle
  (an ``x5c`` chain that ends in the bundle, or a ``kid`` that is the libtrust key ID of a bundle
  certificate's key, or an embedded ``jwk`` whose key is in the bundle), then ``iss``, ``aud``,
  ``exp``/``nbf`` (with leeway) and the ``access`` claim against what the route needs.  A refusal
  carries the ``WWW-Authenticate: Bearer ...`` challenge and notary's ``UNAUTHORIZED`` detail.
* :class:`HtpasswdTokenIssuer` is a small token server for a standalone deployment: HTTP Basic
  against an htpasswd file (bcrypt only), JWTs in the shape the docker registry token spec
  describes, signed with a key from :func:`generate_token_keypair`.
* :class:`NoAuth` lets everything through (``auth`` switched off on purpose).
* :class:`PublicRead` (``--public-read``) lets a request without credentials pull every
  repository, as the issuer's anonymous tokens do; the rest stays with the wrapped authorizer.
* :class:`PageAccess` applies the same rules to the web page: a :class:`Principal` from a bearer
  token, an htpasswd login (HTTP Basic, which a browser answers) or nobody, and what it may pull.
* :class:`LoginThrottle` slows down password guessing: a token bucket of failed logins per
  client address, shared by the token endpoint and the web page.

Actions: ``pull`` and ``push`` on a repository, ``*`` for delete and key rotation (it grants
every action but ``admin``), ``admin`` for repository settings, and ``registry:catalog:*`` for
the routes that name no GUN.

Nothing here logs a password, a token or a key.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import ipaddress
import json
import logging
import math
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import bcrypt
import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtensionOID, NameOID
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from trustkit.errors import AuthConfigError, InvalidScopeError, TrustkitError

__all__ = [
    "Access",
    "AuthConfigError",
    "Authorizer",
    "Decision",
    "EVERYONE",
    "HtpasswdTokenIssuer",
    "InvalidScopeError",
    "LoginThrottle",
    "NoAuth",
    "PageAccess",
    "Principal",
    "PUBLIC_READER",
    "PublicRead",
    "TokenAuthorizer",
    "client_address",
    "generate_token_keypair",
    "libtrust_key_id",
    "parse_scope",
]

log = logging.getLogger(__name__)

Clock = Callable[[], float]

_MAX_TOKEN_CHARS = 32 * 1024  # an x5c chain of three RSA-4096 certificates is ~10 KiB
_MAX_CHAIN = 8  # certificates in an x5c header
_CHAIN_BUDGET = 32  # signature checks spent building one x5c chain
_MAX_SCOPES = 32  # scopes in one token request
_MAX_SCOPE_CHARS = 1024
_TOKEN_CACHE_SIZE = 4096  # verified tokens remembered (by SHA-256), so a request costs no signature check
_MIN_TOKEN_TTL = 60  # the token spec: never hand out a token with less than 60 s to live
_BCRYPT_MAX_PASSWORD = 72  # bcrypt reads 72 bytes; htpasswd truncates there, bcrypt>=5 raises instead

_ACTION = re.compile(r"[a-z]+|\*")
_TYPE = re.compile(r"[a-z0-9]+(?:\([a-z0-9]+\))?")
_BAD_NAME_CHARS = re.compile(r'[\s"\\\x00-\x1f\x7f]')


# --------------------------------------------------------------------------------------------
# What is asked for and what is decided


@dataclass(frozen=True)
class Access:
    """One resource and the actions wanted on it, e.g. ``repository``, a GUN, ``("push", "pull")``."""

    type: str  # "repository" or "registry"
    name: str  # a GUN, or "catalog"
    actions: tuple[str, ...]  # ("pull",), ("push", "pull"), ("*",), ("admin",)

    def __post_init__(self) -> None:
        if not isinstance(self.actions, tuple):  # a list is a common slip; keep the object hashable
            object.__setattr__(self, "actions", tuple(self.actions))

    @property
    def scope(self) -> str:
        """``<type>:<name>:<actions comma-joined>``, as in a challenge or a token request."""
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


@dataclass(frozen=True)
class Decision:
    """What :meth:`Authorizer.authorize` decided.

    When not allowed, ``challenge`` is the whole ``WWW-Authenticate`` value to send with the
    ``401`` and ``detail`` is notary's ``UNAUTHORIZED`` detail (one entry per action).
    """

    allowed: bool
    subject: str | None = None  # who (for logs)
    challenge: str | None = None  # full WWW-Authenticate header value when not allowed
    detail: list[dict] | None = None  # [{"Type","Class","Name","Action"}...]


@runtime_checkable
class Authorizer(Protocol):
    def authorize(self, authorization: str | None, required: list[Access]) -> Decision: ...


_NOTHING: frozenset[str] = frozenset()
_PULL = frozenset({"pull"})


@dataclass(frozen=True)
class Principal:
    """Who a request comes from (``subject`` None: nobody logged in) and, through ``actions``,
    what they hold on each ``(type, name)`` resource: a token's ``access`` claim, what the issuer
    grants an htpasswd user, or what anyone may do.  The API and the web page decide with it."""

    subject: str | None
    actions: Callable[[str, str], frozenset[str]]

    def holds(self, kind: str, name: str, action: str) -> bool:
        return _granted(self.actions(kind, name), action)

    def may(self, access: Access) -> bool:
        return all(self.holds(access.type, access.name, action) for action in access.actions)


def _public_actions(kind: str, name: str) -> frozenset[str]:
    return _PULL if kind == "repository" else _NOTHING


EVERYONE = Principal(None, lambda kind, name: frozenset({"*", "admin"}))  # --auth none
PUBLIC_READER = Principal(None, _public_actions)  # anonymous under --public-read: pull, nothing else


class NoAuth:
    """Allows everything.  For a server that runs without auth on purpose."""

    def authorize(self, authorization: str | None, required: list[Access]) -> Decision:
        return Decision(allowed=True)


class PublicRead:
    """``--public-read``: a request without credentials may pull every repository (what the
    built-in issuer grants an anonymous token too); anything else is decided by ``inner``.
    Credentials that are sent are always checked: a wrong or expired token is still refused."""

    def __init__(self, inner: Authorizer) -> None:
        self.inner = inner

    def authorize(self, authorization: str | None, required: list[Access]) -> Decision:
        if not authorization and required and all(PUBLIC_READER.may(access) for access in required):
            return Decision(allowed=True)
        return self.inner.authorize(authorization, required)


def parse_scope(scope: str) -> Access:
    """``repository:docker.io/library/alpine:push,pull`` -> :class:`Access`.

    The type ends at the first ``:`` and the actions start after the last one, so a name may
    hold a registry port (``repository:localhost:5000/app:pull``).  Actions are lower-case words
    or ``*``; duplicates are dropped, order kept.

    Raises:
        InvalidScopeError: anything else (also a ``ValueError``).
    """
    if not isinstance(scope, str) or len(scope) > _MAX_SCOPE_CHARS:
        raise InvalidScopeError("a scope must be a string of at most 1024 characters")
    kind, sep1, rest = scope.partition(":")
    name, sep2, actions_text = rest.rpartition(":")
    shown = scope[:100]
    if not sep1 or not sep2:
        raise InvalidScopeError(f"scope {shown!r} is not <type>:<name>:<actions>")
    if not _TYPE.fullmatch(kind):
        raise InvalidScopeError(f"scope {shown!r} has an invalid resource type {kind[:40]!r}")
    if not name or _BAD_NAME_CHARS.search(name):
        raise InvalidScopeError(f"scope {shown!r} has an empty name or one with blanks, quotes or control characters")
    actions: list[str] = []
    for action in actions_text.split(","):
        if not _ACTION.fullmatch(action):
            raise InvalidScopeError(f"scope {shown!r} has an invalid action {action[:40]!r}")
        if action not in actions:
            actions.append(action)
    return Access(kind, name, tuple(actions))


# --------------------------------------------------------------------------------------------
# Keys


PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


def libtrust_key_id(public_key: Any) -> str:
    """docker's libtrust key ID: base32 of the first 240 bits of SHA-256(DER SubjectPublicKeyInfo),
    in 12 groups of 4 joined by ``:`` (``PYYO:TEWU:V7JH:...``).  The ``kid`` of a registry token.
    A private key is named by its public half."""
    if not hasattr(public_key, "public_bytes") and hasattr(public_key, "public_key"):
        public_key = public_key.public_key()
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii")  # 30 bytes: 48 chars, no padding
    return ":".join(text[i : i + 4] for i in range(0, len(text), 4))


def _algorithms_for(key: Any) -> frozenset[str]:
    """The JWS algorithms a key may verify; the token's ``alg`` must be one of them."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(key.curve.name)
        return frozenset({alg}) if alg else frozenset()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            return frozenset()
        return frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
    if isinstance(key, ed25519.Ed25519PublicKey):
        return frozenset({"EdDSA"})
    return frozenset()


def _signing_algorithm(private_key: Any) -> str:
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        alg = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(private_key.curve.name)
        if alg:
            return alg
    elif isinstance(private_key, rsa.RSAPrivateKey) and private_key.key_size >= 2048:
        return "RS256"
    elif isinstance(private_key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise AuthConfigError(
        "the token signing key must be ECDSA P-256/P-384/P-521, RSA of at least 2048 bits, or Ed25519",
        hint="create one with `trustkit server` or generate_token_keypair()",
    )


def generate_token_keypair(common_name: str) -> tuple[bytes, bytes]:
    """A key and certificate for :class:`HtpasswdTokenIssuer`.

    Returns ``(private key PEM, certificate PEM)``: an ECDSA P-256 key as unencrypted PKCS#8
    (the caller stores it with mode 0600) and a self-signed certificate for it, CN=common_name,
    valid for ten years.  The certificate goes into the :class:`TokenAuthorizer` root bundle.
    """
    if not common_name or len(common_name) > 64:
        raise AuthConfigError("the token certificate's common name must be 1 to 64 characters")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


# --------------------------------------------------------------------------------------------
# Token verification


class _Rejected(Exception):
    """A token that is not acceptable; the message is for logs and never holds the token."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Rejected(f"duplicate JSON member {key[:40]!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise _Rejected(f"{name} is not JSON")


def _json_object(segment: str, what: str) -> dict[str, Any]:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", segment) or len(segment) % 4 == 1:
        raise _Rejected(f"the {what} is not base64url")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    try:
        value = json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _Rejected(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise _Rejected(f"the {what} is not a JSON object")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_KNOWN_CRITICAL = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    }
)


def _extension(cert: x509.Certificate, ext_type: type) -> Any:
    try:
        return cert.extensions.get_extension_for_class(ext_type).value
    except x509.ExtensionNotFound:
        return None


def _check_certificate(cert: x509.Certificate, now: float) -> None:
    """Valid now, and no critical extension this code does not enforce (name constraints...)."""
    if not cert.not_valid_before_utc.timestamp() <= now <= cert.not_valid_after_utc.timestamp():
        raise _Rejected(f"certificate {_name(cert)!r} is not valid now")
    try:
        extensions = list(cert.extensions)
    except ValueError:
        raise _Rejected("a certificate in the chain has malformed extensions") from None
    for ext in extensions:
        if ext.critical and ext.oid not in _KNOWN_CRITICAL:
            raise _Rejected(f"a certificate in the chain has an unsupported critical extension {ext.oid.dotted_string}")


def _name(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string()[:80]
    except ValueError:
        return "(unreadable name)"


def _may_issue(cert: x509.Certificate, below: int) -> bool:
    """Whether ``cert`` may sign certificates, with ``below`` CA certificates under it before the leaf."""
    constraints = _extension(cert, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        return False
    if constraints.path_length is not None and below > constraints.path_length:
        return False
    usage = _extension(cert, x509.KeyUsage)
    return usage is None or usage.key_cert_sign


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


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
        clock: Clock = time.time,
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
        self._root_der = {cert.public_bytes(serialization.Encoding.DER) for cert in roots}
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
        token = _bearer_token(authorization)
        if token is None:
            return self._refuse(required, None, None)
        try:
            principal = self._principal(token)
        except _Rejected as exc:
            log.info("bearer token refused: %s", exc)
            return self._refuse(required, "invalid_token", None)
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
            return self._refuse(required, "insufficient_scope", principal.subject)
        return Decision(allowed=True, subject=principal.subject)

    def principal(self, authorization: str | None) -> Principal | None:
        """Who the bearer token in ``authorization`` names and what it grants; None without a
        valid one (the reason is logged)."""
        token = _bearer_token(authorization)
        if token is None:
            return None
        try:
            return self._principal(token)
        except _Rejected as exc:
            log.info("bearer token refused: %s", exc)
            return None

    # ---- internals

    def _principal(self, token: str) -> Principal:
        verified = self._verify(token, self._clock())
        grants = verified.grants
        return Principal(verified.subject, lambda kind, name: grants.get((kind, name), _NOTHING))

    def _refuse(self, required: Sequence[Access], error: str | None, subject: str | None) -> Decision:
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
        if alg not in _algorithms_for(key):
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
        if not _number(expires):
            raise _Rejected("token has no numeric exp")
        not_before = claims.get("nbf", 0)
        if not _number(not_before):
            raise _Rejected("token nbf is not a number")
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
            kid = libtrust_key_id(embedded)
            if kid not in self._trusted_keys:
                raise _Rejected("token header jwk is not a key of the root bundle")
            return self._trusted_keys[kid], float("-inf"), float("inf")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise _Rejected("token header has neither x5c nor kid")
        key = self._trusted_keys.get(kid)
        if key is None:
            raise _Rejected(f"token kid {kid[:80]!r} is not a key of the root bundle")
        # distribution does not look at the bundle certificate's dates on this path; neither do we
        return key, float("-inf"), float("inf")

    def _key_from_chain(self, x5c: Any, now: float) -> tuple[Any, float, float]:
        if not isinstance(x5c, list) or not 1 <= len(x5c) <= _MAX_CHAIN or not all(isinstance(c, str) for c in x5c):
            raise _Rejected(f"token header x5c must be a list of 1 to {_MAX_CHAIN} base64 certificates")
        certs: list[x509.Certificate] = []
        for text in x5c:
            try:
                certs.append(x509.load_der_x509_certificate(base64.b64decode(text, validate=True)))
            except (binascii.Error, ValueError):
                raise _Rejected("token header x5c holds something that is not a DER certificate") from None
        try:
            chain = self._chain(certs[0], certs[1:], now)
            key = certs[0].public_key()
            return (
                key,
                max(c.not_valid_before_utc.timestamp() for c in chain),
                min(c.not_valid_after_utc.timestamp() for c in chain),
            )
        except (ValueError, TypeError, UnsupportedAlgorithm):  # a certificate cryptography parses lazily
            raise _Rejected("the x5c chain holds a certificate that cannot be used") from None

    def _chain(
        self, leaf: x509.Certificate, intermediates: list[x509.Certificate], now: float
    ) -> list[x509.Certificate]:
        """leaf -> ... -> a bundle certificate, each one valid now and signed by the next."""
        _check_certificate(leaf, now)
        budget = [_CHAIN_BUDGET]  # signature checks; a crafted pool of look-alike CAs cannot make this explode

        def extend(path: list[x509.Certificate], pool: list[x509.Certificate]) -> list[x509.Certificate] | None:
            current = path[-1]
            if current.public_bytes(serialization.Encoding.DER) in self._root_der:
                return path
            if len(path) > _MAX_CHAIN:
                return None
            below = len(path) - 1  # CA certificates between the candidate issuer and the leaf
            for candidate in [*self._roots, *pool]:
                if candidate.subject != current.issuer or candidate in path:
                    continue
                if not _may_issue(candidate, below):
                    continue
                budget[0] -= 1
                if budget[0] < 0:
                    raise _Rejected("the x5c chain is too tangled to verify")
                if not _issued_by(current, candidate):
                    continue
                try:
                    _check_certificate(candidate, now)
                except _Rejected:
                    continue
                found = extend([*path, candidate], [c for c in pool if c is not candidate])
                if found is not None:
                    return found
            return None

        chain = extend([leaf], intermediates)
        if chain is None:
            raise _Rejected("the x5c chain does not lead to a certificate of the root bundle")
        return chain


def _bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or " " in value:
        return None
    return value


def _granted(actions: frozenset[str], action: str) -> bool:
    if action == "admin":
        return "admin" in actions  # never implied by "*"
    return action in actions or "*" in actions


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


# --------------------------------------------------------------------------------------------
# Failed logins per client address


def client_address(request: Request) -> str:
    """The address a login attempt is counted against: the peer's IP, or its /64 for IPv6 (one
    host usually holds a whole /64, so single addresses would cost an attacker nothing)."""
    host = request.client.host if request.client else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class LoginThrottle:
    """A token bucket of failed logins per client address: ``burst`` attempts at once, then one
    more every ``interval`` seconds.  An attempt takes its token *before* the password is checked,
    so concurrent guesses cannot overrun the bucket, and a right password gives it back.

    At most ``max_addresses`` buckets are kept (the least recently used goes first); a bucket that
    has filled up again is dropped, since it says nothing a missing one does not.  ``burst`` 0
    turns the limit off.  Each server process keeps its own table.
    """

    def __init__(self, burst: int = 10, interval: float = 6.0, *, max_addresses: int = 10_000,
                 clock: Clock = time.monotonic) -> None:
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
            raise AuthConfigError("the login burst must be a whole number of attempts, 0 or more")
        if not interval > 0 or max_addresses < 1:
            raise AuthConfigError("the login interval must be positive and the address table hold at least one")
        self.burst = burst
        self.interval = float(interval)
        self.max_addresses = max_addresses
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, address: str) -> int:
        """Spend one attempt: 0 when it may go ahead, else the seconds until one is available."""
        if not self.burst:
            return 0
        now = self._clock()
        with self._lock:
            tokens = self._level(address, now)
            wait = 0 if tokens >= 1 else max(1, math.ceil((1 - tokens) * self.interval))
            self._buckets[address] = (tokens - 1 if not wait else tokens, now)
            self._buckets.move_to_end(address)
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)
            return wait

    def give_back(self, address: str) -> None:
        """The attempt succeeded: it does not count."""
        now = self._clock()
        with self._lock:
            if address not in self._buckets:
                return
            tokens = self._level(address, now) + 1
            if tokens >= self.burst:
                del self._buckets[address]
            else:
                self._buckets[address] = (tokens, now)

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, address: str, now: float) -> float:
        found = self._buckets.get(address)
        if found is None:
            return float(self.burst)
        tokens, then = found
        return min(float(self.burst), tokens + max(0.0, now - then) / self.interval)


# --------------------------------------------------------------------------------------------
# The built-in token issuer


_BCRYPT_PREFIXES = ("$2y$", "$2b$", "$2a$")
_SCHEME_NAMES = (
    ("$apr1$", "Apache MD5 (htpasswd -m)"),
    ("{SHA}", "SHA-1 (htpasswd -s)"),
    ("$1$", "MD5-crypt"),
    ("$5$", "SHA-256-crypt"),
    ("$6$", "SHA-512-crypt"),
    ("$2x$", "bcrypt $2x$ (the buggy crypt_blowfish variant)"),
    ("$argon2", "argon2"),
)


def _load_htpasswd(path: Path) -> dict[str, bytes]:
    """``user:bcrypt-hash`` per line; blank lines and ``#`` comments skipped.

    Raises:
        AuthConfigError: unreadable file, a malformed line, a duplicate user, or a password hash
            that is not bcrypt (the message names the line and the scheme, never the hash).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AuthConfigError(
            f"htpasswd file {path} does not exist", hint="create it with `htpasswd -B -c FILE USER`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthConfigError(f"cannot read htpasswd file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    fix = "recreate the entry with bcrypt: `htpasswd -B FILE USER`"
    entries: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user or not hashed:
            raise AuthConfigError(f"{path} line {number} is not user:password-hash", hint=fix)
        if user in entries:
            raise AuthConfigError(f"{path} line {number}: user {user!r} appears twice", hint="keep one entry per user")
        if not hashed.startswith(_BCRYPT_PREFIXES):
            scheme = next((label for prefix, label in _SCHEME_NAMES if hashed.startswith(prefix)), None)
            what = f"a {scheme} hash" if scheme else "not a bcrypt hash (crypt, plain text or unknown)"
            raise AuthConfigError(
                f"{path} line {number}: the password of {user!r} is {what}; only bcrypt ($2y$, $2b$ or $2a$) is accepted",
                hint=fix,
            )
        if not re.fullmatch(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}", hashed):
            raise AuthConfigError(f"{path} line {number}: the bcrypt hash of {user!r} is malformed", hint=fix)
        entries[user] = hashed.encode("ascii")
    return entries


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep or not user:
        return None
    return user, password


def _error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"code": code, "message": message}]},
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def _bcrypt_cost(hashed: bytes) -> int:
    return int(hashed[4:6])  # "$2y$12$...": checked by _load_htpasswd


_BASIC_CHALLENGE = 'Basic realm="trustkit"'
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
        clock: Clock = time.time,
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
            key = serialization.load_pem_private_key(signing_key_pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise AuthConfigError("the token signing key is not an unencrypted PEM private key") from None
        self._algorithm = _signing_algorithm(key)
        self._key = key
        try:
            cert = x509.load_pem_x509_certificates(cert_pem)[0]
        except ValueError:
            raise AuthConfigError("the token certificate is not a PEM certificate") from None

        def spki(public: Any) -> bytes:
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
                entries = _load_htpasswd(self.htpasswd_path)
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
            return max(entries.values(), key=_bcrypt_cost)
        if self._dummy_hash is None:  # no users at all: nothing to tell apart, any cost does
            self._dummy_hash = bcrypt.hashpw(secrets.token_bytes(16).hex().encode(), bcrypt.gensalt(10))
        return self._dummy_hash

    def check_password(self, user: str, password: str) -> bool:
        """bcrypt check (timing-safe; an unknown user costs the same as the costliest entry)."""
        entries = self._reload_if_changed()
        hashed = entries.get(user)
        candidate = password.encode("utf-8")[:_BCRYPT_MAX_PASSWORD]  # what htpasswd hashed
        if hashed is None:
            assert self._dummy_hash is not None
            bcrypt.checkpw(candidate, self._dummy_hash)
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
            return _error(503, "UNAVAILABLE", "the token service is misconfigured; see the server log")
        credentials = _basic_credentials(request.headers.get("authorization"))
        if credentials is None:
            return None
        user, password = credentials
        address = client_address(request)
        wait = self.throttle.take(address)
        if wait:
            log.info("login of %r from %s refused: too many failed logins", user[:100], address)
            return _error(429, "TOOMANYREQUESTS", f"too many failed logins from this address; try again in "
                          f"{wait} s", {"Retry-After": str(wait)})
        try:
            ok = await run_in_threadpool(self.check_password, user, password)
        except AuthConfigError:
            self.throttle.give_back(address)
            return _error(503, "UNAVAILABLE", "the token service is misconfigured; see the server log")
        if not ok:
            log.info("login refused: wrong credentials for user %r from %s", user[:100], address)
            return self._unauthorized()
        self.throttle.give_back(address)
        return user

    # ---- grants and tokens

    def actions_for(self, user: str | None, kind: str, name: str) -> frozenset[str]:
        """What ``user`` (None: anonymous) may do on one resource; tokens and the web page both ask here."""
        if user is None:
            return PUBLIC_READER.actions(kind, name) if self.public_read else _NOTHING
        admin = user in self.admins
        if kind == "repository":
            return _ADMIN_ACTIONS if admin else _USER_ACTIONS
        if kind == "registry" and name == "catalog" and admin:
            return _CATALOG_ACTIONS
        return _NOTHING

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
        return [
            {"type": kind, "name": name, "actions": actions} for (kind, name), actions in merged.items() if actions
        ]

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
            return _error(405, "UNSUPPORTED", "the token endpoint answers GET only", {"Allow": "GET"})
        user = await self.login(request)
        if isinstance(user, Response):
            return user
        if user is None and not self.public_read:
            return self._unauthorized()

        params = request.query_params
        service = params.get("service")
        if service is not None and service != self.service:
            message = f"this token server issues tokens for service {self.service!r} only"
            return _error(400, "INVALID_PARAMETERS", message)
        account = params.get("account")
        if account is not None and account != user:
            return _error(400, "INVALID_PARAMETERS", "account does not match the authenticated user")
        scopes = [part for value in params.getlist("scope") for part in value.split()]
        if len(scopes) > _MAX_SCOPES:
            return _error(400, "INVALID_PARAMETERS", f"at most {_MAX_SCOPES} scopes per token request")
        try:
            requested = [parse_scope(scope) for scope in scopes]
        except InvalidScopeError as exc:
            return _error(400, "INVALID_PARAMETERS", exc.message)

        token, issued = self.issue(user, requested)
        who = "anonymous" if user is None else repr(user[:100])
        log.info("token issued to %s for %s", who, " ".join(scopes)[:500] or "no scope")
        return JSONResponse(
            {
                "token": token,
                "access_token": token,
                "expires_in": self.token_ttl,
                "issued_at": datetime.fromtimestamp(issued, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    @staticmethod
    def _unauthorized() -> JSONResponse:
        return _error(401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": _BASIC_CHALLENGE})


# --------------------------------------------------------------------------------------------
# The web page


class PageAccess:
    """Who is asking for a web page and what they may see, by the API's own rules.

    Without ``tokens`` and ``logins`` (``--auth none``) everyone sees everything.  Otherwise a
    bearer token is verified by ``tokens`` (the API's :class:`TokenAuthorizer`) and HTTP Basic
    (which a browser answers) is checked by ``logins`` against the htpasswd file, rate limited
    like the token endpoint; the user then holds what a token from the issuer would grant.
    Nobody logged in holds :data:`PUBLIC_READER` with ``public_read``, else is asked to log in:
    ``Basic realm="trustkit"`` with an htpasswd file, the API's Bearer challenge with ``tokens``
    alone.
    """

    def __init__(self, *, tokens: TokenAuthorizer | None = None, logins: HtpasswdTokenIssuer | None = None,
                 public_read: bool = False) -> None:
        self.tokens = tokens
        self.logins = logins
        self.public_read = public_read

    async def principal(self, request: Request, wanted: Sequence[Access] = ()) -> Principal | Response:
        """The principal, or the response to send instead (401 with a challenge naming
        ``wanted``, 429, 503)."""
        if self.tokens is None and self.logins is None:
            return EVERYONE
        authorization = request.headers.get("authorization")
        if self.tokens is not None and _bearer_token(authorization) is not None:
            found = self.tokens.principal(authorization)
            return found if found is not None else self._challenge(wanted, "invalid_token")
        if self.logins is not None and _basic_credentials(authorization) is not None:
            user = await self.logins.login(request)
            if isinstance(user, Response):
                return user
            if user is not None:
                return self.logins.principal(user)
        if not authorization and self.public_read:
            return PUBLIC_READER
        return self._challenge(wanted, None)

    def _challenge(self, wanted: Sequence[Access], error: str | None) -> Response:
        if self.tokens is not None and self.logins is None:
            challenge = self.tokens._refuse(wanted, error, None).challenge or ""
        else:  # an htpasswd file: ask the way a browser answers
            challenge = _BASIC_CHALLENGE
        return _error(401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": challenge})
