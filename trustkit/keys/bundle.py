"""Layer `keys`: UCP/MKE/MSR client bundles (``cert.pem``, ``key.pem``, ``ca.pem``), as a zip or
a folder.  Importing one stores ``key.pem`` as a signer key, after checking that it belongs
to ``cert.pem`` and that the certificate is valid now."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from trustkit.errors import KeyFormatError
from trustkit.keys.certs import certificate_problem
from trustkit.keys.public import PublicKey, load_public_pem
from trustkit.keys.signer import CryptoSigner
from trustkit.keys.der import parse_pem
from trustkit.keys.store import KeyStore, StoredKey, decrypt_for_import, validate_key_name

BUNDLE_FILES = ("cert.pem", "key.pem", "ca.pem")
MAX_MEMBER_SIZE = 1 << 20  # a bundle's PEM files are a few KB; refuse zip bombs


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
    """Read ``cert.pem``, ``key.pem`` and (optionally) ``ca.pem`` from a zip or a folder, at its
    top level or in its one subfolder (UCP zips nest nothing; unpacked copies often do).

    Raises:
        KeyFormatError: not a zip or folder, or the files are missing or oversized.
    """
    path = Path(path)
    if path.is_dir():
        files = {p.name: p for p in path.rglob("*.pem") if len(p.relative_to(path).parts) <= 2}
        found = {name: files[name].read_bytes()[: MAX_MEMBER_SIZE + 1] for name in BUNDLE_FILES if name in files}
    elif zipfile.is_zipfile(path):
        found = {}
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                member = PurePosixPath(info.filename)
                if member.name in BUNDLE_FILES and len(member.parts) <= 2 and not info.is_dir():
                    if info.file_size > MAX_MEMBER_SIZE:
                        raise KeyFormatError(f"{path}: {info.filename} is too large for a client bundle file")
                    found[member.name] = archive.read(info)
    elif path.exists():
        raise KeyFormatError(f"{path} is neither a zip file nor a folder", hint="give the client bundle zip or its folder")
    else:
        raise KeyFormatError(f"{path} does not exist")
    missing = [name for name in ("cert.pem", "key.pem") if name not in found]
    if missing:
        raise KeyFormatError(f"{path} is not a client bundle: no {' or '.join(missing)}")
    if any(len(data) > MAX_MEMBER_SIZE for data in found.values()):
        raise KeyFormatError(f"{path}: a bundle file is too large")
    return ClientBundle(path, found["cert.pem"], found["key.pem"], found.get("ca.pem"))


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
        raise KeyFormatError(f'the certificate\'s name "{cn[:80]}" cannot be a signer name',
                             hint="choose one with --name (lowercase letters, digits, '_' and '-')") from None


def import_bundle(store: KeyStore, path: Path | str, *, name: str | None = None,
                  now: datetime) -> tuple[StoredKey, str, ClientBundle]:
    """Check and import a bundle's key as signer ``name``; nothing is stored when a check fails.

    Raises:
        KeyFormatError: unreadable bundle, key and certificate that do not match, or a
            certificate that is not valid at ``now``; PassphraseError and friends from the store.
    """
    bundle = read_bundle(path)
    cert_key = bundle.certificate_key
    leaf = cert_key.certificates[0]
    problem = certificate_problem(leaf, now)
    if problem:
        raise KeyFormatError(f"{bundle.source}: cert.pem cannot be used: {problem}",
                             hint="download a fresh client bundle")
    signer = signer_name_for(bundle, name)
    # Open key.pem in memory and compare it with the certificate before storing anything.
    blocks = [b for b in parse_pem(bundle.key_pem, what=f"{bundle.source}: key.pem") if b.type.endswith("PRIVATE KEY")]
    if len(blocks) != 1:
        raise KeyFormatError(f"{bundle.source}: key.pem must hold exactly one private key")
    private, passphrase = decrypt_for_import(store, blocks[0], signer, f"{bundle.source}: key.pem")
    if CryptoSigner(private).public_key != cert_key.bare:
        raise KeyFormatError(f"{bundle.source}: key.pem does not belong to cert.pem",
                             hint="the two files come from different bundles")
    return store.add(private, role=signer, passphrase=passphrase), signer, bundle
