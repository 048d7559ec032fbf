"""Conformance: one sequence of raw HTTP requests against the real notary-server and against
`trustkit server`, both over TLS, compared status by status and error code by error code.

EXPECTED below is the committed table.  Each row holds what notary-server answers and what
trustkit server answers.  Where notary's behaviour is the documented Notary API (wire spec §7)
the two columns must be equal; rows where trustkit is deliberately stricter or differs carry
a ``why`` saying so, and only there may the columns differ.

An observation is ``(HTTP status, what)``: ``what`` is the error code of notary's envelope
(``INVALID_UPDATE/<detail.Name>`` for validation errors, so ErrBadRoot and ErrBadTargets are
told apart), ``None`` for a success or a body-less answer, or a short fact the row is about
(a header value, "same key" / "new key").
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from trustkit.encoding import format_expires
from trustkit.keys import CryptoSigner, PublicKey, generate
from trustkit.keys.certs import root_key_for
from trustkit.metadata import (
    BASE_ROLES,
    FileMeta,
    Metadata,
    RoleKeys,
    Root,
    Snapshot,
    Targets,
)

pytestmark = pytest.mark.interop

CURRENT_CACHE = "public, max-age=300, s-maxage=300, must-revalidate"
CONSISTENT_CACHE = "public, max-age=2592000, s-maxage=2592000"


# ---- request helpers


def observe(response: httpx.Response) -> tuple[int, str | None]:
    """``(status, error code)``; INVALID_UPDATE is refined by its ``detail.Name``."""
    try:
        errors = json.loads(response.content)["errors"]
    except (ValueError, KeyError, TypeError):
        return response.status_code, None
    first = errors[0]
    code = first["code"]
    if code == "INVALID_UPDATE" and isinstance(first.get("detail"), dict):
        code += "/" + str(first["detail"].get("Name"))
    return response.status_code, code


def multipart(parts: list[tuple[str | None, bytes]]) -> tuple[dict[str, str], bytes]:
    """A publish body built by hand, so a part can lack its filename."""
    boundary = uuid.uuid4().hex
    chunks = []
    for filename, data in parts:
        disposition = 'form-data; name="files"' + (f'; filename="{filename}"' if filename is not None else "")
        chunks.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body


class Repo:
    """A docker-style repository written with trustkit's library (as test_golden's
    ``publish_with_trustkit``): root with a certificate key for the GUN, targets signed
    locally, snapshot and timestamp keys fetched from the server."""

    def __init__(self, http: httpx.Client, gun: str) -> None:
        self.http, self.gun = http, gun
        self.tuf = f"/v2/{gun}/_trust/tuf/"
        self.root_private = generate()
        self.root_key = root_key_for(self.root_private, gun)
        self.targets_signer = CryptoSigner(generate())
        self.server_keys: dict[str, PublicKey] = {}

    def fetch_server_keys(self) -> None:
        for role in ("timestamp", "snapshot"):
            body = json.loads(self.http.get(f"{self.tuf}{role}.key").content)
            self.server_keys[role] = PublicKey(body["keytype"], body["keyval"]["public"])

    def root(self, version: int, *, days: int = 3650) -> bytes:
        targets_key = self.targets_signer.public_key
        keys = {self.root_key.keyid: self.root_key, targets_key.keyid: targets_key}
        keys.update({k.keyid: k for k in self.server_keys.values()})
        ids = {
            "root": self.root_key.keyid,
            "targets": targets_key.keyid,
            **{r: k.keyid for r, k in self.server_keys.items()},
        }
        root = Metadata(
            Root(
                expires=format_expires(datetime.now(UTC) + timedelta(days=days)),
                version=version,
                keys=keys,
                roles={r: RoleKeys([ids[r]]) for r in BASE_ROLES},
            )
        )
        return root.sign([(CryptoSigner(self.root_private), self.root_key.keyid)])

    def targets(self, version: int, *, signer: CryptoSigner | None = None, days: int = 1095) -> bytes:
        signer = signer or self.targets_signer
        targets = Metadata(
            Targets(
                expires=format_expires(datetime.now(UTC) + timedelta(days=days)),
                version=version,
                targets={f"v{version}": FileMeta.for_digest("ab" * 32, 42)},
            )
        )
        return targets.sign([(signer, signer.public_key.keyid)])

    def snapshot(self) -> bytes:
        """A snapshot listing nothing, signed by a key root does not name."""
        signer = CryptoSigner(generate())
        snapshot = Metadata(
            Snapshot(expires=format_expires(datetime.now(UTC) + timedelta(days=30)), version=5, meta={})
        )
        return snapshot.sign([(signer, signer.public_key.keyid)])

    def post(self, parts: list[tuple[str | None, bytes]], gun: str | None = None) -> httpx.Response:
        headers, body = multipart(parts)
        path = f"/v2/{gun}/_trust/tuf/" if gun else self.tuf
        return self.http.post(path, content=body, headers=headers)


# ---- the sequence


def run_sequence(server) -> list[tuple[str, tuple[int, str | None]]]:
    """Send the whole sequence to ``server`` and return ``[(row, observation)]`` in order."""
    gun = "example.com/conformance/app"
    rows: list[tuple[str, tuple[int, str | None]]] = []

    def row(name: str, response: httpx.Response, what: str | None = None) -> httpx.Response:
        status, code = observe(response)
        rows.append((name, (status, what if what is not None else code)))
        return response

    with httpx.Client(base_url=server.url, verify=server.ssl_context(), timeout=60.0) as http:
        repo = Repo(http, gun)
        tuf = repo.tuf
        row("GET /v2/", http.get("/v2/"))
        row("GET root.json, unknown GUN", http.get(f"{tuf}root.json"))
        row("GET 0.root.json", http.get(f"{tuf}0.root.json"))
        row("GET root.<96 hex>.json", http.get(f"{tuf}root.{'ab' * 48}.json"))
        first = http.get(f"{tuf}timestamp.key")
        second = http.get(f"{tuf}timestamp.key")
        row("GET timestamp.key before init", first)
        row("GET timestamp.key again: same key?", second, "same key" if first.content == second.content else "new key")
        row("GET root.key", http.get(f"{tuf}root.key"))
        row("POST body not multipart", http.post(tuf, content=b"{}", headers={"Content-Type": "application/json"}))
        row("POST part without filename", repo.post([(None, b"{}")]))
        row('POST filename "zzz/targets"', repo.post([("zzz/targets", b"{}")]))
        row("POST garbage JSON", repo.post([("targets", b"{not json")]))
        repo.fetch_server_keys()
        row("POST targets only, new GUN", repo.post([("targets", repo.targets(1))]))
        row(
            "POST expired root v1 + targets", repo.post([("root", repo.root(1, days=-1)), ("targets", repo.targets(1))])
        )
        row("POST root v1 + targets v1", repo.post([("root", repo.root(1)), ("targets", repo.targets(1))]))
        row("POST the same root v1 again", repo.post([("root", repo.root(1))]))
        row("POST root v3 (skips v2)", repo.post([("root", repo.root(3))]))
        row(
            "POST targets v2 signed by a wrong key",
            repo.post([("targets", repo.targets(2, signer=CryptoSigner(generate())))]),
        )
        row("POST targets v2 expired", repo.post([("targets", repo.targets(2, days=-1))]))
        row("POST targets v1 again (version not rising)", repo.post([("targets", repo.targets(1))]))
        row("POST no parts at all", repo.post([]))
        row(
            "POST no parts, Go's form (CRLF preamble)",
            http.post(
                tuf, content=b"\r\n--gofrm--\r\n", headers={"Content-Type": "multipart/form-data; boundary=gofrm"}
            ),
        )
        row("POST a timestamp part only", repo.post([("timestamp", b'{"signed":{},"signatures":[]}')]))
        row(
            "POST targets/releases not delegated",
            repo.post([("targets/releases", repo.targets(1, signer=CryptoSigner(generate())))]),
        )
        row(
            "POST snapshot signed by a wrong key",
            repo.post([("targets", repo.targets(2)), ("snapshot", repo.snapshot())]),
        )
        row("POST 65 MiB body", repo.post([("targets", b" " * (65 << 20))]))
        row("POST targets v2", repo.post([("targets", repo.targets(2))]))
        row("POST targets v2 again, other bytes", repo.post([("targets", repo.targets(2, days=1000))]))
        row("POST targets v1 after v2", repo.post([("targets", repo.targets(1))]))
        row("POST root v1 again with targets v3", repo.post([("root", repo.root(1)), ("targets", repo.targets(3))]))
        targets = row("GET targets.json", http.get(f"{tuf}targets.json"))
        row("GET targets.json: Cache-Control", targets, targets.headers.get("cache-control"))
        checksum = hashlib.sha256(targets.content).hexdigest()
        by_sum = row("GET targets.<sha256>.json", http.get(f"{tuf}targets.{checksum}.json"))
        row("GET targets.<sha256>.json: Cache-Control", by_sum, by_sum.headers.get("cache-control"))
        row("GET root.<sha256 of targets>.json", http.get(f"{tuf}root.{checksum}.json"))
        row("GET 1.root.json", http.get(f"{tuf}1.root.json"))
        row("GET 2.root.json", http.get(f"{tuf}2.root.json"))
        row("GET timestamp.json", http.get(f"{tuf}timestamp.json"))
        row("GET snapshot.json", http.get(f"{tuf}snapshot.json"))
        key = http.get(f"{tuf}timestamp.key")
        row(
            "GET timestamp.key after init: root's key?",
            key,
            "root's key"
            if json.loads(key.content)["keyval"]["public"] == repo.server_keys["timestamp"].public
            else "another key",
        )
        row("HEAD root.json", http.head(f"{tuf}root.json"))
        row("PUT root.json", http.put(f"{tuf}root.json", content=b"{}"))
        row('changefeed records=""', http.get(f"/v2/{gun}/_trust/changefeed", params={"records": ""}))
        feed = row("changefeed records=10", http.get(f"/v2/{gun}/_trust/changefeed", params={"records": "10"}))
        row("changefeed records=10: count", feed, f"count {feed.json()['count']}")
        row(
            "changefeed change_id=abc",
            http.get(f"/v2/{gun}/_trust/changefeed", params={"records": "10", "change_id": "abc"}),
        )
        row("global changefeed records=10", http.get("/v2/_trust/changefeed", params={"records": "10"}))
        row("GET root.json, GUN with a space", http.get("/v2/example.com/a b/_trust/tuf/root.json"))
        row("GET root.json, GUN with %2e%2e", http.get("/v2/example.com/%2e%2e/x/_trust/tuf/root.json"))
        row("GET _trust/settings", http.get(f"/v2/{gun}/_trust/settings"))
        row(
            "POST multipart cut short",
            http.post(tuf, content=b"--cut\r\n", headers={"Content-Type": "multipart/form-data; boundary=cut"}),
        )
        row("POST snapshot.key (rotate)", http.post(f"{tuf}snapshot.key"))
        row("DELETE", http.delete(tuf))
        row("GET root.json after DELETE", http.get(f"{tuf}root.json"))
        row("GET 1.root.json after DELETE", http.get(f"{tuf}1.root.json"))
    return rows


# ---- the committed table

N404 = (404, "METADATA_NOT_FOUND")
BAD_ROOT, BAD_TARGETS = (400, "INVALID_UPDATE/ErrBadRoot"), (400, "INVALID_UPDATE/ErrBadTargets")
OK = (200, None)

# (row, notary-server 0.7.0 (Debian, memory storage), trustkit server (SQLite), why they differ)
# An empty "why" means the row is the documented Notary API (wire spec §7) and the columns are equal.
EXPECTED: list[tuple[str, tuple[int, str | None], tuple[int, str | None], str]] = [
    # row                                       notary-server                        trustkit server
    ("GET /v2/", OK, OK, ""),
    ("GET root.json, unknown GUN", N404, N404, ""),
    ("GET 0.root.json", N404, N404, ""),
    ("GET root.<96 hex>.json", N404, N404, ""),
    ("GET timestamp.key before init", OK, OK, ""),
    (
        "GET timestamp.key again: same key?",
        (200, "new key"),
        (200, "same key"),
        # §7.3: notary creates a new key on every GET before the first publish (a client must fetch
        # once); trustkit keeps one pending key per GUN and role until a root names it, so racing or
        # retrying clients agree. Both keys work in a root for either server.
        "trustkit returns the same pending key until root names one; notary makes a new one per GET",
    ),
    ("GET root.key", N404, N404, ""),
    ("POST body not multipart", (400, "MALFORMED_UPLOAD"), (400, "MALFORMED_UPLOAD"), ""),
    ("POST part without filename", (400, "NO_FILENAME"), (400, "NO_FILENAME"), ""),
    ('POST filename "zzz/targets"', (400, "INVALID_ROLE"), (400, "INVALID_ROLE"), ""),
    ("POST garbage JSON", (400, "MALFORMED_JSON"), (400, "MALFORMED_JSON"), ""),
    ("POST targets only, new GUN", (400, "INVALID_UPDATE/ErrValidation"), (400, "INVALID_UPDATE/ErrValidation"), ""),
    ("POST expired root v1 + targets", BAD_ROOT, BAD_ROOT, ""),
    ("POST root v1 + targets v1", OK, OK, ""),
    ("POST the same root v1 again", (400, "VERSION"), (400, "VERSION"), ""),
    ("POST root v3 (skips v2)", BAD_ROOT, BAD_ROOT, ""),
    ("POST targets v2 signed by a wrong key", BAD_TARGETS, BAD_TARGETS, ""),
    ("POST targets v2 expired", BAD_TARGETS, BAD_TARGETS, ""),
    ("POST targets v1 again (version not rising)", (400, "VERSION"), (400, "VERSION"), ""),
    # `notary publish` with nothing dirty sends Go's empty form; both sign a new snapshot+timestamp.
    ("POST no parts at all", OK, OK, ""),
    ("POST no parts, Go's form (CRLF preamble)", OK, OK, ""),
    ("POST a timestamp part only", OK, OK, ""),  # ignored (§7.2)
    ("POST targets/releases not delegated", BAD_TARGETS, BAD_TARGETS, ""),
    (
        "POST snapshot signed by a wrong key",
        (400, "INVALID_UPDATE/ErrBadSnapshot"),
        (400, "INVALID_UPDATE/ErrBadSnapshot"),
        "",
    ),
    (
        "POST 65 MiB body",
        (400, "MALFORMED_JSON"),
        (413, "TOO_LARGE"),
        # notary reads any size (its only limits are client-side, §7); trustkit caps the body (64 MiB
        # by default) before parsing, with its own TOO_LARGE code.
        "trustkit caps request bodies (issue 5 §3); notary reads and parses the whole body",
    ),
    ("POST targets v2", OK, OK, ""),
    # A role at a version the server has, or below it: notary-server answers VERSION, from its memory
    # and its SQL storage alike (storage.ErrOldVersion, server/handlers/default.go), not INVALID_UPDATE
    # as issue 10 expected (measured with notary-server 0.7.0).  Only a root below the stored one is
    # refused by validation first (ErrBadRoot, the row "POST root v3 (skips v2)" and its kin).
    ("POST targets v2 again, other bytes", (400, "VERSION"), (400, "VERSION"), ""),
    ("POST targets v1 after v2", (400, "VERSION"), (400, "VERSION"), ""),
    ("POST root v1 again with targets v3", (400, "VERSION"), (400, "VERSION"), ""),
    ("GET targets.json", OK, OK, ""),
    ("GET targets.json: Cache-Control", (200, CURRENT_CACHE), (200, CURRENT_CACHE), ""),
    ("GET targets.<sha256>.json", OK, OK, ""),
    ("GET targets.<sha256>.json: Cache-Control", (200, CONSISTENT_CACHE), (200, CONSISTENT_CACHE), ""),
    (
        "GET root.<sha256 of targets>.json",
        OK,
        N404,
        # §7.1: notary's memory backend ignores the role in a checksum lookup; its SQL backend (and
        # trustkit) filter by role.
        "notary's memory backend ignores the role in checksum URLs; trustkit matches notary's SQL backend",
    ),
    ("GET 1.root.json", OK, OK, ""),
    ("GET 2.root.json", N404, N404, ""),
    ("GET timestamp.json", OK, OK, ""),
    ("GET snapshot.json", OK, OK, ""),
    ("GET timestamp.key after init: root's key?", (200, "root's key"), (200, "root's key"), ""),
    ("HEAD root.json", (404, None), (404, None), ""),  # no body
    ("PUT root.json", N404, N404, ""),
    ('changefeed records=""', (400, "INVALID_PARAMETERS"), (400, "INVALID_PARAMETERS"), ""),
    ("changefeed records=10", OK, OK, ""),
    ("changefeed records=10: count", (200, "count 5"), (200, "count 5"), ""),
    ("changefeed change_id=abc", (400, "INVALID_PARAMETERS"), (400, "INVALID_PARAMETERS"), ""),
    ("global changefeed records=10", OK, OK, ""),
    (
        "GET root.json, GUN with a space",
        N404,
        (400, "INVALID_GUN"),
        "trustkit refuses GUNs with whitespace, control characters, '\\', '%' (issue 5 §3); notary takes [^*]+",
    ),
    (
        "GET root.json, GUN with %2e%2e",
        (301, None),
        (400, "INVALID_GUN"),
        "Go's router cleans the path and redirects; trustkit refuses '.'/'..' GUN segments outright",
    ),
    (
        "GET _trust/settings",
        N404,
        OK,
        "trustkit's repository settings (immutability, issue 5 §7); notary has no such route",
    ),
    (
        "POST multipart cut short",
        OK,
        (400, "MALFORMED_UPLOAD"),
        # Go's multipart reader takes EOF after a delimiter line as the end of the form, so notary
        # publishes an empty update; trustkit needs the closing delimiter, so a body cut in transit
        # is never taken for a complete update.
        "trustkit needs the closing delimiter; notary accepts a body cut short as an empty update",
    ),
    ("POST snapshot.key (rotate)", OK, OK, ""),
    ("DELETE", OK, OK, ""),
    ("GET root.json after DELETE", N404, N404, ""),
    ("GET 1.root.json after DELETE", N404, N404, ""),
]


def format_table(observed: list[tuple[str, tuple[int, str | None]]], column: int) -> str:
    expected = {name: (notary, trustkit) for name, notary, trustkit, _ in EXPECTED}
    lines = []
    for name, got in observed:
        want = expected.get(name, (None, None))[column]
        lines.append(f"{'  ' if got == want else '!!'} {name:45} expected {want!s:45} got {got}")
    return "\n".join(lines)


def test_the_table_differs_only_where_it_says_why():
    for name, notary, trustkit, why in EXPECTED:
        if notary == trustkit:
            assert not why, f"{name}: the columns agree, drop the explanation"
        else:
            assert why, f"{name}: trustkit differs from notary's documented behaviour without a reason"
    assert len({name for name, *_ in EXPECTED}) == len(EXPECTED)


@pytest.mark.parametrize("peer", ["notary_server", "trustkit_server"])
def test_the_same_requests_get_the_answers_in_the_table(request, peer):
    server = request.getfixturevalue(peer)
    observed = run_sequence(server)
    column = 0 if peer == "notary_server" else 1
    assert [name for name, _ in observed] == [name for name, *_ in EXPECTED], "the sequence and the table differ"
    assert [got for _, got in observed] == [row[1 + column] for row in EXPECTED], (
        f"{peer} answered differently from the table:\n{format_table(observed, column)}"
    )
