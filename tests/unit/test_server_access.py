"""Who may see what on the trust server, built the way ``trustkit server`` builds it
(``ServerConfig`` -> ``build_app``) and driven in-process: the web page under every ``--auth``
mode, ``--public-read``, the rate limit on failed logins, and the timing of unknown users."""

from __future__ import annotations

import asyncio
import json
import os
import time
import warnings
from pathlib import Path

import bcrypt
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from simulator import NOW, Simulator
from trustkit.errors import TrustkitError
from trustkit.roles import ROOT, SNAPSHOT, TIMESTAMP
from trustkit.server.auth import (
    HtpasswdTokenIssuer,
    LoginThrottle,
    client_address,
    generate_token_keypair,
    libtrust_key_id,
)
from trustkit.server.config import ServerConfig, build_app, prepare
from trustkit.server.storage import Storage

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette 1.x prefers httpx2 for its TestClient; plain httpx works
    from starlette.testclient import TestClient

OPEN = "registry.example.com/team/open"
SECRET = "registry.example.com/team/secret"
USERS = {"alice": "alice-password", "root": "root-password"}
SERVICE = "trustkit"


# ---- helpers


def htpasswd_file(path: Path, users: dict[str, str], rounds: int = 4) -> Path:
    path.write_text(
        "".join(f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds)).decode()}\n" for user, pw in users.items())
    )
    return path


def publish(database: str) -> dict[str, str]:
    """OPEN and SECRET with one signed tag each; returns each one's digest (hex)."""
    storage = Storage(database)
    digests = {}
    try:
        for gun in (OPEN, SECRET):
            sim = Simulator(gun)
            digests[gun] = sim.add_target("v1", f"manifest of {gun}".encode()).sha256_hex
            sim.publish()
            files = [(role, 1, sim.current(role)) for role in [ROOT, *sorted(sim.targets), SNAPSHOT, TIMESTAMP]]
            storage.update_many(gun, files, now=NOW)
    finally:
        storage.close()
    return digests


@pytest.fixture
def server(tmp_path, monkeypatch):
    """``server(**settings)``: a TestClient on the app ``trustkit server`` would build, with
    OPEN and SECRET published; ``server.digests`` holds their tags' digests."""
    for name in list(os.environ):
        if name.startswith("TRUSTKIT_SERVER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRUSTKIT_SERVER_PASSPHRASE", "access-test-passphrase")
    database = f"sqlite:///{tmp_path / 'server.db'}"
    digests = publish(database)
    clients: list[TestClient] = []

    def make(address: str = "10.0.0.1", **settings) -> TestClient:
        config = ServerConfig.load(None, {"database": database, **settings})
        prepare(config)  # as `trustkit server` does before its workers build the app (the token key)
        client = TestClient(build_app(config), client=(address, 40000))
        client.__enter__()
        client.digests = digests  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def htpasswd_settings(tmp_path: Path, **more) -> dict:
    return {
        "auth": "htpasswd",
        "htpasswd": str(htpasswd_file(tmp_path / "htpasswd", USERS)),
        "admins": ["root"],
        **more,
    }


def shows(page: httpx.Response, gun: str) -> bool:
    return gun in page.text


def token_for(client: TestClient, scope: str, auth: tuple[str, str] | None = None) -> httpx.Response:
    return client.get("/auth/token", params={"service": SERVICE, "scope": scope}, auth=auth)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


# ---- the web page, per --auth mode


def test_the_page_follows_htpasswd_auth(server, tmp_path):
    open_client = server(auth="none")
    assert open_client.get("/").status_code == 200 and shows(open_client.get("/"), SECRET)  # --auth none: unchanged

    client = server(**htpasswd_settings(tmp_path))
    digest = client.digests[SECRET]
    for path in ("/", f"/repositories/{SECRET}", "/repositories/registry.example.com/team/unknown"):
        anonymous = client.get(path)
        assert anonymous.status_code == 401, path
        assert anonymous.headers["www-authenticate"] == 'Basic realm="trustkit"'
        assert anonymous.json()["errors"][0]["code"] == "UNAUTHORIZED"
        assert SECRET not in anonymous.text and digest not in anonymous.text
        wrong = client.get(path, auth=("alice", "not-her-password"))
        assert wrong.status_code == 401 and digest not in wrong.text
        assert client.get(path, auth=("mallory", USERS["alice"])).status_code == 401

    index = client.get("/", auth=("alice", USERS["alice"]))  # what a browser sends after the dialog
    assert index.status_code == 200 and shows(index, OPEN) and shows(index, SECRET)
    page = client.get(f"/repositories/{SECRET}", auth=("alice", USERS["alice"]))
    assert page.status_code == 200 and digest in page.text


def test_the_page_shows_only_what_a_bearer_token_may_pull(server, tmp_path):
    client = server(**htpasswd_settings(tmp_path))
    token = token_for(client, f"repository:{OPEN}:pull", auth=("alice", USERS["alice"])).json()["token"]
    index = client.get("/", headers=bearer(token))
    assert index.status_code == 200 and shows(index, OPEN) and not shows(index, SECRET)
    assert client.get(f"/repositories/{OPEN}", headers=bearer(token)).status_code == 200
    hidden = client.get(f"/repositories/{SECRET}", headers=bearer(token))
    assert hidden.status_code == 404 and client.digests[SECRET] not in hidden.text
    # the same answer as a repository that does not exist: the name is not confirmed
    missing = client.get("/repositories/registry.example.com/team/nothing", headers=bearer(token))
    assert missing.status_code == 404
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert client.get("/", headers=bearer(forged)).status_code == 401


@pytest.fixture
def token_issuer(tmp_path):
    """A token service's key and its certificate in a file, as ``--auth token`` is given."""
    key_pem, cert_pem = generate_token_keypair("external-issuer")
    (tmp_path / "token-ca.pem").write_bytes(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)

    def sign(access: list[dict], **claims) -> str:
        now = int(time.time())
        body = {
            "iss": "issuer.example",
            "aud": SERVICE,
            "sub": "bob",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "access": access,
            **claims,
        }
        return jwt.encode(body, key, algorithm="ES256", headers={"kid": libtrust_key_id(key)})

    settings = {
        "auth": "token",
        "token_realm": "https://auth.example/token",
        "token_issuer": "issuer.example",
        "token_root_certs": str(tmp_path / "token-ca.pem"),
    }
    return sign, settings


def test_the_page_follows_token_auth(server, token_issuer):
    sign, settings = token_issuer
    client = server(**settings)
    anonymous = client.get(f"/repositories/{OPEN}")
    assert anonymous.status_code == 401 and client.digests[OPEN] not in anonymous.text
    assert anonymous.headers["www-authenticate"] == (
        f'Bearer realm="https://auth.example/token",service="{SERVICE}",scope="repository:{OPEN}:pull"'
    )
    assert client.get("/").status_code == 401
    assert client.get("/", auth=("alice", USERS["alice"])).status_code == 401  # no passwords here

    token = sign([{"type": "repository", "name": OPEN, "actions": ["pull"]}])
    index = client.get("/", headers=bearer(token))
    assert index.status_code == 200 and shows(index, OPEN) and not shows(index, SECRET)
    assert client.get(f"/repositories/{OPEN}", headers=bearer(token)).status_code == 200
    assert client.get(f"/repositories/{SECRET}", headers=bearer(token)).status_code == 404
    push_only = sign([{"type": "repository", "name": SECRET, "actions": ["push"]}])
    assert not shows(client.get("/", headers=bearer(push_only)), SECRET)
    everything = sign([{"type": "repository", "name": gun, "actions": ["*"]} for gun in (OPEN, SECRET)])
    assert shows(client.get("/", headers=bearer(everything)), SECRET)

    expired = sign([{"type": "repository", "name": OPEN, "actions": ["pull"]}], exp=int(time.time()) - 3600)
    refused = client.get("/", headers=bearer(expired))
    assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]


# ---- --public-read


def test_public_read_lets_anonymous_clients_pull_and_nothing_more(server, tmp_path):
    closed = server(**htpasswd_settings(tmp_path))  # without it, reads need a login (as before)
    answer = token_for(closed, f"repository:{OPEN}:pull")
    assert answer.status_code == 401 and "token" not in answer.json()
    assert closed.get(f"/v2/{OPEN}/_trust/tuf/root.json").status_code == 401

    client = server(**htpasswd_settings(tmp_path, public_read=True))
    index = client.get("/")
    assert index.status_code == 200 and shows(index, OPEN) and shows(index, SECRET)
    assert client.digests[SECRET] in client.get(f"/repositories/{SECRET}").text
    assert client.get(f"/v2/{SECRET}/_trust/tuf/root.json").status_code == 200  # no token needed to read

    # notary's read-only commands ask for a token without credentials: pull, whatever was asked
    answer = token_for(client, f"repository:{SECRET}:push,pull,*,admin")
    assert answer.status_code == 200
    token = answer.json()["token"]
    assert claims_of(token)["access"] == [{"type": "repository", "name": SECRET, "actions": ["pull"]}]
    assert "sub" not in claims_of(token)
    assert client.get(f"/v2/{SECRET}/_trust/tuf/targets.json", headers=bearer(token)).status_code == 200
    assert (
        token_for(client, "registry:catalog:*").json()["token"]
        and not claims_of(token_for(client, "registry:catalog:*").json()["token"])["access"]
    )

    # writes still need a login, with or without the anonymous token
    for headers in ({}, bearer(token)):
        assert client.post(f"/v2/{SECRET}/_trust/tuf/", headers=headers).status_code == 401
        assert client.delete(f"/v2/{SECRET}/_trust/tuf/", headers=headers).status_code == 401
        assert client.post(f"/v2/{SECRET}/_trust/tuf/snapshot.key", headers=headers).status_code == 401
        assert (
            client.put(f"/v2/{SECRET}/_trust/settings", content=b'{"immutable": true}', headers=headers).status_code
            == 401
        )
    assert client.get("/v2/").status_code == 401  # the catalog is not a repository
    # credentials that are sent are checked: a wrong password is not quietly made anonymous
    assert token_for(client, f"repository:{SECRET}:pull", auth=("alice", "wrong")).status_code == 401
    assert client.get("/", auth=("alice", "wrong")).status_code == 401
    pushed = token_for(client, f"repository:{SECRET}:push,pull", auth=("alice", USERS["alice"])).json()["token"]
    assert claims_of(pushed)["access"][0]["actions"] == ["push", "pull"]


def test_public_read_with_an_external_token_service(server, token_issuer):
    sign, settings = token_issuer
    client = server(**settings, public_read=True)
    assert shows(client.get("/"), SECRET)
    assert client.get(f"/v2/{SECRET}/_trust/tuf/root.json").status_code == 200
    assert client.post(f"/v2/{SECRET}/_trust/tuf/").status_code == 401
    garbage = client.get(f"/v2/{SECRET}/_trust/tuf/root.json", headers=bearer("not.a.token"))
    assert garbage.status_code == 401


def test_public_read_from_the_config_file_the_environment_and_the_flag(tmp_path, monkeypatch):
    monkeypatch.delenv("TRUSTKIT_SERVER_PUBLIC_READ", raising=False)
    file = tmp_path / "server.json"
    file.write_text(json.dumps({"public_read": True, "login_burst": 3}))
    loaded = ServerConfig.load(str(file), {})
    assert loaded.public_read is True and loaded.login_burst == 3 and loaded.login_interval == 6
    assert ServerConfig.load(None, {}).public_read is False
    assert ServerConfig.load(None, {"public_read": True, "login_interval": 2}).login_interval == 2
    monkeypatch.setenv("TRUSTKIT_SERVER_PUBLIC_READ", "1")
    assert ServerConfig.load(None, {}).public_read is True
    monkeypatch.setenv("TRUSTKIT_SERVER_PUBLIC_READ", "no")
    assert ServerConfig.load(None, {}).public_read is False
    assert ServerConfig.load(str(file), {"public_read": None}).public_read is False  # env over file; no flag
    monkeypatch.setenv("TRUSTKIT_SERVER_PUBLIC_READ", "maybe")
    with pytest.raises(TrustkitError, match="true or false"):
        ServerConfig.load(None, {})
    monkeypatch.delenv("TRUSTKIT_SERVER_PUBLIC_READ")
    file.write_text(json.dumps({"public_read": "yes"}))
    with pytest.raises(TrustkitError, match="'public_read' from config file .* must be true or false"):
        ServerConfig.load(str(file), {})
    with pytest.raises(TrustkitError, match="--login-interval"):
        ServerConfig.load(None, {"login_interval": 0})


# ---- failed logins per client address


def test_the_eleventh_bad_login_from_one_address_gets_429(server, tmp_path):
    first = server(**htpasswd_settings(tmp_path))
    scope = f"repository:{OPEN}:pull"
    for _ in range(10):
        assert token_for(first, scope, auth=("alice", "guess")).status_code == 401
    throttled = token_for(first, scope, auth=("alice", "guess"))
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["retry-after"]) <= 6
    assert throttled.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert throttled.headers["content-type"] == "application/json"
    # the right password is not checked either while the address is throttled, on any login
    assert token_for(first, scope, auth=("alice", USERS["alice"])).status_code == 429
    assert first.get("/", auth=("alice", USERS["alice"])).status_code == 429  # the web page's Basic login

    # another address (same app, same throttle) is not affected
    second = TestClient(first.app, client=("10.0.0.2", 40001))
    assert token_for(second, scope, auth=("alice", "guess")).status_code == 401
    assert token_for(second, scope, auth=("alice", USERS["alice"])).status_code == 200
    assert second.get("/", auth=("alice", USERS["alice"])).status_code == 200


def test_the_web_page_login_counts_against_the_same_limit(server, tmp_path):
    client = server(**htpasswd_settings(tmp_path, login_burst=3, login_interval=60))
    for _ in range(3):
        assert client.get("/", auth=("root", "guess")).status_code == 401
    refused = client.get(f"/repositories/{OPEN}", auth=("root", "guess"))
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["errors"][0]["code"] == "TOOMANYREQUESTS" and client.digests[OPEN] not in refused.text
    assert token_for(client, f"repository:{OPEN}:pull", auth=("root", USERS["root"])).status_code == 429


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_refills_one_attempt_per_interval_and_success_is_free():
    clock = Clock()
    throttle = LoginThrottle(burst=3, interval=5, clock=clock)
    assert [throttle.take("a") for _ in range(4)] == [0, 0, 0, 5]
    clock.now += 4.0
    assert throttle.take("a") == 1  # a fifth of an attempt left to wait for
    clock.now += 1.0
    assert throttle.take("a") == 0 and throttle.take("a") == 5  # one attempt back, spent
    throttle.give_back("a")  # that one was a right password
    assert throttle.take("a") == 0
    clock.now += 100
    assert [throttle.take("a") for _ in range(4)] == [0, 0, 0, 5]  # refilled to the burst, not beyond
    assert LoginThrottle(burst=0, clock=clock).take("a") == 0  # 0: no limit


def test_the_address_table_stays_bounded():
    clock = Clock()
    throttle = LoginThrottle(burst=2, interval=60, max_addresses=500, clock=clock)
    for n in range(20_000):
        throttle.take(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}")
    assert len(throttle) == 500
    throttle.take("victim")  # the least recently used address makes room
    assert len(throttle) == 500
    throttle.give_back("victim")
    assert len(throttle) == 499  # a bucket that is full again is forgotten


def test_an_ipv6_host_counts_as_its_whole_64():
    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(client_address(request))

    app = Starlette(routes=[Route("/", echo)])

    def address(host: str) -> str:
        return TestClient(app, client=(host, 1)).get("/").text

    assert address("2001:db8:1:2::1") == address("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address("2001:db8:1:3::1") != address("2001:db8:1:2::1")
    assert address("::ffff:192.0.2.7") == "192.0.2.7" and address("192.0.2.8") == "192.0.2.8"


def test_concurrent_guesses_cannot_overrun_the_bucket(tmp_path):
    keys = generate_token_keypair("trustkit")
    issuer = HtpasswdTokenIssuer(
        htpasswd_path=htpasswd_file(tmp_path / "htpasswd", USERS, rounds=6),
        issuer="trustkit",
        service=SERVICE,
        signing_key_pem=keys[0],
        cert_pem=keys[1],
        throttle=LoginThrottle(burst=5, interval=60),
    )
    app = Starlette(routes=[Route("/auth/token", issuer.endpoint)])

    async def guesses() -> list[int]:
        transport = httpx.ASGITransport(app=app, client=("10.9.9.9", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            answers = await asyncio.gather(
                *(client.get("/auth/token", auth=("alice", f"guess-{n}")) for n in range(30))
            )
        return [answer.status_code for answer in answers]

    statuses = asyncio.run(guesses())
    assert statuses.count(401) == 5 and statuses.count(429) == 25


# ---- timing: an unknown user costs what the costliest real one does


def seconds(check, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        check()
        best = min(best, time.perf_counter() - started)
    return best


def test_an_unknown_user_takes_as_long_as_the_costliest_entry_after_a_reload(tmp_path):
    path = htpasswd_file(tmp_path / "htpasswd", {"cheap": "pw"}, rounds=4)
    keys = generate_token_keypair("trustkit")
    issuer = HtpasswdTokenIssuer(
        htpasswd_path=path, issuer="trustkit", service=SERVICE, signing_key_pem=keys[0], cert_pem=keys[1]
    )
    costly = bcrypt.hashpw(b"slow-password", bcrypt.gensalt(12)).decode()
    path.write_text(path.read_text() + f"slow:{costly}\n")  # the cost-4 entry stays first
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 2_000_000_000))
    assert issuer.check_password("slow", "slow-password")  # reloaded

    known = seconds(lambda: issuer.check_password("slow", "wrong"))
    unknown = seconds(lambda: issuer.check_password("nobody", "wrong"))
    cheap = seconds(lambda: issuer.check_password("cheap", "wrong"))
    print(
        f"\ncost-12 user {known * 1000:.1f} ms, unknown user {unknown * 1000:.1f} ms, cost-4 user {cheap * 1000:.1f} ms"
    )
    assert 0.5 < unknown / known < 2, (unknown, known)
    assert not issuer.check_password("nobody", "slow-password")  # the costliest hash, but not a login
