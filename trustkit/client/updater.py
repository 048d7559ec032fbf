"""Layer `client`: the TUF update over the network, and the local metadata cache.

Drives ``trust.TrustedSet`` in notary's order (§8): root (walking every version in turn),
timestamp, snapshot by checksum, targets by checksum, then the delegations in pre-order.
Files whose bytes already match what their parent lists come from the cache instead of the
network.  The cache at ``<trust dir>/tuf/<gun>/metadata/`` uses notary's layout and is written
only after the whole update validated, one atomic file at a time; a validation failure never
falls back to the cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Protocol

from trustkit.errors import NotSignedError, RollbackError, TrustkitError, VerificationError
from trustkit.keys.store import atomic_write
from trustkit.metadata import FileMeta, Metadata, Targets
from trustkit.roles import RELEASES, ROOT, SNAPSHOT, TARGETS, TIMESTAMP, is_delegation
from trustkit.trust.trusted_set import MAX_ROOT_ROTATIONS, MAX_ROOT_SIZE, MAX_TIMESTAMP_SIZE, TrustedSet, TrustPinning


class MetadataSource(Protocol):
    """What the updater needs from a server (``notary.NotaryClient`` provides it)."""

    def get(
        self, role: str, *, checksum: str | None = None, version: int | None = None, max_size: int
    ) -> bytes | None: ...


def cache_dir(trust_dir: Path, gun: str) -> Path:
    """``<trust dir>/tuf/<gun>/metadata``; the GUN was validated, and this checks it stays inside."""
    base = (Path(trust_dir) / "tuf").resolve()
    folder = (base / gun / "metadata").resolve()
    if base not in folder.parents:
        raise VerificationError(f'repository name "{gun}" would escape the trust directory')
    return folder


class Updater:
    """Fetches and validates one GUN's trust data."""

    def __init__(
        self,
        source: MetadataSource | None,
        gun: str,
        trust_dir: Path,
        *,
        now: datetime,
        pinning: TrustPinning | None = None,
    ) -> None:
        self.source = source
        self.gun = gun
        self.now = now
        self.pinning = pinning
        self.cache = cache_dir(trust_dir, gun)

    @property
    def _server(self) -> MetadataSource:
        """The source to update from; an updater made without one reads the cache only."""
        if self.source is None:
            raise RuntimeError("this Updater has no metadata source: use load_offline(), or pass a source to update")
        return self.source

    # ---- cache

    def cached(self, role: str) -> bytes | None:
        path = self.cache / f"{role}.json"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def cached_delegations(self) -> list[str]:
        """Delegations with a cached file: their versions are rollback floors like the others'."""
        folder = self.cache / TARGETS
        if not folder.is_dir():
            return []
        names = (path.relative_to(self.cache).with_suffix("").as_posix() for path in folder.rglob("*.json"))
        return sorted(name for name in names if is_delegation(name))

    def _save(self, files: dict[str, bytes], unchanged: set[str]) -> None:
        """Write the files that changed; ``unchanged`` are those this update read from the cache
        (not read again to compare, nor rewritten)."""
        for role, data in files.items():
            if role in unchanged:
                continue
            path = self.cache / f"{role}.json"
            if self.cached(role) != data:
                atomic_write(path, data)

    # ---- update

    def refresh(self, *, delegations: str = "all", allow_expired: bool = False) -> TrustedSet:
        """Update from the server.  ``delegations``: ``"all"`` walks every delegation;
        ``"releases"`` only the ``targets/releases`` subtree (all docker's verification needs).

        With a cached root, notary's order: start from it without asking for ``root.json``, and
        fetch the root (walking its rotations) and start over only when something does not
        verify with the cached one: an expired root, a rotated key, a snapshot that lists
        another root.  A repository whose root has not changed then costs one request less and
        no root parse; one whose root has changed is found out by its snapshot, which must list
        the root's hash.

        Raises:
            NotSignedError: the server has no trust data for the GUN.
            VerificationError (and subclasses): anything that fails validation.
            NetworkError, NotAuthorizedError: from the server.
        """
        server = self._server
        cached_root = self.cached(ROOT)
        if cached_root is not None:
            try:
                floors = _CachedVersions(self)
                trusted = TrustedSet(
                    cached_root, gun=self.gun, now=self.now, previous=floors, allow_expired=allow_expired
                )
                return self._update(trusted, floors, delegations, cached_root)
            except (VerificationError, NotSignedError):
                pass  # as notary does: fetch the newest root, then everything again; its error is final
        floors = _CachedVersions(self)
        latest_root = server.get(ROOT, max_size=MAX_ROOT_SIZE)
        if latest_root is None:
            raise NotSignedError(
                f"no trust data for {self.gun}",
                hint="the repository has not been initialised (trustkit init / trustkit sign)",
            )
        if cached_root is None:
            trusted = TrustedSet(
                latest_root,
                gun=self.gun,
                now=self.now,
                previous=floors,
                pinning=self.pinning,
                first_contact=True,
                allow_expired=allow_expired,
            )
        else:
            trusted = TrustedSet(cached_root, gun=self.gun, now=self.now, previous=floors, allow_expired=allow_expired)
            self._walk_roots(trusted, latest_root)
        return self._update(trusted, floors, delegations, cached_root)

    def _update(
        self, trusted: TrustedSet, floors: _CachedVersions, delegations: str, cached_root: bytes | None
    ) -> TrustedSet:
        """From a trusted root: timestamp, snapshot, targets and delegations; the cache is
        written once all of it validated."""
        server = self._server
        files: dict[str, bytes] = {ROOT: trusted.root_data}
        trusted.check_root_fresh()

        timestamp = server.get(TIMESTAMP, max_size=MAX_TIMESTAMP_SIZE)
        if timestamp is None:
            raise NotSignedError(f"the server has no timestamp for {self.gun}")
        files[TIMESTAMP] = timestamp
        if timestamp == self.cached(TIMESTAMP):
            floors.served_from_cache(TIMESTAMP)  # the same file: no older version to compare with
        snapshot_meta = trusted.update_timestamp(timestamp).signed.snapshot_meta
        files[SNAPSHOT] = self._fetch_listed(SNAPSHOT, snapshot_meta, floors)
        trusted.update_snapshot(files[SNAPSHOT])

        files.update(
            _walk_targets(
                trusted, lambda role, meta: self._fetch_listed(role, meta, floors), delegations, offline=False
            )
        )
        unchanged = set(floors.from_cache)
        if trusted.root_data is cached_root:
            unchanged.add(ROOT)
        self._save(files, unchanged)
        self._prune(trusted)
        return trusted

    def _prune(self, trusted: TrustedSet) -> None:
        """Delete cached delegations that a trusted parent no longer delegates: their signers'
        parent removed them, so the file is neither read again nor a rollback floor.  A role
        whose parent this update did not load (not walked, or short of its threshold) is kept;
        the snapshot alone (notary-server holds its key) never removes a role."""
        for role in self.cached_delegations():
            if not _undelegated(trusted, role):
                continue
            path = self.cache / f"{role}.json"
            path.unlink(missing_ok=True)
            folder = path.parent
            while folder != self.cache and not any(folder.iterdir()):
                folder.rmdir()  # a removed role's folder of children, once empty
                folder = folder.parent

    def _walk_roots(self, trusted: TrustedSet, latest: bytes) -> None:
        latest_meta = Metadata.from_bytes(latest, role=ROOT, max_size=MAX_ROOT_SIZE)
        have = trusted.root.signed.version
        want = latest_meta.signed.version
        if want < have:
            raise RollbackError(f"the server offers root version {want}, older than the trusted version {have}")
        if want == have:
            if latest != trusted.root_data:
                raise VerificationError(
                    f"the server's root version {want} differs from the trusted one",
                    hint="someone re-issued a root version; refusing it",
                )
            return
        if want - have > MAX_ROOT_ROTATIONS:
            raise VerificationError(
                f"the server offers {want - have} root rotations at once; at most {MAX_ROOT_ROTATIONS} are walked"
            )
        for version in range(have + 1, want):
            data = self._server.get(ROOT, version=version, max_size=MAX_ROOT_SIZE)
            if data is None:
                raise VerificationError(f"the server is missing root version {version} of {self.gun}")
            trusted.update_root(data)
        trusted.update_root(latest)

    def _fetch_listed(self, role: str, meta: FileMeta, floors: _CachedVersions) -> bytes:
        cached = self.cached(role)
        if cached is not None and meta.matches(cached) is None:
            floors.served_from_cache(role)
            return cached
        data = self._server.get(role, checksum=meta.sha256_hex, max_size=meta.length)
        if data is None:
            raise NotSignedError(f"the server is missing {role} of {self.gun} listed by its parent")
        return data

    def load_offline(self, *, delegations: str = "all", allow_expired: bool = False) -> TrustedSet:
        """Validate the cache alone (``--offline``): the same checks, no network.
        ``allow_expired`` is for editing (signing offline on a cache that has aged), never for trusting."""
        root = self.cached(ROOT)
        if root is None:
            raise NotSignedError(f"no cached trust data for {self.gun}", hint="run once without --offline")
        trusted = TrustedSet(root, gun=self.gun, now=self.now, allow_expired=allow_expired)
        trusted.check_root_fresh()
        for role, loader in ((TIMESTAMP, trusted.update_timestamp), (SNAPSHOT, trusted.update_snapshot)):
            data = self.cached(role)
            if data is None:
                raise NotSignedError(f"the cache has no {role} for {self.gun}", hint="run once without --offline")
            loader(data)
        _walk_targets(trusted, lambda role, meta: self.cached(role), delegations, offline=True)
        return trusted


def _walk_targets(
    trusted: TrustedSet, fetch: Callable[[str, FileMeta], bytes | None], delegations: str, *, offline: bool
) -> dict[str, bytes]:
    """targets, then its delegations (``targets/releases`` first, children before later
    siblings), each as the trusted snapshot lists it; the trusted set decides what a role that
    falls short means.  Returns the files that were accepted."""
    accepted: dict[str, bytes] = {}
    pending = [TARGETS]
    while pending:
        role = pending.pop(0)
        meta = trusted.listed(role)
        data = fetch(role, meta) if meta is not None else None
        if data is None:
            continue  # never published (or, offline, not cached): nothing signed in it
        loaded = (
            trusted.update_targets(data, role)
            if role == TARGETS
            else trusted.update_delegation(data, role, stale_ok=offline)
        )
        if loaded is None:
            continue
        accepted[role] = data
        pending = _children(loaded, delegations) + pending
    return accepted


class _CachedVersions(Mapping[str, int]):
    """The cached files' versions: the rollback floors.  A file is parsed only when the update
    checks its role, and not at all when the server's file is the cached one (same bytes, same
    version: nothing to compare)."""

    def __init__(self, updater: Updater) -> None:
        self._updater = updater
        self._versions: dict[str, int | None] = {}
        self.from_cache: set[str] = set()  # roles whose cached bytes are the ones being checked

    def served_from_cache(self, role: str) -> None:
        self._versions[role] = None
        self.from_cache.add(role)

    def __getitem__(self, role: str) -> int:
        if role not in self._versions:
            data = self._updater.cached(role)
            try:
                self._versions[role] = Metadata.from_bytes(data, role=role).signed.version if data else None
            except TrustkitError:  # a corrupt cache entry only loses its rollback floor
                self._versions[role] = None
        version = self._versions[role]
        if version is None:
            raise KeyError(role)
        return version

    def __iter__(self) -> Iterator[str]:
        roles = (ROOT, TIMESTAMP, SNAPSHOT, TARGETS, *self._updater.cached_delegations())
        return (role for role in roles if self._updater.cached(role) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _undelegated(trusted: TrustedSet, role: str) -> bool:
    """Whether a trusted ancestor of the delegation ``role`` no longer delegates the step
    towards it (False when the ancestor that would say so was not loaded)."""
    parts = role.split("/")
    for depth in range(1, len(parts)):
        parent = trusted.targets.get("/".join(parts[:depth]))
        if parent is None:
            return False
        child = "/".join(parts[: depth + 1])
        if parent.signed.delegations.role(child) is None:
            return True
    return False


def _children(parent: Metadata[Targets], delegations: str) -> list[str]:
    """The delegations to walk under ``parent``, ``targets/releases`` first; for ``"releases"``
    only its subtree (docker's lookup stops at a releases child that lists the tag, so verify
    must see them: trustkit.trust.resolution)."""
    children = [d.name for d in parent.signed.delegations.roles]
    if delegations == "releases":
        children = [c for c in children if c == RELEASES or c.startswith(RELEASES + "/")]
    children.sort(key=lambda name: name != RELEASES)
    return children
