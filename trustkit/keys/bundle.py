"""Layer `keys`: UCP/MKE/MSR client bundles (``cert.pem``, ``key.pem``, ``ca.pem``), as a zip or
a folder.  Importing one stores ``key.pem`` as a signer key, after checking that ``cert.pem`` is
a client certificate valid now, issued by the bundle's ``ca.pem``, and that the key belongs to it."""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO

from trustkit.errors import KeyFormatError, KeyNotFoundError, TrustkitError
from trustkit.keys.certs import check_client_certificate, load_ca_certificates
from trustkit.keys.der import parse_pem
from trustkit.keys.public import PublicKey, load_public_pem
from trustkit.keys.signer import CryptoSigner
from trustkit.keys.store import KeyStore, StoredKey, decrypt_for_import, validate_key_name

BUNDLE_FILES = ("cert.pem", "key.pem", "ca.pem")
# A bundle is hostile input until checked.  Its PEM files are a few KB and a UCP/MKE zip a few
# tens of KB: these caps count bytes actually read (decompressed), never what the zip declares.
MAX_MEMBER_SIZE = 1 << 20
MAX_BUNDLE_BYTES = 2 << 20  # all the bundle files read, together
MAX_ZIP_SIZE = 1 << 20  # bounds zipfile's in-memory central directory too
_READ_STEP = 64 << 10
# zipfile inflates bzip2/lzma members with no output limit per step; deflate and stored obey it.
_SAFE_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_METHOD_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}


@dataclass(frozen=True)
class ClientBundle:
    source: Path
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes | None

    @property
    def certificate_key(self) -> PublicKey:
        return load_public_pem(self.cert_pem, what=f"{self.source}: cert.pem")


def read_bundle(path: Path | str) -> ClientBundle:
    """Read ``cert.pem``, ``key.pem`` and (optionally) ``ca.pem`` from a zip or a folder, all from
    one folder: its top level, or its one subfolder that holds a ``cert.pem`` (UCP zips nest
    nothing; unpacked copies often do).

    Raises:
        KeyFormatError: not a zip or folder; a corrupt, encrypted or oversized zip; files missing,
            ambiguous (twice, or several bundles) or larger than the caps.
    """
    path = Path(path)
    if path.is_dir():
        found = _read_folder(path)
    elif path.is_file() and zipfile.is_zipfile(path):
        found = _read_zip(path)
    elif path.exists():
        raise KeyFormatError(
            f"{path} is neither a zip file nor a folder", hint="give the client bundle zip or its folder"
        )
    else:
        raise KeyFormatError(f"{path} does not exist")
    missing = [name for name in ("cert.pem", "key.pem") if name not in found]
    if missing:
        raise KeyFormatError(f"{path} is not a client bundle: no {' or '.join(missing)}")
    return ClientBundle(path, found["cert.pem"], found["key.pem"], found.get("ca.pem"))


def _bundle_folder(entries: list[tuple[str, str]], source: Path) -> str:
    """Which folder (``""``: the top level) holds the bundle, given (folder, file name) entries."""
    folders = sorted({folder for folder, name in entries if name == "cert.pem"})
    if "" in folders or not folders:
        return ""
    if len(folders) > 1:
        raise KeyFormatError(
            f"{source} holds several bundles ({', '.join(f + '/' for f in folders)})", hint="give the one to import"
        )
    return folders[0]


class _Budget:
    """Bytes left to read from the bundle, across its members."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.left = MAX_BUNDLE_BYTES

    def read(self, handle: IO[bytes], name: str) -> bytes:
        """All of ``handle``, read in steps, refused as soon as it passes a cap."""
        data = bytearray()
        while chunk := handle.read(_READ_STEP):
            data += chunk
            self.left -= len(chunk)
            if len(data) > MAX_MEMBER_SIZE:
                raise KeyFormatError(
                    f"{self.source}: {name} holds more than {MAX_MEMBER_SIZE} bytes; a client bundle file is a few KB"
                )
            if self.left < 0:
                raise KeyFormatError(
                    f"{self.source}: the bundle files hold more than {MAX_BUNDLE_BYTES} bytes "
                    "together; a client bundle is a few KB"
                )
        return bytes(data)


def _read_folder(path: Path) -> dict[str, bytes]:
    entries = [("", name) for name in BUNDLE_FILES if (path / name).exists()]
    if not entries:
        subfolders = sorted(p for p in path.iterdir() if p.is_dir())
        entries = [(sub.name, name) for sub in subfolders for name in BUNDLE_FILES if (sub / name).exists()]
    folder = path / _bundle_folder(entries, path)
    budget = _Budget(path)
    found = {}
    for name in BUNDLE_FILES:
        file = folder / name
        if not file.exists():
            continue
        if not file.is_file():  # a FIFO would block, a device never ends
            raise KeyFormatError(f"{file} is not a regular file")
        with file.open("rb") as handle:
            found[name] = budget.read(handle, name)
    return found


def _read_zip(path: Path) -> dict[str, bytes]:
    size = path.stat().st_size
    if size > MAX_ZIP_SIZE:
        raise KeyFormatError(f"{path} is larger than {MAX_ZIP_SIZE} bytes; a client bundle zip is a few KB")
    try:
        with zipfile.ZipFile(path) as archive:
            members = _zip_members(archive, path)
            budget = _Budget(path)
            return {name: _read_member(archive, info, budget, path) for name, info in members.items()}
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # a bad CRC, bad deflate data, a truncated file
        raise KeyFormatError(f"{path} is a corrupt zip file: {exc}", hint="download the client bundle again") from None


def _zip_members(archive: zipfile.ZipFile, source: Path) -> dict[str, zipfile.ZipInfo]:
    """The bundle files of one folder of the zip, each named once (at most len(BUNDLE_FILES))."""
    candidates = []
    for info in archive.infolist():
        member = PurePosixPath(info.filename)
        if member.name in BUNDLE_FILES and len(member.parts) <= 2 and not info.is_dir():
            folder = member.parent.as_posix()
            candidates.append(("" if folder == "." else folder, member.name, info))
    folder = _bundle_folder([(f, n) for f, n, _ in candidates], source)
    members: dict[str, zipfile.ZipInfo] = {}
    for member_folder, name, info in candidates:
        if member_folder != folder:
            continue
        if name in members:
            raise KeyFormatError(f"{source} holds {info.filename} twice", hint="which one is meant is not clear")
        members[name] = info
    return members


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget, source: Path) -> bytes:
    if info.flag_bits & 0x1:
        raise KeyFormatError(f"{source}: {info.filename} is encrypted; client bundles are not")
    if info.compress_type not in _SAFE_METHODS:
        method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
        raise KeyFormatError(
            f"{source}: {info.filename} is compressed with {method}; client bundles are stored or deflated"
        )
    with archive.open(info) as handle:
        return budget.read(handle, info.filename)


def signer_name_for(bundle: ClientBundle, name: str | None) -> str:
    """``name``, else the certificate's CN (UCP puts the user name there)."""
    if name:
        return validate_key_name(name)
    from cryptography.x509.oid import NameOID

    certs = bundle.certificate_key.certificates
    names = certs[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(names[0].value) if names else ""
    try:
        return validate_key_name(cn)
    except KeyFormatError:
        raise KeyFormatError(
            f'the certificate\'s name "{cn[:80]}" cannot be a signer name',
            hint="choose one with --name (lowercase letters, digits, '_' and '-')",
        ) from None


def stored_as(store: KeyStore, keyid: str) -> str | None:
    """The signer (role) name ``keyid`` is stored under, or None when the store lacks it."""
    try:
        return store.find(keyid).role
    except KeyNotFoundError:
        return None


def import_bundle(
    store: KeyStore, path: Path | str, *, name: str | None = None, now: datetime, force: bool = False
) -> tuple[StoredKey, str, ClientBundle, str | None]:
    """Check and import a bundle's key as signer ``name``; nothing is stored when a check fails.
    A key already stored under another signer name is renamed only with ``force``; the last
    value returned is that former name (None when nothing was renamed).

    Raises:
        KeyFormatError: unreadable bundle; no ``ca.pem``; a certificate that is not valid at
            ``now``, not a client certificate for signing, or not issued by ``ca.pem``; a key that
            does not belong to it.  PassphraseError and friends from the store.
        TrustkitError: the key is stored as another signer and ``force`` is not set.
    """
    bundle = read_bundle(path)
    cert_key = bundle.certificate_key
    if bundle.ca_pem is None:
        raise KeyFormatError(
            f"{bundle.source} has no ca.pem, so who issued cert.pem cannot be checked",
            hint="import the bundle as UCP/MKE/MSR gave it, or a bare key with `trustkit key load`",
        )
    cas = load_ca_certificates(bundle.ca_pem, what=f"{bundle.source}: ca.pem")
    check_client_certificate(
        cert_key.certificates,
        cas,
        now=now,
        what=f"{bundle.source}: cert.pem",
        ca_what=f"{bundle.source}: ca.pem",
        hint="download a fresh client bundle",
    )
    signer = signer_name_for(bundle, name)
    previous = stored_as(store, cert_key.canonical_id)
    if previous is not None and previous != signer and not force:
        raise TrustkitError(
            f'the key {cert_key.canonical_id[:12]} of this bundle is already stored as signer "{previous}"; '
            f'importing it as "{signer}" would rename it',
            hint=f'add --force to rename it to "{signer}", or import it with --name {previous}',
        )
    # Open key.pem in memory and compare it with the certificate before storing anything.
    blocks = [b for b in parse_pem(bundle.key_pem, what=f"{bundle.source}: key.pem") if b.type.endswith("PRIVATE KEY")]
    if len(blocks) != 1:
        raise KeyFormatError(f"{bundle.source}: key.pem must hold exactly one private key")
    private, passphrase = decrypt_for_import(store, blocks[0], signer, f"{bundle.source}: key.pem")
    if CryptoSigner(private).public_key != cert_key.bare:
        raise KeyFormatError(
            f"{bundle.source}: key.pem does not belong to cert.pem", hint="the two files come from different bundles"
        )
    renamed = previous if previous not in (None, signer) else None
    return store.add(private, role=signer, passphrase=passphrase), signer, bundle, renamed
