"""Layer `keys`: the little DER and PEM handling notary's key files need.

Hand-written on purpose: pyca/cryptography refuses notary's EC PKCS#8 (version 1) and its
Ed25519 blobs, and cannot write notary's exact PBES2 parameters, so the outer structures are
built and read here; every cryptographic operation stays in cryptography.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from trustkit.errors import KeyFormatError

SEQUENCE, INTEGER, OCTET_STRING, OID = 0x30, 0x02, 0x04, 0x06


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _length(len(value)) + value


def seq(*items: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(items))


def integer(n: int) -> bytes:
    # Non-negative only; one leading zero byte keeps the sign bit clear.
    return tlv(INTEGER, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big"))


def octets(data: bytes) -> bytes:
    return tlv(OCTET_STRING, data)


def oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for arc in parts[2:]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        out.extend(reversed(chunk))
    return tlv(OID, bytes(out))


def read_tlv(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """Read one TLV at ``pos``; returns (tag, value, end).

    Raises:
        KeyFormatError: truncated or indefinite-length encoding.
    """
    try:
        tag = data[pos]
        first = data[pos + 1]
        pos += 2
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            if count == 0 or count > 4:
                raise KeyFormatError("unsupported DER length encoding")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
    except IndexError:
        raise KeyFormatError("truncated DER data") from None
    end = pos + length
    if end > len(data):
        raise KeyFormatError("truncated DER data")
    return tag, data[pos:end], end


def read_children(value: bytes) -> list[tuple[int, bytes]]:
    """All TLVs inside a constructed value."""
    items, pos = [], 0
    while pos < len(value):
        tag, inner, pos = read_tlv(value, pos)
        items.append((tag, inner))
    return items


def decode_oid(value: bytes) -> str:
    if not value:
        raise KeyFormatError("empty OID")
    parts = [value[0] // 40, value[0] % 40]
    n = 0
    for byte in value[1:]:
        n = (n << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(n)
            n = 0
    return ".".join(map(str, parts))


# --------------------------------------------------------------------------------------------
# PEM with RFC 1421 headers (notary writes "gun:" and "role:" headers, sorted by name)


@dataclass
class PemBlock:
    type: str
    der: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> str:
        body = base64.b64encode(self.der).decode("ascii")
        lines = [f"-----BEGIN {self.type}-----"]
        if self.headers:
            lines += [f"{k}: {v}" for k, v in sorted(self.headers.items())]
            lines.append("")
        lines += [body[i : i + 64] for i in range(0, len(body), 64)]
        lines.append(f"-----END {self.type}-----")
        return "\n".join(lines) + "\n"


def parse_pem(text: str | bytes, *, what: str = "PEM file") -> list[PemBlock]:
    """Every PEM block in ``text``, with headers.

    Raises:
        KeyFormatError: no block, a block without its END line, or bad base64.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise KeyFormatError(f"{what} is not a PEM text file") from None
    blocks: list[PemBlock] = []
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not (line.startswith("-----BEGIN ") and line.endswith("-----")):
            i += 1
            continue
        kind = line[len("-----BEGIN ") : -5]
        end_marker = f"-----END {kind}-----"
        headers: dict[str, str] = {}
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != end_marker:
            current = lines[i].strip()
            if ":" in current and not body:
                name, _, value = current.partition(":")
                headers[name.strip()] = value.strip()
            elif current:
                body.append(current)
            i += 1
        if i >= len(lines):
            raise KeyFormatError(f"{what} is truncated: no {end_marker} line")
        try:
            der = base64.b64decode("".join(body), validate=True)
        except (binascii.Error, ValueError):
            raise KeyFormatError(f"{what} has a {kind} block that is not valid base64") from None
        if not der:
            raise KeyFormatError(f"{what} has an empty {kind} block")
        blocks.append(PemBlock(kind, der, headers))
        i += 1
    if not blocks:
        raise KeyFormatError(f"{what} holds no PEM block")
    return blocks
