"""Layer `server`: the keys the server holds for each repository's timestamp (and, when asked,
snapshot) role.  Unlike notary's ``local`` signer they are stored in the database, encrypted
with the server passphrase, so a restart loses nothing.

New keys are ECDSA P-256 by default, as production notary made them (notary-signer with
``trust_service.key_algorithm: ecdsa``: Docker Hub, Harbor, MSR); some verifiers accept no other
type.  A repository keeps the keys it has until its root holder rotates them."""

from __future__ import annotations

import json
import threading
from datetime import datetime

import sqlalchemy as sa

from trustkit.keys.der import parse_pem
from trustkit.keys.pkcs8 import encode_key_file, load_private_key_block
from trustkit.keys.public import PublicKey
from trustkit.keys.signer import CryptoSigner, generate
from trustkit.server.storage import SERVER_KEYS, Storage

SERVER_ROLES = ("timestamp", "snapshot")
KEY_ALGORITHMS = ("ecdsa", "ed25519", "rsa")  # notary's trust_service.key_algorithm values
DEFAULT_KEY_ALGORITHM = "ecdsa"


class ServerKeys:
    """The server's keys per GUN and role; new ones of type ``algorithm``."""

    def __init__(self, storage: Storage, passphrase: str, algorithm: str = DEFAULT_KEY_ALGORITHM) -> None:
        if algorithm not in KEY_ALGORITHMS:
            raise ValueError(f"server key algorithm must be one of {', '.join(KEY_ALGORITHMS)}, not {algorithm!r}")
        self.storage = storage
        self.passphrase = passphrase
        self.algorithm = algorithm
        self._signers: dict[str, CryptoSigner] = {}  # keyid -> decrypted signer
        self._held: dict[tuple[str, str, str], CryptoSigner] = {}  # (gun, role, keyid) read from the table
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
        private = generate(self.algorithm)
        signer = CryptoSigner(private)
        public = signer.public_key
        text = encode_key_file(private, role=role, gun=gun, passphrase=self.passphrase)
        self.storage.add_server_key(gun, role, public.keyid, json.dumps(public.to_dict()), text, now=now)
        self._signers[public.keyid] = signer
        return public

    def signer(self, gun: str, role: str, listed: list[str]) -> tuple[CryptoSigner, str] | None:
        """A signer for one of the ``listed`` key IDs that the server holds, with its key ID.
        A key once read for (GUN, role) is kept: server keys are never deleted (a delete of the
        trust data leaves them), so a publish signs without reading the keys table again."""
        for keyid in listed:
            held = self._held.get((gun, role, keyid))
            if held is not None:
                return held, keyid
        for keyid, _, private in self.storage.server_keys(gun, role):
            if keyid not in listed:
                continue
            with self._lock:
                if keyid not in self._signers:
                    block = parse_pem(private, what="server key")[0]
                    self._signers[keyid] = CryptoSigner(load_private_key_block(block, self.passphrase))
                self._held[gun, role, keyid] = self._signers[keyid]
            return self._signers[keyid], keyid
        return None

    def check_can_sign(self) -> None:
        """Raise if the server could not sign: the newest stored key must decrypt with the
        passphrase (a server started with the wrong one serves reads but fails every publish);
        with no key stored yet, a new one must encrypt and decrypt."""
        query = sa.select(SERVER_KEYS.c.private).order_by(SERVER_KEYS.c.id.desc()).limit(1)
        with self.storage.engine.connect() as conn:
            private = conn.execute(query).scalar()
        if private is None:
            canary = generate("ed25519")  # the passphrase is what is checked; Ed25519 is made fastest
            private = encode_key_file(canary, role="timestamp", gun=None, passphrase=self.passphrase)
        load_private_key_block(parse_pem(private, what="server key")[0], self.passphrase)


def _public(text: str) -> PublicKey:
    return PublicKey.from_dict(json.loads(text))
