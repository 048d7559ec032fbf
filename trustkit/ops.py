"""Layer `notary` (clients): the content-trust operations as a library.

``content_trust_enabled`` is the one switch push and tag consult.  ``TrustSession`` ties a
GUN to its server, key store and cache; the functions below are what ``trustkit init``,
``sign``, ``revoke``, ``verify`` and ``inspect`` do, without printing anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from trustkit.client.staging import Staging, choose_staging, staged_problem
from trustkit.client.updater import Updater
from trustkit.errors import (
    DigestMismatchError,
    ImmutableTagError,
    ManifestMissingError,
    NotSignedError,
    ServerRejectedError,
    ThresholdError,
    TrustkitError,
)
from trustkit.keys.public import PublicKey
from trustkit.keys.store import KeyStore
from trustkit.metadata import FileMeta, Metadata, SigningRule, Targets
from trustkit.reference import ImageReference
from trustkit.roles import RELEASES, ROOT, SNAPSHOT, TARGETS, TIMESTAMP
from trustkit.trust.drift import RegistryState, compare_with_registry
from trustkit.trust.repository import ROOT_RESIGN_WINDOW, Repository, key_names
from trustkit.trust.resolution import DelegationTree, released_tags
from trustkit.trust.trusted_set import TrustedSet, TrustPinning

EXPIRY_WARNING = timedelta(days=30)
REPO_ADMIN = "Repo Admin"
_FALSE = {"0", "f", "false", "no", "off"}


def content_trust_enabled(flag: bool | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """Whether push/tag must sign: an explicit ``--sign``/``--disable-content-trust`` wins; else
    ``DOCKER_CONTENT_TRUST`` as docker reads it (any non-empty value that is not false)."""
    if flag is not None:
        return flag
    value = (os.environ if environ is None else environ).get("DOCKER_CONTENT_TRUST", "").strip()
    return bool(value) and value.lower() not in _FALSE


@dataclass(frozen=True)
class TagTarget:
    """A tag to sign: the manifest digest (hex, no ``sha256:``) and size."""

    tag: str
    digest: str
    size: int

    def file_meta(self) -> FileMeta:
        return FileMeta.for_digest(self.digest, self.size)


@dataclass(frozen=True)
class CreatedKey:
    """A key a first initialisation made and stored."""

    keyid: str  # the private key's ID (its file name)
    role: str  # root, targets or snapshot
    path: Path
    listed_id: str  # the ID root lists and inspect shows (a root key's certificate)

    def describe(self) -> str:
        what = "root key" if self.role == ROOT else "repository key" if self.role == TARGETS else f"{self.role} key"
        other = f" [{self.keyid[:12]}]" if self.listed_id != self.keyid else ""
        return f"{what} {self.listed_id[:12]}{other} in {self.path}"


def created_keys_notice(keys: list[CreatedKey]) -> list[str]:
    """What a first signed push or sign tells the user it created, and the backup it needs."""
    if not keys:
        return []
    lines = [f"Created {key.describe()}" for key in keys]
    root = [key for key in keys if key.role == ROOT]
    if root:
        lines.append(
            f"Back up the root key offline now: `trustkit key export {root[0].keyid[:12]} -o FILE` to a "
            "medium you keep offline (without it the repository's keys can never be rotated)"
        )
    return lines


@dataclass
class TrustSession:
    """Everything needed to work on one GUN's trust data."""

    reference: ImageReference
    client: Any  # notary.NotaryClient (or anything with its methods)
    store: KeyStore
    trust_dir: Path
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    pinning: TrustPinning | None = None
    staging_dir: Path | None = None  # where partly signed threshold roles wait for co-signers
    last_trusted: TrustedSet | None = None  # what the last load validated
    pending: dict[str, str] = field(default_factory=dict)  # set by publish: role -> where it is staged
    staging_notes: list[str] = field(default_factory=list)  # set by publish: what staging replaced or skipped
    _staging: Staging | None = field(default=None, repr=False)
    created_keys: list[CreatedKey] = field(default_factory=list)  # set by publish: a first init's new keys
    offline: bool = False  # edit the cached trust data and keep the result pending (trustkit.offline)

    def warnings(self, *, skip: frozenset[str] | set[str] = frozenset()) -> list[str]:
        """Expiry warnings for the data last loaded, leaving out roles just re-signed."""
        if self.last_trusted is None:
            return []
        return [w for role, w in expiry_warnings(self.last_trusted, self.now) if role not in skip]

    @property
    def gun(self) -> str:
        return self.reference.gun

    def updater(self) -> Updater:
        return Updater(self.client, self.gun, self.trust_dir, now=self.now, pinning=self.pinning)

    def load(
        self, *, delegations: str = "all", offline: bool = False, allow_expired: bool = False
    ) -> TrustedSet | None:
        """The validated trust data, or None when the repository has none yet.
        ``allow_expired`` is for editing (re-signing expired roles), never for trusting."""
        updater = self.updater()
        offline = offline or self.offline
        try:
            trusted = (
                updater.load_offline(delegations=delegations, allow_expired=allow_expired)
                if offline
                else updater.refresh(delegations=delegations, allow_expired=allow_expired)
            )
        except NotSignedError:
            if offline:
                raise
            return None
        self.last_trusted = trusted
        return trusted

    def repository(
        self,
        *,
        initialize: bool = True,
        local_snapshot: bool = False,
        root_keyid: str | None = None,
        targets_keyid: str | None = None,
    ) -> Repository:
        """The repository to edit; a new one (docker's defaults) when the server has none.
        Expired roles are loaded too: editing is how they get re-signed (notary #1662)."""
        trusted = self.load(allow_expired=True)
        if trusted is not None:
            return self.editable(trusted)
        if not initialize:
            raise NotSignedError(f"no trust data for {self.gun}", hint=f"run `trustkit init {self.reference.familiar}`")
        server_keys = {TIMESTAMP: self.client.get_key(TIMESTAMP)}
        if not local_snapshot:
            server_keys[SNAPSHOT] = self.client.get_key(SNAPSHOT)
        return Repository.initialize(
            self.gun, self.store, self.now, server_keys=server_keys, root_keyid=root_keyid, targets_keyid=targets_keyid
        )

    def staging(self) -> Staging:
        """Where partly signed roles wait (trustkit.client.staging.choose_staging): --staging-dir,
        else the trust server's staging area when it has one, else the trust dir's folder."""
        if self._staging is None:
            self._staging = choose_staging(self.client, self.gun, self.staging_dir, self.trust_dir)
        return self._staging

    def editable(self, trusted: TrustedSet) -> Repository:
        """``trusted`` to edit; offline, with the changes already pending on top (online, those
        must be published first: trustkit.offline.editable_repository)."""
        from trustkit.offline import editable_repository

        return editable_repository(self, trusted)

    def publish(self, repo: Repository) -> list[str]:
        """Sign what changed and upload it.  Roles short of their threshold are staged instead
        (``pending``); a version another signer staged is co-signed when it carries only valid
        signatures by the role's keys and this publish would produce the same content."""
        if self.offline:  # signed, and kept for `trustkit publish`: nothing goes to the server
            from trustkit.offline import keep_pending

            return keep_pending(self, repo)
        offered = {}
        for role in sorted(repo.dirty):
            if _threshold(repo, role) > 1:  # only threshold roles are ever staged: no request otherwise
                data = self.staging().get(role)
                if data is not None and self._usable_staged(repo, role, data):
                    repo.offer_staged(role, data)
                    offered[role] = repo.staged[role]
        files = repo.publish_files()
        # Written only now that every passphrase was asked and the roles are signed: an abort
        # before leaves no key file (and a failed upload leaves keys the next run reuses).
        listed = {key.canonical_id: keyid for keyid, key in repo.root.signed.keys.items()}
        for new in repo.save_new_keys():
            path = self.store.private_dir / f"{new.keyid}.key"
            self.created_keys.append(CreatedKey(new.keyid, new.role, path, listed.get(new.keyid, new.keyid)))
        if files:
            self.client.publish(files)
        for role, staged in offered.items():
            if role in files:
                self.staging().clear(role, staged.signed.version)
            elif repo.targets.get(role) is not staged:
                self.staging_notes.append(
                    f"the {role} staged {self.staging().location(role)} (version {staged.signed.version}) was for "
                    "other content than this change; it is replaced, and its signers must sign again"
                )
        for role, data in repo.pending.items():
            self.staging().put(role, data)
            self.pending[role] = self.staging().location(role)
        return sorted(files)

    def _usable_staged(self, repo: Repository, role: str, data: bytes) -> bool:
        """A staged version a co-signer may build on: it parses and every signature on it is a
        valid one by the role's keys.  Anything else is noted and signed afresh."""
        keys, keyids, threshold = repo.role_entry(role)
        try:
            meta = Metadata.from_bytes(data, role=role)
        except TrustkitError as exc:
            problem: str | None = str(exc)
        else:
            problem = staged_problem(meta, SigningRule(role, keys, tuple(keyids), threshold))
        if problem is not None:
            self.staging_notes.append(f"the {role} staged {self.staging().location(role)} is not used: {problem}")
        return problem is None


# ---- operations


def _threshold(repo: Repository, role: str) -> int:
    """How many signatures ``role`` needs (0: nobody delegates it yet)."""
    try:
        return repo.role_entry(role)[2]
    except TrustkitError:
        return 0


def init_repository(
    session: TrustSession,
    *,
    local_snapshot: bool = False,
    root_keyid: str | None = None,
    targets_keyid: str | None = None,
) -> list[str]:
    """Initialise and publish trust for a repository that has none.  ``root_keyid`` and
    ``targets_keyid`` are key IDs of the store or key URIs (a PKCS#11 token, a KMS: registered
    in the store as references when new).

    Raises:
        TrustkitError: when it is already initialised, or anything underneath fails.
    """
    if session.load() is not None:
        raise TrustkitError(
            f"{session.gun} is already initialised on the trust server",
            hint="use `trustkit key rotate` to change its keys",
        )
    store = session.store
    root_keyid = store.resolve(root_keyid, role=ROOT) if root_keyid else None
    targets_keyid = store.resolve(targets_keyid, role=TARGETS, gun=session.gun) if targets_keyid else None
    repo = session.repository(local_snapshot=local_snapshot, root_keyid=root_keyid, targets_keyid=targets_keyid)
    return session.publish(repo)


@dataclass
class SignResult:
    signed: dict[str, list[str]]  # tag -> roles signed into
    published: list[str]  # roles uploaded
    warnings: list[str]
    pending: dict[str, str] = field(default_factory=dict)  # roles waiting for more signatures: where


def sign_tags(session: TrustSession, targets: list[TagTarget], *, initialize: bool = True) -> SignResult:
    """Sign tags in one publish."""
    if not targets:
        raise TrustkitError("nothing to sign")
    repo = session.repository(initialize=initialize)
    signed = {t.tag: repo.add_target(t.tag, t.file_meta()) for t in targets}
    published = session.publish(repo)
    warnings = session.warnings(skip=set(published)) + session.staging_notes
    return SignResult(signed, published, warnings, dict(session.pending))


def revoke(session: TrustSession, tag: str | None) -> dict[str, list[str]]:
    """Remove one tag (or every signed tag) from the roles this user can sign; publish."""
    trusted = session.load()
    if trusted is None:
        raise NotSignedError(f"no trust data for {session.gun}")
    repo = session.editable(trusted)
    if tag is not None:
        removed = {tag: repo.remove_target(tag)}
    else:
        tags = sorted({name for meta in repo.targets.values() for name in meta.signed.targets})
        if not tags:
            raise NotSignedError(f"no signed tags in {session.gun}")
        removed = {name: repo.remove_target(name) for name in tags}
    session.publish(repo)
    return removed


@dataclass(frozen=True)
class VerifiedTag:
    tag: str
    digest: str  # hex
    size: int
    role: str  # targets/releases or targets
    warnings: list[str] = field(default_factory=list)


def released_target(trusted: TrustedSet, tag: str) -> tuple[str, FileMeta] | None:
    """What ``docker pull`` resolves ``tag`` to (§9), paths honoured: see trustkit.trust.resolution."""
    found = DelegationTree.of(trusted.targets).docker_lookup(tag)
    return (found.role, found.meta) if found is not None else None


def verify_tag(session: TrustSession, tag: str, *, digest: str | None = None, offline: bool = False) -> VerifiedTag:
    """The trusted digest and size of ``tag``, or an error that says why it is not trusted.

    Raises:
        NotSignedError (no trust data / tag not signed), DigestMismatchError, ExpiredError,
        ThresholdError/VerificationError, NetworkError, NotAuthorizedError.
    """
    trusted = session.load(delegations="releases", offline=offline)
    if trusted is None:
        raise NotSignedError(f"no trust data for {session.gun}")
    found = released_target(trusted, tag)
    if found is None:
        if RELEASES in trusted.failed:
            raise trusted.failed[RELEASES]
        _raise_if_pending(session, trusted, tag)
        raise NotSignedError(
            f"no trust data for {session.reference.familiar}:{tag}",
            hint="the tag is not signed in targets/releases or targets",
        )
    role, meta = found
    trusted_digest = meta.sha256_hex
    if trusted_digest is None:
        raise NotSignedError(f"{tag} has no sha256 digest in {role}")
    if digest is not None and digest.removeprefix("sha256:") != trusted_digest:
        raise DigestMismatchError(
            f"{session.reference.familiar}:{tag} is signed for sha256:{trusted_digest}, not {digest}"
        )
    return VerifiedTag(tag, trusted_digest, meta.length, role, session.warnings())


def check_registry(
    reference: ImageReference, verified: VerifiedTag, find_manifest: Callable[[str], str | None]
) -> list[str]:
    """Compare the signed digest with what the registry serves for the tag now (``find_manifest``
    answers a tag or digest with the served digest, or None).  Returns warnings.

    Raises:
        DigestMismatchError: the registry's tag points at another manifest (drift).
        ManifestMissingError: the signed manifest is gone, so a content-trust pull fails.
    """
    name = f"{reference.familiar}:{verified.tag}"
    check = compare_with_registry(f"sha256:{verified.digest}", verified.tag, find_manifest)
    if check.state is RegistryState.SERVED:
        return []
    if check.state is RegistryState.DRIFTED:
        raise DigestMismatchError(
            f"the registry serves {name} as {check.served}, but it is signed for {check.signed}",
            hint="a content-trust pull gets the signed one"
            if check.signed_present
            else "the signed manifest is gone from the registry too: a content-trust pull fails",
        )
    if check.state is RegistryState.MISSING:
        raise ManifestMissingError(
            f"{name} is signed for {check.signed}, but the registry has neither the tag nor that manifest",
            hint="a content-trust pull fails; push the signed image again",
        )
    return [f"the registry has no tag {name}; a content-trust pull still gets the signed {check.signed}"]


def _raise_if_pending(session: TrustSession, trusted: TrustedSet, tag: str) -> None:
    """A tag that waits for more signatures (staged): say how many it has, and whose.  Only adds
    to the verdict: a staging place that cannot be read leaves the "not signed" answer as it is."""
    try:
        changes = pending_changes(session, trusted, roles=[RELEASES, TARGETS])
    except TrustkitError:
        return
    for change in changes:
        if tag in change.added or tag in change.changed:
            raise ThresholdError(
                f"{session.reference.familiar}:{tag} has {len(change.signed_by)} of the {change.threshold} "
                f"signatures {change.role} needs",
                hint=f"the rest are pending {change.location}; {change.signers_text()}",
            )


@dataclass(frozen=True)
class PendingChange:
    """A staged version of a role, checked by this client against its trusted data."""

    role: str
    version: int
    threshold: int
    signed_by: list[str]  # key IDs as inspect shows them (12 characters)
    location: str  # "on the trust server URL" or the staging file
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def signers_text(self) -> str:
        return f"signed by {', '.join(self.signed_by)}" if self.signed_by else "no valid signature yet"

    def describe(self) -> str:
        what = [f"adds {', '.join(self.added)}" if self.added else ""]
        what += [f"changes {', '.join(self.changed)}" if self.changed else ""]
        what += [f"removes {', '.join(self.removed)}" if self.removed else ""]
        edits = "; ".join(w for w in what if w) or "re-signs it"
        return (
            f"{self.role} version {self.version} is pending {self.location}: {edits}; "
            f"{len(self.signed_by)} of {self.threshold} signatures ({self.signers_text()})"
        )


def _threshold_roles(trusted: TrustedSet) -> set[str]:
    """The roles ``trusted`` knows of that need more than one signature."""
    roles = {TARGETS} if trusted.root.signed.roles[TARGETS].threshold > 1 else set()
    for meta in (*trusted.targets.values(), *trusted.short_of_threshold.values()):
        roles |= {entry.name for entry in meta.signed.delegations.roles if entry.threshold > 1}
    return roles


def pending_changes(
    session: TrustSession, trusted: TrustedSet, *, roles: list[str] | None = None
) -> list[PendingChange]:
    """The staged versions of ``roles`` (default: every staged role) that build on ``trusted``:
    one version up, for a role it delegates.  Signatures are counted here, against the trusted
    keys; what the staging place says about them is not believed.  A repository whose roles all
    need one signature has nothing staged: then the staging place is not even asked."""
    needing_more = _threshold_roles(trusted)
    if not needing_more or (roles is not None and not needing_more & set(roles)):
        return []
    staging = session.staging()
    roles = roles if roles is not None else staging.roles()
    listed = trusted.snapshot.signed.meta if trusted.snapshot is not None else {}
    if session.client is not None and any(
        r in listed and r not in trusted.targets and r not in trusted.short_of_threshold for r in roles
    ):
        trusted = session.load() or trusted  # verify read only targets/releases: the others' versions are needed
    out = []
    for role in roles:
        rule = trusted.signing_rule(role)
        data = staging.get(role) if rule is not None else None
        if rule is None or data is None:
            continue
        try:
            staged: Metadata[Targets] = Metadata.from_bytes(data, role=role)
        except TrustkitError:
            continue
        current = trusted.targets.get(role) or trusted.short_of_threshold.get(role)
        before = current.signed.targets if current is not None else {}
        if staged.signed.version != (current.signed.version if current is not None else 0) + 1:
            continue  # stale: the role moved on since it was staged
        after = staged.signed.targets
        signed = sorted(staged.verify_by(rule).signed)
        out.append(
            PendingChange(
                role,
                staged.signed.version,
                rule.threshold,
                key_names(role, rule.keys, signed).split(", ") if signed else [],
                staging.location(role),
                added=sorted(t for t in after if t not in before),
                changed=sorted(t for t in after if t in before and before[t] != after[t]),
                removed=sorted(t for t in before if t not in after),
            )
        )
    return out


def inspect(trusted: TrustedSet | None, name: str) -> dict[str, Any] | None:
    """The ``docker trust inspect`` entry for one repository (None when it has no trust data)."""
    if trusted is None:
        return None
    signed_tags = [
        {
            "SignedTag": row.tag,
            "Digest": row.digest,
            "Signers": sorted(s.removeprefix("targets/") for s in row.signers) or [REPO_ADMIN],
        }
        for row in released_tags(DelegationTree.of(trusted.targets))
    ]
    top = trusted.targets.get(TARGETS)
    roles = top.signed.delegations.roles if top else []
    keys = top.signed.delegations.keys if top else {}
    signers = []
    for entry in sorted(roles, key=lambda r: r.name, reverse=True):  # names are unique within a parent
        if entry.name == RELEASES:
            continue
        ids = sorted({keys[k].canonical_id for k in entry.keyids if k in keys})
        signers.append({"Name": entry.name.removeprefix("targets/"), "Keys": [{"ID": i} for i in ids]})
    root = trusted.root.signed
    admin = [
        {"Name": "Root", "Keys": [{"ID": k} for k in sorted(root.roles[ROOT].keyids)]},
        {"Name": "Repository", "Keys": [{"ID": k} for k in sorted(root.roles[TARGETS].keyids)]},
    ]
    return {"Name": name, "SignedTags": signed_tags, "Signers": signers, "AdministrativeKeys": admin}


# ---- content trust for a push (trustkit.oci.push takes it as its PushSigning)


class PreparedSigning:
    """The repository to sign into, loaded (or initialised in memory) and with the keys that
    will sign already decrypted, so signing after the push cannot fail for a passphrase.

    Raises (from the constructor): whatever stops signing: an unreachable or refusing trust
    server, missing keys, no passphrase and no terminal, a wrong passphrase.
    """

    def __init__(self, session: TrustSession, tag: str) -> None:
        self.session = session
        self.tag = tag
        self.repo: Repository = session.repository()
        self.roles = self.repo.signable_roles(tag)
        needed = list(self.roles)
        root = self.repo.root.signed
        if self.repo.is_new or root.expires_at - self.repo.now < ROOT_RESIGN_WINDOW:
            needed.append(ROOT)
        needed.append(SNAPSHOT)
        for role in needed:
            try:
                held = self.repo.held_keys(role)
            except TrustkitError:
                continue
            for _, canonical in held:
                # Decrypt now (it asks for the passphrase) and keep the signer for the publish.
                self.repo._signer(canonical)  # noqa: SLF001 - the repository's own signer cache

    def check_immutable(self, digest: str) -> None:
        """Refuse when the repository is immutable and the tag is signed for another digest (the
        settings are read only in that case; a notary-server has none: never immutable)."""
        check_immutable_tag(
            self.session, self.tag, digest, lambda: bool(self.session.client.settings().get("immutable", False))
        )

    def sign(self, digest: str, size: int) -> list[str]:
        """Sign the tag for ``digest`` (``sha256:HEX``) and ``size``, publish; returns the roles.
        Someone else having published meanwhile makes it reload and sign again once."""
        target = TagTarget(self.tag, digest.removeprefix("sha256:"), size)
        roles = self.repo.add_target(self.tag, FileMeta.for_digest(target.digest, size), self.roles)
        try:
            self.session.publish(self.repo)
        except ServerRejectedError as exc:
            if exc.code != "VERSION":
                raise
            result = sign_tags(self.session, [target])
            return result.signed[self.tag]
        return roles


def check_immutable_tag(session: TrustSession, tag: str, digest: str, immutable: Callable[[], bool]) -> None:
    """Raise ImmutableTagError when ``tag`` is already signed for another digest and the
    repository is immutable (``immutable`` is only asked in that case)."""
    trusted = session.last_trusted
    if trusted is None:
        return
    found = released_target(trusted, tag)
    if found is None:
        return
    signed_hex = found[1].sha256_hex
    if signed_hex is None or signed_hex == digest.removeprefix("sha256:"):
        return
    if immutable():
        raise ImmutableTagError(
            f"{session.reference.familiar}:{tag} is already signed for sha256:{signed_hex} and the repository "
            "is immutable; nothing was pushed",
            hint="push under a new tag",
        )


def add_signer(
    session: TrustSession,
    name: str,
    keys: list[PublicKey],
    *,
    threshold: int | None = None,
    paths: list[str] | None = None,
) -> tuple[list[str], list[str]]:
    """Delegate to signer ``name`` (initialising the repository when needed); returns the
    roles published and warnings."""
    repo = session.repository()
    warnings = repo.add_delegation(name, keys, threshold=threshold, paths=paths)
    return session.publish(repo), warnings


def remove_signer(session: TrustSession, name: str, *, force: bool = False) -> tuple[list[str], list[str]]:
    repo = session.repository(initialize=False)
    warnings = repo.remove_delegation(name, force=force)
    return session.publish(repo), warnings


def rotate_key(session: TrustSession, role: str, *, server_managed: bool = False, key: str | None = None) -> PublicKey:
    """A new key for ``role``: local, or held by the server (snapshot, and always timestamp);
    ``key`` (a key ID of the store or a key URI) is the key to rotate to instead of a new one."""
    if role not in (ROOT, TARGETS, SNAPSHOT, TIMESTAMP):
        raise TrustkitError(
            f'rotate root, targets, snapshot or timestamp, not "{role}"',
            hint="delegation keys change with `trustkit signer add/remove`",
        )
    repo = session.repository(initialize=False)
    server_key = session.client.rotate_key(role) if role == TIMESTAMP or (server_managed and role == SNAPSHOT) else None
    if server_managed and role not in (SNAPSHOT, TIMESTAMP):
        raise TrustkitError(f"only snapshot and timestamp keys can be held by the server, not {role}")
    signer = session.store.signer(session.store.resolve(key, role=role, gun=session.gun))[0] if key else None
    new_key = repo.rotate(role, server_key=server_key, key=signer)
    session.publish(repo)
    return new_key


def refresh(session: TrustSession, *, roles: list[str] | None = None, window: timedelta = EXPIRY_WARNING) -> list[str]:
    """Re-sign the roles this user can sign that expire within ``window`` (or ``roles``),
    expired ones included: notary's ``witness`` plus publish."""
    repo = session.repository(initialize=False)
    chosen = roles if roles is not None else repo.expiring(window)
    if not chosen:
        return []
    repo.resign(chosen)
    session.publish(repo)
    return chosen


def roles_left_unsignable(store: KeyStore, keyid: str) -> list[str]:
    """``GUN role`` for every cached repository role that ``keyid`` signs and that no other
    key in the store can sign: what removing the key would cost (notary #1500).  Read from
    the local cache, so it covers the repositories this trust dir has worked with."""
    from trustkit.metadata import Root, Targets

    tuf = store.trust_dir / "tuf"
    held = {k.keyid for k in store.list()} - {keyid}
    out = []
    for path in sorted(tuf.rglob("metadata/root.json")) if tuf.is_dir() else []:
        folder = path.parent
        gun = folder.parent.relative_to(tuf).as_posix()
        listings: list[tuple[str, dict[str, PublicKey], list[tuple[str, list[str]]]]] = []
        for file in [path, *sorted(folder.rglob("targets*.json"))]:
            role = file.relative_to(folder).with_suffix("").as_posix()
            try:
                meta = Metadata.from_bytes(file.read_bytes(), role=role)
            except TrustkitError:
                continue
            if isinstance(meta.signed, Root):
                listings.append((gun, meta.signed.keys, [(r, e.keyids) for r, e in meta.signed.roles.items()]))
            elif isinstance(meta.signed, Targets):
                listings.append(
                    (gun, meta.signed.delegations.keys, [(d.name, d.keyids) for d in meta.signed.delegations.roles])
                )
        for gun_name, keys, roles in listings:
            for role, keyids in roles:
                canonical = {keys[k].canonical_id for k in keyids if k in keys}
                if keyid in canonical and not canonical & held:
                    out.append(f"{gun_name} {role}")
    return out


def expiry_warnings(trusted: TrustedSet, now: datetime, window: timedelta = EXPIRY_WARNING) -> list[tuple[str, str]]:
    """``(role, message)`` for every role that expires within ``window`` (timestamps are
    re-signed by the server, so they are left out)."""
    roles: list[tuple[str, Metadata[Any]]] = [(ROOT, trusted.root)]
    roles += [(SNAPSHOT, trusted.snapshot)] if trusted.snapshot else []
    roles += sorted(trusted.targets.items())
    out = []
    for role, meta in roles:
        left = meta.signed.expires_at - now
        if left < window:
            out.append(
                (
                    role,
                    f"{role} of {trusted.gun} expires in {max(left.days, 0)} days "
                    f"({meta.signed.expires}); its signers must re-sign it before then",
                )
            )
    return out


__all__ = [
    "CreatedKey",
    "PendingChange",
    "PreparedSigning",
    "SignResult",
    "TagTarget",
    "TrustSession",
    "VerifiedTag",
    "add_signer",
    "check_immutable_tag",
    "check_registry",
    "content_trust_enabled",
    "created_keys_notice",
    "expiry_warnings",
    "init_repository",
    "inspect",
    "pending_changes",
    "refresh",
    "released_target",
    "remove_signer",
    "revoke",
    "roles_left_unsignable",
    "rotate_key",
    "sign_tags",
    "verify_tag",
]
