"""Layer `keys`: public keys and IDs, signers, root certificates, the encrypted key store and
passphrase sources.  Touches only the trust dir."""

from trustkit.keys.passphrase import EnvPassphrases, PassphraseRequest, PassphraseSource
from trustkit.keys.public import PublicKey, load_public_pem
from trustkit.keys.signer import CryptoSigner, Signer, SSLibSigner, generate
from trustkit.keys.store import KeyStore, StoredKey, default_trust_dir

__all__ = [
    "CryptoSigner",
    "EnvPassphrases",
    "KeyStore",
    "PassphraseRequest",
    "PassphraseSource",
    "PublicKey",
    "SSLibSigner",
    "Signer",
    "StoredKey",
    "default_trust_dir",
    "generate",
    "load_public_pem",
]
