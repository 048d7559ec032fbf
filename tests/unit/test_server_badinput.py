"""The bad-input catalogue (reliability-scenarios.md §4) against `trustkit server`, in-process.

The app runs on a temporary SQLite database behind Starlette's TestClient (and, for request
paths an HTTP client would normalise, a raw ASGI call).  A repository is set up with valid
metadata built by trustkit's own library; each case then sends one bad request, usually a valid
publish with one thing wrong, re-signed so that the one thing is the only problem.

For every case: a 4xx with notary's documented error code (§7.6 of the wire spec; stricter
checks use the same codes), never a 5xx, and every row of every table exactly as before.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from raw_asgi import request
from simulator import Key, new_key, new_root_key
from trustkit.encoding import b64encode, canonical_json, envelope_bytes, format_expires
from trustkit.keys.public import PublicKey
from trustkit.metadata import Metadata
from trustkit.roles import ROOT, SNAPSHOT, TARGETS, TIMESTAMP
from trustkit.server.app import ServerSettings, create_app
from trustkit.server.keys import ServerKeys
from trustkit.server.storage import METADATA as TABLES
from trustkit.server.storage import Storage

GUN = "registry.example.com/badinput/app"
OTHER_GUN = "registry.example.com/badinput/new"
MAX_BODY = 1 << 20  # the app's body cap in these tests (the default is 64 MiB)
BOUNDARY = "trustkit-test-boundary"


# --------------------------------------------------------------------------------------------
# the repository under attack


@dataclass
class Repo:
    client: TestClient
    app: Any
    storage: Storage
    root_key: Key
    targets_key: Key
    server_keys: dict[str, PublicKey]  # snapshot, timestamp
    root: dict[str, Any]  # signed part of the stored root (version 1)
    targets: dict[str, Any]  # signed part of the stored targets (version 2)
    root_bytes: bytes
    targets_bytes: bytes

    def tuf(self, gun: str = GUN) -> str:
        return f"/v2/{gun}/_trust/tuf/"


def now() -> datetime:
    return datetime.now(UTC)


def sign(signed: dict[str, Any], *keys: Key) -> bytes:
    """The file bytes of ``signed`` with a signature by each key (notary's layout)."""
    message = canonical_json(signed)
    signatures = [{"keyid": k.keyid, "method": k.signer.method, "sig": b64encode(k.signer.sign(message))} for k in keys]
    return envelope_bytes(message, signatures)


def root_doc(root_key: Key, targets_key: Key, server_keys: dict[str, PublicKey], version: int = 1) -> dict[str, Any]:
    keys = {
        root_key.keyid: root_key.public,
        targets_key.keyid: targets_key.public,
        **{key.keyid: key for key in server_keys.values()},
    }
    roles = {
        ROOT: [root_key.keyid],
        TARGETS: [targets_key.keyid],
        SNAPSHOT: [server_keys[SNAPSHOT].keyid],
        TIMESTAMP: [server_keys[TIMESTAMP].keyid],
    }
    return {
        "_type": "Root",
        "consistent_snapshot": False,
        "expires": format_expires(now() + timedelta(days=3650)),
        "keys": {keyid: key.to_dict() for keyid, key in keys.items()},
        "roles": {role: {"keyids": ids, "threshold": 1} for role, ids in roles.items()},
        "version": version,
    }


def target(name: str, length: int = 1234) -> dict[str, Any]:
    digest = hashlib.sha256(f"manifest of {name}".encode()).digest()
    return {"hashes": {"sha256": b64encode(digest)}, "length": length}


def targets_doc(version: int, tags: list[str]) -> dict[str, Any]:
    return {
        "_type": "Targets",
        "delegations": {"keys": {}, "roles": []},
        "expires": format_expires(now() + timedelta(days=1095)),
        "targets": {tag: target(tag) for tag in tags},
        "version": version,
    }


def multipart(parts: list[tuple[str | None, bytes]], boundary: str = BOUNDARY) -> bytes:
    """A multipart/form-data body as notary's client sends it: field ``files``, the role as
    the filename (``None``: no filename parameter at all)."""
    out = b""
    for filename, data in parts:
        disposition = 'form-data; name="files"' + (f'; filename="{filename}"' if filename is not None else "")
        out += (
            (
                f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()


CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def build_repo(database: Path) -> Repo:
    storage = Storage(f"sqlite:///{database}")
    app = create_app(storage, ServerKeys(storage, "bad-input-test"), ServerSettings(max_body=MAX_BODY))
    client = TestClient(app)
    server_keys = {
        role: PublicKey.from_dict(client.get(f"/v2/{GUN}/_trust/tuf/{role}.key").json())
        for role in (SNAPSHOT, TIMESTAMP)
    }
    root_key, targets_key = new_root_key(GUN, issued=now()), new_key()
    root = root_doc(root_key, targets_key, server_keys)
    root_bytes = sign(root, root_key)
    first = sign(targets_doc(1, ["v1"]), targets_key)
    response = client.post(
        f"/v2/{GUN}/_trust/tuf/",
        content=multipart([("root", root_bytes), ("targets", first)]),
        headers={"Content-Type": CONTENT_TYPE},
    )
    assert response.status_code == 200, response.text
    targets = targets_doc(2, ["v1", "v2"])
    targets_bytes = sign(targets, targets_key)
    response = client.post(
        f"/v2/{GUN}/_trust/tuf/",
        content=multipart([("targets", targets_bytes)]),
        headers={"Content-Type": CONTENT_TYPE},
    )
    assert response.status_code == 200, response.text
    return Repo(client, app, storage, root_key, targets_key, server_keys, root, targets, root_bytes, targets_bytes)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    """One repository for the whole module: every case leaves it unchanged (that is checked)."""
    built = build_repo(tmp_path_factory.mktemp("badinput") / "server.db")
    with built.client:
        yield built
    built.storage.close()


# --------------------------------------------------------------------------------------------
# the next publish, valid, and ways to spoil it


def next_targets(repo: Repo) -> dict[str, Any]:
    """The signed part of a valid next targets (version 3, one more tag)."""
    doc = copy.deepcopy(repo.targets)
    doc["version"] = 3
    doc["targets"]["v3"] = target("v3")
    return doc


def valid_targets(repo: Repo) -> bytes:
    return sign(next_targets(repo), repo.targets_key)


def spoiled_targets(change: Callable[[dict[str, Any]], object]) -> Callable[[Repo], bytes]:
    """Next targets with ``change`` applied to its signed part, then properly signed."""

    def build(repo: Repo) -> bytes:
        doc = next_targets(repo)
        change(doc)
        return sign(doc, repo.targets_key)

    return build


def spoiled_root(
    change: Callable[[dict[str, Any], Repo], object], *, extra_signers: Callable[[Repo], list[Key]] = lambda repo: []
) -> Callable[[Repo], bytes]:
    """Root version 2 with ``change`` applied, signed by the current root key (and others)."""

    def build(repo: Repo) -> bytes:
        doc = copy.deepcopy(repo.root)
        doc["version"] = 2
        change(doc, repo)
        return sign(doc, repo.root_key, *extra_signers(repo))

    return build


def replaced(old: bytes, new: bytes) -> Callable[[Repo], bytes]:
    """Valid next targets bytes with one byte-level edit (its signature no longer matters:
    the edit must be refused before signatures are looked at)."""

    def build(repo: Repo) -> bytes:
        data = valid_targets(repo)
        assert old in data, old
        return data.replace(old, new, 1)

    return build


def set_key(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for name in parents:
            node = node[name]
        node[last] = value

    return change


def delete_key(path: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for name in parents:
            node = node[name]
        del node[last]

    return change


def delegating(*roles: dict[str, Any], keys: Callable[[Key], dict[str, Any]] | None = None) -> Callable[[Repo], bytes]:
    """Next targets delegating ``roles`` (keyids default to one fresh delegate key)."""

    def build(repo: Repo) -> bytes:
        delegate = new_key()
        doc = next_targets(repo)
        doc["delegations"]["keys"] = keys(delegate) if keys else {delegate.keyid: delegate.public.to_dict()}
        doc["delegations"]["roles"] = [
            {"keyids": [delegate.keyid], "paths": [""], "threshold": 1, **role} for role in roles
        ]
        return sign(doc, repo.targets_key)

    return build


# --------------------------------------------------------------------------------------------
# what the database holds, and the checks


def db_rows(storage: Storage) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order."""
    with storage.engine.connect() as conn:
        return {
            table.name: [tuple(row) for row in conn.execute(sa.select(table).order_by(*table.primary_key))]
            for table in TABLES.sorted_tables
        }


def error_code(body: bytes) -> str | None:
    """The code of notary's error envelope (None when the body is not one)."""
    try:
        errors = json.loads(body)["errors"]
    except (ValueError, KeyError, TypeError):
        return None
    assert len(errors) == 1, errors
    return errors[0]["code"]


def assert_refused(repo: Repo, send: Callable[[], tuple[int, bytes]], status: int, code: str) -> None:
    before = db_rows(repo.storage)
    got_status, body = send()
    assert got_status < 500, f"5xx for a bad input: {got_status} {body[:500]!r}"
    assert (got_status, error_code(body)) == (status, code), f"{got_status} {body[:500]!r}"
    assert db_rows(repo.storage) == before, "a refused request changed the database"


def post(repo: Repo, body: bytes, *, content_type: str = CONTENT_TYPE, gun: str = GUN) -> tuple[int, bytes]:
    response = repo.client.post(repo.tuf(gun), content=body, headers={"Content-Type": content_type})
    return response.status_code, response.content


def asgi(
    app: Any, method: str, raw_path: str, body: bytes = b"", content_type: str = CONTENT_TYPE
) -> tuple[int, bytes]:
    """One request straight into the ASGI app with the path exactly as given (percent-decoded
    into ``path`` as uvicorn does, never dot-segment-normalised as HTTP clients do)."""
    sent = request(
        app,
        method,
        raw_path,
        raw=True,
        body_chunks=[body],
        headers={"content-type": content_type, "content-length": str(len(body))},
    )
    return sent.status, sent.body


# --------------------------------------------------------------------------------------------
# sanity: the unspoiled publish goes through (so each case below fails for its one reason)


def test_the_unspoiled_publish_is_accepted(tmp_path: Path) -> None:
    fresh = build_repo(tmp_path / "server.db")
    with fresh.client:
        assert post(fresh, multipart([("targets", valid_targets(fresh))]))[0] == 200
        assert post(fresh, multipart([("root", spoiled_root(lambda doc, repo: None)(fresh))]))[0] == 200
        assert post(fresh, new_repository(fresh), gun=OTHER_GUN)[0] == 200
    fresh.storage.close()


# --------------------------------------------------------------------------------------------
# §4.1 transport and multipart


def test_body_over_the_cap_declared(repo: Repo) -> None:
    body = multipart([("targets", b" " * MAX_BODY)])
    assert_refused(repo, lambda: post(repo, body), 413, "TOO_LARGE")


def test_body_over_the_cap_streamed_without_length(repo: Repo) -> None:
    def chunks() -> Iterator[bytes]:
        yield multipart([("targets", b"")])[: -len(f"--{BOUNDARY}--\r\n")]
        for _ in range(MAX_BODY // 4096 + 2):
            yield b" " * 4096

    def send() -> tuple[int, bytes]:
        response = repo.client.post(repo.tuf(), content=chunks(), headers={"Content-Type": CONTENT_TYPE})
        return response.status_code, response.content

    assert_refused(repo, send, 413, "TOO_LARGE")


def test_a_huge_single_part(repo: Repo) -> None:
    data = valid_targets(repo)
    huge = data[:-1] + b" " * MAX_BODY + b"}"
    assert_refused(repo, lambda: post(repo, multipart([("targets", huge)])), 413, "TOO_LARGE")


def test_thousands_of_tiny_parts(repo: Repo) -> None:
    body = multipart([(f"targets/p{i}", b"{}") for i in range(5000)])
    assert len(body) < MAX_BODY
    assert_refused(repo, lambda: post(repo, body), 400, "MALFORMED_UPLOAD")


def test_the_same_role_twice(repo: Repo) -> None:
    first = valid_targets(repo)
    other = next_targets(repo)
    other["targets"]["v4"] = target("v4")
    body = multipart([("targets", first), ("targets", sign(other, repo.targets_key))])
    assert_refused(repo, lambda: post(repo, body), 400, "MALFORMED_UPLOAD")


def test_the_same_role_twice_spelt_differently(repo: Repo) -> None:
    body = multipart([("targets", valid_targets(repo)), ("targets.json", valid_targets(repo))])
    assert_refused(repo, lambda: post(repo, body), 400, "MALFORMED_UPLOAD")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "text/plain",
        "",
        "multipart/mixed; boundary=" + BOUNDARY,
        "application/x-www-form-urlencoded",
    ],
)
def test_wrong_content_type(repo: Repo, content_type: str) -> None:
    body = multipart([("targets", valid_targets(repo))])
    assert_refused(repo, lambda: post(repo, body, content_type=content_type), 400, "MALFORMED_UPLOAD")


def test_no_boundary(repo: Repo) -> None:
    body = multipart([("targets", valid_targets(repo))])
    assert_refused(repo, lambda: post(repo, body, content_type="multipart/form-data"), 400, "MALFORMED_UPLOAD")


def test_a_boundary_that_is_not_the_one_used(repo: Repo) -> None:
    body = multipart([("targets", valid_targets(repo))])
    assert_refused(
        repo, lambda: post(repo, body, content_type="multipart/form-data; boundary=other"), 400, "MALFORMED_UPLOAD"
    )


@pytest.mark.parametrize(
    "cut",
    [len(f"--{BOUNDARY}--\r\n"), len("--\r\n"), len("\r\n") + 1, 200],
    ids=["no-final-boundary", "final-boundary-without-dashes", "final-boundary-cut", "inside-the-part"],
)
def test_truncated_body(repo: Repo, cut: int) -> None:
    body = multipart([("targets", valid_targets(repo))])[:-cut]
    assert_refused(repo, lambda: post(repo, body), 400, "MALFORMED_UPLOAD")


def test_empty_body(repo: Repo) -> None:
    assert_refused(repo, lambda: post(repo, b""), 400, "MALFORMED_UPLOAD")


def test_part_without_headers_separator(repo: Repo) -> None:
    body = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="targets"\r\n--{BOUNDARY}--\r\n'
    ).encode()
    assert_refused(repo, lambda: post(repo, body), 400, "MALFORMED_UPLOAD")


@pytest.mark.parametrize("filename", [None, "", ".json"], ids=["no-filename", "empty", "only-suffix"])
def test_part_with_no_filename(repo: Repo, filename: str | None) -> None:
    body = multipart([(filename, valid_targets(repo))])
    assert_refused(repo, lambda: post(repo, body), 400, "NO_FILENAME")


@pytest.mark.parametrize(
    "filename",
    [
        "../root.json",
        "../root",
        "targets%2F..json",
        "targets/../root.json",
        "/targets.json",
        "targets/.json",
        "targets/./a.json",
        "targets//a.json",
        "targets/a/.json",
        ".json.json",
        "targets.json.json",
        "Targets.json",
        "targets\\..\\root.json",
        "targets/A.json",
        "targets/ö.json",
        "targets/" + "a" * 250 + ".json",
        "snapshot/x",
        "timestamp.json.json",
    ],
)
def test_filename_path_tricks(repo: Repo, filename: str) -> None:
    body = multipart([(filename, valid_targets(repo))])
    assert_refused(repo, lambda: post(repo, body), 400, "INVALID_ROLE")


@pytest.mark.parametrize("method", ["PUT", "DELETE", "POST"])
def test_other_methods_on_metadata_paths(repo: Repo, method: str) -> None:
    def send() -> tuple[int, bytes]:
        response = repo.client.request(method, repo.tuf() + "targets.json", content=b"{}")
        return response.status_code, response.content

    assert_refused(repo, send, 404, "METADATA_NOT_FOUND")


@pytest.mark.parametrize("method", ["HEAD", "PATCH", "OPTIONS"])
def test_methods_the_server_does_not_serve(repo: Repo, method: str) -> None:
    def send() -> tuple[int, bytes]:
        response = repo.client.request(method, repo.tuf() + "targets.json")
        return response.status_code, response.content

    _refused_plain(repo, send)


def _refused_plain(repo: Repo, send: Callable[[], tuple[int, bytes]]) -> None:
    """A 4xx that may come from the framework (no notary envelope), database unchanged."""
    before = db_rows(repo.storage)
    status, body = send()
    assert 400 <= status < 500, (status, body[:300])
    assert db_rows(repo.storage) == before


@pytest.mark.parametrize(
    "path",
    [
        "/v2/{gun}/_trust/tuf/root",
        "/v2/{gun}/_trust/tuf/root.jsonx",
        "/v2/{gun}/_trust/tuf/unknown.json",
        "/v2/{gun}/_trust/",
        "/v3/{gun}/_trust/tuf/",
        "/v2/{gun}/_trust/tuf/targets/.json",
        "/v2/{gun}/_trust/tuf/root.key",
        "/v2/{gun}/_trust/tuf/targets.key",
        "/nothing",
    ],
)
def test_unknown_paths(repo: Repo, path: str) -> None:
    def send() -> tuple[int, bytes]:
        response = repo.client.get(path.format(gun=GUN))
        return response.status_code, response.content

    assert_refused(repo, send, 404, "METADATA_NOT_FOUND")


# ---- versions and checksums in the URL


@pytest.mark.parametrize(
    "name",
    [
        "007.root.json",
        "0.root.json",
        "00.targets.json",
        "2147483648.root.json",
        "99999999999999999999999999999.root.json",
        "-1.root.json",
        "1.5.root.json",
        "1e0.root.json",
        "+1.root.json",
        " 1.root.json",
    ],
)
def test_version_url_forms(repo: Repo, name: str) -> None:
    def send() -> tuple[int, bytes]:
        response = repo.client.get(repo.tuf() + quote(name))
        return response.status_code, response.content

    assert_refused(repo, send, 404, "METADATA_NOT_FOUND")


def _one_letter_upper(hex_digest: str) -> str:
    """The digest with its first letter upper-case: always differs from it (the first ten
    characters upper-cased did not when they were all digits)."""
    at = next(i for i, ch in enumerate(hex_digest) if ch in "abcdef")
    return hex_digest[:at] + hex_digest[at].upper() + hex_digest[at + 1 :]


def checksum_urls() -> list[tuple[str, Callable[[bytes], str]]]:
    return [
        ("upper-case", lambda data: hashlib.sha256(data).hexdigest().upper()),
        ("mixed-case", lambda data: _one_letter_upper(hashlib.sha256(data).hexdigest())),
        ("too-short", lambda data: hashlib.sha256(data).hexdigest()[:-1]),
        ("too-long", lambda data: hashlib.sha256(data).hexdigest() + "0"),
        ("sha512-length", lambda data: hashlib.sha512(data).hexdigest()),
        ("sha384-length", lambda data: hashlib.sha384(data).hexdigest()),
        ("not-hex", lambda data: "g" * 64),
        ("empty", lambda data: ""),
    ]


@pytest.mark.parametrize(("form", "make"), checksum_urls(), ids=[form for form, _ in checksum_urls()])
def test_checksum_url_forms(repo: Repo, form: str, make: Callable[[bytes], str]) -> None:
    def send() -> tuple[int, bytes]:
        response = repo.client.get(f"{repo.tuf()}root.{make(repo.root_bytes)}.json")
        return response.status_code, response.content

    assert (
        repo.client.get(f"{repo.tuf()}root.{hashlib.sha256(repo.root_bytes).hexdigest()}.json").content
        == repo.root_bytes
    )  # the lower-case sha256 is what names it
    assert_refused(repo, send, 404, "METADATA_NOT_FOUND")


# ---- GUNs


LONG_GUN = "registry.example.com/" + "a" * 240


@pytest.mark.parametrize(
    "gun",
    [
        "registry.example.com//app",
        "registry.example.com/app/",
        "/registry.example.com/app",
        "registry.example.com/%2e%2e/app",
        "registry.example.com/%2E%2E",
        "%2e%2e",
        "registry.example.com/./app",
        "registry.example.com/a%00b",
        "registry.example.com/a b",
        "registry.example.com/a%0db",
        "registry.example.com/a%09b",
        "registry.example.com/a%5cb",
        "registry.example.com/a%25b",
        LONG_GUN,
        LONG_GUN + "/é",
    ],
    ids=[
        "double-slash",
        "trailing-slash",
        "leading-slash",
        "dotdot-encoded",
        "dotdot-upper",
        "only-dotdot",
        "dot-encoded",
        "nul",
        "space",
        "carriage-return",
        "tab",
        "backslash",
        "percent",
        "over-255-bytes",
        "over-255-bytes-utf8",
    ],
)
def test_gun_path_tricks(repo: Repo, gun: str) -> None:
    body = multipart([("targets", valid_targets(repo))])
    assert_refused(repo, lambda: asgi(repo.app, "POST", f"/v2/{gun}/_trust/tuf/", body), 400, "INVALID_GUN")
    assert_refused(repo, lambda: asgi(repo.app, "GET", f"/v2/{gun}/_trust/tuf/root.json"), 400, "INVALID_GUN")


def test_gun_with_a_newline(repo: Repo) -> None:
    """No route matches a path with a newline in it (Starlette's path pattern stops there): the
    unknown-path answer, in notary's envelope."""
    body = multipart([("targets", valid_targets(repo))])
    gun = "registry.example.com/a%0ab"
    assert_refused(repo, lambda: asgi(repo.app, "POST", f"/v2/{gun}/_trust/tuf/", body), 404, "METADATA_NOT_FOUND")
    assert_refused(repo, lambda: asgi(repo.app, "GET", f"/v2/{gun}/_trust/tuf/root.json"), 404, "METADATA_NOT_FOUND")


@pytest.mark.parametrize(
    "gun",
    [
        "registry.example.com/../app",
        "registry.example.com/badinput/app/..",
        "../registry.example.com/badinput/app",
        "registry.example.com/./badinput/app",
        "..",
    ],
)
def test_gun_with_literal_dot_segments(repo: Repo, gun: str) -> None:
    """Dot segments as sent by a client that does not normalise paths (curl --path-as-is)."""
    body = multipart([("targets", valid_targets(repo))])
    assert_refused(repo, lambda: asgi(repo.app, "POST", f"/v2/{gun}/_trust/tuf/", body), 400, "INVALID_GUN")
    assert_refused(repo, lambda: asgi(repo.app, "GET", f"/v2/{gun}/_trust/tuf/root.json"), 400, "INVALID_GUN")


def test_a_gun_of_exactly_255_bytes_is_fine_to_read(repo: Repo) -> None:
    gun = "registry.example.com/" + "a" * (255 - len("registry.example.com/"))
    assert len(gun.encode()) == 255
    assert_refused(repo, lambda: asgi(repo.app, "GET", f"/v2/{gun}/_trust/tuf/root.json"), 404, "METADATA_NOT_FOUND")


# --------------------------------------------------------------------------------------------
# §4.2 JSON syntax and the parser: MALFORMED_JSON


def as_utf16(repo: Repo) -> bytes:
    return valid_targets(repo).decode().encode("utf-16")


def deep(repo: Repo) -> bytes:
    return b'{"signed":' + b"[" * 100_000 + b"]" * 100_000 + b',"signatures":[]}'


def moderately_deep(repo: Repo) -> bytes:
    return b'{"signed":' + b'{"a":' * 900 + b"1" + b"}" * 900 + b',"signatures":[]}'


JSON_CASES: dict[str, Callable[[Repo], bytes]] = {
    "not-json": lambda repo: b"this is not json",
    "empty": lambda repo: b"",
    "truncated": lambda repo: valid_targets(repo)[:-10],
    "trailing-garbage": lambda repo: valid_targets(repo) + b"}",
    "two-documents": lambda repo: valid_targets(repo) * 2,
    "bom": lambda repo: b"\xef\xbb\xbf" + valid_targets(repo),
    "utf-16": as_utf16,
    "utf-32": lambda repo: valid_targets(repo).decode().encode("utf-32"),
    "invalid-utf8-in-string": replaced(b'"v3"', b'"v3\xff"'),
    "overlong-utf8": replaced(b'"v3"', b'"v3\xc0\xaf"'),
    "utf8-encoded-surrogate": replaced(b'"v3"', b'"v3\xed\xa0\x80"'),
    "raw-control-char": replaced(b'"v3"', b'"v3\x01"'),
    "deep-nesting": deep,
    "deep-nesting-900": moderately_deep,
    "duplicate-key": replaced(b'"version":3', b'"version":3,"version":3'),
    "duplicate-key-signed": lambda repo: valid_targets(repo)[:-1] + b',"signed":{}}',
    "nan": replaced(b'"version":3', b'"version":NaN'),
    "infinity": replaced(b'"version":3', b'"version":Infinity'),
    "minus-infinity": replaced(b'"version":3', b'"version":-Infinity'),
    "huge-int": replaced(b'"version":3', b'"version":' + b"9" * 5000),
    "int-above-2-53": replaced(b'"version":3', b'"version":9007199254740993'),
    "length-above-2-53": replaced(b'"length":1234', b'"length":9007199254740993'),
    "float-version": replaced(b'"version":3', b'"version":3.0'),
    "exponent-version": replaced(b'"version":3', b'"version":3e0'),
    "single-quotes": replaced(b'"version":3', b"'version':3"),
    "trailing-comma": replaced(b'"version":3', b'"version":3,'),
    "comment": replaced(b'"version":3', b'"version":3/* hi */'),
}


@pytest.mark.parametrize("case", list(JSON_CASES))
def test_json_syntax(repo: Repo, case: str) -> None:
    data = JSON_CASES[case](repo)
    assert_refused(repo, lambda: post(repo, multipart([("targets", data)])), 400, "MALFORMED_JSON")


@pytest.mark.parametrize("role", [ROOT, SNAPSHOT, TIMESTAMP, "targets/releases"])
def test_json_syntax_in_other_roles(repo: Repo, role: str) -> None:
    body = multipart([("targets", valid_targets(repo)), (role, b'{"signed": NaN}')])
    assert_refused(repo, lambda: post(repo, body), 400, "MALFORMED_JSON")


# Lone surrogates: valid JSON escapes (Python accepts them, Go replaces them with U+FFFD) that no
# UTF-8 encoder can write, so no signature can cover them as sent.
SURROGATE_CASES: dict[str, Callable[[Repo], bytes]] = {
    "in-a-target-name": replaced(b'"v3"', b'"\\ud800"'),
    "low-surrogate": replaced(b'"v3"', b'"\\udfff"'),
    "in-a-signature": lambda repo: valid_targets(repo).replace(b'"sig":"', b'"sig":"\\ud800', 1),
    "in-a-keyid": lambda repo: valid_targets(repo).replace(b'"keyid":"', b'"keyid":"\\ud800', 1),
    "in-expires": replaced(b'"expires":"', b'"expires":"\\ud800'),
}


@pytest.mark.parametrize("case", list(SURROGATE_CASES))
def test_lone_surrogates(repo: Repo, case: str) -> None:
    data = SURROGATE_CASES[case](repo)
    assert_refused(repo, lambda: post(repo, multipart([("targets", data)])), 400, "MALFORMED_JSON")


# --------------------------------------------------------------------------------------------
# §4.3 schema and types, §4.4 signatures: INVALID_UPDATE (or VERSION for an old version)


def other_key_signed(change: Callable[[dict[str, Any]], object] | None = None) -> Callable[[Repo], bytes]:
    def build(repo: Repo) -> bytes:
        doc = next_targets(repo)
        if change:
            change(doc)
        return sign(doc, new_key())

    return build


def with_signatures(edit: Callable[[list[dict[str, Any]], Repo], object]) -> Callable[[Repo], bytes]:
    """Valid next targets whose signatures list is edited as JSON (``signed`` kept byte-exact)."""

    def build(repo: Repo) -> bytes:
        data = valid_targets(repo)
        signed = data[len(b'{"signed":') : data.rindex(b',"signatures":')]
        signatures = json.loads(data)["signatures"]
        edit(signatures, repo)
        return (
            b'{"signed":' + signed + b',"signatures":' + json.dumps(signatures, separators=(",", ":")).encode() + b"}"
        )

    return build


def short_signature(signatures: list[dict[str, Any]], repo: Repo) -> None:
    raw = __import__("base64").b64decode(signatures[0]["sig"])
    signatures[0]["sig"] = b64encode(raw[:-1])


def long_signature(signatures: list[dict[str, Any]], repo: Repo) -> None:
    raw = __import__("base64").b64decode(signatures[0]["sig"])
    signatures[0]["sig"] = b64encode(raw + b"\x00")


def past(days: int = 1) -> str:
    return format_expires(now() - timedelta(days=days))


TARGETS_CASES: dict[str, tuple[Callable[[Repo], bytes], str]] = {
    # envelope
    "no-signed": (lambda repo: b'{"signatures":[]}', "INVALID_UPDATE"),
    "no-signatures": (lambda repo: b'{"signed":' + canonical_json(next_targets(repo)) + b"}", "INVALID_UPDATE"),
    "signatures-not-a-list": (with_signatures(lambda sigs, repo: sigs.__setitem__(0, "x")), "INVALID_UPDATE"),
    "signatures-an-object": (
        lambda repo: b'{"signed":' + canonical_json(next_targets(repo)) + b',"signatures":{}}',
        "INVALID_UPDATE",
    ),
    "extra-envelope-field": (lambda repo: valid_targets(repo)[:-1] + b',"extra":1}', "INVALID_UPDATE"),
    "json-null": (lambda repo: b"null", "INVALID_UPDATE"),
    "json-array": (lambda repo: b"[]", "INVALID_UPDATE"),
    "json-string": (lambda repo: b'"targets"', "INVALID_UPDATE"),
    "signed-is-a-list": (lambda repo: b'{"signed":[],"signatures":[]}', "INVALID_UPDATE"),
    # _type
    "type-lower-case": (spoiled_targets(set_key("_type", "targets")), "INVALID_UPDATE"),
    "type-root": (spoiled_targets(set_key("_type", "Root")), "INVALID_UPDATE"),
    "type-missing": (spoiled_targets(delete_key("_type")), "INVALID_UPDATE"),
    "snapshot-document-as-targets": (
        lambda repo: sign({"_type": "Snapshot", "expires": past(-30), "meta": {}, "version": 3}, repo.targets_key),
        "INVALID_UPDATE",
    ),
    "root-document-as-targets": (lambda repo: sign({**repo.root, "version": 3}, repo.targets_key), "INVALID_UPDATE"),
    "unknown-field": (spoiled_targets(set_key("extra", 1)), "INVALID_UPDATE"),
    # Go would read "Version" into the version field: not one of the struct's fields here.  (Map
    # keys that differ only in case, tags V1 and v1, are two tags, as in notary's Go maps.)
    "field-differing-in-case": (
        lambda repo: valid_targets(repo).replace(b'"version":3', b'"version":3,"Version":3'),
        "INVALID_UPDATE",
    ),
    # version
    "version-0": (spoiled_targets(set_key("version", 0)), "INVALID_UPDATE"),
    "version-negative": (spoiled_targets(set_key("version", -3)), "INVALID_UPDATE"),
    "version-string": (spoiled_targets(set_key("version", "3")), "INVALID_UPDATE"),
    "version-true": (spoiled_targets(set_key("version", True)), "INVALID_UPDATE"),
    "version-false": (spoiled_targets(set_key("version", False)), "INVALID_UPDATE"),
    "version-null": (spoiled_targets(set_key("version", None)), "INVALID_UPDATE"),
    "version-missing": (spoiled_targets(delete_key("version")), "INVALID_UPDATE"),
    "version-same-as-stored": (spoiled_targets(set_key("version", 2)), "VERSION"),
    "version-older-than-stored": (spoiled_targets(set_key("version", 1)), "VERSION"),
    # expiry
    "expired": (spoiled_targets(set_key("expires", past())), "INVALID_UPDATE"),
    "expires-now-ish": (spoiled_targets(set_key("expires", past(0))), "INVALID_UPDATE"),
    "expires-unparsable": (spoiled_targets(set_key("expires", "tomorrow")), "INVALID_UPDATE"),
    "expires-missing": (spoiled_targets(delete_key("expires")), "INVALID_UPDATE"),
    "expires-a-number": (spoiled_targets(set_key("expires", 1767225600)), "INVALID_UPDATE"),
    # target entries
    "length-negative": (spoiled_targets(set_key("targets.v3.length", -1)), "INVALID_UPDATE"),
    "length-string": (spoiled_targets(set_key("targets.v3.length", "12")), "INVALID_UPDATE"),
    "length-bool": (spoiled_targets(set_key("targets.v3.length", True)), "INVALID_UPDATE"),
    "hashes-empty": (spoiled_targets(set_key("targets.v3.hashes", {})), "INVALID_UPDATE"),
    "hash-wrong-length": (
        spoiled_targets(set_key("targets.v3.hashes", {"sha256": b64encode(b"x" * 31)})),
        "INVALID_UPDATE",
    ),
    "hash-not-base64": (spoiled_targets(set_key("targets.v3.hashes", {"sha256": "!" * 44})), "INVALID_UPDATE"),
    "hash-hex-not-base64": (spoiled_targets(set_key("targets.v3.hashes", {"sha256": "ab" * 32})), "INVALID_UPDATE"),
    "targets-a-list": (spoiled_targets(set_key("targets", [])), "INVALID_UPDATE"),
    "delegations-missing": (spoiled_targets(delete_key("delegations")), "INVALID_UPDATE"),
    "delegations-null": (spoiled_targets(set_key("delegations", None)), "INVALID_UPDATE"),
    # delegations
    "delegation-not-a-direct-child": (delegating({"name": "targets/a/b"}), "INVALID_UPDATE"),
    "delegation-base-role": (delegating({"name": "targets"}), "INVALID_UPDATE"),
    "delegation-snapshot": (delegating({"name": "snapshot"}), "INVALID_UPDATE"),
    "delegation-upper-case": (delegating({"name": "targets/Releases"}), "INVALID_UPDATE"),
    "delegation-double-slash": (delegating({"name": "targets//a"}), "INVALID_UPDATE"),
    "delegation-trailing-slash": (delegating({"name": "targets/a/"}), "INVALID_UPDATE"),
    "delegation-dot": (delegating({"name": "targets/./a"}), "INVALID_UPDATE"),
    "delegation-dotdot": (delegating({"name": "targets/../x"}), "INVALID_UPDATE"),
    "delegation-dotdot-end": (delegating({"name": "targets/.."}), "INVALID_UPDATE"),
    "delegation-256-bytes": (delegating({"name": "targets/" + "a" * 248}), "INVALID_UPDATE"),
    "delegation-unicode": (delegating({"name": "targets/rélease"}), "INVALID_UPDATE"),
    "delegation-question-mark": (delegating({"name": "targets/a?b"}), "INVALID_UPDATE"),
    "delegation-name-not-a-string": (delegating({"name": 7}), "INVALID_UPDATE"),
    "delegation-listed-twice": (delegating({"name": "targets/a"}, {"name": "targets/a"}), "INVALID_UPDATE"),
    "delegation-threshold-0": (delegating({"name": "targets/a", "threshold": 0}), "INVALID_UPDATE"),
    "delegation-threshold-negative": (delegating({"name": "targets/a", "threshold": -1}), "INVALID_UPDATE"),
    "delegation-threshold-over-keys": (delegating({"name": "targets/a", "threshold": 2}), "INVALID_UPDATE"),
    "delegation-threshold-bool": (delegating({"name": "targets/a", "threshold": True}), "INVALID_UPDATE"),
    "delegation-unknown-keyid": (delegating({"name": "targets/a", "keyids": ["ab" * 32]}), "INVALID_UPDATE"),
    "delegation-paths-not-strings": (delegating({"name": "targets/a", "paths": [1]}), "INVALID_UPDATE"),
    "delegation-keyid-not-matching-key": (
        delegating({"name": "targets/a", "keyids": ["ab" * 32]}, keys=lambda key: {"ab" * 32: key.public.to_dict()}),
        "INVALID_UPDATE",
    ),
    "delegation-key-bad-pem": (
        delegating(
            {"name": "targets/a"},
            keys=lambda key: {
                key.keyid: {"keytype": "ecdsa", "keyval": {"private": None, "public": b64encode(b"not a key")}}
            },
        ),
        "INVALID_UPDATE",
    ),
    "delegation-ed25519-key-wrong-length": (
        delegating(
            {"name": "targets/a"},
            keys=lambda key: {
                key.keyid: {"keytype": "ed25519", "keyval": {"private": None, "public": b64encode(b"\x01" * 31)}}
            },
        ),
        "INVALID_UPDATE",
    ),
    "delegation-unknown-keytype": (
        delegating({"name": "targets/a"}, keys=lambda key: {key.keyid: {**key.public.to_dict(), "keytype": "dsa"}}),
        "INVALID_UPDATE",
    ),
    # signatures
    "unsigned": (with_signatures(lambda sigs, repo: sigs.clear()), "INVALID_UPDATE"),
    "signed-by-another-key": (other_key_signed(), "INVALID_UPDATE"),
    "signature-too-short": (with_signatures(short_signature), "INVALID_UPDATE"),
    "signature-too-long": (with_signatures(long_signature), "INVALID_UPDATE"),
    "signature-empty": (with_signatures(lambda sigs, repo: sigs[0].update(sig="")), "INVALID_UPDATE"),
    "signature-not-base64": (with_signatures(lambda sigs, repo: sigs[0].update(sig="!!!!")), "INVALID_UPDATE"),
    "signature-of-other-content": (
        with_signatures(lambda sigs, repo: sigs.__setitem__(0, json.loads(repo.targets_bytes)["signatures"][0])),
        "INVALID_UPDATE",
    ),
    "signature-method-mismatch": (
        with_signatures(lambda sigs, repo: sigs[0].update(method="ed25519")),
        "INVALID_UPDATE",
    ),
    "signature-method-rsa": (with_signatures(lambda sigs, repo: sigs[0].update(method="rsapss")), "INVALID_UPDATE"),
    "signature-unknown-keyid": (with_signatures(lambda sigs, repo: sigs[0].update(keyid="ab" * 32)), "INVALID_UPDATE"),
    "signature-by-the-root-key": (lambda repo: sign(next_targets(repo), repo.root_key), "INVALID_UPDATE"),
    "signature-missing-field": (with_signatures(lambda sigs, repo: sigs[0].pop("method")), "INVALID_UPDATE"),
    "signature-extra-field": (with_signatures(lambda sigs, repo: sigs[0].update(extra="x")), "INVALID_UPDATE"),
    "signature-keyid-not-a-string": (with_signatures(lambda sigs, repo: sigs[0].update(keyid=7)), "INVALID_UPDATE"),
    "signature-of-whitespace-changed-signed": (
        lambda repo: valid_targets(repo).replace(b'"version":3', b'"version":4', 1),
        "INVALID_UPDATE",
    ),
}


@pytest.mark.parametrize("case", list(TARGETS_CASES))
def test_targets_schema_and_signatures(repo: Repo, case: str) -> None:
    build, code = TARGETS_CASES[case]
    data = build(repo)
    assert_refused(repo, lambda: post(repo, multipart([("targets", data)])), 400, code)


# ---- root


def _new_root_key(cn: str | None = None, issued: datetime | None = None) -> Callable[[dict[str, Any], Repo], None]:
    """Rotate the root key to a new certificate (CN ``cn``, issued at ``issued``); the new root is
    signed by the old key (see ``extra_signers``) and the new one."""

    def change(doc: dict[str, Any], repo: Repo) -> None:
        key = new_root_key(cn or GUN, issued=issued or now())
        doc["keys"][key.keyid] = key.public.to_dict()
        doc["roles"][ROOT]["keyids"] = [key.keyid]
        NEW_KEYS[id(repo)] = key

    return change


NEW_KEYS: dict[int, Key] = {}


def _with_new_key(repo: Repo) -> list[Key]:
    return [NEW_KEYS.pop(id(repo))]


def _relabel_targets_key(doc: dict[str, Any], repo: Repo) -> None:
    old = repo.targets_key.keyid
    doc["keys"]["cd" * 32] = doc["keys"].pop(old)
    doc["roles"][TARGETS]["keyids"] = ["cd" * 32]


def _foreign_timestamp_key(doc: dict[str, Any], repo: Repo) -> None:
    key = new_key()
    doc["keys"][key.keyid] = key.public.to_dict()
    doc["roles"][TIMESTAMP]["keyids"] = [key.keyid]


def _two_timestamp_keys(doc: dict[str, Any], repo: Repo) -> None:
    key = new_key()
    doc["keys"][key.keyid] = key.public.to_dict()
    doc["roles"][TIMESTAMP] = {"keyids": [repo.server_keys[TIMESTAMP].keyid, key.keyid], "threshold": 2}


def _bare_root_key(doc: dict[str, Any], repo: Repo) -> None:
    key = new_key()
    doc["keys"][key.keyid] = key.public.to_dict()
    doc["roles"][ROOT]["keyids"] = [key.keyid]
    NEW_KEYS[id(repo)] = key


def _snapshot_threshold_two(doc: dict[str, Any], repo: Repo) -> None:
    """Two snapshot keys, threshold 2, and no snapshot uploaded: the server would sign with its
    one key a snapshot no client accepts."""
    key = new_key()
    doc["keys"][key.keyid] = key.public.to_dict()
    doc["roles"][SNAPSHOT] = {"keyids": [repo.server_keys[SNAPSHOT].keyid, key.keyid], "threshold": 2}


def _set(path: str, value: Any) -> Callable[[dict[str, Any], Repo], None]:
    change = set_key(path, value)
    return lambda doc, repo: change(doc)


def _delete(path: str) -> Callable[[dict[str, Any], Repo], None]:
    change = delete_key(path)
    return lambda doc, repo: change(doc)


ROOT_CASES: dict[str, tuple[Callable[[Repo], bytes], str]] = {
    "missing-snapshot-role": (spoiled_root(_delete("roles.snapshot")), "INVALID_UPDATE"),
    "missing-timestamp-role": (spoiled_root(_delete("roles.timestamp")), "INVALID_UPDATE"),
    "missing-targets-role": (spoiled_root(_delete("roles.targets")), "INVALID_UPDATE"),
    "missing-root-role": (spoiled_root(_delete("roles.root")), "INVALID_UPDATE"),
    "extra-role": (spoiled_root(_set("roles.targets/releases", {"keyids": [], "threshold": 1})), "INVALID_UPDATE"),
    "threshold-0": (spoiled_root(_set("roles.targets.threshold", 0)), "INVALID_UPDATE"),
    "threshold-0-root": (spoiled_root(_set("roles.root.threshold", 0)), "INVALID_UPDATE"),
    "threshold-negative": (spoiled_root(_set("roles.snapshot.threshold", -1)), "INVALID_UPDATE"),
    "threshold-over-keys": (spoiled_root(_set("roles.targets.threshold", 2)), "INVALID_UPDATE"),
    "threshold-bool": (spoiled_root(_set("roles.targets.threshold", True)), "INVALID_UPDATE"),
    "timestamp-threshold-2": (spoiled_root(_two_timestamp_keys), "INVALID_UPDATE"),
    "server-signed-snapshot-threshold-2": (spoiled_root(_snapshot_threshold_two), "INVALID_UPDATE"),
    "empty-keyids": (spoiled_root(_set("roles.targets.keyids", [])), "INVALID_UPDATE"),
    "keyid-without-key": (spoiled_root(_set("roles.targets.keyids", ["ef" * 32])), "INVALID_UPDATE"),
    "keyid-not-matching-key": (spoiled_root(_relabel_targets_key), "INVALID_UPDATE"),
    "timestamp-key-not-the-servers": (spoiled_root(_foreign_timestamp_key), "INVALID_UPDATE"),
    "cert-cn-not-the-gun": (
        spoiled_root(_new_root_key("registry.example.com/someone/else"), extra_signers=_with_new_key),
        "INVALID_UPDATE",
    ),
    "cert-cn-other-case": (spoiled_root(_new_root_key(GUN.upper()), extra_signers=_with_new_key), "INVALID_UPDATE"),
    "cert-expired": (
        spoiled_root(_new_root_key(issued=now() - timedelta(days=3651)), extra_signers=_with_new_key),
        "INVALID_UPDATE",
    ),
    "root-key-not-a-cert": (spoiled_root(_bare_root_key, extra_signers=_with_new_key), "INVALID_UPDATE"),
    "new-key-not-signed-by-old": (lambda repo: _only_new_key_signs(repo), "INVALID_UPDATE"),  # noqa: PLW0108 - defined below
    "expired": (spoiled_root(_set("expires", past())), "INVALID_UPDATE"),
    "version-plus-two": (spoiled_root(_set("version", 3)), "INVALID_UPDATE"),
    "version-0": (spoiled_root(_set("version", 0)), "INVALID_UPDATE"),
    "version-true": (spoiled_root(_set("version", True)), "INVALID_UPDATE"),
    "version-string": (spoiled_root(_set("version", "2")), "INVALID_UPDATE"),
    "same-version-other-content": (spoiled_root(_set("version", 1)), "VERSION"),
    "same-bytes-again": (lambda repo: repo.root_bytes, "VERSION"),
    "type-lower-case": (spoiled_root(_set("_type", "root")), "INVALID_UPDATE"),
    "type-targets": (spoiled_root(_set("_type", "Targets")), "INVALID_UPDATE"),
    "consistent-snapshot-not-bool": (spoiled_root(_set("consistent_snapshot", 1)), "INVALID_UPDATE"),
    "unsigned": (lambda repo: envelope_bytes(canonical_json({**repo.root, "version": 2}), []), "INVALID_UPDATE"),
    "signed-by-targets-key": (lambda repo: sign({**repo.root, "version": 2}, repo.targets_key), "INVALID_UPDATE"),
    "targets-document-as-root": (valid_targets, "INVALID_UPDATE"),
}


def _only_new_key_signs(repo: Repo) -> bytes:
    doc = copy.deepcopy(repo.root)
    doc["version"] = 2
    _new_root_key()(doc, repo)
    return sign(doc, NEW_KEYS.pop(id(repo)))


@pytest.mark.parametrize("case", list(ROOT_CASES))
def test_root_schema_and_signatures(repo: Repo, case: str) -> None:
    build, code = ROOT_CASES[case]
    data = build(repo)
    assert_refused(repo, lambda: post(repo, multipart([("root", data), ("targets", valid_targets(repo))])), 400, code)


# ---- thresholds above one: a valid root v2 asking for two targets signatures, sent with a
# targets that only seems to have two (the whole publish is refused, the valid root included)


def _threshold_two_publish(
    repo: Repo, second_listed: Callable[[Key], PublicKey], signers: Callable[[Key, PublicKey], list[tuple[Any, str]]]
) -> bytes:
    root = copy.deepcopy(repo.root)
    root["version"] = 2
    second = second_listed(repo.targets_key)
    root["keys"][second.keyid] = second.to_dict()
    root["roles"][TARGETS] = {"keyids": [repo.targets_key.keyid, second.keyid], "threshold": 2}
    doc = next_targets(repo)
    message = canonical_json(doc)
    signatures = [
        {"keyid": keyid, "method": signer.method, "sig": b64encode(signer.sign(message))}
        for signer, keyid in signers(repo.targets_key, second)
    ]
    return multipart([("root", sign(root, repo.root_key)), ("targets", envelope_bytes(message, signatures))])


def test_one_key_under_two_keyids_counts_once(repo: Repo) -> None:
    """The targets key listed bare and inside a certificate (go-tuf #733, GHSA-3633)."""
    from trustkit.keys.certs import root_key_for

    body = _threshold_two_publish(
        repo,
        lambda key: root_key_for(key.signer.private_key, GUN, now=now()),
        lambda key, second: [(key.signer, key.keyid), (key.signer, second.keyid)],
    )
    assert_refused(repo, lambda: post(repo, body), 400, "INVALID_UPDATE")


def test_the_same_signature_twice_counts_once(repo: Repo) -> None:
    body = _threshold_two_publish(
        repo, lambda key: new_key().public, lambda key, second: [(key.signer, key.keyid), (key.signer, key.keyid)]
    )
    assert_refused(repo, lambda: post(repo, body), 400, "INVALID_UPDATE")


def test_threshold_two_met_is_accepted(tmp_path: Path) -> None:
    """The control for the two above: two real signatures pass."""
    fresh = build_repo(tmp_path / "server.db")
    other = new_key()
    body = _threshold_two_publish(
        fresh, lambda key: other.public, lambda key, second: [(key.signer, key.keyid), (other.signer, other.keyid)]
    )
    with fresh.client:
        assert post(fresh, body) == (200, b"")
    fresh.storage.close()


# ---- a repository that has no trust data yet


def new_repository(repo: Repo, *, cn: str = OTHER_GUN, expires_days: int = 3650) -> bytes:
    """A first publish (root v1 + targets v1) for OTHER_GUN, with the server's keys for it;
    ``cn``/``expires_days`` spoil it."""
    server_keys = {
        role: PublicKey.from_dict(repo.client.get(f"{repo.tuf(OTHER_GUN)}{role}.key").json())
        for role in (SNAPSHOT, TIMESTAMP)
    }  # creates the pending keys: before any check
    root_key = new_root_key(cn, issued=now())
    root = root_doc(root_key, repo.targets_key, server_keys)
    root["expires"] = format_expires(now() + timedelta(days=expires_days))
    return multipart([("root", sign(root, root_key)), ("targets", sign(targets_doc(1, ["v1"]), repo.targets_key))])


def test_a_new_repository_without_a_root(repo: Repo) -> None:
    body = multipart([("targets", sign(targets_doc(1, ["v1"]), repo.targets_key))])
    assert_refused(repo, lambda: post(repo, body, gun=OTHER_GUN), 400, "INVALID_UPDATE")


@pytest.mark.parametrize("cn", [GUN, OTHER_GUN.upper(), OTHER_GUN + "/x", "registry.example.com/badinput/*x"])
def test_a_new_repository_whose_cert_names_another_gun(repo: Repo, cn: str) -> None:
    body = new_repository(repo, cn=cn)
    assert_refused(repo, lambda: post(repo, body, gun=OTHER_GUN), 400, "INVALID_UPDATE")


def test_a_new_repository_with_an_expired_root(repo: Repo) -> None:
    body = new_repository(repo, expires_days=-1)
    assert_refused(repo, lambda: post(repo, body, gun=OTHER_GUN), 400, "INVALID_UPDATE")


def test_a_new_repository_replaying_another_repositorys_root(repo: Repo) -> None:
    body = multipart([("root", repo.root_bytes), ("targets", sign(targets_doc(1, ["v1"]), repo.targets_key))])
    assert_refused(repo, lambda: post(repo, body, gun=OTHER_GUN), 400, "INVALID_UPDATE")


# ---- delegations uploaded


def test_a_delegation_its_parent_does_not_list(repo: Repo) -> None:
    delegate = new_key()
    body = multipart([("targets/releases", sign(targets_doc(1, ["v1"]), delegate))])
    assert_refused(repo, lambda: post(repo, body), 400, "INVALID_UPDATE")


def test_a_delegation_that_is_not_a_direct_child(repo: Repo) -> None:
    """targets delegates to targets/a; a file for targets/a/b arrives (targets/a does not list it)."""
    delegate = new_key()
    top = next_targets(repo)
    top["delegations"] = {
        "keys": {delegate.keyid: delegate.public.to_dict()},
        "roles": [{"keyids": [delegate.keyid], "name": "targets/a", "paths": [""], "threshold": 1}],
    }
    child = targets_doc(1, ["v1"])
    body = multipart([("targets", sign(top, repo.targets_key)), ("targets/a/b", sign(child, delegate))])
    assert_refused(repo, lambda: post(repo, body), 400, "INVALID_UPDATE")


def test_a_delegation_signed_by_the_wrong_key(repo: Repo) -> None:
    delegate = new_key()
    top = next_targets(repo)
    top["delegations"] = {
        "keys": {delegate.keyid: delegate.public.to_dict()},
        "roles": [{"keyids": [delegate.keyid], "name": "targets/a", "paths": [""], "threshold": 1}],
    }
    body = multipart([("targets", sign(top, repo.targets_key)), ("targets/a", sign(targets_doc(1, ["v1"]), new_key()))])
    assert_refused(repo, lambda: post(repo, body), 400, "INVALID_UPDATE")


# ---- snapshot uploaded by the client (the server holds the snapshot key here)


def test_a_snapshot_signed_by_a_key_root_does_not_list(repo: Repo) -> None:
    data = valid_targets(repo)
    snapshot = {
        "_type": "Snapshot",
        "expires": format_expires(now() + timedelta(days=30)),
        "version": 3,
        "meta": {ROOT: _file_meta(repo.root_bytes), TARGETS: _file_meta(data)},
    }
    body = multipart([("targets", data), ("snapshot", sign(snapshot, new_key()))])
    assert_refused(repo, lambda: post(repo, body), 400, "INVALID_UPDATE")


def _file_meta(data: bytes) -> dict[str, Any]:
    return {"hashes": {"sha256": b64encode(hashlib.sha256(data).digest())}, "length": len(data)}


def test_timestamp_parts_are_not_trusted(repo: Repo) -> None:
    """A timestamp the client made is never stored (the server signs its own): garbage in one
    is refused like any other malformed part."""
    body = multipart([("targets", valid_targets(repo)), ("timestamp", b"not json")])
    assert_refused(repo, lambda: post(repo, body), 400, "MALFORMED_JSON")


def test_every_case_left_the_repository_serving(repo: Repo) -> None:
    """After the whole catalogue the stored chain is intact: a client walks it."""
    for role, expected in ((ROOT, repo.root_bytes), (TARGETS, repo.targets_bytes)):
        assert repo.client.get(repo.tuf() + f"{role}.json").content == expected
    timestamp = Metadata.from_bytes(repo.client.get(repo.tuf() + "timestamp.json").content, role=TIMESTAMP)
    assert timestamp.signed.version == 2
    snapshot = repo.client.get(repo.tuf() + "snapshot.json").content
    assert timestamp.signed.snapshot_meta.matches(snapshot) is None
    assert repo.client.get(repo.tuf() + "2.targets.json").status_code == httpx.codes.OK
