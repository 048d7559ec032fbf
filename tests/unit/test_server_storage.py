"""Server storage on SQLite and PostgreSQL: atomic versioned updates, lookups, exact-name
deletes (notary's memory store deletes by prefix), the changefeed, keys and settings."""

from datetime import UTC, datetime

import pytest

import peers
from trustkit.server.storage import Storage, VersionConflict

NOW = datetime(2026, 11, 26, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'db'}" if request.param == "sqlite" else peers.reset_postgres()
    store = Storage(url)
    yield store
    store.close()


def test_versions_must_rise_and_updates_are_atomic(storage):
    storage.update_many("g/a", [("root", 1, b"r1"), ("targets", 1, b"t1")], now=NOW)
    with pytest.raises(VersionConflict):
        storage.update_many("g/a", [("targets", 2, b"t2"), ("root", 1, b"r1-again")], now=NOW)
    assert storage.current("g/a", "targets").data == b"t1"  # nothing of the failed update stored
    storage.update_many("g/a", [("targets", 5, b"t5")], now=NOW)  # jumps are allowed
    assert storage.current("g/a", "targets").version == 5
    assert storage.by_version("g/a", "targets", 1).data == b"t1"
    import hashlib

    assert storage.by_checksum("g/a", "targets", hashlib.sha256(b"t5").hexdigest()).version == 5
    assert storage.by_checksum("g/a", "root", hashlib.sha256(b"t5").hexdigest()) is None  # role is checked
    assert set(storage.latest_all("g/a")) == {"root", "targets"}


def test_delete_is_by_exact_name(storage):
    storage.update_many("g/pyt", [("root", 1, b"a")], now=NOW)
    storage.update_many("g/pytz", [("root", 1, b"b")], now=NOW)
    assert storage.delete("g/pyt", now=NOW)
    assert storage.current("g/pyt", "root") is None
    assert storage.current("g/pytz", "root") is not None
    assert not storage.delete("g/none", now=NOW)


def test_changefeed(storage):
    for version in range(1, 6):
        storage.update_many(
            "g/a", [("timestamp", version, b"ts%d" % version)], now=NOW, change=(version, b"ts%d" % version)
        )
    storage.update_many("g/b", [("timestamp", 1, b"x")], now=NOW, change=(1, b"x"))
    storage.delete("g/a", now=NOW)
    everything = storage.changes(None, 0, 100)
    assert [c.category for c in everything] == ["update"] * 6 + ["deletion"]
    assert [c.version for c in storage.changes("g/a", 0, 100)] == [1, 2, 3, 4, 5, 0]
    first_two = storage.changes(None, 0, 2)
    assert [c.id for c in storage.changes(None, first_two[-1].id, 2)] == [everything[2].id, everything[3].id]
    assert [c.id for c in storage.changes(None, -1, 2)] == [everything[-2].id, everything[-1].id]
    assert [c.id for c in storage.changes(None, everything[3].id, -2)] == [everything[1].id, everything[2].id]


def test_server_keys_and_settings(storage):
    storage.add_server_key("g/a", "timestamp", "k1", "{}", "pem1", now=NOW)
    storage.add_server_key("g/a", "timestamp", "k2", "{}", "pem2", now=NOW)
    assert [k[0] for k in storage.server_keys("g/a", "timestamp")] == ["k2", "k1"]
    assert not storage.is_immutable("g/a")
    storage.set_immutable("g/a", True, now=NOW)
    assert storage.is_immutable("g/a") and storage.immutable_guns() == {"g/a"}
    storage.set_immutable("g/a", False, now=NOW)
    assert not storage.is_immutable("g/a")
