"""Layer `keys`: private keys in notary's PKCS#8 forms (wire spec §6.2).

Writing reproduces notary's encoder exactly: PBES2 with PBKDF2-HMAC-SHA1 (8-byte salt, 2048
iterations), AES-256-CBC, and notary's inner encodings (EC PrivateKeyInfo version 1, RSA without
the NULL parameter, Ed25519 as notary's 96-byte blob under OID 1.3.6.1.4.1.11591.15.1).

Reading accepts those, standard PKCS#8 (plain or PBES2-encrypted with other PRFs/ciphers),
and the legacy SEC1 / PKCS#1 blocks, encrypted or not, so ``key load`` takes any PEM key.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from trustkit.errors import KeyFormatError, PassphraseError
from trustkit.keys import der
from trustkit.keys.der import OCTET_STRING, SEQUENCE, PemBlock

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

OID_EC = "1.2.840.10045.2.1"
OID_RSA = "1.2.840.113549.1.1.1"
OID_ED25519_NOTARY = "1.3.6.1.4.1.11591.15.1"
OID_ED25519 = "1.3.101.112"
OID_PBES2 = "1.2.840.113549.1.5.13"
OID_PBKDF2 = "1.2.840.113549.1.5.12"
CURVE_OIDS = {"secp256r1": "1.2.840.10045.3.1.7", "secp384r1": "1.3.132.0.34", "secp521r1": "1.3.132.0.35"}

_PRFS = {  # PBKDF2 pseudo-random functions; absent means HMAC-SHA1
    "1.2.840.113549.2.7": "sha1",
    "1.2.840.113549.2.8": "sha224",
    "1.2.840.113549.2.9": "sha256",
    "1.2.840.113549.2.10": "sha384",
    "1.2.840.113549.2.11": "sha512",
}
_CIPHERS = {"2.16.840.1.101.3.4.1.2": 16, "2.16.840.1.101.3.4.1.22": 24, "2.16.840.1.101.3.4.1.42": 32}
OID_AES256_CBC = "2.16.840.1.101.3.4.1.42"
NOTARY_ITERATIONS = 2048

# --------------------------------------------------------------------------------------------
# Writing


def private_key_info(key: PrivateKey) -> bytes:
    """Notary's unencrypted PKCS#8 PrivateKeyInfo for ``key``."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        curve = CURVE_OIDS.get(key.curve.name)
        if curve is None:
            raise KeyFormatError(f"curve {key.curve.name} is not supported")
        sec1 = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        return der.seq(der.integer(1), der.seq(der.oid(OID_EC), der.oid(curve)), der.octets(sec1))
    if isinstance(key, rsa.RSAPrivateKey):
        pkcs1 = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        return der.seq(der.integer(0), der.seq(der.oid(OID_RSA)), der.octets(pkcs1))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return der.seq(der.integer(0), der.seq(der.oid(OID_ED25519_NOTARY)), der.octets(public + seed + public))
    raise KeyFormatError(f"unsupported private key type {type(key).__name__}")


def encrypt(info: bytes, passphrase: str) -> bytes:
    """PBES2-encrypt a PrivateKeyInfo exactly as notary does."""
    salt, iv = os.urandom(8), os.urandom(16)
    key = hashlib.pbkdf2_hmac("sha1", passphrase.encode("utf-8"), salt, NOTARY_ITERATIONS, 32)
    pad = 16 - len(info) % 16
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(info + bytes([pad]) * pad) + encryptor.finalize()
    params = der.seq(
        der.seq(der.oid(OID_PBKDF2), der.seq(der.octets(salt), der.integer(NOTARY_ITERATIONS))),
        der.seq(der.oid(OID_AES256_CBC), der.octets(iv)),
    )
    return der.seq(der.seq(der.oid(OID_PBES2), params), der.octets(ciphertext))


def encode_key_file(key: PrivateKey, *, role: str, gun: str | None, passphrase: str) -> str:
    """The text of ``private/<keyid>.key`` as notary writes it (headers sorted: gun, role)."""
    if not passphrase:
        raise PassphraseError("refusing to write a private key without a passphrase")
    headers = {"role": role}
    if gun:
        headers["gun"] = gun
    return PemBlock("ENCRYPTED PRIVATE KEY", encrypt(private_key_info(key), passphrase), headers).encode()


# --------------------------------------------------------------------------------------------
# Reading


def decrypt(encrypted_der: bytes, passphrase: str) -> bytes:
    """Decrypt a PBES2 EncryptedPrivateKeyInfo into PrivateKeyInfo DER.

    Raises:
        KeyFormatError: not PBES2/PBKDF2/AES-CBC.
        PassphraseError: the passphrase does not decrypt it.
    """
    tag, outer, _ = der.read_tlv(encrypted_der)
    children = der.read_children(outer) if tag == SEQUENCE else []
    if len(children) != 2 or children[0][0] != SEQUENCE or children[1][0] != OCTET_STRING:
        raise KeyFormatError("not an encrypted PKCS#8 key")
    alg = der.read_children(children[0][1])
    if der.decode_oid(alg[0][1]) != OID_PBES2 or len(alg) != 2:
        raise KeyFormatError("encrypted key does not use PBES2; re-encrypt it with a current tool")
    kdf, cipher = der.read_children(alg[1][1])
    kdf_parts = der.read_children(kdf[1])
    if der.decode_oid(kdf_parts[0][1]) != OID_PBKDF2:
        raise KeyFormatError("encrypted key does not use PBKDF2")
    kdf_params = der.read_children(kdf_parts[1][1])
    salt = kdf_params[0][1]
    iterations = int.from_bytes(kdf_params[1][1], "big")
    prf = "sha1"
    for tag_, value in kdf_params[2:]:
        if tag_ == SEQUENCE:
            prf_oid = der.decode_oid(der.read_children(value)[0][1])
            if prf_oid not in _PRFS:
                raise KeyFormatError(f"unsupported PBKDF2 hash {prf_oid}")
            prf = _PRFS[prf_oid]
    cipher_parts = der.read_children(cipher[1])
    cipher_oid = der.decode_oid(cipher_parts[0][1])
    if cipher_oid not in _CIPHERS:
        raise KeyFormatError(f"unsupported key encryption cipher {cipher_oid}")
    iv = cipher_parts[1][1]
    if iterations < 1 or iterations > 10_000_000 or len(iv) != 16:
        raise KeyFormatError("encrypted key has unusable PBES2 parameters")
    key = hashlib.pbkdf2_hmac(prf, passphrase.encode("utf-8"), salt, iterations, _CIPHERS[cipher_oid])
    ciphertext = children[1][1]
    if not ciphertext or len(ciphertext) % 16:
        raise KeyFormatError("encrypted key data is not a whole number of AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    plain = decryptor.update(ciphertext) + decryptor.finalize()
    # A wrong passphrase yields garbage: bad padding or a structure that does not parse.
    pad = plain[-1]
    if not 1 <= pad <= 16 or not hmac.compare_digest(plain[-pad:], bytes([pad]) * pad):
        raise PassphraseError("wrong passphrase")
    plain = plain[:-pad]
    try:
        tag, _, end = der.read_tlv(plain)
    except KeyFormatError:
        raise PassphraseError("wrong passphrase") from None
    if tag != SEQUENCE or end != len(plain):
        raise PassphraseError("wrong passphrase")
    return plain


def load_private_key_info(info: bytes) -> PrivateKey:
    """Load a PrivateKeyInfo in notary's or the standard encoding.

    Raises:
        KeyFormatError: unknown algorithm or inconsistent key.
    """
    tag, body, _ = der.read_tlv(info)
    parts = der.read_children(body) if tag == SEQUENCE else []
    if len(parts) < 3 or parts[1][0] != SEQUENCE or parts[2][0] != OCTET_STRING:
        raise KeyFormatError("not a PKCS#8 private key")
    alg = der.read_children(parts[1][1])
    alg_oid = der.decode_oid(alg[0][1])
    inner = parts[2][1]
    try:
        if alg_oid == OID_EC:
            # cryptography insists on version 0; notary writes 1.  Rebuild with 0.
            rebuilt = der.seq(der.integer(0), der.tlv(SEQUENCE, parts[1][1]), der.octets(inner))
            key = serialization.load_der_private_key(rebuilt, None)
        elif alg_oid == OID_RSA:
            key = serialization.load_der_private_key(inner, None)  # PKCS#1 RSAPrivateKey
        elif alg_oid == OID_ED25519_NOTARY:
            if len(inner) != 96:
                raise KeyFormatError("notary Ed25519 key blob must be 96 bytes")
            key = ed25519.Ed25519PrivateKey.from_private_bytes(inner[32:64])
            derived = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            if derived != inner[:32]:
                raise KeyFormatError("notary Ed25519 key blob is inconsistent")
        elif alg_oid == OID_ED25519:
            key = serialization.load_der_private_key(info, None)
        else:
            raise KeyFormatError(f"unsupported private key algorithm {alg_oid}")
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"private key data is invalid: {exc}") from None
    return _checked(key)


def _checked(key: object) -> PrivateKey:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in CURVE_OIDS:
            raise KeyFormatError(f"curve {key.curve.name} is not supported")
    elif isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise KeyFormatError(f"RSA key is {key.key_size} bits; at least 2048 are required")
    elif not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyFormatError(f"unsupported private key type {type(key).__name__}")
    return key


def is_encrypted(block: PemBlock) -> bool:
    return block.type == "ENCRYPTED PRIVATE KEY" or "ENCRYPTED" in block.headers.get("Proc-Type", "")


def load_private_key_block(block: PemBlock, passphrase: str | None) -> PrivateKey:
    """Load any supported private key PEM block.

    Raises:
        KeyFormatError: not a private key block, or unusable contents.
        PassphraseError: encrypted and the passphrase is missing or wrong.
    """
    if block.type == "ENCRYPTED PRIVATE KEY":
        if passphrase is None:
            raise PassphraseError("the key is encrypted and no passphrase was given")
        return load_private_key_info(decrypt(block.der, passphrase))
    if block.type == "PRIVATE KEY":
        return load_private_key_info(block.der)
    if block.type in ("EC PRIVATE KEY", "RSA PRIVATE KEY"):
        return _load_legacy(block, passphrase)
    if block.type == "ED25519 PRIVATE KEY" and len(block.der) == 96:  # notary's legacy block
        return load_private_key_info(
            der.seq(der.integer(0), der.seq(der.oid(OID_ED25519_NOTARY)), der.octets(block.der))
        )
    raise KeyFormatError(f"a {block.type} PEM block is not a private key")


def _load_legacy(block: PemBlock, passphrase: str | None) -> PrivateKey:
    encrypted = is_encrypted(block)
    if encrypted and passphrase is None:
        raise PassphraseError("the key is encrypted and no passphrase was given")
    # Only the RFC 1423 headers matter to OpenSSL; notary's role/gun headers would confuse it.
    # (Sorting keeps Proc-Type before DEK-Info, the order RFC 1423 requires.)
    pem = PemBlock(
        block.type, block.der, {k: v for k, v in block.headers.items() if k in ("Proc-Type", "DEK-Info")}
    ).encode()
    try:
        key = serialization.load_pem_private_key(
            pem.encode(), passphrase.encode() if encrypted and passphrase else None
        )
    except (ValueError, TypeError) as exc:
        if encrypted:
            raise PassphraseError("wrong passphrase") from None
        raise KeyFormatError(f"private key data is invalid: {exc}") from None
    except UnsupportedAlgorithm as exc:
        raise KeyFormatError(f"unsupported private key: {exc}") from None
    return _checked(key)
