"""The trust server against anonymous denial of service (issue 9, items 8-12, 14, 17, 18), in-process.

* GUN prefixes hold on every route, before anything is created (item 8);
* a request is authorised from its head: a refused one has not a byte of its body read (item 9);
* uvicorn's protocols close connections whose head or body stalls (item 10), driven here over
  real sockets against uvicorn running in a thread (the real ``trustkit server`` process is in
  tests/interop/test_server_dos.py);
* routing is linear in the path, and routes exactly as notary's patterns do (item 11);
* a publish body is parsed as it arrives, with the whole-body parser's answers (item 12);
* numbers in URLs and queries never make a 5xx (item 14);
* the server's files are made once, in folders of mode 0700 (items 17, 18).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peers import free_port
from raw_asgi import Sent, request
from trustkit import notary_api
from trustkit.server.app import ServerSettings, create_app, go_int32
from trustkit.server.auth import TokenAuthorizer, generate_token_keypair
from trustkit.server.config import ServerConfig, _auth, prepare
from trustkit.server.keys import ServerKeys
from trustkit.server.multipart import PublishForm
from trustkit.server.protocol import TimedH11Protocol, TimedHttpToolsProtocol
from trustkit.server.storage import SERVER_KEYS, Storage
from trustkit.server.validation import UpdateError

GUN = "registry.example.com/hardening/app"
BOUNDARY = "hardening-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    store = Storage(f"sqlite:///{tmp_path / 'server.db'}")
    yield store
    store.close()


def make_app(storage: Storage, **options: Any) -> Any:
    return create_app(storage, ServerKeys(storage, "hardening-test"), ServerSettings(**options))


def multipart(parts: list[tuple[str, bytes]]) -> bytes:
    out = b""
    for filename, data in parts:
        out += (
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{BOUNDARY}--\r\n".encode()


def envelope_code(body: bytes) -> str | None:
    try:
        return json.loads(body)["errors"][0]["code"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def asgi(
    app: Any,
    method: str,
    path: str,
    *,
    body_chunks: list[bytes] | tuple[bytes, ...] = (),
    headers: dict[str, str] | None = None,
    query: str = "",
) -> Sent:
    """One request straight into the ASGI app: ``path`` as decoded (as uvicorn gives it), the
    body in the given messages."""
    return request(app, method, path, body_chunks=body_chunks, headers=headers, query=query.encode())


# --------------------------------------------------------------------------------------------
# item 8: --gun-prefix on every route


PREFIX = "registry.example.com/allowed/"
OUTSIDE = "registry.example.com/other/app"


@pytest.mark.parametrize(
    ("method", "tail"),
    [
        ("GET", "_trust/tuf/timestamp.key"),
        ("GET", "_trust/tuf/snapshot.key"),
        ("POST", "_trust/tuf/timestamp.key"),
        ("GET", "_trust/tuf/root.json"),
        ("GET", "_trust/tuf/1.root.json"),
        ("GET", f"_trust/tuf/root.{'ab' * 32}.json"),
        ("DELETE", "_trust/tuf/"),
        ("GET", "_trust/changefeed"),
        ("GET", "_trust/settings"),
        ("PUT", "_trust/settings"),
    ],
)
def test_a_gun_outside_the_prefixes_is_not_found_on_every_route(storage: Storage, method: str, tail: str) -> None:
    app = make_app(storage, gun_prefixes=(PREFIX,))
    sent = asgi(app, method, f"/v2/{OUTSIDE}/{tail}", query="records=10", body_chunks=[b'{"immutable": true}'])
    # notary-server: METADATA_NOT_FOUND without detail, before auth (server/server.go filterImagePrefixes)
    assert (sent.status, json.loads(sent.body)) == (
        404,
        {"errors": [{"code": "METADATA_NOT_FOUND", "message": "You have requested metadata that does not exist."}]},
    )
    with storage.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(SERVER_KEYS)).scalar() == 0, "a key was made"


def test_a_publish_outside_the_prefixes_is_told_the_prefixes(storage: Storage) -> None:
    app = make_app(storage, gun_prefixes=(PREFIX, "docker.io/"))
    sent = asgi(
        app, "POST", f"/v2/{OUTSIDE}/_trust/tuf/", headers={"content-type": CONTENT_TYPE}, body_chunks=[multipart([])]
    )
    assert sent.status == 400
    assert json.loads(sent.body)["errors"][0] == {
        "code": "INVALID_GUN",
        "message": "The server does not support actions on images of this name.",
        "detail": f"Require GUNs with prefix: [{PREFIX} docker.io/]",
    }  # Go's %v of a []string
    assert sent.pulled == 0, "the body was read"
    inside = asgi(app, "GET", f"/v2/{PREFIX}app/_trust/tuf/timestamp.key")
    assert inside.status == 200 and json.loads(inside.body)["keytype"] == "ecdsa"  # the default server key type


# --------------------------------------------------------------------------------------------
# item 9: authorise from the head, read the body only for an authorised request


@pytest.fixture(scope="module")
def token_authorizer() -> TokenAuthorizer:
    _, cert = generate_token_keypair("hardening-test")
    return TokenAuthorizer(
        realm="https://testserver/auth/token", service="trustkit", issuer="hardening-test", root_certs_pem=cert
    )


@pytest.mark.parametrize(
    ("method", "tail", "content_type"),
    [
        ("POST", "_trust/tuf/", CONTENT_TYPE),
        ("PUT", "_trust/settings", "application/json"),
        ("POST", "_trust/tuf/", "text/plain"),  # even a body that could never be a publish
    ],
)
def test_an_anonymous_request_has_no_byte_of_its_body_read(
    storage: Storage, token_authorizer: TokenAuthorizer, method: str, tail: str, content_type: str
) -> None:
    app = make_app(storage, authorizer=token_authorizer)
    chunks = [multipart([("targets", b" " * 60_000)])[i : i + 4096] for i in range(0, 60_000, 4096)]
    sent = asgi(app, method, f"/v2/{GUN}/{tail}", headers={"content-type": content_type}, body_chunks=chunks)
    assert (sent.status, envelope_code(sent.body)) == (401, "UNAUTHORIZED")
    assert sent.pulled == 0, f"{sent.pulled} body messages were read before the request was refused"


def test_a_declared_length_over_the_cap_is_refused_unread(storage: Storage) -> None:
    app = make_app(storage, max_body=1 << 20)
    sent = asgi(
        app,
        "POST",
        f"/v2/{GUN}/_trust/tuf/",
        body_chunks=[b"x"],
        headers={"content-type": CONTENT_TYPE, "content-length": str((1 << 20) + 1)},
    )
    assert (sent.status, envelope_code(sent.body), sent.pulled) == (413, "TOO_LARGE", 0)
    sent = asgi(
        app,
        "POST",
        f"/v2/{GUN}/_trust/tuf/",
        body_chunks=[b"x"],
        headers={"content-type": CONTENT_TYPE, "content-length": "9" * 5000},
    )
    assert (sent.status, envelope_code(sent.body), sent.pulled) == (413, "TOO_LARGE", 0)


def test_a_settings_body_is_capped(storage: Storage) -> None:
    app = make_app(storage)
    sent = asgi(app, "PUT", f"/v2/{GUN}/_trust/settings", body_chunks=[b" " * (32 << 10)] * 4)
    assert (sent.status, envelope_code(sent.body)) == (413, "TOO_LARGE")


# --------------------------------------------------------------------------------------------
# item 11: routing linear in the path, and the routes notary's patterns give


# notary's own route patterns (server/server.go), as the server used them before: the reference
_ROLE = r"root|targets(?:/[^/\s]+)*|snapshot|timestamp"
NOTARY_ROUTES = [
    ("update", re.compile(r"(?P<gun>[^*]+)/_trust/tuf/")),
    (
        "checksum",
        re.compile(
            rf"(?P<gun>[^*]+)/_trust/tuf/(?P<role>{_ROLE})\.(?P<checksum>[a-fA-F0-9]{{64}}|"
            rf"[a-fA-F0-9]{{96}}|[a-fA-F0-9]{{128}})\.json"
        ),
    ),
    ("version", re.compile(rf"(?P<gun>[^*]+)/_trust/tuf/(?P<version>[1-9]*[0-9]+)\.(?P<role>{_ROLE})\.json")),
    ("current", re.compile(rf"(?P<gun>[^*]+)/_trust/tuf/(?P<role>{_ROLE})\.json")),
    ("key", re.compile(r"(?P<gun>[^*]+)/_trust/tuf/(?P<role>snapshot|timestamp)\.key")),
    ("changefeed", re.compile(r"(?P<gun>[^*]+)/_trust/changefeed")),
    ("settings", re.compile(r"(?P<gun>[^*]+)/_trust/settings")),
]
NOTARY_METHODS = {
    "update": ("POST", "DELETE"),
    "checksum": ("GET",),
    "version": ("GET",),
    "current": ("GET",),
    "key": ("GET", "POST"),
    "changefeed": ("GET",),
    "settings": ("GET", "PUT"),
}


def notary_route(method: str, rest: str) -> tuple[str, str | None, str, str, str] | None:
    if method == "GET" and rest == "":
        return ("catalog", None, "", "", "")
    if method == "GET" and rest == "_trust/changefeed":
        return ("changefeed", None, "", "", "")
    for name, pattern in NOTARY_ROUTES:
        found = pattern.fullmatch(rest)
        if found and method in NOTARY_METHODS[name]:
            fields = found.groupdict()
            return (
                name,
                fields["gun"],
                fields.get("role") or "",
                fields.get("version") or "",
                fields.get("checksum") or "",
            )
    return None


def trustkit_route(method: str, rest: str) -> tuple[str, str | None, str, str, str] | None:
    found = notary_api.match(method, rest)
    return None if found is None else (found.name, found.gun, found.role, found.version, found.checksum)


_PIECES = [
    "a",
    "b.c",
    "/",
    "_trust/",
    "/_trust/",
    "tuf/",
    "_trust/tuf/",
    "root",
    "targets",
    "targets/",
    "snapshot",
    "timestamp",
    ".json",
    ".key",
    "*",
    " ",
    "\t",
    "1",
    "007",
    ".",
    "ab" * 32,
    "AB" * 48,
    "ab" * 64,
    "changefeed",
    "settings",
    "releases",
    "x.y",
]


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["GET", "POST", "PUT", "DELETE"]), st.lists(st.sampled_from(_PIECES), max_size=12))
def test_the_routes_are_notary_routes(method: str, pieces: list[str]) -> None:
    rest = "".join(pieces)
    assert trustkit_route(method, rest) == notary_route(method, rest)


@pytest.mark.parametrize(
    "rest",
    [
        "g/_trust/tuf/a/_trust/tuf/root.json",
        "g/_trust/tuf/targets/_trust/x.json",
        "a/_trust/_trust/tuf/",
        f"g/_trust/tuf/targets/x.{'a' * 128}.json",
        f"g/_trust/tuf/targets/x.{'a' * 64}.{'b' * 64}.json",
        "g/_trust/tuf/12.targets/a.b.json",
        "g*x/_trust/tuf/root.json",
        "a*/_trust/tuf/b/_trust/tuf/root.json",
    ],
)
def test_routes_where_the_cut_is_ambiguous(rest: str) -> None:
    for method in ("GET", "POST", "DELETE", "PUT"):
        assert trustkit_route(method, rest) == notary_route(method, rest)


LONG_PATHS = {
    "version digits": "/v2/g/_trust/tuf/" + "9" * 65_000 + ".targets.json",
    "cuts with roles": "/v2/" + "g/_trust/tuf/targets/a" * 3_000 + "x",
    "a long GUN": "/v2/" + "a/" * 32_768 + "_trust/tuf/root.json",
    "role segments": "/v2/g/_trust/tuf/targets" + "/a" * 32_000 + ".jsonx",
    "many cuts": "/v2/" + "a/_trust/tuf/" * 5_000 + "x",
}


def test_a_64_kib_path_is_answered_at_once(storage: Storage) -> None:
    app = make_app(storage)
    asgi(app, "GET", "/v2/warm/_trust/tuf/root.json")
    for shape, path in LONG_PATHS.items():
        started = time.perf_counter()
        sent = asgi(app, "GET", path)
        elapsed = time.perf_counter() - started
        assert elapsed < 0.1, f"{shape}: {elapsed:.3f} s for a {len(path)}-character path"
        expected = (400, "INVALID_GUN") if shape == "a long GUN" else (404, "METADATA_NOT_FOUND")
        assert (sent.status, envelope_code(sent.body)) == expected, shape


# --------------------------------------------------------------------------------------------
# item 14: numbers from the client


def test_a_huge_version_in_the_url_is_not_found(storage: Storage) -> None:
    app = make_app(storage)
    for name in [
        "9" * 5000 + ".targets.json",
        "9" * 300 + ".root.json",
        "2147483649.root.json",
        "99999999999.root.json",
    ]:
        sent = asgi(app, "GET", f"/v2/{GUN}/_trust/tuf/{name}")
        assert (sent.status, envelope_code(sent.body)) == (404, "METADATA_NOT_FOUND"), name[:20]


CHANGEFEED_QUERIES = [  # query, status, detail (None: any)
    (f"records={2**63}", 400, f'invalid records parameter: strconv.ParseInt: parsing "{2**63}": value out of range'),
    (f"records={2**31}", 400, f'invalid records parameter: strconv.ParseInt: parsing "{2**31}": value out of range'),
    (f"records=-{2**31 + 1}", 400, None),
    ("records=" + "9" * 5000, 400, None),
    ("records=1_0", 400, 'invalid records parameter: strconv.ParseInt: parsing "1_0": invalid syntax'),
    ("records=%C2%B2", 400, 'invalid records parameter: strconv.ParseInt: parsing "\u00b2": invalid syntax'),
    (f"records=10&change_id={2**63}", 400, {}),
    ("records=10&change_id=" + "9" * 5000, 400, {}),
    (f"records=10&change_id={2**31}", 400, {}),
    (f"records={2**31 - 1}&change_id={2**31 - 1}", 200, None),
    (f"records=-{2**31}&change_id=-{2**31}", 200, None),
    ("records=%2B5&change_id=-1", 200, None),
]


@pytest.mark.parametrize("path", [f"/v2/{GUN}/_trust/changefeed", "/v2/_trust/changefeed"])
def test_changefeed_numbers_as_notary_reads_them(storage: Storage, path: str) -> None:
    """notary-server parses both as 32-bit integers with Go's strconv (checked against it)."""
    app = make_app(storage)
    for query, status, detail in CHANGEFEED_QUERIES:
        sent = asgi(app, "GET", path, query=query)
        assert sent.status == status, (query[:40], sent.body[:300])
        if status == 400:
            error = json.loads(sent.body)["errors"][0]
            assert error["code"] == "INVALID_PARAMETERS", query[:40]
            if detail is not None:
                assert error["detail"] == detail, query[:40]
        else:
            assert json.loads(sent.body) == {"count": 0, "records": None}


def test_go_int32_stops_at_the_first_overflowing_digit() -> None:
    assert go_int32("12") == (12, None) and go_int32("-2147483648") == (-(2**31), None)
    assert go_int32("+7") == (7, None)
    assert go_int32("")[1] == go_int32("-")[1] == go_int32(" 1")[1] == go_int32("1x")[1] == "invalid syntax"
    assert go_int32("99999999999x")[1] == "value out of range"  # as Go: the range error comes first
    started = time.perf_counter()
    assert go_int32("9" * 1_000_000)[1] == "value out of range"
    assert time.perf_counter() - started < 0.01


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"immutable": ' + b"[" * 50_000])
def test_settings_nested_too_deep_is_malformed_json(storage: Storage, body: bytes) -> None:
    sent = asgi(
        make_app(storage, max_body=1 << 20),
        "PUT",
        f"/v2/{GUN}/_trust/settings",
        body_chunks=[body[i : i + 60_000] for i in range(0, len(body), 60_000)],
    )
    # the settings body is capped at 64 KiB; under it, nesting is refused as JSON
    assert sent.status in (400, 413) and envelope_code(sent.body) in ("MALFORMED_JSON", "TOO_LARGE")
    small = asgi(make_app(storage), "PUT", f"/v2/{GUN}/_trust/settings", body_chunks=[b"[" * 30_000])
    assert (small.status, envelope_code(small.body)) == (400, "MALFORMED_JSON")


def test_a_content_length_of_other_digits_is_no_server_fault(storage: Storage) -> None:
    sent = asgi(
        make_app(storage),
        "POST",
        f"/v2/{GUN}/_trust/tuf/",
        body_chunks=[multipart([])],
        headers={"content-type": CONTENT_TYPE, "content-length": "\u00b2"},
    )
    assert sent.status < 500


# --------------------------------------------------------------------------------------------
# item 12: the publish body, parsed as it arrives


def whole_body_split(content_type: str, body: bytes, max_parts: int) -> dict[str, bytes]:
    """The server's parser before it was made incremental (the body split whole): the reference
    for every answer the incremental one gives."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise UpdateError("MALFORMED_UPLOAD")
    match = re.search(r'boundary=(?:"([^"]+)"|([^;\s]+))', content_type, re.IGNORECASE)
    if not match:
        raise UpdateError("MALFORMED_UPLOAD")
    delimiter = b"--" + (match.group(1) or match.group(2)).encode("latin-1")
    if not body.startswith(delimiter):
        preamble_end = body.find(b"\r\n" + delimiter)
        if preamble_end < 0:
            raise UpdateError("MALFORMED_UPLOAD")
        body = body[preamble_end + 2 :]
    sections = body.split(b"\r\n" + delimiter)
    sections = [sections[0][len(delimiter) :], *sections[1:]]
    if not sections[-1].startswith(b"--"):
        raise UpdateError("MALFORMED_UPLOAD")
    parts: dict[str, bytes] = {}
    for section in sections[:-1]:
        if not section.startswith(b"\r\n"):
            raise UpdateError("MALFORMED_UPLOAD")
        head, sep, data = section[2:].partition(b"\r\n\r\n")
        if not sep:
            raise UpdateError("MALFORMED_UPLOAD")
        disposition = next(
            (
                line.split(b":", 1)[1].decode("latin-1")
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-disposition:")
            ),
            "",
        )
        found = re.search(r'filename="((?:[^"\\]|\\.)*)"|filename=([^;\s]+)', disposition, re.IGNORECASE)
        if not found:
            raise UpdateError("NO_FILENAME")
        name = found.group(1).replace('\\"', '"') if found.group(1) is not None else found.group(2)
        if len(parts) >= max_parts:
            raise UpdateError("MALFORMED_UPLOAD")
        role = name.removesuffix(".json")
        if not role:
            raise UpdateError("NO_FILENAME")
        if role in parts:
            raise UpdateError("MALFORMED_UPLOAD")
        parts[role] = data
    return parts


def outcome(parse: Callable[[], dict[str, bytes]]) -> dict[str, bytes] | str:
    try:
        return parse()
    except UpdateError as exc:
        return exc.code


def fed_in_chunks(content_type: str, body: bytes, cuts: list[int], max_parts: int) -> dict[str, bytes]:
    form = PublishForm(content_type, max_parts)
    start = 0
    for cut in sorted(cut % (len(body) + 1) for cut in cuts):
        form.feed(body[start:cut])
        start = cut
    form.feed(body[start:])
    return form.finish()


_B = b"bnd"
_SECTION_PIECES = [
    b"\r\n",
    b"\r\n\r\n",
    b"--",
    b"--" + _B,
    b"\r\n--" + _B,
    b"\r\n--" + _B + b"--",
    b"x",
    b'Content-Disposition: form-data; name="files"; filename="targets"',
    b'Content-Disposition: form-data; filename="root.json"',
    b'content-disposition: form-data; filename="a\\"b"',
    b"Content-Disposition: form-data",
    b"content-disposition: filename=.json",
    b"Content-Type: x",
    b"{}",
    b"-",
    b"\r",
    b"\n",
]


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(_SECTION_PIECES), max_size=24),
    st.lists(st.integers(0, 400), max_size=6),
    st.integers(1, 3),
)
def test_the_incremental_parser_answers_as_the_whole_body_split(
    pieces: list[bytes], cuts: list[int], max_parts: int
) -> None:
    body = b"".join(pieces)
    content_type = "multipart/form-data; boundary=bnd"
    expected = outcome(lambda: whole_body_split(content_type, body, max_parts))
    assert outcome(lambda: fed_in_chunks(content_type, body, cuts, max_parts)) == expected
    assert outcome(lambda: fed_in_chunks(content_type, body, list(range(len(body))), max_parts)) == expected


@pytest.mark.parametrize(
    "body",
    [
        multipart([("root", b'{"a": 1}\r\n--hardening-boundar'), ("targets/releases", b"\r\n\r\n--\r\n")]),
        b"preamble\r\n" + multipart([("targets", b"x")]) + b"epilogue",
        b"\r\n--" + BOUNDARY.encode() + b"--\r\n",  # Go's empty form
    ],
)
def test_parts_keep_their_exact_bytes(body: bytes) -> None:
    expected = whole_body_split(CONTENT_TYPE, body, 256)
    for size in (1, 2, 7, 64, len(body)):
        form = PublishForm(CONTENT_TYPE, 256)
        for i in range(0, len(body), size):
            form.feed(body[i : i + size])
        assert form.finish() == expected


def test_part_headers_are_capped() -> None:
    form = PublishForm(CONTENT_TYPE, 256)
    form.feed(f'--{BOUNDARY}\r\nContent-Disposition: form-data; filename="targets"\r\nX: '.encode())
    with pytest.raises(UpdateError) as caught:
        for _ in range(100):
            form.feed(b"y" * 1024)
    assert caught.value.code == "MALFORMED_UPLOAD"


def test_too_many_parts_are_refused_while_the_body_arrives() -> None:
    form = PublishForm(CONTENT_TYPE, 3)
    part = f'--{BOUNDARY}\r\nContent-Disposition: form-data; filename="targets/p{{}}"\r\n\r\n{{{{}}}}\r\n'
    with pytest.raises(UpdateError) as caught:
        for i in range(5):
            form.feed(part.format(i).encode())
    assert caught.value.code == "MALFORMED_UPLOAD" and "more than 3 parts" in str(caught.value.detail)


def test_a_boundary_longer_than_rfc_2046_allows_is_refused() -> None:
    with pytest.raises(UpdateError):
        PublishForm("multipart/form-data; boundary=" + "b" * 71, 256)
    PublishForm("multipart/form-data; boundary=" + "b" * 70, 256)


def test_a_publish_body_costs_little_more_than_its_parts(storage: Storage) -> None:
    """16 MiB in 64 KiB messages through the app: the peak of Python allocations stays under
    three times the body (the whole-body split took about five)."""
    app = make_app(storage, max_body=32 << 20)
    body = multipart([("zzz", b" " * (16 << 20))])  # a role no publish may name: refused after parsing
    chunks = [body[i : i + (64 << 10)] for i in range(0, len(body), 64 << 10)]
    asgi(app, "GET", "/v2/warm/_trust/tuf/root.json")
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        sent = asgi(app, "POST", f"/v2/{GUN}/_trust/tuf/", body_chunks=chunks, headers={"content-type": CONTENT_TYPE})
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert (sent.status, envelope_code(sent.body)) == (400, "INVALID_ROLE")
    held = sum(len(chunk) for chunk in chunks)  # the test's own copy is allocated before the start
    assert peak < 3 * len(body), f"peak {peak / len(body):.1f} times the body ({held} bytes)"


# --------------------------------------------------------------------------------------------
# item 10: read timeouts in uvicorn's protocols (real sockets, uvicorn in a thread)


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the length of the body; ``/slow`` waits a second before reading it."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await anyio.sleep(1.0)
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@contextmanager
def serving(protocol: type, **limits: Any) -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        echo_app,
        host="127.0.0.1",
        port=port,
        http=partial(protocol, **limits),
        ws="none",
        lifespan="off",
        log_level="critical",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def seconds_until_closed(sock: socket.socket, limit: float) -> float:
    """How long until the server closes ``sock`` (it is read and discarded meanwhile)."""
    started = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - started < limit:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - started
    return float("inf")


PROTOCOLS = [TimedHttpToolsProtocol, TimedH11Protocol]
LIMITS = {"header_timeout": 0.5, "body_timeout": 0.5}


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=["httptools", "h11"])
@pytest.mark.parametrize(
    "sent",
    [b"", b"GET / HTTP/1.1\r\nHost: x\r\n", b"GET /" + b"a" * 1000],
    ids=["nothing", "half-a-head", "half-a-request-line"],
)
def test_a_head_that_does_not_come_closes_the_connection(protocol: type, sent: bytes) -> None:
    with serving(protocol, **LIMITS) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(sent)
        assert 0.4 < seconds_until_closed(sock, 5) < 3


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=["httptools", "h11"])
def test_a_head_trickling_in_is_closed_at_its_deadline(protocol: type) -> None:
    with (
        serving(protocol, header_timeout=1.0, body_timeout=5.0) as port,
        socket.create_connection(("127.0.0.1", port)) as sock,
    ):
        started = time.monotonic()
        for char in b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 100:  # a byte every 50 ms: 6 s in all
            try:
                sock.sendall(bytes([char]))
            except OSError:
                break
            if seconds_until_closed(sock, 0.05) < 1:
                break
        assert 0.9 < time.monotonic() - started < 4


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=["httptools", "h11"])
def test_a_body_that_stalls_closes_the_connection(protocol: type) -> None:
    with serving(protocol, **LIMITS) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 300_000)
        assert 0.4 < seconds_until_closed(sock, 5) < 3


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=["httptools", "h11"])
def test_a_body_that_moves_is_not_cut_and_keep_alive_still_works(protocol: type) -> None:
    with serving(protocol, **LIMITS) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        for _ in range(10):  # 1.5 s in all, never 0.5 s without a byte
            time.sleep(0.15)
            sock.sendall(b"x")
        sock.settimeout(5)
        assert sock.recv(4096).endswith(b"\r\n\r\n10")
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).endswith(b"\r\n\r\n0")


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=["httptools", "h11"])
def test_time_the_app_takes_to_read_is_not_the_clients(protocol: type) -> None:
    with serving(protocol, **LIMITS) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1_000_000)
        sock.settimeout(5)
        assert sock.recv(4096).endswith(b"\r\n\r\n1000000")


def test_a_head_over_the_cap_gets_431() -> None:
    with (
        serving(TimedHttpToolsProtocol, max_head=64 << 10, **LIMITS) as port,
        socket.create_connection(("127.0.0.1", port)) as sock,
    ):
        with suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (256 << 10))
        sock.settimeout(5)
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["errors"][0]["code"] == "TOO_LARGE"


def test_a_long_path_fits_in_a_head() -> None:
    # (httptools' URL parser stops at 64 KiB: uvicorn answers a longer one 400 itself)
    with serving(TimedHttpToolsProtocol, **LIMITS) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /" + b"a" * (60 << 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")


# --------------------------------------------------------------------------------------------
# items 17, 18: the server's files, made once before the workers start


def test_prepare_makes_the_folders_0700_and_the_token_key_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTKIT_SERVER_PASSPHRASE", "hardening-test")
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("")
    database = tmp_path / "new" / "folders" / "server.db"
    config = ServerConfig(database=f"sqlite:///{database}", auth="htpasswd", htpasswd=str(htpasswd))
    prepare(config)
    for folder in (tmp_path / "new", tmp_path / "new" / "folders"):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    key = database.parent / "token-signing-key.pem"
    assert key.stat().st_mode & 0o777 == 0o600 and (database.parent / "token-signing-cert.pem").exists()
    assert database.exists()
    first = key.read_bytes()
    prepare(config)  # a restart keeps the key (tokens already issued stay valid)
    assert key.read_bytes() == first


def test_prepare_makes_the_data_folder_for_a_database_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With PostgreSQL the token key lives in the data folder, which nothing made (item 18):
    ``prepare`` makes it (here the database is SQLite elsewhere, to stay in-process)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TRUSTKIT_SERVER_PASSPHRASE", "hardening-test")
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("")
    config = ServerConfig(auth="htpasswd", htpasswd=str(htpasswd))
    prepare(config)
    data = tmp_path / "xdg" / "trustkit"
    assert data.stat().st_mode & 0o777 == 0o700 and (tmp_path / "xdg").stat().st_mode & 0o777 == 0o700
    assert (data / "token-signing-key.pem").exists() and (data / "trustkit-server.db").exists()


def test_building_the_app_creates_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What each worker runs only reads: a worker that made the key raced the others."""
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("")
    config = ServerConfig(database=f"sqlite:///{tmp_path / 'server.db'}", auth="htpasswd", htpasswd=str(htpasswd))
    with pytest.raises(FileNotFoundError):
        _auth(config)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["htpasswd"]


@pytest.mark.parametrize(("name", "value"), [("header_timeout", 0), ("body_timeout", -1), ("header_timeout", "x")])
def test_timeouts_must_be_positive_numbers(name: str, value: Any) -> None:
    from trustkit.errors import TrustkitError

    with pytest.raises(TrustkitError, match="must be a number"):
        ServerConfig.load(None, {name: value})  # as the flags, variables and config file arrive


def test_timeouts_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTKIT_SERVER_HEADER_TIMEOUT", "2.5")
    assert ServerConfig.load(None, {}).header_timeout == 2.5
    assert ServerConfig.load(None, {"body_timeout": 4}).body_timeout == 4
