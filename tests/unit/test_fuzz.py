"""A bounded fuzz program: hypothesis generates and mutates what arrives from outside (metadata
files, key files, URLs, multipart bodies, query strings) and every parser either accepts it, and
then round-trips, or refuses it with trustkit's own error.  The server answers every request with
a status below 500 and, for errors, notary's envelope.

(References have their own properties in test_reference.py; the fast metadata paths in
test_fast_paths.py.)  Examples per property are bounded so the suite stays fast in CI.
"""

from __future__ import annotations

import json
from contextlib import suppress
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from raw_asgi import request
from simulator import NOW, Simulator
from trustkit.encoding import b64encode
from trustkit.errors import TrustkitError
from trustkit.keys.der import parse_pem
from trustkit.keys.pkcs8 import load_private_key_block
from trustkit.keys.public import load_public_pem
from trustkit.metadata import Metadata
from trustkit.roles import ROOT, SNAPSHOT, TARGETS, TIMESTAMP
from trustkit.server.app import ServerSettings, create_app
from trustkit.server.keys import ServerKeys
from trustkit.server.storage import Storage

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
GUN = "registry.example.com/fuzz/app"

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.text(max_size=8),
    st.sampled_from(["", "targets", "targets/releases", "2030-01-01T00:00:00Z", "ecdsa", b64encode(b"\0" * 32)]),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)


def _sample_files() -> dict[str, bytes]:
    sim = Simulator()
    sim.add_delegation("targets/releases", paths=["v"])
    sim.add_target("v1", b"v1", role="targets/releases")
    sim.add_target("latest", b"latest")
    sim.publish()
    return {role: sim.current(role) for role in (ROOT, TARGETS, SNAPSHOT, TIMESTAMP, "targets/releases")}


SAMPLES = _sample_files()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += _paths(child, (*prefix, index))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any, *, drop: bool) -> Any:
    if not path:
        return value
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@st.composite
def mutated_metadata(draw: st.DrawFn) -> tuple[str, bytes]:
    role = draw(st.sampled_from(sorted(SAMPLES)))
    doc = json.loads(SAMPLES[role])
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        doc = _replace(doc, path, draw(json_values), drop=bool(path) and draw(st.booleans()))
    spacing = draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    data = json.dumps(doc, separators=spacing, ensure_ascii=draw(st.booleans())).encode()
    if draw(st.booleans()):  # byte-level damage too
        position = draw(st.integers(0, len(data)))
        data = data[:position] + draw(st.binary(max_size=4)) + data[position + draw(st.integers(0, 3)) :]
    return draw(st.sampled_from([role, None])), data


@FUZZ
@given(mutated_metadata())
@example((None, SAMPLES[ROOT].replace(b'"_type":"Root"', b'"_type":[]')))  # found by this program
def test_metadata_is_parsed_and_round_trips_or_refused(case: tuple[str | None, bytes]) -> None:
    role, data = case
    try:
        meta = Metadata.from_bytes(data, role=role)
    except TrustkitError:
        return
    again = Metadata.from_bytes(meta.raw, role=role)
    assert again.signed == meta.signed and again.signatures == meta.signatures
    rewritten = Metadata.from_bytes(meta.to_bytes(), role=role)  # our own serialisation reads back the same
    assert rewritten.signed == meta.signed


# ---- key files

_PEM_TYPES = [
    "PUBLIC KEY",
    "CERTIFICATE",
    "PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "EC PRIVATE KEY",
    "RSA PRIVATE KEY",
    "X",
]


@st.composite
def pem_texts(draw: st.DrawFn) -> bytes:
    blocks = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(_PEM_TYPES))
        headers = draw(
            st.sampled_from(
                [
                    "",
                    "role: targets\n",
                    "role: root\ngun: a/b\n",
                    "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n",
                    "bad header\n",
                ]
            )
        )
        body = b64encode(draw(st.binary(max_size=300)))
        if draw(st.booleans()):
            body = body[: draw(st.integers(0, len(body)))]
        lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
        blocks.append(f"-----BEGIN {kind}-----\n{headers}\n{lines}\n-----END {kind}-----\n")
    text = "".join(blocks).encode()
    if draw(st.booleans()):
        text += draw(st.binary(max_size=20))
    return text


@FUZZ
@given(pem_texts(), st.sampled_from([None, "", "passphrase"]))
def test_key_files_parse_or_are_refused(text: bytes, passphrase: str | None) -> None:
    with suppress(TrustkitError):
        load_public_pem(text)
    try:
        blocks = parse_pem(text)
    except TrustkitError:
        return
    for block in blocks:
        with suppress(TrustkitError):
            load_private_key_block(block, passphrase)


# ---- the server: URLs, bodies and query strings from anyone


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    storage = Storage("sqlite:///" + str(tmp_path_factory.mktemp("fuzz") / "server.db"))
    app = create_app(
        storage,
        ServerKeys(storage, "fuzz-passphrase"),
        ServerSettings(max_body=1 << 20, clock=lambda: NOW + timedelta(minutes=1)),
    )
    with TestClient(app) as client:  # a repository with a few versions to find
        for role in (SNAPSHOT, TIMESTAMP):
            assert client.get(f"/v2/{GUN}/_trust/tuf/{role}.key").status_code == 200
    yield app
    storage.close()


def call(
    app: Any,
    method: str,
    raw_path: str,
    *,
    query: bytes = b"",
    body: bytes = b"",
    content_type: str = "multipart/form-data; boundary=b",
) -> tuple[int, bytes, str]:
    """One request straight into the ASGI app, the path exactly as given."""
    sent = request(
        app,
        method,
        raw_path,
        raw=True,
        body_chunks=[body],
        query=query,
        headers={"content-type": content_type, "content-length": str(len(body))},
    )
    return sent.status, sent.body, sent.headers.get("content-type", "")


def assert_answered(status: int, body: bytes, content_type: str) -> None:
    assert status < 500, (status, body[:300])
    if status >= 400 and content_type.startswith("application/json"):
        errors = json.loads(body)["errors"]
        assert errors and all({"code", "message"} <= set(e) for e in errors), body[:300]


_SEGMENTS = st.one_of(
    st.sampled_from(
        [
            "v2",
            "_trust",
            "tuf",
            "root.json",
            "targets.json",
            "timestamp.key",
            "snapshot.key",
            "changefeed",
            "settings",
            "targets",
            "releases",
            "..",
            ".",
            "",
            "%2e%2e",
            "%00",
            "%ff",
            "%2F",
            "1.root.json",
            "9" * 5000 + ".targets.json",
            "a" * 300,
            "*",
            "targets" * 2000,
        ]
    ),
    st.text(max_size=12).map(lambda text: quote(text, safe="")),
    st.integers(0, 2**70).map(lambda n: f"{n}.targets.json"),
    st.text(alphabet="0123456789abcdef", min_size=60, max_size=130).map(lambda h: f"targets.{h}.json"),
)


@FUZZ
@given(st.lists(_SEGMENTS, max_size=9), st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD"]), st.booleans())
@example(["9" * 5000 + ".targets.json"], "GET", True)
@example(["targets" + "/targets" * 9000 + ".json"], "GET", True)
def test_any_url_gets_an_answer_below_500(app: Any, segments: list[str], method: str, prefixed: bool) -> None:
    path = "/" + "/".join((["v2", *GUN.split("/"), "_trust", "tuf"] if prefixed else []) + segments)
    assert_answered(*call(app, method, path))


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["records", "change_id", "x"]),
        st.one_of(st.integers(-(2**70), 2**70).map(str), st.text(max_size=8), st.just("9" * 5000)),
        max_size=3,
    ),
    st.booleans(),
)
@example({"records": str(2**63)}, False)
@example({"change_id": str(2**63)}, True)
@example({"records": "9" * 5000}, False)
def test_any_changefeed_query_gets_an_answer_below_500(app: Any, params: dict[str, str], catalog: bool) -> None:
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items()).encode()
    path = "/v2/_trust/changefeed" if catalog else f"/v2/{GUN}/_trust/changefeed"
    assert_answered(*call(app, "GET", path, query=query))


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    boundary = draw(st.sampled_from(["b", "trustkit", "x" * 70, "", '"quoted"']))
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(
            st.sampled_from(
                [
                    "root",
                    "targets",
                    "snapshot",
                    "timestamp",
                    "targets/releases",
                    "targets/../x",
                    "",
                    "a" * 300,
                    "root.json",
                    'ta"rgets',
                ]
            )
        )
        disposition = draw(
            st.sampled_from(
                [
                    f'form-data; name="files"; filename="{name}"',
                    f"form-data; name=files; filename={name}",
                    "form-data; name=files",
                    f'attachment; filename="{name}"',
                ]
            )
        )
        data = draw(
            st.one_of(
                st.sampled_from(list(SAMPLES.values())),
                st.binary(max_size=60),
                json_values.map(lambda v: json.dumps(v).encode()),
            )
        )
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + draw(st.sampled_from([f"--{boundary}--\r\n".encode(), b"", b"--", b"\r\n"]))
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(body)))
        body = body[:cut] + draw(st.binary(max_size=6)) + body[cut:]
    content_type = draw(
        st.sampled_from(
            [
                f"multipart/form-data; boundary={boundary}",
                f'multipart/form-data; boundary="{boundary}"',
                "multipart/form-data",
                "application/json",
                "",
                f"multipart/mixed; boundary={boundary}",
            ]
        )
    )
    return content_type, body


@FUZZ
@given(multipart_bodies(), st.sampled_from([GUN, "registry.example.com/fuzz/other"]))
def test_any_publish_body_gets_an_answer_below_500(app: Any, case: tuple[str, bytes], gun: str) -> None:
    content_type, body = case
    assert_answered(*call(app, "POST", f"/v2/{gun}/_trust/tuf/", body=body, content_type=content_type))


@FUZZ
@given(st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=40)))
def test_any_settings_body_gets_an_answer_below_500(app: Any, body: bytes) -> None:
    assert_answered(*call(app, "PUT", f"/v2/{GUN}/_trust/settings", body=body, content_type="application/json"))
