"""Layer `metadata`: the signed payloads (Root, Targets, Snapshot, Timestamp) in notary's shape.

Each class parses strictly (exact field set, exact types, ``type(x) is int``) and its
``to_dict`` emits exactly Go's field set (§1.3, §2.4), so re-serialising a file notary wrote
gives the same bytes.  ``expires`` is kept as the original string: Python datetimes hold only
microseconds and notary writes nanoseconds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from operator import itemgetter
from typing import Any, ClassVar

from trustkit.encoding import b64decode, b64encode, check_depth, format_expires, parse_expires
from trustkit.errors import EncodingError, MetadataError
from trustkit.keys.public import PublicKey
from trustkit.roles import BASE_ROLES, ROOT, SNAPSHOT, TARGETS, TIMESTAMP, is_delegation, parent_role, role_name_problem

HASH_SIZES = {"sha256": 32, "sha512": 64}
# Standard base64 of a digest of exactly the right size (what from_dict checks by decoding).
_SHA256_B64 = re.compile(r"[A-Za-z0-9+/]{43}=").fullmatch
_SHA512_B64 = re.compile(r"[A-Za-z0-9+/]{86}==").fullmatch


# How long a freshly signed role stays valid: notary's defaults, used by the client and the server.
DEFAULT_EXPIRY = {
    ROOT: timedelta(days=3650),
    TARGETS: timedelta(days=1095),
    SNAPSHOT: timedelta(days=1095),
    TIMESTAMP: timedelta(days=14),
}


@dataclass(frozen=True)
class SigningRule:
    """Who may sign a role, as its delegator says: the keys, the IDs that count, and how many of
    them must sign (python-tuf's ``get_delegated_role``).  The one answer the trusted set, the
    server's validation and the editing code all use."""

    role: str
    keys: Mapping[str, PublicKey]
    keyids: tuple[str, ...]
    threshold: int


def validate_role_name(name: str) -> str:
    """Raises MetadataError naming the rule a role name breaks."""
    problem = role_name_problem(name)
    if problem:
        raise MetadataError(problem)
    return name


# --------------------------------------------------------------------------------------------
# Field helpers: one place for the strict type rules


def _obj(value: Any, path: str, fields: set[str], optional: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MetadataError("must be an object", path=path)
    missing = fields - set(value)
    if missing:
        raise MetadataError(f"missing field {sorted(missing)[0]!r}", path=path)
    extra = set(value) - fields - optional
    if extra:
        raise MetadataError(f"unknown field {sorted(extra)[0]!r}", path=path)
    return value


def _int(value: Any, path: str, minimum: int) -> int:
    if type(value) is not int:  # bool is an int subclass: refuse it
        raise MetadataError(f"must be an integer, not {type(value).__name__}", path=path)
    if value < minimum:
        raise MetadataError(f"must be at least {minimum}, not {value}", path=path)
    return value


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise MetadataError(f"must be a string, not {type(value).__name__}", path=path)
    return value


def _str_list(value: Any, path: str) -> list[str]:
    if not isinstance(value, list):
        raise MetadataError("must be a list", path=path)
    return [_str(v, f"{path}[{i}]") for i, v in enumerate(value)]


def _expires(value: Any, path: str) -> str:
    text = _str(value, path)
    try:
        parse_expires(text)
    except EncodingError as exc:
        raise MetadataError(exc.message, path=path) from None
    return text


def _type(value: dict[str, Any], expected: str, path: str) -> None:
    if value.get("_type") != expected:
        raise MetadataError(f'_type must be "{expected}", not {value.get("_type")!r}', path=path)


def _keys(value: Any, path: str) -> dict[str, PublicKey]:
    if not isinstance(value, dict):
        raise MetadataError("must be an object", path=path)
    keys = {}
    for keyid, data in value.items():
        key = PublicKey.from_dict(data, path=f"{path}.{keyid[:12]}")
        if key.keyid != keyid:
            # notary fails the whole verification on a mislabeled key (ErrInvalidKeyID).
            raise MetadataError(f"key is listed as {keyid[:12]} but its ID is {key.keyid[:12]}", path=path)
        keys[keyid] = key
    return keys


@dataclass
class _Expiring:
    expires: str
    version: int

    @cached_property
    def expires_at(self) -> datetime:
        return parse_expires(self.expires)

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at <= now

    def set_expiry(self, moment: datetime) -> None:
        self.expires = format_expires(moment)
        self.__dict__.pop("expires_at", None)


# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class FileMeta:
    """``{"custom"?, "hashes", "length"}``: a target, or a role file in snapshot/timestamp."""

    length: int
    hashes: dict[str, str]  # algorithm -> standard base64 of the raw digest
    custom: Any = None
    has_custom: bool = False
    # The last bytes object found to match, with the listing it matched: the updater checks a
    # cached file before the trusted set checks it again, and a 1 MB targets.json takes ~1.6 ms
    # to hash.  (bytes are immutable, and the reference held here keeps the identity unique.)
    _matched: tuple[bytes, int, tuple[tuple[str, str], ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @classmethod
    def fast(cls, value: Any) -> FileMeta | None:
        """The common shapes (sha256, or sha256 + sha512, no custom) checked in a few C calls;
        None sends the entry to :meth:`from_dict`.  A file can hold tens of thousands."""
        if type(value) is not dict or len(value) != 2:
            return None
        hashes, length = value.get("hashes"), value.get("length")
        if type(length) is not int or length < 0 or type(hashes) is not dict:
            return None
        sha256 = hashes.get("sha256")
        if type(sha256) is not str or not _SHA256_B64(sha256):
            return None
        if len(hashes) == 1:
            return cls(length, {"sha256": sha256})
        sha512 = hashes.get("sha512")
        if len(hashes) == 2 and type(sha512) is str and _SHA512_B64(sha512):
            return cls(length, {"sha256": sha256, "sha512": sha512})
        return None

    @classmethod
    def from_dict(cls, value: Any, path: str) -> FileMeta:
        data = _obj(value, path, {"hashes", "length"}, {"custom"})
        hashes = data["hashes"]
        if not isinstance(hashes, dict) or not hashes:
            raise MetadataError("must be a non-empty object", path=f"{path}.hashes")
        for alg, digest in hashes.items():
            raw = _b64(digest, f"{path}.hashes.{alg}")
            if alg in HASH_SIZES and len(raw) != HASH_SIZES[alg]:
                raise MetadataError(
                    f"{alg} digest must be {HASH_SIZES[alg]} bytes, not {len(raw)}", path=f"{path}.hashes"
                )
        if "custom" in data:
            try:  # the one free-form value: bound its nesting (the schema bounds the rest)
                check_depth(data["custom"], f"{path}.custom")
            except EncodingError as exc:
                raise MetadataError(exc.message, path=path) from None
        return cls(_int(data["length"], f"{path}.length", 0), dict(hashes), data.get("custom"), "custom" in data)

    @classmethod
    def for_bytes(cls, data: bytes, algorithms: tuple[str, ...] = ("sha256", "sha512")) -> FileMeta:
        return cls(len(data), {alg: b64encode(hashlib.new(alg, data).digest()) for alg in algorithms})

    @classmethod
    def for_digest(cls, sha256_hex: str, length: int) -> FileMeta:
        """A docker-style target: only sha256 (the manifest digest) and the manifest size (§4.1)."""
        return cls(length, {"sha256": b64encode(bytes.fromhex(sha256_hex))})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hashes": dict(self.hashes), "length": self.length}
        if self.has_custom:
            out["custom"] = self.custom
        return out

    @property
    def sha256_hex(self) -> str | None:
        digest = self.hashes.get("sha256")
        return b64decode(digest).hex() if digest else None

    def matches(self, data: bytes) -> str | None:
        """Why ``data`` does not match (None when it does): notary's CheckHashes plus length."""
        if len(data) != self.length:
            return f"length is {len(data)}, expected {self.length}"
        listing = tuple(self.hashes.items())
        matched = self._matched
        if matched is not None and matched[0] is data and matched[1] == self.length and matched[2] == listing:
            return None
        known = [alg for alg in self.hashes if alg in HASH_SIZES]
        if not known:
            return "no sha256 or sha512 hash to check against"
        for alg in known:
            if b64encode(hashlib.new(alg, data).digest()) != self.hashes[alg]:
                return f"{alg} hash does not match"
        self._matched = (data, self.length, listing)
        return None


_HASHES, _LENGTH = itemgetter("hashes"), itemgetter("length")
_HASH_FIELDS = {1: (("sha256", 44),), 2: (("sha256", 44), ("sha512", 88))}
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _common_entries(entries: dict[str, Any]) -> dict[str, FileMeta] | None:
    """:meth:`FileMeta.fast` for a whole targets map at once, when every entry has the same
    common shape (sha256, or sha256 + sha512, no custom): the same checks, each made over all
    entries by a few C-level passes (``map``, ``set``, one ``translate``) instead of ~15 Python
    steps per entry.  None when the map is empty or any entry differs: the caller then checks
    each entry on its own, which accepts exactly the same entries and names a bad one."""
    values = list(entries.values())
    if not values or set(map(type, values)) != {dict} or set(map(len, values)) != {2}:
        return None
    try:
        hashes, lengths = list(map(_HASHES, values)), list(map(_LENGTH, values))
    except KeyError:
        return None
    if set(map(type, lengths)) != {int} or min(lengths) < 0 or set(map(type, hashes)) != {dict}:
        return None
    sizes = set(map(len, hashes))
    fields = _HASH_FIELDS.get(sizes.pop()) if len(sizes) == 1 else None
    if fields is None:
        return None
    for alg, width in fields:
        try:
            digests = list(map(itemgetter(alg), hashes))
        except KeyError:
            return None
        if set(map(type, digests)) != {str} or set(map(len, digests)) != {width} or not _all_b64(digests, width):
            return None
    # The decoded hash maps are copied, as from_dict copies them: the payload never shares a
    # dict with the parsed document (Metadata.signed_dict).
    return dict(zip(entries, map(FileMeta, lengths, map(dict, hashes)), strict=True))


def _all_b64(digests: list[str], width: int) -> bool:
    """Each of ``digests`` (all ``width`` characters long) is standard base64 of a whole digest:
    the alphabet, then exactly the padding the width implies (``_SHA256_B64`` / ``_SHA512_B64``
    for each one)."""
    pad = 1 if width == 44 else 2
    joined = "".join(digests)
    try:
        raw = joined.encode("ascii")
    except UnicodeEncodeError:
        return False
    # Every character outside the alphabet is "=", and they are exactly the last `pad` of each digest.
    if raw.translate(None, _B64_ALPHABET) != b"=" * (pad * len(digests)):
        return False
    return all(raw[width - 1 - i :: width].count(b"=") == len(digests) for i in range(pad))


def _b64(value: Any, path: str) -> bytes:
    try:
        return b64decode(value, what="hash")
    except EncodingError as exc:
        raise MetadataError(exc.message, path=path) from None


@dataclass
class RoleKeys:
    """A base role's entry in root: ``{"keyids": [...], "threshold": N}``."""

    keyids: list[str]
    threshold: int = 1

    @classmethod
    def from_dict(cls, value: Any, path: str) -> RoleKeys:
        data = _obj(value, path, {"keyids", "threshold"})
        return cls(_str_list(data["keyids"], f"{path}.keyids"), _int(data["threshold"], f"{path}.threshold", 1))

    def to_dict(self) -> dict[str, Any]:
        return {"keyids": list(self.keyids), "threshold": self.threshold}


@dataclass
class Root(_Expiring):
    _type: ClassVar[str] = "Root"
    keys: dict[str, PublicKey] = field(default_factory=dict)
    roles: dict[str, RoleKeys] = field(default_factory=dict)
    consistent_snapshot: bool = False

    @classmethod
    def from_dict(cls, value: Any, path: str = "root") -> Root:
        data = _obj(value, path, {"_type", "consistent_snapshot", "expires", "keys", "roles", "version"})
        _type(data, "Root", path)
        if not isinstance(data["consistent_snapshot"], bool):
            raise MetadataError("must be true or false", path=f"{path}.consistent_snapshot")
        keys = _keys(data["keys"], f"{path}.keys")
        roles_data = _obj(data["roles"], f"{path}.roles", set(BASE_ROLES))
        roles = {name: RoleKeys.from_dict(roles_data[name], f"{path}.roles.{name}") for name in BASE_ROLES}
        for name, role in roles.items():
            if not role.keyids:
                raise MetadataError("lists no keys", path=f"{path}.roles.{name}")
            for keyid in role.keyids:
                if keyid not in keys:
                    raise MetadataError(f"key {keyid[:12]} is not in root keys", path=f"{path}.roles.{name}")
            # No keys at all is what notary leaves when the last one is removed: an unusable role,
            # not a malformed file (notary-server stores it, its clients skip it).
            if role.keyids and role.threshold > len(set(role.keyids)):
                raise MetadataError(
                    f"threshold {role.threshold} is more than its {len(set(role.keyids))} keys",
                    path=f"{path}.roles.{name}",
                )
        return cls(
            expires=_expires(data["expires"], f"{path}.expires"),
            version=_int(data["version"], f"{path}.version", 1),
            keys=keys,
            roles=roles,
            consistent_snapshot=data["consistent_snapshot"],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "_type": "Root",
            "consistent_snapshot": self.consistent_snapshot,
            "expires": self.expires,
            "keys": {keyid: key.to_dict() for keyid, key in self.keys.items()},
            "roles": {name: role.to_dict() for name, role in self.roles.items()},
            "version": self.version,
        }

    def signing_rule(self, role: str) -> SigningRule:
        """Who may sign the base role ``role`` (root, targets, snapshot, timestamp)."""
        entry = self.roles[role]
        return SigningRule(
            role, {k: self.keys[k] for k in entry.keyids if k in self.keys}, tuple(entry.keyids), entry.threshold
        )


@dataclass
class DelegationRole:
    name: str
    keyids: list[str]
    threshold: int = 1
    paths: list[str] = field(default_factory=list)
    # notary writes a delegation whose last key was removed as "keyids": null (a nil Go slice);
    # kept so the file re-serialises to the same bytes.  Such a role signs nothing.
    null_keyids: bool = field(default=False, compare=False)

    @classmethod
    def from_dict(cls, value: Any, path: str) -> DelegationRole:
        data = _obj(value, path, {"keyids", "name", "threshold"}, {"paths"})
        name = _str(data["name"], f"{path}.name")
        try:
            validate_role_name(name)
        except MetadataError as exc:
            raise MetadataError(exc.message, path=f"{path}.name") from None
        if not is_delegation(name):
            raise MetadataError(f'"{name}" is a base role, not a delegation', path=f"{path}.name")
        paths = _str_list(data["paths"], f"{path}.paths") if "paths" in data else []
        null_keyids = data["keyids"] is None
        keyids = [] if null_keyids else _str_list(data["keyids"], f"{path}.keyids")
        return cls(name, keyids, _int(data["threshold"], f"{path}.threshold", 1), paths, null_keyids)

    def to_dict(self) -> dict[str, Any]:
        keyids = None if self.null_keyids and not self.keyids else list(self.keyids)
        out: dict[str, Any] = {"keyids": keyids, "name": self.name, "threshold": self.threshold}
        if self.paths:  # Go's omitempty
            out["paths"] = list(self.paths)
        return out

    def allows(self, target: str) -> bool:
        """notary's path rule: plain string prefix; "" matches everything (§4.2)."""
        return any(target.startswith(prefix) for prefix in self.paths)


@dataclass
class Delegations:
    keys: dict[str, PublicKey] = field(default_factory=dict)
    roles: list[DelegationRole] = field(default_factory=list)

    @classmethod
    def from_dict(cls, value: Any, path: str, owner: str) -> Delegations:
        data = _obj(value, path, {"keys", "roles"})
        keys = _keys(data["keys"], f"{path}.keys")
        if not isinstance(data["roles"], list):
            raise MetadataError("must be a list", path=f"{path}.roles")
        roles = [DelegationRole.from_dict(r, f"{path}.roles[{i}]") for i, r in enumerate(data["roles"])]
        seen: set[str] = set()
        for role in roles:
            where = f"{path}.roles.{role.name}"
            if parent_role(role.name) != owner:
                raise MetadataError(f"is not a direct child of {owner}", path=where)
            if role.name in seen:
                raise MetadataError("is listed twice", path=where)
            seen.add(role.name)
            for keyid in role.keyids:
                if keyid not in keys:
                    raise MetadataError(f"key {keyid[:12]} is not in delegations.keys", path=where)
            # No keys at all is what notary leaves when the last one is removed: an unusable role,
            # not a malformed file (notary-server stores it, its clients skip it).
            if role.keyids and role.threshold > len(set(role.keyids)):
                raise MetadataError(
                    f"threshold {role.threshold} is more than its {len(set(role.keyids))} keys", path=where
                )
        return cls(keys, roles)

    def to_dict(self) -> dict[str, Any]:
        return {"keys": {k: v.to_dict() for k, v in self.keys.items()}, "roles": [r.to_dict() for r in self.roles]}

    def role(self, name: str) -> DelegationRole | None:
        return next((r for r in self.roles if r.name == name), None)

    def signing_rule(self, name: str) -> SigningRule | None:
        """Who may sign the delegation ``name`` (None when it is not delegated here)."""
        entry = self.role(name)
        if entry is None:
            return None
        return SigningRule(name, self.keys, tuple(entry.keyids), entry.threshold)


@dataclass
class Targets(_Expiring):
    _type: ClassVar[str] = "Targets"
    targets: dict[str, FileMeta] = field(default_factory=dict)
    delegations: Delegations = field(default_factory=Delegations)

    @classmethod
    def from_dict(cls, value: Any, path: str = "targets", role: str = TARGETS) -> Targets:
        data = _obj(value, path, {"_type", "delegations", "expires", "targets", "version"})
        _type(data, "Targets", path)
        targets_data = data["targets"]
        if not isinstance(targets_data, dict):
            raise MetadataError("must be an object", path=f"{path}.targets")
        targets = _common_entries(targets_data)
        if targets is None:  # some entry has another shape: each is checked on its own
            fast = FileMeta.fast
            targets = {
                name: fast(meta) or FileMeta.from_dict(meta, f"{path}.targets[{name[:60]!r}]")
                for name, meta in targets_data.items()
            }
        return cls(
            expires=_expires(data["expires"], f"{path}.expires"),
            version=_int(data["version"], f"{path}.version", 1),
            targets=targets,
            delegations=Delegations.from_dict(data["delegations"], f"{path}.delegations", role),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "_type": "Targets",
            "delegations": self.delegations.to_dict(),
            "expires": self.expires,
            "targets": {name: meta.to_dict() for name, meta in self.targets.items()},
            "version": self.version,
        }


@dataclass
class _FileListing(_Expiring):
    """Snapshot and timestamp: an expiring, versioned map of role name -> FileMeta."""

    _type: ClassVar[str]
    meta: dict[str, FileMeta] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, value: Any, path: str = "") -> Any:
        path = path or cls._type.lower()
        data = _obj(value, path, {"_type", "expires", "meta", "version"})
        _type(data, cls._type, path)
        meta = _meta(data["meta"], f"{path}.meta")
        cls._check_meta(meta, f"{path}.meta")
        return cls(
            expires=_expires(data["expires"], f"{path}.expires"),
            version=_int(data["version"], f"{path}.version", 1),
            meta=meta,
        )

    @classmethod
    def _check_meta(cls, meta: dict[str, FileMeta], path: str) -> None:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {
            "_type": self._type,
            "expires": self.expires,
            "meta": {k: v.to_dict() for k, v in self.meta.items()},
            "version": self.version,
        }


@dataclass
class Snapshot(_FileListing):
    _type: ClassVar[str] = "Snapshot"

    @classmethod
    def _check_meta(cls, meta: dict[str, FileMeta], path: str) -> None:
        for required in (ROOT, TARGETS):
            if required not in meta or "sha256" not in meta[required].hashes:
                raise MetadataError(f"must list {required} with a sha256 hash", path=path)
        for name in meta:
            try:
                validate_role_name(name)
            except MetadataError as exc:
                raise MetadataError(exc.message, path=path) from None


def signing_rule_for(role: str, root: Root, parent: Targets | None) -> SigningRule | None:
    """Who may sign ``role``: root says for the base roles, the parent's delegations for a
    delegation (None when ``parent`` is missing or does not delegate to it)."""
    if role in BASE_ROLES:
        return root.signing_rule(role)
    return parent.delegations.signing_rule(role) if parent is not None else None


def build_snapshot(previous: Snapshot | None, files: Mapping[str, bytes], now: datetime) -> Snapshot:
    """The next snapshot: ``previous``'s listing with each of ``files`` (role -> exact bytes)
    hashed in, one version up, expiring after the default.  Client and server build it alike."""
    meta = dict(previous.meta) if previous is not None else {}
    meta.update({role: FileMeta.for_bytes(data) for role, data in files.items()})
    return Snapshot(
        expires=format_expires(now + DEFAULT_EXPIRY[SNAPSHOT]),
        version=(previous.version if previous is not None else 0) + 1,
        meta=meta,
    )


@dataclass
class Timestamp(_FileListing):
    _type: ClassVar[str] = "Timestamp"

    @classmethod
    def _check_meta(cls, meta: dict[str, FileMeta], path: str) -> None:
        if SNAPSHOT not in meta or "sha256" not in meta[SNAPSHOT].hashes:
            raise MetadataError("must list snapshot with a sha256 hash", path=path)

    @property
    def snapshot_meta(self) -> FileMeta:
        return self.meta[SNAPSHOT]


def _meta(value: Any, path: str) -> dict[str, FileMeta]:
    if not isinstance(value, dict):
        raise MetadataError("must be an object", path=path)
    return {name: FileMeta.from_dict(meta, f"{path}.{name}") for name, meta in value.items()}


PAYLOAD_TYPES: dict[str, type[Root] | type[Targets] | type[Snapshot] | type[Timestamp]] = {
    "Root": Root,
    "Targets": Targets,
    "Snapshot": Snapshot,
    "Timestamp": Timestamp,
}


def payload_type_for_role(role: str) -> type[Root] | type[Targets] | type[Snapshot] | type[Timestamp]:
    if role == ROOT:
        return Root
    if role == SNAPSHOT:
        return Snapshot
    if role == TIMESTAMP:
        return Timestamp
    return Targets
