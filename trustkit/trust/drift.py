"""Layer `trust`: does the registry still serve what is signed?  The one comparison behind
``trustkit verify`` (exit 4 / 9) and the server page's per-tag registry badges.

A content-trust pull resolves the tag through the trust data and then fetches the signed digest,
so a tag the registry moved elsewhere ("drift") still pulls the signed image as long as that
manifest is there; without it the pull fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class RegistryState(Enum):
    SERVED = "served"  # the registry's tag points at the signed manifest
    DRIFTED = "drifted"  # the tag points at another manifest
    UNTAGGED = "untagged"  # no such tag, but the signed manifest is there
    MISSING = "missing"  # neither the tag nor the signed manifest


@dataclass(frozen=True)
class RegistryCheck:
    state: RegistryState
    signed: str  # "sha256:<hex>"
    served: str | None  # what the registry's tag points at now, if it has the tag
    signed_present: bool  # the registry has the signed manifest (a content-trust pull works)


def compare_with_registry(signed: str, tag: str, find_manifest: Callable[[str], str | None]) -> RegistryCheck:
    """Compare the signed digest ``signed`` ("sha256:<hex>") of ``tag`` with what the registry
    serves.  ``find_manifest`` answers a tag or digest with the digest the registry serves for it,
    or None; the signed digest is only looked up when the tag does not point at it."""
    served = find_manifest(tag)
    if served == signed:
        return RegistryCheck(RegistryState.SERVED, signed, served, True)
    present = find_manifest(signed) is not None
    if served is not None:
        return RegistryCheck(RegistryState.DRIFTED, signed, served, present)
    return RegistryCheck(RegistryState.UNTAGGED if present else RegistryState.MISSING, signed, None, present)


__all__ = ["RegistryCheck", "RegistryState", "compare_with_registry"]
