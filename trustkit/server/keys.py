"""Layer `server`: the keys the server holds for each repository's timestamp (and, when asked,
snapshot) role.  Unlike notary's ``local`` signer they are stored in the database, encrypted
with the server passphrase, so a restart loses nothing."""

from __future__ import annotations

import json
import threading
from datetime import datetime

from trustkit.keys.der import parse_pem
from trustkit.keys.pkcs8 import encode_key_file, load_private_key_block
from trustkit.keys.public import PublicKey
from trustkit.keys.signer import CryptoSigner, generate
from trustkit.server.storage import Storage

SERVER_ROLES = ("timestamp", "snapshot")


class ServerKeys:
    """Ed25519 keys (what notary's built-in signer makes) per GUN and role."""

    def __init__(self, storage: Storage, passphrase: str) -> None:
        self.storage = storage
        self.passphrase = passphrase
        self._signers: dict[str, CryptoSigner] = {}  # keyid -> decrypted signer
        self._lock = threading.Lock()

    def public_key(self, gun: str, role: str, listed: list[str], *, now: datetime) -> PublicKey:
        """The key for ``GET <role>.key``: the one root lists if the server holds it, else the
        newest one not yet in a root (notary makes a new key on every call; reusing the pending
        one keeps two clients that initialise at once from getting different keys), else new."""
        stored = self.storage.server_keys(gun, role)
        for keyid, public, _ in stored:
            if keyid in listed:
                return _public(public)
        if stored:
            return _public(stored[0][1])
        return self.create(gun, role, now=now)

    def create(self, gun: str, role: str, *, now: datetime) -> PublicKey:
        """A new key (``POST <role>.key`` rotates to it)."""
        private = generate("ed25519")
        signer = CryptoSigner(private)
        public = signer.public_key
        text = encode_key_file(private, role=role, gun=gun, passphrase=self.passphrase)
        self.storage.add_server_key(gun, role, public.keyid, json.dumps(public.to_dict()), text, now=now)
        self._signers[public.keyid] = signer
        return public

    def signer(self, gun: str, role: str, listed: list[str]) -> tuple[CryptoSigner, str] | None:
        """A signer for one of the ``listed`` key IDs that the server holds, with its key ID."""
        for keyid, _, private in self.storage.server_keys(gun, role):
            if keyid not in listed:
                continue
            with self._lock:
                if keyid not in self._signers:
                    block = parse_pem(private, what="server key")[0]
                    self._signers[keyid] = CryptoSigner(load_private_key_block(block, self.passphrase))
            return self._signers[keyid], keyid
        return None


def _public(text: str) -> PublicKey:
    return PublicKey.from_dict(json.loads(text))
