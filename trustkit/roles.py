"""Layer `reference` (names and their limits): TUF role names as notary accepts them (§4.2).

Kept apart from `metadata` because the key store names keys after roles too."""

from __future__ import annotations

import re

ROOT, TARGETS, SNAPSHOT, TIMESTAMP = "root", "targets", "snapshot", "timestamp"
BASE_ROLES = (ROOT, TARGETS, SNAPSHOT, TIMESTAMP)
RELEASES = "targets/releases"
_DELEGATION_NAME = re.compile(r"[-a-z0-9_/]+\Z")


def is_delegation(name: str) -> bool:
    """notary's rule: ``targets/`` prefix, ``[-a-z0-9_/]``, under 256 bytes, path-clean."""
    if not isinstance(name, str) or not name.startswith("targets/") or len(name.encode()) >= 256:
        return False
    if not _DELEGATION_NAME.match(name):
        return False
    return all(seg not in ("", ".", "..") for seg in name.split("/"))


def role_name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid role (None when it is)."""
    if name in BASE_ROLES or (isinstance(name, str) and is_delegation(name)):
        return None
    if not isinstance(name, str) or not name:
        return "role name is empty"
    if not name.startswith("targets/"):
        return f'role "{name[:80]}" is neither a base role nor a delegation (targets/...)'
    if len(name.encode()) >= 256:
        return f"role name is {len(name.encode())} bytes; the limit is 255"
    if not _DELEGATION_NAME.match(name):
        return f'role "{name[:80]}" may contain only a-z, 0-9, "-", "_" and "/"'
    return f'role "{name[:80]}" is not a clean path (empty, "." or ".." segment)'


def parent_role(name: str) -> str:
    return name.rsplit("/", 1)[0]
