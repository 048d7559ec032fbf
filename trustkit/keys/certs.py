"""Layer `keys`: root certificates (§3.5) and the rules notary applies to certificate keys."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trustkit.errors import KeyFormatError
from trustkit.keys.pkcs8 import PrivateKey
from trustkit.keys.public import PublicKey

ROOT_CERT_VALIDITY = timedelta(days=10 * 365)


def root_certificate(key: PrivateKey, gun: str, *, now: datetime | None = None,
                     validity: timedelta = ROOT_CERT_VALIDITY) -> x509.Certificate:
    """Self-signed certificate with CN=GUN, as notary makes for root keys."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyFormatError("root keys must be ECDSA or RSA: notary requires an X.509 certificate")
    now = now or datetime.now(timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, gun)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(secrets.randbits(127) + 1)
        .not_valid_before(now)
        .not_valid_after(now + validity)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    return builder.sign(key, hashes.SHA256())


def root_key_for(key: PrivateKey, gun: str, *, now: datetime | None = None) -> PublicKey:
    """The ``ecdsa-x509``/``rsa-x509`` key that root.json lists for ``key``."""
    return PublicKey.from_certificates([root_certificate(key, gun, now=now)])


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def cn_matches_gun(cert: x509.Certificate, gun: str) -> bool:
    """Notary's rule: CN equals the GUN, or ends in ``*`` and is a prefix of it."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        return False
    cn = str(names[0].value)
    return cn == gun or (cn.endswith("*") and gun.startswith(cn[:-1]))


def certificate_problem(cert: x509.Certificate, now: datetime) -> str | None:
    """Why notary would refuse ``cert`` in a new root or delegation (None when it would not)."""
    if cert.not_valid_after_utc <= now:
        return f"certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}"
    if cert.not_valid_before_utc > now + timedelta(days=1):
        return f"certificate is not valid until {cert.not_valid_before_utc:%Y-%m-%d}"
    if isinstance(cert.signature_hash_algorithm, hashes.SHA1):
        return "certificate is signed with SHA-1"
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        return f"certificate RSA key is {key.key_size} bits; at least 2048 are required"
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        return "certificate key must be ECDSA or RSA"
    return None
