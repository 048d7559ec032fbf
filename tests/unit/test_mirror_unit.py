"""``trustkit.mirror`` in process: the simulator is the source (it serves every version and can
lie), trustkit's server app is the destination (a Starlette TestClient), and trustkit's own
updater plays the clients whose caches hold the source's data."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from simulator import GUN, Simulator, new_key, new_root_key
from trustkit.client.notary import NotaryClient
from trustkit.client.updater import Updater, cache_dir
from trustkit.errors import NoSigningKeyError, ServerError, TrustkitError, VerificationError
from trustkit.keys import KeyStore
from trustkit.metadata import Metadata, RoleKeys
from trustkit.mirror import MIRRORED, RESUMED, UP_TO_DATE, UPDATED, CatalogClient, Mirror, mirror_repository
from trustkit.roles import RELEASES, ROOT, SNAPSHOT, TARGETS, TIMESTAMP
from trustkit.server.config import ServerConfig, build_app, prepare

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette 1.x prefers httpx2 for its TestClient; plain httpx works
    from starlette.testclient import TestClient

DESTINATION = "http://testserver"
NOW = datetime.now(UTC).replace(microsecond=0)  # the server app reads the clock: the source must be current


# ---- set-up


@pytest.fixture
def destination(tmp_path, monkeypatch):
    """trustkit's server app on a fresh SQLite database."""
    for name in list(os.environ):
        if name.startswith("TRUSTKIT_SERVER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRUSTKIT_SERVER_PASSPHRASE", "mirror-test-passphrase")
    config = ServerConfig.load(None, {"database": f"sqlite:///{tmp_path / 'destination.db'}"})
    prepare(config)
    with TestClient(build_app(config)) as client:
        yield client


@pytest.fixture
def source():
    """A repository with history: a delegation, a root key rotation, a timestamp key rotation
    and several publishes (root versions 1..3)."""
    sim = Simulator(now=NOW)
    sim.add_target("v1", b"manifest v1")
    sim.publish()
    sim.add_delegation(RELEASES)
    sim.add_target("v2", b"manifest v2", role=RELEASES)
    sim.publish()
    sim.rotate_root()
    sim.rotate(TIMESTAMP)
    sim.publish(roles=[TARGETS])
    for _ in range(5):  # the server re-signed its timestamp now and then
        sim.publish_timestamp()
    assert sim.root.version == 3
    yield sim
    sim.close()


def key_store(tmp_path: Path, sim: Simulator, roles: tuple[str, ...] = (ROOT,)) -> KeyStore:
    """The owner's key store: every key of ``roles`` the source ever used (old root keys too)."""
    store = KeyStore(tmp_path / "owner", lambda request: "owner-passphrase")
    for role in roles:
        for key in sim.keys[role] + (sim.old_root_keys if role == ROOT else []):
            store.add(key.signer.private_key, role=role, gun=None if role == ROOT else sim.gun)
    return store


def make_mirror(tmp_path: Path, sim: Simulator, destination: TestClient, store: KeyStore, **kwargs) -> Mirror:
    return Mirror(
        source=lambda gun: sim.client(),
        destination=lambda gun: NotaryClient(DESTINATION, gun, destination, retries=0),
        store=store,
        cache_dir=tmp_path / "mirror-cache",
        now=NOW,
        **kwargs,
    )


def served(destination: TestClient, name: str) -> bytes | None:
    response = destination.get(f"/v2/{GUN}/_trust/tuf/{name}")
    return response.content if response.status_code == 200 else None


def version_of(data: bytes | None, role: str) -> int:
    assert data is not None
    return Metadata.from_bytes(data, role=role).signed.version


def client_cache_at(tmp_path: Path, sim: Simulator, name: str) -> Path:
    """A client that read the source now: its trust dir, cache filled."""
    trust_dir = tmp_path / name
    sim.updater(trust_dir, now=NOW).refresh()
    return trust_dir


def read_destination(trust_dir: Path, destination: TestClient):
    return Updater(NotaryClient(DESTINATION, GUN, destination, retries=0), GUN, trust_dir, now=NOW).refresh()


@pytest.fixture(autouse=True)
def remember_old_root_keys(monkeypatch):
    """The simulator forgets replaced root keys; the owner keeps them (they signed old versions)."""
    original = Simulator.rotate_root

    def rotate_root(self, *args, **kwargs):
        self.old_root_keys = [*getattr(self, "old_root_keys", []), *self.keys[ROOT]]
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Simulator, "rotate_root", rotate_root)
    monkeypatch.setattr(Simulator, "old_root_keys", [], raising=False)


# ---- mirroring


def test_every_root_version_is_reissued_and_targets_are_copied_unchanged(tmp_path, source, destination):
    early_client = client_cache_at(tmp_path, source, "early")
    steps: list[tuple[int, int]] = []
    mirror = make_mirror(tmp_path, source, destination, key_store(tmp_path, source))
    result = mirror_repository(mirror, GUN, progress=lambda done, total: steps.append((done, total)))
    total = len(steps)  # one step per publish, the catch-up publishes included
    assert steps == [(n, total) for n in range(1, total + 1)] and total > 4

    assert result.status == MIRRORED and result.source_root_version == 3 and result.destination_root_version == 0
    assert result.publishes[:4] == ["root v1 + targets + targets/releases", "root v2", "root v3", "root v4"]
    for role in (TARGETS, RELEASES):
        assert served(destination, f"{role}.json") == source.current(role)
    roots = [served(destination, f"{v}.root.json") for v in range(1, 5)]
    assert [version_of(r, ROOT) for r in roots] == [1, 2, 3, 4]
    for version, data in enumerate(roots, 1):  # the destination's timestamp key, the source's root keys
        root = Metadata.from_bytes(data, role=ROOT).signed
        assert root.roles[TIMESTAMP].keyids != [source.keys[TIMESTAMP][0].keyid]
        assert (
            root.roles[ROOT].keyids
            == json.loads(source.files[f"{min(version, 3)}.root.json"])["signed"]["roles"]["root"]["keyids"]
        )
    # A client that cached the source reads the destination: root walk, and rollback floors passed.
    trusted = read_destination(early_client, destination)
    assert trusted.root.signed.version == 4 and trusted.targets[RELEASES].raw == source.current(RELEASES)
    assert version_of(served(destination, "timestamp.json"), TIMESTAMP) > source.timestamp.version
    assert version_of(served(destination, "snapshot.json"), SNAPSHOT) > source.snapshot.version


def test_a_client_holding_each_old_root_version_walks_to_the_new_one(tmp_path, source, destination):
    mirror_repository(make_mirror(tmp_path, source, destination, key_store(tmp_path, source)), GUN)
    for version in (1, 2, 3):
        trust_dir = tmp_path / f"client-{version}"
        folder = cache_dir(trust_dir, GUN)
        folder.mkdir(parents=True)
        (folder / "root.json").write_bytes(source.files[f"{version}.root.json"])
        assert read_destination(trust_dir, destination).root.signed.version == 4


def test_without_the_root_key_nothing_changes_and_the_key_is_named(tmp_path, source, destination):
    store = key_store(tmp_path, source, roles=())
    with pytest.raises(NoSigningKeyError) as caught:
        mirror_repository(make_mirror(tmp_path, source, destination, store), GUN)
    root_ids = {key.public.canonical_id for key in source.keys[ROOT] + source.old_root_keys}
    assert any(keyid in str(caught.value) for keyid in root_ids), caught.value
    assert served(destination, "root.json") is None


def test_dry_run_changes_nothing(tmp_path, source, destination):
    result = mirror_repository(
        make_mirror(tmp_path, source, destination, key_store(tmp_path, source)), GUN, dry_run=True
    )
    assert result.dry_run and result.status == MIRRORED
    assert result.publishes[0] == "root v1 + targets + targets/releases" and len(result.publishes) == 5
    assert "timestamp version" in result.publishes[-1]
    assert served(destination, "root.json") is None


def test_a_second_run_is_up_to_date_and_a_moved_source_is_updated(tmp_path, source, destination):
    mirror = make_mirror(tmp_path, source, destination, key_store(tmp_path, source))
    mirror_repository(mirror, GUN)
    again = mirror_repository(mirror, GUN)
    assert again.status == UP_TO_DATE and again.publishes == []

    source.add_target("v3", b"manifest v3", role=RELEASES)
    source.publish()
    updated = mirror_repository(mirror, GUN)
    assert updated.status == UPDATED and updated.publishes[0] == "targets/releases"
    assert served(destination, f"{RELEASES}.json") == source.current(RELEASES)


def test_a_root_re_signed_at_the_source_follows_as_the_next_version(tmp_path, source, destination):
    mirror = make_mirror(tmp_path, source, destination, key_store(tmp_path, source))
    mirror_repository(mirror, GUN)
    source.now = NOW + timedelta(days=1)  # re-signed a day later: same keys, a new expiry
    source.publish_root()
    source.publish()
    reader = client_cache_at(tmp_path, source, "reader")  # caches the source's root v4
    result = mirror_repository(mirror, GUN)
    assert result.publishes[0] == "root v5" and result.source_root_version == 4
    assert read_destination(reader, destination).root.signed.version == 5


class Interrupted(Exception):
    pass


def interrupted_after(
    publishes: int, tmp_path: Path, sim: Simulator, destination: TestClient, store: KeyStore
) -> Mirror:
    """A mirror whose destination connection dies after ``publishes`` publishes."""
    calls = []

    def failing_client(gun: str) -> NotaryClient:
        client = NotaryClient(DESTINATION, gun, destination, retries=0)
        publish = client.publish

        def publish_then_fail(files):
            calls.append(sorted(files))
            if len(calls) > publishes:
                raise Interrupted
            publish(files)

        client.publish = publish_then_fail  # type: ignore[method-assign]
        return client

    return Mirror(
        source=lambda gun: sim.client(),
        destination=failing_client,
        store=store,
        cache_dir=tmp_path / "mirror-cache",
        now=NOW,
    )


def counting_keys(client: NotaryClient, asked: list[str]) -> NotaryClient:
    get_key = client.get_key

    def counted(role: str):
        asked.append(role)
        return get_key(role)

    client.get_key = counted  # type: ignore[method-assign]
    return client


def test_an_interrupted_mirror_resumes_where_it_stopped(tmp_path, source, destination):
    store = key_store(tmp_path, source)
    with pytest.raises(Interrupted):
        mirror_repository(interrupted_after(2, tmp_path, source, destination, store), GUN)
    assert version_of(served(destination, "root.json"), ROOT) == 2

    resumed = mirror_repository(make_mirror(tmp_path, source, destination, store), GUN)
    assert resumed.status == RESUMED and resumed.destination_root_version == 2
    assert resumed.publishes[:2] == ["root v3", "root v4"]
    assert read_destination(client_cache_at(tmp_path, source, "reader"), destination).root.signed.version == 4


def test_resuming_twice_across_a_snapshot_key_handed_to_the_server(tmp_path, destination):
    sim = Simulator(now=NOW)  # root v1: the owner's snapshot key; v2: the server's (notary key rotate -r)
    sim.add_target("v1", b"manifest")
    sim.publish()
    store = key_store(tmp_path, sim, roles=(ROOT, SNAPSHOT))
    sim.rotate(SNAPSHOT)
    sim.publish(roles=[TARGETS])
    with pytest.raises(Interrupted):
        mirror_repository(interrupted_after(1, tmp_path, sim, destination, store), GUN)
    with pytest.raises(Interrupted):
        mirror_repository(interrupted_after(1, tmp_path, sim, destination, store), GUN)
    assert version_of(served(destination, "root.json"), ROOT) == 2
    # notary-server makes a new key on every GET <role>.key while the root lists one it does not
    # hold (here: the owner's snapshot key in root v1), so a resumed run must take the server's
    # keys from the root it published last, or each run would plan other roots than the last.
    asked: list[str] = []
    mirror = make_mirror(tmp_path, sim, destination, store)
    counting = replace(mirror, destination=lambda gun: counting_keys(mirror.destination(gun), asked))
    done = mirror_repository(counting, GUN)
    assert done.status == RESUMED and done.publishes[0] == "root v3"
    assert asked == []
    root = Metadata.from_bytes(served(destination, "root.json"), role=ROOT).signed
    assert root.roles[SNAPSHOT].keyids != [sim.keys[SNAPSHOT][0].keyid]  # the destination's own key
    sim.close()


def test_a_destination_with_other_trust_data_is_left_alone(tmp_path, source, destination):
    other = Simulator(now=NOW)
    other.add_target("mine", b"other")
    other.publish()
    other_store = key_store(tmp_path / "other", other)
    mirror_repository(make_mirror(tmp_path / "other", other, destination, other_store), GUN)
    before = served(destination, "root.json")
    with pytest.raises(TrustkitError, match="holds other trust data"):
        mirror_repository(make_mirror(tmp_path, source, destination, key_store(tmp_path, source)), GUN)
    assert served(destination, "root.json") == before
    other.close()


def test_the_users_snapshot_key_signs_snapshots_past_the_sources(tmp_path, destination):
    sim = Simulator(now=NOW)  # notary's layout: the client holds the snapshot key
    sim.add_target("v1", b"manifest")
    for _ in range(4):
        sim.publish(roles=[TARGETS])
    store = key_store(tmp_path, sim, roles=(ROOT, SNAPSHOT))
    reader = client_cache_at(tmp_path, sim, "reader")
    mirror_repository(make_mirror(tmp_path, sim, destination, store), GUN)
    root = Metadata.from_bytes(served(destination, "root.json"), role=ROOT).signed
    assert root.roles[SNAPSHOT].keyids == [sim.keys[SNAPSHOT][0].keyid]
    snapshot = Metadata.from_bytes(served(destination, "snapshot.json"), role=SNAPSHOT)
    assert snapshot.signed.version > sim.snapshot.version
    assert snapshot.verify_by(root.signing_rule(SNAPSHOT))
    assert read_destination(reader, destination).root.signed.version == 2
    sim.close()


# ---- a hostile or broken source


def test_a_broken_root_chain_on_the_source_stops_before_anything_is_published(tmp_path, source, destination):
    forged = new_key()
    source.serve("2.root.json", Metadata.from_bytes(source.files["2.root.json"], role=ROOT).sign([forged.pair]))
    with pytest.raises(VerificationError, match="do not form a chain"):
        mirror_repository(make_mirror(tmp_path, source, destination, key_store(tmp_path, source)), GUN)
    assert served(destination, "root.json") is None


def test_a_root_chain_the_owner_did_not_sign_is_not_vouched_for(tmp_path, destination):
    """A source that lists the owner's root certificate beside its own key (threshold 1) and signs
    with its own: every root verifies, and re-signing it would put the owner's name on it."""
    sim = Simulator(now=NOW)
    attacker, owner = sim.keys[ROOT][0], new_root_key(GUN, issued=NOW)
    sim.keys[ROOT] = [attacker, owner]
    sim.root.roles[ROOT] = RoleKeys([attacker.keyid, owner.keyid], 1)
    sim._sync_root_keys()  # noqa: SLF001 - the simulator's own helper
    sim.publish_root(sign_with=[attacker], version_step=0)
    sim.add_target("v1", b"the attacker's manifest")
    sim.publish()
    store = KeyStore(tmp_path / "owner", lambda request: "owner-passphrase")
    store.add(owner.signer.private_key, role=ROOT)
    with pytest.raises(VerificationError, match="root version 1 .* not signed by your root key"):
        mirror_repository(make_mirror(tmp_path, sim, destination, store), GUN)
    assert served(destination, "root.json") is None
    sim.close()


def test_a_missing_root_version_on_the_source_is_refused(tmp_path, source, destination):
    source.serve("1.root.json", None)
    with pytest.raises(VerificationError, match="missing root version 1"):
        mirror_repository(make_mirror(tmp_path, source, destination, key_store(tmp_path, source)), GUN)
    assert served(destination, "root.json") is None


def test_an_invalid_repository_name_is_refused(tmp_path, source, destination):
    with pytest.raises(TrustkitError, match="cannot mirror"):
        mirror_repository(make_mirror(tmp_path, source, destination, key_store(tmp_path, source)), "a/../b")


# ---- --all: the catalog changefeed


def catalog(pages: list[object]) -> CatalogClient:
    seen = []

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v2/_trust/changefeed"
        seen.append(request.url.params["change_id"])
        body = pages[len(seen) - 1]
        return httpx.Response(200, content=body if isinstance(body, bytes) else json.dumps(body).encode())

    return CatalogClient("https://source.test", httpx.Client(transport=httpx.MockTransport(handle)))


def record(number: int, gun: str, category: str = "update") -> dict[str, object]:
    return {
        "ID": str(number),
        "CreatedAt": "2026-11-26T16:53:13Z",
        "GUN": gun,
        "Version": 1,
        "SHA256": "",
        "Category": category,
    }


def test_the_catalog_lists_live_repositories_across_pages():
    first = [record(i, f"example.com/app{i % 3}") for i in range(1, 100)] + [record(100, "example.com/gone")]
    second = [
        record(101, "example.com/gone", "deletion"),
        record(102, "example.com/app1"),
        record(103, "example.com/_trust/x"),
        record(104, "example.com/new"),
    ]
    assert catalog([{"count": 100, "records": first}, {"count": 4, "records": second}]).repositories() == [
        "example.com/app1",
        "example.com/app2",
        "example.com/app0",
        "example.com/new",
    ]


def test_an_empty_catalog_lists_nothing():
    assert catalog([{"count": 0, "records": None}]).repositories() == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        {"count": 1, "records": [{"ID": 1, "GUN": "x", "Category": "update"}]},
        {"count": 1, "records": "x"},
        [1, 2],
    ],
)
def test_a_malformed_catalog_page_is_a_server_error(body):
    with pytest.raises(ServerError):
        catalog([body]).repositories()


def test_cli_mirror_needs_repositories_or_all(tmp_path):
    from click.testing import CliRunner

    from trustkit.cli import cli

    result = CliRunner().invoke(
        cli, ["--trust-dir", str(tmp_path), "mirror", "--from", "https://a.test", "--to", "https://b.test"]
    )
    assert result.exit_code == 2 and "--all" in result.output
    same = CliRunner().invoke(
        cli, ["--trust-dir", str(tmp_path), "mirror", "x/y", "--from", "https://a.test", "--to", "https://a.test/"]
    )
    assert same.exit_code == 2 and "same server" in same.output


def test_a_catalog_that_repeats_its_page_is_refused():
    page = {"count": 100, "records": [record(i, f"example.com/app{i}") for i in range(1, 101)]}
    with pytest.raises(ServerError, match="repeats itself"):
        catalog([page, page, page]).repositories()


def test_an_oversized_root_history_is_refused_before_it_is_parsed(tmp_path, source, destination, monkeypatch):
    monkeypatch.setattr("trustkit.mirror.MAX_ROOT_HISTORY_BYTES", 3000)
    source.serve("1.root.json", b" " * 2000)
    source.serve("2.root.json", b" " * 2000)
    with pytest.raises(VerificationError, match="more than 3000 bytes together"):
        mirror_repository(make_mirror(tmp_path, source, destination, key_store(tmp_path, source)), GUN)
    assert served(destination, "root.json") is None
