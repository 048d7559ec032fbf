"""Layer `notary` (clients): the TUF update over the network, and the local metadata cache.

Drives ``trust.TrustedSet`` in notary's order (§8): root (walking every version in turn),
timestamp, snapshot by checksum, targets by checksum, then the delegations in pre-order.
Files whose bytes already match what their parent lists come from the cache instead of the
network.  The cache at ``<trust dir>/tuf/<gun>/metadata/`` uses notary's layout and is written
only after the whole update validated, one atomic file at a time; a validation failure never
falls back to the cache.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Protocol

from trustkit.errors import (
    HashMismatchError,
    NotSignedError,
    RollbackError,
    ThresholdError,
    TrustkitError,
    VerificationError,
)
from trustkit.keys.store import atomic_write
from trustkit.metadata import Metadata, Targets
from trustkit.roles import RELEASES, ROOT, SNAPSHOT, TARGETS, TIMESTAMP, is_delegation
from trustkit.trust.trusted_set import MAX_ROOT_ROTATIONS, MAX_ROOT_SIZE, MAX_TIMESTAMP_SIZE, TrustedSet, TrustPinning

# In notary's canonical layout "version" is the last field of "signed": read it without a parse.
_VERSION_TAIL = re.compile(rb'"version":(\d+)\Z')


class MetadataSource(Protocol):
    """What the updater needs from a server (``notary.NotaryClient`` provides it)."""

    def get(self, role: str, *, checksum: str | None = None, version: int | None = None,
            max_size: int) -> bytes | None: ...


def cache_dir(trust_dir: Path, gun: str) -> Path:
    """``<trust dir>/tuf/<gun>/metadata``; the GUN was validated, and this checks it stays inside."""
    base = (Path(trust_dir) / "tuf").resolve()
    folder = (base / gun / "metadata").resolve()
    if base not in folder.parents:
        raise VerificationError(f'repository name "{gun}" would escape the trust directory')
    return folder


class Updater:
    """Fetches and validates one GUN's trust data."""

    def __init__(self, source: MetadataSource | None, gun: str, trust_dir: Path, *, now: datetime,
                 pinning: TrustPinning | None = None) -> None:
        self.source = source
        self.gun = gun
        self.now = now
        self.pinning = pinning
        self.cache = cache_dir(trust_dir, gun)

    # ---- cache

    def cached(self, role: str) -> bytes | None:
        path = self.cache / f"{role}.json"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def _cached_version(self, role: str) -> int | None:
        data = self.cached(role)
        if data is None:
            return None
        end = data.rfind(b'},"signatures":[')
        match = _VERSION_TAIL.search(data, max(0, end - 40), end) if end > 0 else None
        if match:
            return int(match.group(1))
        try:
            return Metadata.from_bytes(data, role=role).signed.version
        except TrustkitError:  # a corrupt cache entry only loses its rollback floor
            return None

    def _cached_delegations(self) -> list[str]:
        """Delegations with a cached file: their versions are rollback floors like the others'."""
        folder = self.cache / TARGETS
        if not folder.is_dir():
            return []
        names = (path.relative_to(self.cache).with_suffix("").as_posix() for path in folder.rglob("*.json"))
        return sorted(name for name in names if is_delegation(name))

    def _save(self, files: dict[str, bytes]) -> None:
        for role, data in files.items():
            path = self.cache / f"{role}.json"
            if self.cached(role) != data:
                atomic_write(path, data)

    # ---- update

    def refresh(self, *, delegations: str = "all", allow_expired: bool = False) -> TrustedSet:
        """Update from the server.  ``delegations``: ``"all"`` walks every delegation;
        ``"releases"`` only ``targets/releases`` (all docker's verification needs).

        Raises:
            NotSignedError: the server has no trust data for the GUN.
            VerificationError (and subclasses): anything that fails validation.
            NetworkError, NotAuthorizedError: from the server.
        """
        assert self.source is not None, "refresh needs a metadata source"
        previous = {r: v for r in (ROOT, TIMESTAMP, SNAPSHOT, TARGETS, *self._cached_delegations())
                    if (v := self._cached_version(r)) is not None}
        files: dict[str, bytes] = {}
        cached_root = self.cached(ROOT)
        latest_root = self.source.get(ROOT, max_size=MAX_ROOT_SIZE)
        if latest_root is None:
            raise NotSignedError(f"no trust data for {self.gun}",
                                 hint="the repository has not been initialised (trustkit init / trustkit sign)")
        if cached_root is None:
            trusted = TrustedSet(latest_root, gun=self.gun, now=self.now, previous=previous,
                                 pinning=self.pinning, first_contact=True, allow_expired=allow_expired)
        else:
            trusted = TrustedSet(cached_root, gun=self.gun, now=self.now, previous=previous,
                                 allow_expired=allow_expired)
            before = trusted.root.signed
            self._walk_roots(trusted, latest_root)
            # New keys for a role reset its rollback floor (TUF's fast-forward recovery): that
            # is how an owner recovers from a compromised key that pushed versions up.
            def rotated(role: str) -> bool:
                return set(before.roles[role].keyids) != set(trusted.root.signed.roles[role].keyids)

            if rotated(TIMESTAMP) or rotated(SNAPSHOT):
                trusted.previous.pop(TIMESTAMP, None)
                trusted.previous.pop(SNAPSHOT, None)
            if rotated(TARGETS):
                trusted.previous.pop(TARGETS, None)
        files[ROOT] = trusted.root_data
        trusted.check_root_fresh()

        timestamp = self.source.get(TIMESTAMP, max_size=MAX_TIMESTAMP_SIZE)
        if timestamp is None:
            raise NotSignedError(f"the server has no timestamp for {self.gun}")
        files[TIMESTAMP] = timestamp
        trusted.update_timestamp(timestamp)

        snapshot_meta = trusted.timestamp.signed.snapshot_meta  # type: ignore[union-attr]
        files[SNAPSHOT] = self._fetch_listed(SNAPSHOT, snapshot_meta)
        trusted.update_snapshot(files[SNAPSHOT])

        pending = [TARGETS]
        while pending:
            role = pending.pop(0)
            meta = trusted.snapshot.signed.meta.get(role)  # type: ignore[union-attr]
            if meta is None:
                if role in previous:  # trusted before: hiding it would fall back to older tags
                    raise RollbackError(f"the snapshot of {self.gun} no longer lists {role}, trusted before at "
                                        f"version {previous[role]}",
                                        hint="the server (or someone in between) is serving old metadata")
                continue  # listed by a parent but never published: nothing signed in it yet
            data = self._fetch_listed(role, meta)
            try:
                loaded = trusted.update_targets(data, role)
            except ThresholdError as exc:
                if role == TARGETS:
                    raise
                # A delegation short of its threshold signs nothing; readers say why.
                trusted.failed[role] = exc
                trusted.short_of_threshold[role] = Metadata.from_bytes(data, role=role)
                continue
            files[role] = data
            pending = _children(loaded, delegations) + pending
        self._save(files)
        return trusted

    def _walk_roots(self, trusted: TrustedSet, latest: bytes) -> None:
        latest_meta = Metadata.from_bytes(latest, role=ROOT, max_size=MAX_ROOT_SIZE)
        have = trusted.root.signed.version
        want = latest_meta.signed.version
        if want < have:
            raise RollbackError(f"the server offers root version {want}, older than the trusted version {have}")
        if want == have:
            if latest != trusted.root_data:
                raise VerificationError(f"the server's root version {want} differs from the trusted one",
                                        hint="someone re-issued a root version; refusing it")
            return
        if want - have > MAX_ROOT_ROTATIONS:
            raise VerificationError(f"the server offers {want - have} root rotations at once; "
                                    f"at most {MAX_ROOT_ROTATIONS} are walked")
        for version in range(have + 1, want):
            data = self.source.get(ROOT, version=version, max_size=MAX_ROOT_SIZE)  # type: ignore[union-attr]
            if data is None:
                raise VerificationError(f"the server is missing root version {version} of {self.gun}")
            trusted.update_root(data)
        trusted.update_root(latest)

    def _fetch_listed(self, role: str, meta: object) -> bytes:
        cached = self.cached(role)
        if cached is not None and meta.matches(cached) is None:  # type: ignore[attr-defined]
            return cached
        checksum = meta.sha256_hex  # type: ignore[attr-defined]
        data = self.source.get(role, checksum=checksum, max_size=meta.length)  # type: ignore[union-attr,attr-defined]
        if data is None:
            raise NotSignedError(f"the server is missing {role} of {self.gun} listed by its parent")
        return data

    def load_offline(self, *, delegations: str = "all") -> TrustedSet:
        """Validate the cache alone (``--offline``): the same checks, no network."""
        root = self.cached(ROOT)
        if root is None:
            raise NotSignedError(f"no cached trust data for {self.gun}", hint="run once without --offline")
        trusted = TrustedSet(root, gun=self.gun, now=self.now)
        trusted.check_root_fresh()
        for role, loader in ((TIMESTAMP, trusted.update_timestamp), (SNAPSHOT, trusted.update_snapshot)):
            data = self.cached(role)
            if data is None:
                raise NotSignedError(f"the cache has no {role} for {self.gun}", hint="run once without --offline")
            loader(data)
        pending = [TARGETS]
        while pending:
            role = pending.pop(0)
            data = self.cached(role)
            if data is None or role not in trusted.snapshot.signed.meta:  # type: ignore[union-attr]
                continue
            try:
                loaded = trusted.update_targets(data, role)
            except (ThresholdError, HashMismatchError) as exc:
                if role == TARGETS:
                    raise
                # Online this delegation failed (and its old file stayed cached): it signs
                # nothing offline either, and the rest of the repository still reads.
                trusted.failed[role] = exc
                continue
            pending = _children(loaded, delegations) + pending
        return trusted


def _children(parent: Metadata[Targets], delegations: str) -> list[str]:
    """The delegations to walk under ``parent``, ``targets/releases`` first; for ``"releases"``
    only its subtree (docker's lookup stops at a releases child that lists the tag, so verify
    must see them: trustkit.trust.resolution)."""
    children = [d.name for d in parent.signed.delegations.roles]
    if delegations == "releases":
        children = [c for c in children if c == RELEASES or c.startswith(RELEASES + "/")]
    children.sort(key=lambda name: name != RELEASES)
    return children
