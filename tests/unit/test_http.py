"""trustkit.client.http: the plumbing the Notary client and the registry client share (TLS
failure detection, retry rules, capped reads, the error envelope, docker's certificate folders)."""

from __future__ import annotations

import gzip
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import peers
from trustkit.client.http import (
    MAX_RETRY_AFTER,
    RETRY_BACKOFF,
    ErrorEnvelope,
    describe_failure,
    error_envelope,
    is_tls_failure,
    may_retry,
    proxy_for,
    read_buffered,
    read_capped,
    retry_delay,
    tls_settings,
)
from trustkit.errors import OversizedError, TrustkitError


def caused_by(cause: BaseException, message: str = "") -> httpx.ConnectError:
    """What httpx raises: its error, caused by httpcore's, caused by the ssl module's."""
    try:
        try:
            raise cause
        except BaseException as inner:
            raise httpx.ConnectError(message or str(inner)) from inner
    except httpx.ConnectError as outer:
        return outer


# --------------------------------------------------------------------------------------------
# TLS failures: one heuristic for both clients


@pytest.mark.parametrize(
    "exc",
    [
        # An untrusted certificate, with its cause kept (real httpx) or only its text (a mock transport).
        caused_by(ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")),
        httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate"),
        # A handshake that failed for another reason: plain HTTP on the port, a refused client cert.
        caused_by(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1000)")),
        httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1000)"),
        httpx.ConnectError("[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required (_ssl.c:2580)"),
        httpx.ConnectError("EOF occurred in violation of protocol (_ssl.c:1006)"),
        caused_by(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), "connection closed"),
    ],
)
def test_tls_failures_are_recognised_however_they_arrive(exc: BaseException) -> None:
    assert is_tls_failure(exc)
    assert describe_failure(exc).startswith("TLS failure")
    assert not may_retry(exc, idempotent=True)  # it would fail the same way again


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ConnectError("[Errno -2] Name or service not known"),
        httpx.ReadTimeout("timed out"),
        caused_by(ConnectionResetError(104, "Connection reset by peer")),
    ],
)
def test_other_failures_are_not_tls_failures(exc: BaseException) -> None:
    assert not is_tls_failure(exc)


def test_what_may_be_retried() -> None:
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    broken = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    assert may_retry(refused, idempotent=False)  # nothing was sent
    assert may_retry(broken, idempotent=True)
    assert not may_retry(broken, idempotent=False)  # the server may have acted on it
    assert not may_retry(httpx.ReadError("reset"), idempotent=False)
    assert not may_retry(httpx.ConnectTimeout("timed out"), idempotent=True)
    assert not may_retry(httpx.ReadTimeout("timed out"), idempotent=True)


def test_retry_delay_follows_the_backoff_and_a_bounded_retry_after() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4, 9)] == [*RETRY_BACKOFF, RETRY_BACKOFF[-1], RETRY_BACKOFF[-1]]
    assert retry_delay(1, 3.0) == 3.0
    assert retry_delay(3, 0.1) == RETRY_BACKOFF[2]
    assert retry_delay(1, 1e9) == MAX_RETRY_AFTER


# --------------------------------------------------------------------------------------------
# Bodies


def endless(produced: list[int]) -> Iterator[bytes]:
    while True:
        produced[0] += 1
        yield b"x" * 1024


def streamed(content: bytes | Iterator[bytes], headers: dict[str, str] | None = None) -> httpx.Response:
    """A response as a client hands it out for streaming: its body not read yet."""
    chunks = iter([content]) if isinstance(content, bytes) else content  # bytes would be read at once

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks, headers=headers)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    return client.send(client.build_request("GET", "https://h.example.com/"), stream=True)


def test_read_capped_refuses_or_cuts_at_the_limit() -> None:
    produced = [0]
    with pytest.raises(OversizedError, match="the thing is larger than 10000 bytes"):
        read_capped(streamed(endless(produced)), 10_000, "the thing")
    assert produced[0] <= 11
    assert read_capped(streamed(endless([0])), 100, "x", truncate=True) == b"x" * 100
    with pytest.raises(OversizedError, match="announced 101"):
        read_capped(streamed(b"y" * 101, {"Content-Length": "101"}), 100, "x")


def test_read_buffered_keeps_the_body_where_httpx_reads_it_again() -> None:
    response = streamed(b'{"token":"t"}')
    assert read_buffered(response, 100, "token") == b'{"token":"t"}'
    assert response.read() == b'{"token":"t"}'  # httpx's own second read finds it
    assert response.content == b'{"token":"t"}'


def test_read_buffered_stops_an_endless_body() -> None:
    produced = [0]
    with pytest.raises(OversizedError, match="larger than 10000 bytes"):
        read_buffered(streamed(endless(produced)), 10_000, "token")
    assert produced[0] <= 11
    with pytest.raises(OversizedError):  # one that a mock transport had read already
        read_buffered(httpx.Response(200, content=b"z" * 101, headers={"Content-Length": "1"}), 100, "token")


def test_read_buffered_refuses_a_compressed_body() -> None:
    """A few KiB of gzip can decode to gigabytes; the cap counts wire bytes, so none is read."""
    bomb = gzip.compress(b"\0" * (10 << 20))
    with pytest.raises(TrustkitError, match="compressed"):
        read_buffered(streamed(bomb, {"Content-Encoding": "gzip"}), 1 << 20, "token")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"errors":[{"code":"VERSION","message":"m","detail":{"a":1}}]}', ErrorEnvelope("VERSION", "m", {"a": 1})),
        (b'{"errors":[{"code":7}]}', ErrorEnvelope("", "", None)),
        (b'{"errors":[]}', None),
        (b'{"errors":[{"code":"A"}],"errors":[]}', None),  # duplicate keys: not an envelope we trust
        (b"<html>502</html>", None),
        (b"\xff\xfe", None),
        (b"[" * 100_000, None),  # nesting that overflows a recursive parser
    ],
)
def test_error_envelope(body: bytes, expected: ErrorEnvelope | None) -> None:
    assert error_envelope(body) == expected


# --------------------------------------------------------------------------------------------
# Proxies and docker's certificate folders


def test_proxy_from_the_environment_but_never_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", "http://proxy.example.com:3128")
    monkeypatch.setenv("no_proxy", "internal.example.com")
    assert proxy_for("https://registry.example.com/v2/") == "http://proxy.example.com:3128"
    assert proxy_for("https://internal.example.com") is None
    assert proxy_for("https://127.0.0.1:5000") is None
    assert proxy_for("https://[::1]:4443") is None
    assert proxy_for("http://registry.example.com") is None  # no http_proxy set


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca, _ = peers.make_tls(tmp_path / "ca")
    cert, key = peers.make_tls(tmp_path / "client")
    return {"ca": ca, "cert": cert, "key": key}


def test_a_registry_also_reads_its_certs_d_folder(tmp_path: Path, pki: dict[str, Path]) -> None:
    certs_d = tmp_path / "certs.d" / "registry.example.com:5000"
    certs_d.mkdir(parents=True)
    shutil.copy(pki["ca"], certs_d / "ca.crt")
    shutil.copy(pki["cert"], certs_d / "client.cert")
    shutil.copy(pki["key"], certs_d / "client.key")
    context, pair = tls_settings(
        "https://registry.example.com:5000", config_dir=tmp_path / "cfg", certs_d=tmp_path / "certs.d"
    )
    assert "localhost" in [dict(x[0] for x in c["subject"]).get("commonName") for c in context.get_ca_certs()]
    assert pair == (certs_d / "client.cert", certs_d / "client.key")
    without, none = tls_settings("https://registry.example.com:5000", config_dir=tmp_path / "cfg")
    assert none is None and not any("localhost" in str(c["subject"]) for c in without.get_ca_certs())


def test_a_certificate_without_its_key_in_certs_d_is_an_error(tmp_path: Path, pki: dict[str, Path]) -> None:
    """docker refuses such a folder (ReadCertsDirectory); it used to be skipped in silence."""
    certs_d = tmp_path / "certs.d" / "registry.example.com"
    certs_d.mkdir(parents=True)
    shutil.copy(pki["cert"], certs_d / "client.cert")
    with pytest.raises(TrustkitError, match="no matching key client.key"):
        tls_settings("https://registry.example.com", config_dir=tmp_path, certs_d=tmp_path / "certs.d")


def test_a_given_ca_is_the_only_one_loaded(tmp_path: Path, pki: dict[str, Path]) -> None:
    """--tls-ca: that file's CA and nothing else (no system store, no certifi bundle, not the
    tls/<host>/ folder's CAs), so building the context parses one certificate."""
    tls_dir = tmp_path / "cfg" / "tls" / "notary.example.com"
    tls_dir.mkdir(parents=True)
    other, _ = peers.make_tls(tmp_path / "other")
    shutil.copy(other, tls_dir / "other.crt")
    context, _ = tls_settings("https://notary.example.com", str(pki["ca"]), config_dir=tmp_path / "cfg")
    assert len(context.get_ca_certs()) == 1
    assert context.cert_store_stats()["x509_ca"] == 1
