"""Load and faults on `trustkit server` (issue 5, "Load and faults"; reliability-scenarios §6).

* 50 concurrent publishers of different tags to one GUN through two `trustkit server` processes
  on one PostgreSQL database: every tag present, zero 5xx, and every role's versions rise by
  exactly one per successful publish, with snapshot N listing targets N and timestamp N listing
  snapshot N.
* A server killed with SIGKILL in the middle of publishes (SQLite and PostgreSQL): nothing
  partial is visible (the stored chain still pairs up version by version and a fresh client
  validates it), and publishing works after the restart.
  The changefeed holds one record per stored publish, none from failed attempts.
* 100 concurrent GETs of an expired timestamp through two app instances on one database (SQLite
  and PostgreSQL), three times over: one new timestamp version each time, and every response
  carries the same bytes.  The app instances come from ``create_app`` with a clock the test
  moves (the CLI has no clock setting), served by uvicorn in threads; the instances' clocks
  differ by a second, so two that both signed would be told apart by their bytes.

Publishers are threads running trustkit's library (``sign_tags`` with a ``TrustSession`` each,
over a copy of the admin's trust dir), as the ``trustkit sign`` command does.  A publisher that
loses a race gets the ``VERSION`` error and retries after refreshing, like a user would.

Each PostgreSQL test runs in a database of its own, created for the test and dropped after it,
so tests that reset the shared ``test`` database cannot interfere.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

import httpx
import pytest

import peers
from trustkit.client.notary import NotaryClient, make_http_client
from trustkit.errors import NetworkError, ServerRejectedError
from trustkit.keys import EnvPassphrases, KeyStore
from trustkit.metadata import Metadata
from trustkit.ops import TagTarget, TrustSession, sign_tags
from trustkit.reference import parse_repository
from trustkit.roles import SNAPSHOT, TARGETS, TIMESTAMP

pytestmark = pytest.mark.interop

PUBLISHERS = 50
PASSPHRASES = {
    "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": peers.ROOT_PASSPHRASE,
    "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": peers.REPO_PASSPHRASE,
}


# --------------------------------------------------------------------------------------------
# clients


def digest_of(tag: str) -> str:
    return hashlib.sha256(f"manifest of {tag}".encode()).hexdigest()


def session_for(server: peers.TrustkitServer, gun: str, trust_dir: Path, *, retries: int = 3) -> TrustSession:
    url = server.url
    client = NotaryClient(url, gun, make_http_client(url, tls_ca=str(server.ca_path)), retries=retries)
    store = KeyStore(trust_dir, EnvPassphrases(PASSPHRASES))
    return TrustSession(parse_repository(gun), client, store, trust_dir)


def admin_init(server: peers.TrustkitServer, gun: str, config_dir: Path) -> Path:
    """``trustkit init GUN`` as a user runs it; returns the admin's trust dir."""
    cli = peers.TrustkitCLI(config_dir, server)
    cli.run("init", gun)
    return cli.trust_dir


@dataclass
class Tally:
    """What the publishers saw."""

    successes: int = 0  # publishes the server answered 200
    version_retries: int = 0  # VERSION errors (a lost race), each followed by a retry
    network_retries: int = 0  # the server was unreachable (killed): retried
    ambiguous: int = 0  # the connection died mid-publish: it may or may not have been stored
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


def publisher(
    make_session: Callable[[], TrustSession],
    tag: str,
    tally: Tally,
    *,
    deadline: float,
    start: threading.Barrier | None = None,
) -> None:
    """Sign ``tag`` until the server accepts it: a lost race (VERSION) and an unreachable server
    are retried after a short random pause; anything else is an error."""
    session = None
    try:
        session = make_session()
        if start is not None:
            start.wait(30)
        attempt = 0
        while time.monotonic() < deadline:
            attempt += 1
            try:
                sign_tags(session, [TagTarget(tag, digest_of(tag), 1000 + len(tag))])
            except ServerRejectedError as exc:
                if exc.code != "VERSION":
                    raise
                tally.add(version_retries=1)
            except NetworkError as exc:
                # refused while the server is down, or cut off mid-request by the kill
                # ("... at <url>: <reason>"; the publish is the POST to .../_trust/tuf/)
                cut_off = "/_trust/tuf/: " in str(exc) and "refused" not in str(exc).lower()
                tally.add(network_retries=1, ambiguous=int(cut_off))
            else:
                tally.add(successes=1)
                return
            time.sleep(random.uniform(0, min(0.4, 0.01 * attempt)))
        raise AssertionError(f"{tag}: not published after {attempt} attempts")
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        with tally.lock:
            tally.errors.append(f"{tag}: {type(exc).__name__}: {exc}")
    finally:
        if session is not None:
            session.client.client.close()


def run_publishers(
    tags: list[str],
    make_session: Callable[[str], TrustSession],
    tally: Tally,
    *,
    timeout: float = 90.0,
    during: Callable[[], None] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    start = threading.Barrier(len(tags) + (1 if during else 0))
    threads = [
        threading.Thread(
            target=publisher,
            args=(lambda t=tag: make_session(t), tag, tally),
            kwargs={"deadline": deadline, "start": start},
            name=f"publisher-{tag}",
        )
        for tag in tags
    ]
    for thread in threads:
        thread.start()
    if during is not None:
        start.wait(30)
        during()
    for thread in threads:
        thread.join(timeout + 30)
    assert not any(thread.is_alive() for thread in threads), "publishers hung"


# --------------------------------------------------------------------------------------------
# what the server stored


def stored_versions(server: peers.TrustkitServer, gun: str, role: str) -> list[bytes]:
    """Every stored version of ``role``, fetched as ``<N>.<role>.json`` from 1 up to the first
    404; the current ``<role>.json`` must be the last of them (no gap hides newer ones)."""
    found: list[bytes] = []
    with server.client() as client:
        base = f"/v2/{gun}/_trust/tuf/"
        while True:
            response = client.get(f"{base}{len(found) + 1}.{role}.json")
            if response.status_code == 404:
                break
            assert response.status_code == 200, response.text
            found.append(response.content)
        current = client.get(f"{base}{role}.json")
    assert current.status_code == 200 and found, f"{role}: {current.status_code}"
    assert current.content == found[-1], f"{role}.json is not version {len(found)}, the last contiguous one"
    for number, data in enumerate(found, 1):
        assert Metadata.from_bytes(data, role=role).signed.version == number
    return found


def assert_chain_pairs(server: peers.TrustkitServer, gun: str) -> int:
    """Targets, snapshot and timestamp versions run 1..K with no gap, and version N of each
    lists version N of the one below (each publish stored all three or none).  Returns K."""
    targets = stored_versions(server, gun, TARGETS)
    snapshots = stored_versions(server, gun, SNAPSHOT)
    timestamps = stored_versions(server, gun, TIMESTAMP)
    assert len(targets) == len(snapshots) == len(timestamps), (len(targets), len(snapshots), len(timestamps))
    for number, (target, snapshot, timestamp) in enumerate(zip(targets, snapshots, timestamps, strict=True), 1):
        listed = Metadata.from_bytes(snapshot, role=SNAPSHOT).signed.meta[TARGETS]
        assert listed.matches(target) is None, f"snapshot {number} does not list targets {number}"
        snap = Metadata.from_bytes(timestamp, role=TIMESTAMP).signed.snapshot_meta
        assert snap.matches(snapshot) is None, f"timestamp {number} does not list snapshot {number}"
    # One changefeed record per stored publish, naming its timestamp: none from failed attempts.
    with server.client() as client:
        feed = client.get(f"/v2/{gun}/_trust/changefeed", params={"change_id": "0", "records": "1000"}).json()
    assert [(r["Version"], r["SHA256"]) for r in feed["records"]] == [
        (number, hashlib.sha256(data).hexdigest()) for number, data in enumerate(timestamps, 1)
    ]
    return len(targets)


def fresh_client_tags(server: peers.TrustkitServer, gun: str, trust_dir: Path) -> dict[str, str]:
    """The signed tags as a new client sees them: the whole chain fetched and validated with
    trustkit's updater from an empty trust dir."""
    session = session_for(server, gun, trust_dir)
    try:
        trusted = session.load()
    finally:
        session.client.client.close()
    assert trusted is not None
    return {tag: target.sha256_hex for tag, target in trusted.targets[TARGETS].signed.targets.items()}


def server_failures(server: peers.TrustkitServer) -> list[str]:
    """Access-log lines with a 5xx status, and anything that looks like a traceback."""
    bad = []
    for line in server.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if "Traceback" in line or "Error" in line:
                bad.append(line)
            continue
        if isinstance(entry, dict) and isinstance(entry.get("status"), int) and entry["status"] >= 500:
            bad.append(line)
    return bad


def access_statuses(server: peers.TrustkitServer) -> Counter[int]:
    statuses: Counter[int] = Counter()
    for line in server.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "status" in entry:
            statuses[entry["status"]] += 1
    return statuses


# --------------------------------------------------------------------------------------------
# 50 publishers, two processes, one PostgreSQL


def test_fifty_publishers_two_servers_one_postgres(tmp_path: Path, pg_url: str) -> None:
    tls = peers.make_tls(tmp_path / "tls")
    with (
        peers.TrustkitServer(tmp_path / "a", database=pg_url, tls=tls) as a,
        peers.TrustkitServer(tmp_path / "b", database=pg_url, tls=tls) as b,
    ):
        gun = "registry.example.com/load/fifty"
        admin = admin_init(a, gun, tmp_path / "admin")
        servers = [a, b]
        tags = [f"tag{i}" for i in range(PUBLISHERS)]

        def make_session(tag: str) -> TrustSession:
            trust_dir = tmp_path / "publishers" / tag
            shutil.copytree(admin, trust_dir)
            return session_for(servers[int(tag[3:]) % 2], gun, trust_dir)

        tally = Tally()
        started = time.monotonic()
        run_publishers(tags, make_session, tally)
        elapsed = time.monotonic() - started
        print(
            f"{PUBLISHERS} publishers: {tally.successes} publishes, {tally.version_retries} VERSION retries, "
            f"{elapsed:.1f} s; statuses a={dict(access_statuses(a))} b={dict(access_statuses(b))}"
        )

        assert tally.errors == []
        assert tally.successes == PUBLISHERS and tally.network_retries == 0
        assert server_failures(a) == [] and server_failures(b) == []
        # Both processes took publishes, and the races really happened.
        for server in servers:
            assert access_statuses(server)[200] > 0
        # One version per successful publish, plus the admin's init.
        assert assert_chain_pairs(a, gun) == PUBLISHERS + 1
        assert assert_chain_pairs(b, gun) == PUBLISHERS + 1
        seen = fresh_client_tags(b, gun, tmp_path / "reader")
        assert seen == {tag: digest_of(tag) for tag in tags}
        # And the CLI a user would run agrees, through the other process.
        listed = json.loads(peers.TrustkitCLI(tmp_path / "inspector", a).run("inspect", gun).stdout)
        assert {row["SignedTag"]: row["Digest"] for row in listed[0]["SignedTags"]} == seen


# --------------------------------------------------------------------------------------------
# SIGKILL in the middle of publishes


KILL_PUBLISHERS = 16


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_during_publishes_leaves_nothing_partial(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    database = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    with peers.TrustkitServer(tmp_path / "server", database=database) as server:
        gun = f"registry.example.com/load/kill-{backend}"
        admin = admin_init(server, gun, tmp_path / "admin")
        tags = [f"k{i}" for i in range(KILL_PUBLISHERS)]

        def make_session(tag: str) -> TrustSession:
            trust_dir = tmp_path / "publishers" / tag
            shutil.copytree(admin, trust_dir)
            # The client's own retries (a refused connection is tried again) would hide the kill
            # from the publishers, whose loop counts every failure: they retry themselves here.
            return session_for(server, gun, trust_dir, retries=0)

        tally = Tally()
        at_kill: dict[str, int] = {}

        def kill_and_restart() -> None:
            deadline = time.monotonic() + 30
            while tally.successes < 2 and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(random.uniform(0.0, 0.3))
            at_kill["successes"] = tally.successes
            server.kill()
            time.sleep(0.5)  # publishers find the port closed meanwhile
            server.start()

        run_publishers(tags, make_session, tally, during=kill_and_restart)
        print(
            f"SIGKILL ({backend}) after {at_kill['successes']} publishes: {tally.successes} publishes, "
            f"{tally.version_retries} VERSION retries, {tally.network_retries} network retries "
            f"({tally.ambiguous} cut off mid-request)"
        )

        assert tally.errors == []
        assert tally.successes == KILL_PUBLISHERS
        assert 2 <= at_kill["successes"] < KILL_PUBLISHERS, "the kill did not land in the middle of publishes"
        assert tally.network_retries > 0, "no publisher noticed the kill"
        assert server_failures(server) == []
        if backend == "sqlite":  # the database file survived the kill intact (WAL replayed)
            import sqlite3
            from contextlib import closing

            with closing(sqlite3.connect(server.database.removeprefix("sqlite:///"))) as db:
                assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        # Every stored version pairs up; a publish cut off by the kill may have been stored
        # (its client then saw a dead connection and published again), never half stored.
        stored = assert_chain_pairs(server, gun)
        assert KILL_PUBLISHERS + 1 <= stored <= KILL_PUBLISHERS + 1 + tally.ambiguous
        assert fresh_client_tags(server, gun, tmp_path / "reader") == {tag: digest_of(tag) for tag in tags}

        # A publish after the restart, by a user with the CLI, goes through.
        cli = peers.TrustkitCLI(tmp_path / "admin", server)
        cli.run("sign", f"{gun}:after", "--digest", f"sha256:{digest_of('after')}", "--size", "7")
        assert cli.run("verify", "--trust-only", f"{gun}:after").stdout.split()[1] == f"sha256:{digest_of('after')}"
        assert assert_chain_pairs(server, gun) == stored + 1


# --------------------------------------------------------------------------------------------
# 100 concurrent GETs of an expired timestamp, two app instances on one database


class ShiftedClock:
    """The servers' clock: real time plus a shift the test controls, plus a per-instance skew
    (so two instances that both signed would produce different bytes)."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def __call__(self, skew: timedelta = timedelta(0)) -> datetime:
        return datetime.now(UTC) + self.shift + skew


class InProcessServer:
    """``create_app`` served by uvicorn in a thread on a free loopback port (plain HTTP)."""

    def __init__(self, database: str, passphrase: str, clock: Callable[[], datetime]) -> None:
        import uvicorn

        from trustkit.server.app import ServerSettings, create_app
        from trustkit.server.keys import ServerKeys
        from trustkit.server.storage import Storage

        self.storage = Storage(database)
        app = create_app(self.storage, ServerKeys(self.storage, passphrase), ServerSettings(clock=clock))
        self.port = peers.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="off",
                access_log=False,
                backlog=512,
            )
        )
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.storage.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_hundred_gets_of_an_expired_timestamp(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    database = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'ts.db'}"
    clock = ShiftedClock()
    with (
        InProcessServer(database, "ts-passphrase", clock) as a,
        InProcessServer(database, "ts-passphrase", lambda: clock(timedelta(seconds=1))) as b,
    ):
        gun = "registry.example.com/load/expired"
        trust_dir = tmp_path / "admin"
        with httpx.Client(timeout=30) as http:
            session = TrustSession(
                parse_repository(gun),
                NotaryClient(a.url, gun, http),
                KeyStore(trust_dir, EnvPassphrases(PASSPHRASES)),
                trust_dir,
            )
            sign_tags(session, [TagTarget("v1", digest_of("v1"), 10)])  # initialises, then publishes
            sign_tags(session, [TagTarget("v2", digest_of("v2"), 20)])
        before = stored_timestamps(a)
        assert [version for version, _ in before] == [1, 2]

        # Three rounds: each time the timestamp (14 days) has expired, nothing else has.
        for round_ in range(1, 4):
            clock.shift = timedelta(days=15 * round_)
            assert Metadata.from_bytes(before[-1][1], role=TIMESTAMP).signed.is_expired(clock())
            bodies, statuses = concurrent_gets([a.url, b.url], f"/v2/{gun}/_trust/tuf/timestamp.json", 100)

            assert statuses == Counter({200: 100})
            assert len(set(bodies)) == 1, f"round {round_}: {len(set(bodies))} different timestamps served"
            after = stored_timestamps(a)
            assert [version for version, _ in after] == list(range(1, 3 + round_)), (
                f"round {round_}: not exactly one new timestamp version"
            )
            assert after[:-1] == before and after[-1][1] == bodies[0]
            fresh = Metadata.from_bytes(bodies[0], role=TIMESTAMP).signed
            assert fresh.version == 2 + round_ and not fresh.is_expired(clock())
            # The rest of the chain was left alone, and both instances now serve the new one.
            assert [version for version, _ in stored_rows(a, SNAPSHOT)] == [1, 2]
            for server in (a, b):
                assert httpx.get(f"{server.url}/v2/{gun}/_trust/tuf/timestamp.json").content == bodies[0]
            before = after


def stored_rows(server: InProcessServer, role: str) -> list[tuple[int, bytes]]:
    """Every stored row of ``role`` straight from the database (not through the API)."""
    import sqlalchemy as sa

    from trustkit.server.storage import TUF_FILES

    with server.storage.engine.connect() as conn:
        rows = conn.execute(
            sa.select(TUF_FILES.c.version, TUF_FILES.c.data)
            .where(TUF_FILES.c.role == role)
            .order_by(TUF_FILES.c.version)
        ).all()
    return [(row.version, row.data) for row in rows]


def stored_timestamps(server: InProcessServer) -> list[tuple[int, bytes]]:
    return stored_rows(server, TIMESTAMP)


def concurrent_gets(urls: list[str], path: str, count: int) -> tuple[list[bytes], Counter[int]]:
    """``count`` GETs of ``path`` released together from as many threads, spread over ``urls``."""
    bodies: list[bytes] = []
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(count)
    clients = [httpx.Client(timeout=60, limits=httpx.Limits(max_connections=count)) for _ in urls]

    def get(index: int) -> None:
        client, url = clients[index % len(urls)], urls[index % len(urls)]
        start.wait(30)
        try:
            response = client.get(url + path)
            status, body = response.status_code, response.content
        except httpx.HTTPError as exc:
            status, body = 0, repr(exc).encode()
        with lock:
            statuses[status] += 1
            if status == 200:
                bodies.append(body)

    threads = [threading.Thread(target=get, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    for client in clients:
        client.close()
    return bodies, statuses
