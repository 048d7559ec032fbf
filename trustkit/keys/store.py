"""Layer `keys`: the key store, ``<trust dir>/private/<canonical keyid>.key`` (§6.2).

A key that lives in a PKCS#11 token or a cloud KMS is kept as a reference instead,
``private/<canonical keyid>.ref`` (JSON: its URI without any PIN, public key, role, GUN; see
:mod:`trustkit.keys.uri`).  notary and docker read only ``*.key`` files and pass it by.  The
signing code asks :meth:`KeyStore.signer` for a key ID and gets a ``Signer`` either way.

The same files notary and ``docker trust`` read and write: encrypted PKCS#8 PEM with ``gun:``
and ``role:`` headers.  Files are 0600 and folders 0700; every write goes to a temporary file
in the same folder, is fsynced and then renamed, so a crash never leaves half a key file.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from trustkit.errors import KeyFormatError, KeyNotFoundError, PassphraseError
from trustkit.keys.der import PemBlock, parse_pem
from trustkit.keys.passphrase import PassphraseRequest, PassphraseSource
from trustkit.keys.pkcs8 import PrivateKey, encode_key_file, is_encrypted, load_private_key_block
from trustkit.keys.public import PublicKey
from trustkit.keys.signer import CryptoSigner, Signer, generate
from trustkit.keys.uri import KeyReference, PinPrompt
from trustkit.roles import BASE_ROLES, is_delegation

# notary keeps the GUN only on keys that belong to one repository (§6.2).
GUN_ROLES = ("targets", "snapshot", "timestamp")
KEYID = re.compile(r"[0-9a-f]{64}\Z")
MAX_ATTEMPTS = 3
REF_SUFFIX = ".ref"  # a key reference (a key in a token or KMS); notary reads only *.key
MAX_REF_SIZE = 64 * 1024
# notary's encoder gives each algorithm a fixed encrypted size, so ``key list`` can say what a
# key is without asking for its passphrase.
_ENCRYPTED_SIZES = {209: "ed25519", 241: "ecdsa", 290: "ecdsa P-384", 339: "ecdsa P-521"}


def default_trust_dir(environ: dict[str, str] | None = None) -> Path:
    """``$DOCKER_CONFIG/trust``, else ``~/.docker/trust`` (as docker does)."""
    env = os.environ if environ is None else environ
    config = env.get("DOCKER_CONFIG")
    return Path(config) / "trust" if config else Path.home() / ".docker" / "trust"


@dataclass(frozen=True)
class StoredKey:
    """A key file's identity, read without decrypting it."""

    keyid: str
    role: str
    gun: str | None
    path: Path
    encrypted: bool
    algorithm: str
    uri: str | None = None  # a key in a token or KMS: its URI (no PIN); None for a key file
    where: str = "file"  # "file", 'pkcs11 token "t"', "AWS KMS", ...

    @property
    def is_reference(self) -> bool:
        return self.uri is not None


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass(frozen=True)
class UnsavedKey:
    """A new key and its chosen passphrase, not written yet (see :meth:`KeyStore.prepare`)."""

    key: PrivateKey
    role: str
    gun: str | None
    passphrase: str = field(repr=False)
    keyid: str

    @property
    def signer(self) -> Signer:
        return CryptoSigner(self.key)


def role_headers(role: str, gun: str | None) -> tuple[str, str | None]:
    return role, (gun if role in GUN_ROLES else None)


class KeyStore:
    """Private keys under ``<trust_dir>/private``."""

    def __init__(self, trust_dir: Path | str, passphrases: PassphraseSource) -> None:
        self.trust_dir = Path(trust_dir)
        self.private_dir = self.trust_dir / "private"
        self.passphrases = passphrases
        # URIs as given this run (a pkcs11 pin-value included): used for signing in this process
        # only, never written.
        self._given_uris: dict[str, str] = {}

    # ---- reading

    def list(self) -> list[StoredKey]:
        """Every key file and key reference, sorted by role then key ID.  Unreadable files are skipped."""
        keys = []
        if self.private_dir.is_dir():
            for path in sorted([*self.private_dir.glob("*.key"), *self.private_dir.glob(f"*{REF_SUFFIX}")]):
                try:
                    keys.append(self._describe(path))
                except (OSError, KeyFormatError):
                    continue
        return sorted(keys, key=lambda k: (k.role, k.gun or "", k.keyid))

    def _describe(self, path: Path) -> StoredKey:
        if path.suffix == REF_SUFFIX:
            ref = self.read_reference(path)
            return StoredKey(ref.keyid, ref.role, ref.gun, path, False, ref.public.algorithm, ref.uri, ref.location)
        block = self._read_block(path)
        role = block.headers.get("role") or _legacy_role(path.stem) or "unknown"
        encrypted = is_encrypted(block)
        return StoredKey(
            path.stem.split("_")[0], role, block.headers.get("gun"), path, encrypted, _algorithm_hint(block)
        )

    def _read_block(self, path: Path) -> PemBlock:
        blocks = parse_pem(path.read_bytes(), what=f"key file {path}")
        return blocks[0]

    def read_reference(self, path: Path) -> KeyReference:
        from trustkit.encoding import loads_strict

        with path.open("rb") as handle:
            data = handle.read(MAX_REF_SIZE + 1)
        if len(data) > MAX_REF_SIZE:
            raise KeyFormatError(f"key reference {path} is larger than {MAX_REF_SIZE} bytes")
        ref = KeyReference.from_json(loads_strict(data, what=f"key reference {path}"), what=f"key reference {path}")
        if ref.keyid != path.name.removesuffix(REF_SUFFIX):
            raise KeyFormatError(f"key reference {path} holds the public key {ref.keyid[:12]}, not its file name's")
        return ref

    def find(self, keyid: str) -> StoredKey:
        """Raises KeyNotFoundError when the store has no such key."""
        path = self.private_dir / f"{keyid}.key"
        if KEYID.match(keyid) and not path.is_file() and (self.private_dir / f"{keyid}{REF_SUFFIX}").is_file():
            path = self.private_dir / f"{keyid}{REF_SUFFIX}"
        if not KEYID.match(keyid) or not path.is_file():
            matches = [k for k in self.list() if k.keyid.startswith(keyid)] if keyid else []
            if len(matches) == 1:
                return matches[0]
            raise KeyNotFoundError(
                f"no key {keyid} in {self.private_dir}",
                hint="run `trustkit key list` to see the keys"
                if not matches
                else "the prefix matches several keys; give more of the ID",
            )
        return self._describe(path)

    def load(self, keyid: str) -> tuple[CryptoSigner, StoredKey]:
        """Decrypt a key, asking the passphrase source up to three times.

        Raises:
            KeyNotFoundError, KeyFormatError, PassphraseError, PassphraseUnavailableError.
        """
        info = self.find(keyid)
        if info.is_reference:
            raise KeyFormatError(
                f"key {info.keyid[:12]} (role {info.role}) is in {info.where}: there is no key file to open",
                hint="it signs where it is; its URI is " + (info.uri or ""),
            )
        block = self._read_block(info.path)
        if not is_encrypted(block):
            return CryptoSigner(load_private_key_block(block, None)), info
        for attempt in range(1, MAX_ATTEMPTS + 1):
            passphrase = self.passphrases(PassphraseRequest(info.role, info.gun, info.keyid, False, attempt))
            try:
                return CryptoSigner(load_private_key_block(block, passphrase)), info
            except PassphraseError:
                continue
        raise PassphraseError(
            f"wrong passphrase for key {info.keyid[:12]} (role {info.role})",
            hint="check the passphrase; nothing was changed",
        )

    def signer(self, keyid: str) -> tuple[Signer, StoredKey]:
        """A ``Signer`` for a key of the store: a key file decrypted (its passphrase asked for
        as in :meth:`load`), or the token or KMS key a reference names (its PIN asked for the
        same way, or read from the URI's pin-source).

        Raises:
            KeyNotFoundError (no such key; no such module, token or key object), KeyFormatError,
            PassphraseError, PassphraseUnavailableError.
        """
        info = self.find(keyid)
        if not info.is_reference:
            return self.load(info.keyid)
        from trustkit.keys.uri import open_signer

        ref = self.read_reference(info.path)
        given = self._given_uris.get(info.keyid)
        return open_signer(ref, given, pin=self.pin_prompt(info.role, info.gun, info.keyid)), info

    def pin_prompt(self, role: str, gun: str | None, keyid: str) -> PinPrompt:
        """Asks the passphrase source for a token's PIN (as a ``PassphraseRequest`` with ``token``)."""

        def ask(token: str, attempt: int) -> str:
            return self.passphrases(PassphraseRequest(role, gun, keyid, False, attempt, token=token))

        return ask

    # ---- writing

    def add_reference(self, uri: str, *, role: str, gun: str | None = None) -> StoredKey:
        """Register the token or KMS key ``uri`` names under ``role``: its public key is read
        (logging in to a token when it must; the PIN is never kept) and a reference is written.

        Raises:
            KeyFormatError (not a key URI; a key notary cannot use; a key file of the same key is
            already stored), KeyNotFoundError, PassphraseError, PassphraseUnavailableError.
        """
        from trustkit.keys.uri import import_key

        role, gun = role_headers(validate_key_name(role), gun)
        kept, public = import_key(uri, self.pin_prompt(role, gun, ""))
        if (self.private_dir / f"{public.keyid}.key").is_file():
            raise KeyFormatError(
                f"the store already holds key {public.keyid[:12]} as a key file",
                hint="remove it first if the token's copy should replace it",
            )
        ref = KeyReference(kept, public, role, gun)
        self._given_uris[public.keyid] = uri
        self._ensure_dirs()
        path = self.private_dir / f"{public.keyid}{REF_SUFFIX}"
        atomic_write(path, json.dumps(ref.to_json(), indent=2, sort_keys=True).encode() + b"\n")
        return self._describe(path)

    def resolve(self, spec: str, *, role: str, gun: str | None = None) -> str:
        """The key ID for ``spec``: a key URI is registered under ``role`` when the store does not
        know it yet (a known one is found by its URI); anything else is a key ID or a unique prefix.

        Raises:
            KeyNotFoundError, KeyFormatError, PassphraseError, PassphraseUnavailableError.
        """
        from trustkit.keys.uri import is_key_uri, redact

        if not is_key_uri(spec):
            return self.find(spec).keyid
        kept = redact(spec)
        for known in self.list():
            if known.uri == kept:
                self._given_uris[known.keyid] = spec
                return known.keyid
        return self.add_reference(spec, role=role, gun=gun).keyid

    def prepare_new(self, algorithm: str, *, role: str, gun: str | None = None) -> UnsavedKey:
        """A new key pair for ``role``, kept in memory with its passphrase (asked now) until
        :meth:`save`; its ``signer`` signs with it meanwhile."""
        return self.prepare(generate(algorithm), role=role, gun=gun)

    def add(self, key: PrivateKey, *, role: str, gun: str | None = None, passphrase: str | None = None) -> StoredKey:
        """Encrypt and store ``key``; returns its entry.  Asks for a new passphrase when none is given."""
        public = PublicKey.from_crypto(key.public_key())
        role, gun = role_headers(role, gun)
        if passphrase is None:
            passphrase = self.passphrases(PassphraseRequest(role, gun, public.keyid, True))
        text = encode_key_file(key, role=role, gun=gun, passphrase=passphrase)
        self._ensure_dirs()
        path = self.private_dir / f"{public.keyid}.key"
        atomic_write(path, text.encode("ascii"))
        return self._describe(path)

    def prepare(self, key: PrivateKey, *, role: str, gun: str | None = None) -> UnsavedKey:
        """Ask for a new key's passphrase now and keep the key in memory: ``add(...)`` writes it
        once the work it is for has succeeded, so an abort leaves no stray key file."""
        role, gun = role_headers(role, gun)
        keyid = PublicKey.from_crypto(key.public_key()).keyid
        return UnsavedKey(key, role, gun, self.passphrases(PassphraseRequest(role, gun, keyid, True)), keyid)

    def save(self, unsaved: UnsavedKey) -> StoredKey:
        return self.add(unsaved.key, role=unsaved.role, gun=unsaved.gun, passphrase=unsaved.passphrase)

    def change_passphrase(self, keyid: str, new_passphrase: str) -> StoredKey:
        """Re-encrypt a key under ``new_passphrase`` (the old one is asked for as usual)."""
        signer, info = self.load(keyid)
        return self.add(signer.private_key, role=info.role, gun=info.gun, passphrase=new_passphrase)

    def remove(self, keyid: str) -> StoredKey:
        info = self.find(keyid)
        info.path.unlink()
        return info

    def export(self, keyid: str) -> str:
        """The key file text as stored (still encrypted): safe to move between machines.

        Raises:
            KeyFormatError: a key in a token or KMS (it has no file to export).
        """
        info = self.find(keyid)
        if info.is_reference:
            raise KeyFormatError(
                f"key {info.keyid[:12]} is in {info.where}; its private key never leaves it",
                hint="its public key: `trustkit key load URI --dir DIR` writes NAME.pub",
            )
        return info.path.read_text()

    def _ensure_dirs(self) -> None:
        for folder in (self.trust_dir, self.private_dir):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.private_dir, 0o700)


def _legacy_role(stem: str) -> str | None:
    # Pre-0.4 notary named files <keyid>_<role>.key.
    return stem.split("_", 1)[1] if "_" in stem else None


def _algorithm_hint(block: PemBlock) -> str:
    if block.type == "ENCRYPTED PRIVATE KEY":
        size = len(block.der)
        return _ENCRYPTED_SIZES.get(size, "rsa" if size > 1000 else "unknown")
    if block.type == "PRIVATE KEY":
        try:
            signer = CryptoSigner(load_private_key_block(block, None))
        except KeyFormatError:
            return "unknown"
        return signer.public_key.algorithm
    return {"EC PRIVATE KEY": "ecdsa", "RSA PRIVATE KEY": "rsa"}.get(block.type, "unknown")


# --------------------------------------------------------------------------------------------
# What `key generate` and `key load` do, usable without the CLI.

SIGNER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")


def validate_key_name(name: str) -> str:
    """Docker's signer-name rule, plus notary's role names (``targets``, ``targets/releases``).

    Raises:
        KeyFormatError: the rule the name breaks.
    """
    if name in BASE_ROLES or is_delegation(name):
        return name
    if not name:
        raise KeyFormatError("key name is empty")
    if len(name) > 255:
        raise KeyFormatError(f"key name is {len(name)} characters; the limit is 255")
    if not SIGNER_NAME.match(name):
        raise KeyFormatError(
            f'key name "{name[:80]}" must match [a-z0-9][a-z0-9_-]* (lowercase letters, '
            f'digits, "_" and "-", starting with a letter or digit)'
        )
    return name


def public_pem(public: PublicKey, role: str) -> str:
    """A ``NAME.pub`` file as ``docker trust key generate`` writes it."""
    from cryptography.hazmat.primitives import serialization

    spki = public.crypto_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return PemBlock("PUBLIC KEY", spki, {"role": role}).encode()


def generate_key(
    store: KeyStore, name: str, *, algorithm: str = "ecdsa", pub_dir: Path | None = None, gun: str | None = None
) -> tuple[StoredKey, Path | None]:
    """Make a key pair: the private key into the store with role ``name``, and (when ``pub_dir``
    is given) ``pub_dir/name.pub``.  Either both exist afterwards or neither does."""
    from trustkit.keys.signer import generate

    validate_key_name(name)
    pub_path = Path(pub_dir) / f"{name}.pub" if pub_dir is not None else None
    if pub_path is not None and pub_path.exists():
        raise KeyFormatError(f"public key file {pub_path} already exists", hint="remove it or choose another name")
    key = generate(algorithm)
    stored = store.add(key, role=name, gun=gun)
    if pub_path is not None:
        try:
            atomic_write(pub_path, public_pem(PublicKey.from_crypto(key.public_key()), name).encode(), 0o644)
        except BaseException:
            stored.path.unlink(missing_ok=True)
            raise
    return stored, pub_path


def load_reference(
    store: KeyStore, uri: str, name: str, *, pub_dir: Path | None = None, gun: str | None = None
) -> tuple[StoredKey, Path | None]:
    """What ``key load URI`` does: register the token or KMS key ``uri`` under role ``name``
    and (when ``pub_dir`` is given) write ``pub_dir/name.pub`` as ``generate_key`` does.  Either
    both exist afterwards or neither does (a reference that was already there stays).

    Raises:
        KeyFormatError, KeyNotFoundError, PassphraseError, PassphraseUnavailableError.
    """
    validate_key_name(name)
    pub_path = Path(pub_dir) / f"{name}.pub" if pub_dir is not None else None
    if pub_path is not None and pub_path.exists():
        raise KeyFormatError(f"public key file {pub_path} already exists", hint="remove it or choose another name")
    existed = {k.path for k in store.list()}
    stored = store.add_reference(uri, role=name, gun=gun)
    if pub_path is not None:
        try:
            public = store.read_reference(stored.path).public
            atomic_write(pub_path, public_pem(public, name).encode(), 0o644)
        except BaseException:
            if stored.path not in existed:
                stored.path.unlink(missing_ok=True)
            raise
    return stored, pub_path


def import_key(store: KeyStore, pem: bytes, *, name: str | None = None, source: str = "key file") -> StoredKey:
    """Store any PEM private key (PKCS#8, SEC1 or PKCS#1; encrypted or not; with or without
    notary's headers) under role ``name`` (else its ``role:`` header, else ``signer``).

    An encrypted input is decrypted with the passphrase for that role and stored under the same
    passphrase; a plain one is encrypted under a new passphrase.

    Raises:
        KeyFormatError: no private key in the PEM (certificates and public keys are named).
        PassphraseError, PassphraseUnavailableError.
    """
    blocks = parse_pem(pem, what=source)
    keys = [b for b in blocks if b.type.endswith("PRIVATE KEY")]
    if not keys:
        found = ", ".join(sorted({b.type for b in blocks}))
        raise KeyFormatError(f"{source} holds no private key (found {found})")
    if len(keys) > 1:
        raise KeyFormatError(f"{source} holds {len(keys)} private keys; give one per file")
    block = keys[0]
    role = validate_key_name(name or block.headers.get("role") or "signer")
    key, passphrase = decrypt_for_import(store, block, role, source)
    return store.add(key, role=role, gun=block.headers.get("gun"), passphrase=passphrase)


def decrypt_for_import(store: KeyStore, block: PemBlock, role: str, source: str) -> tuple[PrivateKey, str | None]:
    """Load a PEM private key in memory, asking the store's passphrase source (as for ``role``)
    when it is encrypted.  Returns the key and the passphrase that opened it (None if plain):
    an encrypted key keeps its passphrase, a plain one gets a new one when stored.

    Raises:
        PassphraseError: three wrong passphrases.  KeyFormatError: not a usable key.
    """
    if not is_encrypted(block):
        return load_private_key_block(block, None), None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        passphrase = store.passphrases(PassphraseRequest(role, block.headers.get("gun"), "", False, attempt))
        try:
            return load_private_key_block(block, passphrase), passphrase
        except PassphraseError:
            continue
    raise PassphraseError(f"wrong passphrase for {source}", hint="nothing was imported")
