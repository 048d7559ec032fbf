"""Layer `server`: notary's ``/v2/`` routes (server/server.go ``RootHandler``, wire spec §7),
matched in time linear in the path.

As regular expressions notary's routes put the GUN (``[^*]+``) in front of the role
(``targets(?:/[^/\\s]+)*``), and the two backtrack against each other: one 65 KB path took
seconds of CPU.  Here the path is cut where a route's fixed ``/_trust/`` can start, and only the
short tail after the cut is matched, with patterns that have no nested repetition.  A tail is
at most as long as the longest a route can take (a role name is under 256 bytes, §4.2), so only
the last few hundred characters of a path are ever searched; the GUN before the cut is checked
for length (255 bytes) before anything else reads it.

The result is what notary's patterns give: routes are tried in notary's order, and for each
route the longest GUN that lets the tail match wins (the regex's greedy ``[^*]+``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trustkit.roles import SNAPSHOT, TIMESTAMP

MAX_GUN_BYTES = 255  # notary's database column; longer GUNs are refused (INVALID_GUN)
MAX_ROLE_BYTES = 255  # roles.is_delegation: under 256 bytes
_CUT = "/_trust/"
# The longest tail a route can match: tuf/<role>.<128 hex>.json (a version has at most 10 digits
# that can name anything, see MAX_VERSION_DIGITS, so that form is shorter).
_MAX_TAIL = len("tuf/") + MAX_ROLE_BYTES + len(".") + 128 + len(".json")
MAX_VERSION_DIGITS = 10  # versions above 2**31 are never stored

_ROLE = re.compile(r"root|snapshot|timestamp|targets(?:/[^/\s]+)*")
_CHECKSUM = re.compile(r"[a-fA-F0-9]{64}|[a-fA-F0-9]{96}|[a-fA-F0-9]{128}")
_VERSION = re.compile(r"[0-9]+")  # notary's [1-9]*[0-9]+ is any run of ASCII digits

# notary's order, with the methods each route takes
ROUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("update", ("POST", "DELETE")),
    ("checksum", ("GET",)),
    ("version", ("GET",)),
    ("current", ("GET",)),
    ("key", ("GET", "POST")),
    ("changefeed", ("GET",)),
    ("settings", ("GET", "PUT")),  # trustkit's repository settings; notary has no such route
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
    """The route for ``method`` and ``rest`` (the decoded path after ``/v2/``), or None."""
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
            fields = _tail(name, rest[cut + len(_CUT):])
            if fields is not None:
                return RouteMatch(name, rest[:cut], **fields)
    return None


def _cuts(rest: str) -> list[int]:
    """Where ``/_trust/`` starts with a short enough tail after it, rightmost first."""
    floor = max(0, len(rest) - len(_CUT) - _MAX_TAIL)
    cuts, end = [], len(rest)
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
    if not tail.startswith("tuf/"):
        return None
    file = tail[len("tuf/"):]
    if name == "update":
        return {} if file == "" else None
    if name == "key":
        role = file.removesuffix(".key")
        return {"role": role} if file.endswith(".key") and role in (SNAPSHOT, TIMESTAMP) else None
    if not file.endswith(".json"):
        return None
    stem = file[:-len(".json")]
    if name == "current":
        return {"role": stem} if _ROLE.fullmatch(stem) else None
    if name == "checksum":  # a checksum has no dot: it follows the last one
        role, dot, checksum = stem.rpartition(".")
        return {"role": role, "checksum": checksum} if dot and _CHECKSUM.fullmatch(checksum) and _ROLE.fullmatch(
            role) else None
    version, dot, role = stem.partition(".")  # "version": digits have no dot, they precede the first one
    return {"role": role, "version": version} if dot and _VERSION.fullmatch(version) and _ROLE.fullmatch(
        role) else None
