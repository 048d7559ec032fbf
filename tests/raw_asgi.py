"""One HTTP request straight into an ASGI app, the path exactly as a server would hand it over:
what the server tests use where an HTTP client would normalise the URL (dot segments, tabs,
percent escapes) or read the whole body at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import anyio


@dataclass
class Sent:
    """What the app answered, and how many body messages it pulled."""

    status: int = 0
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    pulled: int = 0


def request(
    app: Any,
    method: str,
    path: str,
    *,
    raw: bool = False,
    body_chunks: list[bytes] | tuple[bytes, ...] = (),
    headers: dict[str, str] | None = None,
    query: bytes = b"",
) -> Sent:
    """``path`` is the decoded path (``raw=False``), or the raw path as sent, percent-decoded here
    as uvicorn does (``raw=True``).  The body arrives in ``body_chunks``, one message each."""
    decoded, raw_path = (
        (unquote(path, errors="surrogateescape"), path.encode()) if raw else (path, quote(path).encode())
    )
    sent = Sent()
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(body_chunks) - 1}
        for i, chunk in enumerate(body_chunks)
    ] or [{"type": "http.request", "body": b"", "more_body": False}]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": decoded,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "headers": [(b"host", b"testserver")]
        + [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()],
    }

    async def receive() -> dict[str, Any]:
        if sent.pulled < len(messages):
            sent.pulled += 1
            return messages[sent.pulled - 1]
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover - sleep_forever never returns

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent.status = message["status"]
            sent.headers = {k.decode().lower(): v.decode("latin-1") for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            sent.body += message.get("body", b"")

    anyio.run(app, scope, receive, send)
    return sent
