"""Layer `keys`: public keys as notary writes them in metadata, their IDs, and verification.

A key object is ``{"keytype": T, "keyval": {"private": null, "public": B64}}`` (§3.1).  Its ID
is the SHA-256 of that object's canonical JSON (§3.3).  Certificate keys (``*-x509``) also have
a *canonical* ID, the ID of their bare public key, which names the private key file (§3.4).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from trustkit.encoding import b64decode, b64encode, canonical_json, raw_to_der_ecdsa
from trustkit.errors import EncodingError, KeyFormatError, MetadataError

CryptoPublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

ECDSA, ECDSA_X509, RSA, RSA_X509, ED25519 = "ecdsa", "ecdsa-x509", "rsa", "rsa-x509", "ed25519"
X509_TYPES = (ECDSA_X509, RSA_X509)

# Signature methods notary writes (first) and the extra ones it only verifies (§1.7).
METHOD_FOR_ALGORITHM = {"ecdsa": "ecdsa", "rsa": "rsapss", "ed25519": "eddsa"}
METHODS_FOR_KEYTYPE = {
    ECDSA: ("ecdsa",),
    ECDSA_X509: ("ecdsa",),
    ED25519: ("eddsa",),
    RSA: ("rsapss", "rsapkcs1v15", "pycrypto-pkcs#1 pss"),
    RSA_X509: ("rsapss", "rsapkcs1v15"),
}
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


@dataclass(frozen=True)
class PublicKey:
    """A public key exactly as it appears in trust metadata."""

    keytype: str
    public: str  # base64 of DER SPKI, a PEM certificate bundle, or raw Ed25519 bytes

    # ---- construction

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "key") -> PublicKey:
        """Parse a key object strictly (exact field set, string values).

        Raises:
            MetadataError: wrong shape.
        """
        if not isinstance(data, dict) or set(data) != {"keytype", "keyval"}:
            raise MetadataError('must be {"keytype", "keyval"}', path=path)
        keyval = data["keyval"]
        if not isinstance(keyval, dict) or set(keyval) != {"private", "public"}:
            raise MetadataError('keyval must be {"private": null, "public": ...}', path=path)
        if keyval["private"] is not None:
            raise MetadataError("keyval.private must be null in metadata", path=path)
        if not isinstance(data["keytype"], str) or not isinstance(keyval["public"], str):
            raise MetadataError("keytype and keyval.public must be strings", path=path)
        return cls(data["keytype"], keyval["public"])

    @classmethod
    def from_crypto(cls, key: PublicKeyTypes) -> PublicKey:
        """A bare key (``ecdsa``, ``rsa`` or ``ed25519``) for a cryptography public key.

        Raises:
            KeyFormatError: any other kind of key.
        """
        if isinstance(key, ed25519.Ed25519PublicKey):
            return cls(ED25519, b64encode(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)))
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise KeyFormatError(f"unsupported public key type {type(key).__name__}")
        spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls(ECDSA if isinstance(key, ec.EllipticCurvePublicKey) else RSA, b64encode(spki))

    @classmethod
    def from_certificates(cls, certs: list[x509.Certificate]) -> PublicKey:
        """A certificate key: leaf first, then intermediates, as PEM text (§3.2)."""
        if not certs:
            raise KeyFormatError("no certificate given")
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
        leaf_key = certs[0].public_key()
        if isinstance(leaf_key, ec.EllipticCurvePublicKey):
            return cls(ECDSA_X509, b64encode(pem))
        if isinstance(leaf_key, rsa.RSAPublicKey):
            return cls(RSA_X509, b64encode(pem))
        raise KeyFormatError("certificate keys must be ECDSA or RSA")

    def to_dict(self) -> dict[str, Any]:
        return {"keytype": self.keytype, "keyval": {"private": None, "public": self.public}}

    # ---- identity

    @cached_property
    def keyid(self) -> str:
        """The TUF key ID: what metadata lists and signatures name."""
        return hashlib.sha256(canonical_json(self.to_dict())).hexdigest()

    @property
    def is_certificate(self) -> bool:
        return self.keytype in X509_TYPES

    @cached_property
    def bare(self) -> PublicKey:
        """The key without its certificate (itself when it has none)."""
        if not self.is_certificate:
            return self
        return PublicKey.from_crypto(self.crypto_key)

    @property
    def canonical_id(self) -> str:
        """The private key's ID: names ``private/<id>.key`` (§3.4)."""
        return self.bare.keyid

    @cached_property
    def identity(self) -> bytes:
        """What makes two keys the same key, whatever their spelling: the DER
        SubjectPublicKeyInfo of the decoded key (uncompressed point for ECDSA), or the raw 32
        bytes for Ed25519.  Key IDs hash the encoded text, so one ECDSA key written with a
        compressed point, with unused base64 bits set, or inside a certificate has several IDs:
        thresholds count identities, never IDs.

        Raises:
            KeyFormatError: the key does not decode.
        """
        key = self.crypto_key
        if isinstance(key, ed25519.Ed25519PublicKey):
            return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def algorithm(self) -> str:
        """``ecdsa``, ``rsa``, ``ed25519`` or the unknown keytype itself."""
        return {ECDSA_X509: "ecdsa", RSA_X509: "rsa"}.get(self.keytype, self.keytype)

    # ---- material

    @cached_property
    def certificates(self) -> list[x509.Certificate]:
        if not self.is_certificate:
            return []
        from cryptography import x509  # only certificate keys need it (start-up cost)

        try:
            certs = x509.load_pem_x509_certificates(b64decode(self.public, what="certificate key"))
        except (ValueError, EncodingError):
            raise KeyFormatError(f"key {self.keyid[:12]} is not a valid PEM certificate bundle") from None
        return certs

    @cached_property
    def crypto_key(self) -> CryptoPublicKey:
        """The cryptography key; raises KeyFormatError for unusable or unknown keys."""
        key: PublicKeyTypes
        try:
            if self.keytype == ED25519:
                raw = b64decode(self.public, what="ed25519 key")
                if len(raw) != 32:
                    raise KeyFormatError(f"ed25519 public key must be 32 bytes, not {len(raw)}")
                return ed25519.Ed25519PublicKey.from_public_bytes(raw)
            if self.keytype in X509_TYPES:
                key = self.certificates[0].public_key()
            elif self.keytype in (ECDSA, RSA):
                key = serialization.load_der_public_key(b64decode(self.public, what=f"{self.keytype} key"))
            else:
                raise KeyFormatError(f'unknown key type "{self.keytype}"')
        except (ValueError, UnsupportedAlgorithm, EncodingError) as exc:
            raise KeyFormatError(f"{self.keytype} public key is invalid: {exc}") from None
        expected = ec.EllipticCurvePublicKey if self.algorithm == "ecdsa" else rsa.RSAPublicKey
        if not isinstance(key, expected):
            raise KeyFormatError(f"{self.keytype} key holds a {type(key).__name__}")
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
            raise KeyFormatError(f"RSA key is {key.key_size} bits; at least 2048 are required")
        if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            raise KeyFormatError(f"curve {key.curve.name} is not supported")
        return key

    # ---- verification

    def verify(self, method: str, message: bytes, signature: bytes) -> bool:
        """True if ``signature`` by this key over ``message`` is valid with ``method``.

        An unknown key type, a method that does not belong to the key type (CVE-2015-9258) or a
        malformed signature are all simply invalid.
        """
        if method not in METHODS_FOR_KEYTYPE.get(self.keytype, ()):
            return False
        try:
            key = self.crypto_key
        except KeyFormatError:
            return False
        try:
            return _signature_checks_out(key, method, message, signature)
        except (InvalidSignature, ValueError):
            return False


def _signature_checks_out(key: CryptoPublicKey, method: str, message: bytes, signature: bytes) -> bool:
    """False for a signature of the wrong size; raises InvalidSignature (or ValueError) for a
    wrong one."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        # Notary hashes with SHA-256 whatever the curve; r||s must be exactly 2x size.
        if len(signature) != 2 * ((key.curve.key_size + 7) // 8):
            return False
        key.verify(raw_to_der_ecdsa(signature), message, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(signature, message)
    else:  # RSA
        if len(signature) < 256:
            return False
        key.verify(signature, message, padding.PKCS1v15() if method == "rsapkcs1v15" else _PSS, hashes.SHA256())
    return True


def distinct_keys(keys: Mapping[str, PublicKey], keyids: Iterable[str]) -> int:
    """How many different keys ``keyids`` name (see :attr:`PublicKey.identity`); IDs that are
    not in ``keys`` or do not decode count for nothing."""
    identities = set()
    for keyid in keyids:
        key = keys.get(keyid)
        if key is None:
            continue
        try:
            identities.add(key.identity)
        except KeyFormatError:
            continue
    return len(identities)


def load_public_pem(text: str | bytes, *, what: str = "public key file") -> PublicKey:
    """A ``PUBLIC KEY`` block (bare key) or ``CERTIFICATE`` blocks (certificate key), as
    ``docker trust signer add --key`` accepts them.

    Raises:
        KeyFormatError: anything else.
    """
    from cryptography import x509

    from trustkit.keys.der import parse_pem

    blocks = parse_pem(text, what=what)
    kinds = {b.type for b in blocks}
    if kinds == {"CERTIFICATE"}:
        try:
            certs = [x509.load_der_x509_certificate(b.der) for b in blocks]
        except ValueError:
            raise KeyFormatError(f"{what} holds a certificate that does not parse") from None
        return PublicKey.from_certificates(certs)
    if len(blocks) == 1 and blocks[0].type == "PUBLIC KEY":
        try:
            key = serialization.load_der_public_key(blocks[0].der)
        except (ValueError, UnsupportedAlgorithm):
            raise KeyFormatError(f"{what} holds a public key that does not parse") from None
        public = PublicKey.from_crypto(key)
        public.crypto_key  # noqa: B018 - applies the size and curve rules now
        return public
    raise KeyFormatError(f"{what} must hold one PUBLIC KEY block or CERTIFICATE blocks, not {sorted(kinds)}")
