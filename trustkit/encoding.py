"""Layer `encoding`: the exact byte forms notary 0.7.0 reads and writes.

Nothing here knows about keys or roles.  It holds:
- strict JSON parsing at the trust boundary (duplicate keys, NaN, huge numbers, deep nesting);
- docker/go canonical JSON, which is what signatures are computed over;
- the on-disk envelope, which is the canonical form re-escaped the way Go's json.RawMessage
  marshalling does (``<``, ``>``, ``&``, U+2028, U+2029);
- Go's RFC 3339 nano time format for ``expires``;
- standard base64 and the DER <-> raw r||s conversion of ECDSA signatures.

References are to ../shared/reference/notary-v1-wire.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from trustkit.errors import EncodingError

# Integers above 2**53 cannot survive notary's float64 decode before verification (§4.2 of the
# reliability catalogue), so a signer and a verifier would disagree on them: refuse them.
MAX_SAFE_INT = 2**53 - 1
# Python's json recurses once per nesting level; well-formed trust metadata is about 6 deep.
MAX_DEPTH = 64

# --------------------------------------------------------------------------------------------
# Strict JSON parsing


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise EncodingError(f'duplicate key "{_first_repeated(k for k, _ in pairs)}"')
    return obj


def _first_repeated(keys: Iterable[str]) -> str | None:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            return key
        seen.add(key)
    return None


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = _unique_object(pairs)
    # Go matches struct fields case-insensitively, so {"version":1,"Version":5} would be read
    # differently by notary and by us (the CVE-2014-8179 pattern): refuse it outright.
    if len(obj) > 1:
        lowered = {k.lower() for k in obj}
        if len(lowered) != len(obj):
            raise EncodingError("object has keys that differ only in case")
    return obj


def _strict_int(text: str) -> int:
    if len(text) > 17:  # cheap guard before int(): a 5,000-digit number never gets converted
        raise EncodingError(f"number {text[:20]}... is too large (limit ±2^53-1)")
    value = int(text)
    if abs(value) > MAX_SAFE_INT:
        raise EncodingError(f"number {text} is too large (limit ±2^53-1)")
    return value


def _no_float(text: str) -> float:
    raise EncodingError(f"number {text[:20]} is not an integer; trust metadata uses integers only")


def _no_constant(name: str) -> Any:
    raise EncodingError(f"value {name} is not allowed")


_OPTIONS: dict[str, Any] = {
    "parse_int": _strict_int,
    "parse_float": _no_float,
    "parse_constant": _no_constant,
    "strict": True,  # control characters inside strings are refused, as notary cannot sign them
}
_DECODER = json.JSONDecoder(object_pairs_hook=_strict_object, **_OPTIONS)
_CASED_DECODER = json.JSONDecoder(object_pairs_hook=_unique_object, **_OPTIONS)


def loads_strict(data: bytes | str, *, max_size: int | None = None, what: str = "JSON", fold_case: bool = True) -> Any:
    """Parse untrusted JSON strictly.

    ``fold_case`` refuses objects with keys that differ only in case.  Trust metadata turns it
    off: its schema checks each struct's exact field set (so "Version" beside "version" is an
    unknown field there), and its maps are case-sensitive, as notary's Go maps are: tags ``V1``
    and ``v1`` are two tags.

    Raises:
        EncodingError: not UTF-8, not JSON, or any of the refused forms above.
    """
    if max_size is not None and len(data) > max_size:
        raise EncodingError(f"{what} is {len(data)} bytes; the limit is {max_size}")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EncodingError(f"{what} is not valid UTF-8 (byte {exc.start})") from None
    else:
        text = data
    if text.startswith("\ufeff"):
        raise EncodingError(f"{what} starts with a byte-order mark")
    try:
        value, end = (_DECODER if fold_case else _CASED_DECODER).raw_decode(text, _skip_ws(text, 0))
    except EncodingError as exc:
        raise EncodingError(f"{what}: {exc.message}") from None
    except RecursionError:
        raise EncodingError(f"{what} is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise EncodingError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if _skip_ws(text, end) != len(text):
        raise EncodingError(f"{what} has extra data after the JSON value")
    check_depth(value, what)
    return value


def loads_canonical(data: bytes) -> tuple[Any, bytes] | None:
    """Fast path for a signed metadata file already in notary's exact byte layout: parse it
    with the C decoder and return ``(document, canonical bytes of "signed")`` only when
    re-serialising gives back ``data`` itself.  Byte equality rules out duplicate keys,
    whitespace, unsorted keys and every other spelling the strict parser would not produce; the
    decoder's hooks refuse floats and NaN, and the encoder integers beyond ±2^53-1, as the strict
    parser does.  (Nesting depth is the schema's to bound: it fixes the shape of everything but
    a target's ``custom``, whose depth it checks.)  Returns None when the caller must take the
    strict path, which also explains what is wrong.

    The re-encoding is orjson's, ~15x quicker than the json module's for a 10,000-tag
    targets.json; for the values this decoder yields (no floats, integers within ±2^53-1, no
    lone surrogates: orjson refuses those) it writes the same bytes as :func:`canonical_json`
    except that it escapes control characters, which Go writes raw: any escape but ``\\"`` and
    ``\\\\`` sends the file to the strict path (tests/unit/test_fast_paths.py holds the property).
    """
    try:
        doc = json.loads(data, parse_constant=_no_constant, parse_float=_no_float)
    except (ValueError, EncodingError, RecursionError, UnicodeDecodeError):
        return None  # includes an integer of more than 4,300 digits (Python's own bound)
    if type(doc) is not dict or list(doc) != ["signed", "signatures"]:
        return None
    signatures = doc["signatures"]
    if type(signatures) is not list or not all(
        type(sig) is dict and list(sig) == ["keyid", "method", "sig"] and all(type(v) is str for v in sig.values())
        for sig in signatures
    ):
        return None
    try:
        signed = _SORTED_DUMPS(doc["signed"], option=_SORTED_OPTIONS)
    except orjson.JSONEncodeError:  # an integer beyond ±2^53-1, a lone surrogate, nesting past 255
        return None
    if b"\\" in signed and _has_control_escape(signed):
        return None
    # data == envelope_bytes(signed, signatures), compared in parts (no 1 MB concatenation).
    escaped = wire_escape(signed)
    body_end = len(_HEAD) + len(escaped)
    if not data.startswith(_HEAD) or data[len(_HEAD) : body_end] != escaped:
        return None
    try:
        tail = _signatures_bytes(signatures)
    except EncodingError:
        return None
    return (doc, signed) if data[body_end:] == tail else None


_SORTED_DUMPS = orjson.dumps
_SORTED_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_HEAD = b'{"signed":'


def _has_control_escape(encoded: bytes) -> bool:
    """Whether orjson's output escapes a control character (``\\n``, ``\\u001f``...).  Its escapes
    are ``\\\\``, ``\\"`` and those; read left to right, dropping the first two kinds leaves a
    backslash exactly when one of the others is there (exact, unlike a search for ``\\[^"\\]``,
    which ``\\\\n`` would fool)."""
    return b"\\" in encoded.replace(b"\\\\", b"").replace(b'\\"', b"")


_WS = re.compile(r"[ \t\n\r]*")


def _skip_ws(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    return match.end() if match else pos


def check_depth(value: Any, what: str) -> None:
    """Raises EncodingError when ``value`` nests more than MAX_DEPTH levels (iteratively, so
    the check cannot itself hit the recursion limit)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise EncodingError(f"{what} is nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))


# --------------------------------------------------------------------------------------------
# Canonical JSON (docker/go/canonical/json, §2.1)


def canonical_json(value: Any, *, parsed: bool = False) -> bytes:
    """Encode ``value`` exactly as notary's canonical marshaller: sorted keys, no whitespace,
    only ``"`` and ``\\`` escaped, integers only.

    The C encoder of the json module produces the same bytes for everything trust metadata
    holds; what it would write differently (a control character it escapes, a float) is
    spotted in its output and re-encoded by the exact pure-Python encoder instead.  Values
    from our own parser (``parsed=True``) cannot hold floats, so only escapes are looked for.

    Raises:
        EncodingError: a float, an unsupported type, or a string that is not valid Unicode.
    """
    try:
        text = _C_ENCODE(value)
    except (TypeError, ValueError, RecursionError):
        text = None
    if text is None or ("\\" in text and _CONTROL_ESCAPE.search(text)) or (not parsed and _MAYBE_FLOAT.search(text)):
        parts: list[str] = []
        _encode(value, parts)
        text = "".join(parts)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise EncodingError("JSON string holds a lone surrogate and cannot be encoded") from None


_C_ENCODE = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode
# An escape other than \" or \\ is a control character, which Go writes raw; a digit run with
# "." or "e" after a separator may be a float, which Go refuses.  Either sends the value to the
# exact encoder (false alarms, such as ":29.61Z" inside an expiry string, only cost speed).
_CONTROL_ESCAPE = re.compile(r'\\[^"\\]')
_MAYBE_FLOAT = re.compile(r"[:\[,]-?\d+[.eE]")


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
    elif isinstance(value, dict):
        _encode_object(value, out)
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    elif isinstance(value, int):
        out.append(str(value))
    else:
        raise EncodingError(f"cannot encode {type(value).__name__} in canonical JSON")


def _encode_object(value: dict[Any, Any], out: list[str]) -> None:
    out.append("{")
    first = True
    # Code-point order of str equals the UTF-8 byte order Go sorts by.
    for key in sorted(value):
        if not isinstance(key, str):
            raise EncodingError(f"JSON object key {key!r} is not a string")
        if not first:
            out.append(",")
        first = False
        out.append('"' + key.replace("\\", "\\\\").replace('"', '\\"') + '":')
        _encode(value[key], out)
    out.append("}")


# Go's json.RawMessage marshalling re-compacts with HTML escaping (§1.1).
_WIRE_ESCAPES = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)


def wire_escape(canonical: bytes) -> bytes:
    """The on-disk form of canonical bytes (HTML-escaped, as Go writes them)."""
    # U+2028 and U+2029 both start with 0xE2: one byte is found with memchr, while a search for
    # three bytes scans a 1 MB file ~70x slower.
    escapes = _WIRE_ESCAPES if b"\xe2" in canonical else _WIRE_ESCAPES[:3]
    for raw, escaped in escapes:
        if raw in canonical:
            canonical = canonical.replace(raw, escaped)
    return canonical


def envelope_bytes(signed_canonical: bytes, signatures: list[dict[str, str]]) -> bytes:
    """The exact file bytes of a signed metadata document (§1.1): ``signed`` first, then
    ``signatures`` with keys in the order keyid, method, sig."""
    return _HEAD + wire_escape(signed_canonical) + _signatures_bytes(signatures)


def _signatures_bytes(signatures: list[dict[str, str]]) -> bytes:
    """What follows ``signed`` in the file: ``,"signatures":[...]}``."""
    sigs = b",".join(
        b'{"keyid":%s,"method":%s,"sig":%s}' % (_go_string(s["keyid"]), _go_string(s["method"]), _go_string(s["sig"]))
        for s in signatures
    )
    return b',"signatures":[' + sigs + b"]}"


def _go_string(text: str) -> bytes:
    return wire_escape(canonical_json(text))


# --------------------------------------------------------------------------------------------
# Base64 (standard alphabet, padded: Go's []byte encoding)


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, *, what: str = "base64 value") -> bytes:
    """Strict standard base64 with padding.

    Raises:
        EncodingError: not a string, wrong alphabet or wrong padding.
    """
    if not isinstance(text, str):
        raise EncodingError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise EncodingError(f"{what} is not valid standard base64") from None


# --------------------------------------------------------------------------------------------
# Time: Go's RFC3339Nano (§1.4)

_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})\Z")


def format_expires(moment: datetime) -> str:
    """Go's time.Time JSON form in UTC: ``Z``, fraction trimmed of zeros or absent.

    Writers must emit this normalised form: notary re-serialises parsed files to compute
    snapshot hashes, and any other spelling breaks every reader (§1.4).
    """
    if moment.tzinfo is None:
        raise EncodingError("expiry time must be timezone-aware")
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += ("." + f"{moment.microsecond:06d}").rstrip("0")
    return text + "Z"


def parse_expires(text: str) -> datetime:
    """Parse any RFC 3339 time (as Go does) into an aware UTC datetime.

    Nanoseconds are truncated to microseconds: the original string is kept by the metadata
    layer, so nothing is lost on re-serialisation.

    Raises:
        EncodingError: not a string or not RFC 3339.
    """
    if not isinstance(text, str):
        raise EncodingError("expires must be a string")
    match = _RFC3339.match(text)
    if not match:
        raise EncodingError(f'expires "{text[:40]}" is not an RFC 3339 time')
    year, month, day, hour, minute, second, frac, zone = match.groups()
    micro = int((frac or "0").ljust(6, "0")[:6])
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=UTC)
    except ValueError as exc:
        raise EncodingError(f'expires "{text}" is not a valid time: {exc}') from None
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        moment -= timedelta(minutes=sign * (int(zone[1:3]) * 60 + int(zone[4:6])))
    return moment


# --------------------------------------------------------------------------------------------
# ECDSA signatures: DER <-> fixed-width r||s (§1.7)


def der_to_raw_ecdsa(der: bytes, size: int) -> bytes:
    """Convert a DER ECDSA signature into notary's raw r||s, each left-padded to ``size`` bytes.

    Raises:
        EncodingError: not a DER signature, or r/s too large for the curve.
    """
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    try:
        r, s = decode_dss_signature(der)
    except ValueError:
        raise EncodingError("not a DER-encoded ECDSA signature") from None
    if r.bit_length() > size * 8 or s.bit_length() > size * 8:
        raise EncodingError("ECDSA signature value too large for the curve")
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def raw_to_der_ecdsa(raw: bytes) -> bytes:
    """Convert notary's raw r||s into DER.

    Raises:
        EncodingError: odd or empty length.
    """
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    if not raw or len(raw) % 2:
        raise EncodingError(f"raw ECDSA signature has odd length {len(raw)}")
    half = len(raw) // 2
    return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
