"""The server's in-memory current metadata (``trustkit.server.cache``): hits run no database query,
and a change made through another app on the same database (another worker) is served at once.

Two apps on one SQLite file play two workers; trustkit's own client publishes through one of
them (init, then one tag per publish, snapshot and timestamp signed by the server)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from trustkit.client.notary import NotaryClient
from trustkit.keys import EnvPassphrases, KeyStore
from trustkit.metadata import Metadata
from trustkit.ops import TagTarget, TrustSession, init_repository
from trustkit.reference import parse_repository
from trustkit.roles import ROOT, SNAPSHOT, TARGETS, TIMESTAMP
from trustkit.server.app import ServerSettings, _access_line, create_app
from trustkit.server.cache import CurrentCache, Prepared
from trustkit.server.config import ServerConfig
from trustkit.server.keys import ServerKeys
from trustkit.server.storage import Storage

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette 1.x prefers httpx2 for its TestClient; plain httpx works
    from starlette.testclient import TestClient

GUN = "registry.example.com/team/app"
PASSPHRASES = {
    "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": "root-passphrase",
    "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": "repository-passphrase",
}
ROUNDS = 200


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Worker:
    """One app (one worker process's state) on the shared database, and the SQL it runs."""

    client: TestClient
    storage: Storage
    statements: list[str]

    def get(self, role: str) -> bytes:
        response = self.client.get(f"/v2/{GUN}/_trust/tuf/{role}.json")
        assert response.status_code == 200, response.text
        return response.content

    def get_without_queries(self, role: str) -> bytes:
        """A GET that must be a cache hit: no SQL statement through the ORM engine."""
        before = len(self.statements)
        data = self.get(role)
        assert self.statements[before:] == [], f"GET {role}.json ran queries on a hit"
        return data


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def workers(tmp_path: Path, clock: Clock) -> Iterator[tuple[Worker, Worker]]:
    url = f"sqlite:///{tmp_path / 'server.db'}"
    made: list[Worker] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(2):
            storage = Storage(url)
            statements: list[str] = []
            sa.event.listen(storage.engine, "before_cursor_execute", lambda *args, log=statements: log.append(args[2]))
            app = create_app(storage, ServerKeys(storage, "cache-test-passphrase"), ServerSettings(clock=clock))
            made.append(Worker(TestClient(app).__enter__(), storage, statements))
    try:
        yield made[0], made[1]
    finally:
        for worker in made:
            worker.client.__exit__(None, None, None)
            worker.storage.close()


def session(worker: Worker, trust_dir: Path) -> TrustSession:
    client = NotaryClient("http://testserver", GUN, worker.client, retries=0)
    return TrustSession(parse_repository(GUN), client, KeyStore(trust_dir, EnvPassphrases(PASSPHRASES)), trust_dir)


def digest(index: int) -> str:
    return f"{index:064x}"


def version(data: bytes, role: str) -> int:
    return Metadata.from_bytes(data, role=role).signed.version


def test_a_publish_through_one_worker_is_served_by_the_other_at_once_and_then_from_memory(workers, tmp_path):
    a, b = workers
    owner = session(a, tmp_path / "trust")
    init_repository(owner)
    repo = owner.repository()
    stale = []
    for i in range(ROUNDS):
        repo.add_target(f"tag{i}", TagTarget(f"tag{i}", digest(i), 100 + i).file_meta())
        owner.client.publish(repo.publish_files())
        newest = {role: a.storage.current(GUN, role) for role in (TARGETS, TIMESTAMP)}
        targets, timestamp = b.get(TARGETS), b.get(TIMESTAMP)
        if targets != newest[TARGETS].data or timestamp != newest[TIMESTAMP].data:
            stale.append(i)
        assert b.get_without_queries(TARGETS) == targets
        assert b.get_without_queries(TIMESTAMP) == timestamp
    assert stale == [], f"{len(stale)} of {ROUNDS} reads through the other worker were stale"
    assert version(b.get(TARGETS), TARGETS) == ROUNDS + 1
    assert f"tag{ROUNDS - 1}".encode() in b.get_without_queries(TARGETS)


def test_the_snapshot_follows_the_timestamp_and_root_is_cached_too(workers, tmp_path):
    a, b = workers
    owner = session(a, tmp_path / "trust")
    init_repository(owner)
    for role in (ROOT, SNAPSHOT):
        assert b.get(role) == b.get_without_queries(role)
    repo = owner.repository()
    repo.add_target("v1", TagTarget("v1", digest(1), 1).file_meta())
    owner.client.publish(repo.publish_files())
    snapshot = b.get(SNAPSHOT)
    assert snapshot == a.storage.current(GUN, SNAPSHOT).data
    assert version(snapshot, SNAPSHOT) == 2
    assert b.get_without_queries(SNAPSHOT) == snapshot


def test_a_deleted_and_reinitialised_repository_is_served_new_at_the_same_versions(workers, tmp_path):
    a, b = workers
    init_repository(session(a, tmp_path / "first"))
    first = b.get(ROOT)
    assert b.get_without_queries(ROOT) == first
    assert a.client.delete(f"/v2/{GUN}/_trust/tuf/").status_code == 200
    assert b.client.get(f"/v2/{GUN}/_trust/tuf/root.json").status_code == 404
    init_repository(session(a, tmp_path / "second"))  # new root key: root version 1 again
    second = b.get(ROOT)
    assert version(second, ROOT) == version(first, ROOT) == 1
    assert second != first
    assert b.get_without_queries(ROOT) == second


def test_a_cached_timestamp_is_re_signed_by_the_first_request_after_it_expires(workers, tmp_path, clock):
    a, b = workers
    init_repository(session(a, tmp_path / "trust"))
    timestamp = b.get(TIMESTAMP)
    assert b.get_without_queries(TIMESTAMP) == timestamp
    expires = Metadata.from_bytes(timestamp, role=TIMESTAMP).signed.expires_at
    clock.now = expires - timedelta(seconds=1)
    assert b.get_without_queries(TIMESTAMP) == timestamp  # still valid: served from memory
    clock.now = expires  # expired (Signed.is_expired: expires <= now)
    resigned = b.get(TIMESTAMP)
    assert version(resigned, TIMESTAMP) == version(timestamp, TIMESTAMP) + 1
    assert Metadata.from_bytes(resigned, role=TIMESTAMP).signed.expires_at > clock.now
    assert a.get(TIMESTAMP) == resigned  # the other worker serves the re-signed one, not its own
    # The re-sign changed the counter read before it: one more read from the database, then memory.
    assert b.get(TIMESTAMP) == resigned
    assert b.get_without_queries(TIMESTAMP) == resigned


def test_the_cache_keeps_the_most_recently_used_files_within_its_byte_limit():
    cache = CurrentCache(max_bytes=250)
    now = datetime.now(UTC)
    for name in ("a", "b", "c"):
        cache.put(GUN, name, Prepared(1, name.encode() * 100, (), None))
    assert len(cache) == 2 and cache.get(GUN, "a", 1, now) is None
    assert cache.get(GUN, "b", 1, now) is not None  # b is now the most recently used
    cache.put(GUN, "d", Prepared(1, b"d" * 100, (), None))
    assert cache.get(GUN, "c", 1, now) is None and cache.get(GUN, "b", 1, now) is not None
    assert cache.get(GUN, "b", 2, now) is None  # another change counter: not served
    cache.put(GUN, "huge", Prepared(1, b"x" * 251, (), None))
    assert cache.get(GUN, "huge", 1, now) is None and len(cache) == 2


@pytest.mark.parametrize(
    "path",
    ["/v2/a/_trust/tuf/targets.json", '/v2/"quoted"\\back', "/v2/\t\r\n\x00\x7f", "/v2/é✓😀", "/v2/" + "x" * 5000],
)
def test_the_access_line_is_the_json_the_log_always_wrote(path):
    line = _access_line("GET", path, 200, 0.0012345, "127.0.0.1")
    expected = {"method": "GET", "path": path[:1024], "status": 200, "ms": 1.23, "client": "127.0.0.1"}
    assert line == json.dumps(expected)
    assert json.loads(line) == expected


def test_the_default_is_one_worker_per_core(monkeypatch):
    monkeypatch.delenv("TRUSTKIT_SERVER_WORKERS", raising=False)
    assert ServerConfig.load(None, {}).workers == len(os.sched_getaffinity(0))


class Transport:
    """What the protocol's transport received, write by write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_a_response_head_goes_out_with_the_body_in_one_write():
    from trustkit.server.protocol import _HeadWithBody

    transport = Transport()
    held = _HeadWithBody(transport)  # type: ignore[arg-type]
    held.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # interim: at once, the client waits for it
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    held.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
    assert len(transport.writes) == 1
    held.write(b"body")
    assert transport.writes[1:] == [b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody"]
    assert not held.is_closing()
    cut = Transport()
    cut_short = _HeadWithBody(cut)  # type: ignore[arg-type]
    cut_short.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    cut_short.close()  # the app failed after the head: what was held goes out before the close
    assert cut.writes == [b"HTTP/1.1 500 Internal Server Error\r\n\r\n"] and cut.closed
