"""Layer `ops`: ``trustkit mirror``: copy a repository's trust data from one Notary server to another.

Targets and delegation files go to the destination unchanged (the same bytes, versions and
signatures), so every signed tag keeps the signatures its signers made.  Root cannot: a Notary
server (notary-server and ours alike) refuses any root that lists a timestamp key it does not
hold ("no timestamp keys exist on the server"), and takes a new repository's root only at
version 1 and then one version per publish.  So the destination gets root versions 1..N, each
the source's version of that number with the destination's timestamp key (and snapshot key,
where a server held it), signed by the root keys of that version and of the one before, and
then version N+1.  A client that cached the source's version K walks K+1, ..., N+1 on the
destination (notary, docker and trustkit all do), each signed by root keys it already trusts:
no warning, nothing to re-trust.  Every planned root is checked against exactly those walks
before the first byte is published.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from trustkit.client.notary import NotaryClient
from trustkit.client.updater import Updater, cache_dir
from trustkit.encoding import loads_strict
from trustkit.errors import (
    KeyNotFoundError,
    NoSigningKeyError,
    ServerError,
    TrustkitError,
    VerificationError,
)
from trustkit.keys.public import PublicKey
from trustkit.keys.signer import Signer
from trustkit.keys.store import KeyStore
from trustkit.metadata import Metadata, RoleKeys, Root, Snapshot, build_snapshot
from trustkit.metadata.envelope import MAX_METADATA_SIZE
from trustkit.notary_api import gun_problem
from trustkit.roles import ROOT, SNAPSHOT, TIMESTAMP
from trustkit.trust.trusted_set import MAX_ROOT_SIZE, MAX_TIMESTAMP_SIZE, TrustedSet, TrustPinning

#: Root versions a mirror walks, and their bytes together; real repositories have a handful of ~2 KB.
MAX_ROOT_VERSIONS = 1000
MAX_ROOT_HISTORY_BYTES = 64 << 20
#: Publishes of nothing new a mirror makes so the destination's timestamp passes the source's.
MAX_CATCH_UP = 100_000
#: Pages of the catalog changefeed read for ``--all`` (100 records each).
MAX_CATALOG_PAGES = 10_000
_CATALOG_PAGE = 100
_CATALOG_PAGE_BYTES = 1 << 20  # 100 records are ~20 KB

UP_TO_DATE = "up to date"
MIRRORED = "mirrored"
RESUMED = "resumed"
UPDATED = "updated"

Progress = Callable[[int, int], None]


@dataclass
class MirrorResult:
    """What mirroring one repository did (or, with ``dry_run``, would do)."""

    gun: str
    status: str  # UP_TO_DATE, MIRRORED (new on the destination), RESUMED, UPDATED (targets moved on)
    source_root_version: int
    destination_root_version: int  # before this run; 0: none
    publishes: list[str] = field(default_factory=list)  # one line per publish, in order
    dry_run: bool = False


@dataclass(frozen=True)
class Mirror:
    """Where from, where to, and what signs: one per ``trustkit mirror`` run."""

    source: Callable[[str], NotaryClient]  # GUN -> client for the source server
    destination: Callable[[str], NotaryClient]
    store: KeyStore
    cache_dir: Path  # a trust dir whose tuf/ cache holds what was last verified from this source
    now: datetime
    pinning: TrustPinning | None = None


def mirror_repository(
    mirror: Mirror, gun: str, *, dry_run: bool = False, progress: Progress | None = None
) -> MirrorResult:
    """Verify ``gun`` on the source, plan the destination's publishes, sign them and publish.

    Nothing is published unless every key needed is at hand and every planned root passes the
    walks clients will make.  Afterwards a copy of the source's cache (an old client) must read
    the destination and find the same targets and delegations.

    Raises:
        NoSigningKeyError: a root (or local snapshot) key the plan needs is not in the store.
        VerificationError: the source's data does not verify; a planned root would be refused.
        TrustkitError: the destination holds other trust data for ``gun``; server errors.
    """
    problem = gun_problem(gun)
    if problem:
        raise TrustkitError(f"cannot mirror {gun[:100]!r}: {problem}")
    source, destination = mirror.source(gun), mirror.destination(gun)
    trusted = _verified_source(mirror, source, gun)
    roots = source_roots(source, trusted)
    planner = _Planner(mirror, gun, trusted, roots)
    current = destination.get(ROOT, max_size=MAX_ROOT_SIZE)
    have = 0 if current is None else Metadata.from_bytes(current, role=ROOT, max_size=MAX_ROOT_SIZE).signed.version
    result = MirrorResult(gun, MIRRORED if have == 0 else RESUMED, len(roots), have, dry_run=dry_run)
    server_keys = _server_keys(destination, planner, current) if have or not dry_run else {}
    if current is not None:
        planner.check_destination_root(current, server_keys)
    changed = planner.changed_roles(destination) if have else sorted(trusted.targets, key=_depth)
    versions = list(range(have + 1, len(roots) + 2))
    steps = _describe(versions, changed) if versions or changed else []
    catch_up = planner.catch_up_needed(destination, publishes=len(steps))
    if not steps and not catch_up:
        result.status = UP_TO_DATE
        return result
    if not versions:
        result.status = UPDATED
    if dry_run:
        result.publishes = steps + ([_catch_up_line(catch_up, trusted)] if catch_up else [])
        return result
    publishes = planner.sign(versions, changed, server_keys, current, destination) if steps else []
    result.publishes = _publish_all(planner, destination, list(zip(publishes, steps, strict=True)), catch_up, progress)
    _check_destination(mirror, destination, gun, trusted)
    return result


def _publish_all(
    planner: _Planner,
    destination: NotaryClient,
    publishes: list[tuple[dict[str, bytes], str]],
    catch_up: int,
    progress: Progress | None,
) -> list[str]:
    """Publish in order, then catch the timestamp up; returns a line per publish made."""
    total = len(publishes) + catch_up
    done: list[str] = []
    for files, line in publishes:
        destination.publish(files)
        done.append(line)
        if progress is not None:
            progress(len(done), total)
    steps = len(done)
    caught_up = planner.catch_up(
        destination, progress=None if progress is None else lambda n: progress(steps + n, max(total, steps + n))
    )
    if caught_up:
        done.append(_catch_up_line(caught_up, planner.trusted))
    return done


def _catch_up_line(count: int, trusted: TrustedSet) -> str:
    version = trusted.timestamp.signed.version if trusted.timestamp is not None else 0
    return f"{count} publish(es) of nothing new, to pass the source's timestamp version {version}"


def _verified_source(mirror: Mirror, source: NotaryClient, gun: str) -> TrustedSet:
    """The source's data as ``verify`` checks it (the trust cache, pinning, every delegation);
    a delegation that did not verify stops the mirror: it would be copied unverified."""
    trusted = Updater(source, gun, mirror.cache_dir, now=mirror.now, pinning=mirror.pinning).refresh(delegations="all")
    if trusted.failed:
        roles = ", ".join(sorted(trusted.failed))
        raise VerificationError(
            f"{gun} on the source has delegations that do not verify: {roles}",
            hint="their signers must re-sign them before the repository can be mirrored",
        )
    return trusted


def source_roots(source: NotaryClient, trusted: TrustedSet) -> list[bytes]:
    """Every root version the source serves, 1..N, as a chain that ends at the verified root.

    Raises:
        VerificationError: a version is missing, out of place or not signed by its predecessor.
    """
    gun, latest = trusted.gun, trusted.root.signed.version
    if latest > MAX_ROOT_VERSIONS:
        raise VerificationError(f"{gun} has {latest} root versions; at most {MAX_ROOT_VERSIONS} are mirrored")
    roots: list[bytes] = []
    for version in range(1, latest):
        data = source.get(ROOT, version=version, max_size=MAX_ROOT_SIZE)
        if data is None:
            raise VerificationError(
                f"the source is missing root version {version} of {gun}",
                hint="clients that cached that version could not follow the mirror",
            )
        roots.append(data)
        if sum(map(len, roots)) > MAX_ROOT_HISTORY_BYTES:
            raise VerificationError(
                f"the root versions of {gun} on the source are more than {MAX_ROOT_HISTORY_BYTES} bytes together; "
                "refusing to hold them"
            )
    roots.append(trusted.root_data)
    try:
        chain = TrustedSet(roots[0], gun=gun, now=trusted.now)  # trusted only if it leads to the verified root
        for data in roots[1:]:
            chain.update_root(data)
    except TrustkitError as exc:
        raise VerificationError(f"the root versions of {gun} on the source do not form a chain: {exc}") from None
    return roots


def _server_keys(destination: NotaryClient, planner: _Planner, current: bytes | None) -> dict[str, PublicKey]:
    """The destination's timestamp key, and its snapshot key when some version needs one.  Before
    a repository exists there, notary-server makes a new key on each call: ask once.  A resumed
    mirror takes them from the root it published last, so every run plans the same roots."""
    keys: dict[str, PublicKey] = {}
    if current is not None:
        root = Metadata.from_bytes(current, role=ROOT, max_size=MAX_ROOT_SIZE).signed
        keys[TIMESTAMP] = root.keys[root.roles[TIMESTAMP].keyids[0]]
        snapshot_ids = root.roles[SNAPSHOT].keyids
        if not planner.holds(root, SNAPSHOT):  # the server's key, put there by this mirror
            keys[SNAPSHOT] = root.keys[snapshot_ids[0]]
    if TIMESTAMP not in keys:
        keys[TIMESTAMP] = destination.get_key(TIMESTAMP)
    if SNAPSHOT not in keys and planner.needs_server_snapshot():
        keys[SNAPSHOT] = destination.get_key(SNAPSHOT)
    return keys


def _without_expiry(root: Root) -> dict[str, Any]:
    return {name: value for name, value in root.to_dict().items() if name != "expires"}


def _depth(role: str) -> tuple[int, str]:
    return role.count("/"), role


def _describe(versions: list[int], changed: list[str]) -> list[str]:
    lines = [f"root v{v}" for v in versions] or [""]
    if changed:
        lines[0] = " + ".join(filter(None, [lines[0], *changed]))
    return lines


class _Planner:
    """The destination's root versions and publishes for one repository."""

    def __init__(self, mirror: Mirror, gun: str, trusted: TrustedSet, roots: list[bytes]) -> None:
        self.mirror = mirror
        self.gun = gun
        self.trusted = trusted
        self.roots = roots
        self.parsed: list[Root] = [Metadata.from_bytes(r, role=ROOT, max_size=MAX_ROOT_SIZE).signed for r in roots]
        self.expires = self.parsed[-1].expires  # one expiry for every version: resuming compares content
        self._held = {key.keyid for key in mirror.store.list()}
        self._signers: dict[str, Signer] = {}

    # ---- which keys

    def _source_root(self, version: int) -> Root:
        """The source root a destination version copies: its own number, or the last for N+1."""
        return self.parsed[min(version, len(self.parsed)) - 1]

    def _held_ids(self, root: Root, role: str) -> list[tuple[str, str]]:
        """(listed key ID, key ID in the store) of ``role``'s keys in ``root`` that the store holds."""
        out = []
        for listed in root.roles[role].keyids:
            key = root.keys.get(listed)
            try:
                canonical = key.canonical_id if key is not None else None
            except TrustkitError:
                continue
            if canonical in self._held:
                out.append((listed, canonical))
        return out

    def holds(self, root: Root, role: str) -> bool:
        """Whether the store holds one of ``role``'s keys in ``root``."""
        return bool(self._held_ids(root, role))

    def local_snapshot(self, version: int) -> bool:
        """Whether the user signs this version's snapshot (notary's default) rather than a server."""
        return bool(self._held_ids(self._source_root(version), SNAPSHOT))

    def needs_server_snapshot(self) -> bool:
        return any(not self.local_snapshot(v) for v in range(1, len(self.roots) + 2))

    def root_signers(self, version: int) -> list[tuple[Signer, str]]:
        """The held keys of this version's root role and of the previous version's: clients check
        both (rotation), and a client that cached the source's previous version checks the latter."""
        roots = [self._source_root(version)] + ([self._source_root(version - 1)] if version > 1 else [])
        pairs = {listed: canonical for root in roots for listed, canonical in self._held_ids(root, ROOT)}
        if not pairs:
            wanted = sorted(
                {root.keys[k].canonical_id for root in roots for k in root.roles[ROOT].keyids if k in root.keys}
            )
            raise NoSigningKeyError(
                f"mirroring {self.gun} needs its root key {' or '.join(wanted)} (root version {version}): "
                f"the destination's timestamp key goes into a new root, which only the root key can sign",
                hint="run where the repository's root key is, or import it with `trustkit key load`; "
                "nothing was changed",
            )
        return [(self._signer(canonical), listed) for listed, canonical in pairs.items()]

    def snapshot_signers(self, version: int) -> list[tuple[Signer, str]]:
        return [
            (self._signer(canonical), listed)
            for listed, canonical in self._held_ids(self._source_root(version), SNAPSHOT)
        ]

    def _signer(self, keyid: str) -> Signer:
        if keyid not in self._signers:
            try:
                self._signers[keyid] = self.mirror.store.signer(keyid)[0]  # a key file, token or KMS key
            except KeyNotFoundError:
                raise NoSigningKeyError(f"mirroring {self.gun} needs key {keyid}", hint="nothing was changed") from None
        return self._signers[keyid]

    # ---- what the destination gets

    def planned_root(self, version: int, server_keys: dict[str, PublicKey]) -> Root:
        """The source's root of this version (the last for N+1) with the destination's server keys."""
        source = self._source_root(version)
        keys = dict(source.keys)
        roles = {name: RoleKeys(list(entry.keyids), entry.threshold) for name, entry in source.roles.items()}
        replaced = [TIMESTAMP] + ([] if self.local_snapshot(version) else [SNAPSHOT])
        old_ids = {k for role in replaced for k in source.roles[role].keyids}
        for role in replaced:
            key = server_keys[role]
            keys[key.keyid] = key
            roles[role] = RoleKeys([key.keyid], 1)
        in_use = {k for entry in roles.values() for k in entry.keyids}
        keys = {k: v for k, v in keys.items() if k in in_use or k not in old_ids}
        return Root(
            expires=self.expires,
            version=version,
            keys=keys,
            roles=roles,
            consistent_snapshot=source.consistent_snapshot,
        )

    def check_destination_root(self, current: bytes, server_keys: dict[str, PublicKey]) -> None:
        """The destination's root must be one this mirror made (resume) or nothing is touched.
        Its expiry is left out: the source's root may have been re-signed since (a new version
        with a new expiry, which the next root version carries)."""
        meta = Metadata.from_bytes(current, role=ROOT, max_size=MAX_ROOT_SIZE)
        version = meta.signed.version
        ours = version <= len(self.roots) + 1 and _without_expiry(meta.signed) == _without_expiry(
            self.planned_root(version, server_keys)
        )
        if not ours:
            raise TrustkitError(
                f"the destination's root version {version} of {self.gun} is not what mirroring the source's "
                f"{len(self.roots)} root versions makes: it holds other trust data, or the source's root keys "
                f"changed since it was mirrored",
                hint="nothing was changed; delete it there first (`notary delete --remote`) or mirror elsewhere",
            )

    def changed_roles(self, destination: NotaryClient) -> list[str]:
        """Targets and delegations whose bytes on the destination differ from the source's.

        Raises:
            TrustkitError: the destination has a newer version than the source (someone
                published there): the source no longer speaks for it.
        """
        changed = []
        for role in sorted(self.trusted.targets, key=_depth):
            data = self.trusted.targets[role].raw
            there = destination.get(role, max_size=MAX_METADATA_SIZE)
            if there == data:
                continue
            if there is not None:
                theirs = Metadata.from_bytes(there, role=role).signed.version
                ours = self.trusted.targets[role].signed.version
                if theirs >= ours:
                    raise TrustkitError(
                        f"the destination has {role} version {theirs} of {self.gun}, the source "
                        f"{ours}: someone published to the destination since it was mirrored",
                        hint="nothing was changed",
                    )
            changed.append(role)
        return changed

    def sign(
        self,
        versions: list[int],
        changed: list[str],
        server_keys: dict[str, PublicKey],
        current: bytes | None,
        destination: NotaryClient,
    ) -> list[dict[str, bytes]]:
        """Every publish, signed and checked against the walks clients will make.

        Raises:
            NoSigningKeyError, VerificationError: before anything is published.
        """
        for version in versions:
            self.root_signers(version)  # every key loaded (its passphrase asked) before anything is signed
        self._check_owner_signed()
        files_of = {role: self.trusted.targets[role].raw for role in changed}
        publishes: list[dict[str, bytes]] = []
        roots: list[bytes] = []
        for version in versions or [0]:
            files: dict[str, bytes] = {}
            if version:
                files[ROOT] = Metadata(self.planned_root(version, server_keys)).sign(self.root_signers(version))
                roots.append(files[ROOT])
            if not publishes:
                files.update({role: data for role, data in files_of.items() if data is not None})
            publishes.append(files)
        self._check_walks(roots, current)
        self._add_snapshots(publishes, versions, current, destination)
        return publishes

    def _check_owner_signed(self) -> None:
        """Every source root version must carry a signature by a root key the user holds.  The
        mirror re-signs roots with that key: a chain someone else wrote (a source that lists your
        certificate beside its own key) would otherwise be vouched for by you.

        Raises:
            VerificationError: naming the first version your keys did not sign.
        """
        for version, (data, root) in enumerate(zip(self.roots, self.parsed, strict=True), 1):
            listed = [root] + ([self.parsed[version - 2]] if version > 1 else [])
            keys = {k: r.keys[k] for r in listed for k, _ in self._held_ids(r, ROOT)}
            if not Metadata.from_bytes(data, role=ROOT, max_size=MAX_ROOT_SIZE).verify(keys, list(keys), 1, ROOT):
                raise VerificationError(
                    f"root version {version} of {self.gun} on the source is not signed by your root key; the "
                    f"mirror re-signs roots with it and will not vouch for one you did not sign",
                    hint="nothing was changed",
                )

    def _check_walks(self, planned: list[bytes], current: bytes | None) -> None:
        """Refuse a plan that a client would reject: the destination's own chain, and each source
        version K followed by destination version K+1 (a client that cached K)."""
        if not planned:
            return
        try:
            chain = (
                TrustedSet(current, gun=self.gun, now=self.mirror.now)
                if current is not None
                else TrustedSet(planned[0], gun=self.gun, now=self.mirror.now, first_contact=True)
            )
            for data in planned if current is not None else planned[1:]:
                chain.update_root(data)
            chain.check_root_fresh()
            for data in planned:
                previous = Metadata.from_bytes(data, role=ROOT).signed.version - 1
                if 1 <= previous <= len(self.roots):
                    TrustedSet(self.roots[previous - 1], gun=self.gun, now=self.mirror.now).update_root(data)
        except TrustkitError as exc:
            raise VerificationError(
                f"the mirrored roots of {self.gun} would not be accepted by clients: {exc}", hint="nothing was changed"
            ) from None

    def _add_snapshots(
        self, publishes: list[dict[str, bytes]], versions: list[int], current: bytes | None, destination: NotaryClient
    ) -> None:
        """A snapshot signed here for each publish whose root keeps the user's snapshot key.  Its
        version passes the source's, so clients that cached the source's snapshot (same key, so
        the same rollback floor) accept it."""
        listed = {ROOT: current, **{role: meta.raw for role, meta in self.trusted.targets.items()}}
        previous: Snapshot | None = None
        if current is not None:
            there = destination.get(SNAPSHOT, max_size=MAX_METADATA_SIZE)
            previous = Metadata.from_bytes(there, role=SNAPSHOT).signed if there is not None else None
        floor = self.trusted.snapshot.signed.version if self.trusted.snapshot is not None else 0
        root_version = Metadata.from_bytes(current, role=ROOT).signed.version if current is not None else 0
        for files, version in zip(publishes, versions or [root_version], strict=True):
            if ROOT in files:
                listed[ROOT] = files[ROOT]
            if not self.local_snapshot(version):
                continue
            files_now = {role: data for role, data in listed.items() if data is not None}
            snapshot = build_snapshot(previous, files_now, self.mirror.now)
            snapshot.version = max(snapshot.version, floor + 1)
            files[SNAPSHOT] = Metadata(snapshot).sign(self.snapshot_signers(version))
            previous = snapshot

    # ---- timestamp and snapshot versions: notary's clients keep their rollback floors across
    # a key rotation (the cached file still verifies under the cached root), so the destination's
    # versions must pass the source's before such a client reads it.

    def _floors(self) -> tuple[int, int]:
        timestamp, snapshot = self.trusted.timestamp, self.trusted.snapshot
        return (timestamp.signed.version if timestamp else 0), (snapshot.signed.version if snapshot else 0)

    def _needed(self, timestamp_version: int, snapshot_version: int) -> int:
        floor_timestamp, floor_snapshot = self._floors()
        needed = floor_timestamp + 1 - timestamp_version
        if not self.local_snapshot(len(self.roots) + 1):  # a snapshot signed here passes the floor by itself
            needed = max(needed, floor_snapshot + 1 - snapshot_version)
        return max(needed, 0)

    def catch_up_needed(self, destination: NotaryClient, *, publishes: int) -> int:
        """Publishes of nothing new still needed after ``publishes`` others (each adds one version).

        Raises:
            VerificationError: more than MAX_CATCH_UP would be needed.
        """
        _, timestamp_version, _, snapshot_version = _versions_there(destination)
        needed = self._needed(timestamp_version + publishes, snapshot_version + publishes)
        if needed > MAX_CATCH_UP:
            raise VerificationError(
                f"the source's timestamp of {self.gun} is at version {self._floors()[0]}; "
                f"passing it would take {needed} publishes (at most {MAX_CATCH_UP})",
                hint="nothing was changed",
            )
        return needed

    def catch_up(self, destination: NotaryClient, *, progress: Callable[[int], None] | None) -> int:
        """Publish nothing new until the destination's versions pass the source's; returns how many."""
        for done in range(MAX_CATCH_UP + 1):
            timestamp, timestamp_version, snapshot, snapshot_version = _versions_there(destination)
            if not self._needed(timestamp_version, snapshot_version):
                return done
            final = len(self.roots) + 1
            if self.local_snapshot(final):
                previous = Metadata.from_bytes(snapshot, role=SNAPSHOT).signed if snapshot else None
                next_snapshot = build_snapshot(previous, {}, self.mirror.now)
                next_snapshot.version = max(next_snapshot.version, self._floors()[1] + 1)
                files = {SNAPSHOT: Metadata(next_snapshot).sign(self.snapshot_signers(final))}
            else:
                files = {TIMESTAMP: timestamp or b"{}"}  # ignored by the server, which signs a new one
            destination.publish(files)
            if progress is not None:
                progress(done + 1)
        raise ServerError(f"the destination's timestamp version of {self.gun} does not rise with each publish")


def _versions_there(destination: NotaryClient) -> tuple[bytes | None, int, bytes | None, int]:
    """The destination's current timestamp and snapshot, and their versions (0: none)."""
    timestamp = destination.get(TIMESTAMP, max_size=MAX_TIMESTAMP_SIZE)
    snapshot = destination.get(SNAPSHOT, max_size=MAX_METADATA_SIZE)
    versions = [
        Metadata.from_bytes(data, role=role).signed.version if data else 0
        for role, data in ((TIMESTAMP, timestamp), (SNAPSHOT, snapshot))
    ]
    return timestamp, versions[0], snapshot, versions[1]


def _check_destination(mirror: Mirror, destination: NotaryClient, gun: str, source: TrustedSet) -> None:
    """Read the result as a client holding the source's data in its cache would (a copy of the
    cache): it must walk to the new root and find the source's targets and delegations byte for byte."""
    with tempfile.TemporaryDirectory(prefix="trustkit-mirror-") as client_dir:
        shutil.copytree(cache_dir(mirror.cache_dir, gun), cache_dir(Path(client_dir), gun))
        trusted = Updater(destination, gun, Path(client_dir), now=mirror.now).refresh(delegations="all")
    for role, meta in source.targets.items():
        there = trusted.targets.get(role)
        if there is None or there.raw != meta.raw:
            raise VerificationError(f"after mirroring, the destination's {role} of {gun} differs from the source's")


# ---- --all: the source's catalog


class CatalogClient(NotaryClient):
    """The server-wide changefeed (``GET /v2/_trust/changefeed``, scope ``registry:catalog:*``)."""

    def __init__(self, base_url: str, client: Any) -> None:
        super().__init__(base_url, "catalog", client)

    def repositories(self) -> list[str]:
        """The GUNs the changefeed lists and did not end with a deletion, in first-seen order.

        Raises:
            ServerError: a malformed page, or more than MAX_CATALOG_PAGES pages.
            NotAuthorizedError: the server refuses the catalog to this account.
        """
        live: dict[str, None] = {}
        for record in self._records():
            gun, category = record["GUN"], record["Category"]
            if category == "deletion":
                live.pop(gun, None)
            elif gun_problem(gun) is None:
                live[gun] = None
        return list(live)

    def _records(self) -> Iterator[dict[str, str]]:
        change_id = "0"
        for _ in range(MAX_CATALOG_PAGES):
            page = self._page(change_id)
            yield from page
            if len(page) < _CATALOG_PAGE:
                return
            if page[-1]["ID"] == change_id:  # a server that does not move on would be read forever
                raise ServerError(f"the catalog changefeed of {self.base_url} repeats itself after {change_id}")
            change_id = page[-1]["ID"]
        raise ServerError(
            f"the catalog changefeed of {self.base_url} has more than "
            f"{MAX_CATALOG_PAGES * _CATALOG_PAGE} records; name the repositories instead"
        )

    def _page(self, change_id: str) -> list[dict[str, str]]:
        url = f"{self.base_url}/v2/_trust/changefeed"
        body = self._call(
            "GET",
            url,
            what="reading the catalog changefeed",
            max_size=_CATALOG_PAGE_BYTES,
            params={"change_id": change_id, "records": str(_CATALOG_PAGE)},
            push=False,
        )
        try:
            data = loads_strict(body or b"", what="changefeed")
        except TrustkitError as exc:
            raise ServerError(f"the catalog changefeed of {self.base_url} is not valid JSON: {exc}") from None
        records = data.get("records") if isinstance(data, dict) else None
        if records is None and isinstance(data, dict):
            return []
        if not isinstance(records, list) or not all(_is_record(r) for r in records):
            raise ServerError(f"the catalog changefeed of {self.base_url} is malformed")
        return records


def _is_record(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(value.get(k), str) for k in ("ID", "GUN", "Category"))


__all__ = [
    "MIRRORED",
    "RESUMED",
    "UPDATED",
    "UP_TO_DATE",
    "CatalogClient",
    "Mirror",
    "MirrorResult",
    "mirror_repository",
    "source_roots",
]
