"""Layer `base`: the Notary API's vocabulary (wire spec §7), one copy for the client and the server.

* GUNs: :func:`gun_problem` says whether a GUN can be addressed on a Notary server, with one
  length limit; :func:`gun_path` puts it into a URL.
* URLs: the routes under ``/v2/`` in notary's order (server/server.go ``RootHandler``), their
  grammar (roles, checksums, versions), :func:`match` that reads a decoded path as notary's
  routes do, and the builders (:func:`tuf_path`, :func:`metadata_file`, ...) that write the
  paths :func:`match` reads back.
* Errors: notary's codes with their HTTP status and wire message (§7.6), and the envelope.

How each side presents these (the server's details, the client's hints) stays with that side.

:func:`match` runs in time linear in the path.  As regular expressions notary's routes put the
GUN (``[^*]+``) in front of the role (``targets(?:/[^/\\s]+)*``), and the two backtrack against
each other: one 65 KB path took seconds of CPU.  Here the path is cut where a route's fixed
``/_trust/`` can start, and only the short tail after the cut is matched, with patterns that have
no nested repetition.  A tail is at most as long as the longest a route can take (a role name is
under 256 bytes, §4.2), so only the last few hundred characters of a path are ever searched.
The result is what notary's patterns give: routes are tried in notary's order, and for each route
the longest GUN that lets the tail match wins (the regex's greedy ``[^*]+``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from trustkit.errors import InvalidReferenceError, MetadataError, TrustkitError
from trustkit.roles import SNAPSHOT, TIMESTAMP, role_name_problem

__all__ = [
    "CHECKSUM_HEX_LENGTHS",
    "ERROR_CODES",
    "MAX_GUN_BYTES",
    "MAX_VERSION_DIGITS",
    "ROUTES",
    "SERVER_KEY_ROLES",
    "ErrorCode",
    "RouteMatch",
    "changefeed_path",
    "envelope",
    "gun_path",
    "gun_problem",
    "key_file",
    "match",
    "metadata_file",
    "role_path",
    "settings_path",
    "staged_path",
    "stored_version",
    "tuf_path",
]

# --------------------------------------------------------------------------------------------
# GUNs

# notary-server keeps GUNs in varchar(255) columns (server/storage/sql_models.go TUFFile.Gun,
# SQLChange.GUN); its memory backend has no limit (measured: a 300-character GUN is served).
# Counted in UTF-8 bytes, so a GUN fits that column in any database; docker's names are ASCII,
# where bytes and characters agree.
MAX_GUN_BYTES = 255
_CUT = "/_trust/"  # where a route's fixed part starts


def gun_problem(gun: object) -> str | None:
    """Why ``gun`` cannot be addressed on a Notary server (None when it can).

    notary's routes take ``[^*]+``; its router (gorilla/mux) cleans paths, so a GUN with an
    empty, ``.`` or ``..`` segment is redirected to another GUN (measured: 301); its database
    holds 255 bytes.  Two rules go further than notary-server: whitespace and control characters
    (URL parsers on the way drop or split at them, and no image name has one), and a ``_trust``
    segment (it can make a URL read as another GUN's route, see :func:`match`).
    """
    if not isinstance(gun, str):
        return f"a repository name is a string, not {type(gun).__name__}"
    if not gun:
        return "repository name is empty"
    if len(gun) > MAX_GUN_BYTES or len(gun.encode("utf-8", "surrogatepass")) > MAX_GUN_BYTES:
        return f"repository name is longer than {MAX_GUN_BYTES} bytes"
    if "*" in gun:
        return "repository name has a '*'"
    segments = gun.split("/")
    if any(seg in ("", ".", "..") for seg in segments):
        return "repository name has an empty, '.' or '..' path segment"
    if "_trust" in segments:
        return "repository name has a '_trust' path segment (the API's own)"
    if any(ch.isspace() or ord(ch) < 0x20 or ch == "\x7f" for ch in gun):
        return "repository name has whitespace or control characters"
    return None


def gun_path(gun: str) -> str:
    """``gun`` as it goes into a URL path: each segment percent-encoded, ``:`` (a registry's
    port) kept as docker and notary write it.

    Raises:
        InvalidReferenceError: :func:`gun_problem` refuses it.
    """
    problem = gun_problem(gun)
    if problem:
        shown = f'"{gun[:100]}"' if isinstance(gun, str) else repr(gun)
        raise InvalidReferenceError(f"{shown} is not a usable repository name (GUN): {problem}")
    return "/".join(quote(segment, safe=":") for segment in gun.split("/"))


# --------------------------------------------------------------------------------------------
# Route grammar

MAX_ROLE_BYTES = 255  # roles.is_delegation: under 256 bytes
CHECKSUM_HEX_LENGTHS = (64, 96, 128)  # sha256, sha384, sha512 in hex
MAX_VERSION_DIGITS = 10  # versions above 2**31 are never stored (notary's int column)
_MAX_STORED_VERSION = 2**31
SERVER_KEY_ROLES = (SNAPSHOT, TIMESTAMP)  # the only roles the key endpoints serve
# The longest tail a route can match: tuf/<role>.<128 hex>.json (a version has at most 10 digits
# that can name anything, see MAX_VERSION_DIGITS, so that form is shorter).
_MAX_TAIL = len("tuf/") + MAX_ROLE_BYTES + len(".") + max(CHECKSUM_HEX_LENGTHS) + len(".json")

# notary's patterns: a role in a URL, a checksum (either case), a version (its [1-9]*[0-9]+ is
# any run of ASCII digits)
_ROLE = re.compile(r"root|snapshot|timestamp|targets(?:/[^/\s]+)*")
_CHECKSUM = re.compile("|".join(f"[a-fA-F0-9]{{{n}}}" for n in CHECKSUM_HEX_LENGTHS))
_VERSION = re.compile(r"[0-9]+")
_LOWER_HEX = frozenset("0123456789abcdef")  # what a client sends: the server stores lower-case hex

# notary's order, with the methods each route takes
ROUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("update", ("POST", "DELETE")),
    ("checksum", ("GET",)),
    ("version", ("GET",)),
    ("current", ("GET",)),
    ("key", ("GET", "POST")),
    ("changefeed", ("GET",)),
    ("settings", ("GET", "PUT")),  # trustkit's repository settings; notary has no such route
    # trustkit's co-signing area: ``staged/`` lists, ``staged/<role>.json`` is one partly signed role
    ("staged", ("GET", "PUT", "DELETE")),
)


@dataclass(frozen=True)
class RouteMatch:
    """A routed ``/v2/`` request.  ``gun`` is None for the routes without one (``catalog``,
    the global ``changefeed``)."""

    name: str
    gun: str | None
    role: str = ""
    version: str = ""
    checksum: str = ""


def match(method: str, rest: str) -> RouteMatch | None:
    """The route for ``method`` and ``rest`` (the decoded path after ``/v2/``), or None.

    The GUN it gives is only what the path holds: check it with :func:`gun_problem`.
    """
    if method == "GET" and rest == "":
        return RouteMatch("catalog", None)
    if method == "GET" and rest == "_trust/changefeed":
        return RouteMatch("changefeed", None)
    cuts = _cuts(rest)
    if not cuts:
        return None
    star = rest.find("*")
    for name, methods in ROUTES:
        if method not in methods:
            continue
        for cut in cuts:  # longest GUN first
            if cut == 0 or 0 <= star < cut:
                continue  # the GUN is [^*]+: not empty, no '*'
            fields = _tail(name, rest[cut + len(_CUT) :])
            if fields is not None:
                return RouteMatch(name, rest[:cut], **fields)
    return None


def _cuts(rest: str) -> list[int]:
    """Where ``/_trust/`` starts with a short enough tail after it, rightmost first."""
    floor = max(0, len(rest) - len(_CUT) - _MAX_TAIL)
    cuts: list[int] = []
    end = len(rest)
    while True:
        at = rest.rfind(_CUT, floor, end)
        if at < 0:
            return cuts
        cuts.append(at)
        end = at + len(_CUT) - 1  # "/_trust/_trust/": two occurrences share a '/'


def _tail(name: str, tail: str) -> dict[str, str] | None:
    """The fields of route ``name`` if it matches ``tail`` (what follows ``/_trust/``)."""
    if name in ("changefeed", "settings"):
        return {} if tail == name else None
    if name == "staged":
        if not tail.startswith("staged/"):
            return None
        file = tail[len("staged/") :]
        if file == "":
            return {"role": ""}  # the list (GET only: the server refuses other methods on it)
        stem = file[: -len(".json")]
        return {"role": stem} if file.endswith(".json") and _ROLE.fullmatch(stem) else None
    if not tail.startswith("tuf/"):
        return None
    file = tail[len("tuf/") :]
    if name == "update":
        return {} if file == "" else None
    if name == "key":
        role = file.removesuffix(".key")
        return {"role": role} if file.endswith(".key") and role in SERVER_KEY_ROLES else None
    if not file.endswith(".json"):
        return None
    stem = file[: -len(".json")]
    if name == "current":
        return {"role": stem} if _ROLE.fullmatch(stem) else None
    if name == "checksum":  # a checksum has no dot: it follows the last one
        role, dot, checksum = stem.rpartition(".")
        return (
            {"role": role, "checksum": checksum}
            if dot and _CHECKSUM.fullmatch(checksum) and _ROLE.fullmatch(role)
            else None
        )
    version, dot, role = stem.partition(".")  # "version": digits have no dot, they precede the first one
    return {"role": role, "version": version} if dot and _VERSION.fullmatch(version) and _ROLE.fullmatch(role) else None


def stored_version(digits: str) -> int | None:
    """The version a version route's digits name, or None when no stored file can have it
    (0, or past 2**31); a 65,000-digit run is never turned into a number."""
    number = int(digits) if len(digits) <= MAX_VERSION_DIGITS else 0
    return number if 1 <= number <= _MAX_STORED_VERSION else None


# --------------------------------------------------------------------------------------------
# Building the paths match() reads (everything after "/v2/", percent-encoded)


def role_path(role: str) -> str:
    """``role`` as it goes into a URL path (its slashes kept).

    Raises:
        MetadataError: not a role notary accepts (roles.role_name_problem).
    """
    problem = role_name_problem(role)
    if problem:
        raise MetadataError(problem)
    return "/".join(quote(segment, safe="") for segment in role.split("/"))


def tuf_path(gun: str) -> str:
    """``<gun>/_trust/tuf/``: the update route (POST, DELETE) and the folder of every metadata file."""
    return f"{gun_path(gun)}/_trust/tuf/"


def metadata_file(role: str, *, checksum: str | None = None, version: int | None = None) -> str:
    """The file under :func:`tuf_path`: ``<role>.json``, ``<role>.<checksum>.json`` or
    ``<version>.<role>.json``.

    Raises:
        MetadataError: a bad role, a checksum that is not lower-case hex of a sha256/384/512
            digest, a version that is not a non-negative integer.
        ValueError: both a checksum and a version.
    """
    name = role_path(role)
    if checksum is not None and version is not None:
        raise ValueError("pass checksum or version, not both")
    if checksum is not None:
        if len(checksum) not in CHECKSUM_HEX_LENGTHS or not set(checksum) <= _LOWER_HEX:
            raise MetadataError(f"checksum {checksum[:140]!r} is not lowercase hex of a sha256/384/512 digest")
        return f"{name}.{checksum}.json"
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise MetadataError(f"version {version!r} is not a non-negative integer")
        return f"{version}.{name}.json"
    return f"{name}.json"


def key_file(role: str) -> str:
    """The server-managed key's file under :func:`tuf_path`: ``snapshot.key``, ``timestamp.key``.

    Raises:
        TrustkitError: any other role (the server manages no other key).
    """
    if role not in SERVER_KEY_ROLES:
        raise TrustkitError(f'the trust server manages only the snapshot and timestamp keys, not "{role}"')
    return f"{role}.key"


def changefeed_path(gun: str) -> str:
    """``<gun>/_trust/changefeed``: one GUN's changefeed."""
    return f"{gun_path(gun)}/_trust/changefeed"


def staged_path(gun: str, role: str | None = None) -> str:
    """``<gun>/_trust/staged/``: trustkit's list of partly signed role versions, or with ``role``
    the one of that role (``staged/<role>.json``); a notary-server has neither (404)."""
    return f"{gun_path(gun)}/_trust/staged/" + (f"{role_path(role)}.json" if role is not None else "")


def settings_path(gun: str) -> str:
    """``<gun>/_trust/settings``: trustkit's repository settings (notary-server has none: 404)."""
    return f"{gun_path(gun)}/_trust/settings"


# --------------------------------------------------------------------------------------------
# Error codes and the envelope


@dataclass(frozen=True)
class ErrorCode:
    """One code of notary's error envelope: the HTTP status it comes with and its wire message."""

    code: str
    status: int
    message: str


# notary's codes (server/errors/errors.go, group notary.api.v1), the distribution errcode ones it
# answers with (UNAUTHORIZED, UNKNOWN), and trustkit's own (DENIED, TOO_LARGE).  The messages are
# the exact wire strings (MALFORMED_JSON has no period).
ERROR_CODES: dict[str, ErrorCode] = {
    e.code: e
    for e in (
        ErrorCode("METADATA_NOT_FOUND", 404, "You have requested metadata that does not exist."),
        ErrorCode("GENERIC_NOT_FOUND", 404, "You have requested a resource that does not exist."),
        ErrorCode("INVALID_UPDATE", 400, "Update sent by the client is invalid."),
        ErrorCode("VERSION", 400, "A newer version of metadata is already available."),
        ErrorCode("INVALID_ROLE", 400, "The role you are attempting to operate on is invalid."),
        ErrorCode("MALFORMED_JSON", 400, "JSON sent by the client could not be parsed by the server"),
        ErrorCode("MALFORMED_UPLOAD", 400, "The body of your request is malformed."),
        ErrorCode("NO_FILENAME", 400, "No file/role name provided."),
        ErrorCode("INVALID_GUN", 400, "The server does not support actions on images of this name."),
        ErrorCode("INVALID_PARAMETERS", 400, "The parameters provided are not valid."),
        ErrorCode("UNAUTHORIZED", 401, "authentication required"),
        ErrorCode("DENIED", 403, "requested access to the resource is denied"),
        ErrorCode("TOO_LARGE", 413, "The request is larger than the server accepts."),
        ErrorCode("UPDATING", 500, "An error has occurred while updating the TUF repository."),
        ErrorCode("NO_STORAGE", 500, "The server is misconfigured and has no storage."),
        ErrorCode("NO_CRYPTOSERVICE", 500, "The server does not have a signing service configured."),
        ErrorCode("NO_KEYALGORITHM", 500, "The server does not have a key algorithm configured."),
        ErrorCode("UNKNOWN", 500, "unknown error"),
    )
}


def envelope(code: str, detail: Any = None) -> tuple[int, bytes]:
    """notary's error envelope for ``code``: its status, and a body of one error with ``detail``
    omitted when None and a trailing newline (Go's json.Encoder)."""
    known = ERROR_CODES[code]
    entry: dict[str, Any] = {"code": known.code, "message": known.message}
    if detail is not None:
        entry["detail"] = detail
    return known.status, (json.dumps({"errors": [entry]}, separators=(",", ":")) + "\n").encode()
