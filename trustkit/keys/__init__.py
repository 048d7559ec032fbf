"""Layer `keys`: public keys and IDs, signers, root certificates, the encrypted key store and
passphrase sources, and references to keys in a PKCS#11 token or a KMS (``keys.uri``; their
signers load securesystemslib and python-pkcs11 only when used).  Touches only the trust dir."""

from trustkit.keys.passphrase import EnvPassphrases, PassphraseRequest, PassphraseSource
from trustkit.keys.public import PublicKey, load_public_pem
from trustkit.keys.signer import CryptoSigner, Signer, SSLibSigner, generate
from trustkit.keys.store import KeyStore, StoredKey, default_trust_dir
from trustkit.keys.uri import KeyReference, is_key_uri

__all__ = [
    "CryptoSigner",
    "EnvPassphrases",
    "KeyReference",
    "KeyStore",
    "PassphraseRequest",
    "PassphraseSource",
    "PublicKey",
    "SSLibSigner",
    "Signer",
    "StoredKey",
    "default_trust_dir",
    "generate",
    "is_key_uri",
    "load_public_pem",
]
