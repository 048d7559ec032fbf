"""Layer `server`: take over a notary-server + notary-signer deployment in place.

Reads notary-server's ``tuf_files`` (every version of every role of every GUN, with its date)
and ``changefeed``, and notary-signer's ``private_keys`` (JWE, PBES2-HS256+A128KW key wrapping,
A256GCM content, the passphrase in ``NOTARY_SIGNER_<ALIAS>`` as notary-signer reads it), checks
each repository (root chain, every file's signatures, the server keys the current root lists),
and writes it into trustkit's database: one transaction per repository, so an interrupted run
leaves whole repositories or none, and a re-run adds only what is new.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import load_der_private_key
from jwcrypto import jwe, jwk  # type: ignore[import-untyped]  # jwcrypto ships no type information
from jwcrypto.common import JWException  # type: ignore[import-untyped]  # as above

from trustkit.encoding import b64encode
from trustkit.errors import KeyFormatError, MetadataError, TrustkitError, VerificationError
from trustkit.keys.pkcs8 import PrivateKey, encode_key_file
from trustkit.keys.public import PublicKey
from trustkit.metadata import Metadata, Root, SigningRule, Targets
from trustkit.roles import BASE_ROLES, ROOT, SNAPSHOT, TIMESTAMP, is_delegation, parent_role
from trustkit.server.storage import ImportedChange, ImportedFile, ImportedKey, Storage, VersionConflict
from trustkit.trust.trusted_set import root_signing_keys

SERVER_ROLES = (TIMESTAMP, SNAPSHOT)
KEY_WRAPPING = "PBES2-HS256+A128KW"  # what notary-signer's SQL key store writes
CONTENT_ENCRYPTION = "A256GCM"
MAX_KEY_TEXT = 64 << 10  # a JWE of one private key is a few hundred bytes


# --------------------------------------------------------------------------------------------
# notary-signer's keys


def passphrase_variable(alias: str) -> str:
    """The environment variable notary-signer reads the passphrase of ``alias`` from."""
    return f"NOTARY_SIGNER_{alias.upper()}"


def decrypt_signer_key(text: str, passphrase: str) -> bytes:
    """The private key bytes inside one of notary-signer's JWE compact serializations.

    Raises:
        KeyFormatError: not such a JWE, another algorithm, or the wrong passphrase.
    """
    if len(text) > MAX_KEY_TEXT:
        raise KeyFormatError("the encrypted key is larger than any private key")
    token = jwe.JWE()
    try:
        token.deserialize(text.strip())
        header = token.jose_header
        if header.get("alg") != KEY_WRAPPING or header.get("enc") != CONTENT_ENCRYPTION:
            raise KeyFormatError(
                f"the key is encrypted with {header.get('alg')}/{header.get('enc')}, "
                f"not notary-signer's {KEY_WRAPPING}/{CONTENT_ENCRYPTION}"
            )
        token.decrypt(jwk.JWK.from_password(passphrase))
    except (JWException, ValueError, TypeError) as exc:
        raise KeyFormatError(f"cannot decrypt the key (wrong passphrase?): {exc}") from None
    return bytes(token.payload)


def private_key_from_notary(algorithm: str, raw: bytes) -> PrivateKey:
    """notary's private bytes: Ed25519 seed and public key (64 bytes), ECDSA SEC1 DER, RSA PKCS#1 DER."""
    try:
        if algorithm == "ed25519":
            if len(raw) != 64:
                raise KeyFormatError(f"an ed25519 key is 64 bytes, not {len(raw)}")
            return ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32])
        if algorithm in ("ecdsa", "rsa"):
            key = load_der_private_key(raw, password=None)
            if isinstance(key, PrivateKey):
                return key
    except ValueError as exc:
        raise KeyFormatError(f"cannot read the {algorithm} key: {exc}") from None
    raise KeyFormatError(f"unsupported key algorithm {algorithm!r}")


@dataclass(frozen=True)
class SignerKey:
    """A decrypted notary-signer key, re-encrypted for trustkit."""

    gun: str
    role: str
    public: PublicKey
    private_pem: str
    created_at: datetime


@dataclass(frozen=True)
class SignerRow:
    key_id: str
    algorithm: str
    alias: str
    public: bytes
    private: str
    gun: str
    role: str
    created_at: datetime


def reencrypt(row: SignerRow, source_passphrase: str, target_passphrase: str) -> SignerKey:
    """``row``'s key, checked against its public half and ID, encrypted under ``target_passphrase``."""
    private = private_key_from_notary(row.algorithm, decrypt_signer_key(row.private, source_passphrase))
    public = PublicKey(row.algorithm, b64encode(row.public))
    derived = PublicKey.from_crypto(private.public_key())
    if derived.identity != public.identity or public.keyid != row.key_id:
        raise KeyFormatError(f"key {row.key_id[:12]}: the private key does not match its public key or ID")
    return SignerKey(
        row.gun,
        row.role,
        public,
        encode_key_file(private, role=row.role, gun=row.gun, passphrase=target_passphrase),
        row.created_at,
    )


# --------------------------------------------------------------------------------------------
# Reading notary's databases


@dataclass(frozen=True)
class SourceFile:
    role: str
    version: int
    data: bytes
    created_at: datetime


def _utc(value: datetime | str | None) -> datetime:
    """notary writes naive UTC (gorm, TZ=UTC in its images); SQLite hands back text."""
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, str):
        text = value
        try:
            value = datetime.fromisoformat(text.strip())
        except ValueError:
            raise TrustkitError(f"notary's database holds a date trustkit cannot read: {text[:40]!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


class NotaryServerDB:
    """notary-server's tables, read only."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, pool_pre_ping=True)

    def close(self) -> None:
        self.engine.dispose()

    def guns(self) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT DISTINCT gun FROM tuf_files WHERE deleted_at IS NULL ORDER BY gun"))
            return [row.gun for row in rows]

    def files(self, gun: str) -> list[SourceFile]:
        query = sa.text(
            "SELECT role, version, data, created_at FROM tuf_files "
            "WHERE gun = :gun AND deleted_at IS NULL ORDER BY role, version"
        )
        with self.engine.connect() as conn:
            return [
                SourceFile(r.role, r.version, _bytes(r.data), _utc(r.created_at))
                for r in conn.execute(query, {"gun": gun})
            ]

    def changes(self) -> list[ImportedChange]:
        query = sa.text("SELECT id, created_at, gun, version, sha256, category FROM changefeed ORDER BY id")
        with self.engine.connect() as conn:
            return [
                ImportedChange(_utc(r.created_at), r.gun, r.version, (r.sha256 or "").strip(), r.category)
                for r in conn.execute(query)
            ]


class NotarySignerDB:
    """notary-signer's ``private_keys``, read only."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, pool_pre_ping=True)

    def close(self) -> None:
        self.engine.dispose()

    def keys(self, gun: str) -> list[SignerRow]:
        query = sa.text(
            "SELECT key_id, algorithm, passphrase_alias, public, private, gun, role, created_at "
            "FROM private_keys WHERE gun = :gun AND deleted_at IS NULL ORDER BY id"
        )
        with self.engine.connect() as conn:
            return [
                SignerRow(
                    r.key_id,
                    r.algorithm,
                    r.passphrase_alias,
                    _bytes(r.public),
                    _bytes(r.private).decode("ascii", "replace"),
                    r.gun,
                    r.role,
                    _utc(r.created_at),
                )
                for r in conn.execute(query, {"gun": gun})
                if r.role in SERVER_ROLES
            ]


# --------------------------------------------------------------------------------------------
# Checking one repository


def _parse(files: list[SourceFile]) -> dict[str, list[tuple[SourceFile, Metadata[Any]]]]:
    by_role: dict[str, list[tuple[SourceFile, Metadata[Any]]]] = {}
    for item in files:
        try:
            meta = Metadata.from_bytes(item.data, role=item.role)
        except MetadataError as exc:
            raise VerificationError(f"{item.role} version {item.version} is malformed: {exc}") from None
        if meta.signed.version != item.version:
            raise VerificationError(f"{item.role} version {item.version} says it is version {meta.signed.version}")
        by_role.setdefault(item.role, []).append((item, meta))
    return by_role


def _check_root_chain(gun: str, roots: list[tuple[SourceFile, Metadata[Any]]]) -> list[Root]:
    """Each root signed by its own root keys' threshold and by the previous root's."""
    if not roots:
        raise VerificationError("there is no root")
    chain: list[Root] = []
    previous: Root | None = None
    for item, meta in roots:
        for signer_root, what in ((meta.signed, "itself"), (previous, f"root version {previous and previous.version}")):
            if signer_root is None:
                continue
            keys = root_signing_keys(signer_root, gun, None)
            if not meta.verify(keys, list(keys), signer_root.roles[ROOT].threshold, ROOT):
                raise VerificationError(f"root version {item.version} is not signed by {what}")
        previous = meta.signed
        chain.append(meta.signed)
    return chain


def _rules(role: str, chain: list[Root], parents: list[Targets]) -> list[SigningRule]:
    if role in BASE_ROLES:
        return [root.signing_rule(role) for root in chain]
    return [rule for parent in parents if (rule := parent.delegations.signing_rule(role)) is not None]


def check_repository(gun: str, files: list[SourceFile], held: Collection[str]) -> list[str]:
    """What is wrong with ``gun``'s history (nothing: an empty list).

    Every version of every role must be signed as some version of its delegator allowed (notary
    accepted them in that order), the newest of each base role as the current root says, and
    the current root's timestamp key must be among the timestamp keys ``held`` (key IDs)."""
    try:
        by_role = _parse(files)
        chain = _check_root_chain(gun, by_role.get(ROOT, []))
    except TrustkitError as exc:  # malformed files, certificates or keys: this repository only
        return [str(exc)]
    problems = []
    # Parents before their delegations, so each delegation finds every version of its parent.
    for role in sorted((r for r in by_role if r != ROOT), key=lambda name: name.count("/")):
        parents = [meta.signed for _, meta in by_role.get(parent_role(role), [])] if is_delegation(role) else []
        rules = _rules(role, chain, parents)
        for item, meta in by_role[role]:
            if not any(meta.verify_by(rule) for rule in rules):
                problems.append(f"{role} version {item.version} is not signed by keys its delegator lists")
        if role in BASE_ROLES and not by_role[role][-1][1].verify_by(chain[-1].signing_rule(role)):
            problems.append(f"the newest {role} is not signed as the current root requires")
    current = chain[-1]
    if not set(current.roles[TIMESTAMP].keyids) & set(held):
        problems.append(
            f"notary-signer holds none of the timestamp keys the current root lists "
            f"({', '.join(k[:12] for k in current.roles[TIMESTAMP].keyids)})"
        )
    return problems


# --------------------------------------------------------------------------------------------
# The import


@dataclass
class RepositoryResult:
    gun: str
    status: str = "imported"  # imported | nothing new | failed
    versions: int = 0  # files added
    keys: int = 0  # server keys added
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gun": self.gun,
            "status": self.status,
            "versions": self.versions,
            "keys": self.keys,
            "problems": self.problems,
        }


@dataclass
class ImportResult:
    repositories: list[RepositoryResult] = field(default_factory=list)
    changes: int = 0  # changefeed records added
    changes_skipped: int = 0  # records of repositories that failed

    @property
    def failed(self) -> list[RepositoryResult]:
        return [repo for repo in self.repositories if repo.status == "failed"]

    @property
    def nothing_new(self) -> bool:
        """Nothing was added (repositories that failed add nothing either)."""
        return not self.changes and all(repo.status != "imported" for repo in self.repositories)

    def to_dict(self) -> dict[str, Any]:
        return {
            "repositories": [repo.to_dict() for repo in self.repositories],
            "changes": self.changes,
            "changes_skipped": self.changes_skipped,
            "failed": len(self.failed),
            "nothing_new": self.nothing_new,
        }


PassphraseLookup = Callable[[str], str | None]  # alias -> passphrase


def environment_passphrases(environ: Mapping[str, str] | None = None) -> PassphraseLookup:
    """notary-signer's passphrases, from the same variables notary-signer reads."""
    env = os.environ if environ is None else environ
    return lambda alias: env.get(passphrase_variable(alias)) or None


class Importer:
    """One import run from notary's two databases into a trustkit ``Storage``."""

    def __init__(
        self,
        server: NotaryServerDB,
        signer: NotarySignerDB,
        target: Storage,
        target_passphrase: str,
        passphrases: PassphraseLookup,
    ) -> None:
        self.server = server
        self.signer = signer
        self.target = target
        self.target_passphrase = target_passphrase
        self.passphrases = passphrases

    def run(self, progress: Callable[[RepositoryResult], None] | None = None) -> ImportResult:
        result = ImportResult()
        for gun in self.server.guns():
            repo = self.import_repository(gun)
            result.repositories.append(repo)
            if progress is not None:
                progress(repo)
        failed = {repo.gun for repo in result.failed}
        changes = self.server.changes()
        result.changes_skipped = sum(1 for change in changes if change.gun in failed)
        result.changes = self.target.import_changes(change for change in changes if change.gun not in failed)
        return result

    def import_repository(self, gun: str) -> RepositoryResult:
        result = RepositoryResult(gun)
        files = self.server.files(gun)
        stored = self.target.stored_checksums(gun)
        held = self.target.server_key_ids(gun)
        keys, key_problems = self._keys(gun, held)
        timestamp_keys = {key.public.keyid for key in keys if key.role == TIMESTAMP}
        timestamp_keys |= {keyid for keyid, _, _ in self.target.server_keys(gun, TIMESTAMP)}
        problems = check_repository(gun, files, timestamp_keys) + key_problems
        if problems:
            result.status, result.problems = "failed", problems
            return result
        new_files = [f for f in files if stored.get((f.role, f.version)) != hashlib.sha256(f.data).hexdigest()]
        new_keys = [k for k in keys if k.public.keyid not in held]
        if not new_files and not new_keys:
            result.status = "nothing new"
            return result
        try:
            self.target.import_repository(
                gun,
                [ImportedFile(f.role, f.version, f.data, f.created_at) for f in new_files],
                [
                    ImportedKey(k.role, k.public.keyid, json.dumps(k.public.to_dict()), k.private_pem, k.created_at)
                    for k in new_keys
                ],
            )
        except VersionConflict as exc:
            result.status, result.problems = "failed", [f"trustkit already holds other data: {exc}"]
            return result
        result.versions, result.keys = len(new_files), len(new_keys)
        return result

    def _keys(self, gun: str, held: Collection[str]) -> tuple[list[SignerKey], list[str]]:
        """The server keys of ``gun`` not ``held`` yet that decrypt; problems only for keys the
        current root needs (an old rotated-out key whose passphrase is gone is left behind)."""
        keys, failures = [], {}
        for row in self.signer.keys(gun):
            if row.key_id in held:
                continue
            passphrase = self.passphrases(row.alias)
            if passphrase is None:
                failures[row.key_id] = (
                    f"set {passphrase_variable(row.alias)} (notary-signer's passphrase "
                    f"for alias {row.alias!r}) to decrypt {row.role} key {row.key_id[:12]}"
                )
                continue
            try:
                keys.append(reencrypt(row, passphrase, self.target_passphrase))
            except KeyFormatError as exc:
                failures[row.key_id] = f"{row.role} key {row.key_id[:12]}: {exc}"
        needed = _listed_server_keys(self.server.files(gun)) if failures else set()
        return keys, [message for keyid, message in failures.items() if keyid in needed]


def _listed_server_keys(files: list[SourceFile]) -> set[str]:
    roots = [f for f in files if f.role == ROOT]
    if not roots:
        return set()
    try:
        root: Root = Metadata.from_bytes(max(roots, key=lambda f: f.version).data, role=ROOT).signed
    except MetadataError:
        return set()
    return {keyid for role in SERVER_ROLES for keyid in root.roles[role].keyids}


@contextmanager
def open_import(
    server_url: str, signer_url: str, target: Storage, target_passphrase: str, passphrases: PassphraseLookup
) -> Iterator[Importer]:
    """An ``Importer`` over the two databases, closed afterwards (a generator for ``with``)."""
    server, signer = NotaryServerDB(server_url), NotarySignerDB(signer_url)
    try:
        yield Importer(server, signer, target, target_passphrase, passphrases)
    except sa.exc.SQLAlchemyError as exc:
        raise TrustkitError(
            f"database error: {exc.__class__.__name__}: {str(exc).splitlines()[0]}",
            hint="check the addresses, that the databases are reachable and hold notary's tables",
        ) from None
    finally:
        server.close()
        signer.close()
