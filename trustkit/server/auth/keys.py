"""Layer `server`: the keys of registry tokens.  docker's libtrust key IDs (a token's ``kid``),
which JWS algorithms a key may verify or sign with, and the keypair the built-in issuer signs with."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from trustkit.errors import AuthConfigError


def libtrust_key_id(public_key: Any) -> str:
    """docker's libtrust key ID: base32 of the first 240 bits of SHA-256(DER SubjectPublicKeyInfo),
    in 12 groups of 4 joined by ``:`` (``PYYO:TEWU:V7JH:...``).  The ``kid`` of a registry token.
    A private key is named by its public half."""
    if not hasattr(public_key, "public_bytes") and hasattr(public_key, "public_key"):
        public_key = public_key.public_key()
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii")  # 30 bytes: 48 chars, no padding
    return ":".join(text[i : i + 4] for i in range(0, len(text), 4))


def verify_algorithms(key: Any) -> frozenset[str]:
    """The JWS algorithms a key may verify; the token's ``alg`` must be one of them."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(key.curve.name)
        return frozenset({alg}) if alg else frozenset()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            return frozenset()
        return frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
    if isinstance(key, ed25519.Ed25519PublicKey):
        return frozenset({"EdDSA"})
    return frozenset()


SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def token_signing_key(private_key: object) -> tuple[SigningKey, str]:
    """``private_key`` as a token signing key, and the JWS algorithm its tokens carry.

    Raises:
        AuthConfigError: a key type or size that registry clients would not accept.
    """
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        alg = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(private_key.curve.name)
        if alg:
            return private_key, alg
    elif isinstance(private_key, rsa.RSAPrivateKey) and private_key.key_size >= 2048:
        return private_key, "RS256"
    elif isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key, "EdDSA"
    raise AuthConfigError(
        "the token signing key must be ECDSA P-256/P-384/P-521, RSA of at least 2048 bits, or Ed25519",
        hint="create one with `trustkit server` or generate_token_keypair()",
    )


def generate_token_keypair(common_name: str) -> tuple[bytes, bytes]:
    """A key and certificate for :class:`HtpasswdTokenIssuer`.

    Returns ``(private key PEM, certificate PEM)``: an ECDSA P-256 key as unencrypted PKCS#8
    (the caller stores it with mode 0600) and a self-signed certificate for it, CN=common_name,
    valid for ten years.  The certificate goes into the :class:`TokenAuthorizer` root bundle.
    """
    if not common_name or len(common_name) > 64:
        raise AuthConfigError("the token certificate's common name must be 1 to 64 characters")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)
