"""Registry credentials never leave the registry (trustkit issue 9, item 7).

Three hosts, each behind its own ``httpx.MockTransport`` on one ``httpx.Client``, as in real use:

* ``registry.test``: the distribution API; it challenges with ``Bearer realm="https://auth.test/token"``
  and answers blob reads with a ``307`` to storage on ``cdn.test``;
* ``auth.test``: the registry's token server (``alice:secret`` gets a token);
* ``cdn.test``: blob storage, which may itself answer ``401`` with a challenge of its own.

Every request each host receives is recorded, so the tests assert exactly which credentials went where.
"""

from __future__ import annotations

import base64
import hashlib
import io

import httpx
import pytest

from trustkit.client.auth import Credentials
from trustkit.errors import NotAuthorizedError
from trustkit.oci.registry import RegistryClient, registry_auth

REGISTRY = "registry.test"
BLOB = b"layer bytes"
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
REPO = "team/app"
ALICE = "Basic " + base64.b64encode(b"alice:secret").decode()
TOKEN = "registry-token"


ALICE_LOGIN = Credentials("alice", "secret")


class Hosts:
    """The registry, its token server and a storage host; ``seen[host]`` lists (method, path, Authorization)."""

    def __init__(self, cdn_challenge: str | None = None) -> None:
        self.cdn_challenge = cdn_challenge  # a WWW-Authenticate the storage host answers with, if any
        self.seen: dict[str, list[tuple[str, str, str | None]]] = {}

    def client(self, credentials: Credentials | None = ALICE_LOGIN) -> RegistryClient:
        mounts = {
            f"https://{host}": httpx.MockTransport(handler)
            for host, handler in ((REGISTRY, self.registry), ("auth.test", self.auth), ("cdn.test", self.cdn))
        }
        http = httpx.Client(
            transport=httpx.MockTransport(self.elsewhere), mounts=mounts, auth=registry_auth(REGISTRY, credentials)
        )
        return RegistryClient(REGISTRY, http, f"https://{REGISTRY}", sleep=lambda s: None)

    def record(self, request: httpx.Request) -> str | None:
        header = request.headers.get("authorization")
        self.seen.setdefault(request.url.host, []).append((request.method, request.url.path, header))
        return header

    def registry(self, request: httpx.Request) -> httpx.Response:
        if self.record(request) != f"Bearer {TOKEN}":
            return httpx.Response(
                401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.test/token",service="registry.test"'}
            )
        if request.url.path == "/v2/":
            return httpx.Response(200, json={})
        if request.url.path == f"/v2/{REPO}/blobs/{DIGEST}":
            return httpx.Response(307, headers={"Location": f"https://cdn.test/store/{DIGEST}?sig=abc"})
        if request.url.path == f"/v2/{REPO}/blobs/uploads/":
            return httpx.Response(202, headers={"Location": "https://cdn.test/upload/1"})
        return httpx.Response(404)

    def auth(self, request: httpx.Request) -> httpx.Response:
        if self.record(request) not in (ALICE, None):  # anonymous gets a (pull) token too
            return httpx.Response(401)
        return httpx.Response(200, json={"token": TOKEN, "expires_in": 300})

    def cdn(self, request: httpx.Request) -> httpx.Response:
        self.record(request)
        if request.url.path == "/token":
            return httpx.Response(200, json={"token": "cdn-token"})
        if self.cdn_challenge is not None:
            return httpx.Response(401, headers={"WWW-Authenticate": self.cdn_challenge})
        body = iter([BLOB] if request.method == "GET" else [])  # streamed, as a real body is
        return httpx.Response(200, content=body, headers={"Content-Length": str(len(BLOB))})

    def elsewhere(self, request: httpx.Request) -> httpx.Response:
        self.record(request)
        return httpx.Response(599)

    def headers_at(self, host: str) -> set[str | None]:
        return {header for _, _, header in self.seen.get(host, [])}


def test_blob_reads_follow_the_storage_redirect_without_any_credentials() -> None:
    hosts = Hosts()
    with hosts.client() as client:
        assert client.blob_size(REPO, DIGEST) == len(BLOB)  # HEAD 307 -> storage, as docker follows it
        reader = client.open_blob(REPO, DIGEST)
        assert reader.read() == BLOB
        reader.close()
    assert hosts.headers_at("cdn.test") == {None}  # neither the Bearer token nor Basic credentials
    assert [m for m, _, _ in hosts.seen["cdn.test"]] == ["HEAD", "GET"]
    assert hosts.headers_at("auth.test") == {ALICE}  # the password went to the registry's own realm only
    assert hosts.headers_at(REGISTRY) == {None, f"Bearer {TOKEN}"}
    assert "elsewhere" not in hosts.seen


@pytest.mark.parametrize(
    "challenge",
    [
        'Bearer realm="https://cdn.test/token",service="cdn"',
        'Bearer realm="https://auth.test/token",service="registry.test"',  # even naming the registry's own realm
        'Basic realm="storage"',
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_challenge_from_the_storage_host_gets_no_stored_credentials(challenge: str, method: str) -> None:
    hosts = Hosts(cdn_challenge=challenge)
    with hosts.client() as client, pytest.raises(NotAuthorizedError) as info:
        client.ping()  # the registry's token is now cached and goes out with the next request
        if method == "GET":
            client.open_blob(REPO, DIGEST)
        else:
            client.blob_size(REPO, DIGEST)
    assert hosts.headers_at("cdn.test") == {None}
    assert [path for _, path, _ in hosts.seen["cdn.test"]] == [f"/store/{DIGEST}"]  # its realm was never asked
    message = str(info.value)
    assert "cdn.test" in message and "redirect" in message
    # the registry's token server saw exactly the one request the registry's own challenge asked for
    assert [header for _, _, header in hosts.seen["auth.test"]] == [ALICE]


def test_an_upload_location_on_another_host_gets_no_stored_credentials() -> None:
    hosts = Hosts(cdn_challenge='Bearer realm="https://cdn.test/token",service="cdn"')
    with hosts.client() as client, pytest.raises(NotAuthorizedError) as info:
        client.upload_blob(REPO, DIGEST, len(BLOB), lambda: io.BytesIO(BLOB))
    assert hosts.headers_at("cdn.test") == {None}
    assert "/token" not in [path for _, path, _ in hosts.seen["cdn.test"]]
    assert hosts.headers_at("auth.test") == {ALICE}
    assert "cdn.test" in str(info.value)


def test_anonymous_client_does_not_answer_a_storage_challenge_either() -> None:
    hosts = Hosts(cdn_challenge='Bearer realm="https://cdn.test/token",service="cdn"')
    with hosts.client(credentials=None) as client, pytest.raises(NotAuthorizedError) as info:
        client.ping()
        client.open_blob(REPO, DIGEST)
    assert [path for _, path, _ in hosts.seen["cdn.test"]] == [f"/store/{DIGEST}"]
    assert hosts.headers_at("auth.test") == {None}
    assert "cdn.test" in str(info.value)
