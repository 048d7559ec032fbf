"""trustkit.client.auth: the registry token flow (docker's config.json: test_docker_config.py).

The token flow runs against an in-process token server + protected API behind an
``httpx.MockTransport``: the same ``httpx.Client`` carries the token requests, as in real use.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterator
from urllib.parse import parse_qs

import httpx
import pytest

from trustkit.client.auth import (
    SCOPE_EXTENSION,
    Challenge,
    TokenAuth,
    parse_www_authenticate,
    repository_scope,
)
from trustkit.client.docker_config import Credentials
from trustkit.errors import NotAuthorizedError, ServerError

REALM = "https://auth.example.com/token"
SERVICE = "notary.example.com"
API = "https://notary.example.com"
GUN = "registry.example.com/team/app"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --------------------------------------------------------------------------------------------
# A tiny token server and protected API


class FakeRegistry:
    """Token server at REALM, API at API.

    Users: ``alice:secret``.  Identity token ``refresh-xyz`` belongs to alice.  Anonymous
    tokens get ``pull`` only.  The API answers 401 + a Bearer challenge naming the scope the
    route needs (GET: pull; anything else: push,pull), then 200 for a token that grants it.
    """

    def __init__(self, *, expires_in: int | None = 300, token_field: str = "token") -> None:
        self.expires_in = expires_in
        self.token_field = token_field
        self.token_requests: list[httpx.Request] = []
        self.api_auth: list[str | None] = []  # Authorization header of each API request, in order
        self.grants: dict[str, set[str]] = {}  # token -> scopes granted
        self.challenge_scope = True
        self.reject_all_tokens = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example.com":
            return self._token(request)
        return self._api(request)

    def _who(self, request: httpx.Request) -> str | None | bool:
        header = request.headers.get("authorization")
        if header is None:
            return None
        scheme, _, value = header.partition(" ")
        if scheme != "Basic" or base64.b64decode(value).decode() != "alice:secret":
            return False
        return "alice"

    def _token(self, request: httpx.Request) -> httpx.Response:
        self.token_requests.append(request)
        if request.method == "POST":
            form = parse_qs(request.content.decode())
            if form.get("refresh_token") != ["refresh-xyz"]:
                return httpx.Response(401, json={"details": "bad refresh token"})
            user = "alice"
            scopes = form.get("scope", [""])[0].split()
        else:
            user = self._who(request)
            if user is False:
                return httpx.Response(401, json={"details": "incorrect username or password"})
            scopes = request.url.params.get_list("scope")
        granted = set()
        for scope in scopes:
            kind, name, actions = scope.split(":")
            allowed = actions.split(",") if user else ["pull"]
            granted.update(f"{kind}:{name}:{a}" for a in actions.split(",") if a in allowed)
        token = f"tok-{len(self.token_requests)}"
        self.grants[token] = granted
        body: dict[str, object] = {self.token_field: token}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return httpx.Response(200, json=body)

    def _api(self, request: httpx.Request) -> httpx.Response:
        self.api_auth.append(request.headers.get("authorization"))
        actions = ["pull"] if request.method == "GET" else ["push", "pull"]
        scope = repository_scope(GUN, push=request.method != "GET")
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        granted = self.grants.get(token or "", set())
        if token is None or self.reject_all_tokens or not all(f"repository:{GUN}:{a}" in granted for a in actions):
            challenge = f'Bearer realm="{REALM}",service="{SERVICE}"'
            if self.challenge_scope:
                challenge += f',scope="{scope}"'
            if token is not None:
                challenge += ',error="insufficient_scope"'
            return httpx.Response(
                401,
                headers={"WWW-Authenticate": challenge},
                json={"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
            )
        return httpx.Response(200, content=b"ok " + request.method.encode())


def client_for(fake: FakeRegistry, auth: TokenAuth) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(fake.handler), auth=auth)


def basic_of(request: httpx.Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None or not header.startswith("Basic "):
        return None
    return base64.b64decode(header[6:]).decode()


# --------------------------------------------------------------------------------------------
# WWW-Authenticate parsing


def test_parse_bearer_challenge_with_commas_inside_quotes() -> None:
    header = (
        'Bearer realm="https://auth.example.com/token?a=1,b=2",service="svc",'
        f'scope="repository:{GUN}:push,pull",error="insufficient_scope"'
    )
    assert parse_www_authenticate(header) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.example.com/token?a=1,b=2",
                "service": "svc",
                "scope": f"repository:{GUN}:push,pull",
                "error": "insufficient_scope",
            },
        )
    ]


def test_parse_several_challenges_in_one_header_and_across_headers() -> None:
    found = parse_www_authenticate(['Basic realm="r, with comma", Bearer realm="x",service=s', "Negotiate"])
    assert [c.scheme for c in found] == ["basic", "bearer", "negotiate"]
    assert found[0].params == {"realm": "r, with comma"}
    assert found[1].params == {"realm": "x", "service": "s"}


def test_parse_escapes_spaces_token68_and_unquoted_urls() -> None:
    found = parse_www_authenticate('BEARER Realm = "say \\"hi\\"" , Scope=https://x/y')
    assert found == [Challenge("bearer", {"realm": 'say "hi"', "scope": "https://x/y"})]
    assert parse_www_authenticate("Basic dXNlcjpwdw==, Bearer realm=r") == [
        Challenge("basic", {"token68": "dXNlcjpwdw=="}),
        Challenge("bearer", {"realm": "r"}),
    ]


@pytest.mark.parametrize(
    "garbage", ["", " , ,", '"', "=", 'Bearer realm="unterminated', "Bearer ,,,realm=", "\x00\x01"]
)
def test_parse_garbage_never_raises(garbage: str) -> None:
    for challenge in parse_www_authenticate(garbage):
        assert isinstance(challenge.params, dict)


def test_repository_scope() -> None:
    assert repository_scope(GUN) == f"repository:{GUN}:pull"
    assert repository_scope(GUN, push=True) == f"repository:{GUN}:push,pull"


# --------------------------------------------------------------------------------------------
# Token flow


def test_token_flow_with_basic_credentials() -> None:
    fake = FakeRegistry()
    with client_for(fake, TokenAuth(Credentials("alice", "secret"))) as client:
        response = client.get(f"{API}/v2/{GUN}/_trust/tuf/root.json")
    assert response.status_code == 200
    assert response.content == b"ok GET"
    [token_request] = fake.token_requests
    assert token_request.method == "GET"
    assert str(token_request.url).startswith(REALM + "?")
    assert token_request.url.params.get_list("service") == [SERVICE]
    assert token_request.url.params.get_list("scope") == [f"repository:{GUN}:pull"]
    assert token_request.url.params.get_list("account") == ["alice"]
    assert basic_of(token_request) == "alice:secret"
    # First the challenge, then the retry with the token.
    assert fake.api_auth == [None, "Bearer tok-1"]


def test_anonymous_token() -> None:
    fake = FakeRegistry()
    with client_for(fake, TokenAuth(None)) as client:
        assert client.get(f"{API}/v2/{GUN}/_trust/tuf/root.json").status_code == 200
    [token_request] = fake.token_requests
    assert "authorization" not in token_request.headers
    assert "account" not in token_request.url.params
    assert token_request.url.params["scope"] == f"repository:{GUN}:pull"


def test_identity_token_uses_the_oauth_refresh_post() -> None:
    fake = FakeRegistry(token_field="access_token")
    auth = TokenAuth(Credentials("", "", identity_token="refresh-xyz"))
    with client_for(fake, auth) as client:
        assert client.post(f"{API}/v2/{GUN}/_trust/tuf/", content=b"x").status_code == 200
    [token_request] = fake.token_requests
    assert token_request.method == "POST"
    assert token_request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in token_request.headers
    assert parse_qs(token_request.content.decode()) == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["refresh-xyz"],
        "service": [SERVICE],
        "scope": [f"repository:{GUN}:push,pull"],
        "client_id": ["trustkit"],
    }


def test_the_challenge_scope_is_honoured_for_writes() -> None:
    fake = FakeRegistry()
    with client_for(fake, TokenAuth(Credentials("alice", "secret"))) as client:
        assert client.get(f"{API}/v2/{GUN}/_trust/tuf/root.json").status_code == 200
        # The pull token does not cover a POST: the server's push,pull challenge gets a new token.
        assert client.post(f"{API}/v2/{GUN}/_trust/tuf/", content=b"x").status_code == 200
    scopes = [r.url.params["scope"] for r in fake.token_requests]
    assert scopes == [f"repository:{GUN}:pull", f"repository:{GUN}:push,pull"]


def test_scope_from_the_request_when_the_challenge_names_none() -> None:
    fake = FakeRegistry()
    fake.challenge_scope = False
    with client_for(fake, TokenAuth(Credentials("alice", "secret"))) as client:
        response = client.get(
            f"{API}/v2/{GUN}/_trust/tuf/root.json", extensions={SCOPE_EXTENSION: repository_scope(GUN)}
        )
    assert response.status_code == 200
    assert fake.token_requests[0].url.params["scope"] == f"repository:{GUN}:pull"


def test_token_is_cached_across_calls() -> None:
    fake = FakeRegistry()
    auth = TokenAuth(Credentials("alice", "secret"))
    with client_for(fake, auth) as client:
        for role in ("root", "targets", "snapshot", "timestamp"):
            assert client.get(f"{API}/v2/{GUN}/_trust/tuf/{role}.json").status_code == 200
    assert len(fake.token_requests) == 1
    assert auth.token_requests == 1
    # Only the first call met a challenge; the others carried the cached token up front.
    assert fake.api_auth == [None] + ["Bearer tok-1"] * 4


def test_token_expires_after_expires_in() -> None:
    fake = FakeRegistry(expires_in=120)
    now = [1000.0]
    auth = TokenAuth(Credentials("alice", "secret"), clock=lambda: now[0])
    with client_for(fake, auth) as client:
        client.get(f"{API}/v2/{GUN}/_trust/tuf/root.json")
        now[0] += 100
        client.get(f"{API}/v2/{GUN}/_trust/tuf/root.json")
        assert len(fake.token_requests) == 1
        now[0] += 30  # 130 s after issue: expired
        client.get(f"{API}/v2/{GUN}/_trust/tuf/root.json")
    assert len(fake.token_requests) == 2


def test_missing_expires_in_means_60_seconds() -> None:
    fake = FakeRegistry(expires_in=None)
    now = [0.0]
    auth = TokenAuth(None, clock=lambda: now[0])
    with client_for(fake, auth) as client:
        client.get(f"{API}/v2/{GUN}/_trust/tuf/root.json")
        now[0] = 50
        client.get(f"{API}/v2/{GUN}/_trust/tuf/root.json")
        assert len(fake.token_requests) == 1
        now[0] = 61
        client.get(f"{API}/v2/{GUN}/_trust/tuf/root.json")
    assert len(fake.token_requests) == 2


def test_a_rejected_cached_token_is_replaced() -> None:
    fake = FakeRegistry()
    with client_for(fake, TokenAuth(Credentials("alice", "secret"))) as client:
        client.get(f"{API}/v2/{GUN}/_trust/tuf/root.json")
        fake.grants.clear()  # the server forgot every token (restart, revocation)
        assert client.get(f"{API}/v2/{GUN}/_trust/tuf/root.json").status_code == 200
    assert len(fake.token_requests) == 2


def test_401_after_the_token_is_not_authorized() -> None:
    fake = FakeRegistry()
    fake.reject_all_tokens = True
    with (
        client_for(fake, TokenAuth(Credentials("alice", "secret"), registry="registry.example.com")) as client,
        pytest.raises(NotAuthorizedError) as info,
    ):
        client.get(f"{API}/v2/{GUN}/_trust/tuf/root.json")
    text = str(info.value)
    assert "registry.example.com" in text
    assert "trustkit login" in text and "docker login" in text
    assert '"alice"' in text


def test_anonymous_pull_only_token_cannot_push() -> None:
    fake = FakeRegistry()
    with client_for(fake, TokenAuth(None)) as client, pytest.raises(NotAuthorizedError, match="anonymous"):
        client.post(f"{API}/v2/{GUN}/_trust/tuf/", content=b"x")


def test_token_server_refusing_the_password() -> None:
    fake = FakeRegistry()
    with (
        client_for(fake, TokenAuth(Credentials("alice", "wrong"))) as client,
        pytest.raises(NotAuthorizedError, match="token server.*refused") as info,
    ):
        client.get(f"{API}/v2/{GUN}/_trust/tuf/root.json")
    assert "notary.example.com" in str(info.value)  # the registry defaults to the request host


def test_token_server_refusing_the_identity_token() -> None:
    fake = FakeRegistry()
    with (
        client_for(fake, TokenAuth(Credentials("", "", identity_token="stale"))) as client,
        pytest.raises(NotAuthorizedError, match="identity token"),
    ):
        client.get(f"{API}/v2/{GUN}/_trust/tuf/root.json")


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(500), "HTTP 500"),
        (httpx.Response(200, content=b"<html>"), "not JSON"),
        (httpx.Response(200, json={"nothing": "here"}), "no token"),
        (httpx.Response(200, content=b" " * (2 << 20)), "more than"),
    ],
)
def test_token_server_nonsense_is_a_server_error(response: httpx.Response, message: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example.com":
            return response
        return httpx.Response(401, headers={"WWW-Authenticate": f'Bearer realm="{REALM}",service="s"'})

    with (
        httpx.Client(transport=httpx.MockTransport(handler), auth=TokenAuth(None)) as client,
        pytest.raises(ServerError, match=message),
    ):
        client.get(f"{API}/v2/")


def streaming_token_server(token_body: Iterator[bytes], headers: dict[str, str] | None = None) -> httpx.MockTransport:
    """The API wants a token; the token server streams its answer (no Content-Length), as a
    real server does: httpx then reads that answer again itself after the auth flow saw it."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example.com":
            return httpx.Response(200, content=token_body, headers=headers)
        if request.headers.get("authorization") == "Bearer streamed-token":
            return httpx.Response(200, content=b"ok")
        return httpx.Response(401, headers={"WWW-Authenticate": f'Bearer realm="{REALM}",service="s"'})

    return httpx.MockTransport(handler)


def test_a_streamed_token_answer_is_read_through_httpx() -> None:
    body = iter([b'{"token":', b'"streamed-token","expires_in":300}'])
    with httpx.Client(transport=streaming_token_server(body), auth=TokenAuth(None)) as client:
        response = client.get(f"{API}/v2/")
    assert response.status_code == 200 and response.content == b"ok"
    token_answer = next(r for r in response.history if r.request.url.host == "auth.example.com")
    assert token_answer.content == b'{"token":"streamed-token","expires_in":300}'  # httpx's own read found it


def test_an_endless_token_answer_is_cut_off() -> None:
    produced = [0]

    def endless() -> Iterator[bytes]:
        while True:
            produced[0] += 1
            yield b" " * 65536

    with (
        httpx.Client(transport=streaming_token_server(endless()), auth=TokenAuth(None)) as client,
        pytest.raises(ServerError, match="more than"),
    ):
        client.get(f"{API}/v2/")
    assert produced[0] <= 17  # 1 MiB and one chunk past it


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        # A token answer is read capped on the wire; gzip could decode to far more, so it is refused.
        (gzip.compress(b'{"token":"streamed-token"}'), {"Content-Encoding": "gzip"}, "compressed"),
        # Nesting that overflows a recursive JSON parser is an answer that is not JSON, not a crash.
        (b"[" * 200_000, None, "not JSON"),
    ],
)
def test_hostile_token_answers_are_server_errors(body: bytes, headers: dict[str, str] | None, message: str) -> None:
    with (
        httpx.Client(transport=streaming_token_server(iter([body]), headers), auth=TokenAuth(None)) as client,
        pytest.raises(ServerError, match=message),
    ):
        client.get(f"{API}/v2/")


def test_the_token_request_asks_for_an_uncompressed_answer() -> None:
    fake = FakeRegistry()
    with client_for(fake, TokenAuth(Credentials("alice", "secret"))) as client:
        client.get(f"{API}/v2/{GUN}/_trust/tuf/root.json")
    assert [r.headers.get("accept-encoding") for r in fake.token_requests] == ["identity"]


def test_credentials_are_never_sent_to_a_plain_http_realm() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.host != "evil.example.com", "credentials leaked"
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="http://evil.example.com/t"'})

    with (
        httpx.Client(transport=httpx.MockTransport(handler), auth=TokenAuth(Credentials("alice", "secret"))) as client,
        pytest.raises(NotAuthorizedError, match="not https"),
    ):
        client.get(f"{API}/v2/")


def test_basic_challenge_sends_basic_credentials_and_remembers() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(basic_of(request))
        if basic_of(request) == "alice:secret":
            return httpx.Response(200)
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="registry"'})

    with httpx.Client(transport=httpx.MockTransport(handler), auth=TokenAuth(Credentials("alice", "secret"))) as client:
        assert client.get(f"{API}/v2/").status_code == 200
        assert client.get(f"{API}/v2/").status_code == 200
    assert seen == [None, "alice:secret", "alice:secret"]


def test_basic_challenge_with_wrong_password_is_not_authorized() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="registry"'})

    with (
        httpx.Client(transport=httpx.MockTransport(handler), auth=TokenAuth(Credentials("alice", "nope"))) as client,
        pytest.raises(NotAuthorizedError, match="trustkit login"),
    ):
        client.get(f"{API}/v2/")


def test_basic_challenge_without_credentials_returns_the_401() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="registry"'})

    with httpx.Client(transport=httpx.MockTransport(handler), auth=TokenAuth(None)) as client:
        assert client.get(f"{API}/v2/").status_code == 401


def test_token_requests_go_through_the_same_client() -> None:
    """The token request is yielded from the auth flow, so the client's transport (and so its
    TLS settings) carries it: the MockTransport sees it."""
    fake = FakeRegistry()
    seen_hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen_hosts.append(request.url.host)
        return fake.handler(request)

    with httpx.Client(transport=httpx.MockTransport(handler), auth=TokenAuth(None)) as client:
        client.get(f"{API}/v2/{GUN}/_trust/tuf/root.json")
    assert seen_hosts == ["notary.example.com", "auth.example.com", "notary.example.com"]
