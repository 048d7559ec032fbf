"""trustkit.notary_api: one vocabulary for the client and the server.

* Every path the builders make is read back by the router as the route and arguments it was made
  for, once the server has percent-decoded it; a role that holds the API's own ``_trust``
  segment can read as another GUN, and that GUN is always one the rule refuses.
* The client's real requests (NotaryClient over an httpx transport) are routed the same way.
* One GUN rule: the server refuses what it refuses (plus its own path tricks), every docker name
  passes it, and a ``_trust`` segment is refused, since it let a path name another repository.
* One table of error codes: every code the server sends is in it (the real notary-server's bytes
  for each code: tests/interop/test_notary_api_wire.py).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from trustkit.client.notary import NotaryClient
from trustkit.errors import InvalidReferenceError, MetadataError, TrustkitError
from trustkit.notary_api import (
    CHECKSUM_HEX_LENGTHS,
    ERROR_CODES,
    MAX_GUN_BYTES,
    SERVER_KEY_ROLES,
    RouteMatch,
    changefeed_path,
    envelope,
    gun_path,
    gun_problem,
    key_file,
    match,
    metadata_file,
    role_path,
    settings_path,
    stored_version,
    tuf_path,
)
from trustkit.reference import NAME_MAX, parse
from trustkit.roles import BASE_ROLES, role_name_problem
from trustkit.server import app as server_app
from trustkit.server.app import ServerSettings, create_app
from trustkit.server.keys import ServerKeys
from trustkit.server.storage import Storage

ED25519_PUBLIC = "bKoipugbPqLnmlNv2TTc0ntcKrsNy2oLVsMOkjyRr3c="  # any 32 bytes, base64

# --------------------------------------------------------------------------------------------
# strategies: GUNs the rule accepts, roles notary accepts, versions, checksums

# Segments that look like pieces of a route, so the router's cuts get tried.
_TRICKY_SEGMENTS = [
    "_trust",
    "tuf",
    "root.json",
    "1.targets",
    "targets",
    "_trus",
    "x_trust",
    "trust_",
    "changefeed",
    "settings",
    "snapshot.key",
    "a" * 64,
    "%2F",
    "%",
    "\\",
    "?x",
    "#y",
    "é",
    "a:5000",
    "@",
]
_segment = st.one_of(
    st.text(
        st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="/*"),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from(_TRICKY_SEGMENTS),
)
_plain_guns = st.lists(_segment, min_size=1, max_size=6).map("/".join)
# GUNs that end like a route's path: the rule must leave none of them that a path can confuse
_route_like_guns = st.tuples(
    _plain_guns,
    st.sampled_from(["_trust", "_trust/tuf", "_trust/tuf/1.targets", "_trust/tuf/targets", "_trust/changefeed"]),
).map("/".join)
guns = st.one_of(_plain_guns, _route_like_guns).filter(lambda gun: gun_problem(gun) is None)

_role_segment = st.one_of(
    st.from_regex(r"[-a-z0-9_]{1,10}", fullmatch=True),
    st.sampled_from(["_trust", "tuf", "root", "targets", "1", "timestamp"]),
)
roles = st.one_of(
    st.sampled_from(BASE_ROLES),
    st.lists(_role_segment, min_size=1, max_size=5).map(lambda segments: "/".join(["targets", *segments])),
).filter(lambda role: role_name_problem(role) is None)
versions = st.integers(min_value=0, max_value=2**70)
checksums = st.sampled_from(CHECKSUM_HEX_LENGTHS).flatmap(lambda n: st.text("0123456789abcdef", min_size=n, max_size=n))


def routed(method: str, path: str) -> RouteMatch | None:
    """What the server routes ``path`` (percent-encoded, after ``/v2/``) to: ASGI servers hand
    the app the percent-decoded path (uvicorn: ``unquote(raw_path)``)."""
    return match(method, unquote(path))


def built(gun: str, role: str, version: int, checksum: str) -> list[tuple[str, str, RouteMatch]]:
    """Every request the builders make for these arguments, with the route it is meant for."""
    tuf = tuf_path(gun)
    cases = [
        ("POST", tuf, RouteMatch("update", gun)),
        ("DELETE", tuf, RouteMatch("update", gun)),
        ("GET", tuf + metadata_file(role), RouteMatch("current", gun, role)),
        ("GET", tuf + metadata_file(role, checksum=checksum), RouteMatch("checksum", gun, role, checksum=checksum)),
        ("GET", tuf + metadata_file(role, version=version), RouteMatch("version", gun, role, version=str(version))),
        ("GET", changefeed_path(gun), RouteMatch("changefeed", gun)),
        ("GET", settings_path(gun), RouteMatch("settings", gun)),
        ("PUT", settings_path(gun), RouteMatch("settings", gun)),
    ]
    for key_role in SERVER_KEY_ROLES:
        cases += [(method, tuf + key_file(key_role), RouteMatch("key", gun, key_role)) for method in ("GET", "POST")]
    return cases


# --------------------------------------------------------------------------------------------
# URLs: built and routed


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(guns, roles, versions, checksums)
def test_every_built_path_is_routed_to_what_it_was_built_for(gun: str, role: str, version: int, checksum: str) -> None:
    for method, path, meant in built(gun, role, version, checksum):
        got = routed(method, path)
        if "_trust" in role.split("/"):
            # targets/_trust/tuf/root is a role notary accepts, and its URL also reads as the
            # current root of GUN "<gun>/_trust/tuf/targets" (the router's longest GUN): that
            # GUN breaks the rule, so the server refuses it rather than serve another repository.
            assert got == meant or (got is not None and gun_problem(got.gun) is not None), (method, path, got)
        else:
            assert got == meant, (method, path)


def test_a_role_with_the_api_segment_reads_as_a_gun_the_rule_refuses() -> None:
    path = tuf_path("registry.example.com/app") + metadata_file("targets/_trust/tuf/root")
    got = routed("GET", path)
    assert got == RouteMatch("current", "registry.example.com/app/_trust/tuf/targets", "root")
    assert gun_problem(got.gun) == "repository name has a '_trust' path segment (the API's own)"


@pytest.mark.parametrize(
    ("gun", "path"),
    [
        ("r.example.com:5000/team/app", "r.example.com:5000/team/app"),
        ("r.example.com/a%2Fb?x#y", "r.example.com/a%252Fb%3Fx%23y"),  # one segment: '/' never comes from a '%2F'
        ("r.example.com/é\\x", "r.example.com/%C3%A9%5Cx"),
    ],
)
def test_gun_path_quotes_each_segment(gun: str, path: str) -> None:
    assert gun_path(gun) == path
    assert tuf_path(gun) == f"{path}/_trust/tuf/"
    assert changefeed_path(gun) == f"{path}/_trust/changefeed"
    assert settings_path(gun) == f"{path}/_trust/settings"


def test_metadata_files() -> None:
    assert metadata_file("root") == "root.json"
    assert metadata_file("targets/releases") == "targets/releases.json"
    assert metadata_file("snapshot", checksum="ab" * 32) == f"snapshot.{'ab' * 32}.json"
    assert metadata_file("root", version=3) == "3.root.json"
    assert key_file("timestamp") == "timestamp.key"
    assert role_path("targets/a-b_c") == "targets/a-b_c"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: metadata_file("../root"), MetadataError, "neither a base role"),
        (lambda: metadata_file("targets//x"), MetadataError, "not a clean path"),
        (lambda: metadata_file("root", checksum="AB" * 32), MetadataError, "lowercase hex"),
        (lambda: metadata_file("root", checksum="ab" * 33), MetadataError, "lowercase hex"),
        (lambda: metadata_file("root", version=-1), MetadataError, "non-negative"),
        (lambda: metadata_file("root", version=True), MetadataError, "non-negative"),
        (lambda: metadata_file("root", version=1, checksum="ab" * 32), ValueError, "not both"),
        (lambda: key_file("targets"), TrustkitError, "only the snapshot and timestamp keys"),
        (lambda: tuf_path("a//b"), InvalidReferenceError, "path segment"),
    ],
)
def test_builders_refuse_what_no_route_can_carry(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize(
    ("digits", "number"),
    [
        ("0", None),
        ("00", None),
        ("1", 1),
        ("007", 7),
        ("2147483648", 2**31),
        ("2147483649", None),
        ("99999999999", None),
        ("9" * 65_000, None),
    ],
)
def test_stored_version(digits: str, number: int | None) -> None:
    assert stored_version(digits) == number


# --------------------------------------------------------------------------------------------
# The client's real requests, routed by the server's router


def _client_answer(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path.endswith(".key"):
        return httpx.Response(200, json={"keytype": "ed25519", "keyval": {"public": ED25519_PUBLIC, "private": None}})
    if path.endswith("/changefeed"):
        return httpx.Response(200, json={"count": 0, "records": None})
    if path.endswith("/settings"):
        return httpx.Response(200, json={"immutable": False})
    return httpx.Response(200, content=b"{}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(guns, roles.filter(lambda role: "_trust" not in role.split("/")), versions, checksums)
def test_the_clients_requests_are_routed_to_what_it_asked_for(gun: str, role: str, version: int, checksum: str) -> None:
    sent: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        raw = request.url.raw_path.split(b"?")[0].decode("ascii")
        assert raw.startswith("/v2/")
        sent.append((request.method, raw[len("/v2/") :]))
        return _client_answer(request)

    client = NotaryClient(
        "https://notary.example.com",
        gun,
        httpx.Client(transport=httpx.MockTransport(handler)),
        sleep=lambda seconds: None,
    )
    client.publish({role: b"{}"})
    client.get(role, max_size=100)
    client.get(role, checksum=checksum, max_size=100)
    client.get(role, version=version, max_size=100)
    for key_role in SERVER_KEY_ROLES:
        client.get_key(key_role)
        client.rotate_key(key_role)
    client.changefeed()
    client.settings()
    client.set_settings({"immutable": True})
    client.delete()
    meant = [
        RouteMatch("update", gun),
        RouteMatch("current", gun, role),
        RouteMatch("checksum", gun, role, checksum=checksum),
        RouteMatch("version", gun, role, version=str(version)),
    ]
    for key_role in SERVER_KEY_ROLES:
        meant += [RouteMatch("key", gun, key_role)] * 2
    meant += [
        RouteMatch("changefeed", gun),
        RouteMatch("settings", gun),
        RouteMatch("settings", gun),
        RouteMatch("update", gun),
    ]
    assert [routed(method, path) for method, path in sent] == meant


# --------------------------------------------------------------------------------------------
# One GUN rule


def test_one_limit_in_bytes() -> None:
    at_limit = "registry.example.com/" + "a" * (MAX_GUN_BYTES - len("registry.example.com/"))
    assert gun_problem(at_limit) is None
    assert gun_problem(at_limit + "a") == f"repository name is longer than {MAX_GUN_BYTES} bytes"
    two_byte = "registry.example.com/" + "é" * 117  # 255 bytes, 138 characters
    assert len(two_byte.encode()) == 255 and gun_problem(two_byte) is None
    assert gun_problem(two_byte + "a") is not None


@pytest.mark.parametrize(
    ("gun", "problem"),
    [
        ("", "empty"),
        ("a*b", "'*'"),
        ("a//b", "path segment"),
        ("a/./b", "path segment"),
        ("a/..", "path segment"),
        ("/a", "path segment"),
        ("a/", "path segment"),
        ("a/_trust", "'_trust'"),
        ("_trust/a", "'_trust'"),
        ("a b", "whitespace"),
        ("a\tb", "whitespace"),
        ("a\x00b", "control"),
        ("a\x7fb", "control"),
        ("a\u2028b", "whitespace"),
        (b"a/b", "string"),
    ],
)
def test_guns_no_notary_server_can_be_asked_about(gun: Any, problem: str) -> None:
    found = gun_problem(gun)
    assert found is not None and problem in found


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        guns,
        st.lists(st.sampled_from(["a", "/", "\\", "%", "_trust", ".", " ", "*"]), max_size=10).map("".join),
    )
)
def test_the_server_refuses_what_the_rule_refuses_and_its_own_path_tricks(gun: str) -> None:
    expected = gun_problem(gun) is None and "\\" not in gun and "%" not in gun
    assert (server_app.gun_problem(gun) is None) == expected


_host = st.lists(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True), min_size=1, max_size=4).map(
    ".".join
)
_path_component = st.from_regex(r"[a-z0-9]{1,30}((\.|_|__|-+)[a-z0-9]{1,30}){0,3}", fullmatch=True)
_docker_names = st.tuples(
    st.one_of(
        st.just(""),
        _host.map(lambda host: host + ".io/"),
        _host.map(lambda host: host + ".io:5000/"),
        st.just("localhost/"),
    ),
    st.lists(_path_component, min_size=1, max_size=8).map("/".join),
).map("".join)


@settings(max_examples=200, deadline=None)
@given(_docker_names)
def test_every_docker_name_is_a_gun(text: str) -> None:
    try:
        reference = parse(text)
    except InvalidReferenceError:
        assume(False)
        raise
    assert gun_problem(reference.gun) is None


def test_the_longest_docker_name_is_a_gun() -> None:
    assert NAME_MAX <= MAX_GUN_BYTES
    longest = parse("registry.example.com/" + "a" * (NAME_MAX - len("registry.example.com/")))
    assert len(longest.gun) == NAME_MAX and gun_problem(longest.gun) is None


@pytest.fixture
def app(tmp_path: Path) -> Iterator[TestClient]:
    storage = Storage(f"sqlite:///{tmp_path / 'server.db'}")
    with TestClient(create_app(storage, ServerKeys(storage, "notary-api-test"), ServerSettings())) as client:
        yield client
    storage.close()


def test_the_server_refuses_a_gun_with_the_api_segment(app: TestClient) -> None:
    """GUN "<gun>/_trust/tuf/targets" once answered for the delegation targets/_trust/tuf/root of
    <gun>: its current root.json has the same path."""
    for path in (
        "registry.example.com/app/_trust/tuf/targets/_trust/tuf/root.json",
        "registry.example.com/_trust/app/_trust/tuf/timestamp.key",
    ):
        answer = app.get(f"/v2/{path}")
        assert answer.status_code == 400 and answer.json()["errors"][0]["code"] == "INVALID_GUN", path


# --------------------------------------------------------------------------------------------
# One table of error codes


def _codes_the_server_sends() -> set[str]:
    """Every code named in a call of error(...) or UpdateError(...) in trustkit/server."""
    codes = set()
    for path in Path(server_app.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args):
                continue
            code = node.args[0].value if isinstance(node.args[0], ast.Constant) else None
            if node.func.id in ("error", "UpdateError") and isinstance(code, str):
                codes.add(code)
    return codes


def test_every_code_the_server_sends_is_in_the_table() -> None:
    sent = _codes_the_server_sends()
    assert {"METADATA_NOT_FOUND", "INVALID_GUN", "MALFORMED_UPLOAD", "VERSION"} <= sent  # the scan sees them
    assert sent <= set(ERROR_CODES), sent - set(ERROR_CODES)


def test_the_envelope_is_notarys() -> None:
    not_found = (
        b'{"errors":[{"code":"METADATA_NOT_FOUND","message":'
        b'"You have requested metadata that does not exist."}]}\n'
    )  # as notary-server sends it
    assert envelope("METADATA_NOT_FOUND") == (404, not_found)
    status, body = envelope("INVALID_ROLE", "releases")
    assert status == 400 and json.loads(body) == {
        "errors": [
            {
                "code": "INVALID_ROLE",
                "message": "The role you are attempting to operate on is invalid.",
                "detail": "releases",
            }
        ]
    }
    assert all(code == known.code and 400 <= known.status < 600 for code, known in ERROR_CODES.items())
