"""The registry endpoint is chosen by the client's first request (issue 15): ``https://`` first,
then the plain-HTTP fallback of an insecure (or loopback) registry; no ``GET /v2/`` probe of its
own, and requests sent meanwhile from other threads wait for the choice.  Driven through the
real RegistryClient over httpx's MockTransport: the failures injected (a refused connection, a
failed TLS handshake) are what a real registry on the other scheme produces; tests/interop and
test_lazy_imports push to the real docker-registry."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from trustkit.errors import NetworkError, NotFoundError
from trustkit.oci.registry import RegistryClient

DIGESTS = [f"sha256:{i:064x}" for i in range(8)]


class Registry:
    """Answers on plain HTTP only; https is refused the way the test says."""

    def __init__(self, https_failure: Exception | None = None, *, http_up: bool = True) -> None:
        self.https_failure = https_failure or httpx.ConnectError("[Errno 111] Connection refused")
        self.http_up = http_up
        self.seen: list[str] = []
        self.lock = threading.Lock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.seen.append(f"{request.method} {request.url.scheme} {request.url.path}")
        if request.url.scheme == "https":
            raise self.https_failure
        if not self.http_up:
            raise httpx.ConnectError("[Errno 111] Connection refused")
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Content-Length": "10"})
        return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "unknown"}]})


def client(registry: Registry) -> RegistryClient:
    http = httpx.Client(transport=httpx.MockTransport(registry.handle))
    return RegistryClient(
        "127.0.0.1:5000", http, "https://127.0.0.1:5000", fallbacks=["http://127.0.0.1:5000"], sleep=lambda _: None
    )


def test_the_first_request_chooses_the_endpoint_and_no_probe_is_sent():
    registry = Registry()
    with client(registry) as api:
        assert api.blob_size("team/app", DIGESTS[0]) == 10
        assert api.blob_size("team/app", DIGESTS[1]) == 10
    path = f"/v2/team/app/blobs/{DIGESTS[0]}"
    assert registry.seen == [f"HEAD https {path}", f"HEAD http {path}", f"HEAD http {path[:-1]}1"]


def test_parallel_first_requests_try_https_once():
    # what httpx raises when a plain-HTTP server receives a TLS handshake
    registry = Registry(httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1000)"))
    with client(registry) as api, ThreadPoolExecutor(max_workers=8) as pool:
        sizes = list(pool.map(lambda digest: api.blob_size("team/app", digest), DIGESTS))
    assert sizes == [10] * 8
    assert sum(line.startswith("HEAD https") for line in registry.seen) == 1
    assert sum(line.startswith("HEAD http ") for line in registry.seen) == 8
    assert not any("/v2/ " in line or line.endswith("/v2/") for line in registry.seen)


def test_an_error_status_still_chooses_the_endpoint_that_sent_it():
    registry = Registry()
    with client(registry) as api:
        with pytest.raises(NotFoundError):
            api.get_manifest("team/app", "v1")
        assert api.base_url == "http://127.0.0.1:5000"
        with pytest.raises(NotFoundError):
            api.get_manifest("team/app", "v2")
    assert [line.split()[1] for line in registry.seen] == ["https", "http", "http"]


def test_no_endpoint_answering_names_each_attempt():
    registry = Registry(http_up=False)
    with client(registry) as api, pytest.raises(NetworkError) as failure:
        api.blob_size("team/app", DIGESTS[0])
    message = str(failure.value)
    assert "cannot reach the registry 127.0.0.1:5000" in message
    assert "https://127.0.0.1:5000: " in message and "http://127.0.0.1:5000: " in message
    assert len(registry.seen) == 2  # one try each: a refused endpoint is not retried with backoff
