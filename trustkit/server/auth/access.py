"""Layer `server`: what is asked for and what is decided.  Resources and actions
(:class:`Access`), the :class:`Authorizer` protocol and its :class:`Decision`, who is asking
(:class:`Principal`), the scope grammar, and the two authorizers that need no credentials
(:class:`NoAuth`, :class:`PublicRead`).  Also how an ``Authorization`` header names a bearer token or HTTP Basic
credentials.  Pure: no I/O, no cryptography.

Actions: ``pull`` and ``push`` on a repository, ``*`` for delete and key rotation (it grants
every action but ``admin``), ``admin`` for repository settings, and ``registry:catalog:*`` for
the routes that name no GUN.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from trustkit.errors import InvalidScopeError

_MAX_SCOPE_CHARS = 1024
_ACTION = re.compile(r"[a-z]+|\*")
_TYPE = re.compile(r"[a-z0-9]+(?:\([a-z0-9]+\))?")
_BAD_NAME_CHARS = re.compile(r'[\s"\\\x00-\x1f\x7f]')

NOTHING: frozenset[str] = frozenset()
_PULL = frozenset({"pull"})


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
    detail: list[dict[str, str]] | None = None  # [{"Type","Class","Name","Action"}...]


@runtime_checkable
class Authorizer(Protocol):
    def authorize(self, authorization: str | None, required: list[Access]) -> Decision: ...


@dataclass(frozen=True)
class Principal:
    """Who a request comes from (``subject`` None: nobody logged in) and, through ``actions``,
    what they hold on each ``(type, name)`` resource: a token's ``access`` claim, what the issuer
    grants an htpasswd user, or what anyone may do.  The API and the web page decide with it."""

    subject: str | None
    actions: Callable[[str, str], frozenset[str]]

    def holds(self, kind: str, name: str, action: str) -> bool:
        return granted(self.actions(kind, name), action)

    def may(self, access: Access) -> bool:
        return all(self.holds(access.type, access.name, action) for action in access.actions)


def _public_actions(kind: str, name: str) -> frozenset[str]:
    return _PULL if kind == "repository" else NOTHING


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


def granted(actions: frozenset[str], action: str) -> bool:
    """Whether holding ``actions`` on a resource allows ``action`` there."""
    if action == "admin":
        return "admin" in actions  # never implied by "*"
    return action in actions or "*" in actions


# --------------------------------------------------------------------------------------------
# The Authorization header


def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Bearer <token>``; None for another scheme or a malformed value."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or " " in value:
        return None
    return value


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """``(user, password)`` of ``Basic <base64>``; None for another scheme or a malformed value."""
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
