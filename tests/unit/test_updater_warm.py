"""A warm cache in notary's order (issue 15): the cached root is used as it is, and root.json is
fetched only when something does not verify with it; then the whole update starts over from
the newest root.  Driven through the real Notary client against the simulator (a hostile
in-memory server; interop with notary-server is in tests/interop)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from simulator import Simulator, cache_state
from trustkit.errors import ExpiredError, HashMismatchError
from trustkit.roles import ROOT, TARGETS, TIMESTAMP


@pytest.fixture
def sim():
    simulator = Simulator()
    simulator.add_target("v1")
    simulator.publish()
    yield simulator
    simulator.close()


def refresh(sim, trust_dir, **kwargs):
    return sim.updater(trust_dir, **kwargs).refresh()


def test_first_contact_fetches_root_then_a_warm_update_only_the_timestamp(sim, tmp_path):
    refresh(sim, tmp_path)
    assert sim.requests[0] == "root.json"
    sim.requests.clear()
    trusted = refresh(sim, tmp_path)
    assert sim.requests == ["timestamp.json"]
    assert "v1" in trusted.targets[TARGETS].signed.targets


def test_a_new_publish_is_read_without_root(sim, tmp_path):
    refresh(sim, tmp_path)
    sim.add_target("v2")
    sim.publish()
    sim.requests.clear()
    trusted = refresh(sim, tmp_path)
    assert "root.json" not in sim.requests
    assert "v2" in trusted.targets[TARGETS].signed.targets


def test_a_rotated_timestamp_key_makes_it_fetch_the_new_root(sim, tmp_path):
    refresh(sim, tmp_path)
    sim.rotate(TIMESTAMP)  # root v2 lists a new timestamp key
    sim.publish()  # ... which signs the new timestamp: the cached root cannot verify it
    sim.requests.clear()
    trusted = refresh(sim, tmp_path)
    assert sim.requests[0] == "timestamp.json" and "root.json" in sim.requests
    assert trusted.root.signed.version == 2
    assert cache_state(tmp_path)[f"{sim.gun}/metadata/root.json"] == sim.current(ROOT)


def short_lived_root(sim):
    """Re-issue root v1 to expire in 10 days (well before its certificate), before any client saw it."""
    sim.root.set_expiry(sim.now + timedelta(days=10))
    sim.publish_root(version_step=0)
    sim.publish()
    return sim.now + timedelta(days=11)


def test_an_expired_cached_root_makes_it_fetch_the_new_root(sim, tmp_path):
    later = short_lived_root(sim)
    refresh(sim, tmp_path)
    sim.now = later
    sim.publish_root()  # v2, re-signed by its holder, expiring later
    sim.publish()
    sim.requests.clear()
    trusted = refresh(sim, tmp_path, now=later)
    assert sim.requests[0] == "root.json"  # the expired cached root is not even tried
    assert trusted.root.signed.version == 2


def test_a_snapshot_for_another_root_that_root_json_does_not_match_is_refused(sim, tmp_path):
    refresh(sim, tmp_path)
    before = cache_state(tmp_path)
    sim.publish(listed={ROOT: b"some other root"})
    with pytest.raises(HashMismatchError, match="lists a different root"):
        refresh(sim, tmp_path)
    assert "root.json" in sim.requests  # it did look for a newer root before giving up
    assert cache_state(tmp_path) == before


def test_an_expired_root_that_the_server_has_not_replaced_is_an_error(sim, tmp_path):
    later = short_lived_root(sim)
    refresh(sim, tmp_path)
    with pytest.raises(ExpiredError, match="root metadata"):
        refresh(sim, tmp_path, now=later)
