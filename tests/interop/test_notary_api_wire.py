"""notary_api's table of error codes against the real notary-server: for each code notary-server
can be made to send, its status and body byte for byte as ``notary_api.envelope`` writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import peers
from trustkit.notary_api import envelope

BOUNDARY = "notary-api-boundary"


def _multipart(*parts: tuple[str | None, bytes]) -> bytes:
    body = b""
    for filename, data in parts:
        disposition = 'form-data; name="files"' + (f'; filename="{filename}"' if filename is not None else "")
        body += (
            (
                f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return body + f"--{BOUNDARY}--\r\n".encode()


@pytest.mark.interop
def test_the_table_has_notary_servers_wire_messages(tmp_path: Path) -> None:
    """Each code notary-server can be made to send, byte for byte as notary_api writes it."""
    multipart = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    tuf = "/v2/docker.io/library/app/_trust/tuf/"
    requests: dict[str, tuple[str, str, dict[str, Any]]] = {
        "METADATA_NOT_FOUND": ("GET", tuf + "root.json", {}),
        "INVALID_PARAMETERS": ("GET", "/v2/docker.io/library/app/_trust/changefeed?records=", {}),
        "MALFORMED_UPLOAD": ("POST", tuf, {"content": b"x", "headers": {"Content-Type": "text/plain"}}),
        "NO_FILENAME": ("POST", tuf, {"content": _multipart((None, b"{}")), "headers": multipart}),
        "MALFORMED_JSON": ("POST", tuf, {"content": _multipart(("root", b"x")), "headers": multipart}),
        "INVALID_ROLE": ("POST", tuf, {"content": _multipart(("zzz", b"{}")), "headers": multipart}),
        "INVALID_UPDATE": (
            "POST",
            tuf,
            {"content": _multipart(("targets", b'{"signed":{},"signatures":[]}')), "headers": multipart},
        ),
        "INVALID_GUN": ("POST", "/v2/example.com/app/_trust/tuf/", {"content": _multipart(), "headers": multipart}),
    }
    overrides = {"repositories": {"gun_prefixes": ["docker.io/"]}}
    with peers.NotaryServer(tmp_path / "notary", config_overrides=overrides) as server, server.client() as http:
        for code, (method, path, options) in requests.items():
            answer = http.request(method, path, **options)
            detail = answer.json()["errors"][0].get("detail")
            assert (answer.status_code, answer.content) == envelope(code, detail), code
