"""The cache forgets delegations their parent removed (issue 15: "prunes delegation files no
longer used"), and nothing else: a role the update did not load, and a role that only the
snapshot (whose key notary-server holds) stops listing, stay.  Driven through the real Notary
client against the simulator."""

from __future__ import annotations

import pytest

from simulator import Simulator, cache_state
from trustkit.errors import RollbackError
from trustkit.roles import RELEASES, TARGETS

TEAM = "targets/team"


@pytest.fixture
def sim():
    simulator = Simulator()
    simulator.add_target("v1")
    simulator.add_delegation(TEAM)
    simulator.add_target("team-v1", role=TEAM)
    simulator.publish()
    yield simulator
    simulator.close()


def cached(sim, trust_dir) -> set[str]:
    prefix = f"{sim.gun}/metadata/"
    return {path.removeprefix(prefix) for path in cache_state(trust_dir)}


def test_a_delegation_its_parent_removed_leaves_the_cache(sim, tmp_path):
    sim.updater(tmp_path).refresh()
    assert f"{TEAM}.json" in cached(sim, tmp_path)
    sim.remove_delegation(TEAM)
    sim.publish()
    trusted = sim.updater(tmp_path).refresh()
    assert TEAM not in trusted.targets
    assert cached(sim, tmp_path) == {"root.json", "timestamp.json", "snapshot.json", "targets.json"}
    assert not (tmp_path / "tuf" / sim.gun / "metadata" / TARGETS).exists()  # its emptied folder too


def test_a_removed_role_takes_its_children_with_it(sim, tmp_path):
    sim.add_delegation(f"{TEAM}/sub")
    sim.add_target("sub-v1", role=f"{TEAM}/sub")
    sim.publish()
    sim.updater(tmp_path).refresh()
    assert f"{TEAM}/sub.json" in cached(sim, tmp_path)
    sim.remove_delegation(TEAM)
    sim.publish()
    sim.updater(tmp_path).refresh()
    assert not {f"{TEAM}.json", f"{TEAM}/sub.json"} & cached(sim, tmp_path)


def test_a_role_whose_parent_was_not_loaded_stays_until_a_full_update(sim, tmp_path):
    sim.add_delegation(RELEASES)
    sim.add_target("rel-v1", role=RELEASES)
    sim.add_delegation(f"{TEAM}/sub")
    sim.add_target("sub-v1", role=f"{TEAM}/sub")
    sim.publish()
    sim.updater(tmp_path).refresh()
    sim.remove_delegation(f"{TEAM}/sub")
    sim.publish()
    sim.updater(tmp_path).refresh(delegations="releases")  # docker's walk: team is not read
    assert f"{TEAM}/sub.json" in cached(sim, tmp_path)
    sim.updater(tmp_path).refresh()
    assert f"{TEAM}/sub.json" not in cached(sim, tmp_path)
    assert f"{TEAM}.json" in cached(sim, tmp_path)


def test_a_snapshot_that_stops_listing_a_delegated_role_is_a_rollback_and_prunes_nothing(sim, tmp_path):
    sim.updater(tmp_path).refresh()
    before = cache_state(tmp_path)
    sim.publish(listed={TEAM: None})  # the snapshot key's holder hides the role; targets still delegates it
    with pytest.raises(RollbackError, match="no longer lists"):
        sim.updater(tmp_path).refresh()
    assert cache_state(tmp_path) == before


def test_a_role_delegated_again_under_the_same_name_starts_over(sim, tmp_path):
    """Once removed, the old file is no floor for a new role of the same name: the parent's
    signers delegated it afresh (and the parent's own version is still rollback-checked)."""
    sim.add_target("team-v2", role=TEAM)
    sim.publish()  # team at version 2
    sim.updater(tmp_path).refresh()
    sim.remove_delegation(TEAM)
    sim.publish()
    sim.updater(tmp_path).refresh()
    sim.add_delegation(TEAM)
    sim.add_target("again", role=TEAM)
    sim.publish()  # the new team role at version 1
    trusted = sim.updater(tmp_path).refresh()
    assert trusted.targets[TEAM].signed.version == 1
    assert set(trusted.targets[TEAM].signed.targets) == {"again"}
