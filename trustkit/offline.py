"""Layer `ops`: signing offline, and handing signed changes to a connected machine.

``trustkit sign|revoke|signer add|signer remove --offline`` edit the trust data in the local
cache (``<trust dir>/tuf/<gun>/metadata``, validated as always) and sign the result, but keep it
as a *pending change* instead of uploading it: one record per GUN in
``<trust dir>/tuf/<gun>/trustkit-pending.json`` (notary ignores other files there).  A record
holds the signed role files and, for each, the file it was built on (its *base*).  Further
offline edits go on top of it, so several of them publish as one update.

``publish_pending`` sends the record.  When the server still has every base, the signed files go
as they are.  When someone published meanwhile, the change is replayed on the server's data
(a three-way merge per tag and per delegation entry: base -> ours onto theirs) and signed again,
unless both sides changed the same entry: then nothing is published and the conflicts are named.

``export_pending`` writes the record as one tar (a manifest with the GUN, each file's base
version and hash and its own sha256, and the role files); ``publish_export`` checks such a tar on
a machine holding no keys against the repository's current trust data, with the client's own
signing rules, and publishes it, or refuses it whole (tampered, stale or expired).

Like notary's changelist (``notary status`` / ``publish`` / ``reset``), but what waits is
already signed, so it can cross an air gap.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustkit.client.updater import cache_dir
from trustkit.encoding import b64decode, b64encode, format_expires, loads_strict
from trustkit.errors import (
    EncodingError,
    ExpiredError,
    HashMismatchError,
    MetadataError,
    NoSigningKeyError,
    NotSignedError,
    TrustkitError,
    VerificationError,
)
from trustkit.keys.public import distinct_keys
from trustkit.keys.store import atomic_write
from trustkit.metadata import Delegations, FileMeta, Metadata, Root, Snapshot, Targets, signing_rule_for
from trustkit.roles import ROOT, SNAPSHOT, TARGETS, TIMESTAMP, parent_role, role_name_problem
from trustkit.trust.repository import Repository
from trustkit.trust.trusted_set import TrustedSet

if TYPE_CHECKING:
    from trustkit.ops import TrustSession

RECORD_NAME = "trustkit-pending.json"
RECORD_FORMAT = "trustkit-pending/1"
EXPORT_FORMAT = "trustkit-export/1"
MANIFEST = "manifest.json"
# An export is hostile input: everything about it is bounded before it is read.
MAX_EXPORT_BYTES = 128 << 20
MAX_EXPORT_MEMBERS = 1024
MAX_MANIFEST_BYTES = 1 << 20


class PendingConflictError(TrustkitError):
    """A pending change cannot go on top of what the server has now; nothing was published."""


class StaleChangeError(VerificationError):
    """Signed files were built on trust data that is no longer the server's current one."""


class PendingChangesError(TrustkitError):
    """An online edit while offline changes wait: they would be overwritten."""


@dataclass(frozen=True)
class Base:
    """The file a pending role was built on: its version and sha256 (None: the role had none),
    and, in the local record, its bytes (what the three-way merge needs)."""

    version: int | None
    sha256: str | None
    data: bytes | None = None

    @classmethod
    def of(cls, data: bytes | None, role: str) -> Base:
        if data is None:
            return cls(None, None, None)
        version = Metadata.from_bytes(data, role=role).signed.version
        return cls(version, hashlib.sha256(data).hexdigest(), data)

    def matches(self, current: bytes | None) -> bool:
        digest = hashlib.sha256(current).hexdigest() if current is not None else None
        return digest == self.sha256


@dataclass
class OfflineChange:
    """Signed role files waiting to be published, and what each was built on."""

    gun: str
    files: dict[str, bytes]
    base: dict[str, Base]
    created: str
    updated: str = ""

    def version(self, role: str) -> int:
        return int(Metadata.from_bytes(self.files[role], role=role).signed.version)

    def summary(self) -> list[dict[str, Any]]:
        """Per role: the versions, and what changed from its base (tags, delegations)."""
        out = []
        for role in _ordered(self.files):
            entry: dict[str, Any] = {
                "role": role,
                "base_version": self.base[role].version,
                "version": self.version(role),
                "sha256": hashlib.sha256(self.files[role]).hexdigest(),
            }
            if _is_targets(role):
                base = self.base[role].data
                before = Metadata.from_bytes(base, role=role).signed if base is not None else None
                after = Metadata.from_bytes(self.files[role], role=role).signed
                entry["tags"] = _tag_changes(before, after)
                entry["delegations"] = _delegation_changes(before, after)
            out.append(entry)
        return out


# ---- the local record


def record_path(trust_dir: Path, gun: str) -> Path:
    return cache_dir(trust_dir, gun).parent / RECORD_NAME


def load_pending(trust_dir: Path, gun: str) -> OfflineChange | None:
    """The pending change of ``gun`` (None when there is none).

    Raises:
        TrustkitError: the record is unreadable (it names the file and how to drop it).
    """
    path = record_path(trust_dir, gun)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        doc = loads_strict(data, max_size=MAX_EXPORT_BYTES * 2, what=RECORD_NAME)
        if not isinstance(doc, dict) or doc.get("format") != RECORD_FORMAT or doc.get("gun") != gun:
            raise EncodingError("not a trustkit pending record for this repository")
        roles = doc["roles"]
        files, base = {}, {}
        for role, item in roles.items():
            _check_role(role)
            files[role] = b64decode(item["file"], what=f"{role} file")
            base_data = b64decode(item["base"], what=f"{role} base") if item["base"] is not None else None
            base[role] = Base.of(base_data, role)
        return OfflineChange(gun, files, base, str(doc["created"]), str(doc.get("updated", "")))
    except (EncodingError, MetadataError, KeyError, TypeError, AttributeError) as exc:
        raise TrustkitError(
            f"the pending changes of {gun} in {path} cannot be read: {exc}",
            hint=f"drop them with `trustkit status {gun} --reset`",
        ) from None


def save_pending(trust_dir: Path, change: OfflineChange) -> Path:
    path = record_path(trust_dir, change.gun)
    roles = {}
    for role, data in change.files.items():
        base = change.base[role].data
        roles[role] = {"file": b64encode(data), "base": b64encode(base) if base is not None else None}
    doc = {"format": RECORD_FORMAT, "gun": change.gun, "created": change.created, "updated": change.updated}
    atomic_write(path, json.dumps({**doc, "roles": roles}, indent=1).encode())
    return path


def drop_pending(trust_dir: Path, gun: str) -> bool:
    """Forget the pending change of ``gun``; whether there was one."""
    path = record_path(trust_dir, gun)
    existed = path.is_file()
    path.unlink(missing_ok=True)
    return existed


# ---- offline editing (called by ops.TrustSession)


def editable_repository(session: TrustSession, trusted: TrustedSet) -> Repository:
    """The repository an edit starts from.  Offline: the cached data with the changes already
    pending on top.  Online: refused while changes are pending (publishing over them would
    leave them to conflict with the caller's own edit later)."""
    repo = Repository.from_trusted(trusted, session.store, session.now)
    change = load_pending(session.trust_dir, session.gun)
    if change is None:
        return repo
    if not session.offline:
        raise PendingChangesError(
            f"{session.gun} has changes signed offline that are not published yet",
            hint=f"publish them first (`trustkit publish {session.gun}`), or drop them "
            f"(`trustkit status {session.gun} --reset`), or add --offline to add to them",
        )
    apply_change(repo, change)
    return repo


def keep_pending(session: TrustSession, repo: Repository) -> list[str]:
    """Sign what changed and keep it as the GUN's pending change (no network); returns the roles."""
    trusted = session.last_trusted
    if trusted is None:  # the session loaded nothing: there is no cached trust data to build on
        raise NotSignedError(f"no cached trust data for {session.gun}", hint="run once without --offline")
    # The bases, taken before signing: the repository edits (and re-signs) the trusted set's objects.
    known = (ROOT, SNAPSHOT, *trusted.targets, *trusted.short_of_threshold)
    before = {role: current_file(trusted, role) for role in known}
    files = repo.publish_files()
    if repo.pending:
        roles = ", ".join(sorted(repo.pending))
        raise TrustkitError(
            f"{roles} of {session.gun} needs more than one signature; offline signing keeps complete roles only",
            hint="co-sign it online (`--staging-dir`), where the other signers can add theirs",
        )
    if repo.new_keys:  # only a first initialisation makes keys, and that needs the server
        raise TrustkitError(f"{session.gun} cannot be initialised offline", hint="run once without --offline")
    now = format_expires(session.now)
    previous = load_pending(session.trust_dir, session.gun)
    change = OfflineChange(
        session.gun,
        files,
        {role: Base.of(before.get(role), role) for role in files},
        previous.created if previous is not None else now,
        now,
    )
    save_pending(session.trust_dir, change)
    return sorted(files)


def current_file(trusted: TrustedSet, role: str) -> bytes | None:
    """The bytes ``trusted`` holds for ``role`` (None: not published, or not loaded)."""
    if role == ROOT:
        return trusted.root_data
    if role == SNAPSHOT:
        return trusted.snapshot.raw if trusted.snapshot is not None else None
    if role == TIMESTAMP:
        return trusted.timestamp.raw if trusted.timestamp is not None else None
    meta = trusted.targets.get(role) or trusted.short_of_threshold.get(role)
    return meta.raw if meta is not None else None


# ---- the three-way merge: the pending change's edits (base -> ours) replayed onto theirs


def apply_change(repo: Repository, change: OfflineChange) -> None:
    """Replay ``change``'s edits onto ``repo`` (marking each role for signing).  Root and snapshot
    need no replay: the repository re-signs them itself when they are due.

    Raises:
        PendingConflictError: an entry the change edits was changed differently meanwhile.
    """
    conflicts: list[str] = []
    for role in _ordered(change.files):
        if not _is_targets(role):
            continue
        base = change.base[role]
        ours = Metadata.from_bytes(change.files[role], role=role).signed
        if base.data is None and base.version is not None:
            raise PendingConflictError(f"the pending change of {change.gun} has no base for {role}")
        before = Metadata.from_bytes(base.data, role=role).signed if base.data is not None else Targets("", 0)
        try:
            repo.resign([role])  # marks it for signing; a delegation never published starts empty
        except NotSignedError:
            conflicts.append(f"{role} is no longer delegated by {parent_role(role)}")
            continue
        theirs = repo.targets[role].signed
        conflicts += _merge_tags(role, before, ours, theirs)
        conflicts += _merge_delegations(role, before.delegations, ours.delegations, theirs.delegations)
    if conflicts:
        raise PendingConflictError(
            f"the changes pending for {change.gun} conflict with what was published since they were signed: "
            + "; ".join(conflicts),
            hint=f"nothing was published; drop them with `trustkit status {change.gun} --reset` and sign again",
        )


def _describe(meta: FileMeta | None) -> str:
    if meta is None:
        return "unsigned"
    return f"sha256:{meta.sha256_hex} ({meta.length} bytes)"


def _merge_tags(role: str, before: Targets, ours: Targets, theirs: Targets) -> list[str]:
    conflicts = []
    for name in sorted(set(before.targets) | set(ours.targets)):
        base, mine, now = before.targets.get(name), ours.targets.get(name), theirs.targets.get(name)
        if mine in (base, now):
            continue  # not edited here, or already what the change wants
        if now != base:
            conflicts.append(
                f"{name} in {role}: the pending change makes it {_describe(mine)}, "
                f"but it was {_describe(base)} and is now {_describe(now)}"
            )
        elif mine is None:
            del theirs.targets[name]
        else:
            theirs.targets[name] = mine
    return conflicts


def _merge_delegations(role: str, before: Delegations, ours: Delegations, theirs: Delegations) -> list[str]:
    conflicts = []
    for keyid in sorted(set(before.keys) | set(ours.keys)):
        base, mine, now = before.keys.get(keyid), ours.keys.get(keyid), theirs.keys.get(keyid)
        if mine in (base, now):
            continue
        if now != base:
            conflicts.append(f"delegation key {keyid[:12]} of {role} was changed meanwhile")
        elif mine is None:
            del theirs.keys[keyid]
        else:
            theirs.keys[keyid] = mine
    base_roles, our_roles = {r.name: r for r in before.roles}, {r.name: r for r in ours.roles}
    for name in list(dict.fromkeys([*our_roles, *base_roles])):
        was, want, has = base_roles.get(name), our_roles.get(name), theirs.role(name)
        if want in (was, has):
            continue
        if want is None:  # the change removed it
            if has != was:
                conflicts.append(f"{name} was changed meanwhile; the pending change removes it")
            elif has is not None:
                theirs.roles.remove(has)
        elif was is None and has is None:
            theirs.roles.append(copy.deepcopy(want))
        elif was is None and has is not None and (has.threshold, has.paths) == (want.threshold, want.paths):
            # added on both sides alike (two signer adds both create targets/releases): keys of both
            has.keyids += [k for k in want.keyids if k not in has.keyids]
        elif was is None or has is None:  # added with other settings there, or edited here and removed there
            conflicts.append(f"{name} was {'added' if was is None else 'removed'} meanwhile with other settings")
        else:  # both have it: key IDs as set edits, threshold and paths as values
            added = [k for k in want.keyids if k not in was.keyids]
            removed = set(was.keyids) - set(want.keyids)
            has.keyids = [k for k in has.keyids if k not in removed] + [k for k in added if k not in has.keyids]
            for attr in ("threshold", "paths"):
                if getattr(want, attr) == getattr(was, attr):
                    continue
                if getattr(has, attr) not in (getattr(was, attr), getattr(want, attr)):
                    conflicts.append(f"the {attr} of {name} was changed meanwhile")
                else:
                    setattr(has, attr, copy.deepcopy(getattr(want, attr)))
    for entry in theirs.roles:
        missing = [k for k in entry.keyids if k not in theirs.keys]
        count = distinct_keys(theirs.keys, [k for k in entry.keyids if k in theirs.keys])
        if missing or (entry.keyids and not 1 <= entry.threshold <= count):
            conflicts.append(f"{entry.name} would be left with keys or a threshold that do not fit together")
    return conflicts


def _tag_changes(before: Targets | None, after: Targets) -> dict[str, dict[str, str]]:
    old = before.targets if before is not None else {}
    added = {n: _describe(m) for n, m in after.targets.items() if n not in old}
    changed = {n: _describe(m) for n, m in after.targets.items() if n in old and old[n] != m}
    removed = {n: _describe(m) for n, m in old.items() if n not in after.targets}
    return {"added": added, "changed": changed, "removed": removed}


def _delegation_changes(before: Targets | None, after: Targets) -> list[str]:
    old = {r.name: r for r in before.delegations.roles} if before is not None else {}
    new = {r.name: r for r in after.delegations.roles}
    lines = [f"{n} added" for n in new if n not in old] + [f"{n} removed" for n in old if n not in new]
    return lines + [f"{n} changed" for n in new if n in old and new[n] != old[n]]


# ---- publishing the local record


@dataclass
class Published:
    roles: list[str]
    how: str  # "as signed", "re-signed" (on a newer server version) or "already published"
    warnings: list[str] = field(default_factory=list)


def publish_pending(session: TrustSession) -> Published:
    """Publish the GUN's pending change (see the module docstring).

    Raises:
        NotSignedError: nothing is pending.
        PendingConflictError: the change conflicts with what was published meanwhile.
        NetworkError etc.: from the server.
    """
    change = load_pending(session.trust_dir, session.gun)
    if change is None:
        raise NotSignedError(f"no changes pending for {session.gun}", hint="sign with --offline to make some")
    trusted = session.load(allow_expired=True)
    if trusted is None:
        raise PendingConflictError(
            f"the trust server has no trust data for {session.gun} any more; the pending change has nothing to go on",
            hint=f"nothing was published; drop it with `trustkit status {session.gun} --reset`",
        )
    if all(current_file(trusted, role) == data for role, data in change.files.items()):
        drop_pending(session.trust_dir, session.gun)
        return Published(sorted(change.files), "already published")
    if _still_valid(trusted, change, session.now):
        session.client.publish(change.files)
        how, roles = "as signed", sorted(change.files)
    else:
        repo = Repository.from_trusted(trusted, session.store, session.now)
        apply_change(repo, change)
        try:
            files = repo.publish_files()
        except NoSigningKeyError as exc:
            raise PendingConflictError(
                f"the keys that signed the pending change of {session.gun} no longer sign it: {exc}",
                hint="nothing was published; the repository's keys or delegations changed since it was signed",
            ) from None
        if repo.pending:
            raise PendingConflictError(
                f"{', '.join(sorted(repo.pending))} of {session.gun} now needs more signatures than the "
                "pending change has",
                hint="nothing was published; the threshold changed since it was signed",
            )
        session.client.publish(files)
        how, roles = "re-signed", sorted(files)
    drop_pending(session.trust_dir, session.gun)
    with contextlib.suppress(TrustkitError):  # the cache follows the server: the next offline edit builds on it
        session.load()
    return Published(roles, how)


def _still_valid(trusted: TrustedSet, change: OfflineChange, now: datetime) -> bool:
    """Whether the signed files can go as they are: built on the current files, and still signed
    as the current rules require (a delegation's parent may have changed under an unchanged role)."""
    if not all(base.matches(current_file(trusted, role)) for role, base in change.base.items()):
        return False
    try:
        check_signed_files(trusted, change.files, change.base, now)
    except VerificationError:
        return False  # signed again on top, or refused naming why
    return True


# ---- checking signed files against the current trust data (export and fast path)


def check_signed_files(trusted: TrustedSet, files: dict[str, bytes], base: dict[str, Base], now: datetime) -> None:
    """Refuse ``files`` unless each was built on the file ``trusted`` holds now, follows its
    version, has not expired, and is signed as the current rules (root, then each delegation's
    parent: the one in ``files`` when it is there) require.

    Raises:
        StaleChangeError: a base is no longer current.
        VerificationError (ThresholdError, ExpiredError, HashMismatchError...): otherwise.
    """
    gun = trusted.gun
    parsed: dict[str, Metadata[Any]] = {}
    for role in _ordered(files):
        if role == TIMESTAMP:
            raise VerificationError("the timestamp is signed by the server, never handed over")
        current = current_file(trusted, role)
        if not base[role].matches(current):
            have = Metadata.from_bytes(current, role=role).signed.version if current is not None else None
            raise StaleChangeError(
                f"{role} was signed on version {base[role].version} of {gun}, "
                f"but the server now has {'none' if have is None else f'version {have}'}",
                hint=f"someone published since; `trustkit publish {gun}` on the machine with the keys "
                "signs the change again on top",
            )
        meta = Metadata.from_bytes(files[role], role=role)
        if meta.signed.version != (base[role].version or 0) + 1:
            raise VerificationError(
                f"{role} has version {meta.signed.version}, not the {(base[role].version or 0) + 1} "
                f"that follows version {base[role].version}"
            )
        if meta.signed.is_expired(now):
            raise ExpiredError(f"the signed {role} of {gun} expired at {meta.signed.expires}")
        parsed[role] = meta
    root: Root = trusted.root.signed
    if ROOT in files:
        root = TrustedSet(trusted.root_data, gun=gun, now=now).update_root(files[ROOT]).signed
    for role, meta in parsed.items():
        if role in (ROOT, SNAPSHOT):
            continue
        parent = None
        if role != TARGETS:  # a delegation: its parent as it will be, the exported one if there is one
            parent = parsed.get(parent_role(role)) or trusted.targets.get(parent_role(role))
        rule = signing_rule_for(role, root, parent.signed if parent is not None else None)
        if rule is None:
            raise VerificationError(f"{parent_role(role)} of {gun} does not delegate to {role}")
        result = meta.verify_by(rule)
        if not result:
            result.raise_for_threshold()
    if SNAPSHOT in parsed:
        snapshot: Snapshot = parsed[SNAPSHOT].signed
        result = parsed[SNAPSHOT].verify_by(root.signing_rule(SNAPSHOT))
        if not result:
            result.raise_for_threshold()
        for role, data in files.items():
            if role == SNAPSHOT:
                continue
            listed = snapshot.meta.get(role)
            problem = listed.matches(data) if listed is not None else "it is not listed"
            if problem:
                raise HashMismatchError(f"the signed snapshot of {gun} does not vouch for {role}: {problem}")


# ---- export and import


@dataclass
class Export:
    """A pending change as handed over: the signed files and their bases (without base bytes)."""

    gun: str
    files: dict[str, bytes]
    base: dict[str, Base]
    created: str


def export_bytes(change: OfflineChange) -> bytes:
    """One tar: ``manifest.json`` (format, GUN, each file's role, name, sha256, length and base
    version/sha256), then ``<role>.json`` for each file.  Deterministic for the same change."""
    manifest: dict[str, Any] = {"format": EXPORT_FORMAT, "gun": change.gun, "created": change.updated or change.created}
    manifest["files"] = []
    members = []
    for role in _ordered(change.files):
        data = change.files[role]
        manifest["files"].append(
            {
                "role": role,
                "name": f"{role}.json",
                "sha256": hashlib.sha256(data).hexdigest(),
                "length": len(data),
                "base_version": change.base[role].version,
                "base_sha256": change.base[role].sha256,
            }
        )
        members.append((f"{role}.json", data))
    members.insert(0, (MANIFEST, json.dumps(manifest, indent=1).encode()))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def export_pending(trust_dir: Path, gun: str, path: Path) -> OfflineChange:
    """Write the pending change of ``gun`` to ``path`` (atomically); returns it."""
    change = load_pending(trust_dir, gun)
    if change is None:
        raise NotSignedError(f"no changes pending for {gun}", hint="sign with --offline to make some")
    atomic_write(path, export_bytes(change), 0o644)
    return change


def read_export(path: Path) -> Export:
    """Parse an export, bounded (size, member count, names, types) and checked against its own
    manifest (every file listed once, sha256 and length equal).  Nothing touches the disk.

    Raises:
        VerificationError (HashMismatchError for a file that is not what the manifest lists).
    """
    size = path.stat().st_size
    if size > MAX_EXPORT_BYTES:
        raise VerificationError(f"{path} is {size} bytes; an export is at most {MAX_EXPORT_BYTES}")
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for count, info in enumerate(tar, 1):
                if count > MAX_EXPORT_MEMBERS:
                    raise VerificationError(f"{path} has more than {MAX_EXPORT_MEMBERS} members")
                name = info.name
                if not info.isreg() or info.issparse():
                    raise VerificationError(f"{path}: member {name[:80]!r} is not a plain file")
                if name in members:
                    raise VerificationError(f"{path}: member {name[:80]!r} is there twice")
                if name != MANIFEST and _member_role(name) is None:
                    raise VerificationError(f"{path}: member {name[:80]!r} is neither the manifest nor a role file")
                handle = tar.extractfile(info)
                if handle is None:
                    raise VerificationError(f"{path}: member {name[:80]!r} cannot be read")
                members[name] = handle.read(info.size)
    except tarfile.TarError as exc:
        raise VerificationError(f"{path} is not a trustkit export (a tar file): {exc}") from None
    if MANIFEST not in members:
        raise VerificationError(f"{path} has no {MANIFEST}")
    return _parse_manifest(path, members)


def _parse_manifest(path: Path, members: dict[str, bytes]) -> Export:
    try:
        doc = loads_strict(members[MANIFEST], max_size=MAX_MANIFEST_BYTES, what=f"{path}:{MANIFEST}")
        if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
            raise EncodingError(f"format is not {EXPORT_FORMAT}")
        gun, entries = doc["gun"], doc["files"]
        if not isinstance(gun, str) or not isinstance(entries, list) or not entries:
            raise EncodingError("gun must be a string and files a non-empty list")
        files, base = {}, {}
        for entry in entries:
            role, name = entry["role"], entry["name"]
            if not isinstance(role, str) or name != f"{role}.json" or role in files:
                raise EncodingError(f"file entry {str(name)[:80]!r} does not name its role once")
            _check_role(role)
            version, digest = entry["base_version"], entry["base_sha256"]
            if (version is None) != (digest is None) or (
                version is not None and (type(version) is not int or not isinstance(digest, str))
            ):
                raise EncodingError(f"the base of {role} must be a version and a sha256, or neither")
            data = members.get(name)
            if data is None:
                raise EncodingError(f"{name} is listed but not in the tar")
            if len(data) != entry["length"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise HashMismatchError(f"{path}: {name} is not the file its manifest lists (sha256 or length differ)")
            files[role], base[role] = data, Base(version, digest)
        extra = set(members) - {MANIFEST} - {f"{role}.json" for role in files}
        if extra:
            raise EncodingError(f"members not in the manifest: {', '.join(sorted(extra))[:200]}")
        return Export(gun, files, base, str(doc.get("created", "")))
    except (EncodingError, KeyError, TypeError, AttributeError) as exc:
        raise VerificationError(f"{path} is not a valid trustkit export: {exc}") from None


def publish_export(session: TrustSession, export: Export) -> list[str]:
    """Check ``export`` against the repository's current trust data and publish it (no keys
    needed: the files are signed already).  Refused whole, before anything is sent, when a file
    is tampered, stale or expired."""
    if export.gun != session.gun:
        raise VerificationError(f"the export is for {export.gun}, not {session.gun}")
    trusted = session.load()
    if trusted is None:
        raise NotSignedError(f"the trust server has no trust data for {session.gun}")
    check_signed_files(trusted, export.files, export.base, session.now)
    session.client.publish(export.files)
    return sorted(export.files)


# ---- helpers


def _is_targets(role: str) -> bool:
    return role == TARGETS or role.startswith(TARGETS + "/")


def _ordered(roles: dict[str, Any]) -> list[str]:
    """root, targets and delegations (parents first), snapshot last."""
    rank = {ROOT: (0, 0), SNAPSHOT: (2, 0), TIMESTAMP: (3, 0)}
    return sorted(roles, key=lambda r: (*rank.get(r, (1, r.count("/"))), r))


def _check_role(role: str) -> None:
    problem = role_name_problem(role)
    if problem is not None:
        raise EncodingError(problem)


def _member_role(name: str) -> str | None:
    if not name.endswith(".json"):
        return None
    role = name.removesuffix(".json")
    return role if role_name_problem(role) is None and role != TIMESTAMP else None


__all__ = [
    "Base",
    "Export",
    "OfflineChange",
    "PendingChangesError",
    "PendingConflictError",
    "Published",
    "StaleChangeError",
    "check_signed_files",
    "drop_pending",
    "editable_repository",
    "export_bytes",
    "export_pending",
    "keep_pending",
    "load_pending",
    "publish_export",
    "publish_pending",
    "read_export",
    "record_path",
]
