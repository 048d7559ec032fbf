"""Layer `repository`: editing one GUN's trust data and producing the files to publish.

No network here.  A ``Repository`` starts from trusted metadata (a ``TrustedSet`` after an
update) or from nothing (``initialize``), takes edits (targets, delegations), and
``publish_files`` signs exactly the roles that changed, as the notary client does (§7.2):
version + 1, a fresh expiry, root only when it changed or expires within six months, and the
snapshot only when the key is held locally (docker leaves it to the server).

Signing goes through ``Signer`` objects only: the key store hands one out per key ID
(:meth:`KeyStore.signer`: a decrypted key file, or a key in a PKCS#11 token or a KMS), and root
certificates are signed by the signer too, so a root key in hardware works like a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from trustkit.encoding import format_expires
from trustkit.errors import KeyNotFoundError, NoSigningKeyError, NotSignedError, TrustkitError
from trustkit.keys.certs import root_key_for
from trustkit.keys.public import PublicKey, distinct_keys
from trustkit.keys.signer import Signer
from trustkit.keys.store import KeyStore, UnsavedKey, validate_key_name
from trustkit.metadata import (
    BASE_ROLES,
    DEFAULT_EXPIRY,
    DelegationRole,
    FileMeta,
    Metadata,
    RoleKeys,
    Root,
    Snapshot,
    Targets,
    build_snapshot,
    signing_rule_for,
)
from trustkit.roles import RELEASES, ROOT, SNAPSHOT, TARGETS, TIMESTAMP, parent_role
from trustkit.trust.trusted_set import TrustedSet

# notary's client and server defaults (§5.1)
ROOT_RESIGN_WINDOW = timedelta(days=182)  # re-sign root when it expires within ~6 months


@dataclass
class Repository:
    """A GUN's trust data being edited."""

    gun: str
    store: KeyStore
    now: datetime
    root: Metadata[Root]
    targets: dict[str, Metadata[Targets]] = field(default_factory=dict)
    snapshot: Metadata[Snapshot] | None = None
    dirty: set[str] = field(default_factory=set)
    root_signers: list[tuple[Signer, str]] = field(default_factory=list)  # old root keys while rotating
    staged: dict[str, Metadata[Targets]] = field(default_factory=dict)  # partly signed, offered to co-sign
    pending: dict[str, bytes] = field(default_factory=dict)  # roles still short of their threshold
    resign_snapshot: bool = False
    # New keys of a first initialisation: written by save_new_keys() once it is published.
    new_keys: list[UnsavedKey] = field(default_factory=list)
    _signers: dict[str, Signer] = field(default_factory=dict)

    # ---- construction

    @classmethod
    def from_trusted(cls, trusted: TrustedSet, store: KeyStore, now: datetime) -> Repository:
        """Start from a validated ``trust.TrustedSet``.  Delegations short of their threshold
        are the baseline too (their version and content), so co-signers build on them."""
        targets = {**trusted.short_of_threshold, **trusted.targets}
        return cls(trusted.gun, store, now, trusted.root, targets, trusted.snapshot)

    @classmethod
    def initialize(
        cls,
        gun: str,
        store: KeyStore,
        now: datetime,
        *,
        server_keys: dict[str, PublicKey],
        root_keyid: str | None = None,
        targets_keyid: str | None = None,
        algorithm: str = "ecdsa",
    ) -> Repository:
        """A new repository: the root certificate key (reusing ``root_keyid`` or the first root
        key in the store, as docker does, else a new one), the targets key (``targets_keyid``, or
        a new one), and the server's timestamp key (and snapshot key, unless ``server_keys``
        lacks it: then a local one).  Given keys may be in a token or a KMS."""
        new_keys: list[UnsavedKey] = []
        root_signer = cls._root_signer_for_init(store, root_keyid, algorithm, new_keys)
        root_key = root_key_for(root_signer, gun, now=now)
        if targets_keyid:
            targets_signer = store.signer(targets_keyid)[0]
        else:
            targets_signer = cls._repository_signer(store, TARGETS, gun, algorithm, new_keys)
        role_keys: dict[str, PublicKey] = {
            ROOT: root_key,
            TARGETS: targets_signer.public_key,
            TIMESTAMP: server_keys[TIMESTAMP],
        }
        signers = [root_signer, targets_signer]
        if SNAPSHOT in server_keys:
            role_keys[SNAPSHOT] = server_keys[SNAPSHOT]
        else:
            signers.append(cls._repository_signer(store, SNAPSHOT, gun, algorithm, new_keys))
            role_keys[SNAPSHOT] = signers[-1].public_key
        root = Root(
            expires=format_expires(now + DEFAULT_EXPIRY[ROOT]),
            version=0,
            keys={k.keyid: k for k in role_keys.values()},
            roles={r: RoleKeys([role_keys[r].keyid]) for r in BASE_ROLES},
        )
        repo = cls(gun, store, now, Metadata(root), new_keys=new_keys)
        for signer in signers:  # decrypted or just made: never asked for again
            repo._signers[signer.public_key.canonical_id] = signer
        repo.targets[TARGETS] = Metadata(Targets(expires=format_expires(now + DEFAULT_EXPIRY[TARGETS]), version=0))
        repo.dirty |= {ROOT, TARGETS}
        return repo

    @staticmethod
    def _root_signer_for_init(
        store: KeyStore, root_keyid: str | None, algorithm: str, new_keys: list[UnsavedKey]
    ) -> Signer:
        if root_keyid:
            return store.signer(root_keyid)[0]
        existing = sorted(k.keyid for k in store.list() if k.role == ROOT)
        if existing:
            return store.signer(existing[0])[0]
        # root needs a certificate: no Ed25519
        new_keys.append(store.prepare_new("ecdsa" if algorithm == "ed25519" else algorithm, role=ROOT))
        return new_keys[-1].signer

    @staticmethod
    def _repository_signer(store: KeyStore, role: str, gun: str, algorithm: str, new_keys: list[UnsavedKey]) -> Signer:
        """The key a first initialisation left in the store for this GUN when it did not finish
        (reused, so retries make no second key), else a new one written after the publish."""
        left = sorted(k.keyid for k in store.list() if k.role == role and k.gun == gun)
        if left:
            return store.signer(left[0])[0]
        new_keys.append(store.prepare_new(algorithm, role=role, gun=gun))
        return new_keys[-1].signer

    def save_new_keys(self) -> list[UnsavedKey]:
        """Write the keys a first initialisation made (call it right before publishing, after
        every passphrase was asked); returns them."""
        saved, self.new_keys = self.new_keys, []
        for unsaved in saved:
            self.store.save(unsaved)
        return saved

    # ---- reading

    @property
    def is_new(self) -> bool:
        return self.root.signed.version == 0

    def delegation_roles(self) -> list[DelegationRole]:
        """Direct children of targets, in listed order."""
        top = self.targets.get(TARGETS)
        return list(top.signed.delegations.roles) if top else []

    def role_entry(self, role: str) -> tuple[Mapping[str, PublicKey], tuple[str, ...], int]:
        """Keys, key IDs and threshold that sign ``role``."""
        parent = self.targets.get(parent_role(role)) if role not in BASE_ROLES else None
        rule = signing_rule_for(role, self.root.signed, parent.signed if parent is not None else None)
        if rule is None:
            raise NotSignedError(f"{parent_role(role)} does not delegate to {role}")
        return rule.keys, rule.keyids, rule.threshold

    def held_keys(self, role: str) -> list[tuple[str, str]]:
        """(listed key ID, canonical ID) of the role's keys that the store holds."""
        keys, keyids, _ = self.role_entry(role)
        held = {k.keyid for k in self.store.list()} | {k.keyid for k in self.new_keys}
        out = []
        for keyid in keyids:
            key = keys.get(keyid)
            if key is None:
                continue
            try:
                canonical = key.canonical_id
            except TrustkitError:
                continue
            if canonical in held:
                out.append((keyid, canonical))
        return out

    def signable_roles(self, target: str) -> list[str]:
        """docker's rule (§4.3): every direct delegation of targets whose paths allow ``target``
        and whose key we hold; ``targets`` itself when there are no delegations.

        Raises:
            NoSigningKeyError: naming the roles that could sign and the key IDs they expect.
        """
        delegations = [d for d in self.delegation_roles() if d.allows(target)]
        if not delegations:
            if self.is_new or self.held_keys(TARGETS):
                return [TARGETS]
            keys, keyids, _ = self.role_entry(TARGETS)
            raise NoSigningKeyError(
                f"no key in the store can sign {self.gun}",
                hint=f"targets expects key {key_names(TARGETS, keys, keyids)}",
            )
        roles = [d.name for d in delegations if self.held_keys(d.name)]
        if not roles:
            wanted = "; ".join(f"{d.name}: {key_names(d.name, *self.role_entry(d.name)[:2])}" for d in delegations)
            raise NoSigningKeyError(
                f"none of your keys can sign {target} in {self.gun}",
                hint=f"roles that could sign it and the key IDs they expect: {wanted}",
            )
        return roles

    # ---- editing

    def _editable(self, role: str) -> Targets:
        if role not in self.targets:
            if role == TARGETS:
                raise NotSignedError(f"{self.gun} has no targets metadata")
            # A delegation listed by its parent but never published starts empty.
            self.role_entry(role)
            expires = format_expires(self.now + DEFAULT_EXPIRY[TARGETS])
            self.targets[role] = Metadata(Targets(expires=expires, version=0))
        self.dirty.add(role)
        return self.targets[role].signed

    def add_target(self, name: str, meta: FileMeta, roles: list[str] | None = None) -> list[str]:
        """Add or replace ``name`` in ``roles`` (default: the signable roles)."""
        roles = roles or self.signable_roles(name)
        for role in roles:
            self._editable(role).targets[name] = meta
        return roles

    def remove_target(self, name: str, roles: list[str] | None = None) -> list[str]:
        """Remove ``name`` from ``roles`` (default: every signable role holding it)."""
        if roles is None:
            candidates = [TARGETS] + [d.name for d in self.delegation_roles()]
            roles = [
                r
                for r in candidates
                if r in self.targets and name in self.targets[r].signed.targets and self.held_keys(r)
            ]
            if not roles:
                holders = [r for r in candidates if r in self.targets and name in self.targets[r].signed.targets]
                if not holders:
                    raise NotSignedError(f"{name} is not signed in {self.gun}")
                raise NoSigningKeyError(
                    f"none of your keys can remove {name} from {self.gun}", hint=f"it is signed in {', '.join(holders)}"
                )
        for role in roles:
            self._editable(role).targets.pop(name, None)
        return roles

    # ---- delegations (docker's signer model, §4.3)

    def add_delegation(
        self, name: str, keys: list[PublicKey], *, threshold: int | None = None, paths: list[str] | None = None
    ) -> list[str]:
        """Add signer ``name``: its keys go to ``targets/<name>`` and to ``targets/releases``,
        as ``docker trust signer add`` does.  ``threshold`` (m of the role's keys) also becomes
        the minimum for ``targets/releases``, or one key of the team could release alone.
        Returns warnings for the caller to show."""
        role = f"{TARGETS}/{validate_signer_name(name)}"
        if not keys:
            raise TrustkitError("give at least one key for the signer")
        top = self._editable(TARGETS)
        existing = top.delegations.role(role)
        refuse_same_key_twice(
            role,
            keys,
            [top.delegations.keys[k] for k in (existing.keyids if existing else []) if k in top.delegations.keys],
        )
        for key in keys:
            top.delegations.keys[key.keyid] = key
        ids = [k.keyid for k in keys]
        if existing is None:
            existing = DelegationRole(role, [], 1, list(paths) if paths else [""])
            top.delegations.roles.append(existing)
        elif paths:
            existing.paths = list(paths)
        existing.keyids = _unique(existing.keyids + ids)
        if threshold is not None:
            existing.threshold = threshold
        _check_threshold(existing, top.delegations.keys)
        warnings = []
        releases = top.delegations.role(RELEASES)
        if releases is None:
            releases = DelegationRole(RELEASES, [], 1, [""])
            top.delegations.roles.append(releases)
        releases.keyids = _unique(releases.keyids + ids)
        if existing.threshold > releases.threshold:
            releases.threshold = existing.threshold
            warnings.append(
                f"{RELEASES} now needs {releases.threshold} signatures: it applies to every "
                f"signer of {self.gun}, so a release needs {releases.threshold} of its "
                f"{len(releases.keyids)} keys"
            )
        return warnings

    def remove_delegation(self, name: str, *, force: bool = False) -> list[str]:
        """Remove signer ``name`` and its keys from ``targets/releases``.  Removing the last key
        of ``targets/releases`` needs ``force`` (then nobody can release until a signer is added)."""
        role = f"{TARGETS}/{validate_signer_name(name)}"
        top = self._editable(TARGETS)
        existing = top.delegations.role(role)
        if existing is None:
            raise NotSignedError(f"{self.gun} has no signer {name}")
        top.delegations.roles.remove(existing)
        still_used = {k for r in top.delegations.roles if r.name != RELEASES for k in r.keyids}
        warnings = []
        releases = top.delegations.role(RELEASES)
        if releases is not None:
            remaining = [k for k in releases.keyids if k not in existing.keyids or k in still_used]
            if not remaining:
                if not force:
                    raise TrustkitError(
                        f"{name} is the last signer of {RELEASES} in {self.gun}; without it nobody can release tags",
                        hint="pass --force to remove it anyway",
                    )
                top.delegations.roles.remove(releases)
                warnings.append(f"{RELEASES} was removed: tags resolve from targets only until a signer is added")
            else:
                releases.keyids = remaining
                releases.threshold = min(releases.threshold, len(set(remaining)))
        in_use = {k for r in top.delegations.roles for k in r.keyids}
        for keyid in list(top.delegations.keys):
            if keyid not in in_use:
                del top.delegations.keys[keyid]
        return warnings

    # ---- rotation and refresh

    def rotate(
        self,
        role: str,
        *,
        server_key: PublicKey | None = None,
        key: Signer | None = None,
        algorithm: str = "ecdsa",
    ) -> PublicKey:
        """Give ``role`` a new key.  ``server_key`` (from the server's key endpoint) makes the
        role server-managed; ``key`` is a key of the store to use (one in a token or a KMS);
        otherwise a new key goes into the store.  Root rotations are signed by the old and the
        new root keys, so clients holding the old root can walk to the new."""
        if key is not None and (server_key is not None or role == TIMESTAMP):
            raise TrustkitError(f"the {role} key is held by the server; it cannot be given")
        root = self.root.signed
        old_ids = list(root.roles[role].keyids)
        if role == ROOT:
            for listed, canonical in self.held_keys(ROOT):
                self.root_signers.append((self._signer(canonical), listed))
            if not self.root_signers:
                raise NoSigningKeyError(
                    f"rotating the root of {self.gun} needs the current root key",
                    hint=f"root expects key {key_names(ROOT, root.keys, old_ids)}",
                )
            if key is None:
                unsaved = self.store.prepare_new("ecdsa" if algorithm == "ed25519" else algorithm, role=ROOT)
                self.store.save(unsaved)
                key = unsaved.signer
            new_key = root_key_for(key, self.gun, now=self.now)
            self._signers[key.public_key.canonical_id] = key
        elif server_key is not None:
            if role not in (SNAPSHOT, TIMESTAMP):
                raise TrustkitError(f"only snapshot and timestamp keys can be held by the server, not {role}")
            new_key = server_key
        elif role == TIMESTAMP:
            raise TrustkitError("the timestamp key is always held by the server")
        else:
            if key is None:
                unsaved = self.store.prepare_new(algorithm, role=role, gun=self.gun)
                self.store.save(unsaved)
                key = unsaved.signer
            new_key = key.public_key
            self._signers[new_key.canonical_id] = key
        root.keys[new_key.keyid] = new_key
        root.roles[role] = RoleKeys([new_key.keyid], 1)
        # Old keys go, except root certificates: notary keeps them so old clients can check
        # the rotation (§8), and keys still used by another role.
        in_use = {k for entry in root.roles.values() for k in entry.keyids}
        for keyid in old_ids:
            if keyid not in in_use and role != ROOT:
                root.keys.pop(keyid, None)
        self.dirty.add(ROOT)
        if role == TARGETS:
            self._editable(TARGETS)  # re-signed with the new key
        return new_key

    def expiring(self, window: timedelta) -> list[str]:
        """Roles this user can re-sign that expire within ``window`` (notary's witness)."""
        roles = [ROOT, TARGETS] + [r for r in self.targets if r != TARGETS]
        if self._holds_snapshot_key():
            roles.append(SNAPSHOT)
        out = []
        for role in roles:
            meta = self.root if role == ROOT else self.snapshot if role == SNAPSHOT else self.targets.get(role)
            if meta is None or not self.held_keys(role):
                continue
            if meta.signed.expires_at - self.now < window:
                out.append(role)
        return out

    def resign(self, roles: list[str]) -> None:
        """Mark roles to be re-signed (new version, fresh expiry) at the next publish."""
        for role in roles:
            if role == ROOT:
                self.dirty.add(ROOT)
            elif role == SNAPSHOT:
                self.resign_snapshot = True
            else:
                self._editable(role)

    # ---- signing

    def _signer(self, canonical_id: str) -> Signer:
        if canonical_id not in self._signers:
            self._signers[canonical_id] = self.store.signer(canonical_id)[0]
        return self._signers[canonical_id]

    def _sign(self, role: str, meta: Metadata[Any]) -> bytes:
        held = self.held_keys(role)
        keys, keyids, threshold = self.role_entry(role)
        if not held and not (role == ROOT and self.root_signers):
            raise NoSigningKeyError(
                f"no key in the store can sign {role} of {self.gun}",
                hint=f"{role} expects key {key_names(role, keys, keyids)}",
            )
        signers = [(self._signer(canonical), listed) for listed, canonical in held]
        if role == ROOT:
            signers += [pair for pair in self.root_signers if pair[1] not in {listed for listed, _ in held}]
        # Keep other keys' valid signatures so threshold roles can collect them one by one.
        return meta.sign(signers, replace=threshold <= 1)

    def _meets_threshold(self, role: str, meta: Metadata[Any]) -> bool:
        keys, keyids, threshold = self.role_entry(role)
        return bool(meta.verify(keys, keyids, threshold, role))

    def offer_staged(self, role: str, data: bytes) -> None:
        """A partly signed version of ``role`` from another signer: if this publish would write
        exactly its content, it is co-signed instead of being signed afresh."""
        self.staged[role] = Metadata.from_bytes(data, role=role)

    def _adopt_staged(self, role: str) -> Metadata[Targets] | None:
        staged, current = self.staged.get(role), self.targets[role]
        if staged is None or staged.signed.is_expired(self.now):
            return None
        same = (
            staged.signed.version == current.signed.version + 1
            and staged.signed.targets == current.signed.targets
            and staged.signed.delegations == current.signed.delegations
        )
        return staged if same else None

    def publish_files(self) -> dict[str, bytes]:
        """Sign every changed role and return ``{role: file bytes}`` for the server.

        A role short of its threshold is not published (the server would refuse it): its partly
        signed bytes go to ``pending`` for the next signer to complete."""
        files: dict[str, bytes] = {}
        root = self.root.signed
        # Near expiry, root is re-signed by whoever holds its key (as notary does); a delegate
        # without it is not blocked, and sees the expiry warning instead.
        near_expiry = root.expires_at - self.now < ROOT_RESIGN_WINDOW and bool(self.held_keys(ROOT))
        if ROOT in self.dirty or self.is_new or near_expiry:
            previous_root = self.root.raw
            root.version += 1
            root.set_expiry(self.now + DEFAULT_EXPIRY[ROOT])
            files[ROOT] = self._sign(ROOT, self.root)
            if previous_root is not None:
                self._check_root_update(previous_root, files[ROOT])
        for role in sorted(self.dirty - {ROOT}, key=lambda r: r.count("/")):
            adopted = self._adopt_staged(role)
            if adopted is not None:
                self.targets[role] = meta = adopted
            else:
                meta = self.targets[role]
                meta.signatures = []  # they cover the previous version; co-signatures come with an adopted one
                meta.signed.version += 1
                meta.signed.set_expiry(self.now + DEFAULT_EXPIRY[TARGETS])
            data = self._sign(role, meta)
            if self._meets_threshold(role, meta):
                files[role] = data
            else:
                self.pending[role] = data
        if self._holds_snapshot_key() and (files or self.resign_snapshot):
            files[SNAPSHOT] = self._sign_snapshot(files)
        self.dirty.clear()
        self.resign_snapshot = False
        return files

    def _check_root_update(self, previous: bytes, new: bytes) -> None:
        """Refuse to publish a root that clients holding the previous one would reject: a
        rotation must never brick the repository."""
        try:
            TrustedSet(previous, gun=self.gun, now=self.now).update_root(new)
        except TrustkitError as exc:
            raise TrustkitError(
                f"the new root of {self.gun} would not be accepted by clients: {exc}", hint="nothing was published"
            ) from None

    def _holds_snapshot_key(self) -> bool:
        try:
            return bool(self.held_keys(SNAPSHOT))
        except KeyNotFoundError:
            return False

    def _sign_snapshot(self, files: dict[str, bytes]) -> bytes:
        current = {ROOT: self.root.raw, **{r: m.raw for r, m in self.targets.items() if r not in self.pending}}
        listed = {role: data for role, data in {**current, **files}.items() if data is not None}
        self.snapshot = Metadata(build_snapshot(self.snapshot.signed if self.snapshot else None, listed, self.now))
        return self._sign(SNAPSHOT, self.snapshot)


def validate_signer_name(name: str) -> str:
    """docker's signer-name rule; ``releases`` is reserved (§4.3).

    Raises:
        TrustkitError: naming the broken rule.
    """
    if name == "releases":
        raise TrustkitError('"releases" is reserved for the released view of a repository; choose another name')
    validate_key_name(name)
    if name in BASE_ROLES or "/" in name:
        raise TrustkitError(f'signer name "{name[:80]}" must match [a-z0-9][a-z0-9_-]*')
    return name


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def key_names(role: str, keys: Mapping[str, PublicKey], keyids: tuple[str, ...] | list[str]) -> str:
    """Key IDs as ``trustkit inspect`` (and ``docker trust inspect``) shows them, 12 characters: the
    listed ID for root and repository keys, the private key's ID for signers; the other ID of a
    certificate in brackets, so a message matches both inspect and the key file's name."""
    names = []
    for listed in keyids:
        key = keys.get(listed)
        try:
            private = key.canonical_id if key is not None else listed
        except TrustkitError:
            private = listed
        shown, other = (listed, private) if role in BASE_ROLES else (private, listed)
        names.append(shown[:12] if shown == other else f"{shown[:12]} [{other[:12]}]")
    return ", ".join(names)


def refuse_same_key_twice(role: str, new: list[PublicKey], current: list[PublicKey]) -> None:
    """One key given twice (under any spelling) would let one private key meet a threshold of 2.

    Raises:
        TrustkitError: naming both key IDs.
    """
    seen = {key.identity: key for key in current}
    for key in new:
        other = seen.get(key.identity)
        if other is not None and not (other in current and other.keyid == key.keyid):
            same = "twice" if other.keyid == key.keyid else f"as {other.keyid[:12]} and {key.keyid[:12]}"
            raise TrustkitError(
                f"the same key is given {same} for {role}: each key of a signer must be a different key pair",
                hint="a key counts once towards a threshold however it "
                "is encoded (compressed point, PEM or certificate)",
            )
        seen[key.identity] = key


def _check_threshold(role: DelegationRole, keys: dict[str, PublicKey]) -> None:
    count = distinct_keys(keys, role.keyids)
    if not 1 <= role.threshold <= count:
        raise TrustkitError(
            f"threshold {role.threshold} for {role.name} must be between 1 and its {count} different keys"
        )
