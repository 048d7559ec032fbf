"""Layer `trust`: what a client resolves a tag to — the one answer that verify, inspect, the web
page and the server's immutability rule all share.

notary's client finds a target with a breadth-first walk of the delegation tree
(``GetTargetByName`` → ``WalkTargets``, notary 0.7 ``tuf/tuf.go``):

- the walk starts at ``targets``, whose paths are ``[""]`` (everything);
- a delegation's paths are *restricted* by its parent's: only the paths that start with one of
  the parent's survive (``RestrictDelegationPathPrefixes``), so a child can never widen them;
- a role is visited only when the name starts with one of its (restricted) paths; its children
  are queued only when it was visited, in the order its parent lists them;
- ``GetTargetByName(name, role1, role2, ...)`` walks from each role in turn, skipping the other
  named roles' subtrees, and the first role holding the name wins.

``docker pull``/``docker trust`` look up ``(targets/releases, targets)`` and then accept the
answer only when it came from one of those two roles; ``notary lookup`` walks from ``targets``.
A tag is trusted for a digest only when both answers agree on what they find, so the server
protects both.

Only verified roles may be passed in: a delegation that did not meet its threshold signs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trustkit.encoding import b64decode
from trustkit.errors import EncodingError
from trustkit.metadata import FileMeta, Metadata, Targets
from trustkit.reference import tag_sort_key
from trustkit.roles import RELEASES, TARGETS

DOCKER_ROLES = (RELEASES, TARGETS)  # docker's lookup order, and the only roles it accepts a tag from
NOTARY_ROLES = (TARGETS,)  # `notary lookup`, `notary list`


@dataclass(frozen=True)
class Resolved:
    """A name's target as a client resolves it, and the role it came from."""

    role: str
    meta: FileMeta


@dataclass(frozen=True)
class _Visit:
    role: str
    paths: tuple[str, ...]  # restricted by every ancestor's paths

    def allows(self, name: str) -> bool:
        return any(name.startswith(prefix) for prefix in self.paths)


@dataclass
class DelegationTree:
    """Verified targets roles of one repository, and notary's walk order over them."""

    roles: Mapping[str, Targets]
    _order: list[_Visit] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._order = _walk_order(self.roles)

    @classmethod
    def of(cls, roles: Mapping[str, Metadata[Any]]) -> DelegationTree:
        """From trusted metadata (``TrustedSet.targets``), keyed by role name."""
        return cls({role: meta.signed for role, meta in roles.items()})

    # ---- lookups

    def lookup(self, name: str, roles: Iterable[str] = NOTARY_ROLES) -> Resolved | None:
        """notary's ``GetTargetByName(name, *roles)``."""
        start = tuple(roles)
        for role in start:
            # A skipped role is not visited, so its children are never queued: its subtree is
            # out, unless it lies above the start (then the walk only passes through it).
            skip = [other for other in start if other != role and _in_subtree(other, role)]
            for visit in self._order:
                if not _in_subtree(visit.role, role) or any(_in_subtree(visit.role, s) for s in skip):
                    continue
                if not visit.allows(name):
                    continue
                meta = self.roles[visit.role].targets.get(name)
                if meta is not None:
                    return Resolved(visit.role, meta)
        return None

    def docker_lookup(self, name: str) -> Resolved | None:
        """What ``docker pull`` with content trust resolves ``name`` to (None: "No trust data")."""
        found = self.lookup(name, DOCKER_ROLES)
        return found if found is not None and found.role in DOCKER_ROLES else None

    def signers_of(self, name: str, meta: FileMeta) -> list[str]:
        """Delegations below ``targets`` (not ``targets/releases``) that a client's walk would visit
        for ``name`` and that sign it for the same content: who signed the released tag."""
        return [
            visit.role
            for visit in self._order
            if visit.role not in DOCKER_ROLES
            and visit.allows(name)
            and _same_target(self.roles[visit.role].targets.get(name), meta)
        ]

    def visible(self, role: str) -> list[str] | None:
        """The names of ``role`` a client's walk can find there (its paths allow them), or None
        when the walk never reaches ``role`` (not verified, or no path left)."""
        visit = next((v for v in self._order if v.role == role), None)
        if visit is None:
            return None
        return [name for name in self.roles[role].targets if visit.allows(name)]

    def names(self) -> set[str]:
        """Every target name any reachable role lists."""
        out: set[str] = set()
        for visit in self._order:
            out.update(self.roles[visit.role].targets)
        return out

    def resolutions(self) -> dict[str, tuple[Resolved | None, Resolved | None]]:
        """For every listed name: (docker's answer, notary's answer)."""
        return {name: (self.docker_lookup(name), self.lookup(name)) for name in self.names()}


@dataclass(frozen=True)
class ReleasedTag:
    """One row of ``docker trust inspect``: a tag as a pull resolves it, and who signed it."""

    tag: str
    digest: str  # sha256, hex
    size: int
    role: str  # targets/releases or targets
    signers: tuple[str, ...]  # delegation roles that sign the same content (see signers_of)


def released_tags(tree: DelegationTree) -> list[ReleasedTag]:
    """Every tag ``docker pull`` resolves, in natural order ("v2" before "v10").  A tag listed
    where the walk does not reach it (outside a delegation's paths) is not shown: what a page or
    ``inspect`` says is signed is exactly what verify and pull accept."""
    rows = []
    for name in {n for role in DOCKER_ROLES if role in tree.roles for n in tree.roles[role].targets}:
        found = tree.docker_lookup(name)
        digest = found.meta.sha256_hex if found is not None else None
        if found is None or digest is None:
            continue
        rows.append(ReleasedTag(name, digest, found.meta.length, found.role, tuple(tree.signers_of(name, found.meta))))
    return sorted(rows, key=lambda row: tag_sort_key(row.tag))


@dataclass(frozen=True)
class Change:
    """A name whose resolution an update would change."""

    name: str
    removed: bool  # resolves to nothing (else: to other content)

    def __str__(self) -> str:
        return f"{self.name} would {'no longer resolve' if self.removed else 'point at another digest'}"


def changed_resolutions(before: DelegationTree, after: DelegationTree) -> list[Change]:
    """Names that resolve (for docker or for notary) before and resolve to other content, or to
    nothing, after: what an immutable repository must refuse.  Sorted by name."""
    changed = []
    for name, answers in before.resolutions().items():
        for old, new in zip(answers, (after.docker_lookup(name), after.lookup(name)), strict=True):
            if old is not None and (new is None or not _same_target(new.meta, old.meta)):
                changed.append(Change(name, new is None))
                break
    return sorted(changed, key=lambda change: tag_sort_key(change.name))


def verified_tree(top: Metadata[Targets] | None, files: Mapping[str, Metadata[Targets]]) -> DelegationTree:
    """The roles a client would trust, from ``top`` (already verified against root) down: each
    delegation counts only if its parent delegates to it and its signatures meet the threshold
    under the parent's keys.  Roles nobody reaches are left out."""
    trusted: dict[str, Targets] = {}
    if top is None:
        return DelegationTree(trusted)
    trusted[TARGETS] = top.signed
    pending = [top]
    while pending:
        parent = pending.pop(0)
        delegations = parent.signed.delegations
        for entry in delegations.roles:
            child = files.get(entry.name)
            if child is None or entry.name in trusted:
                continue
            rule = delegations.signing_rule(entry.name)
            if rule is not None and child.verify_by(rule):
                trusted[entry.name] = child.signed
                pending.append(child)
    return DelegationTree(trusted)


def _walk_order(roles: Mapping[str, Targets]) -> list[_Visit]:
    """Every role the walk can reach, breadth first, with its restricted paths.  Removing a
    subtree from a breadth-first order keeps the rest in order, so one order serves every walk."""
    if TARGETS not in roles:
        return []
    order = []
    queue = [_Visit(TARGETS, ("",))]
    while queue:
        visit = queue.pop(0)
        order.append(visit)
        delegations = roles[visit.role].delegations
        for entry in delegations.roles:
            if entry.name not in roles or any(k not in delegations.keys for k in entry.keyids):
                continue  # never published (or verified), or a role notary cannot build: not walked
            restricted = tuple(p for p in entry.paths if any(p.startswith(parent) for parent in visit.paths))
            if restricted:
                queue.append(_Visit(entry.name, restricted))
    return order


def _in_subtree(role: str, ancestor: str) -> bool:
    return role == ancestor or role.startswith(ancestor + "/")


def _same_target(new: FileMeta | None, old: FileMeta) -> bool:
    """Same length and every digest ``old`` had, compared decoded (a digest can be spelled with
    unused base64 bits set); ``new`` may add a hash, never drop or change one."""
    if new is None or new.length != old.length:
        return False
    try:
        return all(
            alg in new.hashes and b64decode(new.hashes[alg]) == b64decode(digest) for alg, digest in old.hashes.items()
        )
    except EncodingError:
        return False


__all__ = [
    "DOCKER_ROLES",
    "NOTARY_ROLES",
    "Change",
    "DelegationTree",
    "ReleasedTag",
    "Resolved",
    "changed_resolutions",
    "released_tags",
    "verified_tree",
]
