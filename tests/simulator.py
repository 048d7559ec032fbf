"""An in-memory Notary v1 server under the test's control, for attack tests.

In the spirit of python-tuf's ``RepositorySimulator`` and notary's swizzler: the simulator holds
every key (root as an ``ecdsa-x509`` certificate with CN = GUN, the others bare ECDSA), builds
the metadata with trustkit's own ``metadata`` classes, signs it with ``Metadata.sign`` and keeps
every version it ever published, so it can answer notary's GET routes:

    /v2/<gun>/_trust/tuf/<role>.json          the current version
    /v2/<gun>/_trust/tuf/<role>.<sha256>.json  by checksum (any version ever published)
    /v2/<gun>/_trust/tuf/<N>.<role>.json       by version
    anything else                              404 with notary's error envelope

Tests drive the real client stack through :meth:`Simulator.transport` (an ``httpx.MockTransport``)
or :meth:`Simulator.updater`, then tamper with what is served: old versions, other bytes, wrong
keys, past expiry, root rotations, endless bodies.  It is a hostile server, not a stand-in for a
peer: interop with the real notary-server lives in tests/interop.

Typical use::

    sim = Simulator()
    sim.add_delegation(RELEASES)
    sim.add_target("v1", role=RELEASES)
    sim.publish()  # targets, releases, snapshot, timestamp v1
    sim.updater(trust_dir).refresh()  # a good update fills the cache
    sim.replace(TIMESTAMP, sim.old(TIMESTAMP, 1))  # then the attack
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from trustkit.client.notary import NotaryClient
from trustkit.client.updater import Updater
from trustkit.encoding import format_expires
from trustkit.keys.certs import root_key_for
from trustkit.keys.public import PublicKey
from trustkit.keys.signer import CryptoSigner, generate
from trustkit.metadata import DEFAULT_EXPIRY as EXPIRY
from trustkit.metadata import DelegationRole, FileMeta, Metadata, RoleKeys, Root, Snapshot, Targets, Timestamp
from trustkit.roles import BASE_ROLES, ROOT, SNAPSHOT, TARGETS, TIMESTAMP, parent_role
from trustkit.trust.trusted_set import TrustPinning

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GUN = "registry.example.com/team/app"
SERVER_URL = "https://notary.example.test"
_NOT_FOUND = (
    b'{"errors":[{"code":"METADATA_NOT_FOUND",'
    b'"message":"You have requested metadata that does not exist.","detail":{}}]}\n'
)
_HEADERS = {"Content-Type": "text/plain; charset=utf-8"}


# --------------------------------------------------------------------------------------------
# Keys


@dataclass(frozen=True)
class Key:
    """A signing key and the public key metadata lists for it (a certificate for root)."""

    signer: CryptoSigner
    public: PublicKey

    @property
    def keyid(self) -> str:
        return self.public.keyid

    @property
    def pair(self) -> tuple[CryptoSigner, str]:
        """What ``Metadata.sign`` takes."""
        return self.signer, self.keyid


def new_key() -> Key:
    """A bare ECDSA P-256 key, as notary makes for targets, snapshot, timestamp, delegations."""
    signer = CryptoSigner(generate("ecdsa"))
    return Key(signer, signer.public_key)


def new_root_key(gun: str = GUN, *, cn: str | None = None, issued: datetime = NOW) -> Key:
    """An ECDSA key with a self-signed certificate (CN = ``cn`` or the GUN, valid 10 years from
    ``issued``), listed in root.json as ``ecdsa-x509``."""
    private = generate("ecdsa")
    return Key(CryptoSigner(private), root_key_for(private, cn if cn is not None else gun, now=issued))


# --------------------------------------------------------------------------------------------
# Bodies a hostile server sends


class Endless:
    """A chunked body that never ends; ``sent`` counts the bytes the client pulled."""

    def __init__(self, chunk: bytes = b" " * 65536) -> None:
        self.chunk = chunk
        self.sent = 0

    def chunks(self) -> Iterator[bytes]:
        while True:
            self.sent += len(self.chunk)
            yield self.chunk


def with_whitespace(data: bytes) -> bytes:
    """The same document with one extra space: every signature still verifies, the hash and
    length change (notary's swizzler ``AddExtraSpace``)."""
    assert data.startswith(b'{"signed":')
    return b'{"signed": ' + data[len(b'{"signed":') :]


def reordered(data: bytes) -> bytes:
    """The same document with ``signatures`` before ``signed``: same length, same meaning,
    signatures still valid, a different hash."""
    doc = json.loads(data)
    signed = data[len(b'{"signed":') : data.rindex(b',"signatures":')]
    sigs = json.dumps(doc["signatures"], separators=(",", ":")).encode()
    out = b'{"signatures":' + sigs + b',"signed":' + signed + b"}"
    assert len(out) == len(data)
    return out


def cache_state(trust_dir: Path) -> dict[str, bytes]:
    """Every file under the trust dir's metadata cache, by relative path (temp files included,
    so a leftover shows up as a difference)."""
    base = Path(trust_dir) / "tuf"
    if not base.exists():
        return {}
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------
# The server


class Simulator:
    """One GUN on a Notary server that the test controls.

    The live payloads are public (``root``, ``targets[role]``, ``snapshot``, ``timestamp``) and
    ``keys[role]`` lists the keys that sign each role; edit them, then :meth:`publish_root` /
    :meth:`publish`.  Served bytes: ``files`` (everything ever published, by URL file name),
    overridden by ``overrides`` (set with :meth:`serve` / :meth:`replace`, cleared by
    :meth:`restore`).  ``requests`` records each GET's file name in order.

    A new simulator has published root v1 only; :meth:`publish` adds targets, snapshot and
    timestamp.  Expiries are the notary defaults counted from ``now`` (which tests may move).
    """

    def __init__(
        self, gun: str = GUN, now: datetime = NOW, *, targets_keys: int = 1, targets_threshold: int = 1
    ) -> None:
        self.gun = gun
        self.now = now
        self.files: dict[str, bytes] = {}
        self.overrides: dict[str, bytes | Endless | None] = {}
        self.requests: list[str] = []
        self.keys: dict[str, list[Key]] = {
            ROOT: [new_root_key(gun, issued=now)],
            TARGETS: [new_key() for _ in range(targets_keys)],
            SNAPSHOT: [new_key()],
            TIMESTAMP: [new_key()],
        }
        self.root = Root(
            expires=self._expiry(ROOT),
            version=0,
            keys={},
            roles={role: RoleKeys([k.keyid for k in self.keys[role]]) for role in BASE_ROLES},
        )
        self.root.roles[TARGETS].threshold = targets_threshold
        self._sync_root_keys()
        self.targets: dict[str, Targets] = {TARGETS: Targets(expires=self._expiry(TARGETS), version=0)}
        self.snapshot: Snapshot | None = None
        self.timestamp: Timestamp | None = None
        self.dirty: set[str] = {TARGETS}
        self._http: httpx.Client | None = None
        self.publish_root()

    # ---- the client side, wired to this server

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def client(self) -> NotaryClient:
        """trustkit's real Notary client, talking to this simulator."""
        if self._http is None:
            self._http = httpx.Client(transport=self.transport())
        return NotaryClient(SERVER_URL, self.gun, self._http, retries=0, sleep=lambda _: None)

    def updater(self, trust_dir: Path, *, now: datetime | None = None, pinning: TrustPinning | None = None) -> Updater:
        return Updater(self.client(), self.gun, Path(trust_dir), now=now or self.now, pinning=pinning)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    # ---- editing

    def add_target(self, name: str, content: bytes | None = None, *, role: str = TARGETS) -> FileMeta:
        """Sign ``name`` (docker style: sha256 and length of the manifest) into ``role``."""
        meta = FileMeta.for_bytes(content if content is not None else f"manifest of {name}".encode(), ("sha256",))
        self.targets[role].targets[name] = meta
        self.dirty.add(role)
        return meta

    def add_delegation(
        self, role: str, *, keys: int | list[Key] = 1, threshold: int = 1, paths: Iterable[str] = ("",)
    ) -> list[Key]:
        """Delegate ``role`` from its parent to new keys (or the ``keys`` given)."""
        chosen = [new_key() for _ in range(keys)] if isinstance(keys, int) else list(keys)
        parent = self.targets[parent_role(role)].delegations
        parent.keys.update({k.keyid: k.public for k in chosen})
        parent.roles.append(DelegationRole(role, [k.keyid for k in chosen], threshold, list(paths)))
        self.keys[role] = chosen
        self.targets[role] = Targets(expires=self._expiry(TARGETS), version=0)
        self.dirty |= {parent_role(role), role}
        return chosen

    def remove_delegation(self, role: str) -> None:
        """Its parent stops delegating ``role`` (as `notary delegation remove` does); the server
        stops serving it and the next snapshot no longer lists it."""
        parent = self.targets[parent_role(role)].delegations
        parent.roles = [entry for entry in parent.roles if entry.name != role]
        for name in [r for r in self.targets if r == role or r.startswith(role + "/")]:
            del self.targets[name]
            self.files.pop(f"{name}.json", None)
        self.dirty.add(parent_role(role))

    def rotate_root(
        self,
        new_keys: int | list[Key] = 1,
        threshold: int = 1,
        *,
        sign_with: str | list[Key] = "both",
        version_step: int = 1,
    ) -> bytes:
        """Replace the root keys and threshold in a new root version, signed by the old keys,
        the new ones, ``both`` (a proper rotation) or the keys given; then publish snapshot and
        timestamp."""
        old = self.keys[ROOT]
        new = (
            [new_root_key(self.gun, issued=self.now) for _ in range(new_keys)]
            if isinstance(new_keys, int)
            else list(new_keys)
        )
        self.keys[ROOT] = new
        self.root.roles[ROOT] = RoleKeys([k.keyid for k in new], threshold)
        self._sync_root_keys()
        signers = {"both": old + new, "old": old, "new": new}[sign_with] if isinstance(sign_with, str) else sign_with
        data = self.publish_root(sign_with=signers, version_step=version_step)
        self.publish()
        return data

    def rotate(self, role: str, new_keys: int = 1, threshold: int = 1) -> list[Key]:
        """New keys for a non-root base role, in a new root version signed by the root keys."""
        self.keys[role] = [new_key() for _ in range(new_keys)]
        self.root.roles[role] = RoleKeys([k.keyid for k in self.keys[role]], threshold)
        self._sync_root_keys()
        self.publish_root()
        return self.keys[role]

    # ---- publishing

    def publish_root(self, *, sign_with: list[Key] | None = None, version_step: int = 1) -> bytes:
        """Sign and serve the next root (``version_step`` 0 re-issues the current version)."""
        self.root.version += version_step
        if version_step:
            self.root.set_expiry(self.now + EXPIRY[ROOT])
        data = self._sign(self.root, sign_with if sign_with is not None else self.keys[ROOT])
        self._store(ROOT, self.root.version, data)
        return data

    def publish(
        self,
        *,
        roles: Iterable[str] = (),
        expires: Mapping[str, datetime] | None = None,
        sign_with: Mapping[str, list[Key]] | None = None,
        listed: Mapping[str, bytes | None] | None = None,
    ) -> None:
        """What a publish plus the server's signing produce: every changed targets role (and
        ``roles``) at version + 1, then a new snapshot and timestamp.

        ``expires`` and ``sign_with`` override a role's expiry and signing keys; ``listed`` makes
        the snapshot list other bytes for a role than its current file, or (None) leave it out
        (the server holds the snapshot key, so a compromised server can do both)."""
        expires, sign_with = dict(expires or {}), dict(sign_with or {})
        for role in sorted(self.dirty | set(roles), key=lambda r: r.count("/")):
            payload = self.targets[role]
            payload.version += 1
            payload.set_expiry(expires.get(role, self.now + EXPIRY[TARGETS]))
            self._store(role, payload.version, self._sign(payload, sign_with.get(role, self.keys[role])))
        self.dirty.clear()
        meta = {ROOT: FileMeta.for_bytes(self.files[f"{ROOT}.json"])}
        meta.update(
            {
                role: FileMeta.for_bytes(self.files[f"{role}.json"])
                for role in self.targets
                if f"{role}.json" in self.files
            }
        )
        for role, data in (listed or {}).items():
            if data is None:
                meta.pop(role, None)
            else:
                meta[role] = FileMeta.for_bytes(data)
        version = self.snapshot.version + 1 if self.snapshot else 1
        self.snapshot = Snapshot(
            expires=format_expires(expires.get(SNAPSHOT, self.now + EXPIRY[SNAPSHOT])), version=version, meta=meta
        )
        self._store(SNAPSHOT, version, self._sign(self.snapshot, sign_with.get(SNAPSHOT, self.keys[SNAPSHOT])))
        self.publish_timestamp(expires=expires.get(TIMESTAMP), sign_with=sign_with.get(TIMESTAMP))

    def publish_timestamp(
        self, snapshot: bytes | None = None, *, expires: datetime | None = None, sign_with: list[Key] | None = None
    ) -> bytes:
        """A new timestamp for the current snapshot, or for the ``snapshot`` bytes given (the
        server holds the timestamp key, so it can point at any snapshot it ever had)."""
        listed = snapshot if snapshot is not None else self.files[f"{SNAPSHOT}.json"]
        version = self.timestamp.version + 1 if self.timestamp else 1
        self.timestamp = Timestamp(
            expires=format_expires(expires or self.now + EXPIRY[TIMESTAMP]),
            version=version,
            meta={SNAPSHOT: FileMeta.for_bytes(listed)},
        )
        data = self._sign(self.timestamp, sign_with if sign_with is not None else self.keys[TIMESTAMP])
        self._store(TIMESTAMP, version, data)
        return data

    # ---- tampering with what is served

    def current(self, role: str) -> bytes:
        """The bytes published last for ``role`` (ignoring overrides)."""
        return self.files[f"{role}.json"]

    def old(self, role: str, version: int) -> bytes:
        """The bytes of an earlier version of ``role``."""
        return self.files[f"{version}.{role}.json"]

    def serve(self, name: str, body: bytes | Endless | None) -> None:
        """Answer GET ``.../_trust/tuf/<name>`` with ``body`` (None: 404)."""
        self.overrides[name] = body

    def replace(self, role: str, body: bytes | Endless | None) -> None:
        """Serve ``body`` wherever the current ``role`` file is served: ``<role>.json``, by its
        checksum and by its version."""
        data = self.current(role)
        version = Metadata.from_bytes(data, role=role).signed.version
        for name in (f"{role}.json", f"{role}.{hashlib.sha256(data).hexdigest()}.json", f"{version}.{role}.json"):
            self.overrides[name] = body

    def restore(self) -> None:
        """Stop tampering: serve what was published."""
        self.overrides.clear()

    def fetched(self, pattern: str) -> list[str]:
        """The requested file names that match the regular expression ``pattern``."""
        return [name for name in self.requests if re.fullmatch(pattern, name)]

    # ---- HTTP

    def accept_upload(self, files: Mapping[str, bytes]) -> None:
        """What an honest server does with a publish it accepts (no validation here: tests of
        the client's own output use this): store the parts, then a new snapshot and timestamp."""
        for role, data in files.items():
            meta = Metadata.from_bytes(data, role=role)
            if role == ROOT:
                self.root = meta.signed
            else:
                self.targets[role] = meta.signed
            self._store(role, meta.signed.version, data)
        self.publish()

    def handle(self, request: httpx.Request) -> httpx.Response:
        prefix = f"/v2/{self.gun}/_trust/tuf/"
        path = request.url.path
        if request.method == "POST" and path == prefix:
            self.accept_upload(_multipart_files(request))
            return httpx.Response(200)
        if request.method == "GET" and path.endswith((".key",)) and path.startswith(prefix):
            role = path[len(prefix) : -len(".key")]
            key = self.keys[role][0].public
            return httpx.Response(
                200,
                content=json.dumps(
                    {"keytype": key.keytype, "keyval": {"public": key.public, "private": None}}
                ).encode(),
            )
        if request.method != "GET" or not path.startswith(prefix):
            return httpx.Response(404, content=_NOT_FOUND, headers={"Content-Type": "application/json"})
        name = path[len(prefix) :]
        self.requests.append(name)
        body = self.overrides[name] if name in self.overrides else self.files.get(name)
        if body is None:
            return httpx.Response(404, content=_NOT_FOUND, headers={"Content-Type": "application/json"})
        if isinstance(body, Endless):
            return httpx.Response(200, content=body.chunks(), headers=_HEADERS)
        return httpx.Response(200, content=body, headers=_HEADERS)

    # ---- internals

    def _expiry(self, role: str) -> str:
        return format_expires(self.now + EXPIRY[role])

    def _sync_root_keys(self) -> None:
        self.root.keys = {k.keyid: k.public for role in BASE_ROLES for k in self.keys[role]}

    @staticmethod
    def _sign(payload: Root | Targets | Snapshot | Timestamp, keys: list[Key]) -> bytes:
        return Metadata(payload).sign([k.pair for k in keys])

    def _store(self, role: str, version: int, data: bytes) -> None:
        self.files[f"{role}.json"] = data
        self.files[f"{role}.{hashlib.sha256(data).hexdigest()}.json"] = data
        self.files[f"{version}.{role}.json"] = data


def _multipart_files(request: httpx.Request) -> dict[str, bytes]:
    """The parts of a notary publish, keyed by their filename (the role)."""
    import email.parser
    import email.policy

    body = request.read()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + body
    )
    return {part.get_filename().removesuffix(".json"): part.get_payload(decode=True) for part in message.iter_parts()}


__all__ = [
    "GUN",
    "NOW",
    "SERVER_URL",
    "Endless",
    "Key",
    "Simulator",
    "cache_state",
    "new_key",
    "new_root_key",
    "reordered",
    "with_whitespace",
]
