"""Layer `keys`: signers.  A signer holds (or reaches) a private key and returns notary-shaped
signature bytes; the metadata layer wraps them into ``{"keyid","method","sig"}``.

``CryptoSigner`` signs with an in-memory key (file keys end up here once decrypted).
``SSLibSigner`` adapts any securesystemslib signer (HSM, cloud KMS URIs) to the same interface,
converting its DER ECDSA output to notary's raw r||s.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from trustkit.encoding import der_to_raw_ecdsa
from trustkit.errors import KeyFormatError
from trustkit.keys.pkcs8 import PrivateKey
from trustkit.keys.public import METHOD_FOR_ALGORITHM, PublicKey

ALGORITHMS = ("ecdsa", "ed25519", "rsa")
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


class Signer(ABC):
    """Something that can sign for one key."""

    @property
    @abstractmethod
    def public_key(self) -> PublicKey:
        """The bare public key; its ``keyid`` is the canonical ID."""

    @property
    def method(self) -> str:
        return METHOD_FOR_ALGORITHM[self.public_key.algorithm]

    @abstractmethod
    def sign(self, message: bytes) -> bytes:
        """Raw signature bytes over ``message`` in notary's encoding for ``method``."""


class CryptoSigner(Signer):
    """Signs with a pyca/cryptography private key."""

    def __init__(self, key: PrivateKey) -> None:
        self.private_key = key
        self._public = PublicKey.from_crypto(key.public_key())

    @property
    def public_key(self) -> PublicKey:
        return self._public

    def sign(self, message: bytes) -> bytes:
        key = self.private_key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            size = (key.curve.key_size + 7) // 8
            return der_to_raw_ecdsa(key.sign(message, ec.ECDSA(hashes.SHA256())), size)
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(message)
        return key.sign(message, _PSS, hashes.SHA256())


def generate(algorithm: str = "ecdsa", *, rsa_bits: int = 3072) -> PrivateKey:
    """A new private key: ECDSA P-256 (notary's default), Ed25519 or RSA.

    Raises:
        KeyFormatError: unknown algorithm or RSA under 2048 bits.
    """
    if algorithm == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "rsa":
        if rsa_bits < 2048:
            raise KeyFormatError("RSA keys must be at least 2048 bits")
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    raise KeyFormatError(f'unknown algorithm "{algorithm}"; use one of {", ".join(ALGORITHMS)}')


class SSLibSigner(Signer):
    """Adapter for a securesystemslib ``Signer`` (``pkcs11:``, ``awskms:``, ``gcpkms:`` ... URIs).

    Only ECDSA P-256 (``ecdsa-sha2-nistp256``), Ed25519 and RSA-PSS-SHA256 schemes produce
    signatures notary can verify; others are refused up front.  Every signature is checked
    against the public key before it is used: a token or KMS that signs something else (another
    key, another hash) fails here, naming the key, instead of publishing metadata nobody accepts.
    """

    _SCHEMES = {
        "ecdsa-sha2-nistp256": "ecdsa",
        "ed25519": "ed25519",
        "rsassa-pss-sha256": "rsa",
    }

    def __init__(self, signer: Any, *, where: str | None = None) -> None:
        scheme = signer.public_key.scheme
        if scheme not in self._SCHEMES:
            raise KeyFormatError(f'securesystemslib scheme "{scheme}" cannot make notary signatures')
        self._signer = signer
        self._public = public_from_sslib(signer.public_key)
        self.where = where or f"{type(signer).__name__} key {self._public.keyid[:12]}"

    @classmethod
    def from_uri(cls, uri: str, public_key: Any, secrets_handler: Any = None) -> SSLibSigner:
        from securesystemslib.signer import Signer as SSLibBase

        return cls(SSLibBase.from_priv_key_uri(uri, public_key, secrets_handler))

    @property
    def public_key(self) -> PublicKey:
        return self._public

    def sign(self, message: bytes) -> bytes:
        raw = bytes.fromhex(self._signer.sign(message).signature)
        key = self._public.crypto_key
        if isinstance(key, ec.EllipticCurvePublicKey):  # securesystemslib writes DER, notary r||s
            raw = der_to_raw_ecdsa(raw, (key.curve.key_size + 7) // 8)
        if not self._public.verify(self.method, message, raw):
            raise KeyFormatError(
                f"the signature made by {self.where} does not verify with its public key",
                hint="the key behind the URI is not the key registered for it, or it signs another hash",
            )
        return raw


def public_from_sslib(key: Any) -> PublicKey:
    """The bare trustkit key for a securesystemslib key."""
    public = key.keyval.get("public", "")
    if key.keytype == "ed25519":
        return PublicKey.from_crypto(ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(public)))
    try:
        crypto = serialization.load_pem_public_key(public.encode())
    except ValueError:
        raise KeyFormatError("securesystemslib key has no usable PEM public key") from None
    return PublicKey.from_crypto(crypto)
