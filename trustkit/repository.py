"""Layer `repository`: editing one GUN's trust data and producing the files to publish.

No network here.  A ``Repository`` starts from trusted metadata (a ``TrustedSet`` after an
update) or from nothing (``initialize``), takes edits (targets, delegations), and
``publish_files`` signs exactly the roles that changed, as the notary client does (§7.2):
version + 1, a fresh expiry, root only when it changed or expires within six months, and the
snapshot only when the key is held locally (docker leaves it to the server).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from trustkit.encoding import format_expires
from trustkit.errors import KeyNotFoundError, NotSignedError, TrustkitError
from trustkit.keys.certs import root_key_for
from trustkit.keys.public import PublicKey
from trustkit.keys.signer import CryptoSigner, Signer, generate
from trustkit.keys.store import KeyStore
from trustkit.metadata import (
    BASE_ROLES,
    DelegationRole,
    FileMeta,
    Metadata,
    RoleKeys,
    Root,
    Snapshot,
    Targets,
)
from trustkit.roles import ROOT, SNAPSHOT, TARGETS, TIMESTAMP, parent_role

# notary's client and server defaults (§5.1)
EXPIRY = {ROOT: timedelta(days=3650), TARGETS: timedelta(days=1095), SNAPSHOT: timedelta(days=1095),
          TIMESTAMP: timedelta(days=14)}
ROOT_RESIGN_WINDOW = timedelta(days=182)  # re-sign root when it expires within ~6 months


class NoSigningKeyError(TrustkitError):
    """None of the keys that could sign a role are in the key store."""


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
    root_signers: list[Signer] = field(default_factory=list)  # old root keys during a rotation
    _signers: dict[str, Signer] = field(default_factory=dict)

    # ---- construction

    @classmethod
    def from_trusted(cls, trusted: object, store: KeyStore, now: datetime) -> Repository:
        """Start from a validated ``trust.TrustedSet``."""
        return cls(trusted.gun, store, now, trusted.root, dict(trusted.targets), trusted.snapshot)  # type: ignore[attr-defined]

    @classmethod
    def initialize(cls, gun: str, store: KeyStore, now: datetime, *, server_keys: dict[str, PublicKey],
                   root_keyid: str | None = None, algorithm: str = "ecdsa") -> Repository:
        """A new repository: the root certificate key (reusing ``root_keyid`` or the first root
        key in the store, as docker does, else a new one), a new targets key, and the server's
        timestamp key (and snapshot key, unless ``server_keys`` lacks it: then a local one)."""
        root_signer = cls._root_signer_for_init(store, root_keyid, algorithm)
        root_key = root_key_for(root_signer.private_key, gun, now=now)  # type: ignore[attr-defined]
        targets_private = generate(algorithm)
        store.add(targets_private, role=TARGETS, gun=gun)
        role_keys: dict[str, PublicKey] = {ROOT: root_key, TARGETS: CryptoSigner(targets_private).public_key,
                                           TIMESTAMP: server_keys[TIMESTAMP]}
        if SNAPSHOT in server_keys:
            role_keys[SNAPSHOT] = server_keys[SNAPSHOT]
        else:
            snapshot_private = generate(algorithm)
            store.add(snapshot_private, role=SNAPSHOT, gun=gun)
            role_keys[SNAPSHOT] = CryptoSigner(snapshot_private).public_key
        root = Root(expires=format_expires(now + EXPIRY[ROOT]), version=0,
                    keys={k.keyid: k for k in role_keys.values()},
                    roles={r: RoleKeys([role_keys[r].keyid]) for r in BASE_ROLES})
        repo = cls(gun, store, now, Metadata(root))
        repo._signers[root_key.canonical_id] = root_signer
        repo.targets[TARGETS] = Metadata(Targets(expires=format_expires(now + EXPIRY[TARGETS]), version=0))
        repo.dirty |= {ROOT, TARGETS}
        return repo

    @staticmethod
    def _root_signer_for_init(store: KeyStore, root_keyid: str | None, algorithm: str) -> CryptoSigner:
        if root_keyid:
            return store.load(root_keyid)[0]
        existing = sorted(k.keyid for k in store.list() if k.role == ROOT)
        if existing:
            return store.load(existing[0])[0]
        private = generate("ecdsa" if algorithm == "ed25519" else algorithm)  # root needs a certificate
        store.add(private, role=ROOT)
        return CryptoSigner(private)

    # ---- reading

    @property
    def is_new(self) -> bool:
        return self.root.signed.version == 0

    def delegation_roles(self) -> list[DelegationRole]:
        """Direct children of targets, in listed order."""
        top = self.targets.get(TARGETS)
        return list(top.signed.delegations.roles) if top else []

    def role_entry(self, role: str) -> tuple[dict[str, PublicKey], list[str], int]:
        """Keys, key IDs and threshold that sign ``role``."""
        if role in BASE_ROLES:
            keys, entry = self.root.signed.role_keys(role)
            return keys, entry.keyids, entry.threshold
        parent = self.targets[parent_role(role)].signed.delegations
        delegation = parent.role(role)
        if delegation is None:
            raise NotSignedError(f"{parent_role(role)} does not delegate to {role}")
        return parent.keys, delegation.keyids, delegation.threshold

    def held_keys(self, role: str) -> list[tuple[str, str]]:
        """(listed key ID, canonical ID) of the role's keys that the store holds."""
        keys, keyids, _ = self.role_entry(role)
        held = {k.keyid for k in self.store.list()}
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
            _, keyids, _ = self.role_entry(TARGETS)
            raise NoSigningKeyError(f"no key in the store can sign {self.gun}",
                                    hint=f"targets expects key {', '.join(k[:12] for k in keyids)}")
        roles = [d.name for d in delegations if self.held_keys(d.name)]
        if not roles:
            wanted = "; ".join(f"{d.name}: {', '.join(k[:12] for k in d.keyids)}" for d in delegations)
            raise NoSigningKeyError(f"none of your keys can sign {target} in {self.gun}",
                                    hint=f"roles that could sign it and the key IDs they expect: {wanted}")
        return roles

    # ---- editing

    def _editable(self, role: str) -> Targets:
        if role not in self.targets:
            if role == TARGETS:
                raise NotSignedError(f"{self.gun} has no targets metadata")
            # A delegation listed by its parent but never published starts empty.
            self.role_entry(role)
            self.targets[role] = Metadata(Targets(expires=format_expires(self.now + EXPIRY[TARGETS]), version=0))
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
            roles = [r for r in candidates if r in self.targets and name in self.targets[r].signed.targets
                     and self.held_keys(r)]
            if not roles:
                holders = [r for r in candidates if r in self.targets and name in self.targets[r].signed.targets]
                if not holders:
                    raise NotSignedError(f"{name} is not signed in {self.gun}")
                raise NoSigningKeyError(f"none of your keys can remove {name} from {self.gun}",
                                        hint=f"it is signed in {', '.join(holders)}")
        for role in roles:
            self._editable(role).targets.pop(name, None)
        return roles

    # ---- signing

    def _signer(self, canonical_id: str) -> Signer:
        if canonical_id not in self._signers:
            self._signers[canonical_id] = self.store.load(canonical_id)[0]
        return self._signers[canonical_id]

    def _sign(self, role: str, meta: Metadata) -> bytes:  # type: ignore[type-arg]
        held = self.held_keys(role)
        _, keyids, threshold = self.role_entry(role)
        if not held:
            raise NoSigningKeyError(f"no key in the store can sign {role} of {self.gun}",
                                    hint=f"{role} expects key {', '.join(k[:12] for k in keyids)}")
        signers = [(self._signer(canonical), listed) for listed, canonical in held]
        if role == ROOT:
            signers += [(s, k) for s in self.root_signers for k in [s.public_key.keyid]]
        # Keep other keys' valid signatures so threshold roles can collect them one by one.
        return meta.sign(signers, replace=threshold <= 1)

    def publish_files(self) -> dict[str, bytes]:
        """Sign every changed role and return ``{role: file bytes}`` for the server."""
        files: dict[str, bytes] = {}
        root = self.root.signed
        # Near expiry, root is re-signed by whoever holds its key (as notary does); a delegate
        # without it is not blocked, and sees the expiry warning instead.
        near_expiry = root.expires_at - self.now < ROOT_RESIGN_WINDOW and bool(self.held_keys(ROOT))
        if ROOT in self.dirty or self.is_new or near_expiry:
            root.version += 1
            root.set_expiry(self.now + EXPIRY[ROOT])
            files[ROOT] = self._sign(ROOT, self.root)
        for role in sorted(self.dirty - {ROOT}, key=lambda r: r.count("/")):
            meta = self.targets[role]
            meta.signed.version += 1
            meta.signed.set_expiry(self.now + EXPIRY[TARGETS])
            files[role] = self._sign(role, meta)
        if self._holds_snapshot_key() and files:
            files[SNAPSHOT] = self._sign_snapshot(files)
        self.dirty.clear()
        return files

    def _holds_snapshot_key(self) -> bool:
        try:
            return bool(self.held_keys(SNAPSHOT))
        except KeyNotFoundError:
            return False

    def _sign_snapshot(self, files: dict[str, bytes]) -> bytes:
        previous = self.snapshot.signed if self.snapshot else None
        meta = dict(previous.meta) if previous else {}
        current = {ROOT: self.root.raw, **{r: m.raw for r, m in self.targets.items()}}
        for role, data in {**current, **files}.items():
            if data is not None:
                meta[role] = FileMeta.for_bytes(data)
        snapshot = Snapshot(expires=format_expires(self.now + EXPIRY[SNAPSHOT]),
                            version=(previous.version if previous else 0) + 1, meta=meta)
        self.snapshot = Metadata(snapshot)
        return self._sign(SNAPSHOT, self.snapshot)
