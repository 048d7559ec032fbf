"""Layer `server`: what a publish must satisfy before anything is stored (wire spec §8), and
the snapshot and timestamp the server signs.  Stricter than notary-server: uploaded files must
not be expired, every version must rise, parsing is strict, immutable repositories keep their
signed tags, and snapshots hash the exact uploaded bytes (notary hashes a re-serialisation).

Every refusal is an ``UpdateError`` carrying notary's error code and detail; nothing here
writes to storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from trustkit.encoding import canonical_json, format_expires, loads_strict
from trustkit.errors import EncodingError, TrustkitError
from trustkit.keys.public import distinct_keys
from trustkit.metadata import DEFAULT_EXPIRY, FileMeta, Metadata, Root, Snapshot, Targets, Timestamp, build_snapshot
from trustkit.roles import ROOT, SNAPSHOT, TARGETS, TIMESTAMP, parent_role, role_name_problem
from trustkit.server.keys import ServerKeys
from trustkit.server.storage import StoredFile
from trustkit.trust.resolution import DelegationTree, changed_resolutions, verified_tree
from trustkit.trust.trusted_set import TrustedSet


@dataclass
class UpdateError(Exception):
    """A refused publish: notary's error code, HTTP status and detail."""

    code: str
    detail: Any = None
    status: int = 400

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


def invalid(name: str, message: str, **extra: Any) -> UpdateError:
    """notary's INVALID_UPDATE with its SerializableError detail (§7.6)."""
    return UpdateError("INVALID_UPDATE", {"Name": name, "Error": {**extra, "Msg": message}})


def _bad_name(role: str) -> str:
    return {ROOT: "ErrBadRoot", SNAPSHOT: "ErrBadSnapshot"}.get(role, "ErrBadTargets")


def parse_parts(parts: dict[str, bytes]) -> dict[str, Metadata[Any]]:
    """Role names checked, JSON parsed strictly, structures checked; a timestamp part must be
    JSON and is otherwise ignored (the server always makes its own, as notary does).  Each part
    is parsed once; only a part that fails (or holds a ``\\u`` escape) is read again as plain
    JSON, to answer notary's MALFORMED_JSON rather than INVALID_UPDATE where notary does."""
    parsed: dict[str, Metadata[Any]] = {}
    for role, data in parts.items():
        if role_name_problem(role):
            raise UpdateError("INVALID_ROLE", role)
        if role == TIMESTAMP:
            _require_json(data, role)
            continue
        try:
            meta = Metadata.from_bytes(data, role=role)
        except TrustkitError as exc:
            _require_json(data, role)
            raise invalid(_bad_name(role), str(exc)) from None
        if b"\\u" in data:
            _require_json(data, role)
        parsed[role] = meta
    return parsed


def _require_json(data: bytes, role: str) -> None:
    """MALFORMED_JSON unless ``data`` is JSON as Metadata parses it, with no lone surrogate
    escape (it parses, but no signature can cover it)."""
    try:
        document = loads_strict(data, what=f"{role}.json", fold_case=False)
        if b"\\u" in data:
            canonical_json(document, parsed=True)
    except EncodingError:
        raise UpdateError("MALFORMED_JSON") from None


def _require_distinct_keys(keys: Any, keyids: list[str], threshold: int, role: str, name: str) -> None:
    """A threshold of N needs N different keys: the same key spelled twice (compressed point,
    PEM, certificate) would let one private key meet it."""
    count = distinct_keys(keys, keyids)
    if keyids and threshold > count:  # no keys at all: notary's way of leaving a role unusable
        raise invalid(name, f"{role} needs {threshold} signatures but lists only {count} different key(s)")


class Update:
    """One publish being validated against what is stored."""

    def __init__(
        self, gun: str, stored: dict[str, StoredFile], keys: ServerKeys, now: datetime, *, immutable: bool = False
    ) -> None:
        self.gun = gun
        self.stored = stored
        self.keys = keys
        self.now = now
        self.immutable = immutable
        self._parsed_stored: dict[str, Metadata[Any]] = {}

    def stored_meta(self, role: str) -> Metadata[Any] | None:
        if role not in self._parsed_stored and role in self.stored:
            self._parsed_stored[role] = Metadata.from_bytes(self.stored[role].data, role=role)
        return self._parsed_stored.get(role)

    def files(self, parts: dict[str, bytes]) -> tuple[list[tuple[str, int, bytes]], tuple[int, bytes]]:
        """What to store for this publish (the uploaded files, then snapshot and timestamp),
        and the new timestamp for the changefeed.

        Raises:
            UpdateError: the first rule the publish breaks.
        """
        parsed = parse_parts(parts)
        root, root_data = self._root(parsed)
        loaded: dict[str, Metadata[Any]] = {}
        for role in sorted((r for r in parsed if r not in (ROOT, SNAPSHOT)), key=lambda r: r.count("/")):
            loaded[role] = self._targets(role, parsed[role], root, loaded)
        if self.immutable:
            self._keep_resolutions(root, loaded)
        out = [(ROOT, root.signed.version, root_data)] if ROOT in parsed else []
        out += [(role, meta.signed.version, meta.data) for role, meta in loaded.items()]
        snapshot_version, snapshot_data = self._snapshot(parsed.get(SNAPSHOT), root, root_data, loaded)
        out.append((SNAPSHOT, snapshot_version, snapshot_data))
        timestamp_version, timestamp_data = self.timestamp(root.signed, snapshot_data)
        out.append((TIMESTAMP, timestamp_version, timestamp_data))
        return out, (timestamp_version, timestamp_data)

    # ---- root

    def _root(self, parsed: dict[str, Metadata[Any]]) -> tuple[Metadata[Root], bytes]:
        stored = self.stored.get(ROOT)
        new = parsed.get(ROOT)
        if new is None:
            current_root = self.stored_meta(ROOT)
            if stored is None or current_root is None:
                raise invalid("ErrValidation", "no pre-existing root and no root provided in update.")
            return current_root, stored.data
        current = stored.version if stored else 1
        version = new.signed.version
        if stored is None and version not in (1, 2) or stored is not None and version != current + 1:
            if stored is not None and version == current:
                raise UpdateError("VERSION", {})
            raise invalid(
                "ErrBadRoot", f"Root modifications must increment the version. Current {current}, new {version}"
            )
        for name, entry in new.signed.roles.items():
            _require_distinct_keys(new.signed.keys, entry.keyids, entry.threshold, name, "ErrBadRoot")
        if new.signed.roles[TIMESTAMP].threshold != 1:
            # the server signs each timestamp with its one key (notary: TestValidateRootInvalidTimestampThreshold)
            raise invalid("ErrBadRoot", "timestamp role has invalid threshold")
        try:
            if stored is None:
                trusted = TrustedSet(new.data, gun=self.gun, now=self.now, first_contact=True)
            else:
                trusted = TrustedSet(stored.data, gun=self.gun, now=self.now)
                trusted.update_root(new.data)
            trusted.check_root_fresh()
        except TrustkitError as exc:
            raise invalid("ErrBadRoot", str(exc)) from None
        return new, new.data

    # ---- targets and delegations

    def _targets(
        self, role: str, meta: Metadata[Targets], root: Metadata[Root], loaded: dict[str, Metadata[Any]]
    ) -> Metadata[Targets]:
        if role == TARGETS:
            rule = root.signed.signing_rule(TARGETS)
        else:
            parent = loaded.get(parent_role(role)) or self.stored_meta(parent_role(role))
            delegated = parent.signed.delegations.signing_rule(role) if parent else None
            if delegated is None:
                raise invalid("ErrBadTargets", f"{parent_role(role)} does not delegate to {role}")
            rule = delegated
        result = meta.verify_by(rule)
        if not result:
            raise invalid("ErrBadTargets", f"valid signatures did not meet threshold for {role}")
        if meta.signed.is_expired(self.now):
            raise invalid("ErrBadTargets", f"{role} expired at {meta.signed.expires}")
        stored = self.stored.get(role)
        if stored is not None and meta.signed.version <= stored.version:
            raise UpdateError("VERSION", {})
        delegations = meta.signed.delegations
        for entry in delegations.roles:
            _require_distinct_keys(delegations.keys, entry.keyids, entry.threshold, entry.name, "ErrBadTargets")
        return meta

    # ---- immutability: judged on what clients resolve, not file by file

    def _keep_resolutions(self, root: Metadata[Root], loaded: dict[str, Metadata[Any]]) -> None:
        """Refuse an update under which a tag that docker or notary resolves today resolves to
        other content, or to nothing: narrowing paths, removing or re-keying a delegation, or
        editing a file are all judged by their effect.  Changes that move no tag are allowed."""
        before = self._tree(self.stored_meta(ROOT), {})
        after = self._tree(root, loaded)
        changed = changed_resolutions(before, after)
        if changed:
            shown = ", ".join(map(str, changed[:3])) + (f" (and {len(changed) - 3} more)" if len(changed) > 3 else "")
            # "ErrBadTargets", a name notary's client knows: it then prints our message ("The targets
            # metadata is invalid: <gun> is immutable: ..."); an unknown name makes the notary CLI and
            # docker print only "trust server rejected operation."
            raise invalid(
                "ErrBadTargets", f"{self.gun} is immutable: {shown}; signed tags cannot change digest or disappear"
            )

    def _tree(self, root: Metadata[Root] | None, loaded: dict[str, Metadata[Any]]) -> DelegationTree:
        roles = {r for r in self.stored if r == TARGETS or r.startswith(TARGETS + "/")} | set(loaded)
        files = {r: meta for r in roles if (meta := loaded.get(r) or self.stored_meta(r)) is not None}
        top = files.get(TARGETS)
        if root is None or top is None:
            return verified_tree(None, {})
        if not top.verify_by(root.signed.signing_rule(TARGETS)):
            return verified_tree(None, {})  # clients would trust no tag at all
        return verified_tree(top, files)

    # ---- snapshot and timestamp

    def _snapshot(
        self,
        uploaded: Metadata[Snapshot] | None,
        root: Metadata[Root],
        root_data: bytes,
        loaded: dict[str, Metadata[Any]],
    ) -> tuple[int, bytes]:
        """The snapshot to store: the uploaded one once checked, else one the server signs."""
        current = {ROOT: root_data, **{role: meta.data for role, meta in loaded.items()}}
        if TARGETS not in current and TARGETS in self.stored:
            current[TARGETS] = self.stored[TARGETS].data
        previous = self.stored_meta(SNAPSHOT)
        if uploaded is not None:
            if not uploaded.verify_by(root.signed.signing_rule(SNAPSHOT)):
                raise invalid("ErrBadSnapshot", "valid signatures did not meet threshold for snapshot")
            if uploaded.signed.is_expired(self.now):
                raise invalid("ErrBadSnapshot", f"snapshot expired at {uploaded.signed.expires}")
            if previous is not None and uploaded.signed.version <= previous.signed.version:
                raise UpdateError("VERSION", {})
            for role, data in current.items():
                listed = uploaded.signed.meta.get(role)
                if listed is None or listed.matches(data) is not None:
                    raise invalid("ErrBadSnapshot", f"snapshot does not list the current {role}")
            return uploaded.signed.version, uploaded.data
        if TARGETS not in current:
            raise invalid("ErrBadHierarchy", "no targets in update and none stored", Missing="targets")
        signer = self.keys.signer(self.gun, SNAPSHOT, root.signed.roles[SNAPSHOT].keyids)
        if signer is None:
            raise invalid(
                "ErrBadHierarchy",
                "no snapshot was included in update and server does not hold current snapshot key for repository",
                Missing="snapshot",
            )
        if root.signed.roles[SNAPSHOT].threshold > 1:  # one server signature would not be enough for clients
            raise invalid(
                "ErrBadRoot",
                f"snapshot threshold is {root.signed.roles[SNAPSHOT].threshold}, and the "
                f"server signs snapshots with one key: upload a signed snapshot",
            )
        snapshot = build_snapshot(previous.signed if previous else None, current, self.now)
        return snapshot.version, Metadata(snapshot).sign([signer])

    def timestamp(self, root: Root, snapshot_data: bytes) -> tuple[int, bytes]:
        signer = self.keys.signer(self.gun, TIMESTAMP, root.roles[TIMESTAMP].keyids)
        if signer is None:
            raise invalid("ErrBadRoot", "no  timestamp keys exist on the server")  # notary's wording, two spaces
        previous = self.stored.get(TIMESTAMP)  # its stored version is its signed one: no parse needed
        version = (previous.version if previous else 0) + 1
        timestamp = Timestamp(
            expires=format_expires(self.now + DEFAULT_EXPIRY[TIMESTAMP]),
            version=version,
            meta={SNAPSHOT: FileMeta.for_bytes(snapshot_data)},
        )
        return version, Metadata(timestamp).sign([signer])

    def resigned_snapshot(self) -> bytes | None:
        """A fresh snapshot when the stored one expired and the server holds its key."""
        previous = self.stored_meta(SNAPSHOT)
        root = self.stored_meta(ROOT)
        if previous is None or root is None or not previous.signed.is_expired(self.now):
            return None
        signer = self.keys.signer(self.gun, SNAPSHOT, root.signed.roles[SNAPSHOT].keyids)
        if signer is None or root.signed.roles[SNAPSHOT].threshold > 1:
            return None
        return Metadata(build_snapshot(previous.signed, {}, self.now)).sign([signer])
