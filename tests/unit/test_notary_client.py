"""trustkit.client.notary: server URL rules, TLS discovery, and the Notary API client over an
in-process ``httpx.MockTransport`` (paths, exact bytes, size caps, multipart, error mapping,
retries).  The real notary-server is exercised in tests/interop/test_notary_client_interop.py.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import peers
from trustkit.client.auth import SCOPE_EXTENSION, Credentials, TokenAuth, repository_scope
from trustkit.client.http import RETRY_BACKOFF, tls_settings
from trustkit.client.notary import (
    DOCKER_HUB_NOTARY,
    NotaryClient,
    make_http_client,
    resolve_server_url,
)
from trustkit.errors import (
    InvalidReferenceError,
    MetadataError,
    NetworkError,
    NotAuthorizedError,
    NotFoundError,
    OversizedError,
    ServerError,
    ServerRejectedError,
    TrustkitError,
)
from trustkit.keys.public import PublicKey

BASE = "https://notary.example.com"
GUN = "registry.example.com:5000/team/app"
TUF = f"/v2/{GUN}/_trust/tuf/"
ED25519_PUBLIC = "bKoipugbPqLnmlNv2TTc0ntcKrsNy2oLVsMOkjyRr3c="  # any 32 bytes, base64


Handler = Callable[[httpx.Request], httpx.Response]


def notary(handler: Handler, *, sleeps: list[float] | None = None, gun: str = GUN, **client_kwargs) -> NotaryClient:
    client = httpx.Client(transport=httpx.MockTransport(handler), **client_kwargs)
    record = sleeps if sleeps is not None else []
    return NotaryClient(BASE + "/", gun, client, sleep=record.append)


def envelope(code: str, message: str, detail: object = None) -> dict:
    error: dict[str, object] = {"code": code, "message": message}
    if detail is not None:
        error["detail"] = detail
    return {"errors": [error]}


def answer(status: int, body: dict | bytes | None = None, **kwargs) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, dict):
            return httpx.Response(status, json=body, **kwargs)
        return httpx.Response(status, content=body or b"", **kwargs)

    return handler


# --------------------------------------------------------------------------------------------
# Server URL


@pytest.mark.parametrize(
    ("registry", "explicit", "env", "expected"),
    [
        ("registry.example.com", None, {}, "https://registry.example.com"),
        ("registry.example.com:5000", None, {}, "https://registry.example.com:5000"),
        ("docker.io", None, {}, DOCKER_HUB_NOTARY),
        ("index.docker.io", None, {}, DOCKER_HUB_NOTARY),
        (
            "docker.io",
            None,
            {"DOCKER_CONTENT_TRUST_SERVER": "https://n.example.com:4443/"},
            "https://n.example.com:4443",
        ),
        (
            "r.example.com",
            "https://explicit.example.com//",
            {"DOCKER_CONTENT_TRUST_SERVER": "https://env"},
            "https://explicit.example.com",
        ),
        ("r.example.com", "http://127.0.0.1:4443", {}, "http://127.0.0.1:4443"),
        ("r.example.com", "http://127.1.2.3", {}, "http://127.1.2.3"),
        ("r.example.com", "http://localhost:8080/", {}, "http://localhost:8080"),
        ("r.example.com", "http://[::1]:8080", {}, "http://[::1]:8080"),
        ("r.example.com", "https://n.example.com/prefix/", {}, "https://n.example.com/prefix"),
    ],
)
def test_resolve_server_url(registry: str, explicit: str | None, env: dict, expected: str) -> None:
    assert resolve_server_url(registry, explicit, environ=env) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://notary.example.com", "only https.*loopback"),
        ("http://10.0.0.1:4443", "only https.*loopback"),
        ("ftp://notary.example.com", "must be https://"),
        ("notary.example.com", "must be https://"),
        ("https://", "must be https://"),
        ("https://user:pw@notary.example.com", "credentials"),
        ("https://notary.example.com:99999", "not a valid URL"),
    ],
)
def test_resolve_server_url_refusals(url: str, message: str) -> None:
    with pytest.raises(TrustkitError, match=message):
        resolve_server_url("r.example.com", url, environ={})


def test_resolve_server_url_names_the_environment_variable() -> None:
    with pytest.raises(TrustkitError, match="DOCKER_CONTENT_TRUST_SERVER"):
        resolve_server_url("r.example.com", environ={"DOCKER_CONTENT_TRUST_SERVER": "http://n.example.com"})


# --------------------------------------------------------------------------------------------
# TLS discovery


def subjects(context) -> list[str]:
    return [dict(x[0] for x in cert["subject"]).get("commonName", "") for cert in context.get_ca_certs()]


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA and a client cert/key pair (both self-signed, CN=localhost)."""
    ca, _ = peers.make_tls(tmp_path / "ca")
    cert, key = peers.make_tls(tmp_path / "client")
    return {"ca": ca, "cert": cert, "key": key}


def test_tls_dir_ca_and_client_pair(tmp_path: Path, pki: dict[str, Path]) -> None:
    tls_dir = tmp_path / "cfg" / "tls" / "notary.example.com:4443"
    tls_dir.mkdir(parents=True)
    shutil.copy(pki["ca"], tls_dir / "ca.crt")
    shutil.copy(pki["cert"], tls_dir / "client.cert")
    shutil.copy(pki["key"], tls_dir / "client.key")
    context, pair = tls_settings("https://notary.example.com:4443", config_dir=tmp_path / "cfg")
    assert "localhost" in subjects(context)  # the directory's CA, on top of the system CAs
    assert pair == (tls_dir / "client.cert", tls_dir / "client.key")


def test_tls_dir_is_named_host_port_as_in_the_url(tmp_path: Path, pki: dict[str, Path]) -> None:
    tls_dir = tmp_path / "tls" / "notary.example.com"  # no port in the URL, none in the name
    tls_dir.mkdir(parents=True)
    shutil.copy(pki["ca"], tls_dir / "extra-ca.crt")
    context, pair = tls_settings("https://notary.example.com", config_dir=tmp_path)
    assert "localhost" in subjects(context)
    assert pair is None
    other, _ = tls_settings("https://notary.example.com:4443", config_dir=tmp_path)
    assert "localhost" not in subjects(other)


def test_tls_ca_option_is_the_only_ca(tmp_path: Path, pki: dict[str, Path]) -> None:
    context, pair = tls_settings("https://n.example.com", tls_ca=str(pki["ca"]), config_dir=tmp_path)
    assert subjects(context) == ["localhost"]
    assert pair is None


def test_tls_errors_are_clear(tmp_path: Path, pki: dict[str, Path]) -> None:
    with pytest.raises(TrustkitError, match="does not exist"):
        tls_settings("https://n.example.com", tls_ca=str(tmp_path / "missing.crt"), config_dir=tmp_path)
    bad = tmp_path / "bad.crt"
    bad.write_text("not a certificate")
    with pytest.raises(TrustkitError, match="CA certificates"):
        tls_settings("https://n.example.com", tls_ca=str(bad), config_dir=tmp_path)
    tls_dir = tmp_path / "tls" / "n.example.com"
    tls_dir.mkdir(parents=True)
    shutil.copy(pki["cert"], tls_dir / "client.cert")
    with pytest.raises(TrustkitError, match="no matching key client.key"):
        tls_settings("https://n.example.com", config_dir=tmp_path)
    (tls_dir / "client.cert").unlink()
    shutil.copy(pki["key"], tls_dir / "client.key")
    with pytest.raises(TrustkitError, match="no matching certificate client.cert"):
        tls_settings("https://n.example.com", config_dir=tmp_path)


def test_make_http_client_timeouts_and_auth(tmp_path: Path) -> None:
    auth = TokenAuth(None)
    with make_http_client("https://n.example.com", config_dir=tmp_path, auth=auth, timeout=12.0) as client:
        assert client.timeout.connect == 5.0
        assert client.timeout.read == 12.0
        assert client.auth is auth
        assert client.headers["user-agent"].startswith("trustkit/")


# --------------------------------------------------------------------------------------------
# Paths and bodies


def test_get_paths_and_exact_bytes() -> None:
    seen: list[str] = []
    body = b'{"signed":{},"signatures":[]}\n  '  # returned byte for byte, trailing junk included

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, content=body)

    client = notary(handler)
    assert client.get("root", max_size=1000) == body
    assert client.get("targets/releases", max_size=1000) == body
    assert client.get("snapshot", checksum="ab" * 32, max_size=1000) == body
    assert client.get("root", version=3, max_size=1000) == body
    assert seen == [
        TUF + "root.json",
        TUF + "targets/releases.json",
        TUF + f"snapshot.{'ab' * 32}.json",
        TUF + "3.root.json",
    ]


def test_get_404_is_none() -> None:
    client = notary(answer(404, envelope("METADATA_NOT_FOUND", "You have requested metadata that does not exist.", {})))
    assert client.get("timestamp", max_size=100) is None
    assert client.get("root", checksum="0" * 96, max_size=100) is None


@pytest.mark.parametrize("gun", ["", "a//b", "a/../b", "./a", "a/*", "a b/c", "a/b/"])
def test_unusable_guns_are_refused(gun: str) -> None:
    with pytest.raises(InvalidReferenceError):
        notary(answer(200), gun=gun)


def test_gun_segments_are_quoted() -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path)
        return httpx.Response(200, content=b"{}")

    notary(handler, gun="r.example.com/a%2Fb?x#y").get("root", max_size=10)
    assert seen == [b"/v2/r.example.com/a%252Fb%3Fx%23y/_trust/tuf/root.json"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"role": "../root"}, "neither a base role"),
        ({"role": "targets/../x"}, "may contain only"),
        ({"role": "targets//x"}, "not a clean path"),
        ({"role": "root", "checksum": "AB" * 32}, "lowercase hex"),
        ({"role": "root", "checksum": "ab" * 10}, "lowercase hex"),
        ({"role": "root", "version": -1}, "non-negative"),
        ({"role": "root", "version": True}, "non-negative"),
    ],
)
def test_get_argument_checks(kwargs: dict, message: str) -> None:
    with pytest.raises(MetadataError, match=message):
        notary(answer(200)).get(max_size=10, **kwargs)


def test_size_cap_by_content_length() -> None:
    client = notary(answer(200, b"x" * 101))
    assert client.get("root", max_size=101) == b"x" * 101
    with pytest.raises(OversizedError, match=r"root\.json of .* is larger than 100 bytes"):
        client.get("root", max_size=100)


def test_size_cap_stops_an_endless_stream() -> None:
    produced = [0]

    def endless() -> Iterator[bytes]:
        while True:
            produced[0] += 1
            yield b"x" * 1024

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())  # chunked: no Content-Length

    with pytest.raises(OversizedError, match="larger than 10000 bytes"):
        notary(handler).get("targets", max_size=10_000)
    assert produced[0] <= 11  # it stopped reading right after the cap


def test_get_key_parses_the_servers_non_canonical_json() -> None:
    seen: list[tuple[str, str]] = []
    body = json.dumps({"keytype": "ed25519", "keyval": {"public": ED25519_PUBLIC, "private": None}}).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        return httpx.Response(200, content=body)

    client = notary(handler)
    assert client.get_key("timestamp") == PublicKey("ed25519", ED25519_PUBLIC)
    assert client.rotate_key("snapshot") == PublicKey("ed25519", ED25519_PUBLIC)
    assert seen == [("GET", TUF + "timestamp.key"), ("POST", TUF + "snapshot.key")]
    with pytest.raises(TrustkitError, match="snapshot and timestamp"):
        client.get_key("root")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"keytype":"ed25519","keyval":{"public":"AAAA","private":null}}',  # not 32 bytes
        b'{"keytype":"ed25519","keyval":{"public":"x","private":"secret"}}',
        b'{"keytype":"ed25519","keytype":"rsa","keyval":{}}',
    ],
)
def test_get_key_refuses_bad_keys(body: bytes) -> None:
    with pytest.raises(ServerError, match="invalid timestamp key"):
        notary(answer(200, body)).get_key("timestamp")


def parse_multipart(request: httpx.Request) -> list[tuple[str | None, str | None, str, bytes]]:
    raw = b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + request.content
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    return [
        (
            part.get_param("name", header="content-disposition"),
            part.get_filename(),
            part.get_content_type(),
            part.get_payload(decode=True),
        )
        for part in message.iter_parts()
    ]


def test_publish_multipart_keeps_slashes_in_filenames() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        requests.append(request)
        return httpx.Response(200)

    files = {"root": b'{"a": 1}\n', "targets": b"\x00\xffbytes", "targets/releases": b"{}"}
    notary(handler).publish(files)
    [request] = requests
    assert request.method == "POST"
    assert request.url.path == TUF
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'Content-Disposition: form-data; name="files"; filename="targets/releases"\r\n' in request.content
    assert parse_multipart(request) == [
        ("files", "root", "application/octet-stream", b'{"a": 1}\n'),
        ("files", "targets", "application/octet-stream", b"\x00\xffbytes"),
        ("files", "targets/releases", "application/octet-stream", b"{}"),
    ]


def test_publish_refuses_bad_roles_and_empty_updates() -> None:
    client = notary(answer(200))
    with pytest.raises(MetadataError):
        client.publish({'targets/"x': b"{}"})
    with pytest.raises(ValueError, match="nothing to publish"):
        client.publish({})


def test_delete_and_changefeed() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "DELETE":
            return httpx.Response(200)
        return httpx.Response(200, json={"count": 0, "records": None})

    client = notary(handler)
    client.delete()
    assert client.changefeed("-1", 5) == {"count": 0, "records": None}
    assert (seen[0].method, seen[0].url.path) == ("DELETE", TUF)
    assert seen[1].url.path == f"/v2/{GUN}/_trust/changefeed"
    assert dict(seen[1].url.params) == {"change_id": "-1", "records": "5"}


def test_ping_accepts_200_and_401_only() -> None:
    assert notary(answer(200, {})).ping() is None
    assert notary(answer(401)).ping() is None
    with pytest.raises(ServerError, match="does not look like a trust server"):
        notary(answer(404)).ping()


def test_ping_does_not_start_the_token_flow() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.host)
        return httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.example.com/t",scope="registry:catalog:*"'}
        )

    notary(handler, auth=TokenAuth(Credentials("alice", "pw"))).ping()
    assert calls == ["notary.example.com"]


def test_requests_name_their_scope_for_the_auth_layer() -> None:
    scopes: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        scopes.append((request.method, request.extensions[SCOPE_EXTENSION]))
        return httpx.Response(200, content=b"{}")

    client = notary(handler)
    client.get("root", max_size=10)
    client.publish({"root": b"{}"})
    assert scopes == [("GET", repository_scope(GUN)), ("POST", repository_scope(GUN, push=True))]


# --------------------------------------------------------------------------------------------
# Error mapping


@pytest.mark.parametrize(
    ("code", "message", "detail", "expected"),
    [
        (
            "VERSION",
            "A newer version of metadata is already available.",
            {},
            f"the trust server already has a newer version of {GUN} (someone published meanwhile); "
            "run the command again",
        ),
        (
            "INVALID_UPDATE",
            "Update sent by the client is invalid.",
            {"Name": "ErrBadRoot", "Error": {"Msg": "Root modifications must increment the version. Current 1, new 3"}},
            (
                f"the trust server rejected the update of {GUN}: Root modifications must increment the version. "
                "Current 1, new 3 (ErrBadRoot)"
            ),
        ),
        (
            "MALFORMED_JSON",
            "JSON sent by the client could not be parsed by the server",
            None,
            f"the trust server could not parse the metadata sent for {GUN}",
        ),
        (
            "INVALID_ROLE",
            "The role you are attempting to operate on is invalid.",
            "releases",
            f'the trust server does not accept role "releases" for {GUN}',
        ),
        (
            "INVALID_GUN",
            "The server does not support actions on images of this name.",
            "Require GUNs with prefix: [docker.io/]",
            (f"the trust server does not serve repository {GUN} (Require GUNs with prefix: [docker.io/])"),
        ),
        (
            "MALFORMED_UPLOAD",
            "The body of your request is malformed.",
            None,
            f"the trust server refused the upload for {GUN} as malformed: The body of your request is malformed.",
        ),
        ("SOMETHING_NEW", "A new thing.", None, f"the trust server refused the request for {GUN}: A new thing."),
    ],
)
def test_notary_error_envelope_becomes_a_human_message(code: str, message: str, detail: object, expected: str) -> None:
    client = notary(answer(400, envelope(code, message, detail)))
    with pytest.raises(ServerRejectedError) as info:
        client.publish({"root": b"{}"})
    assert info.value.message == expected
    assert (info.value.status, info.value.code, info.value.detail) == (400, code, detail)


def test_4xx_without_envelope() -> None:
    with pytest.raises(ServerRejectedError, match="HTTP 405") as info:
        notary(answer(405, b"<html>method not allowed</html>")).delete()
    assert (info.value.status, info.value.code, info.value.detail) == (405, "", None)


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_not_authorized(status: int) -> None:
    client = notary(answer(status, envelope("UNAUTHORIZED", "authentication required")))
    with pytest.raises(NotAuthorizedError, match="trustkit login"):
        client.get("root", max_size=10)
    with pytest.raises(NotAuthorizedError, match=GUN):
        client.publish({"root": b"{}"})


def test_404_outside_gets_is_not_found() -> None:
    client = notary(answer(404, envelope("METADATA_NOT_FOUND", "You have requested metadata that does not exist.")))
    with pytest.raises(NotFoundError):
        client.get_key("timestamp")
    with pytest.raises(NotFoundError):
        client.publish({"root": b"{}"})


def test_5xx_is_a_server_error() -> None:
    client = notary(answer(500, envelope("UPDATING", "An error has occurred while updating the TUF repository.")))
    with pytest.raises(ServerError, match=r"HTTP 500.*An error has occurred.*\(UPDATING\)"):
        client.publish({"root": b"{}"})
    with pytest.raises(ServerError, match="HTTP 500"):
        client.get("root", max_size=10)


def test_unexpected_status_is_a_server_error() -> None:
    with pytest.raises(ServerError, match="unexpected HTTP 302"):
        notary(answer(302, headers={"Location": "https://elsewhere"})).get("root", max_size=10)


def test_error_bodies_are_read_only_up_to_a_limit() -> None:
    huge = b'{"errors":[{"code":"VERSION","message":"' + b"x" * (1 << 20) + b'"}]}'
    with pytest.raises(ServerRejectedError) as info:
        notary(answer(400, huge)).publish({"root": b"{}"})
    assert info.value.code == ""  # the cut body is no envelope; still a clean 4xx error


def raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


def test_connection_errors_are_network_errors() -> None:
    with pytest.raises(NetworkError, match=r"cannot reach the trust server at https://notary.example.com/v2/.*refused"):
        notary(raising(httpx.ConnectError("[Errno 111] Connection refused"))).get("root", max_size=10)
    with pytest.raises(NetworkError, match="did not answer in time"):
        notary(raising(httpx.ReadTimeout("timed out"))).get("root", max_size=10)
    with pytest.raises(NetworkError, match="did not answer in time"):
        notary(raising(httpx.ConnectTimeout("timed out"))).publish({"root": b"{}"})


def test_tls_verification_failure_hints_at_the_ca_options() -> None:
    sleeps: list[float] = []
    error = httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate")
    client = notary(raising(error), sleeps=sleeps)
    for call in (client.ping, lambda: client.get("root", max_size=10)):
        with pytest.raises(NetworkError) as info:
            call()
        text = str(info.value)
        assert "https://notary.example.com/v2/" in text
        assert "--tls-ca" in text and "$DOCKER_CONFIG/tls/notary.example.com/ca.crt" in text
    assert sleeps == []  # a TLS failure is not retried


def test_a_failed_tls_handshake_is_not_retried_either() -> None:
    """Plain HTTP on the TLS port fails the same way every time: one try, and a message that
    says TLS (the two clients used to disagree on what a TLS failure is)."""
    sleeps: list[float] = []
    error = httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1000)")
    handler, calls = flaky([error] * 4, httpx.Response(200))
    with pytest.raises(NetworkError, match="TLS with the trust server at https://notary.example.com/v2/.* failed"):
        notary(handler, sleeps=sleeps).get("root", max_size=10)
    assert calls == ["GET"] and sleeps == []


# --------------------------------------------------------------------------------------------
# Retries


def flaky(statuses: list[int | httpx.Response | Exception], final: httpx.Response) -> tuple[Handler, list[str]]:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) <= len(statuses):
            item = statuses[len(calls) - 1]
            if isinstance(item, Exception):
                raise item
            return item if isinstance(item, httpx.Response) else httpx.Response(item)
        return final

    return handler, calls


def test_get_retries_503_and_connect_errors_with_backoff() -> None:
    handler, calls = flaky([503, httpx.ConnectError("refused"), 502], httpx.Response(200, content=b"{}"))
    sleeps: list[float] = []
    assert notary(handler, sleeps=sleeps).get("root", max_size=10) == b"{}"
    assert calls == ["GET"] * 4
    assert sleeps == list(RETRY_BACKOFF)


def test_get_gives_up_after_three_retries() -> None:
    handler, calls = flaky([503] * 10, httpx.Response(200))
    sleeps: list[float] = []
    with pytest.raises(ServerError, match="HTTP 503"):
        notary(handler, sleeps=sleeps).get("root", max_size=10)
    assert len(calls) == 4
    assert len(sleeps) == 3


@pytest.mark.parametrize("first", [503, 504, httpx.ReadError("connection reset"), httpx.RemoteProtocolError("closed")])
def test_post_and_delete_that_reached_the_server_are_never_retried(first: int | Exception) -> None:
    handler, calls = flaky([first], httpx.Response(200))
    sleeps: list[float] = []
    client = notary(handler, sleeps=sleeps)
    with pytest.raises(NetworkError):  # ServerError is a NetworkError
        client.publish({"root": b"{}"})
    assert calls == ["POST"]
    handler, calls = flaky([first], httpx.Response(200))
    with pytest.raises(NetworkError):
        notary(handler, sleeps=sleeps).delete()
    assert calls == ["DELETE"]
    assert sleeps == []


def test_a_refused_connection_is_retried_for_every_method() -> None:
    """Nothing was sent, so even a publish may go again (the transport itself never retries)."""
    sleeps: list[float] = []
    for call in (lambda c: c.publish({"root": b"{}"}), lambda c: c.delete()):
        handler, calls = flaky([httpx.ConnectError("[Errno 111] Connection refused")], httpx.Response(200))
        call(notary(handler, sleeps=sleeps))
        assert len(calls) == 2
    assert sleeps == [RETRY_BACKOFF[0]] * 2


def test_get_waits_as_long_as_retry_after_says_up_to_a_cap() -> None:
    handler, calls = flaky([httpx.Response(429, headers={"Retry-After": "7"})], httpx.Response(200, content=b"{}"))
    sleeps: list[float] = []
    assert notary(handler, sleeps=sleeps).get("root", max_size=10) == b"{}"
    assert sleeps == [7.0]
    handler, calls = flaky([httpx.Response(503, headers={"Retry-After": "86400"})], httpx.Response(200))
    sleeps.clear()
    notary(handler, sleeps=sleeps).get("root", max_size=10)
    assert sleeps == [30.0]


def test_4xx_is_not_retried() -> None:
    handler, calls = flaky([400], httpx.Response(200))
    with pytest.raises(ServerRejectedError):
        notary(handler).get("root", max_size=10)
    assert calls == ["GET"]


# --------------------------------------------------------------------------------------------
# With the token flow in front


def test_notary_client_behind_token_auth() -> None:
    """A token server + protected notary API: reads ask for pull, publishing for push,pull,
    each token is fetched once."""
    realm = "https://auth.example.com/token"
    granted: dict[str, str] = {}
    token_scopes: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example.com":
            scope = request.url.params["scope"]
            token_scopes.append(scope)
            granted[f"t{len(token_scopes)}"] = scope
            return httpx.Response(200, json={"token": f"t{len(token_scopes)}", "expires_in": 300})
        need = repository_scope(GUN, push=request.method != "GET")
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if granted.get(token) not in (need, repository_scope(GUN, push=True)):
            return httpx.Response(
                401,
                headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="notary",scope="{need}"'},
                json=envelope("UNAUTHORIZED", "authentication required"),
            )
        return httpx.Response(200, content=b"{}")

    client = notary(handler, auth=TokenAuth(Credentials("alice", "pw"), registry="registry.example.com:5000"))
    assert client.get("root", max_size=10) == b"{}"
    assert client.get("targets", max_size=10) == b"{}"
    client.publish({"targets": b"{}"})
    assert client.get("snapshot", max_size=10) == b"{}"
    assert token_scopes == [repository_scope(GUN), repository_scope(GUN, push=True)]


def test_every_human_hint_is_for_a_code_notary_api_knows():
    from trustkit.client.notary import _HINTS
    from trustkit.notary_api import ERROR_CODES

    assert _HINTS and set(_HINTS) <= set(ERROR_CODES)
