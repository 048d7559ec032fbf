"""Layer `server`: the multipart/form-data body of a publish (wire spec §7.2), parsed while it
arrives.

:class:`PublishForm` is fed the body chunk by chunk.  It holds the bytes of each part (exactly
as sent), one part's headers, and the few bytes at the end of a chunk that may begin a
delimiter: about the size of the parts, never a multiple of the body.  Part count and header
size are checked as they arrive.

The rules are those of splitting the whole body on ``CRLF--boundary`` (RFC 2046 §5.1.1):

* a preamble before the first delimiter is skipped (Go's ``multipart.Writer`` sends
  ``CRLF--b--CRLF`` for a form with no parts, which the notary CLI sends);
* every section between two delimiters is ``CRLF`` + headers + ``CRLF CRLF`` + the part's bytes;
* the section after the last delimiter starts with ``--`` (the closing delimiter): a body cut
  short is never taken for a complete publish; what follows it is ignored.

Faults are reported in the order of the parts, a body cut short first, with notary's codes:
MALFORMED_UPLOAD (not multipart, no boundary, bad structure, too many parts, a role sent twice)
or NO_FILENAME (no filename, or an empty role).  A MALFORMED_UPLOAD is raised as soon as it is
seen, since nothing later can change the answer; a NO_FILENAME waits for the end of the body.
"""

from __future__ import annotations

import re

from trustkit.server.validation import UpdateError

_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_FILENAME = re.compile(r'filename="((?:[^"\\]|\\.)*)"|filename=([^;\s]+)', re.IGNORECASE)
MAX_BOUNDARY = 70  # RFC 2046 §5.1.1
MAX_PART_HEAD = 16 << 10  # a part's headers: notary's client sends about 150 bytes

# what the current section is known to be
_LEAD, _HEAD, _DATA, _CLOSING, _SKIP = "lead", "head", "data", "closing", "skip"


class _Section:
    """The bytes between two delimiters, as far as they have arrived."""

    def __init__(self) -> None:
        self.kind = _LEAD
        self.lead = b""  # its first two bytes: CRLF for a part, "--" for the closing delimiter
        self.head = bytearray()  # a part's headers, until the blank line
        self.role = ""
        self.data = bytearray()  # a part's bytes


class PublishForm:
    """A publish body, fed with :meth:`feed` and finished with :meth:`finish`.

    Raises:
        UpdateError: MALFORMED_UPLOAD for a content type that is not multipart/form-data with
            a boundary (from the constructor), and the faults listed in the module docstring.
    """

    def __init__(self, content_type: str, max_parts: int) -> None:
        self._delimiter = b"--" + _boundary(content_type)
        self._separator = b"\r\n" + self._delimiter
        self._max_parts = max_parts
        self._started = False  # the first delimiter has been seen
        self._in_preamble = False  # the body does not start with the delimiter
        self._carry = b""  # unparsed bytes: the start of the body, or what may begin a separator
        self._section = _Section()
        self._parts: dict[str, bytes] = {}
        self._fault: UpdateError | None = None  # the first part's fault, reported at the end

    def feed(self, chunk: bytes) -> None:
        data = self._carry + chunk
        start = 0 if self._started else self._first_delimiter(data)
        if start is None:
            return
        size = len(self._separator)
        with memoryview(data) as view:
            while (at := data.find(self._separator, start)) >= 0:
                self._take(view[start:at])
                self._end_section()
                start = at + size
            safe = max(start, len(data) - size + 1)  # a separator may begin after this
            self._take(view[start:safe])
        self._carry = data[safe:]

    def finish(self) -> dict[str, bytes]:
        """The parts by role name (the filename, slashes kept, a trailing ``.json`` removed)."""
        if not self._started:
            raise UpdateError("MALFORMED_UPLOAD")  # no delimiter at all
        with memoryview(self._carry) as view:
            self._take(view)  # the body is over: these bytes begin no separator
        self._carry = b""
        if self._section.kind != _CLOSING:
            raise UpdateError("MALFORMED_UPLOAD")  # no closing delimiter: cut short
        if self._fault is not None:
            raise self._fault
        # No parts at all (just the closing delimiter) is what `notary publish` sends when nothing
        # is dirty, e.g. after `notary key rotate GUN snapshot -r`; notary-server answers 200 and
        # signs a new snapshot and timestamp, so this does too.
        return self._parts

    # ---- the delimiters

    def _first_delimiter(self, data: bytes) -> int | None:
        """Where the first section starts (and remember that it did), or None: keep reading."""
        if not self._in_preamble:
            if len(data) < len(self._delimiter) and self._delimiter.startswith(data):
                self._carry = data  # too short to tell whether the body starts with the delimiter
                return None
            self._in_preamble = not data.startswith(self._delimiter)
        if not self._in_preamble:
            start = len(self._delimiter)
        else:
            at = data.find(self._separator)  # after a preamble (RFC 2046)
            if at < 0:
                self._carry = data[-(len(self._separator) - 1) :]
                return None
            start = at + len(self._separator)
        self._started = True
        return start

    # ---- the sections

    def _take(self, piece: memoryview) -> None:
        """The next bytes of the current section."""
        section = self._section
        if section.kind == _LEAD:
            needed = 2 - len(section.lead)
            section.lead += bytes(piece[:needed])
            piece = piece[needed:]
            if len(section.lead) < 2:
                return
            if section.lead == b"--":
                section.kind = _CLOSING
            elif section.lead != b"\r\n":
                section.kind = _SKIP
                self._refuse(UpdateError("MALFORMED_UPLOAD"))
            else:
                section.kind = _HEAD if self._fault is None else _SKIP
        if section.kind == _HEAD:
            self._take_head(section, piece)
        elif section.kind == _DATA:
            section.data += piece
        # _CLOSING: what follows the closing delimiter is ignored; _SKIP: after a fault

    def _take_head(self, section: _Section, piece: memoryview) -> None:
        searched = max(0, len(section.head) - 3)
        section.head += piece
        end = section.head.find(b"\r\n\r\n", searched)
        if end < 0:
            if len(section.head) > MAX_PART_HEAD:
                section.kind = _SKIP
                self._refuse(UpdateError("MALFORMED_UPLOAD", f"a part's headers are over {MAX_PART_HEAD} bytes"))
            return
        head, section.data, section.head = bytes(section.head[:end]), section.head[end + 4 :], bytearray()
        section.role = self._role(head)
        section.kind = _DATA if self._fault is None else _SKIP

    def _end_section(self) -> None:
        """A delimiter follows the current section: it is a whole part, or a fault."""
        section = self._section
        if section.kind == _DATA:
            self._parts[section.role] = bytes(section.data)
        elif section.kind != _SKIP:
            # cut before its headers end, less than two bytes, or a closing delimiter that is not the last
            self._refuse(UpdateError("MALFORMED_UPLOAD"))
        self._section = _Section()

    def _role(self, head: bytes) -> str:
        """The role a part's headers name; a fault leaves it empty."""
        disposition = next(
            (
                line.split(b":", 1)[1].decode("latin-1")
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-disposition:")
            ),
            "",
        )
        found = _FILENAME.search(disposition)
        if not found:
            self._refuse(UpdateError("NO_FILENAME"))
            return ""
        name = found.group(1).replace('\\"', '"') if found.group(1) is not None else found.group(2)
        if len(self._parts) >= self._max_parts:
            self._refuse(UpdateError("MALFORMED_UPLOAD", f"more than {self._max_parts} parts"))
        role = name.removesuffix(".json")
        if not role:
            self._refuse(UpdateError("NO_FILENAME"))  # notary: an empty role name is no filename
        elif role in self._parts:
            # notary lets the last one count; which one the client meant is anyone's guess
            self._refuse(UpdateError("MALFORMED_UPLOAD", f"the {role} part is sent more than once"))
        return role

    def _refuse(self, fault: UpdateError) -> None:
        """The first fault decides the answer (unless the body turns out to be cut short, which
        is MALFORMED_UPLOAD too): raise it now if nothing later can change it."""
        if self._fault is not None:
            return
        if fault.code == "MALFORMED_UPLOAD":
            raise fault
        self._fault = fault
        self._section.data = bytearray()


def parse_multipart(content_type: str, body: bytes, max_parts: int) -> dict[str, bytes]:
    """A whole body at once (see :class:`PublishForm`)."""
    form = PublishForm(content_type, max_parts)
    form.feed(body)
    return form.finish()


def _boundary(content_type: str) -> bytes:
    if not content_type.lower().startswith("multipart/form-data"):
        raise UpdateError("MALFORMED_UPLOAD")
    match = _BOUNDARY.search(content_type)
    if not match:
        raise UpdateError("MALFORMED_UPLOAD")
    boundary = (match.group(1) or match.group(2)).encode("latin-1")
    if len(boundary) > MAX_BOUNDARY:
        raise UpdateError("MALFORMED_UPLOAD", f"the boundary is longer than {MAX_BOUNDARY} characters")
    return boundary
