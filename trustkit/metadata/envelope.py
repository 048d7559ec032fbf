"""Layer `metadata`: the signed envelope ``{"signed": ..., "signatures": [...]}`` and threshold
verification over the original bytes.

``Metadata.raw`` holds the exact bytes received (hashes are computed over them, never over a
re-serialisation); ``signed_dict`` is the parsed ``signed`` value, whose canonical form is the
message signatures cover, exactly as notary verifies (§1.7).
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from trustkit.encoding import b64decode, b64encode, canonical_json, envelope_bytes, loads_canonical, loads_strict
from trustkit.errors import EncodingError, KeyFormatError, MetadataError, ThresholdError
from trustkit.keys.public import PublicKey
from trustkit.keys.signer import Signer
from trustkit.metadata.payload import (
    PAYLOAD_TYPES,
    Root,
    SigningRule,
    Snapshot,
    Targets,
    Timestamp,
    payload_type_for_role,
)

T = TypeVar("T", Root, Targets, Snapshot, Timestamp)

# The notary client caps timestamp.json at 1 MiB and anything of unknown size at 100 MiB.
MAX_TIMESTAMP_SIZE = 1 << 20
MAX_METADATA_SIZE = 100 << 20
# Files from this size on are parsed with the cyclic garbage collector paused (see from_bytes).
_GC_PAUSE_SIZE = 64 << 10


@dataclass(frozen=True)
class Signature:
    keyid: str
    method: str
    sig: str  # standard base64

    @classmethod
    def from_dict(cls, value: Any, path: str) -> Signature:
        if not isinstance(value, dict) or set(value) != {"keyid", "method", "sig"}:
            raise MetadataError('must be {"keyid", "method", "sig"}', path=path)
        if not all(isinstance(value[k], str) for k in value):
            raise MetadataError("keyid, method and sig must be strings", path=path)
        return cls(value["keyid"], value["method"], value["sig"])

    def to_dict(self) -> dict[str, str]:
        return {"keyid": self.keyid, "method": self.method, "sig": self.sig}


@dataclass
class Metadata(Generic[T]):
    signed: T
    signatures: list[Signature] = field(default_factory=list)
    raw: bytes | None = None  # exact bytes as received or last written
    signed_dict: dict[str, Any] | None = None  # parsed "signed" as received

    # ---- parsing

    @classmethod
    def from_bytes(cls, data: bytes, *, role: str | None = None, max_size: int = MAX_METADATA_SIZE) -> Metadata[Any]:
        """Parse a metadata file strictly.  ``role`` (when given) fixes the expected type and
        which delegation parent the file must belong to.

        Raises:
            MetadataError: malformed JSON or structure (the message names the JSON path).
        """
        what = f"{role}.json" if role else "metadata"
        if len(data) > max_size:
            raise MetadataError(f"{what} is {len(data)} bytes; the limit is {max_size}")
        if len(data) < _GC_PAUSE_SIZE:
            return cls._parse(data, role, what, max_size)
        # A 1 MB targets.json becomes ~40,000 dicts and objects, none of them in a reference
        # cycle: the cyclic collector, left on, would run ~60 times meanwhile and walk the whole
        # heap of an application (~20 ms in the CLI).  Paused only if it was on (a caller that
        # turned it off keeps it off); concurrent parses at worst let it run during one of them.
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            return cls._parse(data, role, what, max_size)
        finally:
            if paused:
                gc.enable()

    @classmethod
    def _parse(cls, data: bytes, role: str | None, what: str, max_size: int) -> Metadata[Any]:
        fast = loads_canonical(data)
        if fast is not None:
            try:
                return cls._from_document(fast[0], data, role, what, fast[1])
            except MetadataError:
                pass  # the strict parser below names the real problem (nesting, numbers...)
        try:
            doc = loads_strict(data, max_size=max_size, what=what, fold_case=False)
        except EncodingError as exc:
            raise MetadataError(exc.message) from None
        return cls._from_document(doc, data, role, what, None)

    @classmethod
    def _from_document(
        cls, doc: Any, data: bytes, role: str | None, what: str, canonical: bytes | None
    ) -> Metadata[Any]:
        if not isinstance(doc, dict) or set(doc) != {"signed", "signatures"}:
            raise MetadataError('must be an object with exactly "signed" and "signatures"', path=what)
        signed, sigs = doc["signed"], doc["signatures"]
        if not isinstance(signed, dict):
            raise MetadataError("must be an object", path=f"{what}.signed")
        if not isinstance(sigs, list):
            raise MetadataError("must be a list", path=f"{what}.signatures")
        signatures = [Signature.from_dict(s, f"{what}.signatures[{i}]") for i, s in enumerate(sigs)]
        if role is not None:
            kind = payload_type_for_role(role)
        else:
            declared = signed.get("_type")
            found = PAYLOAD_TYPES.get(declared) if isinstance(declared, str) else None
            if found is None:
                raise MetadataError(f"unknown _type {signed.get('_type')!r}", path=f"{what}.signed")
            kind = found
        path = f"{what}.signed"
        # The payload class is known only now, at run time: the caller gets a Metadata[Any].
        payload: Any = kind.from_dict(signed, path, role) if kind is Targets and role else kind.from_dict(signed, path)
        meta = cls(payload, signatures, bytes(data), signed)
        meta._canonical = canonical
        return meta

    @property
    def data(self) -> bytes:
        """The file's bytes: as received or last signed, else as it would be written now."""
        return self.raw if self.raw is not None else self.to_bytes()

    # ---- writing

    _canonical: bytes | None = field(default=None, repr=False, compare=False)  # of signed_dict, when known

    @property
    def signed_bytes(self) -> bytes:
        """The message signatures cover: canonical JSON of the signed value as received."""
        if self._canonical is None:
            if self.signed_dict is not None:
                self._canonical = canonical_json(self.signed_dict, parsed=True)
            else:
                self._canonical = canonical_json(self.signed.to_dict())
        return self._canonical

    def to_bytes(self) -> bytes:
        """Exact file bytes in notary's layout, from the current payload and signatures."""
        return envelope_bytes(canonical_json(self.signed.to_dict()), [s.to_dict() for s in self.signatures])

    def sign(self, signers: Iterable[tuple[Signer, str]], *, replace: bool = True) -> bytes:
        """Sign the current payload with each ``(signer, keyid)`` and return the new file bytes.

        ``keyid`` is the key's ID as the role lists it (a root certificate's ID for root keys).
        With ``replace`` the old signatures go; otherwise ones by other keys are kept, which is
        how several signers each add theirs to a threshold role.
        """
        self.signed_dict = self.signed.to_dict()
        message = self._canonical = canonical_json(self.signed_dict)
        fresh = [Signature(keyid, signer.method, b64encode(signer.sign(message))) for signer, keyid in signers]
        if replace:
            self.signatures = fresh
        else:
            new_ids = {s.keyid for s in fresh}
            self.signatures = [s for s in self.signatures if s.keyid not in new_ids] + fresh
        self.raw = self.to_bytes()
        return self.raw

    # ---- verification

    def verify(self, keys: Mapping[str, PublicKey], keyids: Iterable[str], threshold: int, role: str) -> VerifyResult:
        return verify_signatures(self.signed_bytes, self.signatures, keys, keyids, threshold, role)

    def verify_by(self, rule: SigningRule) -> VerifyResult:
        """Check the signatures against what the delegator says (``Root.signing_rule`` or
        ``Delegations.signing_rule``)."""
        return self.verify(rule.keys, rule.keyids, rule.threshold, rule.role)


@dataclass(frozen=True)
class VerifyResult:
    """Truthy when the threshold is met.  ``signed`` holds the key IDs with valid signatures."""

    role: str
    threshold: int
    signed: frozenset[str]
    keyids: frozenset[str]

    def __bool__(self) -> bool:
        return len(self.signed) >= self.threshold

    @property
    def missing(self) -> frozenset[str]:
        return self.keyids - self.signed

    def raise_for_threshold(self) -> None:
        if not self:
            raise ThresholdError(
                f"valid signatures did not meet threshold for {self.role}: "
                f"{len(self.signed)} of {self.threshold} required",
                hint=f"expected signatures from key IDs {', '.join(sorted(k[:12] for k in self.missing))}"
                if self.missing
                else None,
            )


def verify_signatures(  # noqa: PLR0917 - a message, its signatures and a rule's four parts (verify_by takes a rule)
    message: bytes,
    signatures: Iterable[Signature],
    keys: Mapping[str, PublicKey],
    keyids: Iterable[str],
    threshold: int,
    role: str,
) -> VerifyResult:
    """Count valid signatures by distinct keys among ``keyids``.

    One key counts once however it is spelled: listed twice, bare and inside a certificate, with
    a compressed point or with unused base64 bits set.  Keys are told apart by their decoded
    public key (:attr:`PublicKey.identity`), never by the ID they are listed under.
    """
    allowed = {k for k in keyids if k in keys}
    counted: set[bytes] = set()  # identities already counted
    signed: set[str] = set()
    for sig in signatures:
        key = keys.get(sig.keyid)
        if key is None or sig.keyid not in allowed:
            continue
        try:
            identity = key.identity
            raw = b64decode(sig.sig, what="signature")
        except (KeyFormatError, EncodingError):  # an unusable key or signature is simply not valid
            continue
        if identity in counted:
            continue
        if key.verify(sig.method.lower(), message, raw):
            counted.add(identity)
            signed.add(sig.keyid)
    return VerifyResult(role, threshold, frozenset(signed), frozenset(allowed))
