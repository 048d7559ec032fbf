"""The server's in-memory metadata is never stale across processes (issue 10, "Speed").

A publish through one worker, or one server, is served by every other worker and server sharing
its database as soon as the publishing request has returned: 200 publishes in a row, each read
at once through the others, zero stale answers.

* SQLite, one ``trustkit server --workers 2``: reader connections are kept open until both
  worker processes hold one (which process holds a connection is read from ``/proc``), so every
  publish, whichever worker takes it, is read through the other one too.
* PostgreSQL, two ``trustkit server`` processes on one database: publish through A, read through B.

Each read follows a read of the same file before the publish, so the reader has it in memory:
a cache that missed the change would answer the old bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

import peers
from trustkit.client.notary import NotaryClient, make_http_client
from trustkit.keys import EnvPassphrases, KeyStore
from trustkit.metadata import Metadata
from trustkit.ops import TagTarget, TrustSession, init_repository
from trustkit.reference import parse_repository
from trustkit.roles import SNAPSHOT, TARGETS, TIMESTAMP

pytestmark = pytest.mark.interop

ROUNDS = 200
PASSPHRASES = {
    "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": peers.ROOT_PASSPHRASE,
    "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": peers.REPO_PASSPHRASE,
}


def owner_session(server: peers.TrustkitServer, gun: str, trust_dir: Path) -> TrustSession:
    client = NotaryClient(server.url, gun, make_http_client(server.url, tls_ca=str(server.ca_path)), retries=0)
    return TrustSession(parse_repository(gun), client, KeyStore(trust_dir, EnvPassphrases(PASSPHRASES)), trust_dir)


def read_versions(client: httpx.Client, gun: str) -> tuple[int, int]:
    """The targets and timestamp versions ``client`` is served (each publish raises both by one)."""
    versions = []
    for role in (TARGETS, TIMESTAMP):
        response = client.get(f"/v2/{gun}/_trust/tuf/{role}.json")
        assert response.status_code == 200, response.text
        versions.append(Metadata.from_bytes(response.content, role=role).signed.version)
    return versions[0], versions[1]


def publish_and_read(owner: TrustSession, readers: list[httpx.Client], gun: str) -> list[str]:
    """``ROUNDS`` publishes of one tag each; after each, every reader reads targets and timestamp
    at once.  What was stale, as text."""
    repo = owner.repository()
    first = read_versions(readers[0], gun)
    stale = []
    for i in range(1, ROUNDS + 1):
        for reader in readers:
            read_versions(reader, gun)  # the reader now holds the current files in memory
        repo.add_target(f"tag{i}", TagTarget(f"tag{i}", f"{i:064x}", 100 + i).file_meta())
        owner.client.publish(repo.publish_files())
        expected = (first[0] + i, first[1] + i)
        for number, reader in enumerate(readers):
            seen = read_versions(reader, gun)
            if seen != expected:
                stale.append(f"publish {i}, reader {number}: targets/timestamp {seen}, not {expected}")
    return stale


# --------------------------------------------------------------------------------------------
# which worker process holds a connection


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    return inodes


def _server_inode_for(client_port: int) -> str:
    """The inode of the server's end of the loopback TCP connection from ``client_port``."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
        if remote_port == client_port:
            return fields[9]
    raise AssertionError(f"no server socket connected to port {client_port}")


def worker_pids(server_pid: int) -> list[int]:
    """uvicorn's worker processes (multiprocessing's spawned children, not its resource tracker)."""
    children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    return [int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def worker_of(client: httpx.Client, workers: list[int], gun: str) -> int:
    """The worker process that holds ``client``'s keep-alive connection (one request opens it)."""
    with client.stream("GET", f"/v2/{gun}/_trust/tuf/root.json") as response:
        port = response.extensions["network_stream"].get_extra_info("client_addr")[1]
        response.read()
    inode = _server_inode_for(port)
    holders = [pid for pid in workers if inode in _socket_inodes(pid)]
    assert len(holders) == 1, f"connection from port {port} held by {holders} of {workers}"
    return holders[0]


# --------------------------------------------------------------------------------------------


def test_a_publish_through_one_worker_is_read_through_the_other_at_once_sqlite(tmp_path):
    gun = "example.com/fresh/sqlite"
    with peers.TrustkitServer(tmp_path / "server", extra_args=["--workers", "2"]) as server:
        owner = owner_session(server, gun, tmp_path / "trust")
        init_repository(owner)
        workers = worker_pids(server.pid)
        assert len(workers) == 2, f"expected two worker processes, found {workers}"
        readers: dict[int, httpx.Client] = {}
        try:
            for _ in range(40):  # new connections until each worker holds one
                client = server.client()
                held_by = worker_of(client, workers, gun)
                if held_by in readers:
                    client.close()
                else:
                    readers[held_by] = client
                if len(readers) == 2:
                    break
            assert len(readers) == 2, "40 connections all went to one worker"
            stale = publish_and_read(owner, list(readers.values()), gun)
            for pid, reader in readers.items():
                assert worker_of(reader, workers, gun) == pid, "a reader's connection moved"
        finally:
            for client in readers.values():
                client.close()
            owner.client.client.close()
        assert stale == [], f"{len(stale)} stale reads of {2 * ROUNDS}:\n" + "\n".join(stale[:10])
        assert "Traceback" not in server.log_tail(2000)


def test_a_publish_through_one_server_is_read_through_another_at_once_postgresql(tmp_path, pg_url):
    gun = "example.com/fresh/postgres"
    with (
        peers.TrustkitServer(tmp_path / "a", database=pg_url, extra_args=["--workers", "1"]) as a,
        peers.TrustkitServer(tmp_path / "b", database=pg_url, extra_args=["--workers", "1"]) as b,
    ):
        owner = owner_session(a, gun, tmp_path / "trust")
        init_repository(owner)
        reader = b.client()
        try:
            stale = publish_and_read(owner, [reader], gun)
        finally:
            reader.close()
            owner.client.client.close()
        assert stale == [], f"{len(stale)} stale reads of {ROUNDS}:\n" + "\n".join(stale[:10])
        assert b.get(f"/v2/{gun}/_trust/tuf/{SNAPSHOT}.json").status_code == 200
