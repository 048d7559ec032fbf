"""Layer `trust`: the client's trusted set, an I/O-free state machine (clock injected).

Metadata enters in notary's update order and each step is checked against what is already
trusted:

    root (chain, one version at a time) -> timestamp -> snapshot -> targets -> delegations

Defences (../shared/reference/reliability-scenarios.md §1, §7):
- rollback: no role's version may go below the version previously trusted (``previous``);
- freeze: timestamp, snapshot, targets and delegations must not be expired at ``now``;
- mix-and-match: snapshot must match the timestamp's hash and length, and every targets
  file the snapshot's, so files from different publishes cannot be combined;
- endless data: the caller passes each file's size cap (``MAX_*`` here, or the parent's length);
- key compromise: thresholds per role; root rotations need the old *and* the new root's
  threshold, as notary checks (§8), and root certificates must satisfy notary's rules (§3.5).

Nothing is accepted partially: an update method either returns the new trusted metadata or
raises, leaving the set as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from trustkit.errors import (
    ExpiredError,
    HashMismatchError,
    KeyFormatError,
    RollbackError,
    ThresholdError,
    VerificationError,
)
from trustkit.keys.certs import certificate_problem, cn_matches_gun, is_ca
from trustkit.keys.public import PublicKey
from trustkit.metadata import (
    FileMeta,
    Metadata,
    Root,
    SigningRule,
    Snapshot,
    Targets,
    Timestamp,
    VerifyResult,
    signing_rule_for,
)
from trustkit.roles import BASE_ROLES, ROOT, SNAPSHOT, TARGETS, TIMESTAMP, parent_role

MAX_ROOT_SIZE = 2 << 20  # roots with a few dozen certificates are ~50 KB
MAX_TIMESTAMP_SIZE = 1 << 20  # notary's own cap
MAX_ROOT_ROTATIONS = 32  # a server offering more in one update is not to be walked


@dataclass
class TrustPinning:
    """notary's ``trust_pinning`` (§6.4): certificate IDs or a CA per GUN, and TOFU on or off.

    Applied only on first contact; afterwards the cached root is the anchor.
    """

    certs: dict[str, list[str]] = field(default_factory=dict)  # GUN or "prefix*" -> cert key IDs
    ca: dict[str, bytes] = field(default_factory=dict)  # GUN prefix -> PEM CA bundle
    disable_tofu: bool = False

    def pinned_ids(self, gun: str) -> list[str] | None:
        if gun in self.certs:
            return self.certs[gun]
        wildcards = [p for p in self.certs if p.endswith("*") and gun.startswith(p[:-1])]
        return self.certs[max(wildcards, key=len)] if wildcards else None

    def ca_for(self, gun: str) -> bytes | None:
        prefixes = [p for p in self.ca if gun.startswith(p)]
        return self.ca[max(prefixes, key=len)] if prefixes else None


def root_signing_keys(root: Root, gun: str, now: datetime | None) -> dict[str, PublicKey]:
    """The root role's keys that notary would count: certificate bundles whose leaf comes
    first, matches the GUN and (when ``now`` is given) is currently valid.

    Raises:
        VerificationError: no such key, with notary's wording.
    """
    usable: dict[str, PublicKey] = {}
    reasons = []
    for keyid in root.roles[ROOT].keyids:
        key = root.keys[keyid]
        if not key.is_certificate:
            reasons.append(f"{keyid[:12]} is a bare key, not a certificate")
            continue
        try:
            certs = key.certificates
        except KeyFormatError as exc:
            reasons.append(f"{keyid[:12]}: {exc}")
            continue
        leaf = certs[0]
        if is_ca(leaf) or any(not is_ca(c) for c in certs[1:]):
            reasons.append(f"{keyid[:12]} must hold one leaf certificate, first")
        elif not cn_matches_gun(leaf, gun):
            reasons.append(f"{keyid[:12]} is for another repository (CN does not match {gun})")
        elif now is not None and (problem := certificate_problem(leaf, now)):
            reasons.append(f"{keyid[:12]}: {problem}")
        else:
            usable[keyid] = key
    if not usable:
        raise VerificationError(
            "could not validate the path to a trusted root: unable to retrieve valid leaf certificates",
            hint="; ".join(reasons) or None,
        )
    return usable


class TrustedSet:
    """What a client trusts for one GUN at one moment."""

    def __init__(
        self,
        root_data: bytes,
        *,
        gun: str,
        now: datetime,
        previous: Mapping[str, int] | None = None,
        pinning: TrustPinning | None = None,
        first_contact: bool = False,
        allow_expired: bool = False,
    ) -> None:
        """Start from a root: the cached one, or (``first_contact``) one just downloaded, which
        is then checked against ``pinning``.

        ``previous`` maps role names to the versions trusted before (from the cache) for the
        rollback checks; it is only read (the updater passes a lazy mapping), never copied.
        ``allow_expired`` is for editing only (re-signing expired data, as the notary server
        itself loads it); reading for trust never sets it.
        """
        self.allow_expired = allow_expired
        self.gun = gun
        self.now = now
        self.previous: Mapping[str, int] = previous if previous is not None else {}
        self._floors_reset: set[str] = set()  # roles whose keys a root rotation replaced
        self.timestamp: Metadata[Timestamp] | None = None
        self.snapshot: Metadata[Snapshot] | None = None
        self.targets: dict[str, Metadata[Targets]] = {}
        self.failed: dict[str, VerificationError] = {}  # delegations that did not verify, and why
        # Those delegations as the server holds them (signed, but short of their threshold):
        # never read for trust, only as the version and content the next co-signer builds on.
        self.short_of_threshold: dict[str, Metadata[Targets]] = {}
        root = Metadata.from_bytes(root_data, role=ROOT, max_size=MAX_ROOT_SIZE)
        # A cached root is trusted as it is (its certificates may have aged); a new one must
        # meet every rule, and pinning decides whether to trust it at all.
        keys = root_signing_keys(root.signed, gun, now if first_contact else None)
        if first_contact:
            keys = self._apply_pinning(root, keys, pinning or TrustPinning())
        self._require(root.verify(keys, list(keys), root.signed.roles[ROOT].threshold, ROOT))
        self.root: Metadata[Root] = root
        self.root_data = root_data

    # ---- root

    def _apply_pinning(
        self, root: Metadata[Root], keys: dict[str, PublicKey], pinning: TrustPinning
    ) -> dict[str, PublicKey]:
        pinned = pinning.pinned_ids(self.gun)
        if pinned is not None:
            chosen = {k: v for k, v in keys.items() if k in pinned}
            if not chosen:
                raise VerificationError(
                    f"the root of {self.gun} is not signed by a pinned certificate",
                    hint=f"pinned IDs: {', '.join(p[:12] for p in pinned)}",
                )
            return chosen
        ca_pem = pinning.ca_for(self.gun)
        if ca_pem is not None:
            chosen = {k: v for k, v in keys.items() if _chains_to(v, ca_pem, self.now)}
            if not chosen:
                raise VerificationError(f"the root certificates of {self.gun} do not chain to the pinned CA")
            return chosen
        if pinning.disable_tofu:
            raise VerificationError(
                f"no trust pinned for {self.gun} and trust on first use is disabled",
                hint="pin its root certificate or CA in the trust pinning config",
            )
        return keys

    def update_root(self, data: bytes) -> Metadata[Root]:
        """Accept the next root: exactly one version up, signed by the current root's threshold
        (rotation) and by its own.  Its expiry is checked by :meth:`check_root_fresh` once the
        chain has been walked, so an expired intermediate root does not break the walk."""
        new = Metadata.from_bytes(data, role=ROOT, max_size=MAX_ROOT_SIZE)
        current = self.root.signed
        if new.signed.version != current.version + 1:
            raise RollbackError(
                f"root version {new.signed.version} does not follow {current.version}",
                hint="the server must offer each root version in turn",
            )
        old_keys = root_signing_keys(current, self.gun, None)
        self._require(
            new.verify(old_keys, list(old_keys), current.roles[ROOT].threshold, "root (by the previous root)")
        )
        own = root_signing_keys(new.signed, self.gun, self.now)
        self._require(new.verify(own, list(own), new.signed.roles[ROOT].threshold, ROOT))

        # New keys for a role reset its rollback floor (TUF's fast-forward recovery): that is how
        # an owner recovers from a compromised key that pushed versions up.  Timestamp and
        # snapshot go together: the snapshot floor is only as good as the timestamp's key.
        def rotated(role: str) -> bool:
            return set(current.roles[role].keyids) != set(new.signed.roles[role].keyids)

        if rotated(TIMESTAMP) or rotated(SNAPSHOT):
            self._floors_reset |= {TIMESTAMP, SNAPSHOT}
        if rotated(TARGETS):
            self._floors_reset.add(TARGETS)
        self.root, self.root_data = new, data
        # New root keys may change which timestamp/snapshot/targets are valid: start over.
        self.timestamp, self.snapshot, self.targets = None, None, {}
        return new

    def check_root_fresh(self) -> None:
        if self.root.signed.is_expired(self.now) and not self.allow_expired:
            raise ExpiredError(
                f"the root metadata of {self.gun} expired at {self.root.signed.expires}",
                hint="the holder of the root key must re-sign root (notary witness root)",
            )

    # ---- timestamp, snapshot, targets

    def update_timestamp(self, data: bytes) -> Metadata[Timestamp]:
        new = Metadata.from_bytes(data, role=TIMESTAMP, max_size=MAX_TIMESTAMP_SIZE)
        self._verify_with_root(new, TIMESTAMP)
        self._check_version(new, TIMESTAMP)
        self._check_fresh(new, TIMESTAMP)
        self.timestamp = new
        return new

    def update_snapshot(self, data: bytes) -> Metadata[Snapshot]:
        if self.timestamp is None:
            raise VerificationError("snapshot loaded before timestamp")
        self._check_hash(data, self.timestamp.signed.snapshot_meta, SNAPSHOT)
        new = Metadata.from_bytes(data, role=SNAPSHOT)
        self._verify_with_root(new, SNAPSHOT)
        self._check_version(new, SNAPSHOT)
        self._check_fresh(new, SNAPSHOT)
        # The snapshot must vouch for the root we hold, or root and targets could be mixed.
        # (Readers fetch root.json first, so a mismatch is a mix, not a rotation not yet seen.)
        problem = new.signed.meta[ROOT].matches(self.root_data)
        if problem is not None:
            raise HashMismatchError(
                f"the snapshot of {self.gun} lists a different root than the trusted one ({problem})"
            )
        self.snapshot = new
        return new

    def update_targets(self, data: bytes, role: str = TARGETS) -> Metadata[Targets]:
        """Accept ``targets`` or a delegation; a delegation's parent must already be trusted."""
        if self.snapshot is None:
            raise VerificationError(f"{role} loaded before snapshot")
        meta = self.snapshot.signed.meta.get(role)
        if meta is None:
            raise VerificationError(f"the snapshot of {self.gun} does not list {role}")
        self._check_hash(data, meta, role)
        new = Metadata.from_bytes(data, role=role, max_size=meta.length)
        if role == TARGETS:
            self._verify_with_root(new, TARGETS)
        else:
            parent = self.targets.get(parent_role(role))
            if parent is None:
                raise VerificationError(f"{role} loaded before its parent {parent_role(role)}")
            rule = parent.signed.delegations.signing_rule(role)
            if rule is None:
                raise VerificationError(f"{parent_role(role)} does not delegate to {role}")
            self._require(new.verify_by(rule))
        self._check_version(new, role)
        self._check_fresh(new, role)
        self.targets[role] = new
        return new

    def listed(self, role: str) -> FileMeta | None:
        """What the trusted snapshot lists for ``role`` (None: never published, nothing signed
        in it yet).  A role trusted before that the snapshot stops listing is a rollback: hiding
        a delegation would make readers fall back to older tags."""
        if self.snapshot is None:
            raise VerificationError(f"{role} looked up before snapshot")
        meta = self.snapshot.signed.meta.get(role)
        if meta is None and role not in self._floors_reset and (before := self.previous.get(role)) is not None:
            raise RollbackError(
                f"the snapshot of {self.gun} no longer lists {role}, trusted before at version {before}",
                hint="the server (or someone in between) is serving old metadata",
            )
        return meta

    def update_delegation(self, data: bytes, role: str, *, stale_ok: bool = False) -> Metadata[Targets] | None:
        """:meth:`update_targets` for a delegation, which may sign nothing without failing the
        repository: short of its threshold it is recorded in ``failed`` (and
        ``short_of_threshold``, the content a co-signer builds on) and None is returned.
        ``stale_ok`` (reading the cache offline) treats a file that no longer matches the snapshot
        the same way: online it failed, and its old file stayed cached."""
        try:
            return self.update_targets(data, role)
        except ThresholdError as exc:
            self.failed[role] = exc
            self.short_of_threshold[role] = Metadata.from_bytes(data, role=role)
        except HashMismatchError as exc:
            if not stale_ok:
                raise
            self.failed[role] = exc
        return None

    def signing_rule(self, role: str) -> SigningRule | None:
        """Who may sign ``role`` as trusted now (a delegation's parent must be trusted)."""
        parent = self.targets.get(parent_role(role)) if role not in BASE_ROLES else None
        return signing_rule_for(role, self.root.signed, parent.signed if parent is not None else None)

    # ---- checks

    def _verify_with_root(self, meta: Metadata[Any], role: str) -> None:
        self._require(meta.verify_by(self.root.signed.signing_rule(role)))

    @staticmethod
    def _require(result: VerifyResult) -> None:
        if not result:
            result.raise_for_threshold()

    def _check_version(self, meta: Metadata[Any], role: str) -> None:
        before = None if role in self._floors_reset else self.previous.get(role)
        if before is not None and meta.signed.version < before:
            raise RollbackError(
                f"{role} version {meta.signed.version} is older than the trusted version {before}",
                hint="the server (or someone in between) is serving old metadata",
            )

    def _check_fresh(self, meta: Metadata[Any], role: str) -> None:
        if meta.signed.is_expired(self.now) and not self.allow_expired:
            raise ExpiredError(f"the {role} metadata of {self.gun} expired at {meta.signed.expires}")

    def _check_hash(self, data: bytes, meta: FileMeta, role: str) -> None:
        problem = meta.matches(data)
        if problem:
            raise HashMismatchError(f"{role} does not match what its parent lists: {problem}")

    @property
    def versions(self) -> dict[str, int]:
        out = {ROOT: self.root.signed.version}
        if self.timestamp:
            out[TIMESTAMP] = self.timestamp.signed.version
        if self.snapshot:
            out[SNAPSHOT] = self.snapshot.signed.version
        out.update({role: meta.signed.version for role, meta in self.targets.items()})
        return out


def _chains_to(key: PublicKey, ca_pem: bytes, now: datetime) -> bool:
    """Whether the certificate bundle ``key`` (leaf first, then intermediates) chains to a CA in
    ``ca_pem`` at ``now``, by the one strict chain walk (CA flag, path length, validity)."""
    from cryptography import x509

    from trustkit.keys.certs import verified_chain

    try:
        cas = x509.load_pem_x509_certificates(ca_pem)
        chain = key.certificates
        verified_chain(chain[0], chain[1:], cas, now=now)
    except (ValueError, KeyFormatError):
        return False
    return True


__all__ = [
    "MAX_ROOT_ROTATIONS",
    "MAX_ROOT_SIZE",
    "MAX_TIMESTAMP_SIZE",
    "TrustPinning",
    "TrustedSet",
    "root_signing_keys",
]
